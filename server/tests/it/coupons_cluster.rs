//! Coupons on many nodes, as in production: two server processes on one
//! Redis, one Kafka (librdkafka's mock cluster, over loopback TCP) and one
//! Postgres. A claim storm across both issues exactly the stock, once per
//! buyer; a node killed mid-storm loses no coupon a buyer was told about;
//! Redis, Postgres and the buyers' own lists agree once the writers drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use qt_protocol::{ClientMsg, Role};
use queueticket::clock::rfc3339;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{Value, json};
use sqlx::Row;

use crate::common::{
    Backend, ChildServer, Client, KAFKA_TOPIC, Options, PgDatabase, REDIS_URL, claims, http, mint, now_ms, purge_redis,
};

const COUPON_TOPIC: &str = "qt.coupon-claims";
const SECRET: &str = "coupon-cluster-secret-0123456789";

/// A mock Kafka with both topics the nodes use.
fn kafka() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster.create_topic(KAFKA_TOPIC, 3, 1).expect("the seat-diff topic");
    cluster.create_topic(COUPON_TOPIC, 4, 1).expect("the coupon topic");
    cluster
}

fn node(backend: &Backend, db: &PgDatabase, brokers: &str, name: &str) -> Options {
    let mut opts = Options::new(backend.clone());
    opts.database_url = Some(db.url.clone());
    opts.node_id = Some(name.into());
    opts.secret = SECRET.into();
    opts.kafka = Some(brokers.into());
    // Retries and second sockets send more than the default 20 a second.
    opts.child_args = vec!["--ws-msgs-per-s".into(), "1000".into()];
    opts
}

fn token(sub: &str, role: Role) -> String {
    let mut c = claims(sub, role, 3_600);
    if role == Role::Seller {
        c.seller = Some("demo".into());
    }
    mint(SECRET.as_bytes(), &c)
}

async fn create_campaign(n: &ChildServer, id: &str, stock: u64) {
    let now = now_ms();
    let body = json!({
        "id": id, "name": format!("Storm {id}"), "kind": "fixed", "value": 1_000, "stock": stock,
        "starts_at": rfc3339(now - 60_000), "ends_at": rfc3339(now + 3_600_000),
        "funded_by": {"seller": 100, "platform": 0},
    });
    let r = http(n.addr, "POST", "/api/v1/seller/campaigns", Some(&token("s", Role::Seller)), Some(body)).await;
    let r = r.expect("create the campaign");
    assert_eq!(r.status, 201, "{}", r.body);
}

/// What one socket was told, per claim.
type Told = Vec<(String, Value)>;

/// Each socket sends `claims` claims one after another (a buyer retrying
/// after its answer) and records every answer.
async fn storm(sockets: Vec<Client>, campaign: &str, claims: usize) -> Told {
    storm_counting(sockets, campaign, claims, Arc::default()).await
}

/// `storm`, counting `coupon` answers in `won` as they come.
async fn storm_counting(sockets: Vec<Client>, campaign: &str, claims: usize, won: Arc<AtomicUsize>) -> Told {
    let tasks = sockets.into_iter().map(|mut c| {
        let (campaign, won) = (campaign.to_string(), won.clone());
        tokio::spawn(async move {
            let mut told = Vec::new();
            for _ in 0..claims {
                let Some(v) = try_claim(&mut c, &campaign).await else { break };
                if v["type"] == "coupon" {
                    won.fetch_add(1, Ordering::SeqCst);
                }
                told.push((c.user.clone(), v));
            }
            told
        })
    });
    join_all(tasks).await.into_iter().flat_map(|t| t.expect("a storm task")).collect()
}

/// A claim's answer, or `None` when the socket is gone (its node died).
async fn try_claim(c: &mut Client, campaign: &str) -> Option<Value> {
    let req = rand::random::<u32>() as i64;
    let msg = ClientMsg::ClaimCoupon { campaign: campaign.into() };
    c.send_msg_checked(&msg, req).await.ok()?;
    loop {
        let v = c.try_recv(Duration::from_secs(20)).await?;
        if v["req"] == json!(req) {
            return Some(v);
        }
    }
}

/// Coupon ids by winner; panics on a buyer told two different coupons.
fn winners(told: &Told) -> HashMap<String, String> {
    let mut won: HashMap<String, String> = HashMap::new();
    for (user, v) in told {
        if v["type"] == "coupon" {
            let id = v["coupon"].as_str().expect("a coupon id").to_string();
            if let Some(before) = won.insert(user.clone(), id.clone()) {
                assert_eq!(before, id, "{user} was told two different coupons");
            }
        }
    }
    won
}

async fn rows(db: &PgDatabase, campaign: &str) -> HashMap<String, String> {
    let pool = sqlx::PgPool::connect(&db.url).await.expect("Postgres");
    let rows = sqlx::query("SELECT user_id, id FROM coupons WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_all(&pool)
        .await
        .expect("read coupons");
    pool.close().await;
    let by_user: HashMap<String, String> =
        rows.iter().map(|r| (r.get::<String, _>("user_id"), r.get::<String, _>("id"))).collect();
    assert_eq!(by_user.len(), rows.len(), "no buyer has two coupons of {campaign}");
    by_user
}

/// The database once the writers have caught up with `want` rows (or
/// what it has after 30 s).
async fn drained_rows(db: &PgDatabase, campaign: &str, want: usize) -> HashMap<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = rows(db, campaign).await;
        if got.len() >= want || tokio::time::Instant::now() > deadline {
            // A little longer, so a row past `want` would show too.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return rows(db, campaign).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn redis_counts(prefix: &str, campaign: &str) -> (i64, HashMap<String, String>) {
    let client = redis::Client::open(REDIS_URL).expect("Redis");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis");
    let base = format!("{prefix}:coupon:{{{campaign}}}");
    let issued: i64 = redis::cmd("GET").arg(format!("{base}:issued")).query_async(&mut conn).await.unwrap_or(-1);
    let claims: HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("{base}:claims")).query_async(&mut conn).await.expect("the claims hash");
    (issued, claims)
}

/// Buyers `0..n`, each with a socket on one node, the first `both` with a
/// second socket on the other node too.
async fn sockets(a: &ChildServer, b: &ChildServer, n: usize, both: usize, tag: &str) -> Vec<Client> {
    let connects = (0..n).flat_map(|i| {
        let user = format!("{tag}-{i:04}");
        let (first, second) = if i % 2 == 0 { (a.addr, b.addr) } else { (b.addr, a.addr) };
        let mut addrs = vec![first];
        if i < both {
            addrs.push(second);
        }
        addrs.into_iter().map(move |addr| {
            let user = user.clone();
            async move {
                let mut c = Client::connect(addr, &token(&user, Role::Buyer)).await;
                c.user = user;
                c
            }
        })
    });
    let mut all = Vec::new();
    // In waves, so the accept queues never overflow into connect retries.
    let connects: Vec<_> = connects.collect();
    let mut connects = connects.into_iter();
    loop {
        let wave: Vec<_> = connects.by_ref().take(200).collect();
        if wave.is_empty() {
            break;
        }
        all.extend(join_all(wave).await);
    }
    all
}

fn tally(told: &Told) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for (_, v) in told {
        let key =
            if v["type"] == "coupon" { "coupon".to_string() } else { v["code"].as_str().unwrap_or("?").to_string() };
        *by.entry(key).or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_issue_exactly_the_stock_once_per_buyer() {
    let db = PgDatabase::create("qt_it_coupons").await;
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let kafka = kafka();
    let brokers = kafka.bootstrap_servers();
    let a = ChildServer::start(&node(&backend, &db, &brokers, "node-a")).await;
    let b = ChildServer::start(&node(&backend, &db, &brokers, "node-b")).await;
    create_campaign(&a, "storm", 300).await;

    // 2,000 buyers, 200 of them on both nodes at once: 2,200 sockets, each
    // claiming until it has sent its share of 5,000 claims.
    let all = sockets(&a, &b, 2_000, 200, "buyer").await;
    assert_eq!(all.len(), 2_200);
    let (first, rest): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 11 < 3);
    let (first, rest): (Vec<Client>, Vec<Client>) =
        (first.into_iter().map(|(_, c)| c).collect(), rest.into_iter().map(|(_, c)| c).collect());
    // 600 sockets claim three times, 1,600 twice: 1,800 + 3,200 = 5,000.
    let (told_a, told_b) = tokio::join!(storm(first, "storm", 3), storm(rest, "storm", 2));
    let told: Told = told_a.into_iter().chain(told_b).collect();
    assert_eq!(told.len(), 5_000, "every claim answered");
    let by = tally(&told);
    let won = winners(&told);
    assert_eq!(won.len(), 300, "exactly the stock: {by:?}");
    assert_eq!(
        by.get("coupon").copied().unwrap_or(0)
            + by.get("sold_out").copied().unwrap_or(0)
            + by.get("already_claimed").copied().unwrap_or(0),
        5_000,
        "every loser told sold_out or already_claimed: {by:?}"
    );
    // A buyer's second coupon answer can only be the same coupon (it never
    // is: a second claim is `already_claimed`).
    assert_eq!(by["coupon"], 300, "one `coupon` per winner: {by:?}");

    let stored = drained_rows(&db, "storm", 300).await;
    assert_eq!(stored, won, "Postgres holds exactly what buyers were told");
    let (issued, claims) = redis_counts(&prefix, "storm").await;
    assert_eq!(issued, 300, "Redis issued");
    assert_eq!(claims.len(), 300, "Redis knows each winner");
    assert!(claims.keys().all(|u| won.contains_key(u)), "Redis's buyers are the winners");
    let seller = http(a.addr, "GET", "/api/v1/seller/campaigns/storm", Some(&token("s", Role::Seller)), None).await;
    let seller = seller.expect("the campaign").json();
    assert_eq!((seller["issued"].as_i64(), seller["remaining"].as_i64()), (Some(300), Some(0)), "{seller}");

    // Each winner sees its coupon, asking the other node.
    for (i, (user, coupon)) in won.iter().enumerate().take(40) {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let r = http(addr, "GET", "/api/v1/me/coupons", Some(&token(user, Role::Buyer)), None).await.expect("mine");
        let ids: Vec<String> = r.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["coupon"].as_str().unwrap_or("").into())
            .collect();
        assert_eq!(ids, vec![coupon.clone()], "{user}'s coupons");
    }
    for n in [&a, &b] {
        assert_eq!(crate::common::metric(n.addr, "qt_coupon_claims_refused_by_db_total").await, 0.0);
    }
    a.kill().await;
    b.kill().await;
    purge_redis(&prefix).await;
    drop(kafka);
    db.finish().await;
}

/// SIGKILL of one node while both take claims; it restarts on the same
/// Redis, Kafka and Postgres. Every coupon a buyer was told about is stored,
/// none twice, and claiming resumes to exactly the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_storm_loses_no_told_coupon() {
    let db = PgDatabase::create("qt_it_coupons").await;
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let kafka = kafka();
    let brokers = kafka.bootstrap_servers();
    let opts_a = node(&backend, &db, &brokers, "node-a");
    let a = ChildServer::start(&opts_a).await;
    let b = ChildServer::start(&node(&backend, &db, &brokers, "node-b")).await;
    create_campaign(&b, "crash", 600).await;

    // The storm goes to the node that dies, so it dies with claims in flight.
    let all = sockets(&a, &a, 1_000, 0, "crash").await;
    let won_so_far = Arc::new(AtomicUsize::new(0));
    let storming = tokio::spawn(storm_counting(all, "crash", 3, won_so_far.clone()));
    while won_so_far.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.kill().await;
    let told = storming.await.expect("the storm");
    let won_before = winners(&told);
    assert!((1..600).contains(&won_before.len()), "the kill came mid-storm: {} told", won_before.len());

    // Claims the dead node left pending are taken over once its heartbeat
    // (2 s) has lapsed; until then a buyer's retry is `already_claimed`.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let a = ChildServer::start(&opts_a).await;
    // Everyone claims again, on both nodes: winners are told
    // `already_claimed`, the rest get what stock is left.
    let again = sockets(&a, &b, 1_000, 0, "crash").await;
    let told_after = storm(again, "crash", 1).await;
    let by = tally(&told_after);
    let known = ["coupon", "sold_out", "already_claimed"];
    assert!(by.keys().all(|k| known.contains(&k.as_str())), "only the three outcomes: {by:?}");
    for (user, v) in &told_after {
        if won_before.contains_key(user) {
            assert_eq!(v["code"], "already_claimed", "{user} won before the kill: {v}");
        }
    }
    let won_after = winners(&told_after);
    let mut won = won_before.clone();
    for (user, coupon) in &won_after {
        assert!(won.insert(user.clone(), coupon.clone()).is_none(), "{user} won twice");
    }

    let stored = drained_rows(&db, "crash", 600).await;
    let missing: Vec<_> = won.iter().filter(|(u, c)| stored.get(*u) != Some(c)).collect();
    assert!(missing.is_empty(), "coupons buyers were told about and the database lacks: {missing:?}");
    assert_eq!(
        stored.len(),
        600,
        "the whole stock, once: told {} before the kill ({:?}), {} after ({by:?})",
        won_before.len(),
        tally(&told),
        won_after.len()
    );
    // A claim the kill cut off between Kafka and the buyer's socket is a
    // coupon all the same: its buyer is told `already_claimed` and finds it
    // in their coupons.
    let untold: Vec<_> = stored.iter().filter(|(u, _)| !won.contains_key(*u)).collect();
    for (user, coupon) in &untold {
        let answer = told_after.iter().find(|(u, _)| u == *user).map(|(_, v)| v["code"].clone());
        assert_eq!(answer, Some(json!("already_claimed")), "{user} has {coupon} and was told otherwise");
        let r = http(b.addr, "GET", "/api/v1/me/coupons", Some(&token(user, Role::Buyer)), None).await;
        let items = r.expect("mine").json()["items"].clone();
        assert_eq!(items[0]["coupon"], json!(coupon), "{user} sees the coupon the kill did not tell them of");
    }
    let already: usize = by.get("already_claimed").copied().unwrap_or(0);
    assert_eq!(already, won_before.len() + untold.len(), "`already_claimed` only to buyers with a coupon");
    let (issued, _) = redis_counts(&prefix, "crash").await;
    assert_eq!(issued, 600);
    a.kill().await;
    b.kill().await;
    purge_redis(&prefix).await;
    drop(kafka);
    db.finish().await;
}
