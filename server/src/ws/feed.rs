//! This node's live seat maps: for each event somebody here watches (or
//! picks best seats for), a replica of its seat states kept current from the
//! bus, and the sockets watching it. A new watcher's snapshot is queued
//! under the same lock the diffs are applied under, so nothing is lost or
//! doubled between the snapshot and the diffs after it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, MutexGuard};
use qt_protocol::{Format, Req, ServerMsg, encode};

use super::hub::Peer;
use super::outbox::{CLOSE_POLICY, Kill, PushError};
use super::render::seats_frame;
use crate::domain::EventId;
use crate::domain::event::Event;
use crate::domain::events::SeatDiff;
use crate::domain::seats::{Applied, Replica, SeatChange, SeatLayout, SeatStatus};
use crate::services::notices::LiveMaps;
use crate::services::seatmap::seatmap_view;
use crate::store::seats::Snapshot;

/// A watcher that cannot take a fresh snapshot for this long is closed.
const BEHIND_LIMIT_MS: i64 = 10_000;
/// A live event nobody watched for this long is dropped from memory.
const IDLE_LIMIT_MS: i64 = 60_000;

struct Watcher {
    peer: Arc<Peer>,
    format: Format,
    /// Since when this watcher missed a diff (its queue was full); it gets
    /// a fresh snapshot as soon as there is room.
    behind_since: Option<i64>,
}

struct Live {
    /// The event as it was when it went live: id, currency and tiers for
    /// the snapshot.
    event: Arc<Event>,
    layout: Arc<SeatLayout>,
    replica: Replica,
    watchers: Vec<Watcher>,
    /// Applied changes not yet sent, batched into one `seats` frame.
    pending: Vec<SeatChange>,
    /// Snapshot frames without `req`, per format, at the replica's version.
    cache: [Option<Utf8Bytes>; 2],
    /// A gap was seen: the replica must be reloaded from the store.
    stale: bool,
    /// The published version at the last probe, with the replica's then.
    probe: Option<(u64, u64)>,
    idle_since: Option<i64>,
}

impl Live {
    /// Sends a fresh snapshot to each watcher that fell behind and has room
    /// again; closes one that stayed full too long.
    fn catch_up(&mut self, now_ms: i64) {
        let mut frames: [Option<Utf8Bytes>; 2] = [None, None];
        let mut watchers = std::mem::take(&mut self.watchers);
        watchers.retain_mut(|w| {
            let Some(since) = w.behind_since else { return true };
            let frame = frames[slot(w.format)].get_or_insert_with(|| self.snapshot(w.format)).clone();
            match w.peer.outbox.push(frame) {
                Ok(()) => {
                    w.behind_since = None;
                    true
                }
                Err(PushError::Full) if now_ms - since > BEHIND_LIMIT_MS => {
                    w.peer.outbox.kill(Kill { code: CLOSE_POLICY, reason: "too slow for the seat map" });
                    false
                }
                Err(PushError::Full) => true,
                Err(PushError::Closed) => false,
            }
        });
        self.watchers = watchers;
    }

    fn snapshot(&mut self, format: Format) -> Utf8Bytes {
        let slot = slot(format);
        if let Some(frame) = &self.cache[slot] {
            return frame.clone();
        }
        let view = seatmap_view(&self.event, self.replica.version, &self.layout, &self.replica.status, format);
        let frame: Utf8Bytes = encode(&ServerMsg::Seatmap(view), None).into();
        self.cache[slot] = Some(frame.clone());
        frame
    }
}

/// The cache slot of a snapshot form.
fn slot(format: Format) -> usize {
    match format {
        Format::Full => 0,
        Format::Compact => 1,
    }
}

/// What a maintenance pass found to do.
#[derive(Debug, Default)]
pub struct Chores {
    /// Events whose replica must be reloaded from the store.
    pub resync: Vec<EventId>,
    /// Events to compare with the store's version.
    pub probe: Vec<(EventId, u64)>,
}

#[derive(Default)]
pub struct Feed {
    events: Mutex<HashMap<EventId, Live>>,
}

fn replica_from(layout: &SeatLayout, snapshot: &Snapshot) -> Replica {
    let mut status = vec![SeatStatus::Free; layout.len()];
    for (id, s) in &snapshot.taken {
        if let Some(i) = layout.index_of(id) {
            status[i] = *s;
        }
    }
    Replica { version: snapshot.version, status }
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, Live>> {
        self.events.lock()
    }

    /// Replaces a replica after a gap or a lost bus, and gives every
    /// watcher a fresh snapshot.
    pub fn resync(&self, event: &str, snapshot: &Snapshot, now_ms: i64) {
        let mut events = self.lock();
        let Some(live) = events.get_mut(event) else { return };
        if snapshot.version < live.replica.version && !live.stale {
            return; // the store read is older than what we have already
        }
        live.replica = replica_from(&live.layout, snapshot);
        live.pending.clear();
        live.cache = [None, None];
        live.stale = false;
        live.probe = None;
        for w in &mut live.watchers {
            w.behind_since.get_or_insert(now_ms);
        }
        live.catch_up(now_ms);
    }

    /// Registers a watcher and queues its snapshot (answering `req`).
    /// `false` when the event is not live here.
    pub fn watch(&self, event: &str, peer: &Arc<Peer>, format: Format, req: Option<&Req>) -> bool {
        let mut events = self.lock();
        let Some(live) = events.get_mut(event) else { return false };
        let frame = live.snapshot(format);
        let frame = match req {
            None => frame,
            // The cached frame ends in `}`: splice the request id in.
            Some(req) => {
                let req = serde_json::to_string(req).unwrap_or_default();
                let body = frame.as_str();
                format!("{},\"req\":{req}}}", &body[..body.len() - 1]).into()
            }
        };
        live.watchers.retain(|w| w.peer.id != peer.id);
        live.watchers.push(Watcher { peer: peer.clone(), format, behind_since: None });
        live.idle_since = None;
        peer.outbox.push_or_kill(frame);
        true
    }

    pub fn unwatch(&self, event: &str, peer_id: u64, now_ms: i64) {
        let mut events = self.lock();
        if let Some(live) = events.get_mut(event) {
            live.watchers.retain(|w| w.peer.id != peer_id);
            if live.watchers.is_empty() {
                live.idle_since.get_or_insert(now_ms);
            }
        }
    }

    /// Applies a diff from the bus; `None` when the event is not live here.
    pub fn apply(&self, diff: &SeatDiff) -> Option<Applied> {
        let mut events = self.lock();
        let live = events.get_mut(diff.event.as_str())?;
        let changes: Vec<SeatChange> = diff.changes().collect();
        let outcome = live.replica.apply(&live.layout, diff.version, &changes);
        match outcome {
            Applied::Applied => {
                live.pending.extend(changes);
                live.cache = [None, None];
            }
            Applied::Gap => live.stale = true,
            Applied::Duplicate => {}
        }
        Some(outcome)
    }

    /// Every live event must check itself against the store.
    pub fn mark_all_stale(&self) {
        for live in self.lock().values_mut() {
            live.stale = true;
        }
    }

    /// Sends each live event's batched changes to its watchers as one
    /// `seats` frame — or, to compact watchers, the compact snapshot when
    /// the diff is more than twice its size (a burst, a stall): cheaper to
    /// send, and it bounds how large a frame a socket ever buffers. A watcher with a full queue falls
    /// behind and is caught up with a snapshot later.
    pub fn flush(&self, now_ms: i64) {
        let mut events = self.lock();
        for (event, live) in events.iter_mut() {
            if live.pending.is_empty() {
                continue;
            }
            let changes = std::mem::take(&mut live.pending);
            let diff: Utf8Bytes = seats_frame(event, live.replica.version, changes).into();
            // The compact map has a letter per seat, so only a diff longer
            // than twice that can lose to it.
            let compact_map = (diff.len() > 2 * live.layout.len())
                .then(|| live.snapshot(Format::Compact))
                .filter(|map| 2 * map.len() < diff.len());
            for w in live.watchers.iter_mut().filter(|w| w.behind_since.is_none()) {
                let frame = match (&compact_map, w.format) {
                    (Some(map), Format::Compact) => map.clone(),
                    _ => diff.clone(),
                };
                if w.peer.outbox.push(frame) == Err(PushError::Full) {
                    w.behind_since = Some(now_ms);
                }
            }
        }
    }

    /// Catches up watchers that fell behind, drops idle events, and says
    /// which events need a resync or a version probe.
    pub fn maintain(&self, now_ms: i64) -> Chores {
        let mut chores = Chores::default();
        let mut events = self.lock();
        events.retain(|_, live| live.idle_since.is_none_or(|t| now_ms - t < IDLE_LIMIT_MS));
        for (event, live) in events.iter_mut() {
            live.catch_up(now_ms);
            if live.watchers.is_empty() {
                live.idle_since.get_or_insert(now_ms);
            }
            if live.stale {
                chores.resync.push(event.clone());
            } else {
                chores.probe.push((event.clone(), live.replica.version));
            }
        }
        chores
    }

    /// Records the version the relay has published. A replica behind it at
    /// two probes in a row without moving has missed diffs: resync it.
    pub fn probed(&self, event: &str, published: u64) -> bool {
        let mut events = self.lock();
        let Some(live) = events.get_mut(event) else { return false };
        let ours = live.replica.version;
        if published <= ours {
            live.probe = None;
            return false;
        }
        let missed = matches!(live.probe, Some((_, before)) if before == ours);
        live.probe = Some((published, ours));
        if missed {
            live.stale = true;
        }
        missed
    }

    pub fn remove_peer(&self, events: &[EventId], peer_id: u64, now_ms: i64) {
        for e in events {
            self.unwatch(e, peer_id, now_ms);
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().values().map(|l| l.watchers.len()).sum()
    }
}

impl LiveMaps for Feed {
    fn is_live(&self, event: &str) -> bool {
        self.lock().contains_key(event)
    }

    /// Makes an event live from a store snapshot (unless it already is).
    fn install(&self, id: &EventId, event: Arc<Event>, layout: Arc<SeatLayout>, snapshot: &Snapshot, now_ms: i64) {
        self.lock().entry(id.clone()).or_insert_with(|| Live {
            replica: replica_from(&layout, snapshot),
            event,
            layout,
            watchers: Vec::new(),
            pending: Vec::new(),
            cache: [None, None],
            stale: false,
            probe: None,
            idle_since: Some(now_ms),
        });
    }

    /// The layout and current seat states, for choosing best seats.
    fn view(&self, event: &str) -> Option<(Arc<SeatLayout>, Vec<SeatStatus>)> {
        let events = self.lock();
        let live = events.get(event)?;
        Some((live.layout.clone(), live.replica.status.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::demo;
    use crate::domain::events::Cause;
    use crate::ws::outbox::Next;

    fn diff(version: u64, seats: &[&str]) -> SeatDiff {
        SeatDiff {
            event: "e".into(),
            version,
            status: SeatStatus::Held,
            seats: seats.iter().map(|s| s.to_string()).collect(),
            user: "u".into(),
            cause: Cause::Held,
        }
    }

    fn feed() -> (Feed, EventId) {
        let f = Feed::default();
        let e: EventId = "e".into();
        let layout = Arc::new(SeatLayout::new(demo::seats()));
        f.install(&e, Arc::new(demo::event(0)), layout, &Snapshot { version: 5, taken: vec![] }, 0);
        (f, e)
    }

    async fn frames(p: &Peer, n: usize) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for _ in 0..n {
            match p.outbox.next().await {
                Next::Send(f) => out.push(serde_json::from_str(&f).unwrap()),
                Next::Close(k) => panic!("closed: {k:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn snapshot_then_batched_diffs_without_gap_or_double() {
        let (f, e) = feed();
        let p = Peer::new(8);
        assert_eq!(f.apply(&diff(6, &["A-1-1"])), Some(Applied::Applied));
        f.flush(0);
        assert!(f.watch(&e, &p, Format::Full, Some(&Req::Int(3))));
        assert_eq!(f.apply(&diff(8, &["A-1-2", "A-1-3"])), Some(Applied::Applied));
        assert_eq!(f.apply(&diff(9, &["A-1-4"])), Some(Applied::Applied));
        assert_eq!(f.apply(&diff(9, &["A-1-4"])), Some(Applied::Duplicate));
        f.flush(0);
        let got = frames(&p, 2).await;
        assert_eq!(
            (got[0]["type"].as_str(), got[0]["version"].as_u64(), got[0]["req"].as_i64()),
            (Some("seatmap"), Some(6), Some(3))
        );
        let a11 = got[0]["seats"].as_array().unwrap().iter().find(|s| s["id"] == "A-1-1").unwrap();
        assert_eq!(a11["status"], "held");
        assert_eq!(got[1]["type"], "seats");
        assert_eq!(got[1]["version"], 9);
        assert_eq!(got[1]["changes"].as_array().unwrap().len(), 3, "two diffs batched, the duplicate dropped");
    }

    #[tokio::test]
    async fn a_gap_marks_the_event_for_resync_and_resync_resends_the_map() {
        let (f, e) = feed();
        let p = Peer::new(8);
        f.watch(&e, &p, Format::Compact, None);
        assert_eq!(f.apply(&diff(9, &["A-1-1"])), Some(Applied::Gap));
        assert_eq!(f.maintain(0).resync, vec![e.clone()]);
        f.resync("e", &Snapshot { version: 9, taken: vec![("B-2-2".into(), SeatStatus::Held)] }, 0);
        let got = frames(&p, 2).await;
        assert_eq!(got[1]["type"], "seatmap");
        assert_eq!(got[1]["version"], 9);
        assert_eq!(got[1]["format"], "compact");
        assert!(f.maintain(0).resync.is_empty());
    }

    #[tokio::test]
    async fn a_slow_watcher_gets_a_snapshot_when_it_has_room_and_others_are_not_held_back() {
        let (f, e) = feed();
        let slow = Peer::new(4);
        let fast = Peer::new(64);
        f.watch(&e, &slow, Format::Full, None);
        f.watch(&e, &fast, Format::Full, None);
        for v in 6..20u64 {
            f.apply(&diff(v, &[&format!("A-2-{v}")]));
            f.flush(v as i64);
        }
        assert_eq!(frames(&fast, 15).await.last().unwrap()["version"], 19, "the fast one saw every diff");
        // The slow one's queue filled; it drains, then gets a fresh snapshot.
        let got = frames(&slow, 4).await;
        assert_eq!(got.last().unwrap()["version"], 8);
        f.maintain(100);
        let caught_up = frames(&slow, 1).await;
        assert_eq!((caught_up[0]["type"].as_str(), caught_up[0]["version"].as_u64()), (Some("seatmap"), Some(19)));
    }

    #[tokio::test]
    async fn a_watcher_that_stays_full_is_closed() {
        let (f, e) = feed();
        let slow = Peer::new(4);
        f.watch(&e, &slow, Format::Full, None);
        for v in 6..12u64 {
            f.apply(&diff(v, &[&format!("A-3-{v}")]));
            f.flush(1_000);
        }
        f.maintain(1_000 + BEHIND_LIMIT_MS + 1);
        let mut closed = false;
        for _ in 0..6 {
            if let Next::Close(k) = slow.outbox.next().await {
                assert_eq!(k.code, CLOSE_POLICY);
                closed = true;
                break;
            }
        }
        assert!(closed);
        assert_eq!(f.watcher_count(), 0);
    }

    #[tokio::test]
    async fn a_burst_bigger_than_the_compact_map_goes_out_as_the_map() {
        let (f, e) = feed();
        let compact = Peer::new(8);
        let full = Peer::new(8);
        f.watch(&e, &compact, Format::Compact, None);
        f.watch(&e, &full, Format::Full, None);
        // Every seat of three sections: far more diff than compact map.
        let seats: Vec<String> = ["A", "B", "C"]
            .iter()
            .flat_map(|s| (1..=24).flat_map(move |n| (1..=20).map(move |r| format!("{s}-{r}-{n}"))))
            .collect();
        let refs: Vec<&str> = seats.iter().map(String::as_str).collect();
        f.apply(&diff(5 + refs.len() as u64, &refs));
        f.flush(0);
        let got = frames(&compact, 2).await;
        assert_eq!((got[1]["type"].as_str(), got[1]["version"].as_u64()), (Some("seatmap"), Some(1_445)));
        let got = frames(&full, 2).await;
        assert_eq!(got[1]["type"], "seats", "the full map is bigger than the diff");
        assert_eq!(got[1]["changes"].as_array().unwrap().len(), 1_440);
        // A small change stays a diff for everyone.
        f.apply(&diff(1_446, &["D-1-1"]));
        f.flush(0);
        assert_eq!(frames(&compact, 1).await[0]["type"], "seats");
    }

    #[test]
    fn probes_find_replicas_that_missed_diffs() {
        let (f, _) = feed();
        assert!(!f.probed("e", 5), "level with the store");
        assert!(!f.probed("e", 7), "behind once: diffs may be in flight");
        assert!(f.probed("e", 7), "still behind without moving: missed");
    }
}
