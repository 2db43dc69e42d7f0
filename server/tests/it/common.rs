//! Test harness: a real server on a random port (in process, or as a child
//! process for kill tests), real WebSocket and HTTP clients, and token
//! minting with the server's secret. Logs show with TEST_LOG=1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use queueticket::ServerConfig;
use queueticket::auth::{Auth, Claims, Role, unix_now_s};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const EVENT: &str = "demo-live";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const KAFKA_TOPIC: &str = "qt.seat-diffs";
const WAIT: Duration = Duration::from_secs(10);

pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("info,queueticket=debug").with_test_writer().try_init();
        }
    });
}

/// Which waiting-room adapter a server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// Redis under this key prefix (shared by the nodes of one test).
    Redis(String),
}

impl Backend {
    pub fn redis() -> Self {
        Backend::Redis(format!("qt-it-{:016x}", rand::random::<u64>()))
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qt-it-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub struct Options {
    pub backend: Backend,
    /// Shared SQL database (for clusters); default: SQLite in the data dir.
    pub database_url: Option<String>,
    pub secret: String,
    pub node_id: Option<String>,
    /// Kafka bootstrap servers (a mock cluster's) for seat diffs.
    pub kafka: Option<String>,
    /// Use this data directory (default: a fresh one).
    pub data_dir: Option<PathBuf>,
    /// Let the server take its secret from DATA_DIR/jwt.secret (generating
    /// it if missing) instead of `secret`.
    pub secret_from_data_dir: bool,
    pub tweak: fn(&mut ServerConfig),
    /// Child servers only: more flags, an open-file limit, and a file that
    /// gets the server's log.
    pub child_args: Vec<String>,
    pub child_nofile: Option<u64>,
    pub child_log: Option<PathBuf>,
}

impl Options {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            database_url: None,
            secret: format!("it-secret-{:032x}", rand::random::<u128>()),
            node_id: None,
            kafka: None,
            data_dir: None,
            secret_from_data_dir: false,
            tweak: |_| {},
            child_args: Vec::new(),
            child_nofile: None,
            child_log: None,
        }
    }

    fn config(&self, data_dir: PathBuf) -> ServerConfig {
        let mut cfg = ServerConfig::for_data_dir(data_dir);
        cfg.jwt_secret = (!self.secret_from_data_dir).then(|| queueticket::config::Secret(self.secret.clone()));
        cfg.database_url = self.database_url.clone();
        cfg.node_id = self.node_id.clone();
        cfg.demo = Some(true);
        cfg.guest = Some(true);
        cfg.guest_per_min = 100_000;
        cfg.ws_upgrades_per_min = 1_000_000;
        // Every test client comes from 127.0.0.1.
        cfg.max_connections_per_ip = 0;
        cfg.notify_tick_ms = 200;
        cfg.admit_tick_ms = 50;
        if let Backend::Redis(prefix) = &self.backend {
            cfg.redis_url = Some(REDIS_URL.into());
            cfg.redis_prefix = prefix.clone();
        }
        if let Some(brokers) = &self.kafka {
            cfg.kafka_brokers = Some(brokers.clone());
            cfg.kafka_topic = KAFKA_TOPIC.into();
            cfg.kafka_partitions = 0; // the mock cluster has it already
        }
        (self.tweak)(&mut cfg);
        cfg
    }
}

/// A server running in this test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub auth: Auth,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), queueticket::StartError>>>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(Options::new(backend)).await
    }

    pub async fn start_with(opts: Options) -> Self {
        init_logs();
        let data_dir = opts.data_dir.clone().unwrap_or_else(temp_dir);
        let cfg = opts.config(data_dir.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(queueticket::run(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let placeholder = Auth::new(opts.secret.as_bytes(), None, None).expect("auth");
        let mut server = Self { addr, auth: placeholder, stop: Some(stop), task: Some(task) };
        server.wait_ready().await;
        if opts.secret_from_data_dir {
            let secret = std::fs::read_to_string(data_dir.join("jwt.secret")).expect("server wrote its secret");
            server.auth = Auth::new(secret.trim().as_bytes(), None, None).expect("auth");
        }
        server
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = http(self.addr, "GET", "/healthz", None, None).await
                && r.status == 200
            {
                return;
            }
            if let Some(task) = &self.task
                && task.is_finished()
            {
                panic!("server task ended during start-up");
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    pub fn buyer_token(&self, user: &str) -> String {
        self.auth.mint_hs(user, Role::Buyer, None, 3_600)
    }

    pub fn seller_token(&self, seller: &str) -> String {
        self.auth.mint_hs(&format!("{seller}-admin"), Role::Seller, Some(seller), 3_600)
    }

    pub fn expired_token(&self, user: &str) -> String {
        let claims =
            Claims { sub: user.into(), role: Role::Buyer, exp: unix_now_s() - 600, iat: None, nbf: None, seller: None };
        self.auth.mint(&claims, jsonwebtoken::Algorithm::HS256).expect("mint")
    }

    pub async fn buyer(&self, user: &str) -> Client {
        Client::connect(self.addr, &self.buyer_token(user)).await
    }

    /// Changes the demo event's queue settings as its seller.
    pub async fn patch_queue(&self, body: Value) -> Value {
        let r = http(
            self.addr,
            "PATCH",
            &format!("/api/v1/seller/events/{EVENT}/queue"),
            Some(&self.seller_token("demo")),
            Some(body),
        )
        .await
        .expect("patch");
        assert_eq!(r.status, 200, "patch refused: {}", r.body);
        r.json()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.addr, name).await
    }
}

pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let r = http(addr, "GET", "/metrics", None, None).await.expect("metrics");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// A server running as a child process of the test, so it can be killed.
pub struct ChildServer {
    pub addr: SocketAddr,
    child: tokio::process::Child,
}

impl ChildServer {
    pub async fn start(opts: &Options) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let node_id = opts.node_id.clone().unwrap_or_else(|| format!("child-{port}"));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_queueticket"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(temp_dir())
            .arg("--jwt-secret")
            .arg(&opts.secret)
            .arg("--node-id")
            .arg(&node_id)
            .arg("--admit-tick-ms")
            .arg("50")
            .arg("--notify-tick-ms")
            .arg("200")
            .arg("--ws-upgrades-per-min")
            .arg("1000000")
            .arg("--demo")
            .arg("true")
            .env_remove("QT_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if !opts.child_args.iter().any(|a| a == "--max-connections-per-ip") {
            // Every test client comes from 127.0.0.1.
            cmd.arg("--max-connections-per-ip").arg("0");
        }
        cmd.args(&opts.child_args);
        if let Some(path) = &opts.child_log {
            let log = std::fs::File::create(path).expect("child log file");
            cmd.stdout(Stdio::null()).stderr(log);
        } else if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if let Some(n) = opts.child_nofile {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
            }
        }
        if let Some(url) = &opts.database_url {
            cmd.arg("--database-url").arg(url);
        }
        if let Some(brokers) = &opts.kafka {
            cmd.arg("--kafka-brokers")
                .arg(brokers)
                .arg("--kafka-topic")
                .arg(KAFKA_TOPIC)
                .arg("--kafka-partitions")
                .arg("0");
        }
        if let Backend::Redis(prefix) = &opts.backend {
            cmd.arg("--redis-url").arg(REDIS_URL).arg("--redis-prefix").arg(prefix);
        }
        let child = cmd.spawn().expect("spawn queueticket");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(http(addr, "GET", "/healthz", None, None).await, Ok(r) if r.status == 200) {
            assert!(tokio::time::Instant::now() < deadline, "child server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { addr, child }
    }

    /// SIGKILL: no goodbye, no lease release.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill child");
    }
}

pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The HTTP status of a socket upgrade with `token` (101 when it opened).
pub async fn upgrade_status(addr: SocketAddr, token: Option<&str>) -> u16 {
    match Client::try_connect(addr, token).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// A minimal HTTP/1.1 request (one per connection).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> std::io::Result<HttpReply> {
    http_with(addr, method, path, token, body, &[]).await
}

pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    for (name, value) in headers {
        auth.push_str(&format!("{name}: {value}\r\n"));
    }
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.map_err(std::io::Error::other)??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(HttpReply { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A buyer's socket.
pub struct Client {
    ws: Ws,
    next_req: i64,
    pub user: String,
}

/// How a socket ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<CloseFrame>),
    Dropped,
}

impl Client {
    pub async fn try_connect(addr: SocketAddr, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let url = match token {
            Some(t) => format!("ws://{addr}/ws?token={t}"),
            None => format!("ws://{addr}/ws"),
        };
        let request = url.into_client_request()?;
        Ok(tokio_tungstenite::connect_async(request).await?.0)
    }

    pub async fn connect(addr: SocketAddr, token: &str) -> Self {
        let ws = Self::try_connect(addr, Some(token)).await.expect("websocket upgrade");
        let mut c = Self { ws, next_req: 1, user: String::new() };
        let hello = c.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["protocol"], 1);
        c.user = hello["user"].as_str().expect("user").to_owned();
        c
    }

    /// Connects with the token in the `Authorization` header instead.
    pub async fn connect_with_header(addr: SocketAddr, token: &str) -> Self {
        let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
        let ws = tokio_tungstenite::connect_async(request).await.expect("upgrade").0;
        let mut c = Self { ws, next_req: 1, user: String::new() };
        let hello = c.recv().await;
        c.user = hello["user"].as_str().expect("user").to_owned();
        c
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(Message::Text(v.to_string().into())).await;
    }

    /// The next text frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("a frame in time")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("server sends JSON")),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        self.recv_type_within(kind, WAIT).await
    }

    pub async fn recv_type_within(&mut self, kind: &str, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.try_recv(left).await.unwrap_or_else(|| panic!("no `{kind}` frame in time"));
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Sends a request with a fresh `req` and returns the reply carrying it
    /// (pushes in between are skipped).
    pub async fn request(&mut self, mut v: Value) -> Value {
        let req = self.next_req;
        self.next_req += 1;
        v["req"] = json!(req);
        self.send(v).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply = self.try_recv(left).await.unwrap_or_else(|| panic!("no reply to req {req}"));
            if reply["req"] == json!(req) {
                return reply;
            }
        }
    }

    pub async fn join(&mut self, event: &str) -> Value {
        self.request(json!({"type": "join", "event": event})).await
    }

    /// Waits for the server to end the socket.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("socket ends in time") {
                Some(Ok(Message::Close(frame))) => return Ended::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Deletes a test's Redis keys.
pub async fn purge_redis(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else { return };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// A buyer's view of an event's seat map, built the way a client must:
/// a snapshot, then diffs whose versions rise by exactly their changes.
pub struct MapView {
    pub version: u64,
    pub status: std::collections::HashMap<String, String>,
    pub gaps: usize,
}

impl MapView {
    pub fn from_snapshot(v: &Value) -> Self {
        assert_eq!(v["type"], "seatmap", "{v}");
        let status = v["seats"]
            .as_array()
            .expect("full seat list")
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
            .collect();
        Self { version: v["version"].as_u64().unwrap(), status, gaps: 0 }
    }

    /// Applies a `seats` frame; false on a gap (the client must re-watch).
    pub fn apply(&mut self, v: &Value) -> bool {
        let changes = v["changes"].as_array().expect("changes");
        let version = v["version"].as_u64().unwrap();
        if version != self.version + changes.len() as u64 {
            self.gaps += 1;
            return false;
        }
        for c in changes {
            self.status.insert(c["id"].as_str().unwrap().to_owned(), c["status"].as_str().unwrap().to_owned());
        }
        self.version = version;
        true
    }

    pub fn held(&self) -> std::collections::BTreeSet<String> {
        self.status.iter().filter(|(_, s)| *s != "free").map(|(id, _)| id.clone()).collect()
    }
}

/// The store's seat map, through REST.
pub async fn store_map(addr: SocketAddr, event: &str) -> MapView {
    let r = http(addr, "GET", &format!("/api/v1/events/{event}/seatmap"), None, None).await.expect("seatmap");
    assert_eq!(r.status, 200, "{}", r.body);
    MapView::from_snapshot(&r.json())
}

/// A socket that watches an event and keeps its map current until
/// `settle` says it matches the store.
pub struct Watcher {
    pub client: Client,
    pub map: MapView,
}

impl Watcher {
    pub async fn start(mut client: Client, event: &str) -> Self {
        let snapshot = client.request(json!({"type": "watch", "event": event})).await;
        Self { map: MapView::from_snapshot(&snapshot), client }
    }

    /// Reads frames until the map equals `want` (re-watching after a gap).
    pub async fn settle(&mut self, event: &str, want: &MapView, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.map.version != want.version || self.map.status != want.status {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "watcher stuck at v{} (store v{})", self.map.version, want.version);
            let Some(v) = self.client.try_recv(left).await else { continue };
            match v["type"].as_str() {
                Some("seats") if !self.map.apply(&v) => {
                    let snapshot = self.client.request(json!({"type": "watch", "event": event})).await;
                    self.map = MapView { gaps: self.map.gaps, ..MapView::from_snapshot(&snapshot) };
                }
                Some("seatmap") => self.map = MapView { gaps: self.map.gaps, ..MapView::from_snapshot(&v) },
                _ => {}
            }
        }
    }
}

pub fn position(v: &Value) -> u64 {
    assert_eq!(v["type"], "queue", "expected a queue frame, got {v}");
    v["position"].as_u64().expect("position")
}
