//! The seat-map crowd of one worker process: its `watchers`, which follow
//! the event's compact map, and its `holders`, admitted buyers that hold
//! and release seats. This module holds what both use (the worker's seats,
//! the record of its requests, the phase, set-up) and the crowd's life:
//! starting every socket's task, reporting set-up, closing.
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
//! Everything runs on one thread: shared state is `Rc` + `Cell`/`RefCell`,
//! and no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qt_protocol::frames::SeatStatus;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::common::sockets::{self, CLOSE_TIMEOUT, Place, RampState, Tasks, Ws};
use crate::common::stats::tally;
use crate::common::tokens::Minter;
use crate::common::wire::Closed;
use crate::seats::holders::Holders;
use crate::seats::layout::{Layout, from_letters};
use crate::seats::watchers::Watchers;
use crate::seats::wire::{SeatsReadyReport, SeatsSpec};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A request's reply, or a holder gives up on its socket.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Not one of our seats.
const NOT_OURS: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Holding,
    Draining,
}

/// One request of ours that changes a seat: when it was sent and when its
/// reply came (0 while pending), microseconds since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Ref {
    pub sent_us: u64,
    pub reply_us: u64,
}

/// The seats this worker holds, and the way back to them from the map.
pub struct OurSeats {
    pub layout: Layout,
    /// Our seat `j` → its index in the map.
    own: Vec<u16>,
    /// Map index → our seat `j`, or `NOT_OURS`.
    local: Vec<u32>,
}

impl OurSeats {
    /// The seats of `layout` whose index `ours` picks.
    pub fn new(layout: Layout, ours: impl Fn(usize) -> bool) -> Self {
        let own: Vec<u16> = (0..layout.len()).filter(|&i| ours(i)).map(|i| i as u16).collect();
        let mut local = vec![NOT_OURS; layout.len()];
        for (j, &i) in own.iter().enumerate() {
            local[usize::from(i)] = j as u32;
        }
        Self { layout, own, local }
    }

    pub fn len(&self) -> usize {
        self.own.len()
    }

    /// Our seat number of map index `idx`, if it is one of ours.
    pub fn ours(&self, idx: u16) -> Option<usize> {
        let j = self.local[usize::from(idx)];
        (j != NOT_OURS).then_some(j as usize)
    }

    /// The id of our seat `j`.
    pub fn id(&self, j: usize) -> &str {
        &self.layout.ids[usize::from(self.own[j])]
    }
}

/// Set-up so far: the report it ends in, and the sockets connected.
#[derive(Default)]
pub struct Setup {
    pub connected: u64,
    pub report: SeatsReadyReport,
}

/// Frames, changes and bytes the watchers received so far, and when (µs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    pub frames: u64,
    pub changes: u64,
    pub bytes: u64,
    pub at_us: u64,
}

pub struct Shared {
    pub epoch: Instant,
    pub event: String,
    pub seats: OurSeats,
    /// Per seat of ours: our requests that changed it, in order.
    pub refs: RefCell<Vec<Vec<Ref>>>,
    pub phase: Cell<Phase>,
    pub setup: RefCell<Setup>,
    pub watch: Watchers,
    pub hold: Holders,
    /// When holding started and stopped.
    pub window: Cell<Option<Mark>>,
    pub window_end: Cell<Option<Mark>>,
}

impl Shared {
    pub fn new(event: &str, seats: OurSeats, watchers: u64, hold: Holders) -> Self {
        Self {
            epoch: Instant::now(),
            event: event.to_owned(),
            refs: RefCell::new(vec![Vec::new(); seats.len()]),
            watch: Watchers::new(watchers, event),
            seats,
            phase: Cell::new(Phase::Setup),
            setup: RefCell::new(Setup::default()),
            hold,
            window: Cell::new(None),
            window_end: Cell::new(None),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    pub fn fail(&self, why: &str) {
        let c = &mut self.setup.borrow_mut().report.counts;
        c.failed += 1;
        tally(&mut c.errors, why);
    }

    pub fn mark(&self) -> Mark {
        let (frames, changes, bytes) = self.watch.received();
        Mark { frames, changes, bytes, at_us: self.now_us() }
    }
}

/// One worker's watchers and holders.
pub struct SeatCrowd {
    pub sh: Rc<Shared>,
    pub go: watch::Sender<Phase>,
    tasks: Tasks,
    pub pacer: RefCell<Option<JoinHandle<()>>>,
}

impl SeatCrowd {
    pub fn start(spec: &SeatsSpec) -> anyhow::Result<Self> {
        let (wb, hb) = (&spec.watchers, &spec.holders);
        wb.check(hb.count)?;
        hb.check(wb.count)?;
        anyhow::ensure!(spec.workers > 0 && spec.worker < spec.workers, "bad worker index");
        let layout = Layout::new(spec.ids.clone())?;
        let initial = from_letters(&spec.initial).filter(|s| s.len() == layout.len());
        let initial = initial.ok_or_else(|| anyhow::anyhow!("the initial map does not fit the layout"))?;
        let seats = OurSeats::new(layout, |i| i % spec.workers == spec.worker && initial[i] == SeatStatus::Free);
        let seed = spec.seed ^ (spec.worker as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let hold = Holders::new(seats.len(), hb.count, spec.hold_ms, seed);
        let sh = Rc::new(Shared::new(&wb.event, seats, wb.count, hold));
        let (go, go_rx) = watch::channel(Phase::Setup);
        // Watchers and holders share the set-up budget.
        let gate = Arc::new(Semaphore::new(wb.max_inflight.max(1)));
        let minter = Minter::new(&wb.secret);
        let mut tasks = Tasks::default();
        for (b, is_holder) in [(hb, true), (wb, false)] {
            let base = b.ws_url();
            tasks.spawn_each(b, &minter, |place, token| {
                let ctx = SockCtx { sh: sh.clone(), place, gate: gate.clone(), go: go_rx.clone() };
                let url = token.map(|t| format!("{base}{t}"));
                async move {
                    match url {
                        Ok(url) if is_holder => ctx.holder(url).await,
                        Ok(url) => ctx.watcher(url).await,
                        Err(_) => ctx.sh.fail("token"),
                    }
                }
            });
        }
        Ok(Self { sh, go, tasks, pacer: RefCell::new(None) })
    }

    /// Reports progress about once a second until every socket is set up
    /// or failed, or `deadline` passed; then the set-up figures.
    pub async fn ramp(&self, deadline: Duration) -> SeatsReadyReport {
        let sh = &self.sh;
        let watchers = sh.watch.list.len() as u64;
        let total = watchers + sh.hold.count;
        sockets::ramp(deadline, || {
            let s = sh.setup.borrow();
            let c = &s.report.counts;
            let done = c.watching + c.admitted;
            RampState { connected: s.connected, joined: done, failed: c.failed, through: done + c.failed >= total }
        })
        .await;
        let mut report = std::mem::take(&mut sh.setup.borrow_mut().report);
        (report.counts.watchers, report.counts.holders) = (watchers, sh.hold.count);
        report
    }

    /// Closes every socket (politely, bounded) and waits for the tasks.
    pub async fn close(self) -> Closed {
        self.sh.hold.pacer.close();
        if let Some(p) = self.pacer.into_inner() {
            p.abort();
        }
        self.tasks.end(CLOSE_TIMEOUT + REPLY_TIMEOUT + Duration::from_secs(5)).await
    }
}

/// What one socket's task needs.
pub struct SockCtx {
    pub sh: Rc<Shared>,
    pub place: Place,
    gate: Arc<Semaphore>,
    /// Changes when holding starts and stops.
    pub go: watch::Receiver<Phase>,
}

impl SockCtx {
    /// Opens the socket, within the set-up budget (the permit).
    pub async fn connect(&self, url: &str) -> Result<(Ws, OwnedSemaphorePermit), &'static str> {
        let permit = self.gate.clone().acquire_owned().await.map_err(|_| "set-up: stopped")?;
        let started = Instant::now();
        let ws = match timeout(CONNECT_TIMEOUT, sockets::open(self.place.source, self.place.server, url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("connect: timed out"),
        };
        let mut s = self.sh.setup.borrow_mut();
        s.connected += 1;
        s.report.connect_us.record(started.elapsed().as_micros() as u64);
        Ok((ws, permit))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::seats::watchers::WState;

    /// Worker `worker` of `workers` with `watchers` watchers on a map of
    /// `ids`, all free; the watchers have sent `watch`.
    pub fn shared(ids: &[&str], workers: usize, worker: usize, watchers: u64) -> Shared {
        let layout = Layout::new(ids.iter().map(|s| (*s).to_owned()).collect()).unwrap();
        let seats = OurSeats::new(layout, |i| i % workers == worker);
        let hold = Holders::new(seats.len(), 0, (1, 2), 1);
        let sh = Shared::new("e", seats, watchers, hold);
        for w in &sh.watch.list {
            w.borrow_mut().state = WState::Awaiting { first: true };
        }
        sh
    }

    impl SeatCrowd {
        /// A crowd around `sh` with no sockets.
        pub fn for_tests(sh: Rc<Shared>) -> Self {
            let (go, _) = watch::channel(Phase::Setup);
            Self { sh, go, tasks: Tasks::default(), pacer: RefCell::new(None) }
        }
    }

    #[test]
    fn our_seats_map_both_ways() {
        let sh = shared(&["A-1-1", "A-1-2", "A-1-3", "A-1-4"], 2, 1, 0);
        assert_eq!((sh.seats.len(), sh.seats.id(0), sh.seats.id(1)), (2, "A-1-2", "A-1-4"));
        assert_eq!((sh.seats.ours(0), sh.seats.ours(1), sh.seats.ours(3)), (None, Some(0), Some(1)));
    }
}
