//! A worker's holders: admitted buyers that hold one of our free seats,
//! keep it a random `--hold-ms` and release it, paced to this worker's
//! share of the rate. Every request that may change a seat goes into the
//! record (`Shared::refs`) the watchers time their diffs against (see
//! `crowd`). Requests and replies are the shared wire types.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use qt_protocol::{ClientMsg, ErrorCode, Req, ServerMsg};
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use crate::common::sockets::{self, Ws, code_name, polite_close};
use crate::common::stats::tally;
use crate::seats::crowd::{Phase, REPLY_TIMEOUT, Ref, SeatCrowd, Shared, SockCtx};
use crate::seats::wire::HolderReport;

/// A holder whose `join` was queued waits this long for `admitted`.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pacing tokens accumulate for at most this long when holders are busy.
const PACER_BACKLOG_S: f64 = 0.05;
const PACER_TICK: Duration = Duration::from_millis(2);
/// Request ids: `join`, `leave`; holds and releases count up from
/// `FIRST_REQ` (the watchers' `watch` requests are 1 and 2).
const JOIN_REQ: i64 = 3;
const LEAVE_REQ: i64 = 4;
const FIRST_REQ: i64 = 10;

/// The worker's holders: the seats they may pick, their pace, and what
/// they did.
pub struct Holders {
    /// Our seats none of our holders holds or is about to.
    free: RefCell<Vec<u32>>,
    /// Hold permits, handed out at the rate while holding.
    pub pacer: Arc<Semaphore>,
    rng: Cell<u64>,
    hold_ms: (u64, u64),
    /// Holders admitted and not yet done (left after draining).
    busy: Cell<u64>,
    pub count: u64,
    /// What they did so far, in the form the report takes.
    done: RefCell<HolderReport>,
}

impl Holders {
    /// `count` holders over `seats` seats of ours, all free.
    pub fn new(seats: usize, count: u64, hold_ms: (u64, u64), seed: u64) -> Self {
        Self {
            free: RefCell::new((0..seats as u32).collect()),
            pacer: Arc::new(Semaphore::new(0)),
            rng: Cell::new(seed),
            hold_ms,
            busy: Cell::new(0),
            count,
            done: RefCell::new(HolderReport::default()),
        }
    }

    /// splitmix64: plenty for picking seats and hold times.
    fn random(&self) -> u64 {
        let mut z = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn take_free(&self) -> Option<u32> {
        let mut free = self.free.borrow_mut();
        if free.is_empty() {
            return None;
        }
        let i = (self.random() % free.len() as u64) as usize;
        Some(free.swap_remove(i))
    }

    fn error(&self, why: &str) {
        tally(&mut self.done.borrow_mut().errors, why);
    }
}

impl SeatCrowd {
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
        sh.hold.pacer.close();
        let _ = self.go.send(Phase::Draining);
        let pacer = self.pacer.borrow_mut().take();
        if let Some(p) = pacer {
            let _ = p.await;
        }
        let give_up = Instant::now() + REPLY_TIMEOUT * 2 + Duration::from_millis(sh.hold.hold_ms.1);
        while sh.hold.busy.get() > 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started_at = sh.window.get().map_or(stopped_at, |m| m.at_us);
        let done = std::mem::take(&mut *sh.hold.done.borrow_mut());
        HolderReport { window_s: (stopped_at - started_at) as f64 / 1e6, stuck: sh.hold.busy.get(), ..done }
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
        let room = cap.saturating_sub(sh.hold.pacer.available_permits());
        if add > room {
            sh.hold.done.borrow_mut().tokens_dropped += (add - room) as u64;
            add = room;
        }
        sh.hold.pacer.add_permits(add);
    }
}

/// What a holder learnt from one reply.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// `held` or `released`, naming this many seats.
    Ok {
        seats: usize,
    },
    Error(ErrorCode),
    Other(&'static str),
}

/// Classifies a reply: an error's code, or how many seats a `held` or
/// `released` names.
fn answer(msg: &ServerMsg) -> Answer {
    match msg {
        ServerMsg::Error(e) => Answer::Error(e.code),
        ServerMsg::Held(h) => Answer::Ok { seats: h.seats.len() },
        ServerMsg::Released(r) => Answer::Ok { seats: r.seats.len() },
        other => Answer::Other(other.kind()),
    }
}

/// Error codes that mean the request changed nothing. Others (`unavailable`,
/// `internal`, …) leave the outcome unknown: the store may have acted
/// before the server gave up on it.
fn nothing_changed(code: ErrorCode) -> bool {
    use ErrorCode::*;
    matches!(code, SeatUnavailable | RateLimited | HoldLimit | NotAdmitted | BadRequest | NotFound | Forbidden)
}

/// Sends one request and reads until its reply (pushes are skipped).
async fn request(ws: &mut Ws, msg: ClientMsg, req: i64) -> Result<ServerMsg, String> {
    let frame = msg.to_frame(Some(&Req::Int(req)));
    match tokio::time::timeout(REPLY_TIMEOUT, sockets::request(ws, frame.into(), req, |_| {})).await {
        Ok(Ok(reply)) => Ok(reply.msg),
        Ok(Err(lost)) => Err(format!("request: {}", lost.as_str())),
        Err(_) => Err("request: no reply in time".into()),
    }
}

impl SockCtx {
    pub async fn holder(mut self, url: String) {
        let sh = self.sh.clone();
        let (mut ws, permit) = match self.connect(&url).await {
            Ok(x) => x,
            Err(why) => return sh.fail(why),
        };
        if let Err(why) = self.admit(&mut ws).await {
            return sh.fail(&why);
        }
        drop(permit);
        sh.setup.borrow_mut().report.counts.admitted += 1;
        sh.hold.busy.set(sh.hold.busy.get() + 1);
        // Wait for the start (or the end).
        while *self.go.borrow_and_update() == Phase::Setup {
            tokio::select! {
                r = self.go.changed() => if r.is_err() { break },
                _ = self.place.stop.changed() => break,
            }
        }
        let mut req = FIRST_REQ;
        let mut healthy = true;
        while sh.phase.get() == Phase::Holding && !*self.place.stop.borrow() {
            let permit = tokio::select! {
                p = sh.hold.pacer.clone().acquire_owned() => p,
                _ = self.place.stop.changed() => break,
            };
            let Ok(permit) = permit else { break };
            permit.forget();
            let Some(j) = sh.hold.take_free() else {
                sh.hold.done.borrow_mut().no_free_seat += 1;
                continue;
            };
            if !self.cycle(&mut ws, j, &mut req).await {
                healthy = false;
                break;
            }
        }
        if healthy && let Err(why) = request(&mut ws, ClientMsg::Leave { event: sh.event.clone() }, LEAVE_REQ).await {
            sh.hold.error(&why);
        }
        sh.hold.busy.set(sh.hold.busy.get() - 1);
        if !healthy {
            return;
        }
        // Stay connected (and drained) until the run closes us.
        loop {
            tokio::select! {
                _ = self.place.stop.changed() => break,
                _ = tokio::time::sleep_until(self.place.deadline) => break,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        }
        polite_close(&mut ws).await;
    }

    /// `join`, then `admitted` (at once or pushed a little later).
    async fn admit(&self, ws: &mut Ws) -> Result<(), String> {
        match request(ws, ClientMsg::Join { event: self.sh.event.clone() }, JOIN_REQ).await? {
            ServerMsg::Admitted(_) => return Ok(()),
            ServerMsg::Queue(_) => {}
            ServerMsg::Error(_) => return Err("join: refused".into()),
            _ => return Err("join: unexpected reply".into()),
        }
        let until = tokio::time::Instant::now() + ADMIT_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(until, ws.next()).await.map_err(|_| "join: not admitted in time")?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    if sockets::read(&t).is_some_and(|f| matches!(f.msg, ServerMsg::Admitted(_))) {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("join: closed while waiting".into()),
            }
        }
    }

    /// One request of a cycle for our seat `j`, recorded before it is sent:
    /// its reply, and when it was sent.
    async fn change(&self, ws: &mut Ws, j: u32, req: &mut i64, hold: bool) -> (Result<ServerMsg, String>, u64) {
        let sh = &self.sh;
        *req += 1;
        let (event, seats) = (sh.event.clone(), vec![sh.seats.id(j as usize).to_owned()]);
        let msg = if hold { ClientMsg::Hold { event, seats } } else { ClientMsg::Release { event, seats } };
        let sent = sh.now_us();
        sh.refs.borrow_mut()[j as usize].push(Ref { sent_us: sent, reply_us: 0 });
        if hold {
            sh.hold.done.borrow_mut().holds_sent += 1;
        }
        (request(ws, msg, *req).await, sent)
    }

    /// The last request for our seat `j` was answered at `now`, changing it.
    fn answered(&self, j: u32, now: u64) {
        if let Some(r) = self.sh.refs.borrow_mut()[j as usize].last_mut() {
            r.reply_us = now;
        }
    }

    /// The last request for our seat `j` changed nothing: out of the record.
    fn unchanged(&self, j: u32) {
        self.sh.refs.borrow_mut()[j as usize].pop();
    }

    /// Holds our seat `j`, keeps it a random time, releases it. False when
    /// the socket is no longer usable.
    async fn cycle(&self, ws: &mut Ws, j: u32, req: &mut i64) -> bool {
        let sh = &self.sh;
        let (reply, sent) = self.change(ws, j, req, true).await;
        let now = sh.now_us();
        match reply.as_ref().map(|m| (answer(m), m.kind())) {
            Ok((Answer::Ok { .. }, "held")) => {
                self.answered(j, now);
                let mut d = sh.hold.done.borrow_mut();
                d.holds_ok += 1;
                d.hold_us.record(now - sent);
            }
            Ok((Answer::Error(code), _)) if nothing_changed(code) => {
                self.unchanged(j);
                if code == ErrorCode::SeatUnavailable {
                    // Someone else has our seat: leave it alone.
                    sh.hold.done.borrow_mut().unavailable += 1;
                } else {
                    sh.hold.error(&format!("hold: {}", code_name(code)));
                    sh.hold.free.borrow_mut().push(j);
                }
                return true;
            }
            Ok((Answer::Error(code), _)) => {
                // The server could not say (e.g. its store timed out): the
                // hold may have happened. Keep the record, retire the seat.
                sh.hold.error(&format!("hold: {} (outcome unknown)", code_name(code)));
                return true;
            }
            Ok(_) => {
                // Unknown outcome: keep the record, never use the seat again.
                sh.hold.error("hold: unexpected reply");
                return true;
            }
            Err(why) => {
                sh.hold.error(why);
                return false;
            }
        }
        let (lo, hi) = sh.hold.hold_ms;
        let keep = lo + sh.hold.random() % (hi - lo + 1);
        tokio::time::sleep(Duration::from_millis(keep)).await;
        let (reply, sent) = self.change(ws, j, req, false).await;
        let now = sh.now_us();
        match reply.as_ref().map(|m| (answer(m), m.kind())) {
            Ok((Answer::Ok { seats: 1 }, "released")) => {
                self.answered(j, now);
                let mut d = sh.hold.done.borrow_mut();
                d.releases_ok += 1;
                d.release_us.record(now - sent);
                drop(d);
                sh.hold.free.borrow_mut().push(j);
                true
            }
            Ok((Answer::Ok { seats: 0 }, "released")) => {
                self.unchanged(j);
                sh.hold.done.borrow_mut().releases_empty += 1;
                true
            }
            Ok((Answer::Error(code), _)) if nothing_changed(code) => {
                self.unchanged(j);
                sh.hold.error(&format!("release: {}", code_name(code)));
                true
            }
            Ok((Answer::Error(code), _)) => {
                sh.hold.error(&format!("release: {} (outcome unknown)", code_name(code)));
                true
            }
            Ok(_) => {
                sh.hold.error("release: unexpected reply");
                true
            }
            Err(why) => {
                sh.hold.error(why);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seats::crowd::tests::shared;

    const IDS: [&str; 4] = ["A-1-1", "A-1-2", "A-1-3", "A-1-4"];

    #[test]
    fn free_seats_are_drawn_without_repeats() {
        let sh = shared(&IDS, 1, 0, 0);
        let mut got: Vec<u32> = std::iter::from_fn(|| sh.hold.take_free()).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(sh.hold.take_free(), None);
    }

    fn reply(text: &str) -> (Answer, Option<Req>) {
        let f = sockets::read(text).unwrap_or_else(|| panic!("not a frame: {text}"));
        (answer(&f.msg), f.req)
    }

    #[test]
    fn replies_are_classified() {
        let held = r#"{"type":"held","event":"e","seats":["a"],"expires_at":"2026-01-01T00:00:00Z","req":11}"#;
        assert_eq!(reply(held), (Answer::Ok { seats: 1 }, Some(Req::Int(11))));
        let taken = r#"{"type":"error","code":"seat_unavailable","message":"taken","seats":["a"],"req":3}"#;
        assert_eq!(reply(taken).0, Answer::Error(ErrorCode::SeatUnavailable));
        assert_eq!(reply(r#"{"type":"released","event":"e","seats":[],"version":4}"#).0, Answer::Ok { seats: 0 });
        assert_eq!(reply(r#"{"type":"pong","req":2}"#).0, Answer::Other("pong"));
        use ErrorCode::*;
        assert!(nothing_changed(SeatUnavailable) && nothing_changed(RateLimited));
        assert!(!nothing_changed(Unavailable) && !nothing_changed(Internal), "the store may have acted");
        assert_eq!(code_name(SeatUnavailable), "seat_unavailable");
        let hold = ClientMsg::Hold { event: "e".into(), seats: vec!["A-1-1".into()] }.to_frame(Some(&Req::Int(11)));
        assert_eq!(hold, r#"{"type":"hold","event":"e","seats":["A-1-1"],"req":11}"#);
    }
}
