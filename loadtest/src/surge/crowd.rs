//! The WebSocket crowd of one worker process: one task per buyer that
//! connects (bounded in flight), reads `hello`, sends `join`, times the
//! reply, and then only listens, timing the gaps between the server's
//! position pushes. Frames are read into the shared wire types
//! (`qt_protocol::Envelope`). Everything runs on the worker's single
//! thread, so the shared state is `Rc` + `Cell`/`RefCell` and never locked;
//! no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use qt_protocol::{ClientMsg, ErrorCode, Req, ServerMsg};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::common::sockets::{self, CLOSE_TIMEOUT, Place, RampState, Tasks, Ws, polite_close};
use crate::common::stats::{Histogram, tally};
use crate::common::tokens::Minter;
use crate::common::wire::{Closed, unix_us};
use crate::surge::wire::{CrowdSpec, HoldReport, JoinReport};

/// TCP connect plus upgrade plus hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// `join` sent → reply.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The protocol's promise: a waiting socket hears from the server at least
/// this often.
pub const PUSH_PROMISE_US: u64 = 2_000_000;
/// Our only request id: each socket sends exactly one request.
const JOIN_REQ: i64 = 1;

/// Which figures a push that arrives now counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Ramp,
    Hold,
    Done,
}

/// What the sockets counted so far, in the forms the reports take.
#[derive(Default)]
struct Counters {
    connected: u64,
    join: JoinReport,
    hold: HoldReport,
}

struct Shared {
    epoch: Instant,
    epoch_unix_us: u64,
    count: u64,
    /// Per buyer: when it last heard its position (µs since `epoch`); 0
    /// while it is not waiting (not yet joined, admitted, or lost).
    last_push: Vec<Cell<u64>>,
    /// Per buyer: longest gap between pushes within the hold window.
    max_gap: Vec<Cell<u64>>,
    window: Cell<Window>,
    counters: RefCell<Counters>,
    /// The one `join` frame every socket sends; cloning it is a refcount.
    join_frame: Utf8Bytes,
}

impl Shared {
    /// Microseconds since the epoch, never 0 (0 means "not waiting").
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn to_unix(&self, us: u64) -> u64 {
        self.epoch_unix_us + us
    }

    fn fail(&self, why: &str) {
        let c = &mut self.counters.borrow_mut().join.counts;
        c.failed += 1;
        tally(&mut c.errors, why);
    }

    /// A `queue` push arrived for buyer `slot`.
    fn on_push(&self, slot: usize, now: u64) {
        let last = self.last_push[slot].replace(now);
        if last == 0 {
            return;
        }
        let gap = now - last;
        let hold = &mut self.counters.borrow_mut().hold;
        hold.pushes += 1;
        match self.window.get() {
            Window::Ramp => hold.ramp_gap_us.record(gap),
            Window::Hold => {
                hold.hold_gap_us.record(gap);
                let max = &self.max_gap[slot];
                max.set(max.get().max(gap));
            }
            Window::Done => {}
        }
    }

    /// Buyer `slot` stopped waiting without us closing it.
    fn on_lost(&self, slot: usize, why: &str) {
        if self.last_push[slot].replace(0) != 0 {
            let mut c = self.counters.borrow_mut();
            c.hold.lost += 1;
            tally(&mut c.join.counts.errors, why);
        }
    }
}

/// One worker's sockets.
pub struct Crowd {
    shared: Rc<Shared>,
    tasks: Tasks,
}

impl Crowd {
    /// Spawns one task per buyer on the current `LocalSet`.
    pub fn start(spec: &CrowdSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        b.check(0)?;
        let join_frame = ClientMsg::Join { event: b.event.clone() }.to_frame(Some(&Req::Int(JOIN_REQ)));
        let shared = Rc::new(Shared {
            epoch: Instant::now(),
            epoch_unix_us: unix_us(),
            count: b.count,
            last_push: (0..b.count).map(|_| Cell::new(0)).collect(),
            max_gap: (0..b.count).map(|_| Cell::new(0)).collect(),
            window: Cell::new(Window::Ramp),
            counters: RefCell::new(Counters::default()),
            join_frame: join_frame.into(),
        });
        let gate = Rc::new(Semaphore::new(b.max_inflight.max(1)));
        let base = b.ws_url();
        let mut tasks = Tasks::default();
        tasks.spawn_each(b, &Minter::new(&b.secret), |place, token| {
            let ctx = SocketCtx { shared: shared.clone(), place, gate: gate.clone() };
            let url = token.map(|t| format!("{base}{t}"));
            async move {
                match url {
                    Ok(url) => ctx.run(url).await,
                    Err(_) => ctx.shared.fail("token"),
                }
            }
        });
        Ok(Self { shared, tasks })
    }

    /// Reports progress about once a second until every buyer has joined
    /// or failed, or `deadline` passed; then the join figures.
    pub async fn ramp(&self, deadline: Duration) -> JoinReport {
        let s = &self.shared;
        sockets::ramp(deadline, || {
            let c = s.counters.borrow();
            let j = &c.join;
            RampState {
                connected: c.connected,
                joined: j.counts.joined,
                failed: j.counts.failed,
                through: j.counts.joined + j.counts.failed + j.counts.admitted >= s.count,
            }
        })
        .await;
        let j = &mut s.counters.borrow_mut().join;
        let mut counts = j.counts.clone();
        counts.requested = s.count;
        counts.pending = s.count.saturating_sub(counts.joined + counts.failed + counts.admitted);
        JoinReport {
            counts,
            connect_us: std::mem::take(&mut j.connect_us),
            join_us: std::mem::take(&mut j.join_us),
            ..*j
        }
    }

    pub fn hold_start(&self) {
        self.shared.window.set(Window::Hold);
    }

    /// Ends the hold: every waiting socket's longest silence, including the
    /// one still running now (a socket that went quiet is a violation even
    /// if its next push never came).
    pub fn hold_end(&self) -> HoldReport {
        let s = &self.shared;
        s.window.set(Window::Done);
        let now = s.now_us();
        let mut socket_max_gap_us = Histogram::new();
        let (mut waiting, mut over_2s) = (0, 0);
        for (last, max) in s.last_push.iter().zip(&s.max_gap) {
            let last = last.get();
            if last == 0 {
                continue;
            }
            waiting += 1;
            let worst = max.get().max(now - last);
            socket_max_gap_us.record(worst);
            if worst > PUSH_PROMISE_US {
                over_2s += 1;
            }
        }
        let h = &mut s.counters.borrow_mut().hold;
        HoldReport {
            waiting,
            lost: h.lost,
            ramp_gap_us: std::mem::take(&mut h.ramp_gap_us),
            hold_gap_us: std::mem::take(&mut h.hold_gap_us),
            socket_max_gap_us,
            over_2s,
            pushes: h.pushes,
        }
    }

    /// Closes every socket (politely, bounded) and waits for the tasks.
    pub async fn close(self) -> Closed {
        self.tasks.end(CLOSE_TIMEOUT + Duration::from_secs(5)).await
    }
}

/// What one buyer's task needs.
struct SocketCtx {
    shared: Rc<Shared>,
    place: Place,
    gate: Rc<Semaphore>,
}

impl SocketCtx {
    async fn run(mut self, url: String) {
        let sh = self.shared.clone();
        // In flight = connecting or joining; waiting sockets free the slot.
        let Ok(permit) = self.gate.acquire().await else { return };
        if *self.place.stop.borrow() {
            return;
        }
        let started = Instant::now();
        sh.counters.borrow_mut().join.first_connect_unix_us.get_or_insert_with(unix_us);
        let mut ws = match timeout(CONNECT_TIMEOUT, sockets::open(self.place.source, self.place.server, &url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return sh.fail(why),
            Err(_) => return sh.fail("connect: timed out"),
        };
        {
            let mut c = sh.counters.borrow_mut();
            c.connected += 1;
            c.join.connect_us.record(started.elapsed().as_micros() as u64);
        }
        match timeout(JOIN_TIMEOUT, self.join(&mut ws)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return sh.fail(&why),
            Err(_) => return sh.fail("join: timed out"),
        }
        drop(permit);
        self.listen(&mut ws).await;
        polite_close(&mut ws).await;
    }

    async fn join(&self, ws: &mut Ws) -> Result<(), String> {
        let sh = &self.shared;
        let sent = sh.now_us();
        {
            let j = &mut sh.counters.borrow_mut().join;
            let unix = sh.to_unix(sent);
            j.first_join_sent_unix_us = Some(j.first_join_sent_unix_us.map_or(unix, |t| t.min(unix)));
        }
        // A push can overtake the reply; it changes nothing here.
        let reply = sockets::request(ws, sh.join_frame.clone(), JOIN_REQ, |_| {})
            .await
            .map_err(|lost| format!("join: {}", lost.as_str()))?;
        let now = sh.now_us();
        let j = &mut sh.counters.borrow_mut().join;
        match reply.msg {
            ServerMsg::Queue(_) => {
                j.counts.joined += 1;
                j.join_us.record(now - sent);
                let unix = sh.to_unix(now);
                j.last_join_reply_unix_us = Some(j.last_join_reply_unix_us.map_or(unix, |t| t.max(unix)));
                sh.last_push[self.place.slot].set(now);
                Ok(())
            }
            ServerMsg::Admitted(_) => {
                j.counts.admitted += 1;
                j.join_us.record(now - sent);
                Err("join: admitted at once (is the event paused?)".into())
            }
            ServerMsg::Error(e) => Err(join_error(e.code).into()),
            _ => Err("join: unexpected reply type".into()),
        }
    }

    /// Waits, timing pushes, until told to stop, the server lets go, or
    /// the buyer's life ends.
    async fn listen(&mut self, ws: &mut Ws) {
        let sh = self.shared.clone();
        loop {
            tokio::select! {
                _ = self.place.stop.changed() => return,
                _ = tokio::time::sleep_until(self.place.deadline) => return,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => match sockets::read(&text).map(|f| (f.msg, f.req)) {
                        Some((ServerMsg::Queue(_), None)) => sh.on_push(self.place.slot, sh.now_us()),
                        Some((ServerMsg::Admitted(_), _)) => {
                            sh.counters.borrow_mut().join.counts.admitted += 1;
                            sh.on_lost(self.place.slot, "wait: admitted during the hold");
                        }
                        Some((ServerMsg::Left(_), _)) => sh.on_lost(self.place.slot, "wait: place gone"),
                        Some((ServerMsg::Closing(_), _)) => sh.on_lost(self.place.slot, "wait: server closing"),
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None => return sh.on_lost(self.place.slot, "wait: closed by server"),
                    Some(Err(_)) => return sh.on_lost(self.place.slot, "wait: socket error"),
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

fn join_error(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RateLimited => "join: rate_limited",
        ErrorCode::NotFound => "join: not_found",
        ErrorCode::Unauthorized => "join: unauthorized",
        ErrorCode::Unavailable => "join: unavailable",
        _ => "join: other error",
    }
}

#[cfg(test)]
mod tests {
    use qt_protocol::frames::{Envelope, QueueView};

    use super::*;

    #[test]
    fn frames_are_read_as_the_shared_types() {
        let queue = ServerMsg::Queue(QueueView {
            event: "e".into(),
            position: 3,
            waiting: 9,
            eta_s: 1,
            eta_low_s: 1,
            eta_high_s: 2,
            rate_per_min: 60,
            paused: true,
        });
        let f = sockets::read(&qt_protocol::encode(&queue, Some(&Req::Int(1)))).unwrap();
        assert_eq!((f.msg.kind(), f.req), ("queue", Some(Req::Int(1))));
        let f = sockets::read(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).unwrap();
        let Envelope { msg: ServerMsg::Error(e), req: None } = f else { panic!("{f:?}") };
        assert_eq!(join_error(e.code), "join: rate_limited");
        assert!(sockets::read("not json").is_none());
        assert!(sockets::read(r#"{"no":"type"}"#).is_none());
        let join = ClientMsg::Join { event: "e".into() }.to_frame(Some(&Req::Int(JOIN_REQ)));
        assert_eq!(join, r#"{"type":"join","event":"e","req":1}"#);
    }
}
