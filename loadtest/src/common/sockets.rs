//! What the crowds of a worker process (surge's sockets and pollers, the
//! seat map's watchers and holders) share: one task per buyer (`Tasks`,
//! each told its `Place`) and ending them by a deadline, the WebSocket
//! client's buffer sizes, opening a buyer's socket up to the server's
//! `hello`, one request and its reply in the shared wire types, a bounded
//! polite close, and progress reports while the sockets are being set up.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qt_protocol::{Envelope, ErrorCode, Req, ServerMsg};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes, protocol::WebSocketConfig};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::common::net::{self, io_category};
use crate::common::tokens::Minter;
use crate::common::wire::{Buyers, Closed};
use crate::common::worker;

/// A polite close waits this long for the server's close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

pub type Ws = WebSocketStream<TcpStream>;

/// Server frames ship a few hundred bytes; tungstenite's default 128 KiB
/// read buffer per socket would make the load generator the memory hog.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// A server frame in the shared wire types; `None` when it is not one.
pub fn read(text: &str) -> Option<Envelope> {
    serde_json::from_str(text).ok()
}

/// An error code by its wire name (`seat_unavailable`), for tallies.
pub fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{code:?}"),
    }
}

/// Connects from `source`, upgrades to the socket at `url` and waits for
/// the server's `hello`; a failure as a short fixed cause, so the crowds'
/// tallies stay bounded.
pub async fn open(source: Ipv4Addr, server: SocketAddr, url: &str) -> Result<Ws, &'static str> {
    let stream = net::connect_from(source, server).await.map_err(|e| io_category(&e))?;
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
        Some(Ok(Message::Text(t))) if read(&t).is_some_and(|f| matches!(f.msg, ServerMsg::Hello(_))) => Ok(ws),
        Some(Ok(_)) => Err("hello: unexpected first frame"),
        _ => Err("hello: closed before hello"),
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    Send,
    Closed,
    Socket,
    Unreadable,
}

impl Lost {
    pub fn as_str(self) -> &'static str {
        match self {
            Lost::Send => "send failed",
            Lost::Closed => "closed by server",
            Lost::Socket => "socket error",
            Lost::Unreadable => "unreadable reply",
        }
    }
}

/// Sends `frame`, a request with id `req`, and reads until its reply;
/// every other frame that arrives meanwhile goes to `push`.
pub async fn request(
    ws: &mut Ws,
    frame: Utf8Bytes,
    req: i64,
    mut push: impl FnMut(Envelope),
) -> Result<Envelope, Lost> {
    ws.send(Message::Text(frame)).await.map_err(|_| Lost::Send)?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match read(&t) {
                Some(reply) if reply.req == Some(Req::Int(req)) => return Ok(reply),
                Some(other) => push(other),
                None => return Err(Lost::Unreadable),
            },
            Some(Ok(Message::Close(_))) | None => return Err(Lost::Closed),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(Lost::Socket),
        }
    }
}

/// Polite close, bounded: sends ours, reads until the server's.
pub async fn polite_close(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        ws.close(None).await?;
        while let Some(msg) = ws.next().await {
            msg?;
        }
        Ok::<_, tungstenite::Error>(())
    })
    .await;
}

/// A crowd's set-up so far: sockets connected, set up (joined, watching or
/// admitted) and failed, and whether every socket is through (set up,
/// failed or otherwise settled).
pub struct RampState {
    pub connected: u64,
    pub joined: u64,
    pub failed: u64,
    pub through: bool,
}

/// Reports progress about once a second until `state` says every socket is
/// through or `deadline` passed.
pub async fn ramp(deadline: Duration, state: impl Fn() -> RampState) {
    let end = Instant::now() + deadline;
    let mut last_emit = Instant::now();
    loop {
        let RampState { connected, joined, failed, through } = state();
        if through || Instant::now() >= end {
            return;
        }
        if last_emit.elapsed() >= Duration::from_secs(1) {
            worker::progress(connected, joined, failed);
            last_emit = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where one buyer's task connects, and when it must end.
pub struct Place {
    /// Its place among its worker's buyers.
    pub slot: usize,
    /// Its number in the run.
    pub index: u64,
    pub server: SocketAddr,
    pub source: Ipv4Addr,
    /// Changes when the crowd closes.
    pub stop: watch::Receiver<bool>,
    /// It gives up by then, whatever happens.
    pub deadline: tokio::time::Instant,
}

/// A crowd's buyer tasks (on the current `LocalSet`) and the signal that
/// stops them.
pub struct Tasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self { stop: watch::channel(false).0, handles: Vec::new() }
    }
}

impl Tasks {
    /// One task per buyer of `b`, made by `task` from the buyer's place
    /// and its token (minted here).
    pub fn spawn_each<F: Future<Output = ()> + 'static>(
        &mut self,
        b: &Buyers,
        minter: &Minter,
        mut task: impl FnMut(Place, anyhow::Result<String>) -> F,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(b.max_life_ms);
        for buyer in b.each() {
            let place = Place {
                slot: buyer.slot,
                index: buyer.index,
                server: b.server,
                source: buyer.source,
                stop: self.stop.subscribe(),
                deadline,
            };
            let token = minter.buyer(&buyer.user);
            self.handles.push(tokio::task::spawn_local(task(place, token)));
        }
    }

    /// Tells every task to stop, waits up to `grace` for them and aborts
    /// the rest; how many ended on their own and how many were cut off.
    pub async fn end(self, grace: Duration) -> Closed {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        let total = self.handles.len() as u64;
        let mut forced = 0;
        for task in self.handles {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                forced += 1;
            }
        }
        Closed { closed: total - forced, forced }
    }
}
