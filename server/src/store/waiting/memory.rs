//! In-process waiting room for embedded mode: one mutex-guarded map per
//! node. Ranks come from a Fenwick tree over arrival sequence numbers, so a
//! position costs O(log N) and a join O(log N).
//!
//! Durable when opened on a [`Journal`] ([`MemoryWaitingRoom::open`]):
//! each change writes its rows (places, windows, each queue's settings,
//! next sequence number and admission budget) through to SQLite before its
//! call returns, and opening rebuilds every queue from them: places keep
//! their sequence numbers (so their order), windows their end. Not kept:
//! presence (everyone counts as seen when the store opens, so the grace
//! starts again), the admitter lease and its fencing counter (the node that
//! held them is gone), and the published rate (the admitter publishes it
//! again on its next tick).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;
use tracing::warn;

use super::{JoinOutcome, Lease, PlaceStatus, StatusBatch, TickOutcome, WaitingRoom};
use crate::domain::UserId;
use crate::domain::queue::{AdmissionBucket, PRESENCE_RESOLUTION_MS, QueueSettings, RateStats, ghost_cutoff};
use crate::store::journal::{Journal, Row, Table, Ticket};
use crate::store::{StoreError, StoreResult};

/// Each queue: its settings (JSON), the next sequence number, and the
/// admission budget (null until first used).
static QUEUES: Table =
    Table { name: "wr_queues", key: &["event"], values: &["settings", "next_seq", "tokens", "tokens_ms"] };
/// Waiting places; `seq` orders them.
static PLACES: Table = Table { name: "wr_places", key: &["event", "user"], values: &["seq", "joined_ms"] };
/// Open (or ended but not yet swept) shopping windows.
static WINDOWS: Table = Table { name: "wr_windows", key: &["event", "user"], values: &["until_ms"] };

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS wr_queues (event TEXT PRIMARY KEY, settings TEXT NOT NULL, \
     next_seq INTEGER NOT NULL, tokens REAL, tokens_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS wr_places (event TEXT NOT NULL, user TEXT NOT NULL, seq INTEGER NOT NULL, \
     joined_ms INTEGER NOT NULL, PRIMARY KEY (event, user))",
    "CREATE TABLE IF NOT EXISTS wr_windows (event TEXT NOT NULL, user TEXT NOT NULL, until_ms INTEGER NOT NULL, \
     PRIMARY KEY (event, user))",
];

/// Counts of waiting places by sequence number, for O(log N) ranks.
#[derive(Debug, Default)]
struct Fenwick {
    tree: Vec<i32>,
}

impl Fenwick {
    /// Makes room for `seq`, recounting the places in `live` (which must
    /// not yet include `seq`).
    fn ensure(&mut self, seq: u64, live: &BTreeMap<u64, UserId>) {
        let i = seq as usize;
        if i >= self.tree.len() {
            self.rebuild((i + 1).next_power_of_two().max(1024), live);
        }
    }

    fn add(&mut self, seq: u64, delta: i32) {
        let mut i = seq as usize;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// Grows the tree to `len` slots, recounting the live places.
    fn rebuild(&mut self, len: usize, live: &BTreeMap<u64, UserId>) {
        self.tree = vec![0; len];
        for &seq in live.keys() {
            let mut i = seq as usize;
            while i < len {
                self.tree[i] += 1;
                i += i & i.wrapping_neg();
            }
        }
    }

    /// How many live places have a sequence number at most `seq`.
    fn rank(&self, seq: u64) -> u64 {
        let mut i = (seq as usize).min(self.tree.len().saturating_sub(1));
        let mut sum = 0i64;
        while i > 0 {
            sum += i64::from(self.tree[i]);
            i &= i - 1;
        }
        sum.max(0) as u64
    }
}

#[derive(Debug)]
struct Place {
    seq: u64,
    seen_ms: i64,
}

#[derive(Debug)]
struct LeaseState {
    node: String,
    token: u64,
    expires_ms: i64,
}

#[derive(Debug)]
struct EventQueue {
    /// The event's id, for its rows.
    id: String,
    settings: QueueSettings,
    next_seq: u64,
    /// Waiting places in arrival order.
    by_seq: BTreeMap<u64, UserId>,
    places: HashMap<UserId, Place>,
    ranks: Fenwick,
    /// (last seen, seq) of waiting places, oldest first, for ghost sweeps.
    by_seen: BTreeSet<(i64, u64)>,
    /// Open shopping windows: user → end.
    active: HashMap<UserId, i64>,
    by_window_end: BTreeSet<(i64, UserId)>,
    bucket: Option<AdmissionBucket>,
    lease: Option<LeaseState>,
    fence: u64,
    stats: Option<RateStats>,
    /// Whether changes are journaled (else nothing is recorded).
    journaled: bool,
    /// Rows of this critical section's changes, for the journal.
    rows: Vec<Row>,
    /// The queue's own row (settings, next seq, budget) changed.
    queue_changed: bool,
    /// The settings as stored, made when first needed after a change.
    settings_json: Option<String>,
}

impl EventQueue {
    fn new(id: &str, settings: QueueSettings, journaled: bool) -> Self {
        Self {
            id: id.to_owned(),
            settings,
            next_seq: 1,
            by_seq: BTreeMap::new(),
            places: HashMap::new(),
            ranks: Fenwick::default(),
            by_seen: BTreeSet::new(),
            active: HashMap::new(),
            by_window_end: BTreeSet::new(),
            bucket: None,
            lease: None,
            fence: 0,
            stats: None,
            journaled,
            rows: Vec::new(),
            // A new queue's row is written with its first change.
            queue_changed: true,
            settings_json: None,
        }
    }

    fn record(&mut self, row: impl FnOnce(&str) -> Row) {
        if self.journaled {
            self.rows.push(row(&self.id));
        }
    }

    /// The rows this critical section changed, the queue's own last.
    fn take_rows(&mut self) -> Vec<Row> {
        if std::mem::take(&mut self.queue_changed) && self.journaled {
            let settings = self
                .settings_json
                .get_or_insert_with(|| serde_json::to_string(&self.settings).unwrap_or_default())
                .clone();
            let bucket = self.bucket;
            let next_seq = self.next_seq;
            self.record(|event| {
                Row::upsert(
                    &QUEUES,
                    vec![event.into()],
                    vec![
                        settings.into(),
                        next_seq.into(),
                        bucket.map(|b| b.tokens).into(),
                        bucket.map(|b| b.updated_ms).into(),
                    ],
                )
            });
        }
        std::mem::take(&mut self.rows)
    }

    /// Puts `user` at the end of the line.
    fn add_waiting(&mut self, user: &str, now_ms: i64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue_changed = true;
        self.insert_place(user.into(), seq, now_ms);
        self.record(|event| Row::upsert(&PLACES, vec![event.into(), user.into()], vec![seq.into(), now_ms.into()]));
    }

    /// Indexes a waiting place, recording nothing.
    fn insert_place(&mut self, id: UserId, seq: u64, seen_ms: i64) {
        self.ranks.ensure(seq, &self.by_seq);
        self.by_seq.insert(seq, id.clone());
        self.ranks.add(seq, 1);
        self.places.insert(id, Place { seq, seen_ms });
        self.by_seen.insert((seen_ms, seq));
    }

    /// Admission tokens taken now; a take that took some is recorded (a
    /// refill alone need not be: refilling later from the older state
    /// comes to the same).
    fn take_budget(&mut self, active: u64, waiting: u64, now_ms: i64) -> u64 {
        let settings = self.settings;
        let n = self.bucket(now_ms).take_budget(&settings, active, waiting, now_ms);
        if n > 0 {
            self.queue_changed = true;
        }
        n
    }

    fn position(&self, seq: u64) -> u64 {
        self.ranks.rank(seq)
    }

    fn touch(&mut self, user: &str, now_ms: i64) -> Option<u64> {
        let place = self.places.get_mut(user)?;
        // Presence only matters to the second (the grace is at least 5 s);
        // re-indexing on every refresh would cost more than all the rest.
        if now_ms - place.seen_ms >= PRESENCE_RESOLUTION_MS {
            self.by_seen.remove(&(place.seen_ms, place.seq));
            place.seen_ms = now_ms;
            self.by_seen.insert((now_ms, place.seq));
        }
        Some(place.seq)
    }

    fn remove_waiting(&mut self, user: &str) -> Option<UserId> {
        let place = self.places.remove(user)?;
        self.by_seen.remove(&(place.seen_ms, place.seq));
        let id = self.by_seq.remove(&place.seq);
        self.ranks.add(place.seq, -1);
        self.record(|event| Row::delete(&PLACES, vec![event.into(), user.into()]));
        id
    }

    fn open_window(&self, user: &str, now_ms: i64) -> Option<i64> {
        self.active.get(user).copied().filter(|&until| until > now_ms)
    }

    fn set_window(&mut self, user: UserId, until_ms: i64) {
        self.record(|event| Row::upsert(&WINDOWS, vec![event.into(), (*user).into()], vec![until_ms.into()]));
        if let Some(old) = self.active.insert(user.clone(), until_ms) {
            self.by_window_end.remove(&(old, user.clone()));
        }
        self.by_window_end.insert((until_ms, user));
    }

    fn remove_window(&mut self, user: &str) -> bool {
        match self.active.remove_entry(user) {
            Some((id, until)) => {
                self.by_window_end.remove(&(until, id));
                self.record(|event| Row::delete(&WINDOWS, vec![event.into(), user.into()]));
                true
            }
            None => false,
        }
    }

    fn open_windows(&self, now_ms: i64) -> u64 {
        self.by_window_end.range((now_ms + 1, UserId::from(""))..).count() as u64
    }

    fn bucket(&mut self, now_ms: i64) -> &mut AdmissionBucket {
        let rate = self.settings.rate_per_min;
        self.bucket.get_or_insert_with(|| AdmissionBucket::full(rate, now_ms))
    }

    fn lease_is(&self, token: u64, now_ms: i64) -> bool {
        self.lease.as_ref().is_some_and(|l| l.token == token && l.expires_ms > now_ms)
    }
}

/// A queue's row as stored.
#[derive(sqlx::FromRow)]
struct QueueRow {
    event: String,
    settings: String,
    next_seq: i64,
    tokens: Option<f64>,
    tokens_ms: Option<i64>,
}

/// The embedded adapter of [`WaitingRoom`].
#[derive(Debug, Default)]
pub struct MemoryWaitingRoom {
    events: Mutex<HashMap<String, EventQueue>>,
    /// Where changes are made durable; `None` keeps them in memory only.
    journal: Option<Journal>,
}

impl MemoryWaitingRoom {
    /// A waiting room in memory only (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A durable waiting room: its tables created in `journal`'s database
    /// if need be and every queue rebuilt from them, with every waiting
    /// buyer seen at `now_ms`. Share the journal with the seat store, so
    /// one commit order covers both (a hold that committed implies the
    /// admission it relied on did).
    pub async fn open(journal: Journal, now_ms: i64) -> StoreResult<Self> {
        journal.create_tables(SCHEMA).await?;
        let pool = journal.pool();
        let mut events: HashMap<String, EventQueue> = HashMap::new();
        let queues: Vec<QueueRow> =
            sqlx::query_as("SELECT event, settings, next_seq, tokens, tokens_ms FROM wr_queues")
                .fetch_all(pool)
                .await?;
        for QueueRow { event, settings, next_seq, tokens, tokens_ms } in queues {
            // The record in SQL configures every queue at start; settings
            // that no longer parse are replaced by it then.
            let settings = serde_json::from_str(&settings).unwrap_or_else(|e| {
                warn!(%event, error = %e, "stored queue settings do not parse; using defaults until configured");
                QueueSettings::default()
            });
            let mut q = EventQueue::new(&event, settings, true);
            q.next_seq = next_seq.max(1) as u64;
            q.bucket = tokens.zip(tokens_ms).map(|(tokens, updated_ms)| AdmissionBucket { tokens, updated_ms });
            q.queue_changed = false;
            events.insert(event, q);
        }
        let places: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT event, user, seq FROM wr_places ORDER BY event, seq").fetch_all(pool).await?;
        for (event, user, seq) in places {
            let q =
                events.entry(event.clone()).or_insert_with(|| EventQueue::new(&event, QueueSettings::default(), true));
            let seq = u64::try_from(seq).ok().filter(|&s| s > 0 && !q.by_seq.contains_key(&s));
            let Some(seq) = seq else {
                return Err(StoreError::Corrupt(format!("a place of {event} has a bad or repeated sequence number")));
            };
            q.insert_place(user.into(), seq, now_ms);
            // Places of a queue whose row is behind still come first.
            q.next_seq = q.next_seq.max(seq + 1);
        }
        let windows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT event, user, until_ms FROM wr_windows").fetch_all(pool).await?;
        for (event, user, until_ms) in windows {
            let q =
                events.entry(event.clone()).or_insert_with(|| EventQueue::new(&event, QueueSettings::default(), true));
            q.set_window(user.into(), until_ms);
        }
        for q in events.values_mut() {
            // Rebuilding changed nothing, except a row found behind.
            q.rows.clear();
        }
        Ok(Self { events: Mutex::new(events), journal: Some(journal) })
    }

    /// Runs `f` on the event's queue under the lock and queues the rows it
    /// changed in the same critical section. `None` for an unknown event.
    fn with<T>(&self, event: &str, f: impl FnOnce(&mut EventQueue) -> T) -> (Option<T>, Option<Ticket>) {
        let mut events = self.events.lock();
        let Some(q) = events.get_mut(event) else { return (None, None) };
        let out = f(q);
        let ticket = self.journal.as_ref().and_then(|j| j.append(q.take_rows()));
        (Some(out), ticket)
    }

    /// Waits until a change is durable.
    async fn committed(&self, ticket: Option<Ticket>) -> StoreResult<()> {
        match (&self.journal, ticket) {
            (Some(journal), Some(ticket)) => journal.committed(ticket).await,
            _ => Ok(()),
        }
    }

    /// Runs a change and answers once it is durable.
    async fn change<T>(&self, event: &str, f: impl FnOnce(&mut EventQueue) -> T) -> StoreResult<Option<T>> {
        let (out, ticket) = self.with(event, f);
        self.committed(ticket).await?;
        Ok(out)
    }
}

#[async_trait]
impl WaitingRoom for MemoryWaitingRoom {
    async fn configure(&self, event: &str, settings: &QueueSettings) -> StoreResult<()> {
        let ticket = {
            let mut events = self.events.lock();
            let q = events
                .entry(event.to_owned())
                .or_insert_with(|| EventQueue::new(event, *settings, self.journal.is_some()));
            if q.settings != *settings {
                q.settings = *settings;
                q.settings_json = None;
                q.queue_changed = true;
            }
            self.journal.as_ref().and_then(|j| j.append(q.take_rows()))
        };
        self.committed(ticket).await
    }

    async fn settings(&self, event: &str) -> StoreResult<Option<QueueSettings>> {
        Ok(self.with(event, |q| q.settings).0)
    }

    async fn join(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<JoinOutcome>> {
        self.change(event, |q| {
            if let Some(until_ms) = q.open_window(user, now_ms) {
                return JoinOutcome::Admitted { until_ms };
            }
            let waiting = q.by_seq.len() as u64;
            if let Some(seq) = q.touch(user, now_ms) {
                return JoinOutcome::Waiting { position: q.position(seq), waiting };
            }
            if waiting == 0 {
                let active = q.open_windows(now_ms);
                if q.take_budget(active, 1, now_ms) == 1 {
                    let until_ms = now_ms + i64::from(q.settings.window_s) * 1000;
                    q.set_window(user.into(), until_ms);
                    return JoinOutcome::Admitted { until_ms };
                }
            }
            q.add_waiting(user, now_ms);
            let waiting = waiting + 1;
            JoinOutcome::Waiting { position: waiting, waiting }
        })
        .await
    }

    async fn leave(&self, event: &str, user: &str) -> StoreResult<bool> {
        Ok(self
            .change(event, |q| {
                let waited = q.remove_waiting(user).is_some();
                let admitted = q.remove_window(user);
                waited || admitted
            })
            .await?
            .unwrap_or(false))
    }

    async fn status(&self, event: &str, users: &[UserId], now_ms: i64) -> StoreResult<StatusBatch> {
        Ok(self
            .with(event, |q| {
                let statuses = users
                    .iter()
                    .map(|u| match q.touch(u, now_ms) {
                        Some(seq) => PlaceStatus::Waiting { position: q.position(seq) },
                        None => match q.open_window(u, now_ms) {
                            Some(until_ms) => PlaceStatus::Admitted { until_ms },
                            None => PlaceStatus::Gone,
                        },
                    })
                    .collect();
                StatusBatch { waiting: q.by_seq.len() as u64, stats: q.stats, statuses }
            })
            .0
            .unwrap_or_else(|| StatusBatch { waiting: 0, stats: None, statuses: vec![PlaceStatus::Gone; users.len()] }))
    }

    async fn admission(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<i64>> {
        Ok(self.with(event, |q| q.open_window(user, now_ms)).0.flatten())
    }

    async fn acquire_lease(&self, event: &str, node: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<Option<Lease>> {
        Ok(self
            .with(event, |q| {
                match &mut q.lease {
                    Some(l) if l.expires_ms > now_ms && l.node == node => {
                        l.expires_ms = now_ms + ttl_ms;
                        return Some(Lease { token: l.token });
                    }
                    Some(l) if l.expires_ms > now_ms => return None,
                    _ => {}
                }
                q.fence += 1;
                q.lease = Some(LeaseState { node: node.to_owned(), token: q.fence, expires_ms: now_ms + ttl_ms });
                Some(Lease { token: q.fence })
            })
            .0
            .flatten())
    }

    async fn release_lease(&self, event: &str, node: &str, lease: Lease) -> StoreResult<()> {
        self.with(event, |q| {
            if q.lease.as_ref().is_some_and(|l| l.node == node && l.token == lease.token) {
                q.lease = None;
            }
        });
        Ok(())
    }

    async fn tick(&self, event: &str, lease: Lease, now_ms: i64, max_batch: u64) -> StoreResult<TickOutcome> {
        Ok(self
            .change(event, |q| {
                if !q.lease_is(lease.token, now_ms) {
                    return TickOutcome { fenced: true, ..TickOutcome::default() };
                }
                let mut out = TickOutcome::default();
                let ended: Vec<(i64, UserId)> =
                    q.by_window_end.range(..(now_ms + 1, UserId::from(""))).take(max_batch as usize).cloned().collect();
                for (_, user) in ended {
                    q.remove_window(&user);
                    out.expired.push(user);
                }
                let cutoff = ghost_cutoff(now_ms, q.settings.grace_s);
                let ghosts: Vec<u64> =
                    q.by_seen.range(..(cutoff, 0)).take(max_batch as usize).map(|&(_, seq)| seq).collect();
                for seq in ghosts {
                    if let Some(user) = q.by_seq.get(&seq).cloned() {
                        q.remove_waiting(&user);
                        out.dropped.push(user);
                    }
                }
                let active = q.active.len() as u64;
                let waiting = q.by_seq.len() as u64;
                let n = q.take_budget(active, waiting, now_ms).min(max_batch);
                let until_ms = now_ms + i64::from(q.settings.window_s) * 1000;
                for _ in 0..n {
                    let Some((_, user)) = q.by_seq.first_key_value().map(|(s, u)| (*s, u.clone())) else { break };
                    q.remove_waiting(&user);
                    q.set_window(user.clone(), until_ms);
                    out.admitted.push((user, until_ms));
                }
                out.waiting = q.by_seq.len() as u64;
                out.active = q.active.len() as u64;
                out
            })
            .await?
            .unwrap_or_default())
    }

    async fn publish_stats(&self, event: &str, stats: &RateStats) -> StoreResult<()> {
        self.with(event, |q| q.stats = Some(*stats));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    const EVENT: &str = "e|q";
    const T0: i64 = 1_700_000_000_000;

    mod durable {
        crate::store::waiting::contract::waiting_room_contract!(async {
            let journal = crate::store::journal::Journal::temporary().await;
            super::MemoryWaitingRoom::open(journal, super::T0).await.expect("a durable waiting room")
        });
    }

    async fn open(path: &Path, now_ms: i64) -> MemoryWaitingRoom {
        MemoryWaitingRoom::open(Journal::open(path).await.unwrap(), now_ms).await.unwrap()
    }

    fn settings() -> QueueSettings {
        QueueSettings { rate_per_min: 120, max_active: 10, window_s: 60, grace_s: 5, ..QueueSettings::default() }
    }

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|i| UserId::from(format!("auth0|{i:04}"))).collect()
    }

    /// Where every buyer stands, and the settings.
    async fn picture(w: &MemoryWaitingRoom, users: &[UserId], now_ms: i64) -> (Option<QueueSettings>, StatusBatch) {
        let mut batch = w.status(EVENT, users, now_ms).await.unwrap();
        batch.stats = None;
        (w.settings(EVENT).await.unwrap(), batch)
    }

    /// A line with some admitted, some left, some waiting.
    async fn a_busy_line(w: &MemoryWaitingRoom) -> Vec<UserId> {
        w.configure(EVENT, &settings()).await.unwrap();
        let all = users(40);
        for (i, u) in all.iter().enumerate() {
            w.join(EVENT, u, T0 + i as i64).await.unwrap().unwrap();
        }
        let lease = w.acquire_lease(EVENT, "n1", T0 + 100, 3_000).await.unwrap().unwrap();
        let tick = w.tick(EVENT, lease, T0 + 1_000, 100).await.unwrap();
        assert!(!tick.admitted.is_empty());
        assert!(w.leave(EVENT, &all[10]).await.unwrap());
        assert!(w.leave(EVENT, &all[25]).await.unwrap());
        all
    }

    /// After a restart every place is where it was (same order), every
    /// window ends when it did, and the budget is not refilled.
    #[tokio::test]
    async fn a_reopened_room_has_every_place_and_window_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let w = open(&path, T0).await;
        let all = a_busy_line(&w).await;
        let now = T0 + 1_500;
        let before = picture(&w, &all, now).await;
        drop(w);

        let w = open(&path, now).await;
        assert_eq!(picture(&w, &all, now).await, before);
        // The next to join goes to the end of the line.
        let late = UserId::from("late");
        let waiting = before.1.waiting;
        assert_eq!(
            w.join(EVENT, &late, now).await.unwrap(),
            Some(JoinOutcome::Waiting { position: waiting + 1, waiting: waiting + 1 })
        );
        // The budget the first tick spent is not back: half a second after
        // it the admitter may admit one (two from a full bucket), the
        // first in line.
        let lease = w.acquire_lease(EVENT, "n2", now, 3_000).await.unwrap().unwrap();
        let tick = w.tick(EVENT, lease, now, 100).await.unwrap();
        assert_eq!(tick.admitted, vec![(all[4].clone(), now + 60_000)]);
        // Restored buyers count as seen at the restore: a sweep within the
        // grace from then drops nobody.
        let lease = w.acquire_lease(EVENT, "n2", now + 5_000, 3_000).await.unwrap().unwrap();
        let tick = w.tick(EVENT, lease, now + 5_000, 100).await.unwrap();
        assert!(!tick.fenced);
        assert!(tick.dropped.is_empty());
        // Restored windows end when they did: two admitted on joining, two
        // by the first tick.
        let lease = w.acquire_lease(EVENT, "n2", T0 + 61_000, 3_000).await.unwrap().unwrap();
        let tick = w.tick(EVENT, lease, T0 + 61_000, 100).await.unwrap();
        assert_eq!(tick.expired, all[..4].to_vec());
    }

    /// Every answered call is already committed: a second store opening
    /// the file while the first still runs (no shutdown) sees it all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn answered_joins_are_committed_before_any_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let w = Arc::new(open(&path, T0).await);
        w.configure(EVENT, &QueueSettings { paused: true, ..settings() }).await.unwrap();
        let all = users(2_000);
        let tasks: Vec<_> = all
            .iter()
            .cloned()
            .map(|u| {
                let w = w.clone();
                tokio::spawn(async move { w.join(EVENT, &u, T0).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Some(JoinOutcome::Waiting { .. })));
        }
        let before = picture(&w, &all, T0).await;
        let other = open(&path, T0).await;
        assert_eq!(picture(&other, &all, T0).await, before);
        assert_eq!(before.1.waiting, 2_000);
    }

    #[tokio::test]
    async fn the_memory_only_room_writes_nothing() {
        let w = MemoryWaitingRoom::new();
        a_busy_line(&w).await;
        assert!(w.events.lock().values().all(|q| q.rows.is_empty()));
    }

    #[test]
    fn fenwick_ranks_survive_growth_and_removal() {
        let mut live = BTreeMap::new();
        let mut f = Fenwick::default();
        for seq in 1..=3000u64 {
            f.ensure(seq, &live);
            live.insert(seq, UserId::from(seq.to_string()));
            f.add(seq, 1);
        }
        assert_eq!(f.rank(3000), 3000);
        live.remove(&10);
        f.add(10, -1);
        assert_eq!(f.rank(9), 9);
        assert_eq!(f.rank(11), 10);
        assert_eq!(f.rank(3000), 2999);
    }
}
