//! The accept loop: HTTP/1.1 connections (and the WebSockets upgraded from
//! them) with bounds on what any one client can hold. A connection must send
//! each request head within a time-out, counts against a global cap below
//! the open-file limit and against a cap per client address, and keeps its
//! place until its socket closes, upgraded or not.
//!
//! It never decides anything about requests; the router does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, error, warn};

use crate::config::ServerConfig;

/// Kernel send buffer per client socket. Left to autotuning, one client that
/// stops reading can park megabytes in the kernel before the server even
/// notices; with a bound, its frames back up into its bounded queue and the
/// slow-client rules (resync, then close) take over.
const SOCKET_SEND_BUFFER: usize = 256 * 1024;
/// Largest request head hyper buffers; past it hyper answers 431 itself.
/// Also the most a slow client can make us buffer per connection.
const MAX_HEAD_BUFFER: usize = 64 * 1024;
/// Headers hyper parses at most; the router refuses more than
/// [`crate::http::guard::MAX_HEADERS`] with a proper error first.
const MAX_PARSED_HEADERS: usize = 256;
/// File descriptors kept for the process itself (database, Redis, Kafka,
/// logs) when the connection cap is derived from the open-file limit: this
/// many, or a quarter of a low limit.
const RESERVED_FDS: u64 = 512;
/// How long open HTTP requests get to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one "connection limit reached" line per this interval.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// Why a connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Global,
    PerAddress,
}

/// Open connections, in total and per client address.
pub struct ConnLimits {
    global: Arc<Semaphore>,
    max_global: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// 0: no cap per address.
    max_per_ip: u32,
}

/// A connection's place under the limits, given back when it drops.
pub struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    limits: Arc<ConnLimits>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.limits.max_per_ip == 0 {
            return;
        }
        let mut map = self.limits.per_ip.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The connection cap: configured, or the open-file limit less a reserve.
pub fn max_connections(cfg: &ServerConfig) -> u32 {
    if cfg.max_connections > 0 {
        return cfg.max_connections;
    }
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1_024);
    let reserve = RESERVED_FDS.min(soft / 4);
    u32::try_from(soft.saturating_sub(reserve).max(16)).unwrap_or(u32::MAX)
}

impl ConnLimits {
    pub fn new(max_global: u32, max_per_ip: u32) -> Arc<Self> {
        Arc::new(Self {
            global: Arc::new(Semaphore::new(max_global as usize)),
            max_global,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let permit = self.global.clone().try_acquire_owned().map_err(|_| Refused::Global)?;
        if self.max_per_ip > 0 {
            let mut map = self.per_ip.lock();
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        Ok(ConnGuard { _permit: permit, ip, limits: self.clone() })
    }

    pub fn max(&self) -> u32 {
        self.max_global
    }

    pub fn open(&self) -> u32 {
        self.max_global - self.global.available_permits() as u32
    }
}

/// A client socket that holds its place under the limits for as long as it
/// lives, including after an upgrade to a WebSocket. It also gives hyper's
/// own bodyless parse-error replies the contract's error shape.
struct GuardedIo {
    tcp: TcpStream,
    _guard: ConnGuard,
    /// Armed while a write waits for the client to read; when it fires the
    /// write fails, so a client that stops reading cannot keep a response
    /// (and its connection) forever.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    stall_timeout: Duration,
    /// Switched to a WebSocket: its session has a send time-out of its own,
    /// and its fan-out should not pay for a timer per full send buffer.
    upgraded: bool,
    /// A reshaped reply being written in place of hyper's, and the length of
    /// hyper's, reported as written once ours is out.
    reshaped: Option<(Vec<u8>, usize, usize)>,
}

impl GuardedIo {
    fn new(tcp: TcpStream, guard: ConnGuard, stall_timeout: Duration) -> Self {
        Self { tcp, _guard: guard, stalled: None, stall_timeout, upgraded: false, reshaped: None }
    }

    /// hyper's 101 reply is the last thing it writes before handing the
    /// socket over.
    fn note_upgrade(&mut self, bytes: &[u8]) {
        self.upgraded |= bytes.starts_with(b"HTTP/1.1 101 ");
    }

    /// Tracks how long writes have been waiting on the client.
    fn watch_stall<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.upgraded || !polled.is_pending() {
            self.stalled = None;
            return polled;
        }
        let stall_timeout = self.stall_timeout;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall_timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_reshaped(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, replaced)) = &mut self.reshaped {
            if *written == bytes.len() {
                let replaced = *replaced;
                self.reshaped = None;
                return Poll::Ready(Ok(replaced));
            }
            match Pin::new(&mut self.tcp).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // Once upgraded, the bytes are WebSocket frames: nothing to reshape.
        if !self.upgraded && self.reshaped.is_none() {
            match crate::http::guard::reshape_parse_error(buf) {
                Some(bytes) => self.reshaped = Some((bytes, 0, buf.len())),
                None => self.note_upgrade(buf),
            }
        }
        let polled =
            if self.reshaped.is_some() { self.poll_reshaped(cx) } else { Pin::new(&mut self.tcp).poll_write(cx, buf) };
        self.watch_stall(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A parse-error reply, like the 101, is a head alone: one buffer,
        // which `poll_write` looks at.
        if let [only] = bufs {
            return self.poll_write(cx, only);
        }
        if !self.upgraded
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            self.note_upgrade(first);
        }
        let polled = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.watch_stall(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// How the accept loop serves connections.
pub struct ServeSettings {
    pub header_timeout: Duration,
    /// A response write the client does not let through for this long fails.
    pub write_stall_timeout: Duration,
    pub limits: Arc<ConnLimits>,
}

impl ServeSettings {
    /// For an operator-only listener (metrics): few connections, no cap per
    /// address.
    pub fn internal() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            limits: ConnLimits::new(64, 0),
        }
    }

    pub fn from_config(cfg: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_secs(cfg.http_header_timeout_s),
            write_stall_timeout: Duration::from_secs(cfg.http_write_stall_s),
            limits: ConnLimits::new(max_connections(cfg), cfg.max_connections_per_ip),
        }
    }
}

/// Logs refusals of each kind at most once per [`LIMIT_LOG_EVERY`], with
/// how many there were.
#[derive(Default)]
struct RefusalLog {
    refused: AtomicU64,
    /// When each kind was last logged: global, per address.
    last: Mutex<[Option<tokio::time::Instant>; 2]>,
}

impl RefusalLog {
    fn note(&self, why: Refused, ip: IpAddr, limits: &ConnLimits) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock();
        let last = &mut last[why as usize];
        if last.is_some_and(|t| now.duration_since(t) < LIMIT_LOG_EVERY) {
            return;
        }
        *last = Some(now);
        match why {
            Refused::Global => warn!(
                open = limits.open(),
                max = limits.max_global,
                refused_total = n,
                "connection limit reached; closing new connections (raise --max-connections or the open-file limit)"
            ),
            Refused::PerAddress => warn!(
                %ip,
                max = limits.max_per_ip,
                refused_total = n,
                "per-address connection limit reached; closing that address's new connections (--max-connections-per-ip)"
            ),
        }
    }
}

/// Accept errors that concern one connection only.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then asks
/// every open HTTP connection to finish its request and waits for them (not
/// for upgraded sockets: their sessions say goodbye themselves).
pub async fn serve(listener: TcpListener, router: Router, settings: ServeSettings, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let refusals = RefusalLog::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_headers(MAX_PARSED_HEADERS);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of files or memory: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let guard = match settings.limits.admit(peer.ip()) {
            Ok(guard) => guard,
            Err(why) => {
                refusals.note(why, peer.ip(), &settings.limits);
                drop(tcp);
                continue;
            }
        };
        // Small frames should not wait for Nagle; failures only cost latency.
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SOCKET_SEND_BUFFER);
        let io = TokioIo::new(GuardedIo::new(tcp, guard, settings.write_stall_timeout));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = http.serve_connection(io, service).with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let done = tokio::select! {
                done = conn.as_mut() => done,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        warn!(open = connections.len(), "HTTP connections still open after the drain timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_address_and_give_places_back() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refused::PerAddress));
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Refused::Global));
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refused::Global));
    }

    #[test]
    fn a_refused_address_does_not_leak_a_global_place() {
        let limits = ConnLimits::new(10, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _a1 = limits.admit(a).unwrap();
        for _ in 0..20 {
            assert_eq!(limits.admit(a).err(), Some(Refused::PerAddress));
        }
        assert_eq!(limits.open(), 1);
    }

    #[test]
    fn no_cap_per_address_when_zero() {
        let limits = ConnLimits::new(5, 0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let guards: Vec<_> = (0..5).map(|_| limits.admit(a).unwrap()).collect();
        assert_eq!(limits.admit(a).err(), Some(Refused::Global));
        drop(guards);
        assert_eq!(limits.open(), 0);
    }
}
