//! What an attacker tries: connections held open half-sent or idle, floods
//! of pings and of messages, tokens that are not yet valid or of the wrong
//! role, and requests hyper or axum refuse before any handler runs. Each
//! must be bounded, answered in the one error shape, and leave the server
//! serving everybody else.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qt_protocol::{Claims, ClientMsg, Role};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{
    Backend, ChildServer, Client, EVENT, Options, TestServer, http, http_with, temp_dir, unix_now_s, upgrade_status,
};

/// One request on its own connection, written out byte for byte (these
/// tests send what no HTTP client would); the whole reply as status, head,
/// body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("reply in time").ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra_headers}\r\n").into_bytes()
}

fn assert_shaped(status: u16, body: &str, want_status: u16, want_code: &str, what: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body:?}"));
    assert_eq!(v["error"]["code"], want_code, "{what}: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_one_shape_even_before_a_handler_runs() {
    let server = TestServer::start(Backend::Memory).await;
    let a = server.addr;

    let (status, head, body) = raw(a, b"PUT /api/v1/events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
    assert_shaped(status, &body, 405, "bad_request", "405");
    assert!(head.contains("\r\nallow: get"), "405 keeps Allow: {head}");

    let long = format!("/api/v1/events/{}", "a".repeat(10_000));
    let (status, _, body) = raw(a, &get(&long, "")).await;
    assert_shaped(status, &body, 414, "bad_request", "414 from the router");
    // Past what hyper parses at all: its own reply, reshaped.
    let longer = format!("/{}", "a".repeat(70_000));
    let (status, _, body) = raw(a, &get(&longer, "")).await;
    assert_shaped(status, &body, 414, "bad_request", "414 from hyper");

    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _, body) = raw(a, &get("/healthz", &many)).await;
    assert_shaped(status, &body, 431, "bad_request", "431 from the router");
    let too_many: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _, body) = raw(a, &get("/healthz", &too_many)).await;
    assert_shaped(status, &body, 431, "bad_request", "431 from hyper");

    let (status, _, body) = raw(a, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_shaped(status, &body, 400, "bad_request", "garbage");

    let token = server.buyer_token("twice");
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let (status, _, body) = raw(a, &get(&format!("/ws?token={token}&token={token}"), upgrade)).await;
    assert_shaped(status, &body, 400, "bad_request", "repeated ?token=");
    let (status, _, body) = raw(a, &get(&format!("/ws?token={token}"), "")).await;
    assert_shaped(status, &body, 400, "bad_request", "not an upgrade");

    let (status, _, body) = raw(a, &get(&format!("/api/v1/events/{EVENT}/seatmap?format=bogus"), "")).await;
    assert_shaped(status, &body, 400, "bad_request", "bad query");
    let (status, _, body) = raw(a, &get("/no/such/route", "")).await;
    assert_shaped(status, &body, 404, "not_found", "unknown route");

    // The server still serves after all of that.
    let (status, _, body) = raw(a, &get("/healthz", "")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_api_carry_the_security_headers() {
    let server = TestServer::start(Backend::Memory).await;
    let (_, head, _) = raw(server.addr, &get("/", "")).await;
    let csp = head.lines().find_map(|l| l.strip_prefix("content-security-policy: ")).unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "{head}");
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(head.contains("\r\nx-frame-options: deny"), "{head}");
    for path in ["/", "/js/main.js", "/api/v1/events", "/no/such/route"] {
        let (_, head, _) = raw(server.addr, &get(path, "")).await;
        assert!(head.contains("\r\nx-content-type-options: nosniff"), "{path}: {head}");
        assert!(head.contains("\r\nreferrer-policy: no-referrer"), "{path}: {head}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_loopback_clients_or_a_token() {
    const TOKEN: &str = "metrics-token-0123456789";
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| {
        cfg.trust_forwarded_for = true;
        cfg.metrics_token = Some(queueticket::config::Secret(TOKEN.into()));
    };
    let server = TestServer::start_with(opts).await;
    let remote = [("X-Forwarded-For", "203.0.113.7")];
    let r = http_with(server.addr, "GET", "/metrics", None, None, &remote).await.unwrap();
    assert_shaped(r.status, &r.body, 403, "forbidden", "metrics from afar");
    let r = http_with(server.addr, "GET", "/metrics", Some("wrong-token-0123456789"), None, &remote).await.unwrap();
    assert_eq!(r.status, 403, "a wrong token opens nothing");
    let r = http_with(server.addr, "GET", "/metrics", Some(TOKEN), None, &remote).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("qt_sockets_open"));
    let r = http_with(server.addr, "GET", "/metrics", None, None, &[]).await.unwrap();
    assert_eq!(r.status, 200, "loopback needs no token");
    server.stop().await;

    // On a separate listener: there, and not on the main one.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut opts = Options::new(Backend::Memory);
    opts.child_args = vec!["--metrics-listen".into(), format!("127.0.0.1:{metrics_port}")];
    let child = ChildServer::start(&opts).await;
    let r = http_with(child.addr, "GET", "/metrics", None, None, &[]).await.unwrap();
    assert_shaped(r.status, &r.body, 404, "not_found", "metrics moved away");
    let at: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let r = http_with(at, "GET", "/metrics", None, None, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("qt_sockets_open"));
    child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buyer_socket_is_for_buyers_with_tokens_valid_now() {
    let server = TestServer::start(Backend::Memory).await;
    let now = unix_now_s();
    let mint =
        |role, iat, nbf| server.mint(&Claims { sub: "u-time".into(), role, exp: now + 600, iat, nbf, seller: None });
    assert_eq!(upgrade_status(server.addr, Some(&mint(Role::Admin, Some(now), None))).await, 403, "admin");
    assert_eq!(
        upgrade_status(server.addr, Some(&mint(Role::Buyer, Some(now), Some(now + 300)))).await,
        401,
        "nbf ahead"
    );
    assert_eq!(upgrade_status(server.addr, Some(&mint(Role::Buyer, Some(now + 300), None))).await, 401, "iat ahead");
    assert_eq!(upgrade_status(server.addr, Some(&mint(Role::Buyer, Some(now), Some(now - 1)))).await, 101, "valid");
    // The same rules on REST.
    let admin = mint(Role::Admin, Some(now), None);
    let r = http(server.addr, "POST", &format!("/api/v1/events/{EVENT}/queue"), Some(&admin), None).await.unwrap();
    assert_shaped(r.status, &r.body, 403, "forbidden", "admin joining a queue");
    server.stop().await;
}

/// Reads until the server closes; the close code and reason, and when.
async fn close_of<S>(rx: &mut S, within: Duration) -> Option<(CloseCode, String, Instant)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Some((f.code, f.reason.to_string(), Instant::now())),
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_ends_in_1008() {
    let server = TestServer::start(Backend::Memory).await;
    let ws = Client::try_connect(server.addr, Some(&server.buyer_token("pinger"))).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let started = Instant::now();
    // A thousand pings a second, fifty times the limit. Flat out, the
    // flooder also fills both directions' buffers, and the server closing
    // with pings unread makes the kernel reset the connection, dropping the
    // close frame still queued behind the pongs (a test artefact, not the
    // behaviour under test).
    let flood = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while started.elapsed() < Duration::from_secs(15) {
            tick.tick().await;
            if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                break;
            }
        }
    });
    let (code, reason, at) = close_of(&mut rx, Duration::from_secs(15)).await.expect("closed with a close frame");
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("rate limit"), "{reason}");
    let after = at.duration_since(started);
    // Three seconds over the limit (the default), not at the first refusal.
    assert!(after >= Duration::from_millis(2_500) && after < Duration::from_secs(10), "closed after {after:?}");
    flood.abort();
    assert_eq!(server.metric("qt_abusive_sockets_closed_total").await, 1.0);
    // Others are still served.
    let mut other = server.buyer("calm").await;
    assert_eq!(other.ping().await["type"], "pong");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hammering_socket_is_closed_and_a_bursty_one_is_not() {
    let server = TestServer::start(Backend::Memory).await;
    // Eight times the default 20 messages a second.
    let ws = Client::try_connect(server.addr, Some(&server.buyer_token("hammer"))).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let started = Instant::now();
    let hammer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(6_250));
        while started.elapsed() < Duration::from_secs(15) {
            tick.tick().await;
            if tx.send(Message::Text(ClientMsg::Ping.to_frame(None).into())).await.is_err() {
                break;
            }
        }
    });
    let mut limited = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let closed = loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    assert_eq!(v["code"], "rate_limited");
                    limited += 1;
                }
            }
            Ok(Some(Ok(Message::Close(Some(f))))) => break Some((f.code, f.reason.to_string(), started.elapsed())),
            Ok(Some(Ok(_))) => {}
            _ => break None,
        }
    };
    hammer.abort();
    let (code, reason, after) = closed.expect("the hammering socket is closed");
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("rate limit"), "{reason}");
    assert!(limited > 0, "it was told first");
    assert!(after < Duration::from_secs(10), "closed after {after:?}");

    // Bursts over the limit with pauses between them: told, never closed.
    let mut bursty = server.buyer("bursty").await;
    let mut told = 0;
    for _ in 0..4 {
        for _ in 0..50 {
            bursty.send_msg(&ClientMsg::Ping, None).await;
        }
        let pause = tokio::time::Instant::now() + Duration::from_millis(2_500);
        while let Ok(Some(v)) = tokio::time::timeout_at(pause, bursty.try_recv(Duration::from_secs(5))).await {
            if v["code"] == "rate_limited" {
                told += 1;
            }
        }
    }
    assert!(told > 0, "bursts over the limit are told so");
    assert_eq!(bursty.ping().await["type"], "pong", "and stay open");
    server.stop().await;
}

/// Opens `n` connections from `from`, each sending half a request line and
/// then nothing.
async fn half_open(to: SocketAddr, from: IpAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        if let Ok(mut s) = socket.connect(to).await
            && s.write_all(b"GET /healthz HT").await.is_ok()
        {
            out.push(s);
        }
    }
    out
}

/// Splits connections into those still open and the number the server has
/// closed, without waiting on any.
async fn still_open(conns: Vec<TcpStream>) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::new();
    let mut closed = 0;
    for s in conns {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
        // The socket is non-blocking: nothing to read yet means still open.
        match socket2::SockRef::from(&s).peek(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open.push(s),
            _ => closed += 1,
        }
    }
    (open, closed)
}

/// `still_open` again and again until `done(open, closed)` or `deadline`.
async fn settle_open(
    mut open: Vec<TcpStream>,
    done: impl Fn(usize, usize) -> bool,
    deadline: Instant,
) -> (Vec<TcpStream>, usize) {
    let mut closed = 0;
    loop {
        let (still, now_closed) = still_open(open).await;
        (open, closed) = (still, closed + now_closed);
        if done(open.len(), closed) || Instant::now() >= deadline {
            return (open, closed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn healthz_from(addr: SocketAddr) -> u16 {
    let r = tokio::time::timeout(Duration::from_secs(3), raw(addr, &get("/healthz", ""))).await;
    r.map(|(status, _, _)| status).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_on_a_low_file_limit_is_bounded_and_logged() {
    let logs = temp_dir();
    let log = logs.path().join("server.log");
    let mut opts = Options::new(Backend::Memory);
    opts.child_nofile = Some(512);
    opts.child_log = Some(log.clone());
    opts.child_args = ["--http-header-timeout-s", "4", "--max-connections-per-ip", "100"].map(String::from).to_vec();
    let child = ChildServer::start(&opts).await;
    // A quarter of 512 files is kept for the process: 384 connections.
    let opened = Instant::now();
    let mut conns = Vec::new();
    for host in 2..=9u8 {
        conns.extend(half_open(child.addr, IpAddr::from([127, 0, 0, host]), 100).await);
    }
    assert!(opened.elapsed() < Duration::from_secs(3), "opening took {:?}", opened.elapsed());
    // Refused ones are closed right after accept: wait until no more than
    // the cap are open (well before the head time-out frees the rest).
    let (held, refused) = settle_open(conns, |open, _| open <= 384, opened + Duration::from_secs(3)).await;
    assert!(held.len() <= 384, "held {} connections past the cap", held.len());
    assert!(held.len() >= 300, "held only {}", held.len());
    assert!(refused >= 400, "refused {refused}");

    // The head time-out frees them: not before it, and not long after.
    // Staying open until just before it is what is under test.
    tokio::time::sleep_until((opened + Duration::from_millis(3_500)).into()).await;
    let (held, early) = still_open(held).await;
    assert_eq!(early, 0, "closed before the head time-out");
    for mut s in held {
        let mut buf = [0u8; 256];
        let r = tokio::time::timeout_at((opened + Duration::from_secs(9)).into(), s.read(&mut buf)).await;
        assert!(r.is_ok(), "a half-open connection outlived the head time-out");
    }
    assert_eq!(healthz_from(child.addr).await, 200, "serves again once they are gone");

    // Per address: one address cannot take what another needs.
    let crowded = Instant::now();
    let crowd = half_open(child.addr, IpAddr::from([127, 0, 0, 10]), 150).await;
    let (crowd, refused) = settle_open(crowd, |_, closed| closed >= 50, crowded + Duration::from_secs(3)).await;
    assert_eq!((crowd.len(), refused), (100, 50));
    assert_eq!(healthz_from(child.addr).await, 200, "other addresses still get in");
    drop(crowd);
    child.kill().await;

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("connection limit reached"), "{text}");
    assert!(text.contains("per-address connection limit reached"), "{text}");
    assert!(!text.contains("Too many open files"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_5000_half_open_connections_are_held() {
    let mut opts = Options::new(Backend::Memory);
    // The shipped defaults: 1,000 per address, a 10 s head time-out.
    opts.child_args = ["--max-connections-per-ip", "1000"].map(String::from).to_vec();
    let child = ChildServer::start(&opts).await;
    let mut conns = Vec::new();
    for host in 2..=11u8 {
        conns.extend(half_open(child.addr, IpAddr::from([127, 0, 0, host]), 500).await);
    }
    let t = Instant::now();
    assert_eq!(healthz_from(child.addr).await, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "healthz took {:?}", t.elapsed());
    // The server accepts in order, so by now it has taken (or refused) every
    // one of them; a refused one is closed right after accept.
    let (held, refused) = still_open(conns).await;
    assert_eq!((held.len(), refused), (5_000, 0), "under every limit");
    let mut idle = TcpStream::connect(child.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut opts = Options::new(Backend::Memory);
    opts.child_args = ["--http-header-timeout-s", "2"].map(String::from).to_vec();
    let child = ChildServer::start(&opts).await;
    let mut s = TcpStream::connect(child.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "still open after 6 s: {r:?}");
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(1_800), "closed after only {idle:?}");
    child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_gets_408() {
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| cfg.http_request_timeout_s = 2;
    let server = TestServer::start_with(opts).await;
    let partial = format!(
        "PATCH /api/v1/seller/events/{EVENT}/queue HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"paused\"",
        server.seller_token("demo")
    );
    let sent = Instant::now();
    let (status, _, body) = raw(server.addr, partial.as_bytes()).await;
    let took = sent.elapsed();
    assert_shaped(status, &body, 408, "bad_request", "slow body");
    assert!(took >= Duration::from_millis(1_800) && took < Duration::from_secs(6), "answered after {took:?}");
    let path = format!("/api/v1/seller/events/{EVENT}/queue");
    let settings = http(server.addr, "GET", &path, Some(&server.seller_token("demo")), None).await.unwrap();
    assert_eq!(settings.json()["paused"], false, "nothing changed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let mut opts = Options::new(Backend::Memory);
    opts.tweak = |cfg| cfg.http_write_stall_s = 2;
    let server = TestServer::start_with(opts).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    // Far more answer than the kernel buffers hold: hundreds of full maps.
    let one = format!("GET /api/v1/events/{EVENT}/seatmap HTTP/1.1\r\nHost: t\r\n\r\n");
    s.write_all(one.repeat(500).as_bytes()).await.unwrap();
    // Not reading for five seconds, past the stall time-out, is what is
    // under test.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Now read: a dropped connection ends once the buffers are drained; one
    // still served would go on for hundreds of megabytes.
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "still streaming after {total} bytes");
    assert!(total < 50 << 20, "read {total} bytes: the server kept writing");
    assert_eq!(healthz_from(server.addr).await, 200);
    server.stop().await;
}
