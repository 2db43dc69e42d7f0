//! Live seat maps and holds end to end: races that must never oversell,
//! expiry on the server clock, best seats, bad input, and watchers on every
//! node converging on the store's state.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use qt_protocol::frames::HoldExpired;
use qt_protocol::{ClientMsg, Format, ServerMsg};
use rdkafka::mocking::MockCluster;
use serde_json::json;

use crate::common::{
    Backend, Client, EVENT, KAFKA_TOPIC, Options, PgDatabase, TestServer, Watcher, http, now_ms, purge_redis,
    seed_catalogue, seeded, store_map, time_ms,
};

on_both_backends!(
    five_hundred_buyers_race_for_ten_seats,
    holds_expire_on_the_server_clock_and_everyone_sees_it,
    the_end_of_the_window_releases_its_holds,
    hold_best_finds_adjacent_seats_near_the_stage,
    bad_hold_requests_change_nothing,
    only_the_holder_releases_and_watchers_come_and_go,
    a_returning_buyer_learns_its_holds_and_leaving_lets_them_go,
    a_buyer_whose_id_prefixes_another_cannot_release_its_seats,
    concurrent_hold_best_calls_all_get_seats,
);

/// One buyer's tabs (or several buyers) asking for the best seat at the same
/// moment all pick the same seat from the node's replica; the losers must
/// try the next best instead of being told it is unavailable while
/// thousands of seats are free.
async fn concurrent_hold_best_calls_all_get_seats(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[("max_seats_per_buyer", 20)]).await).await;
    for round in 0..3 {
        // Round 0: one buyer's eight tabs; then sixteen tabs of four buyers,
        // more racers than a loser has attempts.
        let racers = if round == 0 { 8 } else { 16 };
        let mut tabs = Vec::new();
        for t in 0..racers {
            let user = if round == 0 { "tabs".to_string() } else { format!("tabs-{round}-{}", t % 4) };
            tabs.push(admitted_buyer(&server, &user).await);
        }
        let replies = join_all(tabs.iter_mut().map(|c| c.hold_best(EVENT, 1))).await;
        let mut seats = BTreeSet::new();
        for r in &replies {
            assert_eq!(r["type"], "held", "round {round}: {r}");
            let got = r["seats"].as_array().unwrap();
            assert_eq!(got.len(), 1, "{r}");
            assert!(seats.insert(got[0].as_str().unwrap().to_owned()), "seat given twice: {r}");
        }
    }
    let store = store_map(server.addr, EVENT).await;
    assert_eq!((store.held().len(), store.version), (40, 40));
    // The one buyer's own view lists all eight.
    let mut tab = server.buyer("tabs").await;
    tab.watch(EVENT).await;
    assert_eq!(tab.recv_type("held").await["seats"].as_array().unwrap().len(), 8);
    server.stop().await;
}

/// Identity providers issue subs like `auth0|12345`; the buyer `auth0`
/// must not be able to release (or leave with) their seats, nor leave them
/// a seat that counts against their limit without being held.
async fn a_buyer_whose_id_prefixes_another_cannot_release_its_seats(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[]).await).await;
    let mut victim = admitted_buyer(&server, "auth0|12345").await;
    assert_eq!(victim.user, "auth0|12345");
    let held = victim.hold(EVENT, ["C-3-5"]).await;
    assert_eq!(held["type"], "held", "{held}");
    let mut thief = admitted_buyer(&server, "auth0").await;
    let r = thief.release(EVENT, ["C-3-5"]).await;
    assert_eq!((r["type"].as_str(), r["seats"].clone()), (Some("released"), json!([])), "{r}");
    assert_eq!(r["version"], 1, "nothing changed: {r}");
    // Leaving releases only the leaver's own holds.
    assert_eq!(thief.hold(EVENT, ["C-3-6"]).await["type"], "held");
    assert_eq!(thief.leave(EVENT).await["type"], "left");
    let store = store_map(server.addr, EVENT).await;
    assert_eq!(store.held(), BTreeSet::from(["C-3-5".to_string()]), "the victim's seat is still held");
    assert_eq!(store.version, 3, "one hold, the thief's hold and its release");
    // The victim still sees it as its own, with the same expiry.
    let mut tab = server.buyer("auth0|12345").await;
    tab.watch(EVENT).await;
    let own = tab.recv_type("held").await;
    assert_eq!((own["seats"].clone(), own["expires_at"].clone()), (json!(["C-3-5"]), held["expires_at"].clone()));
    // Its count is unaffected: three more fit the limit of 4, a fifth not.
    let more = victim.hold(EVENT, ["C-3-7", "C-3-8", "C-3-9"]).await;
    assert_eq!(more["type"], "held", "{more}");
    let r = victim.hold(EVENT, ["C-3-10"]).await;
    assert_eq!((r["code"].as_str(), r["held"].as_u64()), (Some("hold_limit"), Some(4)), "{r}");
    // And the victim releases its own seats.
    let r = victim.release(EVENT, ["C-3-5"]).await;
    assert_eq!(r["seats"], json!(["C-3-5"]), "{r}");
    server.stop().await;
}

async fn a_returning_buyer_learns_its_holds_and_leaving_lets_them_go(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[]).await).await;
    let mut first = admitted_buyer(&server, "returner").await;
    let held = first.hold(EVENT, ["C-2-10", "C-2-11"]).await;
    assert_eq!(held["version"], 2, "{held}");
    // Another tab (or the same page after a reload) watches: the snapshot,
    // then the buyer's own holds.
    let mut second = server.buyer("returner").await;
    let map = second.watch(EVENT).await;
    assert_eq!(map["type"], "seatmap");
    assert_eq!(map["currency"], "KRW");
    let own = second.recv_type("held").await;
    assert_eq!(own["seats"], json!(["C-2-10", "C-2-11"]));
    assert_eq!(own["expires_at"], held["expires_at"]);
    // A buyer holding nothing hears nothing of the kind.
    let mut stranger = server.buyer("stranger").await;
    stranger.watch(EVENT).await;
    // Silence for a while is what is under test.
    assert!(stranger.try_recv(Duration::from_millis(300)).await.is_none());
    // Leaving gives the seats up with the place.
    assert_eq!(first.leave(EVENT).await["type"], "left");
    assert!(store_map(server.addr, EVENT).await.held().is_empty());
    server.stop().await;
}

/// Queue settings that admit every buyer at once, up to 4 seats each.
const DOORS_OPEN: [(&str, i64); 3] = [("rate_per_min", 1_000_000), ("max_active", 100_000), ("max_seats_per_buyer", 4)];

/// Options for a server with the doors open from its first moment, with
/// `extra` settings on top: they are in its catalogue before it starts
/// (`seed_catalogue` says why not through a live patch).
async fn doors_open(backend: &Backend, extra: &[(&str, i64)]) -> Options {
    let settings: Vec<(&str, i64)> = DOORS_OPEN.iter().chain(extra).copied().collect();
    seeded(backend, &settings).await
}

async fn admitted_buyer(server: &TestServer, user: &str) -> Client {
    let mut c = server.buyer(user).await;
    let r = c.join(EVENT).await;
    assert_eq!(r["type"], "admitted", "{user}: {r}");
    c
}

/// The race: buyers spread over `servers` hold singles and pairs among ten
/// seats at once while watchers on every server look on.
async fn race(servers: &[&TestServer], buyers: usize) {
    let seats: Vec<String> = (1..=10).map(|n| format!("C-1-{n}")).collect();
    let mut watchers = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for w in 0..5 {
            watchers.push(Watcher::start(s.buyer(&format!("watcher-{i}-{w}")).await, EVENT).await);
        }
    }
    let mut clients = Vec::with_capacity(buyers);
    for b in 0..buyers {
        clients.push(admitted_buyer(servers[b % servers.len()], &format!("racer{b:03}")).await);
    }
    let wants: Vec<Vec<String>> = (0..buyers)
        .map(|b| {
            let k = b % 10;
            if b % 2 == 0 { vec![seats[k].clone()] } else { vec![seats[k].clone(), seats[(k + 1) % 10].clone()] }
        })
        .collect();
    let holds = clients.into_iter().zip(wants.clone()).map(|(mut c, want)| async move {
        let reply = c.hold(EVENT, want).await;
        (c, reply)
    });
    // Watchers that arrive mid-race get a snapshot consistent with what
    // follows. The sleep only staggers their arrival into the race; the
    // property holds whenever they come.
    let late = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut late = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            late.push(Watcher::start(s.buyer(&format!("late-{i}")).await, EVENT).await);
        }
        late
    };
    let (results, late) = tokio::join!(join_all(holds), late);
    watchers.extend(late);

    let mut owner: HashMap<String, String> = HashMap::new();
    let mut losers = 0;
    for ((c, reply), want) in results.iter().zip(&wants) {
        match reply["type"].as_str() {
            Some("held") => {
                let got: Vec<String> = serde_json::from_value(reply["seats"].clone()).unwrap();
                assert_eq!(&got, want);
                assert!(reply["expires_at"].is_string());
                for seat in want {
                    assert!(owner.insert(seat.clone(), c.user.clone()).is_none(), "{seat} held twice");
                }
            }
            Some("error") => {
                assert_eq!(reply["code"], "seat_unavailable", "{reply}");
                let named: Vec<String> = serde_json::from_value(reply["seats"].clone()).unwrap();
                assert!(!named.is_empty() && named.iter().all(|s| want.contains(s)), "{reply}");
                losers += 1;
            }
            _ => panic!("{reply}"),
        }
    }
    assert!(!owner.is_empty() && losers > 0);
    assert!(owner.len() <= 10);
    let store = store_map(servers[0].addr, EVENT).await;
    assert_eq!(store.held(), owner.keys().cloned().collect::<BTreeSet<_>>(), "the store agrees with the replies");
    let held_seats: usize =
        results.iter().filter(|(_, r)| r["type"] == "held").map(|(_, r)| r["seats"].as_array().unwrap().len()).sum();
    assert_eq!(store.version, held_seats as u64, "one version per held seat");
    for s in servers.iter().skip(1) {
        let other = store_map(s.addr, EVENT).await;
        assert_eq!((other.version, other.held()), (store.version, store.held()));
    }
    for w in &mut watchers {
        w.settle(EVENT, &store, Duration::from_secs(15)).await;
    }
}

async fn five_hundred_buyers_race_for_ten_seats(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[]).await).await;
    race(&[&server], 500).await;
    server.stop().await;
}

/// Two nodes on one Redis, one Postgres and one Kafka (mock) cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_buyers_race_across_two_nodes() {
    let kafka = MockCluster::new(3).unwrap();
    kafka.create_topic(KAFKA_TOPIC, 6, 1).unwrap();
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    // Both nodes start from the shared catalogue with the doors open.
    let db = PgDatabase::create("qt_it").await;
    seed_catalogue(&db.url, &DOORS_OPEN).await;
    let node = |name: &str| {
        let mut o = Options::new(backend.clone());
        o.database_url = Some(db.url.clone());
        o.node_id = Some(name.into());
        o.secret = "cluster-secret-0123456789abcdef".into();
        o.kafka = Some(kafka.bootstrap_servers());
        o
    };
    let a = TestServer::start_with(node("node-a")).await;
    let b = TestServer::start_with(node("node-b")).await;
    race(&[&a, &b], 500).await;
    a.stop().await;
    b.stop().await;
    purge_redis(&prefix).await;
    db.finish().await;
}

/// Kafka goes away and comes back: watchers end up with the store's map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_recover_when_kafka_comes_back() {
    let kafka = MockCluster::new(1).unwrap();
    kafka.create_topic(KAFKA_TOPIC, 3, 1).unwrap();
    let backend = Backend::redis().await;
    let Backend::Redis(prefix) = backend.clone() else { unreachable!() };
    let mut opts = doors_open(&backend, &[]).await;
    opts.kafka = Some(kafka.bootstrap_servers());
    let server = TestServer::start_with(opts).await;
    let mut watcher = Watcher::start(server.buyer("w").await, EVENT).await;
    let mut buyer = admitted_buyer(&server, "kb").await;
    assert_eq!(buyer.hold(EVENT, ["A-1-1"]).await["type"], "held");
    watcher.settle(EVENT, &store_map(server.addr, EVENT).await, Duration::from_secs(15)).await;

    kafka.broker_down(1).unwrap();
    for seat in ["A-1-2", "A-1-3"] {
        assert_eq!(buyer.hold(EVENT, [seat]).await["type"], "held");
    }
    assert_eq!(buyer.release(EVENT, ["A-1-1"]).await["type"], "released");
    // The outage lasts a while: its length is what is under test.
    tokio::time::sleep(Duration::from_secs(2)).await;
    kafka.broker_up(1).unwrap();
    let store = store_map(server.addr, EVENT).await;
    assert_eq!(store.held(), ["A-1-2", "A-1-3"].iter().map(|s| s.to_string()).collect());
    watcher.settle(EVENT, &store, Duration::from_secs(30)).await;
    server.stop().await;
    purge_redis(&prefix).await;
}

async fn holds_expire_on_the_server_clock_and_everyone_sees_it(backend: Backend) {
    const HOLD_S: u64 = 10;
    let server = TestServer::start_with(doors_open(&backend, &[("hold_s", HOLD_S as i64)]).await).await;
    let mut watcher = Watcher::start(server.buyer("ew").await, EVENT).await;
    let mut buyer = admitted_buyer(&server, "eb").await;
    let (asked, asked_ms) = (Instant::now(), now_ms());
    let held = buyer.hold(EVENT, ["B-2-5", "B-2-6"]).await;
    assert_eq!(held["type"], "held", "{held}");
    // The hold ends `hold_s` after the server took it: between asking and
    // hearing back (50 ms for the server's monotonic clock against ours).
    let expires = time_ms(&held["expires_at"]);
    let hold_ms = HOLD_S as i64 * 1_000;
    assert!(expires >= asked_ms + hold_ms - 50 && expires <= now_ms() + hold_ms + 50, "{held}");
    watcher.settle(EVENT, &store_map(server.addr, EVENT).await, Duration::from_secs(5)).await;
    assert_eq!(watcher.map.held().len(), 2);
    let ServerMsg::HoldExpired(HoldExpired { event, mut seats }) =
        buyer.recv_msg_within("hold_expired", Duration::from_secs(15)).await
    else {
        unreachable!("recv_msg_within returns the kind asked for")
    };
    // Not released before `hold_s` is over, nor long after (the wait above).
    let after = asked.elapsed();
    assert!(
        after >= Duration::from_millis(hold_ms as u64 - 50),
        "released {after:?} after the hold, before {HOLD_S} s"
    );
    assert!(now_ms() >= expires - 50, "released {} ms before expires_at", expires - now_ms());
    assert_eq!(event, EVENT);
    seats.sort();
    assert_eq!(seats, vec!["B-2-5", "B-2-6"]);
    let store = store_map(server.addr, EVENT).await;
    assert!(store.held().is_empty());
    watcher.settle(EVENT, &store, Duration::from_secs(5)).await;
    assert_eq!(watcher.map.status["B-2-5"], "free");
    // The seats can be held again.
    assert_eq!(buyer.hold(EVENT, ["B-2-5"]).await["type"], "held");
    server.stop().await;
}

async fn the_end_of_the_window_releases_its_holds(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[("window_s", 10)]).await).await;
    let mut watcher = Watcher::start(server.buyer("ww").await, EVENT).await;
    let mut buyer = server.buyer("wb").await;
    let admitted = buyer.join(EVENT).await;
    assert_eq!(admitted["type"], "admitted", "{admitted}");
    let window_end = time_ms(&admitted["expires_at"]);
    let held = buyer.hold(EVENT, ["D-5-1"]).await;
    assert_eq!(held["type"], "held");
    let expired = buyer.recv_type_within("hold_expired", Duration::from_secs(15)).await;
    assert_eq!(expired["seats"], json!(["D-5-1"]));
    // Released with the window's end, not before it.
    assert!(now_ms() >= window_end - 50, "released {} ms before the window ended", window_end - now_ms());
    let store = store_map(server.addr, EVENT).await;
    assert!(store.held().is_empty());
    watcher.settle(EVENT, &store, Duration::from_secs(5)).await;
    let r = buyer.hold(EVENT, ["D-5-1"]).await;
    assert_eq!(r["code"], "not_admitted", "the window is over: {r}");
    server.stop().await;
}

/// A `hold_best` for a tier or a section.
fn best_of(count: u32, tier: Option<&str>, section: Option<&str>) -> ClientMsg {
    ClientMsg::HoldBest { event: EVENT.into(), count, tier: tier.map(Into::into), section: section.map(Into::into) }
}

async fn hold_best_finds_adjacent_seats_near_the_stage(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[("max_seats_per_buyer", 6)]).await).await;
    let layout = store_map(server.addr, EVENT).await;
    let mut buyer = admitted_buyer(&server, "best").await;
    let held = buyer.hold_best(EVENT, 4).await;
    assert_eq!(held["type"], "held", "{held}");
    let seats: Vec<String> = serde_json::from_value(held["seats"].clone()).unwrap();
    assert_eq!(seats.len(), 4);
    let parts: Vec<Vec<&str>> = seats.iter().map(|s| s.split('-').collect()).collect();
    assert!(parts.iter().all(|p| p[0] == parts[0][0] && p[1] == parts[0][1]), "one row: {seats:?}");
    assert_eq!(parts[0][1], "1", "front row: {seats:?}");
    let mut numbers: Vec<i64> = parts.iter().map(|p| p[2].parse().unwrap()).collect();
    numbers.sort();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "adjacent: {numbers:?}");
    assert!(layout.status.contains_key(&seats[0]));
    // By tier: the demo's cheapest tier sits at the back.
    let mut other = admitted_buyer(&server, "best-a").await;
    let cheap = other.ask(best_of(2, Some("a"), None)).await;
    assert_eq!(cheap["type"], "held", "{cheap}");
    for s in cheap["seats"].as_array().unwrap() {
        let row: u32 = s.as_str().unwrap().split('-').nth(1).unwrap().parse().unwrap();
        assert!(row >= 15, "tier a is rows 15–20: {s}");
    }
    let section = other.ask(best_of(1, None, Some("E"))).await;
    assert!(section["seats"][0].as_str().unwrap().starts_with("E-"), "{section}");
    for (count, code) in [(0, "bad_request"), (5_000, "bad_request"), (7, "hold_limit")] {
        let r = buyer.hold_best(EVENT, count).await;
        assert_eq!(r["code"], code, "count {count}: {r}");
    }
    // A tier or section the event does not have is a mistake, not a sell-out.
    let r = buyer.ask(best_of(2, Some("no-such-tier"), None)).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    assert!(r["message"].as_str().unwrap().contains("no-such-tier"), "names the tier: {r}");
    let r = buyer.ask(best_of(2, None, Some("Q"))).await;
    assert_eq!(r["code"], "bad_request", "{r}");
    assert!(r["message"].as_str().unwrap().contains("section"), "{r}");
    // The limit counts what is already held: 4 + 3 > 6.
    let r = buyer.hold_best(EVENT, 3).await;
    assert_eq!(r["code"], "hold_limit", "{r}");
    server.stop().await;
}

async fn bad_hold_requests_change_nothing(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[]).await).await;
    let mut watcher = Watcher::start(server.buyer("bw").await, EVENT).await;
    let mut buyer = admitted_buyer(&server, "bad").await;
    // As JSON: some of these the wire types could not even build.
    let cases = [
        (json!({"seats": ["Z-9-99"]}), "not_found"),
        (json!({"seats": ["A-1-1", "nope"]}), "not_found"),
        (json!({"seats": ["A-1-1", "A-1-1"]}), "bad_request"),
        (json!({"seats": []}), "bad_request"),
        (json!({"seats": ["A-1-1", "A-1-2", "A-1-3", "A-1-4", "A-1-5"]}), "hold_limit"),
        (json!({"seats": "A-1-1"}), "bad_request"),
        (json!({"seats": [1, 2]}), "bad_request"),
    ];
    for (extra, code) in cases {
        let mut msg = json!({"type": "hold", "event": EVENT});
        for (k, v) in extra.as_object().unwrap() {
            msg[k] = v.clone();
        }
        let r = buyer.request(msg.clone()).await;
        assert_eq!(r["code"], code, "{msg} → {r}");
    }
    let r = buyer.hold(EVENT, ["Z-9-99"]).await;
    assert_eq!(r["seats"], json!(["Z-9-99"]), "the unknown seat is named");
    let r = buyer.hold("other-event", ["A-1-1"]).await;
    assert_eq!(r["code"], "not_found");
    let store = store_map(server.addr, EVENT).await;
    assert_eq!(store.version, 0, "nothing changed");
    assert!(store.held().is_empty());
    // Over the limit across requests: 3 then 2 more of 4.
    assert_eq!(buyer.hold(EVENT, ["A-2-1", "A-2-2", "A-2-3"]).await["type"], "held");
    let r = buyer.hold(EVENT, ["A-2-4", "A-2-5"]).await;
    assert_eq!(r["code"], "hold_limit", "{r}");
    assert_eq!((r["max"].as_u64(), r["held"].as_u64()), (Some(4), Some(3)), "{r}");
    assert_eq!(store_map(server.addr, EVENT).await.version, 3);
    watcher.settle(EVENT, &store_map(server.addr, EVENT).await, Duration::from_secs(5)).await;
    assert_eq!(watcher.map.gaps, 0);
    server.stop().await;
}

async fn only_the_holder_releases_and_watchers_come_and_go(backend: Backend) {
    let server = TestServer::start_with(doors_open(&backend, &[]).await).await;
    // Anyone may watch, waiting or not.
    let mut watcher = Watcher::start(server.buyer("rw").await, EVENT).await;
    let mut owner = admitted_buyer(&server, "owner").await;
    let mut thief = admitted_buyer(&server, "thief").await;
    assert_eq!(owner.hold(EVENT, ["E-1-1", "E-1-2"]).await["type"], "held");
    let r = thief.release(EVENT, ["E-1-1"]).await;
    assert_eq!((r["type"].as_str(), r["seats"].clone()), (Some("released"), json!([])), "nothing of theirs to release");
    let r = owner.release(EVENT, ["E-1-2"]).await;
    assert_eq!(r["seats"], json!(["E-1-2"]));
    assert_eq!(r["version"], 3, "two held, one released");
    let store = store_map(server.addr, EVENT).await;
    assert_eq!(store.held(), BTreeSet::from(["E-1-1".to_string()]));
    watcher.settle(EVENT, &store, Duration::from_secs(5)).await;
    // Unwatch: no more diffs.
    let r = watcher.client.unwatch(EVENT).await;
    assert_eq!(r["type"], "unwatched");
    assert_eq!(owner.release(EVENT, ["E-1-1"]).await["seats"], json!(["E-1-1"]));
    // Silence for a while is what is under test.
    assert!(watcher.client.try_recv(Duration::from_millis(500)).await.is_none(), "no diffs after unwatch");
    // The compact form agrees with the full one.
    let compact = watcher.client.ask(ClientMsg::Watch { event: EVENT.into(), format: Format::Compact }).await;
    assert_eq!(compact["format"], "compact");
    assert_eq!(compact["version"].as_u64(), Some(store_map(server.addr, EVENT).await.version));
    assert!(compact["status"].as_str().unwrap().chars().all(|c| c == 'f'));
    let r =
        http(server.addr, "GET", &format!("/api/v1/events/{EVENT}/seatmap?format=compact"), None, None).await.unwrap();
    assert_eq!(r.json()["status"], compact["status"]);
    server.stop().await;
}

/// One socket that stops reading must not hold back anyone else, nor grow
/// the server: its queue is bounded and the server gives it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_never_holds_back_the_others() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let mut opts = doors_open(&Backend::Memory, &[("max_seats_per_buyer", 8)]).await;
    opts.tweak = |cfg| cfg.ws_msgs_per_s = 1_000;
    let server = TestServer::start_with(opts).await;
    // A tiny receive window, the full 2,400-seat map (230 KB) asked for a
    // few times — more than the kernel buffers hold — and never read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2_048).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/ws?token={}", server.addr, server.buyer_token("stalled"));
    let (mut stalled, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    for _ in 0..6 {
        let watch = ClientMsg::Watch { event: EVENT.into(), format: Format::Full };
        stalled.send(Message::Text(watch.to_frame(None).into())).await.unwrap();
    }

    let mut healthy = Watcher::start(server.buyer("healthy").await, EVENT).await;
    let mut buyers = Vec::new();
    for b in 0..10 {
        buyers.push(admitted_buyer(&server, &format!("churn{b}")).await);
    }
    for round in 0..20 {
        for (b, buyer) in buyers.iter_mut().enumerate() {
            let seats: Vec<String> = (1..=4).map(|n| format!("B-{}-{}", b + 1, (round % 5) * 4 + n)).collect();
            assert_eq!(buyer.hold(EVENT, &seats).await["type"], "held");
            assert_eq!(buyer.release(EVENT, &seats).await["type"], "released");
        }
    }
    let store = store_map(server.addr, EVENT).await;
    assert_eq!(store.version, 20 * 10 * 8);
    healthy.settle(EVENT, &store, Duration::from_secs(3)).await;
    // The stalled socket is given up within the send time-out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let given_up =
            server.metric("qt_send_timeouts_total").await + server.metric("qt_slow_sockets_closed_total").await;
        if given_up >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stalled socket was never given up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(stalled);
    server.stop().await;
}
