//! A worker's watchers: each `watch`es the event's compact map, keeps its
//! own copy from the `seats` diffs, and times the changes of our seats
//! against our holders' record (see `crowd`); at the end each map is
//! compared with the store's.
//!
//! Every watcher receives the same `seats` frames, so each distinct frame is
//! scanned once (`scan`, keyed by version, confirmed byte for byte) and each
//! watcher only applies it; each distinct snapshot is read once too. A
//! version gap makes a watcher `watch` again; a `seatmap` pushed without
//! `req` replaces its map (a resync).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use qt_protocol::frames::SeatStatus;
use qt_protocol::{ClientMsg, Format, Req, ServerMsg};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::common::sockets::{self, code_name, polite_close};
use crate::common::stats::tally;
use crate::seats::crowd::{CONNECT_TIMEOUT, Phase, SeatCrowd, Shared, SockCtx};
use crate::seats::layout::parse_compact;
use crate::seats::scan::{frame_type, peek_version, scan_seats};
use crate::seats::wire::{SeatsAt, WatchReport};

/// Distinct `seats` frames remembered for the watchers still behind.
const DIFF_CACHE: usize = 256;
/// Request ids: the first `watch`, and a `watch` after a gap.
const WATCH_REQ: i64 = 1;
const REWATCH_REQ: i64 = 2;
/// Mismatch descriptions kept per worker.
const EXAMPLES: usize = 5;

/// A distinct `seats` frame, scanned once.
struct Parsed {
    text: Utf8Bytes,
    version: u64,
    changes: Vec<(u16, SeatStatus)>,
}

/// A distinct snapshot, read once.
struct Snap {
    text: Utf8Bytes,
    version: u64,
    status: Vec<SeatStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WState {
    Connecting,
    /// `watch` sent; `first` until the very first snapshot arrives.
    Awaiting {
        first: bool,
    },
    Live,
    Closed,
}

pub struct Watcher {
    pub state: WState,
    pub version: u64,
    pub map: Box<[SeatStatus]>,
    pub timed: bool,
    /// Per seat of ours: changes seen since the first snapshot.
    counts: Box<[u16]>,
}

/// What a watcher's socket must do after a frame.
pub enum Action {
    None,
    /// The first snapshot arrived: the watcher is set up.
    Ready,
    /// A diff was lost: ask for a fresh snapshot.
    Rewatch,
}

/// Every watcher of the worker, the frames they share, and what they saw.
pub struct Watchers {
    pub list: Vec<RefCell<Watcher>>,
    diffs: RefCell<BTreeMap<u64, Rc<Parsed>>>,
    snap: RefCell<Option<Rc<Snap>>>,
    /// What they saw so far, in the form the report takes.
    pub seen: RefCell<WatchReport>,
    watch_frame: Utf8Bytes,
    rewatch_frame: Utf8Bytes,
}

impl Watchers {
    pub fn new(count: u64, event: &str) -> Self {
        let watch = ClientMsg::Watch { event: event.to_owned(), format: Format::Compact };
        let list = (0..count)
            .map(|_| {
                RefCell::new(Watcher {
                    state: WState::Connecting,
                    version: 0,
                    map: Box::new([]),
                    timed: false,
                    counts: Box::new([]),
                })
            })
            .collect();
        Self {
            list,
            diffs: RefCell::new(BTreeMap::new()),
            snap: RefCell::new(None),
            seen: RefCell::new(WatchReport::default()),
            watch_frame: watch.to_frame(Some(&Req::Int(WATCH_REQ))).into(),
            rewatch_frame: watch.to_frame(Some(&Req::Int(REWATCH_REQ))).into(),
        }
    }

    /// Frames, changes and bytes received so far.
    pub fn received(&self) -> (u64, u64, u64) {
        let s = self.seen.borrow();
        (s.frames, s.changes, s.bytes)
    }
}

impl Shared {
    /// The parsed form of a `seats` frame, scanning it only if no byte-equal
    /// frame was seen.
    fn parsed(&self, text: &Utf8Bytes) -> Option<Rc<Parsed>> {
        let version = peek_version(text).ok();
        if let Some(v) = version
            && let Some(p) = self.watch.diffs.borrow().get(&v)
            && p.text.as_str() == text.as_str()
        {
            return Some(p.clone());
        }
        let diff = scan_seats(text).ok()?;
        let mut changes = Vec::with_capacity(diff.changes.len());
        for (id, status) in diff.changes {
            changes.push((self.seats.layout.index_of(id)?, status));
        }
        let p = Rc::new(Parsed { text: text.clone(), version: diff.version, changes });
        self.watch.seen.borrow_mut().feed.frames_parsed += 1;
        let mut cache = self.watch.diffs.borrow_mut();
        cache.insert(diff.version, p.clone());
        while cache.len() > DIFF_CACHE {
            cache.pop_first();
        }
        Some(p)
    }

    fn snapshot(&self, text: &Utf8Bytes) -> Option<Rc<Snap>> {
        if let Some(s) = &*self.watch.snap.borrow()
            && s.text.as_str() == text.as_str()
        {
            return Some(s.clone());
        }
        let map = parse_compact(text).ok().filter(|m| m.ids == self.seats.layout.ids)?;
        let s = Rc::new(Snap { text: text.clone(), version: map.version, status: map.status });
        *self.watch.snap.borrow_mut() = Some(s.clone());
        Some(s)
    }

    pub fn on_text(&self, slot: usize, text: &Utf8Bytes) -> Action {
        match frame_type(text) {
            Ok("seats") => self.on_diff(slot, text),
            Ok("seatmap") => self.on_snapshot(slot, text),
            Ok("error") => {
                let code = match sockets::read(text).map(|f| f.msg) {
                    Some(ServerMsg::Error(e)) => code_name(e.code),
                    _ => "?".to_owned(),
                };
                tally(&mut self.watch.seen.borrow_mut().feed.server_errors, &code);
                Action::None
            }
            Ok(_) => Action::None,
            Err(_) => {
                self.watch.seen.borrow_mut().feed.scan_errors += 1;
                Action::None
            }
        }
    }

    fn on_snapshot(&self, slot: usize, text: &Utf8Bytes) -> Action {
        let Some(snap) = self.snapshot(text) else {
            self.watch.seen.borrow_mut().feed.scan_errors += 1;
            return Action::None;
        };
        let mut w = self.watch.list[slot].borrow_mut();
        let was = w.state;
        if w.map.len() == snap.status.len() {
            w.map.copy_from_slice(&snap.status);
        } else {
            w.map = snap.status.clone().into_boxed_slice();
        }
        w.version = snap.version;
        w.state = WState::Live;
        match was {
            WState::Awaiting { first: true } => {
                // Counting from here is exact only if our holders have not
                // started yet.
                w.timed = self.phase.get() == Phase::Setup;
                w.counts = if w.timed { vec![0; self.seats.len()].into_boxed_slice() } else { Box::new([]) };
                let r = &mut self.setup.borrow_mut().report;
                let v = snap.version;
                r.versions = Some(r.versions.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
                Action::Ready
            }
            WState::Awaiting { first: false } => Action::None,
            WState::Live => {
                // Pushed unasked: we had fallen behind.
                self.watch.seen.borrow_mut().feed.resyncs += 1;
                w.timed = false;
                w.counts = Box::new([]);
                Action::None
            }
            WState::Connecting | WState::Closed => Action::None,
        }
    }

    fn on_diff(&self, slot: usize, text: &Utf8Bytes) -> Action {
        let now = self.now_us();
        {
            let mut c = self.watch.seen.borrow_mut();
            c.frames += 1;
            c.bytes += text.len() as u64;
        }
        let mut w = self.watch.list[slot].borrow_mut();
        if w.state != WState::Live {
            return Action::None; // diffs from before the snapshot we await
        }
        let Some(p) = self.parsed(text) else {
            self.watch.seen.borrow_mut().feed.scan_errors += 1;
            w.state = WState::Awaiting { first: false };
            w.timed = false;
            return Action::Rewatch;
        };
        let n = p.changes.len() as u64;
        let mut c = self.watch.seen.borrow_mut();
        c.changes += n;
        if p.version.checked_sub(n) != Some(w.version) {
            c.feed.gaps += 1;
            w.state = WState::Awaiting { first: false };
            w.timed = false;
            return Action::Rewatch;
        }
        let refs = self.refs.borrow();
        let w = &mut *w;
        for &(idx, status) in &p.changes {
            w.map[usize::from(idx)] = status;
            if !w.timed {
                continue;
            }
            let Some(j) = self.seats.ours(idx) else { continue };
            let count = &mut w.counts[j];
            *count = count.saturating_add(1);
            let nth = usize::from(*count);
            // Odd changes of our seats are holds, even ones releases.
            let expected = if nth % 2 == 1 { SeatStatus::Held } else { SeatStatus::Free };
            match refs[j].get(nth - 1) {
                Some(r) if status == expected => {
                    c.delay_from_send_us.record(now.saturating_sub(r.sent_us));
                    if r.reply_us == 0 || r.reply_us > now {
                        c.before_reply += 1;
                        c.delay_us.record(0);
                    } else {
                        c.delay_us.record(now - r.reply_us);
                    }
                }
                _ => {
                    c.timing_anomalies += 1;
                    w.timed = false;
                }
            }
        }
        if !w.timed && !w.counts.is_empty() {
            w.counts = Box::new([]);
        }
        w.version = p.version;
        Action::None
    }
}

impl SeatCrowd {
    /// Where every watcher's map is against the store's `version`.
    pub fn probe(&self, version: u64) -> SeatsAt {
        let mut at = SeatsAt::default();
        for w in &self.sh.watch.list {
            let w = w.borrow();
            match w.state {
                WState::Closed => at.closed += 1,
                WState::Connecting | WState::Awaiting { .. } => at.awaiting += 1,
                WState::Live if w.version == version => at.at += 1,
                WState::Live if w.version < version => at.behind += 1,
                WState::Live => at.ahead += 1,
            }
        }
        at
    }

    /// Compares every watcher's map with the store's (`truth` at
    /// `version`); with what the watchers saw over the run.
    pub fn verify(&self, version: u64, truth: &[SeatStatus]) -> WatchReport {
        let sh = &self.sh;
        let from = sh.window.get().unwrap_or_default();
        let to = sh.window_end.get().unwrap_or(from);
        let seen = std::mem::take(&mut *sh.watch.seen.borrow_mut());
        let mut r = WatchReport {
            window_frames: to.frames - from.frames,
            window_changes: to.changes - from.changes,
            window_bytes: to.bytes - from.bytes,
            window_s: to.at_us.saturating_sub(from.at_us) as f64 / 1e6,
            ..seen
        };
        let check = &mut r.check;
        check.watchers = sh.watch.list.len() as u64;
        for (slot, w) in sh.watch.list.iter().enumerate() {
            let w = w.borrow();
            if w.state == WState::Closed {
                continue;
            }
            check.open += 1;
            if w.timed {
                r.feed.timed_watchers += 1;
            }
            if w.state == WState::Live && w.version == version && &*w.map == truth {
                check.matched += 1;
                continue;
            }
            check.mismatched += 1;
            if check.examples.len() < EXAMPLES {
                let differ = w.map.iter().zip(truth).filter(|(a, b)| a != b).count();
                check.examples.push(format!(
                    "watcher {slot}: {:?} at version {} (store {version}), {differ} seats differ",
                    w.state, w.version
                ));
            }
        }
        r
    }
}

impl SockCtx {
    /// Marks this watcher closed.
    fn gone(&self) {
        self.sh.watch.list[self.place.slot].borrow_mut().state = WState::Closed;
    }

    fn closed(&self, why: String) {
        self.gone();
        tally(&mut self.sh.watch.seen.borrow_mut().check.closed, &why);
    }

    pub async fn watcher(mut self, url: String) {
        let sh = self.sh.clone();
        let (mut ws, permit) = match self.connect(&url).await {
            Ok(x) => x,
            Err(why) => {
                self.gone();
                return sh.fail(why);
            }
        };
        let mut permit = Some(permit);
        let sent = Instant::now();
        let map_deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        sh.watch.list[self.place.slot].borrow_mut().state = WState::Awaiting { first: true };
        if ws.send(Message::Text(sh.watch.watch_frame.clone())).await.is_err() {
            self.gone();
            return sh.fail("watch: send failed");
        }
        let ended = loop {
            let msg = tokio::select! {
                _ = self.place.stop.changed() => break None,
                _ = tokio::time::sleep_until(self.place.deadline) => break None,
                _ = tokio::time::sleep_until(map_deadline), if permit.is_some() => {
                    self.gone();
                    sh.fail("watch: no seat map in time");
                    return;
                }
                msg = ws.next() => msg,
            };
            match msg {
                Some(Ok(Message::Text(text))) => match sh.on_text(self.place.slot, &text) {
                    Action::None => {}
                    Action::Ready => {
                        permit = None;
                        let r = &mut sh.setup.borrow_mut().report;
                        r.counts.watching += 1;
                        r.snapshot_us.record(sent.elapsed().as_micros() as u64);
                    }
                    Action::Rewatch => {
                        if ws.send(Message::Text(sh.watch.rewatch_frame.clone())).await.is_err() {
                            break Some("closed: send failed".to_owned());
                        }
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    break Some(frame.map_or_else(
                        || "closed by server without a code".to_owned(),
                        |f| {
                            format!(
                                "closed by server: {} {}",
                                u16::from(f.code),
                                f.reason.chars().take(60).collect::<String>()
                            )
                        },
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => break Some("closed: socket error".to_owned()),
                None => break Some("closed: connection ended".to_owned()),
            }
        };
        match ended {
            Some(_) if permit.is_some() => {
                self.gone();
                sh.fail("watch: closed before the seat map");
            }
            Some(why) => self.closed(why),
            None => polite_close(&mut ws).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use qt_protocol::frames::{SeatChange, Seats};
    use qt_protocol::{ClientMsg, Req, encode};

    use super::*;
    use crate::seats::crowd::Ref;
    use crate::seats::crowd::tests::shared;
    use crate::seats::layout::letters;
    use crate::seats::layout::tests::one_row;

    fn snapshot(version: u64, status: &str) -> Utf8Bytes {
        encode(&ServerMsg::Seatmap(one_row(version, status)), Some(&Req::Int(1))).into()
    }

    fn diff(version: u64, changes: &[(&str, &str)]) -> Utf8Bytes {
        let changes = changes
            .iter()
            .map(|(id, s)| SeatChange { id: (*id).into(), status: serde_json::from_value((*s).into()).unwrap() })
            .collect();
        encode(&ServerMsg::Seats(Seats { event: "e".into(), version, changes }), None).into()
    }

    const IDS: [&str; 4] = ["A-1-1", "A-1-2", "A-1-3", "A-1-4"];

    fn map(sh: &Shared, slot: usize) -> String {
        letters(&sh.watch.list[slot].borrow().map)
    }

    #[test]
    fn watchers_apply_diffs_and_time_our_seats_against_our_requests() {
        // Worker 0 of 2 owns seats 0 and 2 (A-1-1, A-1-3).
        let sh = shared(&IDS, 2, 0, 2);
        for slot in 0..2 {
            assert!(matches!(sh.on_text(slot, &snapshot(10, "ffff")), Action::Ready));
        }
        sh.phase.set(Phase::Holding);
        let t0 = sh.now_us();
        // Our hold of A-1-3 (seat j = 1) was sent and answered...
        sh.refs.borrow_mut()[1].push(Ref { sent_us: t0, reply_us: t0 + 1 });
        std::thread::sleep(Duration::from_millis(2));
        // ...and the diff also carries another worker's seat.
        let d = diff(12, &[("A-1-3", "held"), ("A-1-2", "held")]);
        for slot in 0..2 {
            assert!(matches!(sh.on_text(slot, &d), Action::None));
        }
        {
            let c = sh.watch.seen.borrow();
            assert_eq!(c.feed.frames_parsed, 1, "the second watcher reused the first one's scan");
            assert_eq!((c.frames, c.changes, c.delay_us.summary_ms().count), (2, 4, 2));
            assert!(c.delay_us.summary_ms().min.unwrap() >= 1.0, "about 2 ms from the reply");
            assert_eq!(c.timing_anomalies, 0);
        }
        for slot in 0..2 {
            let w = sh.watch.list[slot].borrow();
            assert_eq!((map(&sh, slot), w.version, w.timed), ("fhhf".into(), 12, true));
        }
        // The release was sent but its reply not yet in: counted as 0.
        sh.refs.borrow_mut()[1].push(Ref { sent_us: sh.now_us(), reply_us: 0 });
        sh.on_text(0, &diff(13, &[("A-1-3", "free")]));
        assert_eq!(sh.watch.seen.borrow().before_reply, 1);
        assert_eq!(map(&sh, 0), "fhff");
    }

    #[test]
    fn a_gap_asks_for_a_fresh_map_and_stops_timing() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        assert!(matches!(sh.on_text(0, &diff(12, &[("A-1-1", "held")])), Action::Rewatch), "11 was lost");
        assert_eq!(sh.watch.seen.borrow().feed.gaps, 1);
        // Diffs before the fresh snapshot are ignored; the snapshot replaces the map.
        assert!(matches!(sh.on_text(0, &diff(13, &[("A-1-2", "held")])), Action::None));
        assert!(matches!(sh.on_text(0, &snapshot(13, "hhff")), Action::None));
        let w = sh.watch.list[0].borrow();
        assert_eq!((map(&sh, 0), w.version, w.state, w.timed), ("hhff".into(), 13, WState::Live, false));
    }

    #[test]
    fn a_pushed_map_is_a_resync_and_a_change_we_did_not_make_is_an_anomaly() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        sh.on_text(0, &diff(11, &[("A-1-4", "held")]));
        {
            let c = sh.watch.seen.borrow();
            assert_eq!(c.timing_anomalies, 1, "no request of ours explains it");
        }
        assert!(!sh.watch.list[0].borrow().timed);
        sh.on_text(0, &snapshot(11, "fffh"));
        assert_eq!(sh.watch.seen.borrow().feed.resyncs, 1);
    }

    #[test]
    fn unreadable_or_foreign_frames_are_counted_not_applied() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        assert!(matches!(sh.on_text(0, &diff(11, &[("Z-9-9", "held")])), Action::Rewatch), "unknown seat");
        assert!(matches!(sh.on_text(0, &"{\"type\":".into()), Action::None));
        sh.on_text(0, &r#"{"type":"error","code":"rate_limited","message":"x","req":2}"#.into());
        let c = sh.watch.seen.borrow();
        assert_eq!((c.feed.scan_errors, c.feed.server_errors.get("rate_limited")), (2, Some(&1)));
    }

    #[test]
    fn every_map_is_checked_against_the_store() {
        let sh = Rc::new(shared(&IDS, 1, 0, 3));
        for slot in 0..2 {
            sh.on_text(slot, &snapshot(10, "ffff"));
        }
        sh.on_text(0, &diff(11, &[("A-1-2", "sold")]));
        sh.watch.list[2].borrow_mut().state = WState::Closed;
        let crowd = SeatCrowd::for_tests(sh);
        let at = crowd.probe(11);
        assert_eq!((at.at, at.behind, at.closed), (1, 1, 1));
        let r = crowd.verify(11, &crate::seats::layout::from_letters("fsff").unwrap());
        let c = &r.check;
        assert_eq!((c.watchers, c.open, c.matched, c.mismatched, r.frames), (3, 2, 1, 1, 1));
        assert!(c.examples[0].contains("watcher 1") && c.examples[0].contains("1 seats differ"), "{:?}", c.examples);
        let watch = ClientMsg::Watch { event: "e".into(), format: Format::Compact }.to_frame(Some(&Req::Int(1)));
        assert_eq!(crowd.sh.watch.watch_frame.as_str(), watch);
    }
}
