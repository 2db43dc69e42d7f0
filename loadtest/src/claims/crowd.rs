//! The claim storm's crowd in one worker process: one task per buyer with
//! one socket, or two for a doubled buyer (both in the same task, so they
//! fire at the same moment). Every socket opens up to `hello` and waits;
//! at the start barrier each sends its claims, the next as soon as the
//! previous is answered, and counts what it was told, per buyer. Then one
//! socket of each buyer asks for the buyer's `coupons`. Frames are the
//! shared wire types.
//!
//! Everything runs on the worker's one thread: shared state is `Rc` +
//! `Cell`/`RefCell`, and no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use qt_protocol::{ClientMsg, Req, ServerMsg};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::claims::audit::{Outcome, classify};
use crate::claims::plan::Shape;
use crate::claims::wire::{BuyerOutcome, ClaimsSpec, ListReport, Listing, ReadyReport, StormReport};
use crate::common::sockets::{self, CLOSE_TIMEOUT, Place, RampState, Tasks, Ws, code_name, polite_close};
use crate::common::stats::tally;
use crate::common::tokens::Minter;
use crate::common::wire::{Closed, unix_us};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Request ids: the listing, then the claims from `FIRST_CLAIM_REQ` (ids
/// are per socket, so every socket sends the same frames).
const LIST_REQ: i64 = 1;
const FIRST_CLAIM_REQ: i64 = 100;
/// After its deadline, how long a phase's answer waits for stragglers.
const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    /// Fire at `at`; replies after `until` are lost.
    Fire {
        at: Instant,
        until: Instant,
    },
    List {
        until: Instant,
    },
}

struct Shared {
    shape: Shape,
    campaign: String,
    /// This worker's first buyer's index in the run.
    first: u64,
    /// Clocks: `Instant` here, Unix µs for the coordinator.
    epoch: Instant,
    epoch_unix_us: u64,
    sockets: u64,
    setup: RefCell<ReadyReport>,
    storm: RefCell<StormReport>,
    /// Sockets done with the storm (answered, lost, or never opened).
    through_storm: Cell<u64>,
    /// Per buyer (by slot): what it was told, its open sockets, whether
    /// one of them has taken its listing on.
    outcomes: Vec<RefCell<BuyerOutcome>>,
    open: Vec<Cell<u8>>,
    listing: Vec<Cell<bool>>,
    list: RefCell<ListReport>,
    /// Buyers whose listing is done (answered or failed).
    listed: Cell<u64>,
    list_gate: RefCell<Rc<Semaphore>>,
    /// `claim_coupon` with request id `FIRST_CLAIM_REQ + k`.
    frames: Vec<Utf8Bytes>,
    list_frame: Utf8Bytes,
    barrier: Cell<Option<Instant>>,
}

impl Shared {
    fn unix(&self, t: Instant) -> u64 {
        self.epoch_unix_us + t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn fail_setup(&self, why: &str) {
        let mut s = self.setup.borrow_mut();
        s.failed += 1;
        tally(&mut s.errors, why);
    }

    /// `n` claims of buyer `slot` that were never sent, and why.
    fn unsent(&self, slot: usize, n: u32, why: &str) {
        if n == 0 {
            return;
        }
        let mut o = self.outcomes[slot].borrow_mut();
        o.failed += n;
        let mut s = self.storm.borrow_mut();
        *s.outcomes.entry(why.to_owned()).or_insert(0) += u64::from(n);
    }

    fn answered(&self, slot: usize, outcome: &Outcome, sent: Instant, now: Instant) {
        self.outcomes[slot].borrow_mut().record(outcome);
        let mut s = self.storm.borrow_mut();
        tally(&mut s.outcomes, outcome.key());
        s.answered += 1;
        let us = now.saturating_duration_since(sent).as_micros() as u64;
        s.latency_us.record(us);
        let at = self.unix(now);
        s.last_answer_unix_us = Some(s.last_answer_unix_us.map_or(at, |t| t.max(at)));
        if matches!(outcome, Outcome::Coupon(_)) {
            s.coupon_latency_us.record(us);
            s.last_coupon_unix_us = Some(s.last_coupon_unix_us.map_or(at, |t| t.max(at)));
        }
    }

    fn lost(&self, slot: usize, why: String) {
        self.answered_none(slot, &Outcome::Failed(why));
    }

    /// A claim that was sent and got no reply.
    fn answered_none(&self, slot: usize, outcome: &Outcome) {
        self.outcomes[slot].borrow_mut().record(outcome);
        tally(&mut self.storm.borrow_mut().outcomes, outcome.key());
    }

    fn socket_closed(&self, slot: usize) {
        let open = &self.open[slot];
        open.set(open.get().saturating_sub(1));
    }
}

/// One worker's buyers and their sockets.
pub struct ClaimCrowd {
    sh: Rc<Shared>,
    phase: watch::Sender<Phase>,
    tasks: Tasks,
}

impl ClaimCrowd {
    pub fn start(spec: &ClaimsSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        let shape = spec.shape;
        let sockets = shape.sockets_in(b.first, b.count);
        b.check(sockets - b.count)?;
        anyhow::ensure!(b.first + b.count <= shape.buyers, "buyers beyond the storm's");
        let most = (b.first..b.first + b.count).map(|i| shape.claims_of(i).0).max().unwrap_or(0);
        let frames = (0..i64::from(most))
            .map(|k| {
                let msg = ClientMsg::ClaimCoupon { campaign: spec.campaign.clone() };
                msg.to_frame(Some(&Req::Int(FIRST_CLAIM_REQ + k))).into()
            })
            .collect();
        let planned = (b.first..b.first + b.count).map(|i| shape.claims_of(i)).map(|(x, y)| u64::from(x + y)).sum();
        let n = b.count as usize;
        let sh = Rc::new(Shared {
            shape,
            campaign: spec.campaign.clone(),
            first: b.first,
            epoch: Instant::now(),
            epoch_unix_us: unix_us(),
            sockets,
            setup: RefCell::new(ReadyReport { buyers: b.count, sockets, ..ReadyReport::default() }),
            storm: RefCell::new(StormReport { planned, ..StormReport::default() }),
            through_storm: Cell::new(0),
            outcomes: (0..b.count)
                .map(|k| RefCell::new(BuyerOutcome { index: b.first + k, ..Default::default() }))
                .collect(),
            open: (0..n).map(|_| Cell::new(0)).collect(),
            listing: (0..n).map(|_| Cell::new(false)).collect(),
            list: RefCell::new(ListReport::default()),
            listed: Cell::new(0),
            list_gate: RefCell::new(Rc::new(Semaphore::new(1))),
            frames,
            list_frame: ClientMsg::Coupons { event: None }.to_frame(Some(&Req::Int(LIST_REQ))).into(),
            barrier: Cell::new(None),
        });
        let (phase, phase_rx) = watch::channel(Phase::Setup);
        let gate = Rc::new(Semaphore::new(b.max_inflight.max(1)));
        let base = b.ws_url();
        let mut tasks = Tasks::default();
        tasks.spawn_each(b, &Minter::new(&b.secret), |place, token| {
            let ctx = BuyerCtx { sh: sh.clone(), place, gate: gate.clone(), phase: phase_rx.clone() };
            let url = token.map(|t| format!("{base}{t}"));
            async move {
                match url {
                    Ok(url) => ctx.run(&url).await,
                    Err(_) => ctx.no_token(),
                }
            }
        });
        Ok(Self { sh, phase, tasks })
    }

    /// Reports progress until every socket is open or failed, or
    /// `deadline` passed; then the set-up figures.
    pub async fn ramp(&self, deadline: Duration) -> ReadyReport {
        let sh = &self.sh;
        sockets::ramp(deadline, || {
            let s = sh.setup.borrow();
            RampState { connected: s.open, joined: s.open, failed: s.failed, through: s.open + s.failed >= sh.sockets }
        })
        .await;
        let mut s = sh.setup.borrow_mut();
        ReadyReport { connect_us: std::mem::take(&mut s.connect_us), ..s.clone() }
    }

    /// Fires at `at_unix_us` on this machine's clock; answers once every
    /// socket is through (or the deadline and a grace passed).
    pub async fn storm(&self, at_unix_us: u64, timeout_ms: u64) -> StormReport {
        let sh = &self.sh;
        let now = Instant::now();
        let at = now + Duration::from_micros(at_unix_us.saturating_sub(unix_us()));
        let until = at + Duration::from_millis(timeout_ms);
        sh.barrier.set(Some(at));
        self.phase.send_replace(Phase::Fire { at, until });
        let give_up = until + GRACE;
        while sh.through_storm.get() < sh.sockets && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut s = std::mem::take(&mut *sh.storm.borrow_mut());
        s.stuck += sh.sockets - sh.through_storm.get().min(sh.sockets);
        s.buyers = sh.outcomes.iter().map(|o| o.borrow().clone()).collect();
        s
    }

    /// One socket of each buyer that still has one asks for its coupons,
    /// `concurrency` at a time; answers once all are through (bounded).
    pub async fn list(&self, timeout_ms: u64, concurrency: usize) -> ListReport {
        let sh = &self.sh;
        let until = Instant::now() + Duration::from_millis(timeout_ms);
        *sh.list_gate.borrow_mut() = Rc::new(Semaphore::new(concurrency.max(1)));
        let alive = sh.open.iter().filter(|o| o.get() > 0).count() as u64;
        sh.list.borrow_mut().asked = alive;
        self.phase.send_replace(Phase::List { until });
        while sh.listed.get() < alive && Instant::now() < until + GRACE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut r = std::mem::take(&mut *sh.list.borrow_mut());
        let missing = alive.saturating_sub(r.listings.len() as u64 + r.errors.values().sum::<u64>());
        if missing > 0 {
            *r.errors.entry("no listing by the deadline".into()).or_insert(0) += missing;
        }
        r
    }

    /// Closes every socket (politely, bounded) and waits for the tasks.
    pub async fn close(self) -> Closed {
        self.tasks.end(CLOSE_TIMEOUT + Duration::from_secs(5)).await
    }
}

/// One buyer's task.
struct BuyerCtx {
    sh: Rc<Shared>,
    place: Place,
    gate: Rc<Semaphore>,
    phase: watch::Receiver<Phase>,
}

/// What a socket waiting for the next phase got.
enum Woke {
    Phase(Phase),
    /// The run is closing us.
    Stop,
    /// The server (or the network) closed the socket.
    Gone,
}

impl BuyerCtx {
    fn slot(&self) -> usize {
        self.place.slot
    }

    fn claims(&self) -> (u32, u32) {
        self.sh.shape.claims_of(self.place.index)
    }

    fn no_token(&self) {
        let (a, b) = self.claims();
        for n in [a, b].into_iter().filter(|&n| n > 0) {
            self.sh.fail_setup("token");
            self.sh.unsent(self.slot(), n, "not sent: no socket");
            self.sh.through_storm.set(self.sh.through_storm.get() + 1);
        }
    }

    async fn run(&self, url: &str) {
        match self.claims() {
            (a, 0) => self.socket(url, a).await,
            (a, b) => {
                tokio::join!(self.socket(url, a), self.socket(url, b));
            }
        }
    }

    async fn open(&self, url: &str) -> Result<Ws, &'static str> {
        let _permit = self.gate.acquire().await.map_err(|_| "set-up: stopped")?;
        let started = Instant::now();
        let ws = match timeout(CONNECT_TIMEOUT, sockets::open(self.place.source, self.place.server, url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("connect: timed out"),
        };
        let mut s = self.sh.setup.borrow_mut();
        s.open += 1;
        s.connect_us.record(started.elapsed().as_micros() as u64);
        Ok(ws)
    }

    /// Waits, reading (and dropping) what the server sends, until the
    /// phase is past `Setup` (or past the storm, with `after_storm`).
    async fn wait(&self, ws: &mut Ws, phase: &mut watch::Receiver<Phase>, after_storm: bool) -> Woke {
        let mut stop = self.place.stop.clone();
        loop {
            let now = *phase.borrow_and_update();
            match now {
                Phase::Setup => {}
                Phase::Fire { .. } if after_storm => {}
                p => return Woke::Phase(p),
            }
            if *stop.borrow_and_update() {
                return Woke::Stop;
            }
            tokio::select! {
                r = phase.changed() => if r.is_err() { return Woke::Stop },
                _ = stop.changed() => return Woke::Stop,
                _ = sleep_until(self.place.deadline) => return Woke::Stop,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Woke::Gone,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// One socket of the buyer: open, wait for the barrier, fire `claims`
    /// claims, then list the buyer's coupons when asked (if no other
    /// socket of the buyer did), then stay until closed.
    async fn socket(&self, url: &str, claims: u32) {
        let (sh, slot) = (&self.sh, self.slot());
        let mut ws = match self.open(url).await {
            Ok(ws) => ws,
            Err(why) => {
                sh.fail_setup(why);
                sh.unsent(slot, claims, "not sent: no socket");
                sh.through_storm.set(sh.through_storm.get() + 1);
                return;
            }
        };
        sh.open[slot].set(sh.open[slot].get() + 1);
        let mut phase = self.phase.clone();
        let alive = match self.wait(&mut ws, &mut phase, false).await {
            Woke::Phase(Phase::Fire { at, until }) => self.fire(&mut ws, claims, at, until).await,
            woke => {
                let why = if matches!(woke, Woke::Gone) {
                    "not sent: socket closed before the storm"
                } else {
                    "not sent: stopped"
                };
                sh.unsent(slot, claims, why);
                sh.through_storm.set(sh.through_storm.get() + 1);
                !matches!(woke, Woke::Gone)
            }
        };
        if !alive {
            sh.socket_closed(slot);
            return;
        }
        let alive = match self.wait(&mut ws, &mut phase, true).await {
            Woke::Phase(Phase::List { until }) if !sh.listing[slot].replace(true) => self.list(&mut ws, until).await,
            Woke::Gone => false,
            _ => true,
        };
        if alive && !matches!(self.wait_stop(&mut ws).await, Woke::Gone) {
            polite_close(&mut ws).await;
        }
        sh.socket_closed(slot);
    }

    /// The storm on one socket; false when the socket was lost.
    async fn fire(&self, ws: &mut Ws, claims: u32, at: Instant, until: Instant) -> bool {
        let (sh, slot) = (&self.sh, self.slot());
        sleep_until(at).await;
        let started = Instant::now();
        {
            let mut s = sh.storm.borrow_mut();
            s.start_lag_us.record(started.saturating_duration_since(at).as_micros() as u64);
            let t = sh.unix(started);
            s.first_sent_unix_us = Some(s.first_sent_unix_us.map_or(t, |f| f.min(t)));
        }
        let mut alive = true;
        for k in 0..claims {
            let req = FIRST_CLAIM_REQ + i64::from(k);
            let frame = sh.frames[k as usize].clone();
            let sent = Instant::now();
            sh.storm.borrow_mut().sent += 1;
            match timeout_at(until, sockets::request(ws, frame, req, |_| {})).await {
                Ok(Ok(reply)) => {
                    let now = Instant::now();
                    sh.answered(slot, &classify(&reply.msg, &sh.campaign), sent, now);
                }
                Ok(Err(lost)) => {
                    sh.lost(slot, format!("no reply: {}", lost.as_str()));
                    sh.unsent(slot, claims - k - 1, "not sent: socket lost");
                    sh.storm.borrow_mut().sockets_lost += 1;
                    alive = false;
                    break;
                }
                Err(_) => {
                    sh.lost(slot, "no reply by the storm deadline".into());
                    sh.unsent(slot, claims - k - 1, "not sent: storm deadline");
                    break;
                }
            }
        }
        sh.through_storm.set(sh.through_storm.get() + 1);
        alive
    }

    /// Asks for the buyer's coupons; false when the socket was lost.
    async fn list(&self, ws: &mut Ws, until: Instant) -> bool {
        let sh = &self.sh;
        let gate = sh.list_gate.borrow().clone();
        let _permit = gate.acquire().await;
        let sent = Instant::now();
        let reply = timeout_at(until, sockets::request(ws, sh.list_frame.clone(), LIST_REQ, |_| {})).await;
        let mut r = sh.list.borrow_mut();
        let alive = match reply {
            Ok(Ok(env)) => {
                match env.msg {
                    ServerMsg::Coupons(c) => {
                        r.latency_us.record(sent.elapsed().as_micros() as u64);
                        let ids =
                            c.coupons.into_iter().filter(|v| v.campaign == sh.campaign).map(|v| v.coupon).collect();
                        r.listings.push(Listing { index: sh.first + self.slot() as u64, ids });
                    }
                    ServerMsg::Error(e) => tally(&mut r.errors, &format!("coupons: {}", code_name(e.code))),
                    other => tally(&mut r.errors, &format!("coupons: unexpected reply {}", other.kind())),
                }
                true
            }
            Ok(Err(lost)) => {
                tally(&mut r.errors, &format!("coupons: {}", lost.as_str()));
                false
            }
            Err(_) => {
                tally(&mut r.errors, "coupons: no reply in time");
                true
            }
        };
        drop(r);
        sh.listed.set(sh.listed.get() + 1);
        alive
    }

    /// Stays connected (and drained) until the run closes us.
    async fn wait_stop(&self, ws: &mut Ws) -> Woke {
        let mut stop = self.place.stop.clone();
        if *stop.borrow_and_update() {
            return Woke::Stop;
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return Woke::Stop,
                _ = sleep_until(self.place.deadline) => return Woke::Stop,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Woke::Gone,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}
