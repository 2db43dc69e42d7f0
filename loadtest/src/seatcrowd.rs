//! The seat-map crowd of one worker process: watchers that `watch` the
//! event's compact map and keep their own copy of it from the `seats`
//! diffs, and holders (admitted buyers) that hold one seat, keep it a short
//! random time and release it, paced to this worker's share of the rate.
//!
//! Timing without shared clocks: this worker is the only one that holds
//! the seats whose index is `worker` modulo `workers` ("our seats"), one
//! cycle at a time per seat, so the n-th change of one of our seats is
//! exactly our holders' n-th request for it (odd n: a hold, even n: its
//! release). Every watcher counts the changes it sees per seat of ours since
//! its first snapshot and times each against that request's reply (and its
//! send), on this process's clock. A watcher that had to take a fresh
//! snapshot stops timing but is still checked at the end.
//!
//! Every watcher receives the same `seats` frames, so each distinct frame is
//! scanned once (keyed by version, confirmed byte for byte) and each watcher
//! only applies it. Everything runs on one thread: shared state is `Rc` +
//! `Cell`/`RefCell`, and no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_tungstenite::client_async_with_config;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::crowdkit::{self, CLOSE_TIMEOUT, RampState, Ws, polite_close, ws_config};
use crate::net::io_category;
use crate::seatlayout::{Layout, parse_compact};
use crate::seatscan::{frame_type, peek_version, scan_seats};
use crate::stats::Histogram;
use crate::tokens::Minter;
use crate::wire::{HolderReport, Report, SeatsAt, SeatsReadyReport, SeatsSpec, WatchReport};
use crate::{host, net};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A request's reply, or a holder gives up on its socket.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A holder whose `join` was queued waits this long for `admitted`.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct `seats` frames remembered for the watchers still behind.
const DIFF_CACHE: usize = 256;
/// Pacing tokens accumulate for at most this long when holders are busy.
const PACER_BACKLOG_S: f64 = 0.05;
const PACER_TICK: Duration = Duration::from_millis(2);
/// Request ids: the first `watch`, a `watch` after a gap, `join`, `leave`;
/// holds and releases count up from `FIRST_REQ`.
const WATCH_REQ: u64 = 1;
const REWATCH_REQ: u64 = 2;
const JOIN_REQ: u64 = 3;
const LEAVE_REQ: u64 = 4;
const FIRST_REQ: u64 = 10;
/// Not one of our seats.
const NOT_OURS: u32 = u32::MAX;
/// Mismatch descriptions kept per worker.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Holding,
    Draining,
}

/// One request of ours that changes a seat: when it was sent and when its
/// reply came (0 while pending), microseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Ref {
    sent_us: u64,
    reply_us: u64,
}

/// A distinct `seats` frame, scanned once.
struct Parsed {
    text: Utf8Bytes,
    version: u64,
    changes: Vec<(u16, u8)>,
}

/// A distinct snapshot, read once.
struct Snap {
    text: Utf8Bytes,
    version: u64,
    status: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    Connecting,
    /// `watch` sent; `first` until the very first snapshot arrives.
    Awaiting {
        first: bool,
    },
    Live,
    Closed,
}

struct Watcher {
    state: WState,
    version: u64,
    map: Box<[u8]>,
    timed: bool,
    /// Per seat of ours: changes seen since the first snapshot.
    counts: Box<[u16]>,
}

#[derive(Default)]
struct Counters {
    // set-up
    connected: u64,
    watching: u64,
    admitted: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    connect_us: Histogram,
    snapshot_us: Histogram,
    versions: Option<(u64, u64)>,
    // watchers
    frames: u64,
    changes: u64,
    bytes: u64,
    resyncs: u64,
    gaps: u64,
    scan_errors: u64,
    server_errors: BTreeMap<String, u64>,
    frames_parsed: u64,
    closed: BTreeMap<String, u64>,
    delay_us: Histogram,
    delay_from_send_us: Histogram,
    before_reply: u64,
    timing_anomalies: u64,
    // holders
    holds_sent: u64,
    holds_ok: u64,
    unavailable: u64,
    releases_ok: u64,
    releases_empty: u64,
    hold_errors: BTreeMap<String, u64>,
    tokens_dropped: u64,
    no_free_seat: u64,
    hold_us: Histogram,
    release_us: Histogram,
}

fn tally(map: &mut BTreeMap<String, u64>, why: &str) {
    *map.entry(why.to_owned()).or_default() += 1;
}

/// Frames, changes and bytes received so far, and when (µs).
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    frames: u64,
    changes: u64,
    bytes: u64,
    at_us: u64,
}

/// What a watcher's socket must do after a frame.
enum Action {
    None,
    /// The first snapshot arrived: the watcher is set up.
    Ready,
    /// A diff was lost: ask for a fresh snapshot.
    Rewatch,
}

struct Shared {
    epoch: Instant,
    layout: Layout,
    /// Our seat `j` → its index in the map.
    own: Vec<u16>,
    /// Map index → our seat `j`, or `NOT_OURS`.
    local: Vec<u32>,
    /// JSON-quoted ids of our seats, for requests.
    own_json: Vec<String>,
    /// Per seat of ours: our requests that changed it, in order.
    refs: RefCell<Vec<Vec<Ref>>>,
    /// Our seats none of our holders holds or is about to.
    free: RefCell<Vec<u32>>,
    phase: Cell<Phase>,
    c: RefCell<Counters>,
    watchers: Vec<RefCell<Watcher>>,
    diffs: RefCell<BTreeMap<u64, Rc<Parsed>>>,
    snap: RefCell<Option<Rc<Snap>>>,
    pacer: Arc<Semaphore>,
    rng: Cell<u64>,
    hold_ms: (u64, u64),
    event_json: String,
    watch_frame: Utf8Bytes,
    rewatch_frame: Utf8Bytes,
    /// Holders admitted and not yet done (left after draining).
    holders_busy: Cell<u64>,
    /// When holding started and stopped.
    window: Cell<Option<Mark>>,
    window_end: Cell<Option<Mark>>,
    holders: u64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// splitmix64: plenty for picking seats and hold times.
    fn random(&self) -> u64 {
        let mut z = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fail(&self, why: &str) {
        let mut c = self.c.borrow_mut();
        c.failed += 1;
        tally(&mut c.errors, why);
    }

    fn take_free(&self) -> Option<u32> {
        let mut free = self.free.borrow_mut();
        if free.is_empty() {
            return None;
        }
        let i = (self.random() % free.len() as u64) as usize;
        Some(free.swap_remove(i))
    }

    /// The parsed form of a `seats` frame, scanning it only if no byte-equal
    /// frame was seen.
    fn parsed(&self, text: &Utf8Bytes) -> Option<Rc<Parsed>> {
        let version = peek_version(text).ok();
        if let Some(v) = version
            && let Some(p) = self.diffs.borrow().get(&v)
            && p.text.as_str() == text.as_str()
        {
            return Some(p.clone());
        }
        let diff = scan_seats(text).ok()?;
        let mut changes = Vec::with_capacity(diff.changes.len());
        for (id, code) in diff.changes {
            changes.push((self.layout.index_of(id)?, code));
        }
        let p = Rc::new(Parsed { text: text.clone(), version: diff.version, changes });
        self.c.borrow_mut().frames_parsed += 1;
        let mut cache = self.diffs.borrow_mut();
        cache.insert(diff.version, p.clone());
        while cache.len() > DIFF_CACHE {
            cache.pop_first();
        }
        Some(p)
    }

    fn snapshot(&self, text: &Utf8Bytes) -> Option<Rc<Snap>> {
        if let Some(s) = &*self.snap.borrow()
            && s.text.as_str() == text.as_str()
        {
            return Some(s.clone());
        }
        let map = parse_compact(text).ok().filter(|m| m.ids == self.layout.ids)?;
        let s = Rc::new(Snap { text: text.clone(), version: map.version, status: map.status });
        *self.snap.borrow_mut() = Some(s.clone());
        Some(s)
    }

    fn on_text(&self, slot: usize, text: &Utf8Bytes) -> Action {
        match frame_type(text) {
            Ok("seats") => self.on_diff(slot, text),
            Ok("seatmap") => self.on_snapshot(slot, text),
            Ok("error") => {
                #[derive(Deserialize)]
                struct E<'a> {
                    #[serde(borrow)]
                    code: Option<&'a str>,
                }
                let code = serde_json::from_str::<E<'_>>(text).ok().and_then(|e| e.code).unwrap_or("?");
                tally(&mut self.c.borrow_mut().server_errors, code);
                Action::None
            }
            Ok(_) => Action::None,
            Err(_) => {
                self.c.borrow_mut().scan_errors += 1;
                Action::None
            }
        }
    }

    fn on_snapshot(&self, slot: usize, text: &Utf8Bytes) -> Action {
        let Some(snap) = self.snapshot(text) else {
            self.c.borrow_mut().scan_errors += 1;
            return Action::None;
        };
        let mut w = self.watchers[slot].borrow_mut();
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
                w.counts = if w.timed { vec![0; self.own.len()].into_boxed_slice() } else { Box::new([]) };
                let mut c = self.c.borrow_mut();
                c.versions = Some(
                    c.versions
                        .map_or((snap.version, snap.version), |(lo, hi)| (lo.min(snap.version), hi.max(snap.version))),
                );
                Action::Ready
            }
            WState::Awaiting { first: false } => Action::None,
            WState::Live => {
                // Pushed unasked: we had fallen behind.
                self.c.borrow_mut().resyncs += 1;
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
            let mut c = self.c.borrow_mut();
            c.frames += 1;
            c.bytes += text.len() as u64;
        }
        let mut w = self.watchers[slot].borrow_mut();
        if w.state != WState::Live {
            return Action::None; // diffs from before the snapshot we await
        }
        let Some(p) = self.parsed(text) else {
            let mut c = self.c.borrow_mut();
            c.scan_errors += 1;
            w.state = WState::Awaiting { first: false };
            w.timed = false;
            return Action::Rewatch;
        };
        let n = p.changes.len() as u64;
        let mut c = self.c.borrow_mut();
        c.changes += n;
        if p.version.checked_sub(n) != Some(w.version) {
            c.gaps += 1;
            w.state = WState::Awaiting { first: false };
            w.timed = false;
            return Action::Rewatch;
        }
        let refs = self.refs.borrow();
        let w = &mut *w;
        for &(idx, code) in &p.changes {
            w.map[usize::from(idx)] = code;
            if !w.timed {
                continue;
            }
            let j = self.local[usize::from(idx)];
            if j == NOT_OURS {
                continue;
            }
            let count = &mut w.counts[j as usize];
            *count = count.saturating_add(1);
            let nth = usize::from(*count);
            // Odd changes of our seats are holds, even ones releases.
            let expected = if nth % 2 == 1 { b'h' } else { b'f' };
            match refs[j as usize].get(nth - 1) {
                Some(r) if code == expected => {
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

    fn mark(&self) -> Mark {
        let c = self.c.borrow();
        Mark { frames: c.frames, changes: c.changes, bytes: c.bytes, at_us: self.now_us() }
    }
}

/// One worker's watchers and holders.
pub struct SeatCrowd {
    sh: Rc<Shared>,
    stop: watch::Sender<bool>,
    go: watch::Sender<Phase>,
    tasks: Vec<JoinHandle<()>>,
    pacer: RefCell<Option<JoinHandle<()>>>,
}

impl SeatCrowd {
    pub fn start(spec: &SeatsSpec) -> anyhow::Result<Self> {
        let (wb, hb) = (&spec.watchers, &spec.holders);
        host::check_fd_budget(wb.count + hb.count)?;
        anyhow::ensure!(!wb.sources.is_empty() && !hb.sources.is_empty(), "no source addresses");
        anyhow::ensure!(spec.workers > 0 && spec.worker < spec.workers, "bad worker index");
        let layout = Layout::new(spec.ids.clone())?;
        let initial = spec.initial.as_bytes();
        anyhow::ensure!(initial.len() == layout.len(), "the initial map does not fit the layout");
        let own: Vec<u16> = (0..layout.len())
            .filter(|i| i % spec.workers == spec.worker && initial[*i] == b'f')
            .map(|i| i as u16)
            .collect();
        let mut local = vec![NOT_OURS; layout.len()];
        for (j, &i) in own.iter().enumerate() {
            local[usize::from(i)] = j as u32;
        }
        let own_json =
            own.iter().map(|&i| serde_json::to_string(&layout.ids[usize::from(i)])).collect::<Result<Vec<_>, _>>()?;
        let event_json = serde_json::to_string(&wb.event)?;
        let watch = |req| format!(r#"{{"type":"watch","event":{event_json},"format":"compact","req":{req}}}"#);
        let watchers = (0..wb.count)
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
        let sh = Rc::new(Shared {
            epoch: Instant::now(),
            refs: RefCell::new(vec![Vec::new(); own.len()]),
            free: RefCell::new((0..own.len() as u32).collect()),
            own,
            local,
            own_json,
            layout,
            phase: Cell::new(Phase::Setup),
            c: RefCell::new(Counters::default()),
            watchers,
            diffs: RefCell::new(BTreeMap::new()),
            snap: RefCell::new(None),
            pacer: Arc::new(Semaphore::new(0)),
            rng: Cell::new(spec.seed ^ (spec.worker as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            hold_ms: spec.hold_ms,
            watch_frame: watch(WATCH_REQ).into(),
            rewatch_frame: watch(REWATCH_REQ).into(),
            event_json,
            holders_busy: Cell::new(0),
            window: Cell::new(None),
            window_end: Cell::new(None),
            holders: hb.count,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (go, go_rx) = watch::channel(Phase::Setup);
        // Watchers and holders share the set-up budget.
        let gate = Arc::new(Semaphore::new(wb.max_inflight.max(1)));
        let minter = Rc::new(Minter::new(&wb.secret));
        let mut tasks = Vec::with_capacity((wb.count + hb.count) as usize);
        for (b, is_holder) in [(hb, true), (wb, false)] {
            let base = format!("ws://{}/ws?token=", b.host);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(b.max_life_ms);
            for k in 0..b.count {
                let i = b.first + k;
                let ctx = SockCtx {
                    sh: sh.clone(),
                    slot: k as usize,
                    server: b.server,
                    source: b.sources[(i % b.sources.len() as u64) as usize],
                    gate: gate.clone(),
                    stop: stop_rx.clone(),
                    go: go_rx.clone(),
                    deadline,
                };
                let user = format!("{}{i}", b.user_prefix);
                let (minter, base) = (minter.clone(), base.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let Ok(token) = minter.buyer(&user) else { return ctx.sh.fail("token") };
                    let url = format!("{base}{token}");
                    if is_holder { ctx.holder(url).await } else { ctx.watcher(url).await }
                }));
            }
        }
        Ok(Self { sh, stop, go, tasks, pacer: RefCell::new(None) })
    }

    /// Reports progress about once a second until every socket is set up
    /// or failed, or `deadline` passed; then the set-up figures.
    pub async fn ramp(&self, deadline: Duration, emit: impl Fn(&Report)) -> SeatsReadyReport {
        let sh = &self.sh;
        let total = sh.watchers.len() as u64 + sh.holders;
        crowdkit::ramp(deadline, emit, || {
            let c = sh.c.borrow();
            let done = c.watching + c.admitted;
            RampState { connected: c.connected, joined: done, failed: c.failed, through: done + c.failed >= total }
        })
        .await;
        let mut c = sh.c.borrow_mut();
        SeatsReadyReport {
            watchers: sh.watchers.len() as u64,
            watching: c.watching,
            holders: sh.holders,
            admitted: c.admitted,
            failed: c.failed,
            errors: std::mem::take(&mut c.errors),
            connect_us: std::mem::take(&mut c.connect_us),
            snapshot_us: std::mem::take(&mut c.snapshot_us),
            versions: c.versions,
        }
    }

    /// Holders start, paced to `rate_per_s` holds per second.
    pub fn start_holding(&self, rate_per_s: f64) {
        let sh = self.sh.clone();
        sh.window.set(Some(sh.mark()));
        sh.phase.set(Phase::Holding);
        let _ = self.go.send(Phase::Holding);
        *self.pacer.borrow_mut() = Some(tokio::task::spawn_local(pace(sh, rate_per_s)));
    }

    /// Stops the pacer, waits (bounded) for every holder to finish its
    /// cycle and leave, and reports what the holders did.
    pub async fn stop_holding(&self) -> HolderReport {
        let sh = &self.sh;
        let end = sh.mark();
        let stopped_at = end.at_us;
        sh.window_end.set(Some(end));
        sh.phase.set(Phase::Draining);
        sh.pacer.close();
        let _ = self.go.send(Phase::Draining);
        let pacer = self.pacer.borrow_mut().take();
        if let Some(p) = pacer {
            let _ = p.await;
        }
        let give_up = Instant::now() + REPLY_TIMEOUT * 2 + Duration::from_millis(sh.hold_ms.1);
        while sh.holders_busy.get() > 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started_at = sh.window.get().map_or(stopped_at, |m| m.at_us);
        let mut c = sh.c.borrow_mut();
        HolderReport {
            window_s: (stopped_at - started_at) as f64 / 1e6,
            holds_sent: c.holds_sent,
            holds_ok: c.holds_ok,
            unavailable: c.unavailable,
            releases_ok: c.releases_ok,
            releases_empty: c.releases_empty,
            errors: std::mem::take(&mut c.hold_errors),
            tokens_dropped: c.tokens_dropped,
            no_free_seat: c.no_free_seat,
            hold_us: std::mem::take(&mut c.hold_us),
            release_us: std::mem::take(&mut c.release_us),
            stuck: sh.holders_busy.get(),
        }
    }

    pub fn probe(&self, version: u64) -> SeatsAt {
        let mut at = SeatsAt::default();
        for w in &self.sh.watchers {
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

    /// Compares every watcher's map with the store's.
    pub fn verify(&self, version: u64, status: &str) -> WatchReport {
        let sh = &self.sh;
        let truth = status.as_bytes();
        let mut r = WatchReport { watchers: sh.watchers.len() as u64, ..WatchReport::default() };
        for (slot, w) in sh.watchers.iter().enumerate() {
            let w = w.borrow();
            if w.state == WState::Closed {
                continue;
            }
            r.open += 1;
            if w.timed {
                r.timed_watchers += 1;
            }
            if w.state == WState::Live && w.version == version && &*w.map == truth {
                r.matched += 1;
                continue;
            }
            r.mismatched += 1;
            if r.examples.len() < EXAMPLES {
                let differ = w.map.iter().zip(truth).filter(|(a, b)| a != b).count();
                r.examples.push(format!(
                    "watcher {slot}: {:?} at version {} (store {version}), {differ} seats differ",
                    w.state, w.version
                ));
            }
        }
        let from = sh.window.get().unwrap_or_default();
        let to = sh.window_end.get().unwrap_or(from);
        let mut c = sh.c.borrow_mut();
        r.closed = std::mem::take(&mut c.closed);
        r.window_frames = to.frames - from.frames;
        r.window_changes = to.changes - from.changes;
        r.window_bytes = to.bytes - from.bytes;
        r.window_s = to.at_us.saturating_sub(from.at_us) as f64 / 1e6;
        r.frames = c.frames;
        r.changes = c.changes;
        r.resyncs = c.resyncs;
        r.gaps = c.gaps;
        r.scan_errors = c.scan_errors;
        r.server_errors = std::mem::take(&mut c.server_errors);
        r.frames_parsed = c.frames_parsed;
        r.delay_us = std::mem::take(&mut c.delay_us);
        r.delay_from_send_us = std::mem::take(&mut c.delay_from_send_us);
        r.before_reply = c.before_reply;
        r.timing_anomalies = c.timing_anomalies;
        r
    }

    /// Closes every socket (politely, bounded) and waits for the tasks.
    pub async fn close(self) -> Report {
        let _ = self.stop.send(true);
        self.sh.pacer.close();
        if let Some(p) = self.pacer.into_inner() {
            p.abort();
        }
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT + REPLY_TIMEOUT + Duration::from_secs(5);
        crowdkit::end_tasks(self.tasks, deadline).await
    }
}

/// Hands out hold permits at `rate` per second while holding; a backlog
/// beyond `PACER_BACKLOG_S` (every holder busy) is dropped and counted.
async fn pace(sh: Rc<Shared>, rate: f64) {
    let cap = ((rate * PACER_BACKLOG_S).ceil() as usize).max(1);
    let start = Instant::now();
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(PACER_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while sh.phase.get() == Phase::Holding {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let mut add = (due - issued) as usize;
        issued = due;
        let room = cap.saturating_sub(sh.pacer.available_permits());
        if add > room {
            sh.c.borrow_mut().tokens_dropped += (add - room) as u64;
            add = room;
        }
        sh.pacer.add_permits(add);
    }
}

/// The reply fields a holder acts on.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    req: Option<u64>,
    #[serde(default, borrow)]
    code: Option<&'a str>,
    #[serde(default)]
    seats: Option<Vec<serde_json::Value>>,
}

/// What a holder learnt from one reply.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ok { seats: usize },
    Error(String),
    Other(String),
}

/// What one socket's task needs.
struct SockCtx {
    sh: Rc<Shared>,
    slot: usize,
    server: std::net::SocketAddr,
    source: Ipv4Addr,
    gate: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    go: watch::Receiver<Phase>,
    deadline: tokio::time::Instant,
}

impl SockCtx {
    async fn connect(&self, url: &str) -> Result<(Ws, OwnedSemaphorePermit), &'static str> {
        let permit = self.gate.clone().acquire_owned().await.map_err(|_| "set-up: stopped")?;
        let started = Instant::now();
        let ws = match timeout(CONNECT_TIMEOUT, connect(self.source, self.server, url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("connect: timed out"),
        };
        let mut c = self.sh.c.borrow_mut();
        c.connected += 1;
        c.connect_us.record(started.elapsed().as_micros() as u64);
        Ok((ws, permit))
    }

    fn closed(&self, why: String) {
        if let Some(w) = self.sh.watchers.get(self.slot) {
            w.borrow_mut().state = WState::Closed;
        }
        *self.sh.c.borrow_mut().closed.entry(why).or_default() += 1;
    }

    async fn watcher(mut self, url: String) {
        let sh = self.sh.clone();
        let (mut ws, permit) = match self.connect(&url).await {
            Ok(x) => x,
            Err(why) => {
                sh.watchers[self.slot].borrow_mut().state = WState::Closed;
                return sh.fail(why);
            }
        };
        let mut permit = Some(permit);
        let sent = Instant::now();
        let map_deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        sh.watchers[self.slot].borrow_mut().state = WState::Awaiting { first: true };
        if ws.send(Message::Text(sh.watch_frame.clone())).await.is_err() {
            sh.watchers[self.slot].borrow_mut().state = WState::Closed;
            return sh.fail("watch: send failed");
        }
        let ended = loop {
            let msg = tokio::select! {
                _ = self.stop.changed() => break None,
                _ = tokio::time::sleep_until(self.deadline) => break None,
                _ = tokio::time::sleep_until(map_deadline), if permit.is_some() => {
                    sh.watchers[self.slot].borrow_mut().state = WState::Closed;
                    sh.fail("watch: no seat map in time");
                    return;
                }
                msg = ws.next() => msg,
            };
            match msg {
                Some(Ok(Message::Text(text))) => match sh.on_text(self.slot, &text) {
                    Action::None => {}
                    Action::Ready => {
                        permit = None;
                        let mut c = sh.c.borrow_mut();
                        c.watching += 1;
                        c.snapshot_us.record(sent.elapsed().as_micros() as u64);
                    }
                    Action::Rewatch => {
                        if ws.send(Message::Text(sh.rewatch_frame.clone())).await.is_err() {
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
                sh.watchers[self.slot].borrow_mut().state = WState::Closed;
                sh.fail("watch: closed before the seat map");
            }
            Some(why) => self.closed(why),
            None => polite_close(&mut ws).await,
        }
    }

    async fn holder(mut self, url: String) {
        let sh = self.sh.clone();
        let (mut ws, permit) = match self.connect(&url).await {
            Ok(x) => x,
            Err(why) => return sh.fail(why),
        };
        if let Err(why) = self.admit(&mut ws).await {
            return sh.fail(why);
        }
        drop(permit);
        sh.c.borrow_mut().admitted += 1;
        sh.holders_busy.set(sh.holders_busy.get() + 1);
        // Wait for the start (or the end).
        while *self.go.borrow_and_update() == Phase::Setup {
            tokio::select! {
                r = self.go.changed() => if r.is_err() { break },
                _ = self.stop.changed() => break,
            }
        }
        let mut req = FIRST_REQ;
        let mut healthy = true;
        while sh.phase.get() == Phase::Holding && !*self.stop.borrow() {
            let permit = tokio::select! {
                p = sh.pacer.clone().acquire_owned() => p,
                _ = self.stop.changed() => break,
            };
            let Ok(permit) = permit else { break };
            permit.forget();
            let Some(j) = sh.take_free() else {
                sh.c.borrow_mut().no_free_seat += 1;
                continue;
            };
            if !self.cycle(&mut ws, j, &mut req).await {
                healthy = false;
                break;
            }
        }
        if healthy {
            let leave = format!(r#"{{"type":"leave","event":{},"req":{LEAVE_REQ}}}"#, sh.event_json);
            if let Err(why) = request(&mut ws, leave, LEAVE_REQ).await {
                tally(&mut sh.c.borrow_mut().hold_errors, why);
            }
        }
        sh.holders_busy.set(sh.holders_busy.get() - 1);
        if !healthy {
            return;
        }
        // Stay connected (and drained) until the run closes us.
        loop {
            tokio::select! {
                _ = self.stop.changed() => break,
                _ = tokio::time::sleep_until(self.deadline) => break,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        }
        polite_close(&mut ws).await;
    }

    /// `join`, then `admitted` (at once or pushed a little later).
    async fn admit(&self, ws: &mut Ws) -> Result<(), &'static str> {
        let join = format!(r#"{{"type":"join","event":{},"req":{JOIN_REQ}}}"#, self.sh.event_json);
        match request(ws, join, JOIN_REQ).await? {
            (Answer::Other(kind), _) if kind == "admitted" => return Ok(()),
            (Answer::Other(kind), _) if kind == "queue" => {}
            (Answer::Error(_), _) => return Err("join: refused"),
            _ => return Err("join: unexpected reply"),
        }
        let until = tokio::time::Instant::now() + ADMIT_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(until, ws.next()).await.map_err(|_| "join: not admitted in time")?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    if serde_json::from_str::<Reply<'_>>(&t).is_ok_and(|r| r.kind == "admitted") {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("join: closed while waiting"),
            }
        }
    }

    /// Holds our seat `j`, keeps it a random time, releases it. False when
    /// the socket is no longer usable.
    async fn cycle(&self, ws: &mut Ws, j: u32, req: &mut u64) -> bool {
        let sh = &self.sh;
        let ju = j as usize;
        let seat = &sh.own_json[ju];
        *req += 1;
        let hold = format!(r#"{{"type":"hold","event":{},"seats":[{seat}],"req":{req}}}"#, sh.event_json);
        let sent = sh.now_us();
        sh.refs.borrow_mut()[ju].push(Ref { sent_us: sent, reply_us: 0 });
        sh.c.borrow_mut().holds_sent += 1;
        let answer = request(ws, hold, *req).await;
        let now = sh.now_us();
        match answer {
            Ok((Answer::Ok { .. }, kind)) if kind == "held" => {
                if let Some(r) = sh.refs.borrow_mut()[ju].last_mut() {
                    r.reply_us = now;
                }
                let mut c = sh.c.borrow_mut();
                c.holds_ok += 1;
                c.hold_us.record(now - sent);
            }
            Ok((Answer::Error(code), _)) if nothing_changed(&code) => {
                sh.refs.borrow_mut()[ju].pop();
                let mut c = sh.c.borrow_mut();
                if code == "seat_unavailable" {
                    // Someone else has our seat: leave it alone.
                    c.unavailable += 1;
                } else {
                    tally(&mut c.hold_errors, &format!("hold: {code}"));
                    drop(c);
                    sh.free.borrow_mut().push(j);
                }
                return true;
            }
            Ok((Answer::Error(code), _)) => {
                // The server could not say (e.g. its store timed out): the
                // hold may have happened. Keep the record, retire the seat.
                tally(&mut sh.c.borrow_mut().hold_errors, &format!("hold: {code} (outcome unknown)"));
                return true;
            }
            Ok(_) => {
                // Unknown outcome: keep the record, never use the seat again.
                tally(&mut sh.c.borrow_mut().hold_errors, "hold: unexpected reply");
                return true;
            }
            Err(why) => {
                tally(&mut sh.c.borrow_mut().hold_errors, why);
                return false;
            }
        }
        let (lo, hi) = sh.hold_ms;
        let keep = lo + sh.random() % (hi - lo + 1);
        tokio::time::sleep(Duration::from_millis(keep)).await;
        *req += 1;
        let release = format!(r#"{{"type":"release","event":{},"seats":[{seat}],"req":{req}}}"#, sh.event_json);
        let sent = sh.now_us();
        sh.refs.borrow_mut()[ju].push(Ref { sent_us: sent, reply_us: 0 });
        let answer = request(ws, release, *req).await;
        let now = sh.now_us();
        match answer {
            Ok((Answer::Ok { seats: 1 }, kind)) if kind == "released" => {
                if let Some(r) = sh.refs.borrow_mut()[ju].last_mut() {
                    r.reply_us = now;
                }
                let mut c = sh.c.borrow_mut();
                c.releases_ok += 1;
                c.release_us.record(now - sent);
                drop(c);
                sh.free.borrow_mut().push(j);
                true
            }
            Ok((Answer::Ok { seats: 0 }, kind)) if kind == "released" => {
                sh.refs.borrow_mut()[ju].pop();
                sh.c.borrow_mut().releases_empty += 1;
                true
            }
            Ok((Answer::Error(code), _)) if nothing_changed(&code) => {
                sh.refs.borrow_mut()[ju].pop();
                tally(&mut sh.c.borrow_mut().hold_errors, &format!("release: {code}"));
                true
            }
            Ok((Answer::Error(code), _)) => {
                tally(&mut sh.c.borrow_mut().hold_errors, &format!("release: {code} (outcome unknown)"));
                true
            }
            Ok(_) => {
                tally(&mut sh.c.borrow_mut().hold_errors, "release: unexpected reply");
                true
            }
            Err(why) => {
                tally(&mut sh.c.borrow_mut().hold_errors, why);
                false
            }
        }
    }
}

async fn connect(source: Ipv4Addr, server: std::net::SocketAddr, url: &str) -> Result<Ws, &'static str> {
    let stream = net::connect_from(source, server).await.map_err(|e| io_category(&e))?;
    let (mut ws, _) = client_async_with_config(url, stream, Some(ws_config())).await.map_err(|e| match e {
        tungstenite::Error::Http(resp) => match resp.status().as_u16() {
            429 => "upgrade: 429 rate limited",
            401 | 403 => "upgrade: refused token",
            _ => "upgrade: other HTTP status",
        },
        tungstenite::Error::Io(e) => io_category(&e),
        _ => "upgrade: protocol error",
    })?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if frame_type(&t) == Ok("hello") => Ok(ws),
        Some(Ok(_)) => Err("hello: unexpected first frame"),
        _ => Err("hello: closed before hello"),
    }
}

/// Error codes that mean the request changed nothing. Others (`unavailable`,
/// `internal`, …) leave the outcome unknown: the store may have acted
/// before the server gave up on it.
fn nothing_changed(code: &str) -> bool {
    matches!(
        code,
        "seat_unavailable" | "rate_limited" | "hold_limit" | "not_admitted" | "bad_request" | "not_found" | "forbidden"
    )
}

/// Classifies a reply: an error's code, or the type with how many seats
/// it names (for `held`/`released`).
fn answer(r: &Reply<'_>) -> Answer {
    match r.kind {
        "error" => Answer::Error(r.code.unwrap_or("?").to_owned()),
        "held" | "released" => Answer::Ok { seats: r.seats.as_ref().map_or(0, Vec::len) },
        other => Answer::Other(other.to_owned()),
    }
}

/// Sends one request and reads until its reply (pushes are skipped);
/// returns the answer and the reply's type.
async fn request(ws: &mut Ws, frame: String, req: u64) -> Result<(Answer, String), &'static str> {
    ws.send(Message::text(frame)).await.map_err(|_| "request: send failed")?;
    let until = tokio::time::Instant::now() + REPLY_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(until, ws.next()).await.map_err(|_| "request: no reply in time")?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let Ok(r) = serde_json::from_str::<Reply<'_>>(&t) else { return Err("request: unreadable reply") };
                if r.req == Some(req) {
                    return Ok((answer(&r), r.kind.to_owned()));
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err("request: closed by server"),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err("request: socket error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(ids: &[&str], workers: usize, worker: usize, watchers: usize) -> Shared {
        let layout = Layout::new(ids.iter().map(|s| (*s).to_owned()).collect()).unwrap();
        let own: Vec<u16> = (0..layout.len()).filter(|i| i % workers == worker).map(|i| i as u16).collect();
        let mut local = vec![NOT_OURS; layout.len()];
        for (j, &i) in own.iter().enumerate() {
            local[usize::from(i)] = j as u32;
        }
        Shared {
            epoch: Instant::now(),
            refs: RefCell::new(vec![Vec::new(); own.len()]),
            free: RefCell::new((0..own.len() as u32).collect()),
            own_json: own.iter().map(|&i| format!("\"{}\"", layout.ids[usize::from(i)])).collect(),
            own,
            local,
            layout,
            phase: Cell::new(Phase::Setup),
            c: RefCell::new(Counters::default()),
            watchers: (0..watchers)
                .map(|_| {
                    RefCell::new(Watcher {
                        state: WState::Awaiting { first: true },
                        version: 0,
                        map: Box::new([]),
                        timed: false,
                        counts: Box::new([]),
                    })
                })
                .collect(),
            diffs: RefCell::new(BTreeMap::new()),
            snap: RefCell::new(None),
            pacer: Arc::new(Semaphore::new(0)),
            rng: Cell::new(1),
            hold_ms: (1, 2),
            event_json: "\"e\"".into(),
            watch_frame: "".into(),
            rewatch_frame: "".into(),
            holders_busy: Cell::new(0),
            window: Cell::new(None),
            window_end: Cell::new(None),
            holders: 0,
        }
    }

    fn snapshot(version: u64, status: &str) -> Utf8Bytes {
        format!(
            r#"{{"type":"seatmap","event":"e","version":{version},"tiers":[],"format":"compact","rows":[{{"section":"A","row":"1","tier":"t","y":0,"n0":1,"x0":0,"dx":1,"count":4}}],"status":"{status}","req":1}}"#
        )
        .into()
    }

    fn diff(version: u64, changes: &[(&str, &str)]) -> Utf8Bytes {
        let changes: Vec<String> = changes.iter().map(|(id, s)| format!(r#"{{"id":"{id}","status":"{s}"}}"#)).collect();
        format!(r#"{{"type":"seats","event":"e","version":{version},"changes":[{}]}}"#, changes.join(",")).into()
    }

    const IDS: [&str; 4] = ["A-1-1", "A-1-2", "A-1-3", "A-1-4"];

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
            let c = sh.c.borrow();
            assert_eq!(c.frames_parsed, 1, "the second watcher reused the first one's scan");
            assert_eq!((c.frames, c.changes, c.delay_us.summary_ms().count), (2, 4, 2));
            assert!(c.delay_us.summary_ms().min.unwrap() >= 1.0, "about 2 ms from the reply");
            assert_eq!(c.timing_anomalies, 0);
        }
        for w in &sh.watchers {
            let w = w.borrow();
            assert_eq!((&*w.map, w.version, w.timed), (&b"fhhf"[..], 12, true));
        }
        // The release was sent but its reply not yet in: counted as 0.
        sh.refs.borrow_mut()[1].push(Ref { sent_us: sh.now_us(), reply_us: 0 });
        sh.on_text(0, &diff(13, &[("A-1-3", "free")]));
        assert_eq!(sh.c.borrow().before_reply, 1);
        assert_eq!(&*sh.watchers[0].borrow().map, b"fhff");
    }

    #[test]
    fn a_gap_asks_for_a_fresh_map_and_stops_timing() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        assert!(matches!(sh.on_text(0, &diff(12, &[("A-1-1", "held")])), Action::Rewatch), "11 was lost");
        assert_eq!(sh.c.borrow().gaps, 1);
        // Diffs before the fresh snapshot are ignored; the snapshot replaces the map.
        assert!(matches!(sh.on_text(0, &diff(13, &[("A-1-2", "held")])), Action::None));
        assert!(matches!(sh.on_text(0, &snapshot(13, "hhff")), Action::None));
        let w = sh.watchers[0].borrow();
        assert_eq!((&*w.map, w.version, w.state, w.timed), (&b"hhff"[..], 13, WState::Live, false));
    }

    #[test]
    fn a_pushed_map_is_a_resync_and_a_change_we_did_not_make_is_an_anomaly() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        sh.on_text(0, &diff(11, &[("A-1-4", "held")]));
        {
            let c = sh.c.borrow();
            assert_eq!(c.timing_anomalies, 1, "no request of ours explains it");
        }
        assert!(!sh.watchers[0].borrow().timed);
        sh.on_text(0, &snapshot(11, "fffh"));
        assert_eq!(sh.c.borrow().resyncs, 1);
    }

    #[test]
    fn unreadable_or_foreign_frames_are_counted_not_applied() {
        let sh = shared(&IDS, 1, 0, 1);
        sh.on_text(0, &snapshot(10, "ffff"));
        assert!(matches!(sh.on_text(0, &diff(11, &[("Z-9-9", "held")])), Action::Rewatch), "unknown seat");
        assert!(matches!(sh.on_text(0, &"{\"type\":".into()), Action::None));
        sh.on_text(0, &r#"{"type":"error","code":"rate_limited","message":"x","req":2}"#.into());
        let c = sh.c.borrow();
        assert_eq!((c.scan_errors, c.server_errors.get("rate_limited")), (2, Some(&1)));
    }

    #[test]
    fn free_seats_are_drawn_without_repeats() {
        let sh = shared(&IDS, 1, 0, 0);
        let mut got: Vec<u32> = std::iter::from_fn(|| sh.take_free()).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(sh.take_free(), None);
    }

    #[test]
    fn replies_are_classified() {
        let r: Reply<'_> = serde_json::from_str(r#"{"type":"held","event":"e","seats":["a"],"req":11}"#).unwrap();
        assert_eq!((answer(&r), r.req), (Answer::Ok { seats: 1 }, Some(11)));
        let r: Reply<'_> =
            serde_json::from_str(r#"{"type":"error","code":"seat_unavailable","seats":["a"],"req":3}"#).unwrap();
        assert_eq!(answer(&r), Answer::Error("seat_unavailable".into()));
        let r: Reply<'_> = serde_json::from_str(r#"{"type":"released","event":"e","seats":[]}"#).unwrap();
        assert_eq!(answer(&r), Answer::Ok { seats: 0 });
        assert!(nothing_changed("seat_unavailable") && nothing_changed("rate_limited"));
        assert!(!nothing_changed("unavailable") && !nothing_changed("internal"), "the store may have acted");
    }
}
