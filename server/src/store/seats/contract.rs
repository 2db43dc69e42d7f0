//! The one contract every seat-store adapter must pass. Each scenario is
//! its own test per adapter (`seat_store_contract!`), on a fresh store, so
//! the first failure does not hide the rest.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;

use super::memory::MemorySeatStore;
use super::redis::RedisSeatStore;
use super::{Cause, Held, HoldRefused, LOG_START, SeatStore};
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
            checkout_needs_every_seat_held_by_the_buyer,
            checkout_extends_a_hold_once_and_never_shortens_it,
            release_and_release_all_skip_checked_out_seats,
            uncheckout_makes_ordinary_holds_again_with_their_expiry,
            expiry_ends_checked_out_holds,
            retake_takes_free_and_own_seats_without_a_limit,
            retake_refuses_seats_held_by_others_or_sold,
            racing_retakes_give_the_seats_to_one_buyer,
            sell_overrules_other_buyers_holds_and_forgets_them,
            selling_sold_seats_again_changes_nothing,
            a_sale_racing_holds_overrules_exactly_the_holds_before_it,
            unsell_frees_only_sold_seats,
            checkout_retake_sale_and_refund_log_every_change_in_order,
            odd_ids_stay_whole_through_checkout_retake_sale_and_refund,
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

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Seats by buyer, as plain strings, in a fixed order.
fn by_buyer(groups: Vec<(crate::domain::UserId, Vec<String>)>) -> Vec<(String, Vec<String>)> {
    sorted(groups.into_iter().map(|(u, v)| (u.to_string(), sorted(v))).collect())
}

/// The snapshot's taken seats in a fixed order.
async fn taken<S: SeatStore>(s: &S) -> Vec<(String, SeatStatus)> {
    sorted(s.snapshot(EVENT).await.unwrap().taken)
}

fn all(ids: &[&str], status: SeatStatus) -> Vec<(String, SeatStatus)> {
    ids.iter().map(|i| (i.to_string(), status)).collect()
}

/// Log entries after version `after` as (version, status, sorted seats,
/// user, cause).
async fn log_since<S: SeatStore>(s: &S, after: u64) -> Vec<(u64, SeatStatus, Vec<String>, String, Cause)> {
    s.log_after(EVENT, LOG_START, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.diff.version > after)
        .map(|e| (e.diff.version, e.diff.status, sorted(e.diff.seats), e.diff.user, e.diff.cause))
        .collect()
}

/// Every log entry raises the version by exactly its seats, from zero, up
/// to the store's version: no gap, no double count.
async fn assert_versions_gap_free<S: SeatStore>(s: &S) {
    let log = s.log_after(EVENT, LOG_START, 10_000).await.unwrap();
    let mut version = 0;
    for e in &log {
        version += e.diff.seats.len() as u64;
        assert_eq!(e.diff.version, version, "versions rise by the seats changed: {:?}", e.diff);
    }
    assert_eq!(s.version(EVENT).await.unwrap(), version);
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

pub async fn checkout_needs_every_seat_held_by_the_buyer<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.sell(EVENT, "a", &seats(&["5"])).await.unwrap();
    // Someone else's hold, a free seat and the buyer's own sold seat are
    // not the buyer's holds: all are named, nothing is checked out.
    let refused = s.checkout(EVENT, "a", &seats(&["1", "3", "2", "4", "5"]), T0 + 9_000).await.unwrap();
    assert_eq!(refused.map_err(sorted), Err(seats(&["3", "4", "5"])));
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1", "2"]), Some(T0 + 1_000)), "nothing extended");
    assert_eq!(s.release(EVENT, "a", &seats(&["1"])).await.unwrap().seats, seats(&["1"]), "nothing checked out");
    assert_eq!(s.checkout(EVENT, "b", &seats(&["2"]), T0 + 9_000).await.unwrap(), Err(seats(&["2"])));
    // Checking out changes no seat's status: no version, no log entry.
    assert_eq!(s.checkout(EVENT, "a", &seats(&["2"]), T0 + 9_000).await.unwrap(), Ok(T0 + 9_000));
    assert_eq!(s.version(EVENT).await.unwrap(), 5);
    assert_eq!(s.log_after(EVENT, LOG_START, 100).await.unwrap().len(), 4);
    assert_eq!(
        taken(&s).await,
        vec![("2".into(), SeatStatus::Held), ("3".into(), SeatStatus::Held), ("5".into(), SeatStatus::Sold)]
    );
}

pub async fn checkout_extends_a_hold_once_and_never_shortens_it<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "a", &seats(&["2"]), T0 + 5_000, 8).await.unwrap().unwrap();
    // Seat 1 is raised to the checkout's time, seat 2 already ends later.
    assert_eq!(s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 3_000).await.unwrap(), Ok(T0 + 3_000));
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1", "2"]), Some(T0 + 3_000)));
    // Checking out again, or after a cancel, extends nothing.
    assert_eq!(s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 9_000).await.unwrap(), Ok(T0 + 3_000));
    s.uncheckout(EVENT, "a", &seats(&["1", "2"])).await.unwrap();
    assert_eq!(s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 9_000).await.unwrap(), Ok(T0 + 3_000));
    // A hold checked out for the first time alongside is extended.
    s.hold(EVENT, "a", &seats(&["3"]), T0 + 1_000, 8).await.unwrap().unwrap();
    assert_eq!(s.checkout(EVENT, "a", &seats(&["1", "3"]), T0 + 8_000).await.unwrap(), Ok(T0 + 3_000));
    // A checkout time before the hold's end does not shorten it.
    s.hold(EVENT, "a", &seats(&["4"]), T0 + 7_000, 8).await.unwrap().unwrap();
    assert_eq!(s.checkout(EVENT, "a", &seats(&["4"]), T0 + 2_000).await.unwrap(), Ok(T0 + 7_000));
    assert_eq!(s.version(EVENT).await.unwrap(), 4, "checkouts change no status");
    // Each seat expires at its own end.
    assert!(s.expire(EVENT, T0 + 2_999, 100).await.unwrap().is_empty(), "seats 1 and 3 were extended");
    assert_eq!(by_buyer(s.expire(EVENT, T0 + 3_000, 100).await.unwrap()), vec![("a".into(), seats(&["1"]))]);
    assert_eq!(by_buyer(s.expire(EVENT, T0 + 5_000, 100).await.unwrap()), vec![("a".into(), seats(&["2"]))]);
    assert_eq!(by_buyer(s.expire(EVENT, T0 + 7_000, 100).await.unwrap()), vec![("a".into(), seats(&["4"]))]);
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["3"]), Some(T0 + 8_000)));
}

pub async fn release_and_release_all_skip_checked_out_seats<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2", "3"]), T0 + 1_000, 3).await.unwrap().unwrap();
    s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 5_000).await.unwrap().unwrap();
    let r = s.release(EVENT, "a", &seats(&["1", "2", "3"])).await.unwrap();
    assert_eq!((r.seats, r.version), (seats(&["3"]), 4), "only the seat not checked out is released");
    let r = s.release_all(EVENT, "a", Cause::WindowEnded).await.unwrap();
    assert_eq!((r.seats, r.version), (vec![], 4), "checked-out seats are neither released nor reported");
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1", "2"]), Some(T0 + 5_000)));
    assert_eq!(taken(&s).await, all(&["1", "2"], SeatStatus::Held));
    // They still count against the buyer's limit, even after release_all.
    assert_eq!(
        s.hold(EVENT, "a", &seats(&["4", "5"]), T0 + 1_000, 3).await.unwrap(),
        Err(HoldRefused::Limit { held: 2 })
    );
    assert_eq!(
        s.hold(EVENT, "b", &seats(&["1"]), T0 + 1_000, 3).await.unwrap(),
        Err(HoldRefused::Unavailable(seats(&["1"])))
    );
    // Once the order is cancelled, they are ordinary holds again.
    s.uncheckout(EVENT, "a", &seats(&["1"])).await.unwrap();
    let r = s.release_all(EVENT, "a", Cause::Released).await.unwrap();
    assert_eq!((r.seats, r.version), (seats(&["1"]), 5));
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap().0, seats(&["2"]));
    assert_versions_gap_free(&s).await;
}

pub async fn uncheckout_makes_ordinary_holds_again_with_their_expiry<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 4_000).await.unwrap().unwrap();
    s.checkout(EVENT, "b", &seats(&["3"]), T0 + 4_000).await.unwrap().unwrap();
    // Only the buyer's own checked-out seats; others (a seat of someone
    // else, a free seat) are left and are no error.
    s.uncheckout(EVENT, "a", &seats(&["1", "3", "9"])).await.unwrap();
    s.uncheckout(EVENT, "b", &seats(&["2"])).await.unwrap();
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1", "2"]), Some(T0 + 4_000)), "the expiry stays");
    assert_eq!(s.version(EVENT).await.unwrap(), 3, "no status changed");
    assert_eq!(s.release(EVENT, "a", &seats(&["1", "2"])).await.unwrap().seats, seats(&["1"]));
    assert!(
        s.release_all(EVENT, "b", Cause::Released).await.unwrap().seats.is_empty(),
        "b's seat is still checked out"
    );
    // Uncheckout twice is harmless; the hold then ends at its expiry.
    s.uncheckout(EVENT, "a", &seats(&["2"])).await.unwrap();
    s.uncheckout(EVENT, "a", &seats(&["2"])).await.unwrap();
    assert!(s.expire(EVENT, T0 + 3_999, 100).await.unwrap().is_empty());
    assert_eq!(
        by_buyer(s.expire(EVENT, T0 + 4_000, 100).await.unwrap()),
        vec![("a".into(), seats(&["2"])), ("b".into(), seats(&["3"]))]
    );
    assert_versions_gap_free(&s).await;
}

pub async fn expiry_ends_checked_out_holds<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 2).await.unwrap().unwrap();
    s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 2_000).await.unwrap().unwrap();
    assert!(s.expire(EVENT, T0 + 1_999, 100).await.unwrap().is_empty());
    let sweeps = join_all((0..5).map(|_| s.expire(EVENT, T0 + 2_000, 100))).await;
    let expired = by_buyer(sweeps.into_iter().flat_map(|r| r.unwrap()).collect());
    assert_eq!(expired, vec![("a".into(), seats(&["1", "2"]))], "expired once");
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (vec![], None));
    assert!(taken(&s).await.is_empty());
    assert_eq!(log_since(&s, 2).await, vec![(4, SeatStatus::Free, seats(&["1", "2"]), "a".into(), Cause::Expired)]);
    // The seats and the buyer's limit are free again, and the old checkout
    // does not cling to a new hold.
    s.hold(EVENT, "a", &seats(&["1", "3"]), T0 + 3_000, 2).await.unwrap().unwrap();
    assert_eq!(s.release(EVENT, "a", &seats(&["1"])).await.unwrap().seats, seats(&["1"]));
    assert_eq!(s.checkout(EVENT, "a", &seats(&["3"]), T0 + 6_000).await.unwrap(), Ok(T0 + 6_000), "a new hold extends");
}

pub async fn retake_takes_free_and_own_seats_without_a_limit<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1"]), T0 + 9_000, 2).await.unwrap().unwrap();
    s.hold(EVENT, "a", &seats(&["2"]), T0 + 1_000, 2).await.unwrap().unwrap();
    // 1 keeps its later end, 2 is raised, 3 and 4 were free (the buyer's
    // limit of 2 does not apply).
    let held = s.retake(EVENT, "a", &seats(&["1", "2", "3", "4"]), T0 + 5_000).await.unwrap();
    assert_eq!(held, Ok(Held { expires_ms: T0 + 5_000, version: 4 }));
    assert_eq!(log_since(&s, 2).await, vec![(4, SeatStatus::Held, seats(&["3", "4"]), "a".into(), Cause::Retaken)]);
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1", "2", "3", "4"]), Some(T0 + 5_000)));
    assert_eq!(taken(&s).await, all(&["1", "2", "3", "4"], SeatStatus::Held));
    // Retaken seats are checked out: leaving does not release them.
    assert!(s.release_all(EVENT, "a", Cause::WindowEnded).await.unwrap().seats.is_empty());
    // Retaking what the buyer already holds changes no status.
    let again = s.retake(EVENT, "a", &seats(&["3"]), T0 + 6_000).await.unwrap();
    assert_eq!(again, Ok(Held { expires_ms: T0 + 6_000, version: 4 }));
    // A retake counts as the hold's extension: a later checkout adds none.
    s.uncheckout(EVENT, "a", &seats(&["4"])).await.unwrap();
    assert_eq!(s.checkout(EVENT, "a", &seats(&["4"]), T0 + 20_000).await.unwrap(), Ok(T0 + 5_000));
    assert_eq!(
        by_buyer(s.expire(EVENT, T0 + 5_000, 100).await.unwrap()),
        vec![("a".into(), seats(&["2", "4"]))],
        "retaken holds end at their expiry"
    );
    assert_versions_gap_free(&s).await;
}

pub async fn retake_refuses_seats_held_by_others_or_sold<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.sell(EVENT, "c", &seats(&["3"])).await.unwrap();
    s.sell(EVENT, "a", &seats(&["5"])).await.unwrap();
    let refused = s.retake(EVENT, "a", &seats(&["1", "2", "3", "4", "5"]), T0 + 9_000).await.unwrap();
    assert_eq!(refused.map_err(sorted), Err(seats(&["2", "3", "5"])));
    // Nothing changed: 4 is still free, 1 is an ordinary hold with its
    // old expiry.
    assert_eq!(s.version(EVENT).await.unwrap(), 4);
    assert_eq!(
        taken(&s).await,
        vec![
            ("1".into(), SeatStatus::Held),
            ("2".into(), SeatStatus::Held),
            ("3".into(), SeatStatus::Sold),
            ("5".into(), SeatStatus::Sold)
        ]
    );
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (seats(&["1"]), Some(T0 + 1_000)));
    assert_eq!(s.release(EVENT, "a", &seats(&["1"])).await.unwrap().seats, seats(&["1"]));
    assert_eq!(s.holds_of(EVENT, "b").await.unwrap(), (seats(&["2"]), Some(T0 + 1_000)));
    assert_versions_gap_free(&s).await;
}

pub async fn racing_retakes_give_the_seats_to_one_buyer<S: SeatStore>(s: S) {
    let want = seats(&["1", "2", "3"]);
    let buyers: Vec<String> = (0..20).map(|b| format!("payer{b}")).collect();
    let results = join_all(buyers.iter().map(|u| s.retake(EVENT, u, &want, T0 + 60_000))).await;
    let winners: Vec<&String> =
        buyers.iter().zip(&results).filter(|(_, r)| r.as_ref().unwrap().is_ok()).map(|(u, _)| u).collect();
    assert_eq!(winners.len(), 1, "exactly one payment gets the seats");
    for r in &results {
        if let Err(refused) = r.as_ref().unwrap() {
            assert_eq!(sorted(refused.clone()), want, "a loser is told every seat is taken");
        }
    }
    assert_eq!(s.holds_of(EVENT, winners[0]).await.unwrap(), (want.clone(), Some(T0 + 60_000)));
    assert_eq!(s.version(EVENT).await.unwrap(), 3);
    assert_versions_gap_free(&s).await;
}

pub async fn sell_overrules_other_buyers_holds_and_forgets_them<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 5_000).await.unwrap().unwrap();
    s.hold(EVENT, "b", &seats(&["3", "4"]), T0 + 1_000, 2).await.unwrap().unwrap();
    s.hold(EVENT, "c", &seats(&["5"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.checkout(EVENT, "c", &seats(&["5"]), T0 + 5_000).await.unwrap().unwrap();
    // a's own checked-out holds, holds of b and c and a free seat.
    let sold = s.sell(EVENT, "a", &seats(&["1", "2", "3", "5", "6"])).await.unwrap();
    assert_eq!((sorted(sold.seats), sold.version), (seats(&["1", "2", "3", "5", "6"]), 10));
    assert_eq!(by_buyer(sold.overruled), vec![("b".into(), seats(&["3"])), ("c".into(), seats(&["5"]))]);
    assert_eq!(
        log_since(&s, 5).await,
        vec![(10, SeatStatus::Sold, seats(&["1", "2", "3", "5", "6"]), "a".into(), Cause::Sold)]
    );
    assert_eq!(
        taken(&s).await,
        vec![
            ("1".into(), SeatStatus::Sold),
            ("2".into(), SeatStatus::Sold),
            ("3".into(), SeatStatus::Sold),
            ("4".into(), SeatStatus::Held),
            ("5".into(), SeatStatus::Sold),
            ("6".into(), SeatStatus::Sold)
        ]
    );
    // Sold seats are nobody's holds: not listed, not counted, not released,
    // not expired, not holdable, not checked out.
    assert_eq!(s.holds_of(EVENT, "a").await.unwrap(), (vec![], None));
    assert_eq!(s.holds_of(EVENT, "b").await.unwrap(), (seats(&["4"]), Some(T0 + 1_000)));
    assert_eq!(s.holds_of(EVENT, "c").await.unwrap(), (vec![], None));
    s.hold(EVENT, "b", &seats(&["7"]), T0 + 1_000, 2).await.unwrap().unwrap();
    assert_eq!(s.hold(EVENT, "b", &seats(&["8"]), T0 + 1_000, 2).await.unwrap(), Err(HoldRefused::Limit { held: 2 }));
    assert!(s.release(EVENT, "a", &seats(&["1", "2"])).await.unwrap().seats.is_empty());
    assert!(s.release_all(EVENT, "a", Cause::Released).await.unwrap().seats.is_empty());
    assert!(s.release(EVENT, "b", &seats(&["3"])).await.unwrap().seats.is_empty());
    assert_eq!(s.checkout(EVENT, "a", &seats(&["1"]), T0 + 9_000).await.unwrap(), Err(seats(&["1"])));
    assert_eq!(
        s.hold(EVENT, "d", &seats(&["6", "9"]), T0 + 1_000, 8).await.unwrap(),
        Err(HoldRefused::Unavailable(seats(&["6"])))
    );
    assert_eq!(
        by_buyer(s.expire(EVENT, T0 + 99_000, 100).await.unwrap()),
        vec![("b".into(), seats(&["4", "7"]))],
        "sold seats never expire"
    );
    assert_eq!(taken(&s).await, all(&["1", "2", "3", "5", "6"], SeatStatus::Sold));
    assert_versions_gap_free(&s).await;
}

pub async fn selling_sold_seats_again_changes_nothing<S: SeatStore>(s: S) {
    let first = s.sell(EVENT, "a", &seats(&["1", "2"])).await.unwrap();
    assert_eq!((sorted(first.seats), first.version, first.overruled), (seats(&["1", "2"]), 2, vec![]));
    let again = s.sell(EVENT, "a", &seats(&["1", "2"])).await.unwrap();
    assert_eq!((again.seats, again.version, again.overruled), (vec![], 2, vec![]), "a replayed sale changes nothing");
    // Already sold to someone else: left as it is; only the free seat sells.
    let other = s.sell(EVENT, "b", &seats(&["2", "3"])).await.unwrap();
    assert_eq!((other.seats, other.version, other.overruled), (seats(&["3"]), 3, vec![]));
    assert_eq!(
        log_since(&s, 0).await,
        vec![
            (2, SeatStatus::Sold, seats(&["1", "2"]), "a".into(), Cause::Sold),
            (3, SeatStatus::Sold, seats(&["3"]), "b".into(), Cause::Sold),
        ]
    );
    // Seat 2 is still a's: its refund is logged for a.
    s.unsell(EVENT, &seats(&["2"])).await.unwrap();
    assert_eq!(log_since(&s, 3).await, vec![(4, SeatStatus::Free, seats(&["2"]), "a".into(), Cause::Refunded)]);
}

pub async fn a_sale_racing_holds_overrules_exactly_the_holds_before_it<S: SeatStore>(s: S) {
    // 30 buyers race for 10 seats in pairs while the record sells them all.
    let all_seats: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let requests: Vec<(String, Vec<String>)> =
        (0..30).map(|b| (format!("buyer{b}"), vec![(b % 10).to_string(), ((b + 1) % 10).to_string()])).collect();
    let holds = join_all(requests.iter().map(|(u, want)| s.hold(EVENT, u, want, T0 + 60_000, 8)));
    let (holds, sold) = futures_util::join!(holds, s.sell(EVENT, "payer", &all_seats));
    let sold = sold.unwrap();
    assert_eq!(sorted(sold.seats), sorted(all_seats.clone()));
    // A hold either came before the sale (and was overruled whole) or after
    // it (and was refused); what stays held is exactly what came after.
    let overruled = by_buyer(sold.overruled);
    let mut before: Vec<(String, Vec<String>)> = Vec::new();
    let mut after: Vec<(String, Vec<String>)> = Vec::new();
    for ((user, want), result) in requests.iter().zip(holds) {
        if result.unwrap().is_ok() {
            let (now, _) = s.holds_of(EVENT, user).await.unwrap();
            if now.is_empty() {
                before.push((user.clone(), sorted(want.clone())))
            } else {
                after.push((user.clone(), now))
            }
        }
    }
    assert!(after.is_empty(), "every seat was sold, so no hold can follow the sale: {after:?}");
    assert_eq!(overruled, sorted(before.clone()));
    let held: u64 = before.iter().map(|(_, v)| v.len() as u64).sum();
    assert_eq!(sold.version, held + 10);
    assert_eq!(taken(&s).await, sorted(all_seats.iter().map(|i| (i.clone(), SeatStatus::Sold)).collect()));
    assert!(s.expire(EVENT, T0 + 60_000, 100).await.unwrap().is_empty());
    assert_versions_gap_free(&s).await;
}

pub async fn unsell_frees_only_sold_seats<S: SeatStore>(s: S) {
    s.sell(EVENT, "a", &seats(&["1", "2"])).await.unwrap();
    s.sell(EVENT, "b", &seats(&["3"])).await.unwrap();
    s.hold(EVENT, "c", &seats(&["4"]), T0 + 1_000, 8).await.unwrap().unwrap();
    // 4 is held and 5 free: left as they are.
    let r = s.unsell(EVENT, &seats(&["1", "3", "4", "5"])).await.unwrap();
    assert_eq!((sorted(r.seats), r.version), (seats(&["1", "3"]), 6));
    // One entry per buyer the seats were sold to.
    let mut refunds = log_since(&s, 4).await;
    refunds.sort_by(|x, y| x.3.cmp(&y.3));
    let refunds: Vec<_> = refunds.into_iter().map(|(_, st, seats, user, cause)| (st, seats, user, cause)).collect();
    assert_eq!(
        refunds,
        vec![
            (SeatStatus::Free, seats(&["1"]), "a".into(), Cause::Refunded),
            (SeatStatus::Free, seats(&["3"]), "b".into(), Cause::Refunded),
        ]
    );
    assert_eq!(taken(&s).await, vec![("2".into(), SeatStatus::Sold), ("4".into(), SeatStatus::Held)]);
    assert_eq!(s.holds_of(EVENT, "c").await.unwrap(), (seats(&["4"]), Some(T0 + 1_000)));
    let again = s.unsell(EVENT, &seats(&["1", "3"])).await.unwrap();
    assert_eq!((again.seats, again.version), (vec![], 6), "a refunded seat is not refunded twice");
    // Refunded seats are on sale again.
    s.hold(EVENT, "d", &seats(&["1", "3"]), T0 + 1_000, 8).await.unwrap().unwrap();
    assert_versions_gap_free(&s).await;
}

pub async fn checkout_retake_sale_and_refund_log_every_change_in_order<S: SeatStore>(s: S) {
    s.hold(EVENT, "a", &seats(&["1", "2"]), T0 + 1_000, 8).await.unwrap().unwrap();
    s.checkout(EVENT, "a", &seats(&["1", "2"]), T0 + 5_000).await.unwrap().unwrap();
    s.uncheckout(EVENT, "a", &seats(&["2"])).await.unwrap();
    s.release(EVENT, "a", &seats(&["2"])).await.unwrap();
    // The payment lands: 1 is still a's, 2 was let go and is free again.
    assert_eq!(s.retake(EVENT, "a", &seats(&["1", "2"]), T0 + 9_000).await.unwrap().map(|h| h.version), Ok(4));
    let sold = s.sell(EVENT, "a", &seats(&["1", "2"])).await.unwrap();
    assert_eq!((sold.version, sold.overruled), (6, vec![]));
    assert_eq!(s.unsell(EVENT, &seats(&["2"])).await.unwrap().version, 7);
    assert_eq!(
        log_since(&s, 0).await,
        vec![
            (2, SeatStatus::Held, seats(&["1", "2"]), "a".into(), Cause::Held),
            (3, SeatStatus::Free, seats(&["2"]), "a".into(), Cause::Released),
            (4, SeatStatus::Held, seats(&["2"]), "a".into(), Cause::Retaken),
            (6, SeatStatus::Sold, seats(&["1", "2"]), "a".into(), Cause::Sold),
            (7, SeatStatus::Free, seats(&["2"]), "a".into(), Cause::Refunded),
        ]
    );
    let snap = s.snapshot(EVENT).await.unwrap();
    assert_eq!((snap.version, snap.taken), (7, vec![("1".to_string(), SeatStatus::Sold)]));
    assert_versions_gap_free(&s).await;
}

pub async fn odd_ids_stay_whole_through_checkout_retake_sale_and_refund<S: SeatStore>(s: S) {
    let victim = "auth0|12345";
    s.hold(EVENT, victim, &seats(&["V,1", "V|2"]), T0 + 1_000, 4).await.unwrap().unwrap();
    // Ids that are prefixes, extensions or encodings of the victim's own
    // touch none of its seats.
    for thief in ["auth0", "auth0|", "auth0|1234", "", "h|auth0|12345", "61757468307c3132333435"] {
        assert_eq!(
            s.checkout(EVENT, thief, &seats(&["V,1"]), T0 + 9_000).await.unwrap(),
            Err(seats(&["V,1"])),
            "{thief:?}"
        );
        assert_eq!(
            s.retake(EVENT, thief, &seats(&["V|2"]), T0 + 9_000).await.unwrap(),
            Err(seats(&["V|2"])),
            "{thief:?}"
        );
    }
    assert_eq!(s.checkout(EVENT, victim, &seats(&["V,1", "V|2"]), T0 + 4_000).await.unwrap(), Ok(T0 + 4_000));
    for thief in ["auth0", "auth0|", "h|auth0|12345"] {
        s.uncheckout(EVENT, thief, &seats(&["V,1", "V|2"])).await.unwrap();
    }
    assert!(s.release_all(EVENT, victim, Cause::Released).await.unwrap().seats.is_empty(), "still checked out");
    // Every odd buyer retakes an odd seat; then one odd buyer's sale
    // overrules the victim and the others, each named whole.
    for (user, seat) in ODD_USERS.iter().zip(ODD_SEATS).filter(|(u, _)| **u != victim) {
        s.retake(EVENT, user, &seats(&[seat]), T0 + 9_000).await.unwrap().unwrap();
    }
    let buyer = "ünï|códe 🎟";
    let everything: Vec<String> = ODD_SEATS.iter().map(|s| s.to_string()).chain(seats(&["V,1", "V|2"])).collect();
    let sold = s.sell(EVENT, buyer, &everything).await.unwrap();
    assert_eq!(sorted(sold.seats), sorted(everything.clone()));
    let mut want: Vec<(String, Vec<String>)> = ODD_USERS
        .iter()
        .zip(ODD_SEATS)
        .filter(|(u, _)| **u != victim && **u != buyer)
        .map(|(u, seat)| (u.to_string(), seats(&[seat])))
        .collect();
    want.push((victim.to_string(), seats(&["V,1", "V|2"])));
    assert_eq!(by_buyer(sold.overruled), sorted(want));
    for user in ODD_USERS {
        assert_eq!(s.holds_of(EVENT, user).await.unwrap(), (vec![], None), "{user:?}");
        assert!(
            s.hold(EVENT, user, &[format!("{user}/new")], T0 + 9_000, 1).await.unwrap().is_ok(),
            "{user:?}'s limit is free"
        );
    }
    let last = s.log_after(EVENT, LOG_START, 1_000).await.unwrap().into_iter().find(|e| e.diff.cause == Cause::Sold);
    let last = last.expect("the sale is logged").diff;
    assert_eq!((last.user.as_str(), sorted(last.seats)), (buyer, sorted(everything.clone())));
    // The refund names the buyer whole, and lists the odd seats whole.
    let r = s.unsell(EVENT, &everything).await.unwrap();
    assert_eq!(sorted(r.seats), sorted(everything.clone()));
    let refund = s.log_after(EVENT, LOG_START, 1_000).await.unwrap().pop().unwrap().diff;
    assert_eq!(
        (refund.user.as_str(), sorted(refund.seats), refund.cause),
        (buyer, sorted(everything), Cause::Refunded)
    );
    assert_versions_gap_free(&s).await;
}
