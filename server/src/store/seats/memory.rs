//! In-process seat store for embedded mode.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Cause, Held, HoldRefused, LOG_START, LogEntry, Released, SeatDiff, SeatStore, Snapshot};
use crate::domain::UserId;
use crate::domain::seats::SeatStatus;
use crate::store::StoreResult;

/// Log entries kept for the relay; older ones are gone (a consumer that
/// needed them resyncs from a snapshot).
const LOG_KEEP: usize = 100_000;

#[derive(Debug, Clone)]
enum State {
    Held { user: UserId, expires_ms: i64 },
}

#[derive(Default)]
struct EventSeats {
    state: HashMap<String, State>,
    expiry: BTreeSet<(i64, String)>,
    by_user: HashMap<UserId, HashSet<String>>,
    version: u64,
    log: VecDeque<(u64, SeatDiff)>,
    next_entry: u64,
    relay: Option<(String, u64)>,
}

impl EventSeats {
    fn append(&mut self, event: &str, user: &str, status: SeatStatus, seats: Vec<String>, cause: Cause) -> u64 {
        self.version += seats.len() as u64;
        self.next_entry += 1;
        let diff = SeatDiff { event: event.into(), version: self.version, status, seats, user: user.into(), cause };
        self.log.push_back((self.next_entry, diff));
        while self.log.len() > LOG_KEEP {
            self.log.pop_front();
        }
        self.version
    }

    fn free(&mut self, seat: &str) -> Option<UserId> {
        let State::Held { user, expires_ms } = self.state.remove(seat)?;
        self.expiry.remove(&(expires_ms, seat.to_owned()));
        if let Some(set) = self.by_user.get_mut(&user) {
            set.remove(seat);
            if set.is_empty() {
                self.by_user.remove(&user);
            }
        }
        Some(user)
    }

    fn release(&mut self, event: &str, user: &str, seats: &[String], cause: Cause) -> Released {
        let mine: Vec<String> = seats
            .iter()
            .filter(|s| matches!(self.state.get(*s), Some(State::Held { user: u, .. }) if &**u == user))
            .cloned()
            .collect();
        for s in &mine {
            self.free(s);
        }
        if !mine.is_empty() {
            self.append(event, user, SeatStatus::Free, mine.clone(), cause);
        }
        Released { seats: mine, version: self.version }
    }
}

#[derive(Default)]
pub struct MemorySeatStore {
    events: Mutex<HashMap<String, EventSeats>>,
}

impl MemorySeatStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, event: &str, f: impl FnOnce(&mut EventSeats) -> T) -> T {
        let mut events = self.events.lock();
        f(events.entry(event.to_owned()).or_default())
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
        Ok(self.with(event, |e| {
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
                e.state.insert(s.clone(), State::Held { user: id.clone(), expires_ms });
                e.expiry.insert((expires_ms, s.clone()));
                e.by_user.entry(id.clone()).or_default().insert(s.clone());
            }
            let version = e.append(event, user, SeatStatus::Held, seats.to_vec(), Cause::Held);
            Ok(Held { expires_ms, version })
        }))
    }

    async fn release(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Released> {
        Ok(self.with(event, |e| e.release(event, user, seats, Cause::Released)))
    }

    async fn release_all(&self, event: &str, user: &str, cause: Cause) -> StoreResult<Released> {
        Ok(self.with(event, |e| {
            let mut all: Vec<String> = e.by_user.get(user).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            all.sort();
            e.release(event, user, &all, cause)
        }))
    }

    async fn expire(&self, event: &str, now_ms: i64, max: u64) -> StoreResult<Vec<(UserId, Vec<String>)>> {
        Ok(self.with(event, |e| {
            let due: Vec<String> =
                e.expiry.iter().take_while(|(t, _)| *t <= now_ms).take(max as usize).map(|(_, s)| s.clone()).collect();
            let mut by_user: Vec<(UserId, Vec<String>)> = Vec::new();
            for seat in due {
                if let Some(user) = e.free(&seat) {
                    match by_user.iter_mut().find(|(u, _)| *u == user) {
                        Some((_, seats)) => seats.push(seat),
                        None => by_user.push((user, vec![seat])),
                    }
                }
            }
            for (user, seats) in &by_user {
                e.append(event, user, SeatStatus::Free, seats.clone(), Cause::Expired);
            }
            by_user
        }))
    }

    async fn holds_of(&self, event: &str, user: &str) -> StoreResult<(Vec<String>, Option<i64>)> {
        Ok(self.with(event, |e| {
            let mut seats: Vec<String> = e.by_user.get(user).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            seats.sort();
            let earliest =
                seats.iter().filter_map(|s| e.state.get(s).map(|State::Held { expires_ms, .. }| *expires_ms)).min();
            (seats, earliest)
        }))
    }

    async fn snapshot(&self, event: &str) -> StoreResult<Snapshot> {
        Ok(self.with(event, |e| Snapshot {
            version: e.version,
            taken: e.state.keys().map(|s| (s.clone(), SeatStatus::Held)).collect(),
        }))
    }

    async fn version(&self, event: &str) -> StoreResult<u64> {
        Ok(self.with(event, |e| e.version))
    }

    async fn log_after(&self, event: &str, cursor: &str, max: u64) -> StoreResult<Vec<LogEntry>> {
        let after: u64 = cursor.parse().unwrap_or(0);
        Ok(self.with(event, |e| {
            // Entries are numbered consecutively, so the first one after the
            // cursor sits at a known offset from the front.
            let first = e.log.front().map_or(0, |(n, _)| *n);
            let skip = (after + 1).saturating_sub(first) as usize;
            e.log
                .iter()
                .skip(skip)
                .take(max as usize)
                .map(|(n, d)| LogEntry { cursor: n.to_string(), diff: d.clone() })
                .collect()
        }))
    }

    async fn relay_cursor(&self, event: &str) -> StoreResult<String> {
        Ok(self.with(event, |e| e.relay.as_ref().map_or_else(|| LOG_START.into(), |(c, _)| c.clone())))
    }

    async fn save_relay_cursor(&self, event: &str, cursor: &str, version: u64) -> StoreResult<()> {
        self.with(event, |e| e.relay = Some((cursor.to_owned(), version)));
        Ok(())
    }

    async fn relayed_version(&self, event: &str) -> StoreResult<u64> {
        Ok(self.with(event, |e| e.relay.as_ref().map_or(0, |(_, v)| *v)))
    }
}
