//! The one contract every seat-store adapter must pass. Each scenario is
//! its own test per adapter (`seat_store_contract!`), on a fresh store, so
//! the first failure does not hide the rest.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;

use super::memory::MemorySeatStore;
use super::redis::RedisSeatStore;
use super::{Cause, HoldRefused, LOG_START, SeatStore};
use crate::domain::seats::SeatStatus;
use crate::store::waiting::contract::{REDIS_URL, require_redis};

const EVENT: &str = "e-seats";
const T0: i64 = 1_700_000_000_000;

/// One `#[tokio::test]` per scenario, each on a fresh store from `$make`
/// (an expression whose value is a future of the store). An adapter passes
/// the contract when every one of them passes.
macro_rules! seat_store_contract {
    ($make:expr) => {
        $crate::store::seats::contract::seat_store_contract!(@each $make;
            holds_are_all_or_nothing,
            the_per_buyer_limit_counts_what_is_held,
            only_the_holder_releases,
            expiry_frees_seats_once,
            window_end_releases_everything_held,
            the_log_and_versions_tell_every_change_in_order,
            racing_buyers_never_share_a_seat,
            a_user_id_that_is_a_prefix_of_another_frees_nothing_of_it,
            odd_ids_round_trip_whole_through_holds_expiry_and_the_log,
            hold_limits_count_per_whole_user_id,
        );
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                $crate::store::seats::contract::$scenario($make.await).await;
            }
        )*
    };
}
pub(crate) use seat_store_contract;

mod memory {
    super::seat_store_contract!(async { super::MemorySeatStore::new() });
}

mod redis {
    super::seat_store_contract!(super::redis_store());
}

/// A Redis store under a random key prefix, so parallel tests never meet.
async fn redis_store() -> RedisSeatStore {
    require_redis().await;
    let prefix = format!("qt-test-{:016x}", rand::random::<u64>());
    RedisSeatStore::connect(REDIS_URL, &prefix).await.expect("a Redis connection")
}

fn seats(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// User ids as identity providers issue them, and ones made of every
/// separator an adapter could use (`|`, `,`, `:`, braces, space, quotes,
/// backslash, non-ASCII), including one that is the hex of another.
const ODD_USERS: [&str; 10] = [
    "auth0",
    "auth0|12345",
    "google-oauth2|1",
    "a@b.c",
    "h|auth0|1",
    "x:y {z}",
    "q\"u\\o,t e",
    "ünï|códe 🎟",
    "6175746830",
    "auth0|",
];

/// Seat ids with the same separators.
const ODD_SEATS: [&str; 10] = ["A,1", "B|2", "{c}:3", "d e", "q\"\\", "ü|,:{}", "h", "x,y,z", "5", "[\"j\"]"];

pub async fn holds_are_all_or_nothing<S: SeatStore>(s: S) {
    let a = s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 600_000, 8).await.unwrap().unwrap();
    assert_eq!(a.version, 2);
    assert_eq!(a.expires_ms, T0 + 600_000);
    let refused = s.hold(EVENT, "b", &seats(&["3", "2", "4"]), T0 + 600_000, 8).await.unwrap();
    assert_eq!(refused, Err(HoldRefused::Unavailable(seats(&["2"]))));
    assert_eq!(s.version(EVENT).await.unwrap(), 2, "a refused hold changes nothing");
    assert!(s.holds_of(EVENT, "b").await.unwrap().0.is_empty());
    let b = s.hold(EVENT, "b", &seats(&["3", "4"]), T0 + 700_000, 8).await.unwrap().unwrap();
    assert_eq!(b.version, 4);
    let (held, earliest) = s.holds_of(EVENT, "b").await.unwrap();
    assert_eq!((held, earliest), (seats(&["3", "4"]), Some(T0 + 700_000)));
    // Holding a seat one already holds is refused too: nothing doubles.
    assert_eq!(
        s.hold(EVENT, "a", &seats(&["1"]), T0 + 1, 8).await.unwrap(),
        Err(HoldRefused::Unavailable(seats(&["1"])))
    );
    // Another event's seats are separate.
    assert!(s.hold("other", "b", &seats(&["1"]), T0 + 1, 8).await.unwrap().is_ok());
    let mut taken = s.snapshot(EVENT).await.unwrap().taken;
    taken.sort();
    assert_eq!(taken, ["1", "2", "3", "4"].iter().map(|i| (i.to_string(), SeatStatus::Held)).collect::<Vec<_>>());
}

pub async fn the_per_buyer_limit_counts_what_is_held<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2", "3"]), T0 + 1_000, 4).await.unwrap().unwrap();
    assert_eq!(
        s.hold(EVENT, "a", &seats(&["4", "5"]), T0 + 1_000, 4).await.unwrap(),
        Err(HoldRefused::Limit { held: 3 })
    );
    assert!(s.hold(EVENT, "a", &seats(&["4"]), T0 + 1_000, 4).await.unwrap().is_ok());
    assert_eq!(s.release(EVENT, "a", &seats(&["1", "2"])).await.unwrap().seats, seats(&["1", "2"]));
    assert!(
        s.hold(EVENT, "a", &seats(&["5", "6"]), T0 + 1_000, 4).await.unwrap().is_ok(),
        "released seats no longer count"
    );
}

pub async fn only_the_holder_releases<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    let nothing = s.release(EVENT, "b", &seats(&["1", "2"])).await.unwrap();
    assert_eq!((nothing.seats.len(), nothing.version), (0, 2), "nothing released, version unchanged");
    let released = s.release(EVENT, "a", &seats(&["2", "9"])).await.unwrap();
    assert_eq!((released.seats, released.version), (seats(&["2"]), 3));
    assert_eq!(s.version(EVENT).await.unwrap(), 3);
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap().0, seats(&["1"]));
    assert!(s.hold(EVENT, "b", &seats(&["2"]), T0 + 1_000, 8).await.unwrap().is_ok());
}

pub async fn expiry_frees_seats_once<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3"]), T0 + 2_000, 8).await.unwrap().unwrap();
    assert!(s.expire(EVENT, T0 + 999, 100).await.unwrap().is_empty());
    // Many nodes sweep at once: each seat's expiry is processed once.
    let sweeps = join_all((0..5).map(|_| s.expire(EVENT, T0 + 1_000, 100))).await;
    let mut expired: Vec<(String, Vec<String>)> = sweeps
        .into_iter()
        .flat_map(|r| r.unwrap())
        .map(|(u, mut v)| {
            (u.to_string(), {
                v.sort();
                v
            })
        })
        .collect();
    expired.sort();
    assert_eq!(expired, vec![("a".to_string(), seats(&["1", "2"]))]);
    assert!(s.holds_of(EVENT, "a").await.unwrap().0.is_empty());
    assert_eq!(s.holds_of(EVENT, "b").await.unwrap().0, seats(&["3"]));
    assert_eq!(s.version(EVENT).await.unwrap(), 5);
    // A freed seat can be held again.
    assert!(s.hold(EVENT, "c", &seats(&["1"]), T0 + 9_000, 8).await.unwrap().is_ok());
    let left = s.expire(EVENT, T0 + 5_000, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&*left[0].0, "b");
}

pub async fn window_end_releases_everything_held<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "a", &seats(&["7"]), T0 + 2_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3"]), T0 + 2_000, 8).await.unwrap().unwrap();
    let mut released = s.release_all(EVENT, "a", Cause::WindowEnded).await.unwrap();
    released.seats.sort();
    assert_eq!((released.seats, released.version), (seats(&["1", "2", "7"]), 7));
    assert!(s.release_all(EVENT, "a", Cause::WindowEnded).await.unwrap().seats.is_empty());
    assert!(s.expire(EVENT, T0 + 1_500, 10).await.unwrap().is_empty(), "released seats do not expire later");
    let log = s.log_after(EVENT, LOG_START, 100).await.unwrap();
    let last = &log.last().unwrap().diff;
    assert_eq!((last.cause, last.status, last.user.as_str()), (Cause::WindowEnded, SeatStatus::Free, "a"));
}

pub async fn the_log_and_versions_tell_every_change_in_order<S: SeatStore>(s: S) {
    assert_eq!(s.relay_cursor(EVENT).await.unwrap(), LOG_START);
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3"]), T0 + 5_000, 8).await.unwrap().unwrap();
    s.release(EVENT, "a", &seats(&["1"])).await.unwrap();
    s.expire(EVENT, T0 + 1_000, 10).await.unwrap();
    let log = s.log_after(EVENT, LOG_START, 100).await.unwrap();
    let summary: Vec<(u64, SeatStatus, Vec<String>, &str, Cause)> = log
        .iter()
        .map(|e| (e.diff.version, e.diff.status, e.diff.seats.clone(), e.diff.user.as_str(), e.diff.cause))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, SeatStatus::Held, seats(&["1", "2"]), "a", Cause::Held),
            (3, SeatStatus::Held, seats(&["3"]), "b", Cause::Held),
            (4, SeatStatus::Free, seats(&["1"]), "a", Cause::Released),
            (5, SeatStatus::Free, seats(&["2"]), "a", Cause::Expired),
        ]
    );
    assert!(log.iter().all(|e| e.diff.event == EVENT));
    // Reading after a cursor continues exactly where it left off.
    let rest = s.log_after(EVENT, &log[1].cursor, 100).await.unwrap();
    assert_eq!(rest, log[2..].to_vec());
    let two = s.log_after(EVENT, LOG_START, 2).await.unwrap();
    assert_eq!(two, log[..2].to_vec());
    assert!(s.log_after(EVENT, &log[3].cursor, 100).await.unwrap().is_empty());
    assert_eq!(s.relayed_version(EVENT).await.unwrap(), 0);
    s.save_relay_cursor(EVENT, &log[1].cursor, log[1].diff.version).await.unwrap();
    assert_eq!(s.relay_cursor(EVENT).await.unwrap(), log[1].cursor);
    assert_eq!(s.relayed_version(EVENT).await.unwrap(), 3);
    // The snapshot is at the last logged version.
    let snap = s.snapshot(EVENT).await.unwrap();
    assert_eq!(snap.version, 5);
    assert_eq!(snap.taken, vec![("3".to_string(), SeatStatus::Held)]);
}

pub async fn racing_buyers_never_share_a_seat<S: SeatStore>(s: S) {
    // 60 buyers race for 10 seats in overlapping pairs and singles.
    let requests: Vec<(String, Vec<String>)> = (0..60)
        .map(|b| {
            let first = b % 10;
            let wanted = if b % 3 == 0 {
                vec![first.to_string()]
            } else {
                vec![first.to_string(), ((first + 1) % 10).to_string()]
            };
            (format!("buyer{b}"), wanted)
        })
        .collect();
    let results = join_all(requests.iter().map(|(u, want)| s.hold(EVENT, u, want, T0 + 60_000, 8))).await;
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut named_taken: HashSet<String> = HashSet::new();
    let mut held_total = 0;
    for ((user, want), result) in requests.iter().zip(results) {
        match result.unwrap() {
            Ok(_) => {
                held_total += want.len();
                for seat in want {
                    assert!(owner.insert(seat.clone(), user.clone()).is_none(), "seat {seat} held twice");
                }
            }
            Err(HoldRefused::Unavailable(taken)) => {
                assert!(!taken.is_empty());
                assert!(taken.iter().all(|t| want.contains(t)), "names only requested seats");
                named_taken.extend(taken);
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(s.version(EVENT).await.unwrap(), held_total as u64, "one version per held seat");
    let snapshot: HashSet<String> = s.snapshot(EVENT).await.unwrap().taken.into_iter().map(|(id, _)| id).collect();
    assert_eq!(snapshot, owner.keys().cloned().collect::<HashSet<_>>());
    assert!(named_taken.is_subset(&snapshot), "every loser named seats that really are taken");
    for (seat, user) in &owner {
        assert!(s.holds_of(EVENT, user).await.unwrap().0.contains(seat));
    }
}

pub async fn a_user_id_that_is_a_prefix_of_another_frees_nothing_of_it<S: SeatStore>(s: S) {
    let victim = "auth0|12345";
    let held = s.hold(EVENT, victim, &seats(&["A,1", "B|2"]), T0 + 60_000, 4).await.unwrap().unwrap();
    assert_eq!(held.version, 2);
    s.hold(EVENT, "auth0", &seats(&["{c}:3"]), T0 + 30_000, 4).await.unwrap().unwrap();
    // Naming the victim's seats releases nothing, whatever the prefix.
    for thief in ["auth0", "auth0|", "auth0|1234", "", "h", "h|auth0|12345"] {
        let r = s.release(EVENT, thief, &seats(&["A,1", "B|2"])).await.unwrap();
        assert_eq!((r.seats.len(), r.version), (0, 3), "{thief:?} released the victim's seats");
    }
    // Leaving releases the leaver's own seats only.
    let r = s.release_all(EVENT, "auth0", Cause::Released).await.unwrap();
    assert_eq!((r.seats, r.version), (seats(&["{c}:3"]), 4));
    for thief in ["auth0", "auth0|", "auth0|1234"] {
        assert!(s.release_all(EVENT, thief, Cause::WindowEnded).await.unwrap().seats.is_empty(), "{thief:?}");
    }
    assert_eq!(s.version(EVENT).await.unwrap(), 4);
    assert_eq!(s.holds_of(EVENT, victim).await.unwrap(), (seats(&["A,1", "B|2"]), Some(T0 + 60_000)));
    assert_eq!(s.holds_of(EVENT, "auth0").await.unwrap(), (vec![], None));
    let mut taken = s.snapshot(EVENT).await.unwrap().taken;
    taken.sort();
    assert_eq!(taken, vec![("A,1".to_string(), SeatStatus::Held), ("B|2".to_string(), SeatStatus::Held)]);
    // The victim's count is exactly its two seats: two more fit, three do not.
    assert_eq!(
        s.hold(EVENT, victim, &seats(&["d e", "h", "5"]), T0 + 60_000, 4).await.unwrap(),
        Err(HoldRefused::Limit { held: 2 })
    );
    s.hold(EVENT, victim, &seats(&["d e", "h"]), T0 + 60_000, 4).await.unwrap().unwrap();
    // And the victim still releases its own.
    let mut r = s.release_all(EVENT, victim, Cause::Released).await.unwrap();
    r.seats.sort();
    assert_eq!(r.seats, seats(&["A,1", "B|2", "d e", "h"]));
    assert!(s.snapshot(EVENT).await.unwrap().taken.is_empty());
}

pub async fn odd_ids_round_trip_whole_through_holds_expiry_and_the_log<S: SeatStore>(s: S) {
    // User i holds seat i until T0 + (i + 1) s.
    let until = |i: usize| T0 + (i as i64 + 1) * 1_000;
    for (i, (user, seat)) in ODD_USERS.iter().zip(ODD_SEATS).enumerate() {
        let held = s.hold(EVENT, user, &seats(&[seat]), until(i), 4).await.unwrap().unwrap();
        assert_eq!(held.version, i as u64 + 1);
    }
    // One more multi-seat hold, so a log entry lists several odd seats.
    s.hold(EVENT, "auth0|12345", &seats(&["K,1", "K|2", "K\"3"]), T0 + 50_000, 4).await.unwrap().unwrap();
    for (i, (user, seat)) in ODD_USERS.iter().zip(ODD_SEATS).enumerate() {
        let mut want = seats(&[seat]);
        let mut earliest = until(i);
        if *user == "auth0|12345" {
            want.extend(seats(&["K,1", "K|2", "K\"3"]));
            want.sort();
            earliest = earliest.min(T0 + 50_000);
        }
        assert_eq!(s.holds_of(EVENT, user).await.unwrap(), (want, Some(earliest)), "{user:?}");
    }
    let mut taken: Vec<String> = s.snapshot(EVENT).await.unwrap().taken.into_iter().map(|(id, _)| id).collect();
    taken.sort();
    let mut all: Vec<String> = ODD_SEATS.iter().chain(&["K,1", "K|2", "K\"3"]).map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(taken, all);
    // Each sweep ends exactly one buyer's hold and names that buyer whole.
    for (i, (user, seat)) in ODD_USERS.iter().zip(ODD_SEATS).enumerate() {
        let expired = s.expire(EVENT, until(i), 100).await.unwrap();
        let expired: Vec<(String, Vec<String>)> = expired.into_iter().map(|(u, v)| (u.to_string(), v)).collect();
        assert_eq!(expired, vec![(user.to_string(), seats(&[seat]))], "sweep {i}");
    }
    assert_eq!(s.holds_of(EVENT, "auth0|12345").await.unwrap(), (seats(&["K\"3", "K,1", "K|2"]), Some(T0 + 50_000)));
    // Released and expired seats no longer count: each buyer may hold its
    // whole limit again.
    for (i, user) in ODD_USERS.iter().enumerate().filter(|(_, u)| **u != "auth0|12345") {
        let mine: Vec<String> = (0..4).map(|n| format!("{user}/{i}/{n}")).collect();
        s.hold(EVENT, user, &mine, T0 + 90_000, 4).await.unwrap().unwrap();
        s.release(EVENT, user, &mine).await.unwrap();
    }
    // The log tells every change with its seats and user exactly.
    let log = s.log_after(EVENT, LOG_START, 1_000).await.unwrap();
    let n = ODD_USERS.len();
    assert_eq!(log.len(), n + 1 + n + 2 * (n - 1));
    for (i, (user, seat)) in ODD_USERS.iter().zip(ODD_SEATS).enumerate() {
        let held = &log[i].diff;
        assert_eq!((held.user.as_str(), held.seats.clone(), held.status), (*user, seats(&[seat]), SeatStatus::Held));
        let expired = &log[n + 1 + i].diff;
        assert_eq!(
            (expired.user.as_str(), expired.seats.clone(), expired.cause),
            (*user, seats(&[seat]), Cause::Expired)
        );
    }
    assert_eq!(log[n].diff.seats, seats(&["K,1", "K|2", "K\"3"]));
    let mut version = 0;
    for e in &log {
        version += e.diff.seats.len() as u64;
        assert_eq!(e.diff.version, version, "versions rise by the seats changed");
    }
    assert_eq!(s.version(EVENT).await.unwrap(), version);
}

pub async fn hold_limits_count_per_whole_user_id<S: SeatStore>(s: S) {
    // Users whose ids run into each other under any joining each have
    // their own limit of 2.
    let users = ["auth0", "auth0|12345", "auth0|1", "2345", "6175746830", "a:b", "a", "b"];
    for (i, user) in users.iter().enumerate() {
        let mine = [format!("{i},1"), format!("{i}|2")];
        s.hold(EVENT, user, &mine, T0 + 60_000, 2).await.unwrap().unwrap();
    }
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            s.hold(EVENT, user, &[format!("{i}:3")], T0 + 60_000, 2).await.unwrap(),
            Err(HoldRefused::Limit { held: 2 }),
            "{user:?}"
        );
        let (held, _) = s.holds_of(EVENT, user).await.unwrap();
        assert_eq!(held, vec![format!("{i},1"), format!("{i}|2")], "{user:?}");
    }
    // Expiry frees each buyer's count, not a neighbour's.
    assert_eq!(s.expire(EVENT, T0 + 60_000, 100).await.unwrap().len(), users.len());
    for (i, user) in users.iter().enumerate() {
        s.hold(EVENT, user, &[format!("{i}:3"), format!("{i}:4")], T0 + 90_000, 2).await.unwrap().unwrap();
    }
}
