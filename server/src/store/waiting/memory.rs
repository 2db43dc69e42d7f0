//! In-process waiting room for embedded mode: one mutex-guarded map per
//! node. Ranks come from a Fenwick tree over arrival sequence numbers, so a
//! position costs O(log N) and a join O(log N).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{JoinOutcome, Lease, PlaceStatus, StatusBatch, TickOutcome, WaitingRoom};
use crate::domain::UserId;
use crate::domain::queue::{AdmissionBucket, PRESENCE_RESOLUTION_MS, QueueSettings, RateStats, ghost_cutoff};
use crate::store::StoreResult;

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
}

impl EventQueue {
    fn new(settings: QueueSettings) -> Self {
        Self {
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
        }
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
        id
    }

    fn open_window(&self, user: &str, now_ms: i64) -> Option<i64> {
        self.active.get(user).copied().filter(|&until| until > now_ms)
    }

    fn set_window(&mut self, user: UserId, until_ms: i64) {
        if let Some(old) = self.active.insert(user.clone(), until_ms) {
            self.by_window_end.remove(&(old, user.clone()));
        }
        self.by_window_end.insert((until_ms, user));
    }

    fn remove_window(&mut self, user: &str) -> bool {
        match self.active.remove_entry(user) {
            Some((id, until)) => {
                self.by_window_end.remove(&(until, id));
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

/// The embedded adapter of [`WaitingRoom`].
#[derive(Debug, Default)]
pub struct MemoryWaitingRoom {
    events: Mutex<HashMap<String, EventQueue>>,
}

impl MemoryWaitingRoom {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, event: &str, f: impl FnOnce(&mut EventQueue) -> T) -> Option<T> {
        // A poisoned lock means a panic mid-update elsewhere; the map itself
        // is still consistent per operation, so keep serving.
        let mut events = self.events.lock();
        events.get_mut(event).map(f)
    }
}

#[async_trait]
impl WaitingRoom for MemoryWaitingRoom {
    async fn configure(&self, event: &str, settings: &QueueSettings) -> StoreResult<()> {
        let mut events = self.events.lock();
        events
            .entry(event.to_owned())
            .and_modify(|q| q.settings = *settings)
            .or_insert_with(|| EventQueue::new(*settings));
        Ok(())
    }

    async fn settings(&self, event: &str) -> StoreResult<Option<QueueSettings>> {
        Ok(self.with(event, |q| q.settings))
    }

    async fn join(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<JoinOutcome>> {
        Ok(self.with(event, |q| {
            if let Some(until_ms) = q.open_window(user, now_ms) {
                return JoinOutcome::Admitted { until_ms };
            }
            let waiting = q.by_seq.len() as u64;
            if let Some(seq) = q.touch(user, now_ms) {
                return JoinOutcome::Waiting { position: q.position(seq), waiting };
            }
            if waiting == 0 {
                let settings = q.settings;
                let active = q.open_windows(now_ms);
                if q.bucket(now_ms).take_budget(&settings, active, 1, now_ms) == 1 {
                    let until_ms = now_ms + i64::from(settings.window_s) * 1000;
                    q.set_window(user.into(), until_ms);
                    return JoinOutcome::Admitted { until_ms };
                }
            }
            let seq = q.next_seq;
            q.next_seq += 1;
            let id: UserId = user.into();
            q.ranks.ensure(seq, &q.by_seq);
            q.by_seq.insert(seq, id.clone());
            q.ranks.add(seq, 1);
            q.places.insert(id, Place { seq, seen_ms: now_ms });
            q.by_seen.insert((now_ms, seq));
            let waiting = waiting + 1;
            JoinOutcome::Waiting { position: waiting, waiting }
        }))
    }

    async fn leave(&self, event: &str, user: &str) -> StoreResult<bool> {
        Ok(self
            .with(event, |q| {
                let waited = q.remove_waiting(user).is_some();
                let admitted = q.remove_window(user);
                waited || admitted
            })
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
            .unwrap_or_else(|| StatusBatch { waiting: 0, stats: None, statuses: vec![PlaceStatus::Gone; users.len()] }))
    }

    async fn admission(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<i64>> {
        Ok(self.with(event, |q| q.open_window(user, now_ms)).flatten())
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
            .with(event, |q| {
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
                let settings = q.settings;
                let active = q.active.len() as u64;
                let waiting = q.by_seq.len() as u64;
                let n = q.bucket(now_ms).take_budget(&settings, active, waiting, now_ms).min(max_batch);
                let until_ms = now_ms + i64::from(settings.window_s) * 1000;
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
            .unwrap_or_default())
    }

    async fn publish_stats(&self, event: &str, stats: &RateStats) -> StoreResult<()> {
        self.with(event, |q| q.stats = Some(*stats));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
