//! The one contract every waiting-room adapter must pass. Each scenario is
//! its own test per adapter (`waiting_room_contract!`), on a fresh store
//! driven with a fake clock, so the first failure does not hide the rest.

use std::collections::HashMap;

use futures_util::future::join_all;

use super::memory::MemoryWaitingRoom;
use super::redis::RedisWaitingRoom;
use super::{JoinOutcome, Lease, PlaceStatus, WaitingRoom};
use crate::domain::UserId;
use crate::domain::queue::{QueueSettings, RateStats};

const EVENT: &str = "e-contract";
const T0: i64 = 1_700_000_000_000;

/// The Redis the contract suites run on (`scripts/services.sh` starts it).
pub use crate::testsupport::{REDIS_URL, require_redis};

/// One `#[tokio::test]` per scenario, each on a fresh store from `$make`
/// (an expression whose value is a future of the store). An adapter passes
/// the contract when every one of them passes.
macro_rules! waiting_room_contract {
    ($make:expr) => {
        $crate::store::waiting::contract::waiting_room_contract!(@each $make;
            unknown_event_has_no_queue,
            settings_round_trip,
            fifo_positions_and_one_place_per_buyer,
            concurrent_joins_get_distinct_positions,
            admits_at_once_without_pressure,
            ticks_admit_in_order_at_the_rate,
            max_active_bounds_open_windows_and_expiry_frees_them,
            ghosts_are_dropped_after_the_grace,
            leave_gives_up_place_and_window,
            lease_is_exclusive_and_fences_stale_holders,
            positions_never_rise,
            stats_are_published,
        );
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                $crate::store::waiting::contract::$scenario($make.await).await;
            }
        )*
    };
}
pub(crate) use waiting_room_contract;

mod memory {
    super::waiting_room_contract!(async { super::MemoryWaitingRoom::new() });
}

mod redis {
    super::waiting_room_contract!(super::redis_store());
}

/// A Redis store under a random key prefix, so parallel tests never meet.
async fn redis_store() -> RedisWaitingRoom {
    require_redis().await;
    let prefix = format!("qt-test-{:016x}", rand::random::<u64>());
    RedisWaitingRoom::connect(REDIS_URL, &prefix).await.expect("a Redis connection")
}

fn settings(rate_per_min: u32, max_active: u32, paused: bool) -> QueueSettings {
    QueueSettings { rate_per_min, max_active, paused, window_s: 60, grace_s: 2, ..QueueSettings::default() }
}

fn user(i: usize) -> String {
    format!("u{i:05}")
}

async fn waiting_position<W: WaitingRoom>(w: &W, u: &str, now: i64) -> u64 {
    match w.join(EVENT, u, now).await.unwrap() {
        Some(JoinOutcome::Waiting { position, .. }) => position,
        other => panic!("{u} expected to wait, got {other:?}"),
    }
}

async fn lease<W: WaitingRoom>(w: &W, node: &str, now: i64) -> Lease {
    w.acquire_lease(EVENT, node, now, 3_000).await.unwrap().expect("lease free")
}

pub async fn unknown_event_has_no_queue<W: WaitingRoom>(w: W) {
    assert_eq!(w.join("nope", "u", T0).await.unwrap(), None);
    assert_eq!(w.settings("nope").await.unwrap(), None);
    let batch = w.status("nope", &[UserId::from("u")], T0).await.unwrap();
    assert_eq!(batch.statuses, vec![PlaceStatus::Gone]);
    assert!(!w.leave("nope", "u").await.unwrap());
}

pub async fn settings_round_trip<W: WaitingRoom>(w: W) {
    let s = QueueSettings { on_sale_at_ms: T0 + 5, paused: true, hold_s: 77, ..settings(123, 45, true) };
    w.configure(EVENT, &s).await.unwrap();
    assert_eq!(w.settings(EVENT).await.unwrap(), Some(s));
    let changed = QueueSettings { rate_per_min: 9, paused: false, ..s };
    w.configure(EVENT, &changed).await.unwrap();
    assert_eq!(w.settings(EVENT).await.unwrap(), Some(changed));
}

pub async fn fifo_positions_and_one_place_per_buyer<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(600, 100, true)).await.unwrap();
    for i in 0..50 {
        let got = w.join(EVENT, &user(i), T0 + i as i64).await.unwrap();
        assert_eq!(got, Some(JoinOutcome::Waiting { position: i as u64 + 1, waiting: i as u64 + 1 }));
    }
    // A second tab or device gets the same place back.
    assert_eq!(
        w.join(EVENT, &user(7), T0 + 100).await.unwrap(),
        Some(JoinOutcome::Waiting { position: 8, waiting: 50 })
    );
    let users: Vec<UserId> = (0..50).map(|i| UserId::from(user(i))).collect();
    let batch = w.status(EVENT, &users, T0 + 100).await.unwrap();
    assert_eq!(batch.waiting, 50);
    let positions: Vec<PlaceStatus> = (1..=50).map(|position| PlaceStatus::Waiting { position }).collect();
    assert_eq!(batch.statuses, positions);
}

pub async fn concurrent_joins_get_distinct_positions<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(600, 100, true)).await.unwrap();
    let names: Vec<String> = (0..300).map(user).collect();
    let joins = names.iter().map(|u| w.join(EVENT, u, T0));
    let mut positions: Vec<u64> = join_all(joins)
        .await
        .into_iter()
        .map(|r| match r.unwrap() {
            Some(JoinOutcome::Waiting { position, .. }) => position,
            other => panic!("expected to wait, got {other:?}"),
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (1..=300).collect::<Vec<u64>>());
}

pub async fn admits_at_once_without_pressure<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(60, 2, false)).await.unwrap();
    let until = T0 + 60_000;
    assert_eq!(w.join(EVENT, "a", T0).await.unwrap(), Some(JoinOutcome::Admitted { until_ms: until }));
    // Joining again while admitted returns the same window.
    assert_eq!(w.join(EVENT, "a", T0 + 10).await.unwrap(), Some(JoinOutcome::Admitted { until_ms: until }));
    assert_eq!(w.admission(EVENT, "a", T0 + 10).await.unwrap(), Some(until));
    // The one-token bank at 60/min is spent: the next buyer waits.
    assert_eq!(w.join(EVENT, "b", T0 + 1).await.unwrap(), Some(JoinOutcome::Waiting { position: 1, waiting: 1 }));
    // With somebody in line, a newcomer never jumps ahead, even with budget.
    assert_eq!(w.join(EVENT, "c", T0 + 5_000).await.unwrap(), Some(JoinOutcome::Waiting { position: 2, waiting: 2 }));
    assert_eq!(w.admission(EVENT, "b", T0 + 5_000).await.unwrap(), None);
    // The window ends on the server clock.
    assert_eq!(w.admission(EVENT, "a", until).await.unwrap(), None);
}

pub async fn ticks_admit_in_order_at_the_rate<W: WaitingRoom>(w: W) {
    // 600/min = 10/s, with one second (10) banked.
    w.configure(EVENT, &settings(600, 10_000, true)).await.unwrap();
    for i in 0..100 {
        waiting_position(&w, &user(i), T0).await;
    }
    w.configure(EVENT, &settings(600, 10_000, false)).await.unwrap();
    let l = lease(&w, "n1", T0).await;
    let everyone: Vec<UserId> = (0..100).map(|i| UserId::from(user(i))).collect();
    let mut admitted = Vec::new();
    for step in 0..=20 {
        // the buyers are connected: keep their places alive
        w.status(EVENT, &everyone, T0 + step * 250).await.unwrap();
        let out = w.tick(EVENT, l, T0 + step * 250, 1_000).await.unwrap();
        assert!(!out.fenced);
        admitted.extend(out.admitted.into_iter().map(|(u, until)| {
            assert_eq!(until, T0 + step * 250 + 60_000);
            u.to_string()
        }));
        if step % 4 == 0 {
            // renew so the lease outlives the test's fake time
            assert_eq!(w.acquire_lease(EVENT, "n1", T0 + step * 250, 3_000).await.unwrap(), Some(l));
        }
    }
    // Over 5 s: 10 banked + 50 accrued.
    assert_eq!(admitted.len(), 60);
    assert_eq!(admitted, (0..60).map(user).collect::<Vec<_>>(), "admitted in arrival order");
    let rest: Vec<UserId> = (60..100).map(|i| UserId::from(user(i))).collect();
    let batch = w.status(EVENT, &rest, T0 + 5_000).await.unwrap();
    assert_eq!(batch.waiting, 40);
    assert_eq!(batch.statuses[0], PlaceStatus::Waiting { position: 1 });
    assert_eq!(batch.statuses[39], PlaceStatus::Waiting { position: 40 });
}

pub async fn max_active_bounds_open_windows_and_expiry_frees_them<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(60_000, 3, true)).await.unwrap();
    for i in 0..5 {
        waiting_position(&w, &user(i), T0).await;
    }
    w.configure(EVENT, &settings(60_000, 3, false)).await.unwrap();
    let l = lease(&w, "n1", T0).await;
    let out = w.tick(EVENT, l, T0, 100).await.unwrap();
    assert_eq!(out.admitted.len(), 3);
    assert_eq!((out.waiting, out.active), (2, 3));
    let out = w.tick(EVENT, l, T0 + 1_000, 100).await.unwrap();
    assert!(out.admitted.is_empty(), "no room until a window ends");
    // Keep the two waiting buyers present, then let the windows end.
    let l = w.acquire_lease(EVENT, "n1", T0 + 1_000, 3_000).await.unwrap().unwrap();
    w.status(EVENT, &[user(3).into(), user(4).into()], T0 + 60_000).await.unwrap();
    let l = w.acquire_lease(EVENT, "n1", T0 + 60_000, 3_000).await.unwrap().unwrap_or(l);
    let out = w.tick(EVENT, l, T0 + 60_000, 100).await.unwrap();
    let mut expired: Vec<String> = out.expired.iter().map(|u| u.to_string()).collect();
    expired.sort();
    assert_eq!(expired, vec![user(0), user(1), user(2)]);
    let admitted: Vec<String> = out.admitted.iter().map(|(u, _)| u.to_string()).collect();
    assert_eq!(admitted, vec![user(3), user(4)]);
    assert_eq!(w.admission(EVENT, &user(0), T0 + 60_000).await.unwrap(), None);
}

pub async fn ghosts_are_dropped_after_the_grace<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(600, 10, true)).await.unwrap();
    waiting_position(&w, "ghost", T0).await;
    waiting_position(&w, "present", T0).await;
    waiting_position(&w, "back", T0).await;
    w.status(EVENT, &["present".into()], T0 + 1_500).await.unwrap();
    // "back" returns within the grace: same place, still present.
    assert_eq!(waiting_position(&w, "back", T0 + 1_900).await, 3);
    w.status(EVENT, &["present".into()], T0 + 3_000).await.unwrap();
    let l = lease(&w, "n1", T0 + 2_500).await;
    // Kept for the whole grace (2 s) and its 1 s resolution…
    assert!(w.tick(EVENT, l, T0 + 3_000, 100).await.unwrap().dropped.is_empty());
    // …and dropped just after.
    let out = w.tick(EVENT, l, T0 + 3_001, 100).await.unwrap();
    assert_eq!(out.dropped, vec![UserId::from("ghost")]);
    assert!(out.admitted.is_empty(), "paused");
    let batch = w.status(EVENT, &["ghost".into(), "present".into(), "back".into()], T0 + 3_001).await.unwrap();
    // "back" was last seen at 1.9 s: still within 2 s + 1 s at 3.001 s.
    assert_eq!(
        batch.statuses,
        vec![PlaceStatus::Gone, PlaceStatus::Waiting { position: 1 }, PlaceStatus::Waiting { position: 2 }]
    );
    // A dropped buyer who comes back starts again at the end.
    assert_eq!(waiting_position(&w, "ghost", T0 + 3_002).await, 3);
}

pub async fn leave_gives_up_place_and_window<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(60, 1, false)).await.unwrap();
    assert!(matches!(w.join(EVENT, "a", T0).await.unwrap(), Some(JoinOutcome::Admitted { .. })));
    assert_eq!(waiting_position(&w, "b", T0).await, 1);
    assert_eq!(waiting_position(&w, "c", T0).await, 2);
    assert!(w.leave(EVENT, "b").await.unwrap());
    assert!(!w.leave(EVENT, "b").await.unwrap(), "nothing left to give up");
    assert_eq!(waiting_position(&w, "c", T0).await, 1);
    // The admitted buyer leaves: their slot is free for the next in line.
    assert!(w.leave(EVENT, "a").await.unwrap());
    assert_eq!(w.admission(EVENT, "a", T0).await.unwrap(), None);
    let l = lease(&w, "n1", T0 + 1_000).await;
    let out = w.tick(EVENT, l, T0 + 1_000, 10).await.unwrap();
    assert_eq!(out.admitted.iter().map(|(u, _)| u.to_string()).collect::<Vec<_>>(), vec!["c".to_string()]);
}

pub async fn lease_is_exclusive_and_fences_stale_holders<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(60_000, 100, true)).await.unwrap();
    waiting_position(&w, "x", T0).await;
    w.configure(EVENT, &settings(60_000, 100, false)).await.unwrap();
    let a = lease(&w, "node-a", T0).await;
    assert_eq!(w.acquire_lease(EVENT, "node-b", T0 + 1_000, 3_000).await.unwrap(), None);
    assert_eq!(w.acquire_lease(EVENT, "node-a", T0 + 2_000, 3_000).await.unwrap(), Some(a), "renewal keeps the token");
    // node-a stops renewing; once its lease lapses node-b takes over.
    assert_eq!(w.acquire_lease(EVENT, "node-b", T0 + 4_999, 3_000).await.unwrap(), None);
    let b = w.acquire_lease(EVENT, "node-b", T0 + 5_000, 3_000).await.unwrap().expect("lapsed lease is free");
    assert!(b.token > a.token);
    // The former holder wakes up and tries to admit: refused, nothing moves.
    let stale = w.tick(EVENT, a, T0 + 5_001, 10).await.unwrap();
    assert!(stale.fenced);
    assert!(stale.admitted.is_empty());
    w.status(EVENT, &["x".into()], T0 + 5_001).await.unwrap();
    let out = w.tick(EVENT, b, T0 + 5_001, 10).await.unwrap();
    assert!(!out.fenced);
    assert_eq!(out.admitted.len(), 1);
    // Releasing with a stale token does nothing; the holder's release frees it.
    w.release_lease(EVENT, "node-a", a).await.unwrap();
    assert_eq!(w.acquire_lease(EVENT, "node-a", T0 + 5_002, 3_000).await.unwrap(), None);
    w.release_lease(EVENT, "node-b", b).await.unwrap();
    let c = w.acquire_lease(EVENT, "node-a", T0 + 5_003, 3_000).await.unwrap().expect("released");
    assert!(c.token > b.token);
}

pub async fn positions_never_rise<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(600, 1_000, true)).await.unwrap();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut joined = 0usize;
    for round in 0..40 {
        let now = T0 + round * 100;
        for _ in 0..(next() % 8) {
            let u = user(joined);
            joined += 1;
            last.insert(u.clone(), waiting_position(&w, &u, now).await);
        }
        if !last.is_empty() && next() % 2 == 0 {
            let mut keys: Vec<&String> = last.keys().collect();
            keys.sort();
            let gone = keys[(next() % keys.len() as u64) as usize].clone();
            assert!(w.leave(EVENT, &gone).await.unwrap());
            last.remove(&gone);
        }
        let users: Vec<UserId> = last.keys().map(|u| UserId::from(u.as_str())).collect();
        let batch = w.status(EVENT, &users, now).await.unwrap();
        let mut seen = Vec::new();
        for (u, st) in users.iter().zip(batch.statuses) {
            let PlaceStatus::Waiting { position } = st else { panic!("{u} lost its place: {st:?}") };
            let before = last[&**u];
            assert!(position <= before, "{u} rose from {before} to {position}");
            last.insert(u.to_string(), position);
            seen.push(position);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=users.len() as u64).collect::<Vec<_>>(), "positions are 1..N without gaps");
    }
}

pub async fn stats_are_published<W: WaitingRoom>(w: W) {
    w.configure(EVENT, &settings(600, 10, true)).await.unwrap();
    assert_eq!(w.status(EVENT, &[], T0).await.unwrap().stats, None);
    let stats = RateStats { per_min: 98.5, low_per_min: 50.25, high_per_min: 120.0 };
    w.publish_stats(EVENT, &stats).await.unwrap();
    assert_eq!(w.status(EVENT, &[], T0).await.unwrap().stats, Some(stats));
}
