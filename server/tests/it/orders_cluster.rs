//! Orders on many nodes, as in production: two server processes on one
//! Redis, one Kafka (librdkafka's mock cluster, over loopback TCP), one
//! Postgres and one payment sandbox. A buyer pays on one node; their other
//! socket, on the other node, hears of the order and the payment, and a
//! watcher there sees the seats sold; a refund on one node frees the seats
//! for watchers on the other. Charges are counted in the sandbox's ledger.

use std::time::Duration;

use futures_util::future::join_all;
use qt_protocol::Role;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{
    Backend, ChildServer, Client, EVENT, MapView, Options, PgDatabase, claims, http, mint, mock_kafka, purge_redis,
    sandbox_charges, seed_catalogue, shared_sandbox,
};
use crate::orders::{
    DOORS_OPEN, WAIT, admitted, buyer_token, cancel, charge_becomes, final_payment, holding_at, key, my_order,
    order_becomes, order_for, pay_to_the_end, sees, strings, until,
};

const SECRET: &str = "orders-cluster-secret-0123456789";

fn node(backend: &Backend, db: &PgDatabase, brokers: &str, name: &str) -> Options {
    let mut opts = Options::new(backend.clone());
    opts.database_url = Some(db.url.clone());
    opts.node_id = Some(name.into());
    opts.secret = SECRET.into();
    opts.kafka = Some(brokers.into());
    // Both nodes confirm with the one sandbox of this test process (the
    // harness's default for Redis-backed servers; said here to be plain).
    opts.pg_base_url = Some(crate::common::sandbox_url(shared_sandbox()));
    opts.child_args = vec!["--ws-msgs-per-s".into(), "1000".into()];
    opts
}

fn token(user: &str) -> String {
    buyer_token(SECRET, user)
}

fn seller_token() -> String {
    let mut c = claims("demo-admin", Role::Seller, 3_600);
    c.seller = Some("demo".into());
    mint(SECRET.as_bytes(), &c)
}

/// Two nodes on fresh Redis keys, a mock Kafka and a Postgres database of
/// their own, with the demo event open to everyone.
struct Cluster {
    a: ChildServer,
    b: ChildServer,
    prefix: String,
    db: PgDatabase,
    _kafka: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl Cluster {
    async fn start() -> Self {
        let db = PgDatabase::create("qt_it_orders").await;
        seed_catalogue(&db.url, &DOORS_OPEN).await;
        let backend = Backend::redis().await;
        let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
        let kafka = mock_kafka(1);
        let brokers = kafka.bootstrap_servers();
        let a = ChildServer::start(&node(&backend, &db, &brokers, "node-a")).await;
        let b = ChildServer::start(&node(&backend, &db, &brokers, "node-b")).await;
        let cluster = Self { a, b, prefix, db, _kafka: kafka };
        cluster.warm_up().await;
        cluster
    }

    /// Order pushes and seat diffs reach sockets on both nodes: consumers
    /// that joined the mock cluster late see only what came after, so this
    /// repeats a checkout and cancel (each announced) until both nodes pass
    /// them on.
    async fn warm_up(&self) {
        let t = token("warm");
        let mut actor = holding_at(self.a.addr, &t, &["E-20-24"]).await;
        let mut on_a = Client::connect(self.a.addr, &t).await;
        let mut on_b = Client::connect(self.b.addr, &t).await;
        let mut watch_a = Client::connect(self.a.addr, &token("warm-watch")).await;
        let mut watch_b = Client::connect(self.b.addr, &token("warm-watch")).await;
        let mut map_a = MapView::from_snapshot(&watch_a.watch(EVENT).await);
        let mut map_b = MapView::from_snapshot(&watch_b.watch(EVENT).await);
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut pushed_a, mut pushed_b, mut diffs_a, mut diffs_b) = (false, false, false, false);
        let mut round = 0;
        while !(pushed_a && pushed_b && diffs_a && diffs_b) {
            assert!(
                Instant::now() < deadline,
                "the nodes never passed on order pushes and seat diffs: {pushed_a} {pushed_b} {diffs_a} {diffs_b}"
            );
            round += 1;
            let (id, _) = order_for(&mut actor, None).await;
            assert_eq!(cancel(&mut actor, &id).await["status"], "cancelled");
            // A seat diff: one more seat held and let go.
            let seat = format!("E-20-{}", 1 + round % 20);
            assert_eq!(actor.hold(EVENT, [seat.as_str()]).await["type"], "held");
            assert_eq!(actor.release(EVENT, [seat.as_str()]).await["type"], "released");
            let wait = Duration::from_secs(2);
            let is_cancel = |v: &Value| v["type"] == "order" && v["order"] == id.as_str();
            pushed_a |= seen(&mut on_a, wait, is_cancel).await;
            pushed_b |= seen(&mut on_b, wait, is_cancel).await;
            diffs_a |= saw_diff(&mut watch_a, &mut map_a, wait).await;
            diffs_b |= saw_diff(&mut watch_b, &mut map_b, wait).await;
        }
    }

    async fn finish(self) {
        self.a.kill().await;
        self.b.kill().await;
        purge_redis(&self.prefix).await;
        self.db.finish().await;
    }
}

/// Whether a frame matching `want` came within `wait`.
async fn seen(c: &mut Client, wait: Duration, want: impl Fn(&Value) -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_recv(left).await {
            Some(v) if want(&v) => return true,
            Some(_) => {}
            None => return false,
        }
    }
}

/// Whether a `seats` diff came within `wait` (applied to `map`).
async fn saw_diff(c: &mut Client, map: &mut MapView, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut any = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_recv(left).await {
            Some(v) if v["type"] == "seats" => {
                if !map.apply(&v) {
                    *map = MapView::from_snapshot(&c.watch(EVENT).await);
                }
                any = true;
            }
            Some(_) => {}
            None => return any,
        }
    }
}

/// One buyer's journey: pays on `pay_at`, with a second socket and a
/// watcher on `other`.
async fn journey(pay_at: std::net::SocketAddr, other: std::net::SocketAddr, prefix: &str, seats: Vec<String>) {
    let want = if prefix == "decline" { "failed" } else { "paid" };
    let user = format!("u-{prefix}");
    let t = token(&user);
    let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
    let mut tab1 = holding_at(pay_at, &t, &refs).await;
    let mut tab2 = Client::connect(other, &t).await;
    let mut watcher = Client::connect(other, &token(&format!("w-{prefix}"))).await;
    let (id, order) = order_for(&mut tab1, None).await;
    let outcome = pay_to_the_end(&mut tab1, &id, &key(prefix)).await;
    assert_eq!(outcome["status"], want, "{prefix}: {outcome}");
    // The other node tells the buyer's other socket: the order, then the
    // payment's outcome.
    let told = until(&mut tab2, WAIT, "order push", |v| {
        v["type"] == "order" && v["order"] == id.as_str() && v["status"] != "pending"
    })
    .await;
    assert_eq!(told["status"], want, "{prefix}: the order on the other node: {told}");
    let pushed = final_payment(&mut tab2, &id).await;
    assert_eq!(pushed["status"], want, "{prefix} on the other node: {pushed}");
    let charged = sandbox_charges(&crate::common::sandbox_url(shared_sandbox()), Some(&id)).await;
    if want == "paid" {
        assert_eq!(charged.len(), 1, "{prefix}: one charge: {charged:?}");
        assert_eq!(charged[0]["amount"], order["total"], "{prefix}");
        sees(&mut watcher, &seats, "sold", WAIT).await;
        assert_eq!(my_order(other, &t, &id).await["status"], "paid", "{prefix}: the other node's record");
    } else {
        assert!(charged.is_empty(), "{prefix}: no charge: {charged:?}");
        // The buyer keeps the seats, held, to try again.
        sees(&mut watcher, &seats, "held", WAIT).await;
        assert_eq!(my_order(other, &t, &id).await["status"], "failed");
    }
}

/// Every sandbox outcome end to end: pay on one node; the buyer's socket on
/// the other node gets the outcome, a watcher there sees the seats sold;
/// one charge per paid order, none for a decline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_reaches_the_other_node() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let journeys = ["ok", "decline", "flaky", "slow", "lost"].into_iter().enumerate().map(|(i, prefix)| {
        let seats = strings(&[&format!("C-{}-1", i + 1), &format!("C-{}-2", i + 1)]);
        // Alternate which node takes the payment.
        let (pay_at, other) = if i % 2 == 0 { (a, b) } else { (b, a) };
        tokio::spawn(journey(pay_at, other, prefix, seats))
    });
    for done in join_all(journeys).await {
        done.expect("a journey");
    }
    cluster.finish().await;
}

/// A refund on one node frees the seats for watchers on the other, and the
/// buyer's socket there hears of it; a buyer's own refund likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_on_one_node_frees_the_seats_on_the_other() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.a.addr, cluster.b.addr);
    let pg = crate::common::sandbox_url(shared_sandbox());
    let seats = strings(&["D-5-1", "D-5-2"]);
    let t = token("u-refund");
    let mut buyer = holding_at(a, &t, &["D-5-1", "D-5-2"]).await;
    let mut watcher = Client::connect(a, &token("w-refund")).await;
    let (id, _) = order_for(&mut buyer, None).await;
    assert_eq!(pay_to_the_end(&mut buyer, &id, &key("ok")).await["status"], "paid");
    sees(&mut watcher, &seats, "sold", WAIT).await;

    let path = format!("/api/v1/seller/orders/{id}/refund");
    let r = http(b, "POST", &path, Some(&seller_token()), Some(json!({"reason": "cancelled show"}))).await;
    let r = r.expect("refund");
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("refunded")), "{}", r.body);
    charge_becomes(&pg, &id, "CANCELED").await;
    sees(&mut watcher, &seats, "free", WAIT).await;
    until(&mut buyer, WAIT, "refunded order push", |v| {
        v["type"] == "order" && v["order"] == id.as_str() && v["status"] == "refunded"
    })
    .await;
    assert_eq!(my_order(a, &t, &id).await["status"], "refunded");

    // Bought again on node B, refunded by its buyer on node A.
    let t2 = token("u-again");
    let mut again = holding_at(b, &t2, &["D-5-1", "D-5-2"]).await;
    let (id2, _) = order_for(&mut again, None).await;
    assert_eq!(pay_to_the_end(&mut again, &id2, &key("ok")).await["status"], "paid");
    sees(&mut watcher, &seats, "sold", WAIT).await;
    let mut on_a = admitted(a, &t2).await;
    let v = cancel(&mut on_a, &id2).await;
    assert_eq!((v["type"].as_str(), v["status"].as_str()), (Some("order"), Some("refunded")), "{v}");
    charge_becomes(&pg, &id2, "CANCELED").await;
    sees(&mut watcher, &seats, "free", WAIT).await;
    order_becomes(b, &t2, &id2, "refunded", Duration::from_secs(10)).await;
    assert_eq!(sandbox_charges(&pg, Some(&id)).await.len(), 1);
    assert_eq!(sandbox_charges(&pg, Some(&id2)).await.len(), 1);
    cluster.finish().await;
}
