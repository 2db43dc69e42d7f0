//! The waiting room end to end, run once per adapter (memory, Redis).

use std::collections::HashSet;
use std::time::Duration;

use qt_protocol::ClientMsg;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{
    Backend, Client, EVENT, Options, REDIS_URL, TestServer, http, now_ms, position, purge_redis, seeded, time_ms,
};

on_both_backends!(
    thousand_buyers_get_distinct_places_and_are_admitted_in_order_at_the_rate,
    arrival_order_is_queue_order_and_a_buyer_has_one_place,
    a_short_disconnect_keeps_the_place_and_a_long_one_loses_it,
    hold_without_a_pass_is_not_admitted,
    rest_pollers_get_the_same_answers_as_sockets,
    admitted_at_once_without_pressure_with_a_bound_pass,
    leaving_gives_the_place_up_everywhere,
    a_window_ends_and_frees_its_slot,
    the_eta_before_the_on_sale_counts_from_the_on_sale,
    the_end_of_a_window_is_pushed_to_the_buyer,
    every_tab_of_the_buyer_hears_the_window_end,
    a_buyer_admitted_at_once_hears_the_window_end,
);

fn until_ms(admitted: &Value) -> i64 {
    time_ms(&admitted["expires_at"])
}

async fn thousand_buyers_get_distinct_places_and_are_admitted_in_order_at_the_rate(backend: Backend) {
    const N: usize = 1_000;
    const RATE_PER_MIN: i64 = 12_000; // 200/s, 200 banked
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true, "rate_per_min": RATE_PER_MIN, "max_active": 100_000})).await;
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        clients.push(server.buyer(&format!("b{i:04}")).await);
    }
    // Everyone joins at once.
    for c in &mut clients {
        c.send_msg(&ClientMsg::Join { event: EVENT.into() }, Some(1)).await;
    }
    let (pushed_tx, mut pushed_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(N);
    for mut c in clients {
        let pushed_tx = pushed_tx.clone();
        tasks.push(tokio::spawn(async move {
            let reply = c.recv_type("queue").await;
            assert_eq!(reply["req"], 1);
            let joined_at = position(&reply);
            // While waiting, a push arrives within 2 s.
            let push = tokio::time::timeout(Duration::from_millis(2_500), c.recv_type("queue"))
                .await
                .expect("a position push within 2 s");
            assert!(push["req"].is_null(), "pushes carry no req");
            assert!(position(&push) <= joined_at, "position never rises");
            assert!(push["eta_low_s"].as_u64() <= push["eta_s"].as_u64());
            assert!(push["eta_s"].as_u64() <= push["eta_high_s"].as_u64());
            pushed_tx.send(()).expect("report");
            let admitted = c.recv_type("admitted").await;
            (joined_at, until_ms(&admitted))
        }));
    }
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(20), pushed_rx.recv()).await.expect("all pushed").expect("open");
    }
    server.patch_queue(json!({"paused": false})).await;
    let mut results = Vec::with_capacity(N);
    for t in tasks {
        results.push(tokio::time::timeout(Duration::from_secs(30), t).await.expect("admitted in time").expect("task"));
    }
    let positions: HashSet<u64> = results.iter().map(|r| r.0).collect();
    assert_eq!(positions, (1..=N as u64).collect(), "distinct places 1..N");
    // Admitted in queue order: windows (admission time + window) never
    // decrease along the line.
    results.sort_by_key(|r| r.0);
    for pair in results.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "#{} admitted after #{}", pair[0].0, pair[1].0);
    }
    // At the configured rate: never more than the one-second bank plus the
    // rate, and not much slower either.
    let first = results[0].1;
    for (k, r) in results.iter().enumerate() {
        let elapsed = (r.1 - first) as f64 / 1_000.0;
        let allowed = RATE_PER_MIN as f64 / 60.0 * (1.0 + elapsed) + 1.0;
        assert!((k as f64) < allowed, "#{} admitted {elapsed:.2}s in: faster than the rate", k + 1);
    }
    let span = (results[N - 1].1 - first) as f64 / 1_000.0;
    let ideal = (N as f64 - 200.0) / 200.0;
    assert!(span >= ideal - 0.3 && span <= ideal + 2.5, "admission took {span:.2}s, expected about {ideal:.1}s");
    server.stop().await;
}

async fn arrival_order_is_queue_order_and_a_buyer_has_one_place(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true})).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = server.buyer(&format!("fifo{i}")).await;
        assert_eq!(position(&c.join(EVENT).await), i + 1, "FIFO by arrival");
        clients.push(c);
    }
    // A second tab and a REST call of buyer #5 find the same place.
    let mut second_tab = server.buyer("fifo4").await;
    let again = second_tab.join(EVENT).await;
    assert_eq!(position(&again), 5);
    assert_eq!(again["waiting"], 20);
    let rest =
        http(server.addr, "POST", &format!("/api/v1/events/{EVENT}/queue"), Some(&server.buyer_token("fifo4")), None)
            .await
            .unwrap();
    assert_eq!(rest.status, 200);
    assert_eq!(position(&rest.json()), 5);
    // Both tabs hear of the admission.
    server.patch_queue(json!({"paused": false, "rate_per_min": 60_000})).await;
    assert_eq!(clients[4].recv_type("admitted").await["event"], EVENT);
    assert_eq!(second_tab.recv_type("admitted").await["event"], EVENT);
    server.stop().await;
}

async fn a_short_disconnect_keeps_the_place_and_a_long_one_loses_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true, "grace_s": 5})).await;
    let mut a = server.buyer("ga").await;
    let b = {
        let mut b = server.buyer("gb").await;
        assert_eq!(position(&b.join(EVENT).await), 1);
        b
    };
    assert_eq!(position(&a.join(EVENT).await), 2);
    let mut c = server.buyer("gc").await;
    assert_eq!(position(&c.join(EVENT).await), 3);

    // a drops and comes back within the grace (to any node): same place.
    a.close().await;
    // Away for two seconds, well within the grace: the absence is what is
    // under test, not a wait for something to happen.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let mut a = server.buyer("ga").await;
    assert_eq!(position(&a.join(EVENT).await), 2);

    // b drops for longer than the grace: the place is gone and nobody
    // behind waits for a ghost.
    b.close().await;
    let dropped_after = tokio::time::Instant::now() + Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let push = c.recv_type("queue").await;
        if position(&push) == 2 {
            assert!(tokio::time::Instant::now() >= dropped_after, "dropped before the grace was over");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ghost ahead was never dropped");
    }
    while position(&a.recv_type("queue").await) != 1 {
        assert!(tokio::time::Instant::now() < deadline, "a never moved up");
    }
    let mut b = server.buyer("gb").await;
    assert_eq!(position(&b.join(EVENT).await), 3, "back at the end of the line");
    server.stop().await;
}

async fn hold_without_a_pass_is_not_admitted(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true})).await;
    let mut c = server.buyer("nopass").await;
    // Never joined.
    let r = c.hold(EVENT, ["A-1-1"]).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["code"], "not_admitted");
    // Waiting, not admitted.
    c.join(EVENT).await;
    for msg in [
        ClientMsg::Hold { event: EVENT.into(), seats: vec!["A-1-1".into()] },
        ClientMsg::HoldBest { event: EVENT.into(), count: 2, tier: None, section: None },
        ClientMsg::Checkout { event: EVENT.into(), coupon: None },
    ] {
        let r = c.ask(msg).await;
        assert_eq!(r["code"], "not_admitted", "{r}");
    }
    server.stop().await;
}

async fn rest_pollers_get_the_same_answers_as_sockets(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true, "grace_s": 5})).await;
    let mut sock = server.buyer("s1").await;
    assert_eq!(position(&sock.join(EVENT).await), 1);
    let path = format!("/api/v1/events/{EVENT}/queue");
    let poller = server.buyer_token("p1");
    let idle = server.buyer_token("p2");
    let joined = http(server.addr, "POST", &path, Some(&poller), None).await.unwrap().json();
    assert_eq!(position(&joined), 2);
    for key in ["waiting", "eta_s", "eta_low_s", "eta_high_s", "rate_per_min"] {
        assert!(joined[key].is_u64(), "{key} in {joined}");
    }
    assert_eq!(position(&http(server.addr, "POST", &path, Some(&idle), None).await.unwrap().json()), 3);
    // Polling keeps the place the way an open socket does; not polling loses
    // it. The polls are spread over eight seconds, past the grace: the time
    // going by is what is under test.
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let polled = http(server.addr, "GET", &path, Some(&poller), None).await.unwrap();
        assert_eq!(polled.status, 200, "{}", polled.body);
        assert_eq!(position(&polled.json()), 2);
    }
    let gone = http(server.addr, "GET", &path, Some(&idle), None).await.unwrap();
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.json()["error"]["code"], "not_found");
    // Admission reaches the poller as the same `admitted` object.
    server.patch_queue(json!({"paused": false, "rate_per_min": 60_000})).await;
    sock.recv_type("admitted").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let polled = http(server.addr, "GET", &path, Some(&poller), None).await.unwrap().json();
        if polled["type"] == "admitted" {
            assert!(polled["pass"].is_string() && polled["expires_at"].is_string());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "poller never admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

async fn admitted_at_once_without_pressure_with_a_bound_pass(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut c = server.buyer("quick").await;
    let r = c.join(EVENT).await;
    assert_eq!(r["type"], "admitted", "{r}");
    let pass = r["pass"].as_str().unwrap();
    server.auth.verify_pass(pass, "quick", EVENT).expect("pass bound to buyer and event");
    assert!(server.auth.verify_pass(pass, "someone-else", EVENT).is_err());
    let remaining = until_ms(&r) - now_ms();
    assert!((590_000..=601_000).contains(&remaining), "window of the demo's 600 s, got {remaining} ms");
    // Joining again (any tab) returns the same admission.
    let again = server.buyer("quick").await.join(EVENT).await;
    assert_eq!(again["type"], "admitted");
    assert_eq!(again["expires_at"], r["expires_at"]);
    server.stop().await;
}

async fn leaving_gives_the_place_up_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"paused": true})).await;
    let mut first_tab = server.buyer("lv").await;
    let mut second_tab = server.buyer("lv").await;
    let mut behind = server.buyer("behind").await;
    assert_eq!(position(&first_tab.join(EVENT).await), 1);
    assert_eq!(position(&second_tab.join(EVENT).await), 1);
    assert_eq!(position(&behind.join(EVENT).await), 2);
    let left = first_tab.leave(EVENT).await;
    assert_eq!(left["type"], "left");
    let other = second_tab.recv_type("left").await;
    assert_eq!(other["event"], EVENT);
    assert_eq!(position(&behind.recv_type("queue").await), 1);
    let rest =
        http(server.addr, "GET", &format!("/api/v1/events/{EVENT}/queue"), Some(&server.buyer_token("lv")), None)
            .await
            .unwrap();
    assert_eq!(rest.status, 404);
    // Polling clients give their place up with DELETE.
    let path = format!("/api/v1/events/{EVENT}/queue");
    let poller = server.buyer_token("rest-leaver");
    assert_eq!(position(&http(server.addr, "POST", &path, Some(&poller), None).await.unwrap().json()), 2);
    assert_eq!(http(server.addr, "DELETE", &path, Some(&poller), None).await.unwrap().status, 204);
    assert_eq!(http(server.addr, "GET", &path, Some(&poller), None).await.unwrap().status, 404);
    server.stop().await;
}

async fn a_window_ends_and_frees_its_slot(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.patch_queue(json!({"max_active": 1, "window_s": 10, "rate_per_min": 60_000})).await;
    let mut first = server.buyer("w1").await;
    let admitted = first.join(EVENT).await;
    assert_eq!(admitted["type"], "admitted", "{admitted}");
    let mut second = server.buyer("w2").await;
    assert_eq!(position(&second.join(EVENT).await), 1, "no room while the first window is open");
    let started = tokio::time::Instant::now();
    let next = loop {
        let v = second.try_recv(Duration::from_secs(15)).await.expect("admitted once the window ends");
        if v["type"] == "admitted" {
            break v;
        }
    };
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(8), "admitted after {waited:?}, before the window ended");
    assert!(until_ms(&next) >= until_ms(&admitted) + 9_000);
    let r = first.hold(EVENT, ["A-1-1"]).await;
    assert_eq!(r["code"], "not_admitted", "the ended window no longer admits: {r}");
    server.stop().await;
}

/// Options for a server whose catalogue gives the demo event what the
/// seller API does not offer: an on-sale time `on_sale_in_ms` from now, and
/// windows shorter than 10 s. Every node starts its waiting room from the
/// SQL record.
async fn on_sale(backend: &Backend, on_sale_in_ms: i64, window_s: u32) -> Options {
    seeded(backend, &[("on_sale_at_ms", now_ms() + on_sale_in_ms), ("window_s", i64::from(window_s))]).await
}

async fn the_eta_before_the_on_sale_counts_from_the_on_sale(backend: Backend) {
    const HOUR_S: u64 = 3_600;
    let server = TestServer::start_with(on_sale(&backend, HOUR_S as i64 * 1_000, 600).await).await;
    let check = |v: &Value| {
        let (eta, low, high) = (v["eta_s"].as_u64(), v["eta_low_s"].as_u64(), v["eta_high_s"].as_u64());
        let (Some(eta), Some(low), Some(high)) = (eta, low, high) else { panic!("ETA band in {v}") };
        // Seconds went by since the seeding; the line itself adds seconds.
        assert!((HOUR_S - 10..=HOUR_S + 60).contains(&eta), "eta_s counts from the on-sale an hour away: {v}");
        assert!(low <= eta && eta <= high, "ordered band: {v}");
        assert!(low >= HOUR_S - 10, "nobody is in before the on-sale: {v}");
    };
    let mut first = server.buyer("early1").await;
    let joined = first.join(EVENT).await;
    assert_eq!(position(&joined), 1, "nobody is admitted before the on-sale: {joined}");
    check(&joined);
    let mut second = server.buyer("early2").await;
    let behind = second.join(EVENT).await;
    assert_eq!(position(&behind), 2);
    check(&behind);
    assert!(behind["eta_s"].as_u64() >= joined["eta_s"].as_u64(), "{behind} behind {joined}");
    // Pushes and REST polls say the same.
    check(&first.recv_type("queue").await);
    let path = format!("/api/v1/events/{EVENT}/queue");
    let polled = http(server.addr, "GET", &path, Some(&server.buyer_token("early2")), None).await.unwrap();
    assert_eq!(polled.status, 200, "{}", polled.body);
    check(&polled.json());
    server.stop().await;
}

/// Waits for `left` on `c`, answering for the frames seen before it.
async fn recv_left(c: &mut Client, within: Duration) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = c.try_recv(wait).await.unwrap_or_else(|| panic!("no `left` in time; got {before:?}"));
        if v["type"] == "left" {
            return (v, before);
        }
        before.push(v);
    }
}

/// `left` came with reason `window_ended`, not before the window's end and
/// within a few seconds of it.
fn assert_window_ended(left: &Value, until: i64) {
    let at = now_ms();
    assert_eq!(left["event"], EVENT, "{left}");
    assert_eq!(left["reason"], "window_ended", "{left}");
    assert!(left["req"].is_null(), "a push carries no req: {left}");
    // 50 ms for the server's monotonic clock against the test's wall clock.
    assert!(at >= until - 50, "`left` {} ms before the window ended", until - at);
    assert!(at <= until + 3_000, "`left` {} ms after the window ended", at - until);
}

const WINDOW_S: u32 = 3;

async fn the_end_of_a_window_is_pushed_to_the_buyer(backend: Backend) {
    let server = TestServer::start_with(on_sale(&backend, -1_000, WINDOW_S).await).await;
    server.patch_queue(json!({"paused": true})).await;
    let mut c = server.buyer("shopper").await;
    assert_eq!(position(&c.join(EVENT).await), 1);
    server.patch_queue(json!({"paused": false})).await;
    let admitted = c.recv_type("admitted").await;
    let until = until_ms(&admitted);
    assert!(until - now_ms() <= i64::from(WINDOW_S) * 1_000, "{admitted}");
    // No seats held: the `left` push is all the buyer hears.
    let (left, before) = recv_left(&mut c, Duration::from_secs(u64::from(WINDOW_S) + 5)).await;
    assert_window_ended(&left, until);
    assert!(before.is_empty(), "nothing else came first: {before:?}");
    assert!(c.try_recv(Duration::from_millis(800)).await.is_none(), "told once");
    let r = c.hold(EVENT, ["A-1-1"]).await;
    assert_eq!(r["code"], "not_admitted", "{r}");
    // Joining again is a new place, and its window ends the same way.
    let again = c.join(EVENT).await;
    assert_eq!(again["type"], "admitted", "{again}");
    server.stop().await;
}

async fn a_buyer_admitted_at_once_hears_the_window_end(backend: Backend) {
    let server = TestServer::start_with(on_sale(&backend, -1_000, WINDOW_S).await).await;
    let mut c = server.buyer("quick").await;
    let admitted = c.join(EVENT).await;
    assert_eq!(admitted["type"], "admitted", "nobody waits: admitted at once: {admitted}");
    let until = until_ms(&admitted);
    // A second tab that joins after the admission hears it too.
    let mut later_tab = server.buyer("quick").await;
    assert_eq!(until_ms(&later_tab.join(EVENT).await), until);
    let within = Duration::from_secs(u64::from(WINDOW_S) + 5);
    for tab in [&mut c, &mut later_tab] {
        let (left, before) = recv_left(tab, within).await;
        assert_window_ended(&left, until);
        assert!(before.is_empty(), "nothing else came first: {before:?}");
    }
    server.stop().await;
}

async fn every_tab_of_the_buyer_hears_the_window_end(backend: Backend) {
    let server = TestServer::start_with(on_sale(&backend, -1_000, WINDOW_S).await).await;
    server.patch_queue(json!({"paused": true})).await;
    let mut first_tab = server.buyer("two-tabs").await;
    let mut second_tab = server.buyer("two-tabs").await;
    assert_eq!(position(&first_tab.join(EVENT).await), 1);
    assert_eq!(position(&second_tab.join(EVENT).await), 1);
    server.patch_queue(json!({"paused": false})).await;
    let until = until_ms(&first_tab.recv_type("admitted").await);
    assert_eq!(until_ms(&second_tab.recv_type("admitted").await), until);
    // One tab holds a seat: its hold ends with the window as well.
    let held = first_tab.hold(EVENT, ["A-1-1"]).await;
    assert_eq!(held["type"], "held", "{held}");
    let within = Duration::from_secs(u64::from(WINDOW_S) + 5);
    for tab in [&mut first_tab, &mut second_tab] {
        let (left, _) = recv_left(tab, within).await;
        assert_window_ended(&left, until);
    }
    // Both tabs (every socket of the holder) hear of the hold, whichever
    // came first.
    for tab in [&mut first_tab, &mut second_tab] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = tab.try_recv(wait).await.expect("hold_expired in time");
            if v["type"] == "hold_expired" {
                assert_eq!(v["seats"], json!(["A-1-1"]), "{v}");
                break;
            }
            assert_ne!(v["type"], "left", "told once: {v}");
        }
    }
    server.stop().await;
}

async fn lease_holder(prefix: &str) -> Option<String> {
    let client = ::redis::Client::open(REDIS_URL).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    ::redis::cmd("HGET").arg(format!("{prefix}:q:{{{EVENT}}}:lease")).arg("node").query_async(&mut conn).await.ok()?
}

/// The admitter runs on one node, the buyer's socket is on another: the
/// window's end reaches the socket through its node's status refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_window_ended_by_another_nodes_admitter_is_pushed() {
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let secret = format!("window-secret-{:032x}", rand::random::<u128>());
    let node = |name: &str, mut opts: Options| {
        opts.node_id = Some(name.into());
        opts.secret = secret.clone();
        opts
    };
    let admitter = TestServer::start_with(node("node-admits", on_sale(&backend, -1_000, WINDOW_S).await)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lease_holder(&prefix).await.as_deref() != Some("node-admits") {
        assert!(tokio::time::Instant::now() < deadline, "the first node never took the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = TestServer::start_with(node("node-serves", on_sale(&backend, -1_000, WINDOW_S).await)).await;
    admitter.patch_queue(json!({"paused": true})).await;
    let mut c = other.buyer("remote").await;
    assert_eq!(position(&c.join(EVENT).await), 1);
    admitter.patch_queue(json!({"paused": false})).await;
    let until = until_ms(&c.recv_type("admitted").await);
    let (left, _) = recv_left(&mut c, Duration::from_secs(u64::from(WINDOW_S) + 5)).await;
    assert_window_ended(&left, until);
    assert_eq!(lease_holder(&prefix).await.as_deref(), Some("node-admits"), "the other node admitted throughout");
    other.stop().await;
    admitter.stop().await;
    purge_redis(&prefix).await;
}
