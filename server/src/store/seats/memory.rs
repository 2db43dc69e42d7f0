//! In-process seat store for embedded mode: every event's seat states under
//! one lock, with the change log the relay reads.
//!
//! Durable when opened on a [`Journal`] ([`MemorySeatStore::open`]): each
//! change writes its seats' rows (holds, sold seats, the version) through
//! to SQLite before its call returns, and opening rebuilds the seats from
//! them. The change log is not kept: after a restart the log starts empty
//! at the restored version (watchers resync from a snapshot) and the
//! version goes on from there, never back.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Cause, Held, HoldRefused, LOG_START, LogEntry, Released, SeatDiff, SeatStore, Snapshot, Sold};
use crate::domain::UserId;
use crate::domain::seats::SeatStatus;
use crate::store::StoreResult;
use crate::store::journal::{Journal, Row, Table, Ticket};

/// Log entries kept for the relay; older ones are gone (a consumer that
/// needed them resyncs from a snapshot).
const LOG_KEEP: usize = 100_000;

/// Held seats; `checked_out` and `extended` are 0 or 1.
static HOLDS: Table =
    Table { name: "seat_holds", key: &["event", "seat"], values: &["user", "expires_ms", "checked_out", "extended"] };
/// Sold seats and their buyer.
static SOLD: Table = Table { name: "seat_sold", key: &["event", "seat"], values: &["user"] };
/// Each event's version, so it goes on rising after a restart.
static VERSIONS: Table = Table { name: "seat_versions", key: &["event"], values: &["version"] };

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS seat_holds (event TEXT NOT NULL, seat TEXT NOT NULL, user TEXT NOT NULL, \
     expires_ms INTEGER NOT NULL, checked_out INTEGER NOT NULL, extended INTEGER NOT NULL, \
     PRIMARY KEY (event, seat))",
    "CREATE TABLE IF NOT EXISTS seat_sold (event TEXT NOT NULL, seat TEXT NOT NULL, user TEXT NOT NULL, \
     PRIMARY KEY (event, seat))",
    "CREATE TABLE IF NOT EXISTS seat_versions (event TEXT PRIMARY KEY, version INTEGER NOT NULL)",
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    user: UserId,
    expires_ms: i64,
    /// Kept for the buyer's order: `release` and `release_all` leave it.
    checked_out: bool,
    /// Checked out once already, which extended it; no later checkout
    /// extends it again.
    extended: bool,
}

#[derive(Debug, Clone)]
enum State {
    Held(Hold),
    Sold { user: UserId },
}

struct EventSeats {
    /// The event's id, for its rows.
    id: String,
    state: HashMap<String, State>,
    /// Held seats (checked out or not) by expiry.
    expiry: BTreeSet<(i64, String)>,
    /// Held seats by holder; sold seats are in no one's.
    by_user: HashMap<UserId, HashSet<String>>,
    version: u64,
    log: VecDeque<(u64, SeatDiff)>,
    next_entry: u64,
    relay: Option<(String, u64)>,
    /// Whether changes are journaled (else `rows` stays empty).
    journaled: bool,
    /// Rows of this critical section's changes, for the journal.
    rows: Vec<Row>,
}

impl EventSeats {
    fn new(id: &str, journaled: bool) -> Self {
        Self {
            id: id.to_owned(),
            state: HashMap::new(),
            expiry: BTreeSet::new(),
            by_user: HashMap::new(),
            version: 0,
            log: VecDeque::new(),
            next_entry: 0,
            relay: None,
            journaled,
            rows: Vec::new(),
        }
    }

    fn append(&mut self, user: &str, status: SeatStatus, seats: Vec<String>, cause: Cause) -> u64 {
        self.version += seats.len() as u64;
        self.next_entry += 1;
        let diff = SeatDiff { event: self.id.clone(), version: self.version, status, seats, user: user.into(), cause };
        self.log.push_back((self.next_entry, diff));
        while self.log.len() > LOG_KEEP {
            self.log.pop_front();
        }
        self.version
    }

    fn record(&mut self, row: impl FnOnce(&str) -> Row) {
        if self.journaled {
            self.rows.push(row(&self.id));
        }
    }

    /// The hold `user` has on `seat`, if any.
    fn hold_of(&self, seat: &str, user: &str) -> Option<&Hold> {
        match self.state.get(seat) {
            Some(State::Held(h)) if &*h.user == user => Some(h),
            _ => None,
        }
    }

    /// Takes `seat` out of the state and its indexes, without recording.
    fn unindex(&mut self, seat: &str) -> Option<State> {
        let state = self.state.remove(seat)?;
        if let State::Held(h) = &state {
            self.expiry.remove(&(h.expires_ms, seat.to_owned()));
            if let Some(set) = self.by_user.get_mut(&h.user) {
                set.remove(seat);
                if set.is_empty() {
                    self.by_user.remove(&h.user);
                }
            }
        }
        Some(state)
    }

    /// Makes `seat` free, recording it; what it was.
    fn free(&mut self, seat: &str) -> Option<State> {
        let was = self.unindex(seat)?;
        let table = if matches!(was, State::Held(_)) { &HOLDS } else { &SOLD };
        self.record(|event| Row::delete(table, vec![event.into(), seat.into()]));
        Some(was)
    }

    /// Makes `seat` held as `hold`, whatever it was, recording it.
    fn set_hold(&mut self, seat: &str, hold: Hold) {
        if matches!(self.unindex(seat), Some(State::Sold { .. })) {
            self.record(|event| Row::delete(&SOLD, vec![event.into(), seat.into()]));
        }
        self.record(|event| {
            Row::upsert(
                &HOLDS,
                vec![event.into(), seat.into()],
                vec![(*hold.user).into(), hold.expires_ms.into(), hold.checked_out.into(), hold.extended.into()],
            )
        });
        self.expiry.insert((hold.expires_ms, seat.to_owned()));
        self.by_user.entry(hold.user.clone()).or_default().insert(seat.to_owned());
        self.state.insert(seat.to_owned(), State::Held(hold));
    }

    /// Makes `seat` sold to `user`, whatever it was, recording it.
    fn set_sold(&mut self, seat: &str, user: UserId) {
        if matches!(self.unindex(seat), Some(State::Held(_))) {
            self.record(|event| Row::delete(&HOLDS, vec![event.into(), seat.into()]));
        }
        self.record(|event| Row::upsert(&SOLD, vec![event.into(), seat.into()], vec![(*user).into()]));
        self.state.insert(seat.to_owned(), State::Sold { user });
    }

    /// Releases those of `seats` that `user` holds and has not checked out.
    fn release(&mut self, user: &str, seats: &[String], cause: Cause) -> Released {
        let mine: Vec<String> =
            seats.iter().filter(|s| self.hold_of(s, user).is_some_and(|h| !h.checked_out)).cloned().collect();
        for s in &mine {
            self.free(s);
        }
        if !mine.is_empty() {
            self.append(user, SeatStatus::Free, mine.clone(), cause);
        }
        Released { seats: mine, version: self.version }
    }

    fn held_seats(&self, user: &str) -> Vec<String> {
        let mut seats: Vec<String> = self.by_user.get(user).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        seats.sort();
        seats
    }

    fn expiry_of(&self, seat: &str) -> Option<i64> {
        match self.state.get(seat) {
            Some(State::Held(h)) => Some(h.expires_ms),
            _ => None,
        }
    }
}

/// Adds `seat` to `user`'s list, keeping buyers in first-seen order.
fn push_by_user(by_user: &mut Vec<(UserId, Vec<String>)>, user: &UserId, seat: String) {
    match by_user.iter_mut().find(|(u, _)| u == user) {
        Some((_, seats)) => seats.push(seat),
        None => by_user.push((user.clone(), vec![seat])),
    }
}

/// A hold's row as stored.
#[derive(sqlx::FromRow)]
struct HoldRow {
    event: String,
    seat: String,
    user: String,
    expires_ms: i64,
    checked_out: bool,
    extended: bool,
}

/// The embedded adapter of [`SeatStore`].
#[derive(Default)]
pub struct MemorySeatStore {
    events: Mutex<HashMap<String, EventSeats>>,
    /// Where changes are made durable; `None` keeps them in memory only.
    journal: Option<Journal>,
}

impl MemorySeatStore {
    /// A store in memory only (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A durable store: its tables created in `journal`'s database if
    /// need be, and every event's seats rebuilt from them. Share the
    /// journal with the waiting room, so one commit order covers both.
    pub async fn open(journal: Journal) -> StoreResult<Self> {
        journal.create_tables(SCHEMA).await?;
        let pool = journal.pool();
        let mut events: HashMap<String, EventSeats> = HashMap::new();
        let versions: Vec<(String, i64)> =
            sqlx::query_as("SELECT event, version FROM seat_versions").fetch_all(pool).await?;
        for (event, version) in versions {
            let e = events.entry(event.clone()).or_insert_with(|| EventSeats::new(&event, true));
            e.version = version.max(0) as u64;
        }
        let holds: Vec<HoldRow> =
            sqlx::query_as("SELECT event, seat, user, expires_ms, checked_out, extended FROM seat_holds")
                .fetch_all(pool)
                .await?;
        for HoldRow { event, seat, user, expires_ms, checked_out, extended } in holds {
            let e = events.entry(event.clone()).or_insert_with(|| EventSeats::new(&event, true));
            e.set_hold(&seat, Hold { user: user.into(), expires_ms, checked_out, extended });
        }
        let sold: Vec<(String, String, String)> =
            sqlx::query_as("SELECT event, seat, user FROM seat_sold").fetch_all(pool).await?;
        for (event, seat, user) in sold {
            let e = events.entry(event.clone()).or_insert_with(|| EventSeats::new(&event, true));
            e.set_sold(&seat, user.into());
        }
        for e in events.values_mut() {
            // Rebuilding changes nothing (a seat both held and sold, which
            // no commit leaves, counts as sold).
            e.rows.clear();
            // Nothing before the restore can be read from the log.
            e.relay = Some((LOG_START.to_owned(), e.version));
        }
        Ok(Self { events: Mutex::new(events), journal: Some(journal) })
    }

    /// Runs `f` on the event's seats under the lock and queues the rows it
    /// changed (and the version, if it rose) in the same critical section.
    fn with<T>(&self, event: &str, f: impl FnOnce(&mut EventSeats) -> T) -> (T, Option<Ticket>) {
        let mut events = self.events.lock();
        if !events.contains_key(event) {
            events.insert(event.to_owned(), EventSeats::new(event, self.journal.is_some()));
        }
        let e = events.get_mut(event).expect("inserted above");
        let before = e.version;
        let out = f(e);
        let Some(journal) = &self.journal else { return (out, None) };
        if e.version != before {
            let version = e.version;
            e.record(|event| Row::upsert(&VERSIONS, vec![event.into()], vec![version.into()]));
        }
        (out, journal.append(std::mem::take(&mut e.rows)))
    }

    /// Waits until a change is durable.
    async fn committed(&self, ticket: Option<Ticket>) -> StoreResult<()> {
        match (&self.journal, ticket) {
            (Some(journal), Some(ticket)) => journal.committed(ticket).await,
            _ => Ok(()),
        }
    }

    /// Runs a change and answers once it is durable.
    async fn change<T>(&self, event: &str, f: impl FnOnce(&mut EventSeats) -> T) -> StoreResult<T> {
        let (out, ticket) = self.with(event, f);
        self.committed(ticket).await?;
        Ok(out)
    }

    /// A read: nothing to wait for. It may show a change whose own call is
    /// still waiting for its commit (and is lost, unanswered, by a crash).
    fn read<T>(&self, event: &str, f: impl FnOnce(&mut EventSeats) -> T) -> T {
        self.with(event, f).0
    }
}

#[async_trait]
impl SeatStore for MemorySeatStore {
    async fn hold(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        expires_ms: i64,
        max_per_buyer: u32,
    ) -> StoreResult<Result<Held, HoldRefused>> {
        self.change(event, |e| {
            let taken: Vec<String> = seats.iter().filter(|s| e.state.contains_key(*s)).cloned().collect();
            if !taken.is_empty() {
                return Err(HoldRefused::Unavailable(taken));
            }
            let held = e.by_user.get(user).map_or(0, HashSet::len);
            if held + seats.len() > max_per_buyer as usize {
                return Err(HoldRefused::Limit { held: held as u32 });
            }
            let id: UserId = user.into();
            for s in seats {
                e.set_hold(s, Hold { user: id.clone(), expires_ms, checked_out: false, extended: false });
            }
            let version = e.append(user, SeatStatus::Held, seats.to_vec(), Cause::Held);
            Ok(Held { expires_ms, version })
        })
        .await
    }

    async fn checkout(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<i64, Vec<String>>> {
        self.change(event, |e| {
            let missing: Vec<String> = seats.iter().filter(|s| e.hold_of(s, user).is_none()).cloned().collect();
            if !missing.is_empty() {
                return Err(missing);
            }
            let mut earliest: Option<i64> = None;
            for s in seats {
                let Some(old) = e.hold_of(s, user) else { continue };
                let mut hold = old.clone();
                if !hold.extended {
                    hold.expires_ms = hold.expires_ms.max(until_ms);
                    hold.extended = true;
                }
                hold.checked_out = true;
                earliest = Some(earliest.map_or(hold.expires_ms, |t| t.min(hold.expires_ms)));
                if &hold != old {
                    e.set_hold(s, hold);
                }
            }
            Ok(earliest.unwrap_or(until_ms))
        })
        .await
    }

    async fn uncheckout(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<()> {
        self.change(event, |e| {
            for s in seats {
                if let Some(h) = e.hold_of(s, user).filter(|h| h.checked_out) {
                    let hold = Hold { checked_out: false, ..h.clone() };
                    e.set_hold(s, hold);
                }
            }
        })
        .await
    }

    async fn retake(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<Held, Vec<String>>> {
        self.change(event, |e| {
            let refused: Vec<String> =
                seats.iter().filter(|s| e.state.contains_key(*s) && e.hold_of(s, user).is_none()).cloned().collect();
            if !refused.is_empty() {
                return Err(refused);
            }
            let id: UserId = user.into();
            let mut taken = Vec::new();
            let mut earliest: Option<i64> = None;
            for s in seats {
                let hold = match e.hold_of(s, user) {
                    Some(h) => {
                        Hold { expires_ms: h.expires_ms.max(until_ms), checked_out: true, extended: true, ..h.clone() }
                    }
                    None => {
                        taken.push(s.clone());
                        Hold { user: id.clone(), expires_ms: until_ms, checked_out: true, extended: true }
                    }
                };
                earliest = Some(earliest.map_or(hold.expires_ms, |t| t.min(hold.expires_ms)));
                if e.hold_of(s, user) != Some(&hold) {
                    e.set_hold(s, hold);
                }
            }
            if !taken.is_empty() {
                e.append(user, SeatStatus::Held, taken, Cause::Retaken);
            }
            Ok(Held { expires_ms: earliest.unwrap_or(until_ms), version: e.version })
        })
        .await
    }

    async fn sell(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Sold> {
        self.change(event, |e| {
            let id: UserId = user.into();
            let mut sold = Vec::new();
            let mut overruled: Vec<(UserId, Vec<String>)> = Vec::new();
            for s in seats {
                match e.state.get(s) {
                    Some(State::Sold { .. }) => continue,
                    Some(State::Held(h)) if h.user != id => push_by_user(&mut overruled, &h.user, s.clone()),
                    _ => {}
                }
                e.set_sold(s, id.clone());
                sold.push(s.clone());
            }
            if !sold.is_empty() {
                e.append(user, SeatStatus::Sold, sold.clone(), Cause::Sold);
            }
            Sold { seats: sold, version: e.version, overruled }
        })
        .await
    }

    async fn unsell(&self, event: &str, seats: &[String]) -> StoreResult<Released> {
        self.change(event, |e| {
            let mut freed = Vec::new();
            let mut by_buyer: Vec<(UserId, Vec<String>)> = Vec::new();
            for s in seats {
                let Some(State::Sold { user }) = e.state.get(s) else { continue };
                let user = user.clone();
                e.free(s);
                push_by_user(&mut by_buyer, &user, s.clone());
                freed.push(s.clone());
            }
            for (buyer, seats) in by_buyer {
                e.append(&buyer, SeatStatus::Free, seats, Cause::Refunded);
            }
            Released { seats: freed, version: e.version }
        })
        .await
    }

    async fn release(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Released> {
        self.change(event, |e| e.release(user, seats, Cause::Released)).await
    }

    async fn release_all(&self, event: &str, user: &str, cause: Cause) -> StoreResult<Released> {
        self.change(event, |e| {
            let all = e.held_seats(user);
            e.release(user, &all, cause)
        })
        .await
    }

    async fn expire(&self, event: &str, now_ms: i64, max: u64) -> StoreResult<Vec<(UserId, Vec<String>)>> {
        self.change(event, |e| {
            let due: Vec<String> =
                e.expiry.iter().take_while(|(t, _)| *t <= now_ms).take(max as usize).map(|(_, s)| s.clone()).collect();
            let mut by_user: Vec<(UserId, Vec<String>)> = Vec::new();
            for seat in due {
                if let Some(State::Held(h)) = e.free(&seat) {
                    push_by_user(&mut by_user, &h.user, seat);
                }
            }
            for (user, seats) in &by_user {
                e.append(user, SeatStatus::Free, seats.clone(), Cause::Expired);
            }
            by_user
        })
        .await
    }

    async fn holds_of(&self, event: &str, user: &str) -> StoreResult<(Vec<String>, Option<i64>)> {
        Ok(self.read(event, |e| {
            let seats = e.held_seats(user);
            let earliest = seats.iter().filter_map(|s| e.expiry_of(s)).min();
            (seats, earliest)
        }))
    }

    async fn snapshot(&self, event: &str) -> StoreResult<Snapshot> {
        Ok(self.read(event, |e| Snapshot {
            version: e.version,
            taken: e
                .state
                .iter()
                .map(|(s, state)| {
                    let status = match state {
                        State::Held(_) => SeatStatus::Held,
                        State::Sold { .. } => SeatStatus::Sold,
                    };
                    (s.clone(), status)
                })
                .collect(),
        }))
    }

    async fn version(&self, event: &str) -> StoreResult<u64> {
        Ok(self.read(event, |e| e.version))
    }

    /// Only entries whose changes are durable: the log is read under the
    /// lock, then the read waits for everything appended by then.
    async fn log_after(&self, event: &str, cursor: &str, max: u64) -> StoreResult<Vec<LogEntry>> {
        let after: u64 = cursor.parse().unwrap_or(0);
        let (entries, barrier) = self.read(event, |e| {
            // Entries are numbered consecutively, so the first one after the
            // cursor sits at a known offset from the front.
            let first = e.log.front().map_or(0, |(n, _)| *n);
            let skip = (after + 1).saturating_sub(first) as usize;
            let entries: Vec<LogEntry> = e
                .log
                .iter()
                .skip(skip)
                .take(max as usize)
                .map(|(n, d)| LogEntry { cursor: n.to_string(), diff: d.clone() })
                .collect();
            (entries, self.journal.as_ref().map(Journal::barrier))
        });
        if !entries.is_empty() {
            self.committed(barrier).await?;
        }
        Ok(entries)
    }

    async fn relay_cursor(&self, event: &str) -> StoreResult<String> {
        Ok(self.read(event, |e| e.relay.as_ref().map_or_else(|| LOG_START.into(), |(c, _)| c.clone())))
    }

    async fn save_relay_cursor(&self, event: &str, cursor: &str, version: u64) -> StoreResult<()> {
        self.read(event, |e| e.relay = Some((cursor.to_owned(), version)));
        Ok(())
    }

    async fn relayed_version(&self, event: &str) -> StoreResult<u64> {
        Ok(self.read(event, |e| e.relay.as_ref().map_or(0, |(_, v)| *v)))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    const EVENT: &str = "e|1";
    const T0: i64 = 1_700_000_000_000;

    mod durable {
        crate::store::seats::contract::seat_store_contract!(async {
            super::MemorySeatStore::open(crate::store::journal::Journal::temporary().await)
                .await
                .expect("a durable store")
        });
    }

    fn seats(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    async fn open(path: &Path) -> MemorySeatStore {
        MemorySeatStore::open(Journal::open(path).await.unwrap()).await.unwrap()
    }

    /// Everything a buyer or watcher can see of an event.
    async fn picture(
        s: &MemorySeatStore,
        users: &[&str],
    ) -> (u64, Vec<(String, SeatStatus)>, Vec<(Vec<String>, Option<i64>)>) {
        let mut snap = s.snapshot(EVENT).await.unwrap();
        snap.taken.sort_by(|a, b| a.0.cmp(&b.0));
        let mut holds = Vec::new();
        for u in users {
            holds.push(s.holds_of(EVENT, u).await.unwrap());
        }
        (snap.version, snap.taken, holds)
    }

    const USERS: [&str; 7] = ["u1", "u2", "u3", "u4", "u5", "u6", "u|7"];

    /// Holds, checked-out marks, extensions, sold seats and refunds.
    async fn a_day_of_sales(s: &MemorySeatStore) {
        let held = |r: Result<Held, HoldRefused>| r.expect("held");
        held(s.hold(EVENT, "u1", &seats(&["a", "b"]), T0 + 1_000, 8).await.unwrap());
        assert_eq!(s.checkout(EVENT, "u1", &seats(&["a", "b"]), T0 + 9_000).await.unwrap(), Ok(T0 + 9_000));
        held(s.hold(EVENT, "u2", &seats(&["c"]), T0 + 2_000, 8).await.unwrap());
        s.checkout(EVENT, "u2", &seats(&["c"]), T0 + 9_000).await.unwrap().unwrap();
        s.uncheckout(EVENT, "u2", &seats(&["c"])).await.unwrap();
        held(s.hold(EVENT, "u3", &seats(&["d"]), T0 + 3_000, 8).await.unwrap());
        s.sell(EVENT, "u4", &seats(&["e", "f"])).await.unwrap();
        held(s.hold(EVENT, "u5", &seats(&["g"]), T0 + 3_000, 8).await.unwrap());
        let sold = s.sell(EVENT, "u6", &seats(&["g"])).await.unwrap();
        assert_eq!(sold.overruled, vec![(UserId::from("u5"), seats(&["g"]))]);
        s.unsell(EVENT, &seats(&["f"])).await.unwrap();
        held(s.hold(EVENT, "u|7", &seats(&["h"]), T0 + 3_000, 8).await.unwrap());
        s.release(EVENT, "u|7", &seats(&["h"])).await.unwrap();
        s.retake(EVENT, "u|7", &seats(&["i"]), T0 + 7_000).await.unwrap().unwrap();
    }

    /// After a restart every hold, mark, extension, sold seat and the
    /// version are as they were, and go on behaving as before.
    #[tokio::test]
    async fn a_reopened_store_has_every_hold_and_sale_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = open(&path).await;
        a_day_of_sales(&s).await;
        let before = picture(&s, &USERS).await;
        assert_eq!(before.0, 12);
        drop(s);

        let s = open(&path).await;
        assert_eq!(picture(&s, &USERS).await, before);
        // u2's hold was extended once already: checking out again does not.
        assert_eq!(s.checkout(EVENT, "u2", &seats(&["c"]), T0 + 20_000).await.unwrap(), Ok(T0 + 9_000));
        // u1's seats are still checked out: release leaves them.
        assert!(s.release_all(EVENT, "u1", Cause::WindowEnded).await.unwrap().seats.is_empty());
        // u3's hold is an ordinary, unextended one.
        assert_eq!(s.checkout(EVENT, "u3", &seats(&["d"]), T0 + 8_000).await.unwrap(), Ok(T0 + 8_000));
        // Sold seats stay sold; freed ones are free.
        assert!(matches!(s.hold(EVENT, "x", &seats(&["e"]), T0, 8).await.unwrap(), Err(HoldRefused::Unavailable(_))));
        let held = s.hold(EVENT, "x", &seats(&["f", "h"]), T0 + 5_000, 8).await.unwrap().unwrap();
        // The version goes on from where it was, and so does the log.
        assert_eq!(held.version, before.0 + 2);
        assert_eq!(s.relayed_version(EVENT).await.unwrap(), before.0);
        let log = s.log_after(EVENT, &s.relay_cursor(EVENT).await.unwrap(), 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].diff.version, before.0 + 2);
        // Expiry works on restored holds.
        assert!(s.expire(EVENT, T0 + 3_000, 100).await.unwrap().is_empty());
        let expired = s.expire(EVENT, T0 + 9_000, 100).await.unwrap();
        let mut freed: Vec<String> = expired.into_iter().flat_map(|(_, s)| s).collect();
        freed.sort();
        assert_eq!(freed, seats(&["a", "b", "c", "d", "f", "h", "i"]));
    }

    /// Every answered call is already committed: a second process opening
    /// the file while the first still runs (no shutdown, no drop) sees it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn answered_calls_are_committed_before_any_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Arc::new(open(&path).await);
        a_day_of_sales(&s).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let seat = format!("r{}", i % 50);
                    let _ = s.hold(EVENT, &format!("b{i}"), &[seat], T0 + 60_000, 8).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let users: Vec<String> = (0..200).map(|i| format!("b{i}")).chain(USERS.iter().map(|u| u.to_string())).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let before = picture(&s, &users).await;
        let other = open(&path).await;
        assert_eq!(picture(&other, &users).await, before);
        assert_eq!(before.1.len(), 50 + 7);
    }

    #[tokio::test]
    async fn the_memory_only_store_writes_nothing() {
        let s = MemorySeatStore::new();
        a_day_of_sales(&s).await;
        assert!(s.events.lock().values().all(|e| e.rows.is_empty()));
    }
}
