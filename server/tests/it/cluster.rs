//! Many nodes on one Redis and one Postgres, as in production: one admitter
//! per event between them, and a killed admitter replaced in seconds.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::common::{
    Backend, ChildServer, Client, EVENT, Options, PgDatabase, REDIS_URL, TestServer, http, position, purge_redis,
};

fn shared(backend: &Backend, db: &PgDatabase, node: &str, secret: &str) -> Options {
    let mut opts = Options::new(backend.clone());
    opts.database_url = Some(db.url.clone());
    opts.node_id = Some(node.into());
    opts.secret = secret.into();
    opts
}

async fn lease_holder(prefix: &str) -> Option<String> {
    let client = redis::Client::open(REDIS_URL).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("HGET").arg(format!("{prefix}:q:{{{EVENT}}}:lease")).arg("node").query_async(&mut conn).await.ok()?
}

/// Spawns a task per client that reports the instant it was admitted.
fn watch_admissions(clients: Vec<Client>) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    for mut c in clients {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(v) = c.try_recv(Duration::from_secs(60)).await {
                if v["type"] == "admitted" {
                    let _ = tx.send((c.user.clone(), Instant::now()));
                    return;
                }
            }
        });
    }
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_admit_exactly_the_rate_between_them() {
    let db = PgDatabase::create("qt_it").await;
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let secret = "cluster-secret-0123456789abcdef";
    let a = TestServer::start_with(shared(&backend, &db, "node-a", secret)).await;
    let b = TestServer::start_with(shared(&backend, &db, "node-b", secret)).await;
    a.patch_queue(json!({"paused": true, "rate_per_min": 600, "max_active": 10_000})).await;

    let mut clients = Vec::new();
    for i in 0..160 {
        let node = if i % 2 == 0 { &a } else { &b };
        let mut c = node.buyer(&format!("c{i:03}")).await;
        assert_eq!(position(&c.join(EVENT).await), i + 1, "one line across both nodes");
        clients.push(c);
    }
    // A buyer who moves from node A to node B keeps the place.
    clients.remove(0).close().await;
    let mut moved = b.buyer("c000").await;
    assert_eq!(position(&moved.join(EVENT).await), 1);
    clients.insert(0, moved);

    let mut admitted = watch_admissions(clients);
    // Pausing was set through node A; un-pausing through node B: both read
    // the live settings from Redis.
    b.patch_queue(json!({"paused": false})).await;
    // The measured span: five seconds of admissions (the sleep is the
    // window under test, not a wait for something to happen).
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.patch_queue(json!({"paused": true})).await;
    // Admissions still on their way to the other node's sockets arrive.
    let mut order = Vec::new();
    while let Ok(Some((user, _))) = tokio::time::timeout(Duration::from_millis(1_500), admitted.recv()).await {
        order.push(user);
    }
    // 10/s for 5 s plus the one-second bank of 10; two independent
    // admitters would have let about twice as many in.
    assert!((50..=72).contains(&order.len()), "admitted {} in 5 s at 600/min", order.len());
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order.len(), sorted.len());
    assert_eq!(
        sorted,
        (0..order.len()).map(|i| format!("c{i:03}")).collect::<Vec<_>>(),
        "the head of the line, no one skipped"
    );
    a.stop().await;
    b.stop().await;
    purge_redis(&prefix).await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_admitter_is_replaced_within_five_seconds() {
    let db = PgDatabase::create("qt_it").await;
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let secret = "cluster-secret-0123456789abcdef";
    // The child starts first, so it takes the lease.
    let doomed = ChildServer::start(&shared(&backend, &db, "doomed", secret)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while lease_holder(&prefix).await.as_deref() != Some("doomed") {
        assert!(Instant::now() < deadline, "the first node never took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = http(doomed.addr, "GET", "/api/v1/events", None, None).await.unwrap().json();
    assert_eq!(listed[0]["id"], EVENT, "the child serves the shared catalogue");
    let survivor = TestServer::start_with(shared(&backend, &db, "survivor", secret)).await;
    survivor.patch_queue(json!({"paused": true, "rate_per_min": 600, "max_active": 10_000})).await;
    let mut clients = Vec::new();
    for i in 0..120 {
        let mut c = survivor.buyer(&format!("k{i:03}")).await;
        c.join(EVENT).await;
        clients.push(c);
    }
    let mut admitted = watch_admissions(clients);
    survivor.patch_queue(json!({"paused": false})).await;
    // Admissions flow under the doomed node's lease…
    for _ in 0..15 {
        tokio::time::timeout(Duration::from_secs(5), admitted.recv()).await.expect("admissions flow").unwrap();
    }
    assert_eq!(lease_holder(&prefix).await.as_deref(), Some("doomed"));
    let killed_at = Instant::now();
    doomed.kill().await;
    // …then stop, and resume under the survivor's within 5 s.
    let mut resumed_at = None;
    while let Ok(Some((_, at))) = tokio::time::timeout(Duration::from_secs(8), admitted.recv()).await {
        if at > killed_at + Duration::from_millis(300) {
            resumed_at = Some(at);
            break;
        }
    }
    let gap = resumed_at.expect("admissions resumed") - killed_at;
    assert!(gap < Duration::from_secs(5), "admissions resumed {gap:?} after the kill");
    assert_eq!(lease_holder(&prefix).await.as_deref(), Some("survivor"));
    survivor.stop().await;
    purge_redis(&prefix).await;
    db.finish().await;
}
