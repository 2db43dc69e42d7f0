//! Checkout and payment end to end: every sandbox outcome over the socket,
//! on both backends, with the charges the sandbox recorded counted; a
//! buyer tampering with orders, coupons and payment keys; what checkout
//! prices and keeps; refunds by sellers and buyers; late payments racing
//! for re-taken seats; and (embedded, as child processes killed with
//! SIGKILL at the server's crash points) a restart that loses nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;
use qt_protocol::Role;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::common::{
    Backend, ChildServer, Client, EVENT, MapView, Options, TestServer, add_demo_copy, catalogue_sql, claims, http,
    mint, sandbox_charges, seeded, store_map, temp_dir, time_ms,
};

pub(crate) const DOORS_OPEN: [(&str, i64); 3] =
    [("rate_per_min", 1_000_000), ("max_active", 100_000), ("max_seats_per_buyer", 4)];
pub(crate) const WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ helpers

/// A payment key of `prefix`, unique to this call (sandbox keys name one
/// payment).
pub(crate) fn key(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

pub(crate) fn buyer_token(secret: &str, user: &str) -> String {
    mint(secret.as_bytes(), &claims(user, Role::Buyer, 3_600))
}

/// A buyer on `addr`, admitted to the demo event.
pub(crate) async fn admitted(addr: SocketAddr, token: &str) -> Client {
    let mut c = Client::connect(addr, token).await;
    let joined = c.join(EVENT).await;
    assert_eq!(joined["type"], "admitted", "{joined}");
    c
}

/// A buyer admitted to the demo event, holding `seats`.
async fn holding(server: &TestServer, user: &str, seats: &[&str]) -> Client {
    holding_at(server.addr, &server.buyer_token(user), seats).await
}

pub(crate) async fn holding_at(addr: SocketAddr, token: &str, seats: &[&str]) -> Client {
    let mut c = admitted(addr, token).await;
    let held = c.hold(EVENT, seats.iter().copied()).await;
    assert_eq!(held["type"], "held", "{held}");
    c
}

pub(crate) async fn checkout(c: &mut Client, coupon: Option<&str>) -> Value {
    let mut msg = json!({"type": "checkout", "event": EVENT});
    if let Some(coupon) = coupon {
        msg["coupon"] = json!(coupon);
    }
    c.request(msg).await
}

/// `checkout` that must answer a pending order; its id and the order.
pub(crate) async fn order_for(c: &mut Client, coupon: Option<&str>) -> (String, Value) {
    let order = checkout(c, coupon).await;
    assert_eq!(order["type"], "order", "{order}");
    assert_eq!(order["status"], "pending", "{order}");
    (order["order"].as_str().expect("an order id").to_owned(), order)
}

pub(crate) async fn pay(c: &mut Client, order: &str, payment_key: &str) -> Value {
    c.request(json!({"type": "pay", "order": order, "payment_key": payment_key})).await
}

pub(crate) async fn cancel(c: &mut Client, order: &str) -> Value {
    c.request(json!({"type": "cancel_order", "order": order})).await
}

/// The next frame matching `want`, skipping others.
pub(crate) async fn until(c: &mut Client, within: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = c.try_recv(left).await.unwrap_or_else(|| panic!("no {what} for {} in {within:?}", c.user));
        if want(&v) {
            return v;
        }
    }
}

/// The final `payment` push for `order` (after a `pending` answer).
pub(crate) async fn final_payment(c: &mut Client, order: &str) -> Value {
    until(c, WAIT, "final payment", |p| p["type"] == "payment" && p["order"] == order && p["status"] != "pending").await
}

/// `pay`, then the final outcome (the pushed one after a `pending` answer).
pub(crate) async fn pay_to_the_end(c: &mut Client, order: &str, payment_key: &str) -> Value {
    let paid = pay(c, order, payment_key).await;
    assert_eq!(paid["type"], "payment", "{paid}");
    if paid["status"] == "pending" { final_payment(c, order).await } else { paid }
}

pub(crate) fn assert_error(v: &Value, code: &str) {
    assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some(code)), "{v}");
}

/// One page of the buyer's orders (`query` like `?limit=2`).
pub(crate) async fn my_orders(addr: SocketAddr, token: &str, query: &str) -> Value {
    let r = http(addr, "GET", &format!("/api/v1/me/orders{query}"), Some(token), None).await.expect("my orders");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

pub(crate) fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every order the buyer has, newest first, page by page.
pub(crate) async fn all_my_orders(addr: SocketAddr, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = "?limit=100".to_owned();
    loop {
        let page = my_orders(addr, token, &query).await;
        all.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=100&after={}", encode(next)),
            None => return all,
        }
    }
}

/// The buyer's order `id` as `GET /api/v1/me/orders` shows it.
pub(crate) async fn my_order(addr: SocketAddr, token: &str, id: &str) -> Value {
    let all = all_my_orders(addr, token).await;
    all.into_iter().find(|o| o["order"] == id).unwrap_or_else(|| panic!("order {id} is not in the buyer's orders"))
}

/// Waits until the buyer's order `id` has `status`.
pub(crate) async fn order_becomes(addr: SocketAddr, token: &str, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let o = my_order(addr, token, id).await;
        if o["status"] == status {
            return o;
        }
        assert!(Instant::now() < deadline, "order {id} never became {status}: {o}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every order of the seller's event, through the seller's REST list.
pub(crate) async fn seller_orders(addr: SocketAddr, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = format!("?event={EVENT}&limit=500");
    loop {
        let r = http(addr, "GET", &format!("/api/v1/seller/orders{query}"), Some(token), None).await.expect("orders");
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json();
        all.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next"].as_str() {
            Some(next) => query = format!("?event={EVENT}&limit=500&after={}", encode(next)),
            None => return all,
        }
    }
}

pub(crate) fn seats_of(order: &Value) -> Vec<String> {
    order["seats"].as_array().expect("seats").iter().map(|s| s.as_str().expect("a seat id").to_owned()).collect()
}

/// Watches the demo event on `c` and reads its diffs until every one of
/// `seats` shows `status` (re-watching after a gap, as a client must).
pub(crate) async fn sees(c: &mut Client, seats: &[String], status: &str, within: Duration) {
    let mut map = MapView::from_snapshot(&c.watch(EVENT).await);
    let deadline = Instant::now() + within;
    loop {
        if seats.iter().all(|s| map.status.get(s).map(String::as_str) == Some(status)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let shown: Vec<_> = seats.iter().map(|s| (s, map.status.get(s).cloned())).collect();
        assert!(!left.is_zero(), "the watcher never saw {seats:?} {status}: {shown:?}");
        match c.try_recv(left).await {
            Some(v) if v["type"] == "seats" && !map.apply(&v) => map = MapView::from_snapshot(&c.watch(EVENT).await),
            Some(v) if v["type"] == "seatmap" => map = MapView::from_snapshot(&v),
            _ => {}
        }
    }
}

pub(crate) fn strings(seats: &[&str]) -> Vec<String> {
    seats.iter().map(|s| (*s).to_owned()).collect()
}

// ------------------------------------------------------------ every outcome

async fn pays_with(backend: Backend, prefix: &str, want: &str) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut buyer = holding(&server, "u-pay", &["C-3-5", "C-3-6"]).await;
    let order = buyer.request(json!({"type": "checkout", "event": EVENT, "req": 1})).await;
    assert_eq!(order["type"], "order", "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["seats"], json!(["C-3-5", "C-3-6"]));
    let id = order["order"].as_str().unwrap().to_owned();
    let paid = pay_to_the_end(&mut buyer, &id, &key(prefix)).await;
    assert_eq!(paid["status"], want, "{paid}");
    let recorded = server.charges(&id).await;
    if want == "paid" {
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["amount"], order["total"]);
        // Every watcher sees the seats sold.
        let mut watcher = server.buyer("u-watch").await;
        sees(&mut watcher, &strings(&["C-3-5", "C-3-6"]), "sold", WAIT).await;
        let sold: Vec<String> = store_map(server.addr, EVENT)
            .await
            .status
            .into_iter()
            .filter(|(_, s)| s == "sold")
            .map(|(id, _)| id)
            .collect();
        assert_eq!(sold.into_iter().collect::<BTreeSet<_>>(), ["C-3-5", "C-3-6"].map(String::from).into());
    } else {
        assert!(recorded.is_empty(), "{recorded:?}");
    }
    server.stop().await;
}

async fn ok_is_paid(backend: Backend) {
    pays_with(backend, "ok", "paid").await;
}

async fn decline_fails(backend: Backend) {
    pays_with(backend, "decline", "failed").await;
}

async fn flaky_is_paid(backend: Backend) {
    pays_with(backend, "flaky", "paid").await;
}

async fn slow_is_paid(backend: Backend) {
    pays_with(backend, "slow", "paid").await;
}

async fn lost_is_paid(backend: Backend) {
    pays_with(backend, "lost", "paid").await;
}

// ------------------------------------------------------------ tampering

/// Someone else's order can be neither paid nor cancelled: it is as absent
/// as a missing one, and nothing is charged; its buyer pays it afterwards.
async fn someone_elses_order_is_not_found(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut owner = holding(&server, "u-owner", &["C-4-1"]).await;
    let (id, _) = order_for(&mut owner, None).await;
    let mut thief = holding(&server, "u-thief", &["C-4-9"]).await;
    assert_error(&pay(&mut thief, &id, &key("ok")).await, "not_found");
    assert_error(&cancel(&mut thief, &id).await, "not_found");
    assert_error(&pay(&mut thief, "ord-00000000000000000000000000000000", &key("ok")).await, "not_found");
    assert!(server.charges(&id).await.is_empty(), "nothing charged for someone else's pay");
    assert_eq!(my_order(server.addr, &server.buyer_token("u-owner"), &id).await["status"], "pending");
    let thiefs = all_my_orders(server.addr, &server.buyer_token("u-thief")).await;
    assert!(thiefs.is_empty(), "another buyer's orders never show: {thiefs:?}");
    assert_eq!(pay_to_the_end(&mut owner, &id, &key("ok")).await["status"], "paid");
    assert_eq!(server.charges(&id).await.len(), 1);
    server.stop().await;
}

/// A second `pay` of a paid order answers the same `payment` and charges
/// nothing, with the same key or another; two sockets paying at once with
/// different keys charge once.
async fn paying_twice_charges_once(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut buyer = holding(&server, "u-twice", &["C-5-1", "C-5-2"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    let first = key("ok");
    let paid = pay(&mut buyer, &id, &first).await;
    assert_eq!((paid["type"].as_str(), paid["status"].as_str()), (Some("payment"), Some("paid")), "{paid}");
    for again in [first.clone(), key("ok"), key("slow"), key("decline")] {
        let v = pay(&mut buyer, &id, &again).await;
        assert_eq!(v["type"], "payment", "{again}: {v}");
        assert_eq!(v["order"], id.as_str());
        assert_eq!(v["status"], "paid", "{again}: {v}");
    }
    let charged = server.charges(&id).await;
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(charged[0]["paymentKey"], first.as_str());

    // Two tabs of one buyer press pay at the same moment.
    let token = server.buyer_token("u-race");
    let mut tab1 = holding_at(server.addr, &token, &["C-6-1"]).await;
    let mut tab2 = Client::connect(server.addr, &token).await;
    let (id, _) = order_for(&mut tab1, None).await;
    let (k1, k2) = (key("ok"), key("ok"));
    let (a, b) = tokio::join!(pay(&mut tab1, &id, &k1), pay(&mut tab2, &id, &k2));
    for v in [&a, &b] {
        let fine = v["type"] == "payment" || v["code"] == "conflict";
        assert!(fine, "a payment or `conflict` (another payment in progress): {v}");
    }
    order_becomes(server.addr, &token, &id, "paid", WAIT).await;
    let charged = server.charges(&id).await;
    assert_eq!(charged.len(), 1, "one charge for two simultaneous pays: {charged:?}");
    // Whichever key won, paying again reports it paid.
    assert_eq!(pay(&mut tab2, &id, &k2).await["status"], "paid");
    server.stop().await;
}

/// `pay` after the order's time ran out: `order_expired`, and no charge.
async fn paying_an_expired_order_is_order_expired(backend: Backend) {
    let mut settings = DOORS_OPEN.to_vec();
    settings.push(("hold_s", 1));
    let server = TestServer::start_with(seeded(&backend, &settings).await).await;
    let mut buyer = holding(&server, "u-late", &["C-7-1"]).await;
    let (id, order) = order_for(&mut buyer, None).await;
    let ends = time_ms(&order["expires_at"]);
    let left = (ends - crate::common::now_ms()).max(0) as u64;
    assert!(left <= 3_000, "a 1 s hold makes a short order: {order}");
    // Past its end (the server's clock decides, not the sweep).
    tokio::time::sleep(Duration::from_millis(left + 300)).await;
    assert_error(&pay(&mut buyer, &id, &key("ok")).await, "order_expired");
    assert!(server.charges(&id).await.is_empty());
    let token = server.buyer_token("u-late");
    order_becomes(server.addr, &token, &id, "expired", Duration::from_secs(10)).await;
    // And still after the sweep.
    assert_error(&pay(&mut buyer, &id, &key("ok")).await, "order_expired");
    assert!(server.charges(&id).await.is_empty());
    server.stop().await;
}

/// `checkout` needs an admission to that very event.
async fn checkout_needs_an_admission_to_that_event(backend: Backend) {
    let opts = seeded(&backend, &DOORS_OPEN).await;
    add_demo_copy(opts.database_url.as_deref().expect("a catalogue"), "other-live").await;
    let server = TestServer::start_with(opts).await;
    // Never joined.
    let mut stranger = server.buyer("u-stranger").await;
    assert_error(&checkout(&mut stranger, None).await, "not_admitted");
    // Admitted to the demo event and holding there; checks out another.
    let mut buyer = holding(&server, "u-elsewhere", &["C-8-1"]).await;
    let other = buyer.request(json!({"type": "checkout", "event": "other-live"})).await;
    assert_error(&other, "not_admitted");
    // Holding in the demo event does not make an order of another event.
    let mine = all_my_orders(server.addr, &server.buyer_token("u-elsewhere")).await;
    assert!(mine.is_empty(), "{mine:?}");
    let (_, order) = order_for(&mut buyer, None).await;
    assert_eq!(order["event"], EVENT);
    server.stop().await;
}

/// "`hold`, `hold_best`, `checkout` and `pay` need the buyer to be admitted
/// to that event (`not_admitted` otherwise)": a buyer who gave up the place
/// (`leave`) cannot pay the order made while admitted, and is not charged.
async fn paying_after_leaving_is_not_admitted(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut buyer = holding(&server, "u-left", &["C-8-5"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(buyer.leave(EVENT).await["type"], "left");
    let answer = pay(&mut buyer, &id, &key("ok")).await;
    assert_error(&answer, "not_admitted");
    assert!(server.charges(&id).await.is_empty(), "no charge without an admission");
    server.stop().await;
}

/// A payment key that paid one order cannot pay another: that payment
/// fails and nothing is charged for the second order.
async fn a_payment_key_of_another_order_charges_nothing(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut first = holding(&server, "u-key-a", &["C-9-1"]).await;
    let (a, _) = order_for(&mut first, None).await;
    let used = key("ok");
    assert_eq!(pay_to_the_end(&mut first, &a, &used).await["status"], "paid");
    let mut second = holding(&server, "u-key-b", &["C-9-2"]).await;
    let (b, _) = order_for(&mut second, None).await;
    let reused = pay_to_the_end(&mut second, &b, &used).await;
    assert_eq!(reused["status"], "failed", "{reused}");
    assert!(reused["reason"].as_str().is_some_and(|r| !r.is_empty()), "a failure says why: {reused}");
    assert!(server.charges(&b).await.is_empty(), "nothing charged for order B");
    assert_eq!(server.charges(&a).await.len(), 1, "order A keeps its one charge");
    // The order failed for good; its buyer still holds the seat, and a
    // fresh checkout pays.
    let (b2, _) = order_for(&mut second, None).await;
    assert_eq!(pay_to_the_end(&mut second, &b2, &key("ok")).await["status"], "paid");
    assert_eq!(server.charges(&b2).await.len(), 1);
    server.stop().await;
}

/// The gateway approves but its reply names another amount: the order is
/// not paid, the money goes back (the charge is CANCELED), no seat is sold.
async fn a_forged_amount_is_refunded_and_sells_nothing(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let seats = ["C-10-1", "C-10-2"];
    let token = server.buyer_token("u-forged");
    let mut buyer = holding(&server, "u-forged", &seats).await;
    let (id, order) = order_for(&mut buyer, None).await;
    let outcome = pay_to_the_end(&mut buyer, &id, &key("forged")).await;
    assert_eq!(outcome["status"], "failed", "{outcome}");
    // The refund goes through the gateway: wait for the ledger to show it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let charged = loop {
        let charged = server.charges(&id).await;
        if charged.iter().all(|c| c["status"] == "CANCELED") || Instant::now() > deadline {
            break charged;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(charged.len(), 1, "{charged:?}");
    assert_eq!(charged[0]["status"], "CANCELED", "the forged charge was cancelled: {charged:?}");
    assert_eq!(charged[0]["amount"], order["total"]);
    let now = my_order(server.addr, &token, &id).await;
    assert!(["failed", "refunded"].contains(&now["status"].as_str().unwrap_or("")), "not paid: {now}");
    let map = store_map(server.addr, EVENT).await;
    for seat in seats {
        assert_ne!(map.status[seat], "sold", "{seat} was not sold");
    }
    let mut watcher = server.buyer("u-watch").await;
    let snapshot = MapView::from_snapshot(&watcher.watch(EVENT).await);
    assert!(snapshot.status.values().all(|s| s != "sold"), "no seat is sold");
    server.stop().await;
}

/// `checkout` with nothing held is a `bad_request`.
async fn checkout_without_holds_is_bad_request(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut buyer = admitted(server.addr, &server.buyer_token("u-empty")).await;
    assert_error(&checkout(&mut buyer, None).await, "bad_request");
    // Held, released: nothing held again.
    assert_eq!(buyer.hold(EVENT, ["C-11-1"]).await["type"], "held");
    assert_eq!(buyer.release(EVENT, ["C-11-1"]).await["type"], "released");
    assert_error(&checkout(&mut buyer, None).await, "bad_request");
    assert!(all_my_orders(server.addr, &server.buyer_token("u-empty")).await.is_empty());
    server.stop().await;
}

/// A coupon id that is not the buyer's (another buyer's, or made up) is
/// `not_active` with a message, and leaves the holds checkout-able.
async fn a_coupon_that_is_not_yours_is_not_active(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut owner = server.buyer("u-coupon-owner").await;
    let claimed = owner.request(json!({"type": "claim_coupon", "campaign": "demo-10-percent"})).await;
    assert_eq!(claimed["type"], "coupon", "{claimed}");
    let theirs = claimed["coupon"].as_str().expect("a coupon id").to_owned();
    let mut buyer = holding(&server, "u-coupon-thief", &["C-12-1", "C-12-2"]).await;
    for coupon in [theirs.as_str(), "no-such-coupon"] {
        let v = checkout(&mut buyer, Some(coupon)).await;
        assert_error(&v, "not_active");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "says why: {v}");
    }
    assert!(all_my_orders(server.addr, &server.buyer_token("u-coupon-thief")).await.is_empty());
    let (_, order) = order_for(&mut buyer, None).await;
    assert_eq!((order["discount"].as_i64(), order["coupon"].clone()), (Some(0), Value::Null), "{order}");
    // The owner's coupon is untouched.
    let r = http(server.addr, "GET", "/api/v1/me/coupons", Some(&server.buyer_token("u-coupon-owner")), None).await;
    let items = r.expect("coupons").json()["items"].clone();
    assert_eq!(items[0]["coupon"], theirs.as_str(), "{items}");
    server.stop().await;
}

// ------------------------------------------------------------ checkout

/// `best` picks the largest discount and says why; the lines carry the
/// event's tier prices; the holds are extended once; a second checkout
/// replaces the first order.
async fn checkout_prices_the_best_coupon_and_extends_holds_once(backend: Backend) {
    // Orders end with the shopping window at the latest: a window longer
    // than the holds leaves room to extend them.
    let mut settings = DOORS_OPEN.to_vec();
    settings.push(("window_s", 3_600));
    let server = TestServer::start_with(seeded(&backend, &settings).await).await;
    let token = server.buyer_token("u-best");
    let mut buyer = admitted(server.addr, &token).await;
    let mut coupons = HashMap::new();
    for campaign in ["demo-10000-off", "demo-10-percent"] {
        let v = buyer.request(json!({"type": "claim_coupon", "campaign": campaign})).await;
        assert_eq!(v["type"], "coupon", "{v}");
        coupons.insert(campaign, v["coupon"].as_str().unwrap().to_owned());
    }
    // A VIP seat and an S seat: 198,000 + 132,000. 10% is 33,000, capped at
    // 30,000; the other is 10,000 off.
    let seats = ["B-1-1", "A-10-1"];
    let held = buyer.hold(EVENT, seats).await;
    assert_eq!(held["type"], "held", "{held}");
    let held_until = time_ms(&held["expires_at"]);

    let event = http(server.addr, "GET", &format!("/api/v1/events/{EVENT}"), None, None).await.expect("event").json();
    let prices: HashMap<String, i64> = event["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["price"].as_i64().unwrap()))
        .collect();
    let map = http(server.addr, "GET", &format!("/api/v1/events/{EVENT}/seatmap"), None, None).await.unwrap().json();
    let tier_of: HashMap<String, String> = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["tier"].as_str().unwrap().to_owned()))
        .collect();

    let (first, order) = order_for(&mut buyer, Some("best")).await;
    assert_eq!(order["coupon"], coupons["demo-10-percent"].as_str(), "{order}");
    assert_eq!(order["discount"], 30_000, "{order}");
    let reason = order["coupon_reason"].as_str().unwrap_or_else(|| panic!("coupon_reason: {order}"));
    assert!(!reason.is_empty());
    let lines = order["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2, "{order}");
    let mut subtotal = 0;
    for line in lines {
        let seat = line["seat"].as_str().unwrap();
        let tier = line["tier"].as_str().unwrap();
        assert_eq!(tier, tier_of[seat], "{seat}'s tier");
        assert_eq!(line["price"].as_i64(), Some(prices[tier]), "{seat}'s price is its tier's");
        subtotal += prices[tier];
    }
    assert_eq!(subtotal, 198_000 + 132_000);
    assert_eq!(order["subtotal"], subtotal);
    assert_eq!(order["total"].as_i64(), Some(subtotal - 30_000));
    assert_eq!(order["currency"], "KRW");
    assert_eq!(order["seats"].as_array().unwrap().len(), 2);
    // The holds last longer for the payment, once.
    let until = time_ms(&order["expires_at"]);
    let extended = until - held_until;
    assert!((590_000..=610_000).contains(&extended), "checkout extends the holds by hold_s: {until} vs {held_until}");
    buyer.watch(EVENT).await;
    let own = until_held(&mut buyer).await;
    assert_eq!(time_ms(&own["expires_at"]), until, "the holds end with the order: {own}");

    // A second checkout (no coupon now) replaces the first order and
    // extends nothing.
    let (second, again) = order_for(&mut buyer, None).await;
    assert_ne!(second, first);
    assert_eq!((again["discount"].as_i64(), again["total"].as_i64()), (Some(0), Some(subtotal)), "{again}");
    assert!(again.get("coupon_reason").is_none_or(Value::is_null), "no coupon asked, no reason: {again}");
    assert_eq!(time_ms(&again["expires_at"]), until, "the holds are extended once only");
    assert_eq!(my_order(server.addr, &token, &first).await["status"], "cancelled");
    assert_eq!(my_order(server.addr, &token, &second).await["status"], "pending");
    // The coupon the first order kept is free for the next one.
    let (_, third) = order_for(&mut buyer, Some(&coupons["demo-10-percent"])).await;
    assert_eq!(third["discount"], 30_000, "{third}");
    server.stop().await;
}

async fn until_held(c: &mut Client) -> Value {
    until(c, Duration::from_secs(10), "held", |v| v["type"] == "held").await
}

/// Cancelling an unpaid order keeps the seats held by the buyer, and a new
/// checkout works.
async fn cancelled_order_keeps_the_holds(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let seats = ["D-12-3", "D-12-4"];
    let token = server.buyer_token("u-cancel");
    let mut buyer = holding(&server, "u-cancel", &seats).await;
    let (id, _) = order_for(&mut buyer, None).await;
    let cancelled = cancel(&mut buyer, &id).await;
    assert_eq!((cancelled["type"].as_str(), cancelled["status"].as_str()), (Some("order"), Some("cancelled")));
    assert_eq!(cancelled["order"], id.as_str());
    // Cancelling again: the same answer.
    assert_eq!(cancel(&mut buyer, &id).await["status"], "cancelled");
    assert_eq!(my_order(server.addr, &token, &id).await["status"], "cancelled");
    assert_error(&pay(&mut buyer, &id, &key("ok")).await, "bad_request");
    let map = store_map(server.addr, EVENT).await;
    for seat in seats {
        assert_eq!(map.status[seat], "held", "{seat} stays held");
    }
    buyer.watch(EVENT).await;
    let own = until_held(&mut buyer).await;
    let own_seats: BTreeSet<&str> = own["seats"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(own_seats, seats.into(), "still the buyer's own: {own}");
    // Another buyer cannot take them.
    let mut other = admitted(server.addr, &server.buyer_token("u-other")).await;
    assert_error(&other.hold(EVENT, seats).await, "seat_unavailable");
    let (again, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay_to_the_end(&mut buyer, &again, &key("ok")).await["status"], "paid");
    assert!(server.charges(&id).await.is_empty());
    assert_eq!(server.charges(&again).await.len(), 1);
    server.stop().await;
}

/// `GET /api/v1/me/orders`: the buyer's own orders, newest first, in pages.
async fn my_orders_are_newest_first_in_pages(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let token = server.buyer_token("u-pages");
    let mut buyer = holding(&server, "u-pages", &["E-2-1"]).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let (id, _) = order_for(&mut buyer, None).await;
        made.push(id);
        // Distinct creation times.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(pay_to_the_end(&mut buyer, &made[2], &key("ok")).await["status"], "paid");
    // Someone else's order never shows.
    let mut other = holding(&server, "u-pages-other", &["E-2-9"]).await;
    order_for(&mut other, None).await;

    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    let all = my_orders(server.addr, &token, "").await;
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|o| o["order"].as_str().unwrap()).collect();
    assert_eq!(ids, newest_first, "{all}");
    assert!(all["next"].is_null(), "one page: {all}");
    let statuses: Vec<&str> = all["items"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["paid", "cancelled", "cancelled"]);
    let created: Vec<i64> = all["items"].as_array().unwrap().iter().map(|o| time_ms(&o["created_at"])).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");

    let page1 = my_orders(server.addr, &token, "?limit=2").await;
    let ids1: Vec<&str> = page1["items"].as_array().unwrap().iter().map(|o| o["order"].as_str().unwrap()).collect();
    assert_eq!(ids1, newest_first[..2], "{page1}");
    let next = page1["next"].as_str().unwrap_or_else(|| panic!("a cursor after a full page: {page1}"));
    let page2 = my_orders(server.addr, &token, &format!("?limit=2&after={}", encode(next))).await;
    let ids2: Vec<&str> = page2["items"].as_array().unwrap().iter().map(|o| o["order"].as_str().unwrap()).collect();
    assert_eq!(ids2, newest_first[2..], "{page2}");
    assert!(page2["next"].is_null(), "{page2}");

    // Bad paging is a clear error; no token is 401.
    let r = http(server.addr, "GET", "/api/v1/me/orders?after=garbage", Some(&token), None).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(server.addr, "GET", "/api/v1/me/orders", None, None).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    server.stop().await;
}

/// The buyer's other socket hears of the order when it becomes paid.
async fn the_order_push_reaches_the_buyers_other_socket(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let token = server.buyer_token("u-tabs");
    let mut tab1 = holding_at(server.addr, &token, &["A-5-1", "A-5-2"]).await;
    let mut tab2 = Client::connect(server.addr, &token).await;
    let (id, _) = order_for(&mut tab1, None).await;
    assert_eq!(pay(&mut tab1, &id, &key("ok")).await["status"], "paid");
    let order = until(&mut tab2, Duration::from_secs(20), "paid order push", |v| {
        v["type"] == "order" && v["order"] == id.as_str() && v["status"] == "paid"
    })
    .await;
    assert_eq!(order["seats"], json!(["A-5-1", "A-5-2"]), "{order}");
    let payment = until(&mut tab2, Duration::from_secs(20), "payment push", |v| {
        v["type"] == "payment" && v["order"] == id.as_str()
    })
    .await;
    assert_eq!(payment["status"], "paid", "{payment}");
    assert!(payment.get("req").is_none(), "a push carries no req: {payment}");
    server.stop().await;
}

/// A `pending` answer (a slow gateway) is followed by the final `payment`
/// on every socket of the buyer.
async fn a_pending_answer_is_followed_by_the_outcome_on_every_socket(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let token = server.buyer_token("u-slow");
    let mut tab1 = holding_at(server.addr, &token, &["A-6-1"]).await;
    let mut tab2 = Client::connect(server.addr, &token).await;
    let mut tab3 = Client::connect(server.addr, &token).await;
    let (id, _) = order_for(&mut tab1, None).await;
    let answer = pay(&mut tab1, &id, &key("slow")).await;
    assert_eq!(answer["status"], "pending", "a slow gateway answers later: {answer}");
    // Asking again meanwhile: still pending, no second charge.
    let again = pay(&mut tab2, &id, &answer_key_of(&server, &id).await).await;
    assert!(again["status"] == "pending" || again["status"] == "paid", "{again}");
    let (a, b, c) =
        tokio::join!(final_payment(&mut tab1, &id), final_payment(&mut tab2, &id), final_payment(&mut tab3, &id));
    for p in [a, b, c] {
        assert_eq!(p["status"], "paid", "{p}");
    }
    assert_eq!(server.charges(&id).await.len(), 1);
    server.stop().await;
}

/// The payment key the sandbox recorded for `order` (waits for the charge).
async fn answer_key_of(server: &TestServer, order: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = server.charges(order).await.first() {
            return c["paymentKey"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no charge for {order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------ refunds

pub(crate) async fn charge_becomes(pg_base: &str, order: &str, status: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let charged = sandbox_charges(pg_base, Some(order)).await;
        if charged.len() == 1 && charged[0]["status"] == status {
            return charged;
        }
        assert!(Instant::now() < deadline, "the charge of {order} never became {status}: {charged:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seller refunds a paid order through the gateway; its seats go back
/// on sale for every watcher. Another seller sees no such order; a buyer
/// may not use the route.
async fn the_seller_refunds_a_paid_order(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let seats = strings(&["B-6-1", "B-6-2"]);
    let mut buyer = holding(&server, "u-refund", &["B-6-1", "B-6-2"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
    let mut watcher = server.buyer("u-refund-watch").await;
    sees(&mut watcher, &seats, "sold", WAIT).await;

    let path = format!("/api/v1/seller/orders/{id}/refund");
    let body = json!({"reason": "the show moved"});
    let other = http(server.addr, "POST", &path, Some(&server.seller_token("other")), Some(body.clone())).await;
    assert_eq!(other.unwrap().status, 404, "another seller's order is not found");
    let as_buyer = http(server.addr, "POST", &path, Some(&server.buyer_token("u-refund")), Some(body.clone())).await;
    assert_eq!(as_buyer.unwrap().status, 403, "a buyer may not use the seller route");
    let missing = "/api/v1/seller/orders/ord-ffffffffffffffffffffffffffffffff/refund";
    let r = http(server.addr, "POST", missing, Some(&server.seller_token("demo")), Some(body.clone())).await;
    assert_eq!(r.unwrap().status, 404);
    let r = http(server.addr, "POST", &path, Some(&server.seller_token("demo")), Some(json!({"reason": ""}))).await;
    let r = r.unwrap();
    assert_eq!(r.status, 400, "an empty reason: {}", r.body);
    assert!(r.json()["error"]["fields"]["reason"].is_string(), "{}", r.body);
    // Nothing of that changed the order.
    assert_eq!(charge_becomes(&server.pg_base, &id, "DONE").await.len(), 1);

    let r = http(server.addr, "POST", &path, Some(&server.seller_token("demo")), Some(body.clone())).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let refunded = r.json();
    assert_eq!((refunded["order"].as_str(), refunded["status"].as_str()), (Some(id.as_str()), Some("refunded")));
    charge_becomes(&server.pg_base, &id, "CANCELED").await;
    sees(&mut watcher, &seats, "free", WAIT).await;
    // Again: the same answer, no second refund.
    let r = http(server.addr, "POST", &path, Some(&server.seller_token("demo")), Some(body)).await.unwrap();
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("refunded")), "{}", r.body);
    assert_eq!(sandbox_charges(&server.pg_base, Some(&id)).await.len(), 1);
    // The buyer is told, and sees it in their orders.
    until(&mut buyer, Duration::from_secs(20), "refunded order push", |v| {
        v["type"] == "order" && v["order"] == id.as_str() && v["status"] == "refunded"
    })
    .await;
    assert_eq!(my_order(server.addr, &server.buyer_token("u-refund"), &id).await["status"], "refunded");
    // The seats can be bought again.
    let mut next = holding(&server, "u-refund-next", &["B-6-1", "B-6-2"]).await;
    let (again, _) = order_for(&mut next, None).await;
    assert_eq!(pay_to_the_end(&mut next, &again, &key("ok")).await["status"], "paid");
    server.stop().await;
}

/// The demo event lets buyers refund until a day before the show:
/// `cancel_order` of a paid order refunds it.
async fn a_buyer_cancels_a_paid_order_under_the_policy(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let seats = strings(&["B-7-1"]);
    let mut buyer = holding(&server, "u-regret", &["B-7-1"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
    let mut watcher = server.buyer("u-regret-watch").await;
    sees(&mut watcher, &seats, "sold", WAIT).await;
    let v = cancel(&mut buyer, &id).await;
    assert_eq!((v["type"].as_str(), v["status"].as_str()), (Some("order"), Some("refunded")), "{v}");
    charge_becomes(&server.pg_base, &id, "CANCELED").await;
    sees(&mut watcher, &seats, "free", WAIT).await;
    assert_eq!(my_order(server.addr, &server.buyer_token("u-regret"), &id).await["status"], "refunded");
    assert_eq!(sandbox_charges(&server.pg_base, Some(&id)).await.len(), 1);
    server.stop().await;
}

/// `cancel_order` again for an order it refunded (a retry after a dropped
/// answer, another tab): the same `order` answer, as for a cancelled one,
/// and no second refund.
async fn cancelling_a_refunded_order_again_answers_the_same(backend: Backend) {
    let server = TestServer::start_with(seeded(&backend, &DOORS_OPEN).await).await;
    let mut buyer = holding(&server, "u-retry", &["B-7-5"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
    assert_eq!(cancel(&mut buyer, &id).await["status"], "refunded");
    let again = cancel(&mut buyer, &id).await;
    assert_eq!(sandbox_charges(&server.pg_base, Some(&id)).await.len(), 1, "no second refund");
    assert_eq!((again["type"].as_str(), again["status"].as_str()), (Some("order"), Some("refunded")), "{again}");
    server.stop().await;
}

/// An event whose policy allows no buyer refund (none, or one that ended):
/// `cancel_order` of a paid order is `forbidden` and changes nothing.
async fn a_buyer_refund_outside_the_policy_is_forbidden(backend: Backend) {
    for policy in ["NULL", "1"] {
        let opts = seeded(&backend, &DOORS_OPEN).await;
        let url = opts.database_url.clone().expect("a catalogue");
        catalogue_sql(&url, &[&format!("UPDATE events SET refund_until_ms = {policy} WHERE id = '{EVENT}'")]).await;
        let server = TestServer::start_with(opts).await;
        let mut buyer = holding(&server, "u-no-refund", &["B-8-1"]).await;
        let (id, _) = order_for(&mut buyer, None).await;
        assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
        assert_error(&cancel(&mut buyer, &id).await, "forbidden");
        let token = server.buyer_token("u-no-refund");
        assert_eq!(my_order(server.addr, &token, &id).await["status"], "paid", "refund_until_ms = {policy}");
        assert_eq!(charge_becomes(&server.pg_base, &id, "DONE").await.len(), 1);
        let mut watcher = server.buyer("u-no-refund-watch").await;
        sees(&mut watcher, &strings(&["B-8-1"]), "sold", WAIT).await;
        // The seller still may.
        let path = format!("/api/v1/seller/orders/{id}/refund");
        let body = json!({"reason": "goodwill"});
        let r = http(server.addr, "POST", &path, Some(&server.seller_token("demo")), Some(body)).await.unwrap();
        assert_eq!((r.status, r.json()["status"].clone()), (200, json!("refunded")), "{}", r.body);
        server.stop().await;
        if let Backend::Redis(prefix) = &backend {
            // The next round starts from an empty seat store.
            crate::common::purge_redis(prefix).await;
        }
    }
}

// ------------------------------------------------------------ the race

/// Gateway timings that give up on a live attempt at once and look a
/// payment up soon after: an order whose payment is in flight is kept
/// for the in-doubt time plus the server's fixed 35 s margin.
fn impatient(c: &mut queueticket::config::ServerConfig) {
    c.pg_timeout_ms = 500;
    c.pg_retry_max_ms = 600;
    c.pg_in_doubt_after_ms = 700;
    c.ws_msgs_per_s = 1_000;
}

/// 100 buyers (A) hold a seat each, check out and pay while the gateway
/// has stopped answering (a frozen sandbox process); their orders expire
/// (the server keeps an order in payment for the in-doubt time plus 35 s)
/// and 100 others (B) hold 70 of those seats and 30 free ones. The gateway
/// comes back: A's payments land late (the requests it had queued, and the
/// reconciler's) while B pays (35 for A's seats, 30 for the free ones) and
/// 35 B buyers let A's seats go and grab them again. Whatever wins: no seat
/// is sold twice, every charge is a ticket or a refund, no order is
/// charged twice, every buyer is told the outcome.
async fn late_payments_never_sell_a_seat_twice(backend: Backend) {
    const HOLD_S: i64 = 3;
    let mut settings = DOORS_OPEN.to_vec();
    settings.push(("hold_s", HOLD_S));
    let mut opts = seeded(&backend, &settings).await;
    opts.tweak = impatient;
    let gateway = crate::common::SandboxProcess::start(5_000).await;
    opts.pg_base_url = Some(gateway.url());
    let server = TestServer::start_with(opts).await;
    let addr = server.addr;
    // 100 seats in rows 15 and 16 of sections A to D, and 30 others.
    let contested: Vec<String> = ["A", "B", "C", "D"]
        .iter()
        .flat_map(|section| (15..=16).flat_map(move |row| (1..=24).map(move |n| format!("{section}-{row}-{n}"))))
        .take(100)
        .collect();
    let free: Vec<String> = (1..=24).map(|n| format!("E-18-{n}")).chain((1..=6).map(|n| format!("E-19-{n}"))).collect();

    // A: hold, check out, pay into a gateway that does not answer.
    let a_buyers = join_all((0..100).map(|i| {
        let token = server.buyer_token(&format!("a-{i:03}"));
        let seat = contested[i].clone();
        async move {
            let mut c = holding_at(addr, &token, &[seat.as_str()]).await;
            let (id, _) = order_for(&mut c, None).await;
            (c, id, token)
        }
    }))
    .await;
    gateway.freeze();
    let a_buyers = join_all(a_buyers.into_iter().map(|(mut c, id, token)| async move {
        let answer = pay(&mut c, &id, &key("ok")).await;
        assert_eq!(answer["status"], "pending", "the gateway does not answer: {answer}");
        (c, id, token)
    }))
    .await;
    // Each A socket waits for its final outcome in the background.
    let a_tasks: Vec<_> = a_buyers
        .into_iter()
        .map(|(mut c, id, token)| {
            tokio::spawn(async move {
                // Told of the expiry first (orders are pushed as they change).
                until(&mut c, Duration::from_secs(90), "expired order push", |v| {
                    v["type"] == "order" && v["order"] == id.as_str() && v["status"] == "expired"
                })
                .await;
                let outcome = final_payment(&mut c, &id).await;
                (id, token, outcome)
            })
        })
        .collect();

    // The A orders expire while the gateway is away; then B holds.
    let seller = server.seller_token("demo");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let orders = seller_orders(addr, &seller).await;
        let pending = orders.iter().filter(|o| o["status"] == "pending").count();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} A orders never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b_seats: Vec<String> = contested[..70].iter().chain(free.iter()).cloned().collect();
    let b_buyers = join_all(b_seats.iter().enumerate().map(|(i, seat)| {
        let token = server.buyer_token(&format!("b-{i:03}"));
        let seat = seat.clone();
        async move {
            let mut c = admitted(addr, &token).await;
            // A's holds end by the server clock; a sweep may lag a little.
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                let held = c.hold(EVENT, [seat.as_str()]).await;
                if held["type"] == "held" {
                    break;
                }
                assert!(Instant::now() < deadline, "{seat} never came free for B: {held}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (id, _) = order_for(&mut c, None).await;
            (c, id, seat, token)
        }
    }))
    .await;

    // The gateway is back: the late approvals land as B moves.
    gateway.thaw();
    let b_tasks: Vec<_> = b_buyers
        .into_iter()
        .enumerate()
        .map(|(i, (mut c, id, seat, token))| {
            tokio::spawn(async move {
                if (35..70).contains(&i) {
                    // Let the seat go a while and grab it again: races A's
                    // late retake.
                    assert_eq!(cancel(&mut c, &id).await["status"], "cancelled");
                    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1_500)).await;
                    assert_eq!(c.release(EVENT, [seat.as_str()]).await["type"], "released");
                    tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 500)).await;
                    let held = c.hold(EVENT, [seat.as_str()]).await;
                    if held["type"] != "held" {
                        assert_error(&held, "seat_unavailable");
                        return (id, token, None);
                    }
                    let (again, _) = order_for(&mut c, None).await;
                    let outcome = pay_to_the_end(&mut c, &again, &key("ok")).await;
                    return (again, token, Some(outcome));
                }
                let outcome = pay_to_the_end(&mut c, &id, &key("ok")).await;
                (id, token, Some(outcome))
            })
        })
        .collect();

    let a_done: Vec<(String, String, Value)> =
        join_all(a_tasks).await.into_iter().map(|t| t.expect("an A task")).collect();
    let b_done: Vec<_> = join_all(b_tasks).await.into_iter().map(|t| t.expect("a B task")).collect();
    for (i, (_, _, outcome)) in a_done.iter().enumerate() {
        let status = outcome["status"].as_str().unwrap_or("");
        assert!(["paid", "failed"].contains(&status), "a-{i:03}: {outcome}");
        if i < 35 {
            assert_eq!(status, "failed", "a-{i:03}'s seat was B's, held and paid: {outcome}");
        }
        if i >= 70 {
            assert_eq!(status, "paid", "a-{i:03}'s seat stayed free: its late payment takes it: {outcome}");
        }
    }
    for (i, (_, _, outcome)) in b_done.iter().enumerate() {
        if let Some(outcome) = outcome {
            assert_eq!(outcome["status"], "paid", "b-{i:03}: {outcome}");
        } else {
            assert!((35..70).contains(&i));
        }
    }

    // The audit, once refunds due are through.
    let mut orders: Vec<Value>;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        orders = seller_orders(addr, &seller).await;
        let charges = sandbox_charges(&server.pg_base, None).await;
        let settled = charges.iter().all(|c| {
            let order = orders.iter().find(|o| o["order"] == c["orderId"]);
            matches!(
                order.map(|o| (o["status"].as_str(), c["status"].as_str())),
                Some((Some("paid"), Some("DONE"))) | Some((Some("refunded"), Some("CANCELED")))
            )
        });
        if settled || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let charges = sandbox_charges(&server.pg_base, None).await;
    audit(&orders, &charges, &server).await;
    let paid: usize = orders.iter().filter(|o| o["status"] == "paid").count();
    let won_by_a = a_done.iter().filter(|(_, _, o)| o["status"] == "paid").count();
    let won_by_b = b_done.iter().filter(|(_, _, o)| o.is_some()).count();
    assert_eq!(paid, won_by_a + won_by_b, "every paid order is one a buyer was told of");
    // Every contested seat went to exactly one buyer; the free ones to B.
    let sold = sold_by_order(&orders);
    for seat in contested.iter().chain(free.iter()) {
        assert!(sold.contains_key(seat), "{seat} was sold to someone");
    }
    // A's sockets agree with the record.
    for (id, _, outcome) in &a_done {
        let o = orders.iter().find(|o| o["order"] == id.as_str()).expect("A's order");
        let want = if outcome["status"] == "paid" { "paid" } else { "refunded" };
        assert_eq!(o["status"], want, "{outcome} vs {o}");
    }
    let raced = a_done[35..70].iter().filter(|(_, _, o)| o["status"] == "paid").count();
    eprintln!("late payments: {won_by_a} of 100 A buyers paid ({raced} of the 35 raced), {won_by_b} B buyers paid");
    server.stop().await;
}

/// seat → paid order, asserting no seat is in two paid orders.
fn sold_by_order(orders: &[Value]) -> BTreeMap<String, String> {
    let mut sold: BTreeMap<String, String> = BTreeMap::new();
    for o in orders.iter().filter(|o| o["status"] == "paid") {
        for seat in seats_of(o) {
            let id = o["order"].as_str().unwrap().to_owned();
            if let Some(before) = sold.insert(seat.clone(), id.clone()) {
                panic!("{seat} is sold twice: to {before} and {id}");
            }
        }
    }
    sold
}

/// Charges against orders: at most one per order, exactly one for each
/// order that was paid or refunded; a DONE charge is a paid order whose
/// seats are sold (in the store too), a CANCELED one a refunded order.
async fn audit(orders: &[Value], charges: &[Value], server: &TestServer) {
    let by_id: HashMap<&str, &Value> = orders.iter().map(|o| (o["order"].as_str().unwrap(), o)).collect();
    let mut per_order: HashMap<&str, Vec<&Value>> = HashMap::new();
    for c in charges {
        per_order.entry(c["orderId"].as_str().unwrap()).or_default().push(c);
    }
    for (order, charged) in &per_order {
        assert_eq!(charged.len(), 1, "{order} was charged {} times: {charged:?}", charged.len());
        let o = by_id.get(order).unwrap_or_else(|| panic!("a charge for an order nobody has: {order}"));
        let c = charged[0];
        assert_eq!(c["amount"], o["total"], "{order} charged its total");
        match (o["status"].as_str(), c["status"].as_str()) {
            (Some("paid"), Some("DONE")) | (Some("refunded"), Some("CANCELED")) => {}
            other => panic!("money without a ticket (or a ticket without money): {other:?}: {o} / {c}"),
        }
    }
    for o in orders {
        let id = o["order"].as_str().unwrap();
        if ["paid", "refunded"].contains(&o["status"].as_str().unwrap()) {
            assert!(per_order.contains_key(id), "{} order {id} has no charge", o["status"]);
        }
    }
    let sold = sold_by_order(orders);
    // The seat store shows each sold seat sold (once the outbox drained).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let map = store_map(server.addr, EVENT).await;
        let shown: BTreeSet<&String> = map.status.iter().filter(|(_, s)| *s == "sold").map(|(id, _)| id).collect();
        let record: BTreeSet<&String> = sold.keys().collect();
        if shown == record {
            break;
        }
        assert!(Instant::now() < deadline, "the seat store's sold seats differ from the paid orders'");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both_backends!(
    ok_is_paid,
    decline_fails,
    flaky_is_paid,
    slow_is_paid,
    lost_is_paid,
    someone_elses_order_is_not_found,
    paying_twice_charges_once,
    paying_an_expired_order_is_order_expired,
    checkout_needs_an_admission_to_that_event,
    paying_after_leaving_is_not_admitted,
    a_payment_key_of_another_order_charges_nothing,
    a_forged_amount_is_refunded_and_sells_nothing,
    checkout_without_holds_is_bad_request,
    a_coupon_that_is_not_yours_is_not_active,
    checkout_prices_the_best_coupon_and_extends_holds_once,
    cancelled_order_keeps_the_holds,
    my_orders_are_newest_first_in_pages,
    the_order_push_reaches_the_buyers_other_socket,
    a_pending_answer_is_followed_by_the_outcome_on_every_socket,
    the_seller_refunds_a_paid_order,
    a_buyer_cancels_a_paid_order_under_the_policy,
    cancelling_a_refunded_order_again_answers_the_same,
    a_buyer_refund_outside_the_policy_is_forbidden,
    late_payments_never_sell_a_seat_twice,
);

// ------------------------------------------------------------ crashes

/// An embedded child server's options on a seeded data directory, and
/// that directory.
async fn child_setup(settings: &[(&str, i64)]) -> (Options, TempDir) {
    let mut opts = seeded(&Backend::Memory, settings).await;
    let dir = opts.data_dir.take().expect("a data dir");
    opts.child_args = vec!["--ws-msgs-per-s".into(), "1000".into()];
    (opts, dir)
}

/// `opts` with the crash point armed (or not) and the log in `log`. A
/// restarted server (`restarted`) looks payments in flight up after 3 s
/// instead of 25 s, so a test need not wait out the default.
fn armed(opts: &Options, point: Option<&str>, log: PathBuf, restarted: bool) -> Options {
    let mut o = Options::new(Backend::Memory);
    o.database_url = opts.database_url.clone();
    o.secret = opts.secret.clone();
    o.child_args = opts.child_args.clone();
    if restarted {
        let fast = ["--pg-timeout-ms", "1000", "--pg-retry-max-ms", "2000", "--pg-in-doubt-after-ms", "3000"];
        o.child_args.extend(fast.map(String::from));
    }
    o.child_log = Some(log);
    if let Some(point) = point {
        o.child_env = vec![("QT_TEST_PAUSE_AT".into(), point.into())];
    }
    o
}

/// Waits for the child's `QT-PAUSED-AT <point>` line in its log.
async fn paused_at(log: &Path, point: &str, within: Duration) {
    let want = format!("QT-PAUSED-AT {point}");
    let deadline = Instant::now() + within;
    loop {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains(&want)) {
            return;
        }
        assert!(Instant::now() < deadline, "the child never paused at {point}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The child's charges for `order`, once there is one.
async fn one_charge(n: &ChildServer, order: &str) -> Vec<Value> {
    let charged = n.charges(order).await;
    assert_eq!(charged.len(), 1, "one charge for {order}: {charged:?}");
    charged
}

/// Killed between the gateway's approval and the commit of the sale, the
/// restarted server finds the payment in doubt, looks it up and sells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_approval_ends_paid_once() {
    let (opts, dir) = child_setup(&DOORS_OPEN).await;
    let logs = temp_dir();
    let seats = strings(&["C-2-1", "C-2-2"]);
    let node =
        ChildServer::start_in(&armed(&opts, Some("after_approval"), logs.path().join("1.log"), false), dir).await;
    let token = buyer_token(&opts.secret, "u-crash-a");
    let mut buyer = holding_at(node.addr, &token, &["C-2-1", "C-2-2"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    let answer = pay(&mut buyer, &id, &key("ok")).await;
    assert_eq!(answer["status"], "pending", "the sale never committed: {answer}");
    paused_at(&logs.path().join("1.log"), "after_approval", Duration::from_secs(10)).await;
    one_charge(&node, &id).await;
    let dir = node.kill_keeping_data().await;

    let node = ChildServer::start_in(&armed(&opts, None, logs.path().join("2.log"), true), dir).await;
    let mut watcher = Client::connect(node.addr, &buyer_token(&opts.secret, "u-crash-watch")).await;
    // The reconciler looks the payment in flight up.
    order_becomes(node.addr, &token, &id, "paid", Duration::from_secs(20)).await;
    sees(&mut watcher, &seats, "sold", Duration::from_secs(20)).await;
    // Paying again: the same answer, no second charge.
    let mut back = admitted(node.addr, &token).await;
    assert_eq!(pay(&mut back, &id, &key("ok")).await["status"], "paid");
    assert_eq!(one_charge(&node, &id).await[0]["status"], "DONE");
    node.kill().await;
}

/// Killed after the sale committed and before its announcement was
/// published: the restarted server publishes it; the seats are sold for
/// watchers and the ledger has the sale once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_publish_drains_the_outbox() {
    let (opts, dir) = child_setup(&DOORS_OPEN).await;
    let db = opts.database_url.clone().unwrap();
    let logs = temp_dir();
    let seats = strings(&["C-2-5", "C-2-6"]);
    let node =
        ChildServer::start_in(&armed(&opts, Some("before_publish"), logs.path().join("1.log"), false), dir).await;
    let token = buyer_token(&opts.secret, "u-crash-b");
    let mut buyer = holding_at(node.addr, &token, &["C-2-5", "C-2-6"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    let answer = pay(&mut buyer, &id, &key("ok")).await;
    assert_eq!(answer["status"], "paid", "{answer}");
    paused_at(&logs.path().join("1.log"), "before_publish", Duration::from_secs(10)).await;
    one_charge(&node, &id).await;
    assert!(unsent(&db, &id).await > 0, "the sale's announcement is not published yet");
    let dir = node.kill_keeping_data().await;

    let node = ChildServer::start_in(&armed(&opts, None, logs.path().join("2.log"), true), dir).await;
    let mut watcher = Client::connect(node.addr, &buyer_token(&opts.secret, "u-crash-watch")).await;
    sees(&mut watcher, &seats, "sold", Duration::from_secs(20)).await;
    assert_eq!(my_order(node.addr, &token, &id).await["status"], "paid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while unsent(&db, &id).await > 0 || sales(&db, &id).await == 0 {
        assert!(Instant::now() < deadline, "the outbox never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sales(&db, &id).await, 1, "the sale reached the ledger once");
    assert_eq!(one_charge(&node, &id).await[0]["status"], "DONE");
    node.kill().await;
}

async fn scalar(db: &str, sql: &str, order: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(db).await.expect("the database");
    let n: i64 = sqlx::query_scalar(sql).bind(order).fetch_one(&pool).await.expect(sql);
    pool.close().await;
    n
}

async fn unsent(db: &str, order: &str) -> i64 {
    scalar(db, "SELECT COUNT(*) FROM outbox WHERE order_id = $1 AND sent_ms IS NULL", order).await
}

async fn sales(db: &str, order: &str) -> i64 {
    scalar(db, "SELECT COUNT(*) FROM ledger_entries WHERE order_id = $1 AND kind = 'sale'", order).await
}

/// Killed after the approval, and again while the restarted server looks
/// the payment up: the third start ends it paid, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_lookup_ends_paid_once() {
    let (opts, dir) = child_setup(&DOORS_OPEN).await;
    let logs = temp_dir();
    let seats = strings(&["C-2-9"]);
    let node =
        ChildServer::start_in(&armed(&opts, Some("after_approval"), logs.path().join("1.log"), false), dir).await;
    let token = buyer_token(&opts.secret, "u-crash-c");
    let mut buyer = holding_at(node.addr, &token, &["C-2-9"]).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay(&mut buyer, &id, &key("ok")).await["status"], "pending");
    paused_at(&logs.path().join("1.log"), "after_approval", Duration::from_secs(10)).await;
    let dir = node.kill_keeping_data().await;

    let node = ChildServer::start_in(&armed(&opts, Some("during_lookup"), logs.path().join("2.log"), true), dir).await;
    paused_at(&logs.path().join("2.log"), "during_lookup", Duration::from_secs(40)).await;
    assert_eq!(my_order(node.addr, &token, &id).await["status"], "pending");
    let dir = node.kill_keeping_data().await;

    let node = ChildServer::start_in(&armed(&opts, None, logs.path().join("3.log"), true), dir).await;
    let mut watcher = Client::connect(node.addr, &buyer_token(&opts.secret, "u-crash-watch")).await;
    order_becomes(node.addr, &token, &id, "paid", Duration::from_secs(20)).await;
    sees(&mut watcher, &seats, "sold", Duration::from_secs(20)).await;
    assert_eq!(one_charge(&node, &id).await[0]["status"], "DONE");
    node.kill().await;
}

/// SIGKILL of an embedded server with buyers waiting, admitted, holding and
/// mid-payment; restarted on the same data directory, every buyer finds
/// the same place, window and holds, and the payment completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_restart_loses_nothing() {
    let settings = [("rate_per_min", 1_000_000), ("max_active", 3), ("max_seats_per_buyer", 4)];
    let (opts, dir) = child_setup(&settings).await;
    let logs = temp_dir();
    let node = ChildServer::start_in(&armed(&opts, None, logs.path().join("1.log"), false), dir).await;
    let token = |u: &str| buyer_token(&opts.secret, u);

    let mut holder = admitted(node.addr, &token("r-holder")).await;
    let held = holder.hold(EVENT, ["D-3-1", "D-3-2"]).await;
    assert_eq!(held["type"], "held", "{held}");
    let mut payer = holding_at(node.addr, &token("r-payer"), &["D-3-5"]).await;
    let (order, _) = order_for(&mut payer, None).await;
    assert_eq!(pay(&mut payer, &order, &key("slow")).await["status"], "pending");
    let mut idle = Client::connect(node.addr, &token("r-idle")).await;
    let window = idle.join(EVENT).await;
    assert_eq!(window["type"], "admitted", "{window}");
    let mut waiting = Vec::new();
    for i in 0..3 {
        let user = format!("r-wait-{i}");
        let mut c = Client::connect(node.addr, &token(&user)).await;
        let q = c.join(EVENT).await;
        assert_eq!(crate::common::position(&q), i + 1, "{q}");
        waiting.push((user, c));
    }
    let holder_window = holder.join(EVENT).await;
    let holder_window_ms = time_ms(&holder_window["expires_at"]);
    let window_ms = time_ms(&window["expires_at"]);
    let held_ms = time_ms(&held["expires_at"]);
    let dir = node.kill_keeping_data().await;
    drop((holder, payer, idle, waiting));

    let node = ChildServer::start_in(&armed(&opts, None, logs.path().join("2.log"), true), dir).await;
    for i in 0..3u64 {
        let mut c = Client::connect(node.addr, &token(&format!("r-wait-{i}"))).await;
        let q = c.join(EVENT).await;
        assert_eq!(crate::common::position(&q), i + 1, "the same place after the restart: {q}");
    }
    let mut idle = Client::connect(node.addr, &token("r-idle")).await;
    let again = idle.join(EVENT).await;
    assert_eq!(again["type"], "admitted", "still admitted: {again}");
    assert_eq!(time_ms(&again["expires_at"]), window_ms, "the same window end");
    let mut holder = Client::connect(node.addr, &token("r-holder")).await;
    let again = holder.join(EVENT).await;
    assert_eq!(time_ms(&again["expires_at"]), holder_window_ms, "the same window end");
    holder.watch(EVENT).await;
    let own = until_held(&mut holder).await;
    let own_seats: BTreeSet<&str> = own["seats"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(own_seats, ["D-3-1", "D-3-2"].into(), "the same holds: {own}");
    assert_eq!(time_ms(&own["expires_at"]), held_ms, "holds end when they would have");
    // The payment completes: its outcome is looked up after the restart.
    order_becomes(node.addr, &token("r-payer"), &order, "paid", Duration::from_secs(20)).await;
    assert_eq!(one_charge(&node, &order).await[0]["status"], "DONE");
    let mut watcher = Client::connect(node.addr, &token("r-watch")).await;
    sees(&mut watcher, &strings(&["D-3-5"]), "sold", Duration::from_secs(20)).await;
    node.kill().await;
}
