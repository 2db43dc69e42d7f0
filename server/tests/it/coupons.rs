//! First-come coupons end to end: claim storms that must issue exactly the
//! stock and never twice to one buyer (design invariant 2), a server killed
//! mid-storm that loses no coupon it told a buyer about, every claim
//! outcome, a pause that holds from its answer on, bad input on every
//! campaign route, sellers kept apart, and a buyer's coupons as the socket
//! and REST list them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, stream};
use qt_protocol::{ClientMsg, Envelope, Req, Role};
use queueticket::clock::rfc3339;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    Backend, ChildServer, Client, EVENT, HttpReply, Options, TestServer, claims, http, mint, now_ms, seeded,
};

const DEMO: &str = "demo";
const HOUR_MS: i64 = 3_600_000;
const CAMPAIGNS: &str = "/api/v1/seller/campaigns";
const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------ helpers

/// A valid campaign body: 5,000 off, open from an hour ago for a day.
fn campaign_body(id: &str, stock: Option<i64>) -> Value {
    json!({
        "id": id,
        "name": format!("Campaign {id}"),
        "kind": "fixed",
        "value": 5_000,
        "stock": stock,
        "starts_at": rfc3339(now_ms() - HOUR_MS),
        "ends_at": rfc3339(now_ms() + 24 * HOUR_MS),
        "funded_by": {"seller": 100, "platform": 0},
    })
}

fn path_of(id: &str) -> String {
    format!("{CAMPAIGNS}/{id}")
}

async fn create(addr: SocketAddr, token: &str, body: Value) -> Value {
    let r = http(addr, "POST", CAMPAIGNS, Some(token), Some(body.clone())).await.expect("create");
    assert_eq!(r.status, 201, "create {body}: {}", r.body);
    r.json()
}

/// A campaign as its seller sees it.
async fn view(addr: SocketAddr, token: &str, id: &str) -> Value {
    let r = http(addr, "GET", &path_of(id), Some(token), None).await.expect("get campaign");
    assert_eq!(r.status, 200, "GET {id}: {}", r.body);
    r.json()
}

async fn patch(addr: SocketAddr, token: &str, id: &str, body: Value) -> HttpReply {
    http(addr, "PATCH", &path_of(id), Some(token), Some(body)).await.expect("patch campaign")
}

async fn patch_ok(addr: SocketAddr, token: &str, id: &str, body: Value) -> Value {
    let r = patch(addr, token, id, body.clone()).await;
    assert_eq!(r.status, 200, "PATCH {id} {body}: {}", r.body);
    r.json()
}

/// Every campaign the token sees, page by page.
async fn list_all(addr: SocketAddr, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("{CAMPAIGNS}?limit=2&after={a}"),
            None => format!("{CAMPAIGNS}?limit=2"),
        };
        let r = http(addr, "GET", &path, Some(token), None).await.expect("list campaigns");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let page = r.json();
        let items = page["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2, "limit=2 gave {}", items.len());
        all.extend(items);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => {
                assert!(page["next"].is_null(), "{page}");
                return all;
            }
        }
    }
}

fn ids(items: &[Value]) -> BTreeSet<String> {
    items.iter().map(|c| c["id"].as_str().expect("id").to_owned()).collect()
}

/// One request with a body of any bytes and content type.
async fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> HttpReply {
    let client = reqwest::Client::builder().no_proxy().timeout(WAIT).build().expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, format!("http://{addr}{path}")).body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    let reply = request.send().await.expect("send");
    let status = reply.status().as_u16();
    HttpReply { status, body: reply.text().await.expect("body") }
}

/// A 400 `bad_request` naming exactly `field` in `error.fields`: its
/// message, or what is wrong with the answer.
fn field_error(r: &HttpReply, field: &str, what: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{what}: not JSON ({e}): {}", r.body))?;
    let fields = v["error"]["fields"].as_object();
    let named: Vec<&String> = fields.map(|f| f.keys().collect()).unwrap_or_default();
    let why = fields.and_then(|f| f.get(field)).and_then(Value::as_str).unwrap_or_default();
    let message = v["error"]["message"].as_str().unwrap_or_default();
    if r.status != 400
        || v["error"]["code"] != "bad_request"
        || named != vec![field]
        || why.is_empty()
        || message.is_empty()
    {
        return Err(format!("{what}: want 400 bad_request naming only `{field}`, got {} {v}", r.status));
    }
    Ok(why.to_owned())
}

fn assert_field(r: &HttpReply, field: &str, what: &str) -> String {
    field_error(r, field, what).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_error(r: &HttpReply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{what}: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
}

async fn claim(c: &mut Client, campaign: &str) -> Value {
    c.ask(ClientMsg::ClaimCoupon { campaign: campaign.into() }).await
}

async fn my_coupons(c: &mut Client, event: Option<&str>) -> Value {
    let r = c.ask(ClientMsg::Coupons { event: event.map(Into::into) }).await;
    assert_eq!(r["type"], "coupons", "{r}");
    match event {
        Some(e) => assert_eq!(r["event"], e, "{r}"),
        None => assert!(r.get("event").is_none_or(Value::is_null), "{r}"),
    }
    r
}

/// The campaign ids of a `coupons` reply.
fn campaigns_of(coupons: &Value) -> BTreeSet<String> {
    coupons["coupons"]
        .as_array()
        .expect("coupons")
        .iter()
        .map(|c| c["campaign"].as_str().expect("campaign").to_owned())
        .collect()
}

fn code(v: &Value) -> &str {
    if v["type"] == "error" { v["code"].as_str().unwrap_or("?") } else { v["type"].as_str().unwrap_or("?") }
}

fn seller_token(secret: &[u8], seller: &str) -> String {
    mint(
        secret,
        &qt_protocol::Claims { seller: Some(seller.into()), ..claims(&format!("{seller}-op"), Role::Seller, 3_600) },
    )
}

fn buyer_token(secret: &[u8], user: &str) -> String {
    mint(secret, &claims(user, Role::Buyer, 3_600))
}

/// The server's SQLite database, opened read-only.
async fn read_only(db: &Path) -> sqlx::SqlitePool {
    assert!(db.exists(), "no database at {}", db.display());
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", db.display()))
}

/// (buyer, coupon id) of every coupon of `campaign` in the database.
async fn db_coupons(pool: &sqlx::SqlitePool, campaign: &str) -> Vec<(String, String)> {
    sqlx::query_as::<_, (String, String)>("SELECT user_id, id FROM coupons WHERE campaign_id = ?1 ORDER BY user_id")
        .bind(campaign)
        .fetch_all(pool)
        .await
        .expect("read coupons")
}

/// The `issued` column of a campaign's row.
async fn db_issued(pool: &sqlx::SqlitePool, campaign: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT issued FROM campaigns WHERE id = ?1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .expect("read the campaign row")
}

async fn connect_all(addr: SocketAddr, tokens: Vec<String>) -> Vec<Client> {
    stream::iter(tokens).map(|t| async move { Client::connect(addr, &t).await }).buffered(64).collect().await
}

/// A server on a catalogue with more than the demo: seller `s-2` with its
/// event `s2-live`, and a second event of the demo seller, `demo-other`
/// (both copies of `demo-live`, tiers and all).
async fn with_more_catalogue() -> TestServer {
    let opts = seeded(&Backend::Memory, &[]).await;
    let url = opts.database_url.clone().expect("a catalogue url");
    let pool = sqlx::AnyPool::connect(&url).await.expect("the catalogue database");
    sqlx::query("INSERT INTO sellers (id, name, created_ms) VALUES ('s-2', 'Second seller', $1)")
        .bind(now_ms())
        .execute(&pool)
        .await
        .expect("seller s-2");
    for (id, seller) in [("demo-other", DEMO), ("s2-live", "s-2")] {
        sqlx::query(
            "INSERT INTO events (id, seller_id, venue_id, name, starts_at_ms, on_sale_at_ms, currency, rate_per_min, \
             max_active, window_s, grace_s, paused, hold_s, max_seats_per_buyer, created_ms) \
             SELECT $1, $2, venue_id, $1, starts_at_ms, on_sale_at_ms, currency, rate_per_min, max_active, window_s, \
             grace_s, paused, hold_s, max_seats_per_buyer, created_ms FROM events WHERE id = $3",
        )
        .bind(id)
        .bind(seller)
        .bind(EVENT)
        .execute(&pool)
        .await
        .expect("another event");
        sqlx::query("INSERT INTO event_tiers (event_id, id, name, price) SELECT $1, id, name, price FROM event_tiers WHERE event_id = $2")
            .bind(id)
            .bind(EVENT)
            .execute(&pool)
            .await
            .expect("its tiers");
    }
    pool.close().await;
    TestServer::start_with(opts).await
}

// ------------------------------------------------------------ the storm

const STORM: &str = "storm";
const STORM_STOCK: usize = 300;
const STORM_BUYERS: usize = 2_000;

/// What one socket of the storm saw: its buyer, and each claim's answer in
/// order.
struct Seen {
    user: String,
    primary: bool,
    answers: Vec<Value>,
    client: Client,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_storm_issues_exactly_the_stock_embedded() {
    let started = Instant::now();
    let server = TestServer::start(Backend::Memory).await;
    let seller = server.seller_token(DEMO);
    let made = create(server.addr, &seller, campaign_body(STORM, Some(STORM_STOCK as i64))).await;
    assert_eq!((made["issued"].as_i64(), made["remaining"].as_i64()), (Some(0), Some(STORM_STOCK as i64)), "{made}");
    let pool = read_only(&server.data_dir().join("queueticket.db")).await;

    // 2,000 buyers with a socket each; every fourth has a second socket
    // (another tab) claiming at the same moment.
    let users: Vec<String> = (0..STORM_BUYERS).map(|b| format!("storm-{b:04}")).collect();
    let primaries = connect_all(server.addr, users.iter().map(|u| server.buyer_token(u)).collect()).await;
    let twins: Vec<&String> = users.iter().enumerate().filter(|(b, _)| b % 4 == 0).map(|(_, u)| u).collect();
    let seconds = connect_all(server.addr, twins.iter().map(|u| server.buyer_token(u)).collect()).await;
    eprintln!("storm: {} sockets open after {:?}", primaries.len() + seconds.len(), started.elapsed());

    // Claims per socket, one after the other's answer: odd buyers retry
    // twice on their first socket, second sockets retry once. 1,000 × 3 +
    // 1,000 × 1 + 500 × 2 = 5,000 claims, at most 4 messages a socket
    // (well inside the default 20 a second).
    let mut plans: Vec<(Client, bool, usize)> = Vec::new();
    for (b, c) in primaries.into_iter().enumerate() {
        plans.push((c, true, if b % 2 == 1 { 3 } else { 1 }));
    }
    for c in seconds {
        plans.push((c, false, 2));
    }
    assert_eq!(plans.iter().map(|p| p.2).sum::<usize>(), 5_000);
    let gate = Arc::new(tokio::sync::Barrier::new(plans.len() + 1));
    let mut tasks = Vec::new();
    for (mut client, primary, n) in plans {
        let gate = gate.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let mut answers = Vec::new();
            for _ in 0..n {
                let r = claim(&mut client, STORM).await;
                if r["type"] == "coupon" {
                    // Told, so committed: the row is in SQLite already.
                    let id = r["coupon"].as_str().expect("coupon id").to_owned();
                    let found: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM coupons WHERE id = ?1 AND user_id = ?2 AND campaign_id = ?3",
                    )
                    .bind(&id)
                    .bind(&client.user)
                    .bind(STORM)
                    .fetch_one(&pool)
                    .await
                    .expect("read a coupon");
                    assert_eq!(found, 1, "{} was told of {id} before SQLite had it", client.user);
                }
                answers.push(r);
            }
            Seen { user: client.user.clone(), primary, answers, client }
        }));
    }
    gate.wait().await;
    let storm_at = Instant::now();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("a storm task"));
    }
    eprintln!("storm: 5,000 claims answered in {:?}", storm_at.elapsed());

    // Exactly the stock, to distinct buyers; every other answer is
    // sold_out or already_claimed, and already_claimed only to a winner.
    let mut won: BTreeMap<String, Value> = BTreeMap::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for s in &seen {
        for a in &s.answers {
            *tally.entry(code(a).to_owned()).or_default() += 1;
            if a["type"] == "coupon" {
                // The coupon itself, as `coupons` lists it.
                let mut c = a.clone();
                let fields = c.as_object_mut().expect("an object");
                fields.remove("type");
                fields.remove("req");
                assert!(won.insert(s.user.clone(), c).is_none(), "{} got two coupons", s.user);
            }
        }
    }
    eprintln!("storm: answers {tally:?}");
    assert_eq!(won.len(), STORM_STOCK, "answers: {tally:?}");
    for s in &seen {
        let winner = won.contains_key(&s.user);
        let mut told = false;
        for a in &s.answers {
            match code(a) {
                "coupon" => told = true,
                "already_claimed" => assert!(winner, "{} has no coupon but was told already_claimed: {a}", s.user),
                "sold_out" => {
                    assert!(!winner, "{} has a coupon but was told sold_out: {a}", s.user);
                    assert!(!told, "{} was told sold_out after its coupon", s.user);
                }
                other => panic!("{}: an answer of `{other}`: {a}", s.user),
            }
            if a["type"] == "error" {
                assert!(a["message"].as_str().is_some_and(|m| !m.is_empty()), "{a}");
            }
        }
    }
    for (user, c) in &won {
        assert_eq!(c["campaign"], STORM, "{c}");
        assert_eq!(
            (c["kind"].as_str(), c["value"].as_i64(), c["min_spend"].as_i64()),
            (Some("fixed"), Some(5_000), Some(0)),
            "{user}: {c}"
        );
        assert_eq!(c["expires_at"], made["ends_at"], "{c}");
    }

    // The seller's view, the public one and the database agree.
    let after = view(server.addr, &seller, STORM).await;
    assert_eq!(
        (after["issued"].as_i64(), after["remaining"].as_i64(), after["active"].as_bool()),
        (Some(STORM_STOCK as i64), Some(0), Some(false)),
        "{after}"
    );
    let offers = http(server.addr, "GET", &format!("/api/v1/events/{EVENT}/campaigns"), None, None).await.unwrap();
    assert_eq!(offers.status, 200, "{}", offers.body);
    let offer = offers.json()["items"].as_array().unwrap().iter().find(|o| o["id"] == STORM).cloned().expect("listed");
    assert_eq!((offer["remaining"].as_i64(), offer["active"].as_bool()), (Some(0), Some(false)), "{offer}");
    let rows = db_coupons(&pool, STORM).await;
    let told: Vec<(String, String)> =
        won.iter().map(|(u, c)| (u.clone(), c["coupon"].as_str().unwrap().to_owned())).collect();
    assert_eq!(rows, told, "the database holds exactly the coupons the buyers were told of");
    assert_eq!(db_issued(&pool, STORM).await, STORM_STOCK as i64);

    // Each winner's `coupons` lists its coupon; a loser's lists none of
    // this campaign.
    let checks = seen.into_iter().filter(|s| s.primary).map(|mut s| {
        let want = won.get(&s.user).cloned();
        async move {
            let mine = my_coupons(&mut s.client, None).await;
            let of_storm: Vec<&Value> =
                mine["coupons"].as_array().unwrap().iter().filter(|c| c["campaign"] == STORM).collect();
            match want {
                Some(c) => assert_eq!(of_storm, vec![&c], "{}'s coupons: {mine}", s.user),
                None => assert!(of_storm.is_empty(), "{} lost but lists {mine}", s.user),
            }
        }
    });
    stream::iter(checks).buffer_unordered(64).collect::<Vec<()>>().await;
    pool.close().await;
    server.stop().await;
    eprintln!("storm: done in {:?}", started.elapsed());
}

// ------------------------------------------------------------ kill mid-storm

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, checked against the wire types; None once the
/// socket is gone.
async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Err(e) = serde_json::from_str::<Envelope>(&t) {
                    panic!("a frame that does not read as the wire types ({e}): {t}");
                }
                return Some(serde_json::from_str(&t).expect("JSON"));
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// A claim on a socket that may die under it: the answer, or None.
async fn claim_or_none(ws: &mut Ws, campaign: &str) -> Option<Value> {
    let frame = ClientMsg::ClaimCoupon { campaign: campaign.into() }.to_frame(Some(&Req::Int(1)));
    ws.send(Message::Text(frame.into())).await.ok()?;
    loop {
        let v = next_frame(ws, WAIT).await?;
        if v["req"] == 1 {
            return Some(v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_storm_loses_no_told_coupon() {
    const CAMPAIGN: &str = "doomed-storm";
    const STOCK: usize = 500;
    const BUYERS: usize = 1_500;
    let started = Instant::now();
    let opts = Options::new(Backend::Memory);
    let secret = opts.secret.as_bytes().to_vec();
    let child = ChildServer::start(&opts).await;
    let seller = seller_token(&secret, DEMO);
    create(child.addr, &seller, campaign_body(CAMPAIGN, Some(STOCK as i64))).await;

    let users: Vec<String> = (0..BUYERS).map(|b| format!("kill-{b:04}")).collect();
    let addr = child.addr;
    let sockets: Vec<Ws> = stream::iter(users.iter().map(|u| buyer_token(&secret, u)))
        .map(|t| async move {
            let mut ws = Client::try_connect(addr, Some(&t)).await.expect("upgrade");
            let hello = next_frame(&mut ws, WAIT).await.expect("hello");
            assert_eq!(hello["type"], "hello", "{hello}");
            ws
        })
        .buffered(64)
        .collect()
        .await;
    let told_count = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Barrier::new(BUYERS + 1));
    let mut tasks = Vec::new();
    // Waves of 5 concurrent claims every 2 ms: the storm lasts more than
    // half a second, so the kill lands with claims arriving, queued and
    // committing, and with stock left.
    for (i, (user, mut ws)) in users.iter().cloned().zip(sockets).enumerate() {
        let (gate, told_count) = (gate.clone(), told_count.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            tokio::time::sleep(Duration::from_millis(2 * (i as u64 / 5))).await;
            let answer = claim_or_none(&mut ws, CAMPAIGN).await;
            if answer.as_ref().is_some_and(|a| a["type"] == "coupon") {
                told_count.fetch_add(1, Ordering::SeqCst);
            }
            (user, answer)
        }));
    }
    gate.wait().await;
    // SIGKILL once 173 buyers were told, in the middle of a wave.
    let deadline = Instant::now() + Duration::from_secs(20);
    while told_count.load(Ordering::SeqCst) < 173 {
        assert!(Instant::now() < deadline, "only {} coupons told in 20 s", told_count.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let dir = child.kill_keeping_data().await;
    let at_kill = told_count.load(Ordering::SeqCst);
    assert!(at_kill < STOCK, "the stock was gone before the kill ({at_kill} told): not mid-storm");
    let mut told: BTreeMap<String, String> = BTreeMap::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        let (user, answer) = t.await.expect("a storm task");
        match answer {
            None => *tally.entry("no answer".into()).or_default() += 1,
            Some(a) => {
                *tally.entry(code(&a).to_owned()).or_default() += 1;
                match code(&a) {
                    "coupon" => {
                        told.insert(user, a["coupon"].as_str().expect("coupon id").to_owned());
                    }
                    "sold_out" => {}
                    other => panic!("{user}: an answer of `{other}` before the kill: {a}"),
                }
            }
        }
    }
    eprintln!("kill: {at_kill} told when killed; answers seen {tally:?}");

    // Restarted on the same data directory: every told coupon is there.
    let child = ChildServer::start_in(&opts, dir).await;
    let pool = read_only(&child.data_dir().join("queueticket.db")).await;
    let rows = db_coupons(&pool, CAMPAIGN).await;
    let in_db: BTreeMap<String, String> = rows.iter().cloned().collect();
    assert_eq!(in_db.len(), rows.len(), "a buyer with two coupons: {rows:?}");
    let distinct_ids: BTreeSet<&String> = rows.iter().map(|(_, id)| id).collect();
    assert_eq!(distinct_ids.len(), rows.len(), "a coupon id twice");
    for (user, id) in &told {
        assert_eq!(in_db.get(user), Some(id), "{user} was told of {id}; the database has {:?}", in_db.get(user));
    }
    assert!(rows.len() <= STOCK, "{} coupons of a stock of {STOCK}", rows.len());
    let issued = rows.len();
    assert!(issued < STOCK, "all {STOCK} were issued before the kill: not mid-storm");
    eprintln!("kill: {} told, {issued} in the database after restart", told.len());
    let v = view(child.addr, &seller, CAMPAIGN).await;
    assert_eq!(v["issued"].as_u64(), Some(issued as u64), "the seller's view matches the database: {v}");
    assert_eq!(v["remaining"].as_u64(), Some((STOCK - issued) as u64), "{v}");
    assert_eq!(db_issued(&pool, CAMPAIGN).await, issued as i64, "the row's issued count matches its coupons");

    // Claiming goes on, exactly up to the stock: everyone again, plus 100
    // newcomers; those with a coupon are told already_claimed.
    let again: Vec<String> = users.iter().cloned().chain((0..100).map(|b| format!("late-{b:03}"))).collect();
    let clients = connect_all(child.addr, again.iter().map(|u| buyer_token(&secret, u)).collect()).await;
    let answers: Vec<(String, Value)> = stream::iter(clients)
        .map(|mut c| async move {
            let a = claim(&mut c, CAMPAIGN).await;
            (c.user.clone(), a)
        })
        .buffer_unordered(2_000)
        .collect()
        .await;
    let mut fresh: BTreeMap<String, String> = BTreeMap::new();
    for (user, a) in &answers {
        match (in_db.contains_key(user), code(a)) {
            (true, "already_claimed") | (false, "sold_out") => {}
            (false, "coupon") => {
                fresh.insert(user.clone(), a["coupon"].as_str().unwrap().to_owned());
            }
            (had, other) => panic!("{user} (had a coupon: {had}) answered `{other}` after the restart: {a}"),
        }
    }
    assert_eq!(fresh.len(), STOCK - issued, "after the restart, exactly the rest of the stock");
    let rows = db_coupons(&pool, CAMPAIGN).await;
    let mut want: BTreeMap<String, String> = in_db.clone();
    want.extend(fresh);
    assert_eq!(rows.into_iter().collect::<BTreeMap<_, _>>(), want);
    let v = view(child.addr, &seller, CAMPAIGN).await;
    assert_eq!((v["issued"].as_u64(), v["remaining"].as_u64()), (Some(STOCK as u64), Some(0)), "{v}");
    assert_eq!(db_issued(&pool, CAMPAIGN).await, STOCK as i64);
    pool.close().await;
    child.kill().await;
    eprintln!("kill: done in {:?}", started.elapsed());
}

// ------------------------------------------------------------ outcomes

/// `issued` as the seller sees it.
async fn issued(server: &TestServer, id: &str) -> i64 {
    view(server.addr, &server.seller_token(DEMO), id).await["issued"].as_i64().expect("issued")
}

fn assert_claim_error(r: &Value, code: &str, what: &str) {
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some(code)), "{what}: {r}");
    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {r}");
    assert!(r["req"].is_i64(), "{what}: req echoed: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_outcome_is_answered_and_changes_nothing_else() {
    let server = TestServer::start(Backend::Memory).await;
    let (a, seller) = (server.addr, server.seller_token(DEMO));
    let now = now_ms();
    let mut later = campaign_body("later", Some(10));
    later["starts_at"] = json!(rfc3339(now + HOUR_MS));
    later["ends_at"] = json!(rfc3339(now + 2 * HOUR_MS));
    create(a, &seller, later).await;
    let mut over = campaign_body("over", Some(10));
    over["starts_at"] = json!(rfc3339(now - 2 * HOUR_MS));
    create(a, &seller, over).await;
    patch_ok(a, &seller, "over", json!({"ends_at": rfc3339(now - HOUR_MS)})).await;
    create(a, &seller, campaign_body("pausable", Some(10))).await;
    create(a, &seller, campaign_body("once", None)).await;
    create(a, &seller, campaign_body("single", Some(1))).await;

    let mut buyer = server.buyer("outcomes").await;
    let r = claim(&mut buyer, "later").await;
    assert_claim_error(&r, "not_active", "before the start");
    let before_start = r["message"].as_str().unwrap().to_owned();
    assert!(before_start.contains("not started"), "says why: {r}");
    let r = claim(&mut buyer, "over").await;
    assert_claim_error(&r, "not_active", "after the end");
    assert!(r["message"].as_str().unwrap().contains("ended"), "says why: {r}");

    let paused = patch_ok(a, &seller, "pausable", json!({"paused": true})).await;
    assert_eq!((paused["paused"].as_bool(), paused["active"].as_bool()), (Some(true), Some(false)), "{paused}");
    let r = claim(&mut buyer, "pausable").await;
    assert_claim_error(&r, "not_active", "paused");
    assert!(r["message"].as_str().unwrap().contains("paused"), "says why: {r}");
    let messages: BTreeSet<&str> = [before_start.as_str(), "ended", "paused"].into_iter().collect();
    assert_eq!(messages.len(), 3);
    for id in ["later", "over", "pausable"] {
        assert_eq!(issued(&server, id).await, 0, "{id}");
    }
    // Resumed: claimable again at once on this node.
    let resumed = patch_ok(a, &seller, "pausable", json!({"paused": false})).await;
    assert_eq!((resumed["paused"].as_bool(), resumed["active"].as_bool()), (Some(false), Some(true)), "{resumed}");
    let r = claim(&mut buyer, "pausable").await;
    assert_eq!(r["type"], "coupon", "resumed: {r}");
    assert!(r["req"].is_i64(), "{r}");
    assert_eq!(issued(&server, "pausable").await, 1);

    let r = claim(&mut buyer, "no-such-campaign").await;
    assert_claim_error(&r, "not_found", "unknown campaign");

    let first = claim(&mut buyer, "once").await;
    assert_eq!(first["type"], "coupon", "{first}");
    let r = claim(&mut buyer, "once").await;
    assert_claim_error(&r, "already_claimed", "twice");
    // Another tab of the same buyer, too.
    let mut tab = server.buyer("outcomes").await;
    assert_claim_error(&claim(&mut tab, "once").await, "already_claimed", "twice, another tab");
    let v = view(a, &seller, "once").await;
    assert_eq!((v["issued"].as_i64(), v["remaining"].clone()), (Some(1), Value::Null), "unlimited: {v}");
    assert_eq!(
        my_coupons(&mut buyer, None).await["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["campaign"] == "once")
            .count(),
        1
    );

    let mut other = server.buyer("outcomes-2").await;
    assert_eq!(claim(&mut other, "single").await["type"], "coupon");
    let r = claim(&mut buyer, "single").await;
    assert_claim_error(&r, "sold_out", "sold out");
    let v = view(a, &seller, "single").await;
    assert_eq!(
        (v["issued"].as_i64(), v["remaining"].as_i64(), v["active"].as_bool()),
        (Some(1), Some(0), Some(false)),
        "{v}"
    );
    assert!(campaigns_of(&my_coupons(&mut buyer, None).await).iter().all(|c| c != "single"));

    // Restocked: claimable again; back to the issued count: sold out.
    patch_ok(a, &seller, "single", json!({"stock": 2})).await;
    assert_eq!(claim(&mut buyer, "single").await["type"], "coupon");
    let mut third = server.buyer("outcomes-3").await;
    assert_claim_error(&claim(&mut third, "single").await, "sold_out", "restocked and sold out");
    let v = patch_ok(a, &seller, "single", json!({"stock": null})).await;
    assert_eq!(
        (v["stock"].clone(), v["remaining"].clone(), v["issued"].as_i64()),
        (Value::Null, Value::Null, Some(2)),
        "{v}"
    );
    assert_eq!(claim(&mut third, "single").await["type"], "coupon", "unlimited now");

    // A string req is echoed as it is, on errors and coupons alike.
    for (campaign, want) in [("later", "error"), ("demo-10-percent", "coupon")] {
        buyer.send(json!({"type": "claim_coupon", "campaign": campaign, "req": "r-x"})).await;
        let r = buyer.recv().await;
        assert_eq!((r["type"].as_str(), r["req"].as_str()), (Some(want), Some("r-x")), "{r}");
    }
    for id in ["later", "over"] {
        assert_eq!(issued(&server, id).await, 0, "{id}");
    }
    server.stop().await;
}

/// A pause (or an end) made on this node holds on this node from the
/// moment it is answered: the once-a-second reload of campaigns from SQL
/// must never put back what it read just before the change. A race: the
/// toggling runs for seconds, over several reloads, to meet it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_from_its_answer_on_and_the_reload_does_not_undo_it() {
    let mut opts = Options::new(Backend::Memory);
    // One buyer asks hundreds of times a second here.
    opts.tweak = |cfg| cfg.ws_msgs_per_s = 100_000;
    let server = TestServer::start_with(opts).await;
    let (a, seller) = (server.addr, server.seller_token(DEMO));
    create(a, &seller, campaign_body("aaa-toggled", None)).await;
    // Enough campaigns after it (by id, the reload's order) that a reload
    // takes a while, as on a busy node.
    let bodies: Vec<Value> = (0..2_000).map(|i| campaign_body(&format!("filler-{i:04}"), Some(10))).collect();
    let seller_ref = &seller;
    stream::iter(bodies).map(|b| create(a, seller_ref, b)).buffer_unordered(16).collect::<Vec<_>>().await;
    let mut checker = server.buyer("pause-checker").await;
    let mut wrong = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    let mut rounds = 0;
    while Instant::now() < until {
        rounds += 1;
        // Paused, then resumed, each for 3 ms of claims.
        for paused in [true, false] {
            patch_ok(a, &seller, "aaa-toggled", json!({ "paused": paused })).await;
            let phase = Instant::now() + Duration::from_millis(3);
            while Instant::now() < phase {
                let r = claim(&mut checker, "aaa-toggled").await;
                match (paused, code(&r)) {
                    (true, "not_active") | (false, "coupon" | "already_claimed") => {}
                    _ => wrong.push(format!("round {rounds}, paused {paused}: {r}")),
                }
            }
        }
    }
    assert!(rounds > 20, "only {rounds} rounds");
    eprintln!("pause: {rounds} rounds");
    assert!(
        wrong.is_empty(),
        "{} claims in {rounds} rounds saw the campaign as it was before the change:\n{}",
        wrong.len(),
        wrong.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    server.stop().await;
}

// ------------------------------------------------------------ bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaign_input_names_its_field_and_stores_nothing() {
    let server = TestServer::start(Backend::Memory).await;
    let (a, seller) = (server.addr, server.seller_token(DEMO));
    let listed = list_all(a, &seller).await;
    let now = now_ms();
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = |k: &'static str, v: Value| -> Edit { Box::new(move |b: &mut Value| b[k] = v.clone()) };
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("id with capitals", "id", set("id", json!("Bad_Id"))),
        ("id too long", "id", set("id", json!("a".repeat(65)))),
        ("blank name", "name", set("name", json!("   "))),
        ("name too long", "name", set("name", json!("n".repeat(201)))),
        ("unknown kind", "kind", set("kind", json!("bogo"))),
        ("negative amount", "value", set("value", json!(-5))),
        ("zero amount", "value", set("value", json!(0))),
        ("absurd amount", "value", set("value", json!(100_000_000_000_000_i64))),
        (
            "percent over 100",
            "value",
            Box::new(|b: &mut Value| {
                b["kind"] = json!("percent");
                b["value"] = json!(101);
            }),
        ),
        ("zero cap", "max_discount", set("max_discount", json!(0))),
        ("negative cap", "max_discount", set("max_discount", json!(-1))),
        ("absurd cap", "max_discount", set("max_discount", json!(100_000_000_000_000_i64))),
        ("negative min spend", "min_spend", set("min_spend", json!(-1))),
        ("absurd min spend", "min_spend", set("min_spend", json!(100_000_000_000_000_i64))),
        (
            "no stock (null is unlimited)",
            "stock",
            Box::new(|b: &mut Value| drop(b.as_object_mut().unwrap().remove("stock"))),
        ),
        ("zero stock", "stock", set("stock", json!(0))),
        ("negative stock", "stock", set("stock", json!(-3))),
        ("absurd stock", "stock", set("stock", json!(1_000_000_000_000_i64))),
        ("starts_at not a time", "starts_at", set("starts_at", json!("tomorrow"))),
        ("ends_at not a time", "ends_at", set("ends_at", json!("2030-13-01T00:00:00Z"))),
        (
            "ends before it starts",
            "ends_at",
            Box::new(move |b: &mut Value| {
                b["starts_at"] = json!(rfc3339(now + 2 * HOUR_MS));
                b["ends_at"] = json!(rfc3339(now + HOUR_MS));
            }),
        ),
        (
            "over already",
            "ends_at",
            Box::new(move |b: &mut Value| {
                b["starts_at"] = json!(rfc3339(now - 2 * HOUR_MS));
                b["ends_at"] = json!(rfc3339(now - HOUR_MS));
            }),
        ),
        ("too long", "ends_at", set("ends_at", json!(rfc3339(now + 6 * 366 * 24 * HOUR_MS)))),
        ("unknown event", "events", set("events", json!(["no-such-show"]))),
        ("no events", "events", set("events", json!([]))),
        ("an event twice", "events", set("events", json!([EVENT, EVENT]))),
        ("unknown tier", "tiers", set("tiers", json!(["gold"]))),
        ("no tiers", "tiers", set("tiers", json!([]))),
        ("funders not 100", "funded_by", set("funded_by", json!({"seller": 60, "platform": 30}))),
        ("funders out of range", "funded_by", set("funded_by", json!({"seller": 150, "platform": -50}))),
        ("no funders", "funded_by", Box::new(|b: &mut Value| drop(b.as_object_mut().unwrap().remove("funded_by")))),
        ("no name", "name", Box::new(|b: &mut Value| drop(b.as_object_mut().unwrap().remove("name")))),
        ("unknown field", "colour", set("colour", json!("red"))),
        ("value not a number", "value", set("value", json!("a"))),
        ("value a fraction", "value", set("value", json!(10.5))),
        ("stock not a number", "stock", set("stock", json!("ten"))),
        ("name not a string", "name", set("name", json!(5))),
        ("events not a list", "events", set("events", json!(EVENT))),
    ];
    // Every case is tried; what went wrong is listed at the end.
    let mut wrong = Vec::new();
    for (what, field, edit) in &cases {
        let mut body = campaign_body("probe", Some(10));
        edit(&mut body);
        let r = http(a, "POST", CAMPAIGNS, Some(&seller), Some(body.clone())).await.unwrap();
        if let Err(e) = field_error(&r, field, &format!("POST {what}")) {
            wrong.push(e);
        }
    }
    // A nested field is named by its path.
    let nested = [
        ("funded_by.seller", json!({"seller": "x", "platform": 0})),
        ("funded_by.platform", json!({"seller": 100})),
        ("funded_by.extra", json!({"seller": 100, "platform": 0, "extra": 1})),
    ];
    for (field, funded_by) in nested {
        let mut body = campaign_body("probe", Some(10));
        body["funded_by"] = funded_by;
        let r = http(a, "POST", CAMPAIGNS, Some(&seller), Some(body.clone())).await.unwrap();
        if let Err(e) = field_error(&r, field, &format!("POST {body}")) {
            wrong.push(e);
        }
    }
    // Not JSON, or not said to be JSON.
    let valid = campaign_body("probe", Some(10)).to_string();
    let r =
        raw_http(a, "POST", CAMPAIGNS, Some(&seller), Some("application/json"), r#"{"id": "probe", "name": "#).await;
    assert_error(&r, 400, "bad_request", "malformed JSON");
    let r = raw_http(a, "POST", CAMPAIGNS, Some(&seller), Some("application/json"), "[1, 2]").await;
    assert_error(&r, 400, "bad_request", "not an object");
    let r = raw_http(a, "POST", CAMPAIGNS, Some(&seller), Some("text/plain"), &valid).await;
    assert_error(&r, 400, "bad_request", "text/plain");
    let r = raw_http(a, "POST", CAMPAIGNS, Some(&seller), None, &valid).await;
    assert_error(&r, 400, "bad_request", "no content type");
    let r = raw_http(a, "POST", CAMPAIGNS, Some(&seller), Some("application/json"), "").await;
    assert_error(&r, 400, "bad_request", "no body");
    let r = http(a, "GET", &format!("{CAMPAIGNS}?limit=abc"), Some(&seller), None).await.unwrap();
    assert_error(&r, 400, "bad_request", "limit not a number");
    // Nothing was stored.
    assert_eq!(list_all(a, &seller).await, listed, "refused bodies stored nothing");
    let r = http(a, "GET", &path_of("probe"), Some(&seller), None).await.unwrap();
    assert_error(&r, 404, "not_found", "the probe was never stored");
    // The body the cases broke is valid as it is; its id once only.
    create(a, &seller, campaign_body("probe", Some(10))).await;
    let r = http(a, "POST", CAMPAIGNS, Some(&seller), Some(campaign_body("probe", Some(99)))).await.unwrap();
    assert_error(&r, 409, "conflict", "a taken id");
    let r = http(a, "POST", CAMPAIGNS, Some(&seller), Some(campaign_body("demo-10000-off", None))).await.unwrap();
    assert_error(&r, 409, "conflict", "a demo campaign's id");
    assert_eq!(view(a, &seller, "probe").await["stock"], 10, "the first one stands");
    assert_eq!(view(a, &seller, "demo-10000-off").await["stock"], 300);
    assert_eq!(list_all(a, &seller).await.len(), listed.len() + 1);
    // Without an id, one is generated in the form a client may choose.
    let mut body = campaign_body("unused", None);
    body.as_object_mut().unwrap().remove("id");
    let made = create(a, &seller, body).await;
    let id = made["id"].as_str().expect("an id").to_owned();
    assert!(
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{id}"
    );
    assert_eq!(view(a, &seller, &id).await, made);
    assert_eq!(list_all(a, &seller).await.len(), listed.len() + 2);

    // PATCH: two coupons issued of a stock of 5.
    create(a, &seller, campaign_body("patch-me", Some(5))).await;
    for user in ["pb-1", "pb-2"] {
        assert_eq!(claim(&mut server.buyer(user).await, "patch-me").await["type"], "coupon");
    }
    let before = view(a, &seller, "patch-me").await;
    assert_eq!(before["issued"], 2);
    let starts = time_of(&before["starts_at"]);
    let cases = [
        ("stock below issued", "stock", json!({"stock": 1})),
        ("zero stock", "stock", json!({"stock": 0})),
        ("negative stock", "stock", json!({"stock": -1})),
        ("ends before it starts", "ends_at", json!({"ends_at": rfc3339(starts - HOUR_MS)})),
        ("ends as it starts", "ends_at", json!({"ends_at": rfc3339(starts)})),
        ("ends_at not a time", "ends_at", json!({"ends_at": "soon"})),
        ("unknown field", "colour", json!({"colour": "red"})),
        ("paused not a bool", "paused", json!({"paused": "yes"})),
        ("stock not a number", "stock", json!({"stock": "x"})),
    ];
    for (what, field, body) in cases {
        let r = patch(a, &seller, "patch-me", body.clone()).await;
        if let Err(e) = field_error(&r, field, &format!("PATCH {what} ({body})")) {
            wrong.push(e);
        }
        assert_eq!(view(a, &seller, "patch-me").await, before, "PATCH {what} changed nothing");
    }
    let patch_path = path_of("patch-me");
    let r = raw_http(a, "PATCH", &patch_path, Some(&seller), Some("application/json"), r#"{"paused": tru"#).await;
    assert_error(&r, 400, "bad_request", "PATCH malformed JSON");
    let r = raw_http(a, "PATCH", &patch_path, Some(&seller), Some("text/plain"), r#"{"paused": true}"#).await;
    assert_error(&r, 400, "bad_request", "PATCH text/plain");
    let r = raw_http(a, "PATCH", &patch_path, Some(&seller), None, r#"{"paused": true}"#).await;
    assert_error(&r, 400, "bad_request", "PATCH no content type");
    assert_eq!(view(a, &seller, "patch-me").await, before, "nothing changed");
    // Exactly the issued count is allowed.
    let v = patch_ok(a, &seller, "patch-me", json!({"stock": 2})).await;
    assert_eq!((v["remaining"].as_i64(), v["active"].as_bool()), (Some(0), Some(false)), "{v}");

    // The claim message, malformed.
    let mut c = server.buyer("bad-claimer").await;
    let r = c.request(json!({"type": "claim_coupon"})).await;
    assert_claim_error(&r, "bad_request", "no campaign");
    let r = c.request(json!({"type": "claim_coupon", "campaign": 5})).await;
    assert_claim_error(&r, "bad_request", "campaign not a string");
    let r = c.request(json!({"type": "claim_coupon", "campaign": ["probe"]})).await;
    assert_claim_error(&r, "bad_request", "campaign a list");
    let r = c.request(json!({"type": "coupons", "event": 7})).await;
    assert_claim_error(&r, "bad_request", "coupons with a numeric event");
    assert_eq!(view(a, &seller, "probe").await["issued"], 0, "nothing claimed");
    assert!(my_coupons(&mut c, None).await["coupons"].as_array().unwrap().is_empty());
    assert_eq!(claim(&mut c, "probe").await["type"], "coupon", "the socket still works");
    assert!(wrong.is_empty(), "{} bad bodies not answered as they should be:\n{}", wrong.len(), wrong.join("\n"));
    server.stop().await;
}

fn time_of(v: &Value) -> i64 {
    crate::common::time_ms(v)
}

// ------------------------------------------------------------ sellers apart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_sees_and_touches_only_its_own_campaigns() {
    let server = with_more_catalogue().await;
    let a = server.addr;
    let demo = server.seller_token(DEMO);
    let s2 = server.seller_token("s-2");
    let admin = server.mint(&claims("root", Role::Admin, 3_600));
    let buyer = server.buyer_token("nosy-buyer");

    let mine = create(a, &s2, campaign_body("s2-camp", Some(50))).await;
    assert_eq!(mine["seller"], "s-2", "{mine}");
    let mut body = campaign_body("s2-targeted", None);
    body["events"] = json!(["s2-live"]);
    let targeted = create(a, &s2, body).await;
    assert_eq!(targeted["events"], json!(["s2-live"]));

    // Another seller's campaign is not found, exactly like a missing one.
    let demo_before = view(a, &demo, "demo-10000-off").await;
    let missing = http(a, "GET", &path_of("no-such-campaign"), Some(&s2), None).await.unwrap();
    assert_error(&missing, 404, "not_found", "missing");
    let theirs = http(a, "GET", &path_of("demo-10000-off"), Some(&s2), None).await.unwrap();
    assert_eq!((theirs.status, theirs.body.clone()), (missing.status, missing.body.clone()), "GET another's");
    let missing = patch(a, &s2, "no-such-campaign", json!({"paused": true})).await;
    assert_error(&missing, 404, "not_found", "PATCH missing");
    for body in [json!({"paused": true}), json!({"stock": 1}), json!({"ends_at": rfc3339(now_ms())})] {
        let theirs = patch(a, &s2, "demo-10000-off", body.clone()).await;
        assert_eq!(
            (theirs.status, theirs.body.clone()),
            (missing.status, missing.body.clone()),
            "PATCH another's {body}"
        );
    }
    // Even a PATCH that would be invalid: no hint that the campaign exists.
    let theirs = patch(a, &s2, "demo-10000-off", json!({"stock": -1})).await;
    let missing_bad = patch(a, &s2, "no-such-campaign", json!({"stock": -1})).await;
    assert_eq!((theirs.status, theirs.body), (missing_bad.status, missing_bad.body), "an invalid PATCH of another's");
    assert_eq!(view(a, &demo, "demo-10000-off").await, demo_before, "untouched");
    let theirs = http(a, "GET", &path_of("s2-camp"), Some(&demo), None).await.unwrap();
    assert_error(&theirs, 404, "not_found", "demo reading s-2's");

    // Lists: each its own; the admin all.
    let s2_ids = ids(&list_all(a, &s2).await);
    assert_eq!(s2_ids, BTreeSet::from(["s2-camp".to_owned(), "s2-targeted".to_owned()]));
    let demo_ids = ids(&list_all(a, &demo).await);
    assert!(demo_ids.contains("demo-10000-off") && demo_ids.contains("demo-10-percent"), "{demo_ids:?}");
    assert!(!demo_ids.iter().any(|id| id.starts_with("s2-")), "{demo_ids:?}");
    let all_ids = ids(&list_all(a, &admin).await);
    assert_eq!(all_ids, s2_ids.union(&demo_ids).cloned().collect(), "the admin sees every seller's");
    assert_eq!(view(a, &admin, "s2-camp").await["seller"], "s-2");
    assert_eq!(view(a, &admin, "demo-10000-off").await["seller"], DEMO);
    let paused = patch_ok(a, &admin, "s2-camp", json!({"paused": true})).await;
    assert_eq!(paused["paused"], true);
    patch_ok(a, &admin, "s2-camp", json!({"paused": false})).await;

    // Another seller's event is named like one that does not exist.
    let mut body = campaign_body("s2-sneaky", None);
    body["events"] = json!([EVENT]);
    let r = http(a, "POST", CAMPAIGNS, Some(&s2), Some(body)).await.unwrap();
    let on_theirs = assert_field(&r, "events", "s-2 targeting demo-live");
    let mut body = campaign_body("s2-sneaky", None);
    body["events"] = json!(["no-such-show"]);
    let r = http(a, "POST", CAMPAIGNS, Some(&s2), Some(body)).await.unwrap();
    let on_none = assert_field(&r, "events", "s-2 targeting no event");
    assert_eq!(on_theirs.replace(EVENT, "X"), on_none.replace("no-such-show", "X"), "the same message");
    let mut body = campaign_body("s2-sneaky", None);
    body["tiers"] = json!(["vip"]);
    body["events"] = json!(["s2-live", EVENT]);
    let r = http(a, "POST", CAMPAIGNS, Some(&s2), Some(body)).await.unwrap();
    assert_field(&r, "events", "s-2 targeting its own and demo-live");
    let r = http(a, "GET", &path_of("s2-sneaky"), Some(&admin), None).await.unwrap();
    assert_eq!(r.status, 404, "nothing stored: {}", r.body);

    // The event page lists only that event's seller's campaigns.
    let offers = http(a, "GET", &format!("/api/v1/events/{EVENT}/campaigns"), None, None).await.unwrap();
    assert_eq!(offers.status, 200, "{}", offers.body);
    let offered = ids(offers.json()["items"].as_array().unwrap());
    assert!(offered.contains("demo-10000-off") && !offered.iter().any(|id| id.starts_with("s2-")), "{offered:?}");
    let offers = http(a, "GET", "/api/v1/events/s2-live/campaigns", None, None).await.unwrap();
    assert_eq!(ids(offers.json()["items"].as_array().unwrap()), s2_ids);
    let r = http(a, "GET", "/api/v1/events/no-such-show/campaigns", None, None).await.unwrap();
    assert_error(&r, 404, "not_found", "an unknown event's campaigns");

    // Buyers have no seller routes; nobody without a token has any.
    let one = path_of("demo-10000-off");
    let routes: [(&str, &str, Option<Value>); 4] = [
        ("POST", CAMPAIGNS, Some(campaign_body("by-buyer", None))),
        ("GET", CAMPAIGNS, None),
        ("GET", &one, None),
        ("PATCH", &one, Some(json!({"paused": true}))),
    ];
    for (method, path, body) in &routes {
        let r = http(a, method, path, Some(&buyer), body.clone()).await.unwrap();
        assert_error(&r, 403, "forbidden", &format!("buyer {method} {path}"));
        let r = http(a, method, path, None, body.clone()).await.unwrap();
        assert_error(&r, 401, "unauthorized", &format!("no token {method} {path}"));
        let r = http(a, method, path, Some("not-a-jwt"), body.clone()).await.unwrap();
        assert_error(&r, 401, "unauthorized", &format!("a bad token {method} {path}"));
        let r = http(a, method, path, Some(&server.expired_token("late")), body.clone()).await.unwrap();
        assert_error(&r, 401, "unauthorized", &format!("an expired token {method} {path}"));
    }
    assert_eq!(view(a, &demo, "demo-10000-off").await, demo_before, "untouched");
    let r = http(a, "GET", &path_of("by-buyer"), Some(&admin), None).await.unwrap();
    assert_eq!(r.status, 404, "nothing stored: {}", r.body);
    // A buyer's own coupons are for buyers.
    for token in [&demo, &s2, &admin] {
        let r = http(a, "GET", "/api/v1/me/coupons", Some(token), None).await.unwrap();
        assert_error(&r, 403, "forbidden", "a non-buyer's coupons");
    }
    let r = http(a, "GET", "/api/v1/me/coupons", None, None).await.unwrap();
    assert_error(&r, 401, "unauthorized", "coupons without a token");
    // A seller token without a seller claim acts for nobody.
    let sellerless = server.mint(&claims("who", Role::Seller, 3_600));
    let r = http(a, "GET", CAMPAIGNS, Some(&sellerless), None).await.unwrap();
    assert!(matches!(r.status, 401 | 403), "a seller token naming no seller: {} {}", r.status, r.body);
    server.stop().await;
}

/// Creating a campaign for a seller the catalogue has no row for: a clear
/// answer either way, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_for_a_seller_without_a_row_gets_a_clear_answer() {
    let server = TestServer::start(Backend::Memory).await;
    let ghost = server.seller_token("s-ghost");
    let r = http(server.addr, "POST", CAMPAIGNS, Some(&ghost), Some(campaign_body("ghost-camp", None))).await.unwrap();
    eprintln!("unknown seller create: {} {}", r.status, r.body);
    assert!(r.status == 201 || (400..500).contains(&r.status), "an unknown seller's campaign: {} {}", r.status, r.body);
    if r.status == 201 {
        assert_eq!(view(server.addr, &ghost, "ghost-camp").await["seller"], "s-ghost");
    } else {
        let r = http(server.addr, "GET", &path_of("ghost-camp"), Some(&ghost), None).await.unwrap();
        assert_eq!(r.status, 404, "{}", r.body);
    }
    server.stop().await;
}

// ------------------------------------------------------------ a buyer's coupons

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupons_for_an_event_are_those_that_apply_and_have_not_ended() {
    let server = with_more_catalogue().await;
    let (a, demo) = (server.addr, server.seller_token(DEMO));
    let mut only_other = campaign_body("only-other", None);
    only_other["events"] = json!(["demo-other"]);
    create(a, &demo, only_other).await;
    let mut only_live = campaign_body("only-live", None);
    only_live["events"] = json!([EVENT]);
    create(a, &demo, only_live).await;
    create(a, &demo, campaign_body("every-event", None)).await;
    create(a, &demo, campaign_body("ends-soon", None)).await;
    create(a, &server.seller_token("s-2"), campaign_body("s2-every-event", None)).await;

    let mut c = server.buyer("collector").await;
    for id in ["only-other", "only-live", "every-event", "ends-soon", "s2-every-event"] {
        assert_eq!(claim(&mut c, id).await["type"], "coupon", "{id}");
    }
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        campaigns_of(&my_coupons(&mut c, None).await),
        set(&["only-other", "only-live", "every-event", "ends-soon", "s2-every-event"])
    );
    assert_eq!(campaigns_of(&my_coupons(&mut c, Some(EVENT)).await), set(&["only-live", "every-event", "ends-soon"]));
    assert_eq!(
        campaigns_of(&my_coupons(&mut c, Some("demo-other")).await),
        set(&["only-other", "every-event", "ends-soon"])
    );
    assert_eq!(campaigns_of(&my_coupons(&mut c, Some("s2-live")).await), set(&["s2-every-event"]));

    // Ended: gone from every list, and from the event page.
    let v = view(a, &demo, "ends-soon").await;
    patch_ok(a, &demo, "ends-soon", json!({"ends_at": rfc3339(time_of(&v["starts_at"]) + 1)})).await;
    assert_eq!(
        campaigns_of(&my_coupons(&mut c, None).await),
        set(&["only-other", "only-live", "every-event", "s2-every-event"])
    );
    assert_eq!(campaigns_of(&my_coupons(&mut c, Some(EVENT)).await), set(&["only-live", "every-event"]));
    let offers = http(a, "GET", &format!("/api/v1/events/{EVENT}/campaigns"), None, None).await.unwrap();
    let offered = ids(offers.json()["items"].as_array().unwrap());
    assert_eq!(
        offered,
        set(&["demo-10000-off", "demo-10-percent", "only-live", "every-event"]),
        "the event page: its seller's, for it, not ended"
    );
    let r = c.ask(ClientMsg::Coupons { event: Some("no-such-show".into()) }).await;
    assert_claim_error(&r, "not_found", "coupons for an unknown event");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_coupons_over_rest_are_the_sockets_coupons() {
    let server = TestServer::start(Backend::Memory).await;
    let (a, demo) = (server.addr, server.seller_token(DEMO));
    let token = server.buyer_token("rest-and-socket");
    let mut c = Client::connect(a, &token).await;
    let rest = |token: String| async move {
        let r = http(a, "GET", "/api/v1/me/coupons", Some(&token), None).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let empty = rest(token.clone()).await;
    assert_eq!(empty, json!({"items": []}));
    assert_eq!(my_coupons(&mut c, None).await["coupons"], json!([]));
    let mut percent = campaign_body("capped-percent", Some(10));
    percent["kind"] = json!("percent");
    percent["value"] = json!(15);
    percent["max_discount"] = json!(20_000);
    percent["min_spend"] = json!(30_000);
    percent["tiers"] = json!(["vip", "r"]);
    percent["events"] = json!([EVENT]);
    create(a, &demo, percent).await;
    let mut told = Vec::new();
    for id in ["demo-10000-off", "capped-percent", "demo-10-percent"] {
        let r = claim(&mut c, id).await;
        assert_eq!(r["type"], "coupon", "{r}");
        told.push(r);
    }
    let socket = my_coupons(&mut c, None).await;
    let over_rest = rest(token.clone()).await;
    assert_eq!(over_rest["items"], socket["coupons"], "REST lists what the socket does");
    let items = over_rest["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    // Each as it was told at the claim (less the frame's type and req).
    for t in &told {
        let mut t = t.clone();
        let t = t.as_object_mut().unwrap();
        t.remove("type");
        t.remove("req");
        let listed = items.iter().find(|i| i["coupon"] == t["coupon"]).unwrap_or_else(|| panic!("{t:?} not listed"));
        assert_eq!(listed.as_object().unwrap(), t, "listed as told");
    }
    let capped = items.iter().find(|i| i["campaign"] == "capped-percent").unwrap();
    assert_eq!(
        (
            capped["kind"].as_str(),
            capped["value"].as_i64(),
            capped["max_discount"].as_i64(),
            capped["min_spend"].as_i64()
        ),
        (Some("percent"), Some(15), Some(20_000), Some(30_000)),
        "{capped}"
    );
    assert_eq!((capped["tiers"].clone(), capped["events"].clone()), (json!(["vip", "r"]), json!([EVENT])));
    // Another tab sees the same; another buyer sees none of them.
    let mut tab = Client::connect(a, &token).await;
    assert_eq!(my_coupons(&mut tab, None).await["coupons"], socket["coupons"]);
    assert_eq!(rest(server.buyer_token("someone-else")).await, json!({"items": []}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_embedded_start_has_the_demo_campaigns() {
    let server = TestServer::start(Backend::Memory).await;
    let demo = server.seller_token(DEMO);
    let listed: HashMap<String, Value> =
        list_all(server.addr, &demo).await.into_iter().map(|c| (c["id"].as_str().unwrap().to_owned(), c)).collect();
    let off = listed.get("demo-10000-off").unwrap_or_else(|| panic!("no demo-10000-off in {listed:?}"));
    assert_eq!(
        (off["kind"].as_str(), off["value"].as_i64(), off["min_spend"].as_i64(), off["stock"].as_i64()),
        (Some("fixed"), Some(10_000), Some(50_000), Some(300)),
        "{off}"
    );
    assert_eq!(
        (off["issued"].as_i64(), off["remaining"].as_i64(), off["active"].as_bool(), off["paused"].as_bool()),
        (Some(0), Some(300), Some(true), Some(false)),
        "{off}"
    );
    assert_eq!(off["events"], json!([EVENT]));
    assert_eq!(off["seller"], DEMO);
    let pct = listed.get("demo-10-percent").unwrap_or_else(|| panic!("no demo-10-percent in {listed:?}"));
    assert_eq!(
        (pct["kind"].as_str(), pct["value"].as_i64(), pct["active"].as_bool()),
        (Some("percent"), Some(10), Some(true)),
        "{pct}"
    );
    let offers = http(server.addr, "GET", &format!("/api/v1/events/{EVENT}/campaigns"), None, None).await.unwrap();
    assert_eq!(offers.status, 200, "{}", offers.body);
    let offered = ids(offers.json()["items"].as_array().unwrap());
    assert!(offered.contains("demo-10000-off") && offered.contains("demo-10-percent"), "{offered:?}");
    let mut c = server.buyer("first-buyer").await;
    let r = claim(&mut c, "demo-10000-off").await;
    assert_eq!(r["type"], "coupon", "{r}");
    assert_eq!(view(server.addr, &demo, "demo-10000-off").await["remaining"], 299);
    server.stop().await;
}
