//! The WebSocket crowd of one worker process: one task per buyer that
//! connects (bounded in flight), reads `hello`, sends `join`, times the
//! reply, and then only listens, timing the gaps between the server's
//! position pushes. Everything runs on the worker's single thread, so the
//! shared state is `Rc` + `Cell`/`RefCell` and never locked; no borrow is
//! held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::client_async_with_config;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::crowdkit::{self, CLOSE_TIMEOUT, RampState, Ws, polite_close, ws_config};
use crate::net::io_category;
use crate::stats::Histogram;
use crate::tokens::Minter;
use crate::wire::{CrowdSpec, HoldReport, JoinReport, Report, unix_us};
use crate::{host, net};

/// TCP connect plus upgrade plus hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// `join` sent → reply.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The protocol's promise: a waiting socket hears from the server at least
/// this often.
pub const PUSH_PROMISE_US: u64 = 2_000_000;
/// Our only request id: each socket sends exactly one request.
const JOIN_REQ: u64 = 1;

/// Just the fields we act on; `&str` borrows from the frame, so parsing a
/// push allocates nothing beyond tungstenite's own frame buffer.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    req: Option<u64>,
    #[serde(default, borrow)]
    code: Option<&'a str>,
}

/// Which figures a push that arrives now counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Ramp,
    Hold,
    Done,
}

#[derive(Default)]
struct Counters {
    connected: u64,
    joined: u64,
    failed: u64,
    admitted: u64,
    lost: u64,
    pushes: u64,
    errors: BTreeMap<&'static str, u64>,
    connect_us: Histogram,
    join_us: Histogram,
    ramp_gap_us: Histogram,
    hold_gap_us: Histogram,
    first_connect_unix_us: Option<u64>,
    first_join_sent_unix_us: Option<u64>,
    last_join_reply_unix_us: Option<u64>,
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

    fn fail(&self, why: &'static str) {
        let mut c = self.counters.borrow_mut();
        c.failed += 1;
        *c.errors.entry(why).or_default() += 1;
    }

    /// A `queue` push arrived for buyer `slot`.
    fn on_push(&self, slot: usize, now: u64) {
        let last = self.last_push[slot].replace(now);
        if last == 0 {
            return;
        }
        let gap = now - last;
        let mut c = self.counters.borrow_mut();
        c.pushes += 1;
        match self.window.get() {
            Window::Ramp => c.ramp_gap_us.record(gap),
            Window::Hold => {
                c.hold_gap_us.record(gap);
                let max = &self.max_gap[slot];
                max.set(max.get().max(gap));
            }
            Window::Done => {}
        }
    }

    /// Buyer `slot` stopped waiting without us closing it.
    fn on_lost(&self, slot: usize, why: &'static str) {
        if self.last_push[slot].replace(0) != 0 {
            let mut c = self.counters.borrow_mut();
            c.lost += 1;
            *c.errors.entry(why).or_default() += 1;
        }
    }
}

/// One worker's sockets.
pub struct Crowd {
    shared: Rc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Crowd {
    /// Spawns one task per buyer on the current `LocalSet`.
    pub fn start(spec: &CrowdSpec) -> anyhow::Result<Self> {
        let b = &spec.buyers;
        host::check_fd_budget(b.count)?;
        anyhow::ensure!(!b.sources.is_empty(), "no source addresses");
        let join_frame = serde_json::json!({"type": "join", "event": b.event, "req": JOIN_REQ}).to_string();
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
        let (stop, stop_rx) = watch::channel(false);
        let gate = Rc::new(Semaphore::new(b.max_inflight.max(1)));
        let minter = Rc::new(Minter::new(&b.secret));
        let base = format!("ws://{}/ws?token=", b.host);
        let life = Duration::from_millis(b.max_life_ms);
        let tasks = (0..b.count)
            .map(|k| {
                let i = b.first + k;
                let source = b.sources[(i % b.sources.len() as u64) as usize];
                let user = format!("{}{i}", b.user_prefix);
                let ctx = SocketCtx {
                    shared: shared.clone(),
                    slot: k as usize,
                    server: b.server,
                    source,
                    gate: gate.clone(),
                    stop: stop_rx.clone(),
                    deadline: tokio::time::Instant::now() + life,
                };
                let (minter, base) = (minter.clone(), base.clone());
                tokio::task::spawn_local(async move {
                    match minter.buyer(&user) {
                        Ok(token) => ctx.run(format!("{base}{token}")).await,
                        Err(_) => ctx.shared.fail("token"),
                    }
                })
            })
            .collect();
        Ok(Self { shared, stop, tasks })
    }

    /// Reports progress about once a second until every buyer has joined
    /// or failed, or `deadline` passed; then the join figures.
    pub async fn ramp(&self, deadline: Duration, emit: impl Fn(&Report)) -> JoinReport {
        let s = &self.shared;
        crowdkit::ramp(deadline, emit, || {
            let c = s.counters.borrow();
            RampState {
                connected: c.connected,
                joined: c.joined,
                failed: c.failed,
                through: c.joined + c.failed + c.admitted >= s.count,
            }
        })
        .await;
        let mut c = s.counters.borrow_mut();
        JoinReport {
            requested: s.count,
            joined: c.joined,
            failed: c.failed,
            admitted: c.admitted,
            pending: s.count.saturating_sub(c.joined + c.failed + c.admitted),
            errors: c.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            connect_us: std::mem::take(&mut c.connect_us),
            join_us: std::mem::take(&mut c.join_us),
            first_join_sent_unix_us: c.first_join_sent_unix_us,
            last_join_reply_unix_us: c.last_join_reply_unix_us,
            first_connect_unix_us: c.first_connect_unix_us,
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
        let mut c = s.counters.borrow_mut();
        HoldReport {
            waiting,
            lost: c.lost,
            ramp_gap_us: std::mem::take(&mut c.ramp_gap_us),
            hold_gap_us: std::mem::take(&mut c.hold_gap_us),
            socket_max_gap_us,
            over_2s,
            pushes: c.pushes,
        }
    }

    /// Closes every socket (politely, bounded) and waits for the tasks.
    pub async fn close(self) -> Report {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT + Duration::from_secs(5);
        crowdkit::end_tasks(self.tasks, deadline).await
    }
}

/// What one buyer's task needs.
struct SocketCtx {
    shared: Rc<Shared>,
    slot: usize,
    server: std::net::SocketAddr,
    source: Ipv4Addr,
    gate: Rc<Semaphore>,
    stop: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
}

impl SocketCtx {
    async fn run(mut self, url: String) {
        let sh = self.shared.clone();
        // In flight = connecting or joining; waiting sockets free the slot.
        let Ok(permit) = self.gate.acquire().await else { return };
        if *self.stop.borrow() {
            return;
        }
        let started = Instant::now();
        {
            let mut c = sh.counters.borrow_mut();
            c.first_connect_unix_us.get_or_insert_with(unix_us);
        }
        let mut ws = match timeout(CONNECT_TIMEOUT, self.connect(&url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(why)) => return sh.fail(why),
            Err(_) => return sh.fail("connect: timed out"),
        };
        {
            let mut c = sh.counters.borrow_mut();
            c.connected += 1;
            c.connect_us.record(started.elapsed().as_micros() as u64);
        }
        match timeout(JOIN_TIMEOUT, self.join(&mut ws)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return sh.fail(why),
            Err(_) => return sh.fail("join: timed out"),
        }
        drop(permit);
        self.listen(&mut ws).await;
        polite_close(&mut ws).await;
    }

    async fn connect(&self, url: &str) -> Result<Ws, &'static str> {
        let stream = net::connect_from(self.source, self.server).await.map_err(|e| io_category(&e))?;
        let (mut ws, _) = client_async_with_config(url, stream, Some(ws_config())).await.map_err(|e| match e {
            tungstenite::Error::Http(resp) => match resp.status().as_u16() {
                429 => "upgrade: 429 rate limited",
                401 | 403 => "upgrade: refused token",
                503 => "upgrade: 503",
                _ => "upgrade: other HTTP status",
            },
            tungstenite::Error::Io(e) => io_category(&e),
            _ => "upgrade: protocol error",
        })?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if parse(&t).is_some_and(|f| f.kind == "hello") => Ok(ws),
            Some(Ok(_)) => Err("hello: unexpected first frame"),
            _ => Err("hello: closed before hello"),
        }
    }

    async fn join(&self, ws: &mut Ws) -> Result<(), &'static str> {
        let sh = &self.shared;
        let sent = sh.now_us();
        ws.send(Message::Text(sh.join_frame.clone())).await.map_err(|_| "join: send failed")?;
        {
            let mut c = sh.counters.borrow_mut();
            let unix = sh.to_unix(sent);
            c.first_join_sent_unix_us = Some(c.first_join_sent_unix_us.map_or(unix, |t| t.min(unix)));
        }
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                _ => return Err("join: closed before the reply"),
            };
            let Some(frame) = parse(&text) else { return Err("join: unreadable reply") };
            if frame.req != Some(JOIN_REQ) {
                continue; // a push can overtake the reply; it changes nothing here
            }
            let now = sh.now_us();
            let mut c = sh.counters.borrow_mut();
            return match frame.kind {
                "queue" => {
                    c.joined += 1;
                    c.join_us.record(now - sent);
                    let unix = sh.to_unix(now);
                    c.last_join_reply_unix_us = Some(c.last_join_reply_unix_us.map_or(unix, |t| t.max(unix)));
                    sh.last_push[self.slot].set(now);
                    Ok(())
                }
                "admitted" => {
                    c.admitted += 1;
                    c.join_us.record(now - sent);
                    Err("join: admitted at once (is the event paused?)")
                }
                "error" => Err(join_error(frame.code)),
                _ => Err("join: unexpected reply type"),
            };
        }
    }

    /// Waits, timing pushes, until told to stop, the server lets go, or
    /// the buyer's life ends.
    async fn listen(&mut self, ws: &mut Ws) {
        let sh = self.shared.clone();
        loop {
            tokio::select! {
                _ = self.stop.changed() => return,
                _ = tokio::time::sleep_until(self.deadline) => return,
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => match parse(&text).map(|f| (f.kind, f.req)) {
                        Some(("queue", None)) => sh.on_push(self.slot, sh.now_us()),
                        Some(("admitted", _)) => {
                            sh.counters.borrow_mut().admitted += 1;
                            sh.on_lost(self.slot, "wait: admitted during the hold");
                        }
                        Some(("left", _)) => sh.on_lost(self.slot, "wait: place gone"),
                        Some(("closing", _)) => sh.on_lost(self.slot, "wait: server closing"),
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None => return sh.on_lost(self.slot, "wait: closed by server"),
                    Some(Err(_)) => return sh.on_lost(self.slot, "wait: socket error"),
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

fn parse(text: &str) -> Option<Frame<'_>> {
    serde_json::from_str(text).ok()
}

fn join_error(code: Option<&str>) -> &'static str {
    match code {
        Some("rate_limited") => "join: rate_limited",
        Some("not_found") => "join: not_found",
        Some("unauthorized") => "join: unauthorized",
        Some("unavailable") => "join: unavailable",
        _ => "join: other error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_without_copying() {
        let f = parse(r#"{"type":"queue","event":"e","position":3,"waiting":9,"req":1}"#).unwrap();
        assert_eq!((f.kind, f.req), ("queue", Some(1)));
        let f = parse(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).unwrap();
        assert_eq!(join_error(f.code), "join: rate_limited");
        assert!(parse("not json").is_none());
        assert!(parse(r#"{"no":"type"}"#).is_none());
    }
}
