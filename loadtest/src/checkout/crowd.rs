//! The checkout crowd in one worker process: one task and one socket per
//! buyer. Set-up: open the socket (up to `hello`), `join` until
//! `admitted`, claim a coupon of the run's campaign when the buyer asks
//! for the `best` one, and `hold_best` its seats (retried while racers take
//! the same ones; `sold_out` leaves it waiting for seats). At the start
//! every buyer with seats sends `checkout`, then `pay` with a key of its
//! planned prefix, and waits for the final `payment` (the reply, or the
//! push that follows a `pending` one); a failed payment releases the
//! seats. Buyers without seats keep trying `hold_best` for a while (a
//! later wave buys what the first left). Then each buyer lists its
//! `orders`. Frames are the shared wire types.
//!
//! Everything runs on the worker's one thread: shared state is `Rc` +
//! `Cell`/`RefCell`, and no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use qt_protocol::orders::{PaymentStatus, PaymentView};
use qt_protocol::{ClientMsg, Envelope, ErrorCode, Req, ServerMsg};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use crate::checkout::plan::{BuyerPlan, Rng};
use crate::checkout::wire::{BuyReport, BuyerRecord, CheckoutSpec, ListReport, Listing, OrderFacts, ReadyReport, Told};
use crate::common::sockets::{self, CLOSE_TIMEOUT, Place, RampState, Tasks, Ws, code_name, polite_close};
use crate::common::stats::tally;
use crate::common::tokens::Minter;
use crate::common::wire::{Closed, unix_us};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A request's reply, or the buyer gives up on its socket.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A queued `join` waits this long for `admitted`.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// `hold_best` attempts while racers take the picked seats.
const HOLD_ATTEMPTS: u32 = 12;
/// How often a buyer without seats tries again after the start.
const LATE_RETRY: Duration = Duration::from_millis(250);
/// After its deadline, how long a phase's answer waits for stragglers.
const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Setup,
    Go {
        at: Instant,
        /// Checkouts started per second (0: all at `at`).
        rate: f64,
        /// Buyers without seats try until then.
        late_until: Instant,
        final_timeout: Duration,
    },
    List {
        until: Instant,
    },
}

struct Shared {
    event: String,
    campaign: Option<String>,
    plans: Vec<BuyerPlan>,
    seed: u64,
    worker: usize,
    workers: usize,
    /// Clocks: `Instant` here, Unix µs for the coordinator.
    epoch: Instant,
    epoch_unix_us: u64,
    count: u64,
    setup: RefCell<ReadyReport>,
    /// Buyers through set-up (ready, waiting for seats, or failed).
    through_setup: Cell<u64>,
    records: Vec<RefCell<BuyerRecord>>,
    /// Buyers through the buy (whatever came of it).
    through_buy: Cell<u64>,
    /// Buyers whose socket is open.
    alive: Vec<Cell<bool>>,
    list: RefCell<ListReport>,
    listed: Cell<u64>,
}

impl Shared {
    fn unix(&self, t: Instant) -> u64 {
        self.epoch_unix_us + t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn now_unix(&self) -> u64 {
        self.unix(Instant::now())
    }

    /// When buyer `slot` starts after the start, at `rate` a second over
    /// all workers (interleaved, so every worker carries its share).
    fn start_offset(&self, slot: usize, rate: f64) -> Duration {
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        let place = slot * self.workers + self.worker;
        Duration::from_secs_f64(place as f64 / rate)
    }

    fn fail_setup(&self, slot: usize, why: &str) {
        {
            let mut s = self.setup.borrow_mut();
            s.failed += 1;
            tally(&mut s.errors, why);
        }
        self.records[slot].borrow_mut().outcome = format!("set-up: {why}");
        self.through_setup.set(self.through_setup.get() + 1);
        // It takes no part in the buy.
        self.through_buy.set(self.through_buy.get() + 1);
    }

    fn done_buying(&self, slot: usize, outcome: impl Into<String>) {
        self.records[slot].borrow_mut().outcome = outcome.into();
        self.through_buy.set(self.through_buy.get() + 1);
    }
}

/// One worker's buyers and their sockets.
pub struct CheckoutCrowd {
    sh: Rc<Shared>,
    phase: watch::Sender<Phase>,
    tasks: Tasks,
}

impl CheckoutCrowd {
    pub fn start(spec: &CheckoutSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        b.check(0)?;
        anyhow::ensure!(spec.plans.len() as u64 == b.count, "{} plans for {} buyers", spec.plans.len(), b.count);
        let n = b.count as usize;
        let sh = Rc::new(Shared {
            event: b.event.clone(),
            campaign: spec.campaign.clone(),
            plans: spec.plans.clone(),
            seed: spec.seed,
            worker: spec.worker,
            workers: spec.workers.max(1),
            epoch: Instant::now(),
            epoch_unix_us: unix_us(),
            count: b.count,
            setup: RefCell::new(ReadyReport { buyers: b.count, ..ReadyReport::default() }),
            through_setup: Cell::new(0),
            records: (0..n)
                .map(|k| {
                    let p = spec.plans[k];
                    RefCell::new(BuyerRecord {
                        index: b.first + k as u64,
                        kind: Some(p.kind),
                        best: p.best,
                        outcome: "not started".into(),
                        ..BuyerRecord::default()
                    })
                })
                .collect(),
            through_buy: Cell::new(0),
            alive: (0..n).map(|_| Cell::new(false)).collect(),
            list: RefCell::new(ListReport::default()),
            listed: Cell::new(0),
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
                    Err(_) => ctx.sh.fail_setup(ctx.place.slot, "token"),
                }
            }
        });
        Ok(Self { sh, phase, tasks })
    }

    /// Reports progress until every buyer is through set-up or `deadline`
    /// passed; then the set-up figures.
    pub async fn ramp(&self, deadline: Duration) -> ReadyReport {
        let sh = &self.sh;
        sockets::ramp(deadline, || {
            let s = sh.setup.borrow();
            RampState {
                connected: s.open,
                joined: s.held + s.no_seats,
                failed: s.failed,
                through: sh.through_setup.get() >= sh.count,
            }
        })
        .await;
        let mut s = sh.setup.borrow_mut();
        ReadyReport {
            connect_us: std::mem::take(&mut s.connect_us),
            admit_hold_us: std::mem::take(&mut s.admit_hold_us),
            ..s.clone()
        }
    }

    /// Starts the buy at `at_unix_us`; answers once every buyer is through
    /// (or the deadline and a grace passed).
    pub async fn go(&self, at_unix_us: u64, rate: f64, late_ms: u64, final_timeout_ms: u64) -> BuyReport {
        let sh = &self.sh;
        let at = Instant::now() + Duration::from_micros(at_unix_us.saturating_sub(unix_us()));
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        let late_until = at + Duration::from_millis(late_ms);
        let final_timeout = Duration::from_millis(final_timeout_ms);
        self.phase.send_replace(Phase::Go { at, rate, late_until, final_timeout });
        // The last paced start, then checkout and pay replies, the final
        // wait and a release, at most.
        let last_start = at + sh.start_offset(sh.count.saturating_sub(1) as usize, rate);
        let give_up = late_until.max(last_start) + REPLY_TIMEOUT * 3 + final_timeout + GRACE;
        while sh.through_buy.get() < sh.count && Instant::now() < give_up {
            sleep(Duration::from_millis(5)).await;
        }
        BuyReport {
            records: sh.records.iter().map(|r| r.borrow().clone()).collect(),
            stuck: sh.count - sh.through_buy.get().min(sh.count),
        }
    }

    /// Every buyer that still has a socket asks for its orders; answers
    /// once all are through (bounded).
    pub async fn list(&self, timeout_ms: u64) -> ListReport {
        let sh = &self.sh;
        let until = Instant::now() + Duration::from_millis(timeout_ms);
        let alive = sh.alive.iter().filter(|a| a.get()).count() as u64;
        sh.list.borrow_mut().asked = alive;
        self.phase.send_replace(Phase::List { until });
        while sh.listed.get() < alive && Instant::now() < until + GRACE {
            sleep(Duration::from_millis(5)).await;
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

/// A buyer's socket and its next request id.
struct Conn {
    ws: Ws,
    req: i64,
}

impl Conn {
    /// Sends `msg` and reads until its reply, bounded; every other frame
    /// goes to `push`.
    async fn ask(&mut self, msg: ClientMsg, push: impl FnMut(Envelope)) -> Result<ServerMsg, String> {
        self.req += 1;
        let frame = msg.to_frame(Some(&Req::Int(self.req)));
        match timeout(REPLY_TIMEOUT, sockets::request(&mut self.ws, frame.into(), self.req, push)).await {
            Ok(Ok(reply)) => Ok(reply.msg),
            Ok(Err(lost)) => Err(format!("socket lost ({})", lost.as_str())),
            Err(_) => Err("no reply in time".into()),
        }
    }
}

/// What a buyer's seats came to.
enum Seats {
    Held(Vec<String>),
    /// `sold_out`, or every attempt lost its race.
    None,
}

/// What a waiting buyer woke to.
enum Woke {
    Phase(Phase),
    /// The run is closing us.
    Stop,
    /// The server (or the network) closed the socket.
    Gone,
}

fn final_of(p: &PaymentView) -> Option<Told> {
    match p.status {
        PaymentStatus::Paid => Some(Told::Paid),
        PaymentStatus::Failed => Some(Told::Failed),
        PaymentStatus::Pending => None,
    }
}

fn told(s: PaymentStatus) -> Told {
    match s {
        PaymentStatus::Paid => Told::Paid,
        PaymentStatus::Failed => Told::Failed,
        PaymentStatus::Pending => Told::Pending,
    }
}

/// A final `payment` push for `order`: (status, reason, when), first one.
#[derive(Default)]
struct Finals {
    first: Option<(Told, Option<String>, Instant)>,
    count: u32,
    flipped: bool,
}

impl Finals {
    fn see(&mut self, order: &str, env: &Envelope) {
        if let ServerMsg::Payment(p) = &env.msg
            && p.order == order
            && let Some(t) = final_of(p)
        {
            self.count += 1;
            match &self.first {
                None => self.first = Some((t, p.reason.clone(), Instant::now())),
                Some((f, _, _)) if *f != t => self.flipped = true,
                Some(_) => {}
            }
        }
    }
}

impl BuyerCtx {
    fn slot(&self) -> usize {
        self.place.slot
    }

    fn plan(&self) -> BuyerPlan {
        self.sh.plans[self.slot()]
    }

    fn record(&self) -> std::cell::RefMut<'_, BuyerRecord> {
        self.sh.records[self.slot()].borrow_mut()
    }

    async fn run(&self, url: &str) {
        let (sh, slot) = (&self.sh, self.slot());
        let permit = self.gate.acquire().await;
        let started = Instant::now();
        let ws = match timeout(CONNECT_TIMEOUT, sockets::open(self.place.source, self.place.server, url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return sh.fail_setup(slot, why),
            Err(_) => return sh.fail_setup(slot, "connect: timed out"),
        };
        {
            let mut s = sh.setup.borrow_mut();
            s.open += 1;
            s.connect_us.record(started.elapsed().as_micros() as u64);
        }
        sh.alive[slot].set(true);
        let mut conn = Conn { ws, req: 0 };
        let joined = Instant::now();
        let seats = match self.setup(&mut conn).await {
            Ok(seats) => seats,
            Err(why) => {
                sh.alive[slot].set(false);
                return sh.fail_setup(slot, &why);
            }
        };
        {
            let mut s = sh.setup.borrow_mut();
            match &seats {
                Seats::Held(ids) => {
                    s.held += 1;
                    s.seats_held += ids.len() as u64;
                    s.admit_hold_us.record(joined.elapsed().as_micros() as u64);
                }
                Seats::None => s.no_seats += 1,
            }
        }
        sh.through_setup.set(sh.through_setup.get() + 1);
        drop(permit);

        let mut phase = self.phase.clone();
        let alive = match self.wait(&mut conn.ws, &mut phase, |p| matches!(p, Phase::Setup)).await {
            Woke::Phase(Phase::Go { at, rate, late_until, final_timeout }) => {
                // A paced buyer's later wave runs as long from its own start.
                let offset = sh.start_offset(slot, rate);
                self.buy(&mut conn, seats, at + offset, late_until + offset, final_timeout).await
            }
            Woke::Gone => {
                sh.done_buying(slot, "socket lost before the start");
                false
            }
            _ => {
                sh.done_buying(slot, "stopped before the start");
                true
            }
        };
        if !alive {
            sh.alive[slot].set(false);
            return;
        }
        let alive = match self.wait(&mut conn.ws, &mut phase, |p| !matches!(p, Phase::List { .. })).await {
            Woke::Phase(Phase::List { until }) => self.list(&mut conn, until).await,
            Woke::Gone => false,
            _ => true,
        };
        if !alive {
            sh.alive[slot].set(false);
            return;
        }
        if !matches!(self.wait_stop(&mut conn.ws).await, Woke::Gone) {
            polite_close(&mut conn.ws).await;
        }
        sh.alive[slot].set(false);
    }

    /// `join` until `admitted`, a coupon for a `best` buyer, its seats.
    async fn setup(&self, conn: &mut Conn) -> Result<Seats, String> {
        let sh = &self.sh;
        match conn.ask(ClientMsg::Join { event: sh.event.clone() }, |_| {}).await {
            Ok(ServerMsg::Admitted(_)) => {}
            Ok(ServerMsg::Queue(_)) => self.admitted(conn).await?,
            Ok(ServerMsg::Error(e)) => return Err(format!("join: {}", code_name(e.code))),
            Ok(other) => return Err(format!("join: unexpected {}", other.kind())),
            Err(why) => return Err(format!("join: {why}")),
        }
        sh.setup.borrow_mut().admitted += 1;
        if self.plan().best
            && let Some(campaign) = &sh.campaign
        {
            match conn.ask(ClientMsg::ClaimCoupon { campaign: campaign.clone() }, |_| {}).await {
                Ok(ServerMsg::Coupon(c)) => {
                    self.record().coupon_claimed = Some(c.coupon);
                    sh.setup.borrow_mut().coupons += 1;
                }
                // Not fatal: it checks out with `best` all the same.
                Ok(ServerMsg::Error(e)) => {
                    tally(&mut sh.setup.borrow_mut().errors, &format!("claim: {}", code_name(e.code)))
                }
                Ok(other) => tally(&mut sh.setup.borrow_mut().errors, &format!("claim: unexpected {}", other.kind())),
                Err(why) => return Err(format!("claim: {why}")),
            }
        }
        self.hold(conn, HOLD_ATTEMPTS).await
    }

    /// Waits for the pushed `admitted` after a `queue` answer.
    async fn admitted(&self, conn: &mut Conn) -> Result<(), String> {
        let until = Instant::now() + ADMIT_TIMEOUT;
        loop {
            match timeout_at(until, conn.ws.next()).await {
                Err(_) => return Err("join: not admitted in time".into()),
                Ok(Some(Ok(Message::Text(t)))) => {
                    if sockets::read(&t).is_some_and(|f| matches!(f.msg, ServerMsg::Admitted(_))) {
                        return Ok(());
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return Err("join: closed while waiting".into()),
            }
        }
    }

    /// `hold_best` for the planned seats, `attempts` times while racers
    /// take the ones picked.
    async fn hold(&self, conn: &mut Conn, attempts: u32) -> Result<Seats, String> {
        let (event, count) = (self.sh.event.clone(), u32::from(self.plan().seats));
        let mut rng = Rng::new(self.sh.seed ^ self.place.index.wrapping_mul(0x2545_f491_4f6c_dd1d));
        for attempt in 0..attempts {
            let msg = ClientMsg::HoldBest { event: event.clone(), count, tier: None, section: None };
            match conn.ask(msg, |_| {}).await {
                Ok(ServerMsg::Held(h)) if h.seats.len() == count as usize => return Ok(Seats::Held(h.seats)),
                Ok(ServerMsg::Held(h)) => return Err(format!("hold: held {} seats, not {count}", h.seats.len())),
                Ok(ServerMsg::Error(e)) if e.code == ErrorCode::SoldOut => return Ok(Seats::None),
                Ok(ServerMsg::Error(e)) if e.code == ErrorCode::SeatUnavailable => {
                    let ms = 5 + rng.below(20 * u64::from(attempt + 1));
                    sleep(Duration::from_millis(ms)).await;
                }
                Ok(ServerMsg::Error(e)) => return Err(format!("hold: {}", code_name(e.code))),
                Ok(other) => return Err(format!("hold: unexpected {}", other.kind())),
                Err(why) => return Err(format!("hold: {why}")),
            }
        }
        Ok(Seats::None)
    }

    /// Waits, reading (and dropping) what the server sends, while `stay`
    /// holds for the phase.
    async fn wait(&self, ws: &mut Ws, phase: &mut watch::Receiver<Phase>, stay: impl Fn(&Phase) -> bool) -> Woke {
        let mut stop = self.place.stop.clone();
        loop {
            let now = *phase.borrow_and_update();
            if !stay(&now) {
                return Woke::Phase(now);
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

    /// The buy: seats (a later wave's, when it had none), checkout, pay,
    /// the final `payment`, and a release after a failure. False when the
    /// socket was lost.
    async fn buy(
        &self,
        conn: &mut Conn,
        seats: Seats,
        at: Instant,
        late_until: Instant,
        final_timeout: Duration,
    ) -> bool {
        let (sh, slot) = (&self.sh, self.slot());
        sleep_until(at).await;
        let held = match seats {
            Seats::Held(ids) => ids,
            Seats::None => loop {
                if Instant::now() >= late_until {
                    sh.done_buying(slot, "no seats");
                    return true;
                }
                sleep(LATE_RETRY).await;
                match self.hold(conn, 1).await {
                    Ok(Seats::Held(ids)) => {
                        self.record().late = true;
                        break ids;
                    }
                    Ok(Seats::None) => {}
                    Err(why) => {
                        let lost = why.contains("socket lost");
                        sh.done_buying(slot, why);
                        return !lost;
                    }
                }
            },
        };
        self.record().held = held.clone();

        // Checkout.
        let best = self.plan().best.then(|| "best".to_owned());
        let sent = Instant::now();
        self.record().checkout_us = Some(sh.unix(sent));
        let order = match conn.ask(ClientMsg::Checkout { event: sh.event.clone(), coupon: best }, |_| {}).await {
            Ok(ServerMsg::Order(o)) => o,
            Ok(ServerMsg::Error(e)) => {
                sh.done_buying(slot, format!("checkout: {}", code_name(e.code)));
                return true;
            }
            Ok(other) => {
                sh.done_buying(slot, format!("checkout: unexpected {}", other.kind()));
                return true;
            }
            Err(why) => {
                let lost = why.contains("socket lost");
                sh.done_buying(slot, format!("checkout: {why}"));
                return !lost;
            }
        };
        let facts = OrderFacts {
            id: order.order.clone(),
            seats: order.seats.clone(),
            subtotal: order.subtotal,
            discount: order.discount,
            total: order.total,
            coupon: order.coupon.clone(),
        };
        {
            let mut r = self.record();
            r.order_us = Some(sh.now_unix());
            r.order = Some(facts);
        }

        // Pay.
        let mut rng = Rng::new(sh.seed ^ unix_us() ^ self.place.index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let key = format!("{}-{:016x}", self.plan().kind.prefix(), rng.next());
        let id = order.order.clone();
        {
            let mut r = self.record();
            r.payment_key = Some(key.clone());
            r.pay_us = Some(sh.now_unix());
        }
        let mut finals = Finals::default();
        let reply = conn.ask(ClientMsg::Pay { order: id.clone(), payment_key: key }, |env| finals.see(&id, &env)).await;
        let replied = Instant::now();
        let payment = match reply {
            Ok(ServerMsg::Payment(p)) => p,
            Ok(ServerMsg::Error(e)) => {
                sh.done_buying(slot, format!("pay: {}", code_name(e.code)));
                return true;
            }
            Ok(other) => {
                sh.done_buying(slot, format!("pay: unexpected {}", other.kind()));
                return true;
            }
            Err(why) => {
                let lost = why.contains("socket lost");
                sh.done_buying(slot, format!("pay: {why}"));
                return !lost;
            }
        };
        {
            let mut r = self.record();
            r.pay_reply_us = Some(sh.unix(replied));
            r.pay_reply = Some(told(payment.status));
        }
        // The final answer: the reply, or the first final push (which may
        // even have come before a `pending` reply).
        let mut last = match (final_of(&payment), finals.first.take()) {
            (Some(t), pushed) => {
                if pushed.as_ref().is_some_and(|(p, _, _)| *p != t) {
                    finals.flipped = true;
                }
                Some((t, payment.reason.clone(), replied))
            }
            (None, pushed) => pushed,
        };
        let alive = if last.is_none() {
            let until = replied + final_timeout;
            loop {
                match timeout_at(until, conn.ws.next()).await {
                    Err(_) => break true,
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Some(env) = sockets::read(&t) {
                            finals.see(&id, &env);
                            if let Some(f) = finals.first.take() {
                                last = Some(f);
                                break true;
                            }
                        }
                    }
                    Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => break false,
                    Ok(Some(Ok(_))) => {}
                }
            }
        } else {
            true
        };
        {
            let mut r = self.record();
            r.final_pushes = finals.count;
            r.final_flipped = finals.flipped;
        }
        let Some((status, reason, at)) = last else {
            sh.done_buying(slot, if alive { "no final payment" } else { "socket lost awaiting the final payment" });
            return alive;
        };
        {
            let mut r = self.record();
            r.final_status = Some(status);
            r.final_us = Some(sh.unix(at));
            r.reason = reason;
        }
        if status == Told::Failed && alive {
            // The seats are ordinary holds again: give them back.
            match conn.ask(ClientMsg::Release { event: sh.event.clone(), seats: order.seats.clone() }, |_| {}).await {
                Ok(ServerMsg::Released(r)) => self.record().released = r.seats.len() as u32,
                Ok(_) => {}
                Err(why) if why.contains("socket lost") => {
                    sh.done_buying(slot, "failed");
                    return false;
                }
                Err(_) => {}
            }
        }
        sh.done_buying(slot, if status == Told::Paid { "paid" } else { "failed" });
        alive
    }

    /// Asks for the buyer's orders of the event; false when the socket was
    /// lost.
    async fn list(&self, conn: &mut Conn, until: Instant) -> bool {
        let sh = &self.sh;
        let index = self.place.index;
        let reply = timeout_at(until, conn.ask(ClientMsg::Orders { event: Some(sh.event.clone()) }, |_| {})).await;
        let mut r = sh.list.borrow_mut();
        let alive = match reply {
            Ok(Ok(ServerMsg::Orders(o))) => {
                let orders = o.orders.into_iter().map(|v| (v.order, v.status.as_str().to_owned())).collect();
                r.listings.push(Listing { index, orders });
                true
            }
            Ok(Ok(ServerMsg::Error(e))) => {
                tally(&mut r.errors, &format!("orders: {}", code_name(e.code)));
                true
            }
            Ok(Ok(other)) => {
                tally(&mut r.errors, &format!("orders: unexpected {}", other.kind()));
                true
            }
            Ok(Err(why)) => {
                tally(&mut r.errors, &format!("orders: {why}"));
                !why.contains("socket lost")
            }
            Err(_) => {
                tally(&mut r.errors, "orders: no reply in time");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> Envelope {
        sockets::read(text).unwrap_or_else(|| panic!("not a frame: {text}"))
    }

    #[test]
    fn only_final_payments_of_the_order_count() {
        let mut f = Finals::default();
        f.see("o-1", &env(r#"{"type":"payment","order":"o-1","status":"pending"}"#));
        f.see("o-1", &env(r#"{"type":"payment","order":"o-2","status":"paid"}"#));
        f.see("o-1", &env(r#"{"type":"pong"}"#));
        assert!(f.first.is_none() && f.count == 0);
        f.see("o-1", &env(r#"{"type":"payment","order":"o-1","status":"paid"}"#));
        f.see("o-1", &env(r#"{"type":"payment","order":"o-1","status":"paid"}"#));
        assert_eq!((f.first.as_ref().map(|x| x.0), f.count, f.flipped), (Some(Told::Paid), 2, false));
        f.see("o-1", &env(r#"{"type":"payment","order":"o-1","status":"failed","reason":"x"}"#));
        assert!(f.flipped, "a later final that disagrees is noted");
    }
}
