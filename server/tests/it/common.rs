//! Test harness: a real server on a random port (in process, or as a child
//! process for kill tests), real WebSocket and HTTP (reqwest) clients
//! speaking the shared wire types (`qt_protocol`), tokens minted with the
//! server's secret, the services the Redis and Postgres tests need, each
//! checked with one clear message, and the payment sandboxes servers pay
//! through (a Redis-backed server needs a `--pg-base-url`: by default the
//! one sandbox of this test process). Logs show with TEST_LOG=1.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use qt_protocol::{Claims, ClientMsg, Envelope, Format, Req, Role, ServerMsg};
use queueticket::auth::Auth;
use queueticket::config::{Secret, ServerConfig};
use queueticket::gateway::sandbox::{Sandbox, SandboxSettings, standalone_router};
use queueticket::store::sql::SqlStore;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const EVENT: &str = "demo-live";
#[path = "../../src/testsupport.rs"]
mod testsupport;
pub use testsupport::{PgDatabase, REDIS_URL, require_redis};
pub const KAFKA_TOPIC: &str = "qt.seat-diffs";
/// The topic of coupon claims (Redis and Kafka both set).
pub const KAFKA_COUPON_TOPIC: &str = "qt.coupon-claims";
/// The topic of the outbox's order announcements (Kafka set).
pub const KAFKA_ORDER_TOPIC: &str = "qt.order-events";
/// The gateway secret key servers and test sandboxes share (the default).
pub const PG_SECRET: &str = "test_sk_sandbox";
/// Where the tests find Postgres unless `DATABASE_URL` says otherwise.
const WAIT: Duration = Duration::from_secs(10);

pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("info,queueticket=debug").with_test_writer().try_init();
        }
    });
}

// ------------------------------------------------------------ services

/// Which waiting-room adapter a server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// Redis under this key prefix (shared by the nodes of one test).
    Redis(String),
}

impl Backend {
    /// Redis under a fresh key prefix; the test fails with one clear line
    /// if Redis is not up.
    pub async fn redis() -> Self {
        require_redis().await;
        Backend::Redis(format!("qt-it-{:016x}", rand::random::<u64>()))
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

/// A Postgres database of one test's own, on the server `DATABASE_URL`
/// names (by default the one `scripts/services.sh` starts).
/// A temporary directory, removed when the value is dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("qt-it-").tempdir().expect("a temporary directory")
}

pub fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An RFC 3339 time from the wire (`expires_at`), in Unix milliseconds.
pub fn time_ms(v: &Value) -> i64 {
    let at = v.as_str().unwrap_or_else(|| panic!("a time, got {v}"));
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

// ------------------------------------------------------------ payment sandbox

/// A payment sandbox (memory ledger) on a thread and runtime of its own,
/// so it outlives the test that started it and serves servers in this
/// process and child processes alike. Its base URL is
/// `http://ADDR/pg-sandbox` (it answers at the root too).
pub fn spawn_sandbox(settings: SandboxSettings) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pg-sandbox".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the sandbox's runtime");
            rt.block_on(async move {
                let sandbox = Sandbox::open(None, PG_SECRET, settings).await.expect("a memory sandbox");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the sandbox");
                tx.send(listener.local_addr().expect("addr")).expect("report the sandbox's address");
                axum::serve(listener, standalone_router(Arc::new(sandbox))).await.expect("the sandbox serves");
            });
        })
        .expect("the sandbox's thread");
    rx.recv().expect("the sandbox started")
}

/// The sandbox every Redis-backed server of this test process pays
/// through (with --redis-url a server needs a --pg-base-url, and every
/// node of a cluster the same one), started on first use.
pub fn shared_sandbox() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| spawn_sandbox(SandboxSettings::default()))
}

/// The base URL (`--pg-base-url`) of the sandbox at `addr`.
pub fn sandbox_url(addr: SocketAddr) -> String {
    format!("http://{addr}/pg-sandbox")
}

/// The charges a sandbox recorded (its audit view), of one order or all.
pub async fn sandbox_charges(pg_base: &str, order: Option<&str>) -> Vec<Value> {
    let url = match order {
        Some(order) => format!("{pg_base}/v1/charges?orderId={order}&limit=10000"),
        None => format!("{pg_base}/v1/charges?limit=10000"),
    };
    let client = reqwest::Client::builder().no_proxy().timeout(WAIT).build().expect("a client");
    let r = client.get(&url).send().await.unwrap_or_else(|e| panic!("the sandbox's charges ({url}): {e}"));
    assert_eq!(r.status().as_u16(), 200, "the sandbox's charges ({url})");
    let v: Value = r.json().await.expect("charges are JSON");
    v["charges"].as_array().cloned().unwrap_or_default()
}

/// The payment sandbox as a process of its own (`queueticket pg-sandbox`,
/// memory ledger), so a test can freeze it (SIGSTOP: every request to it
/// hangs, as with a gateway that stopped answering) and thaw it again.
pub struct SandboxProcess {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    _data_dir: TempDir,
}

impl SandboxProcess {
    pub async fn start(slow_ms: u64) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let data_dir = temp_dir();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_queueticket"));
        cmd.arg("pg-sandbox")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--memory")
            .arg("--slow-ms")
            .arg(slow_ms.to_string())
            .env_remove("QT_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let mut child = cmd.spawn().expect("spawn queueticket pg-sandbox");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(http(addr, "GET", "/v1/charges", None, None).await, Ok(r) if r.status == 200) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the sandbox exited during start-up: {status}");
            }
            assert!(tokio::time::Instant::now() < deadline, "the sandbox did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { addr, child, _data_dir: data_dir }
    }

    /// Its base URL (`--pg-base-url`).
    pub fn url(&self) -> String {
        sandbox_url(self.addr)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the sandbox runs");
        let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGSTOP: it answers nothing until `thaw`.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: it works off what queued up meanwhile.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

/// A mock Kafka with every topic the nodes use (seat diffs, coupon claims,
/// order announcements), as the nodes run with `--kafka-partitions 0`.
pub fn mock_kafka(brokers: i32) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = rdkafka::mocking::MockCluster::new(brokers).expect("a mock Kafka cluster");
    cluster.create_topic(KAFKA_TOPIC, 3, 1).expect("the seat-diff topic");
    cluster.create_topic(KAFKA_COUPON_TOPIC, 4, 1).expect("the coupon topic");
    cluster.create_topic(KAFKA_ORDER_TOPIC, 3, 1).expect("the order-event topic");
    cluster
}

// ------------------------------------------------------------ catalogue

/// Seeds the catalogue database at `url` with the demo event and sets its
/// queue settings (column, value) before any node reads them. Settings a
/// test depends on from the first request go in here rather than through a
/// live patch: a node's once-a-second catalogue refresh that read the
/// settings just before a patch can put the old ones back for a round.
pub async fn seed_catalogue(url: &str, settings: &[(&str, i64)]) {
    const COLUMNS: [&str; 10] = [
        "on_sale_at_ms",
        "starts_at_ms",
        "refund_until_ms",
        "rate_per_min",
        "max_active",
        "window_s",
        "grace_s",
        "paused",
        "hold_s",
        "max_seats_per_buyer",
    ];
    let store = SqlStore::connect(url).await.expect("the catalogue database");
    assert!(store.seed_demo(now_ms()).await.expect("seed"), "a fresh database is seeded");
    store.close().await;
    let pool = sqlx::AnyPool::connect(url).await.expect("the catalogue database");
    for (column, value) in settings {
        assert!(COLUMNS.contains(column), "no queue setting `{column}`");
        sqlx::query(&format!("UPDATE events SET {column} = $1 WHERE id = $2"))
            .bind(*value)
            .bind(EVENT)
            .execute(&pool)
            .await
            .expect("demo settings");
    }
    pool.close().await;
}

/// Runs SQL statements on the catalogue database at `url` (before any node
/// reads it), for what `seed_catalogue`'s settings cannot say.
pub async fn catalogue_sql(url: &str, statements: &[&str]) {
    let pool = sqlx::AnyPool::connect(url).await.expect("the catalogue database");
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    pool.close().await;
}

/// Adds event `id` to a seeded catalogue: a copy of the demo event (same
/// seller, hall, tiers and settings).
pub async fn add_demo_copy(url: &str, id: &str) {
    let events = format!(
        "INSERT INTO events (id, seller_id, venue_id, name, starts_at_ms, on_sale_at_ms, currency, rate_per_min, \
         max_active, window_s, grace_s, paused, hold_s, max_seats_per_buyer, created_ms, refund_until_ms) \
         SELECT '{id}', seller_id, venue_id, name, starts_at_ms, on_sale_at_ms, currency, rate_per_min, \
         max_active, window_s, grace_s, paused, hold_s, max_seats_per_buyer, created_ms, refund_until_ms \
         FROM events WHERE id = '{EVENT}'"
    );
    let tiers = format!(
        "INSERT INTO event_tiers (event_id, id, name, price) SELECT '{id}', id, name, price FROM event_tiers WHERE event_id = '{EVENT}'"
    );
    catalogue_sql(url, &[&events, &tiers]).await;
}

/// Options for a server whose catalogue is a fresh SQLite database in its
/// data directory, seeded by `seed_catalogue`.
pub async fn seeded(backend: &Backend, settings: &[(&str, i64)]) -> Options {
    let dir = temp_dir();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("catalog.db").display());
    seed_catalogue(&url, settings).await;
    let mut opts = Options::new(backend.clone());
    opts.database_url = Some(url);
    opts.data_dir = Some(dir);
    opts
}

// ------------------------------------------------------------ tokens

/// A login token signed with `secret` (HS256), as any issuer sharing the
/// server's secret would mint it.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).expect("mint")
}

/// Claims for `sub` in `role`, issued now and valid for `ttl_s`.
pub fn claims(sub: &str, role: Role, ttl_s: u64) -> Claims {
    let now = unix_now_s();
    Claims { sub: sub.into(), role, exp: now + ttl_s, iat: Some(now), nbf: None, seller: None }
}

// ------------------------------------------------------------ servers

pub struct Options {
    pub backend: Backend,
    /// Shared SQL database (for clusters); default: SQLite in the data dir.
    pub database_url: Option<String>,
    pub secret: String,
    pub node_id: Option<String>,
    /// Kafka bootstrap servers (a mock cluster's) for seat diffs.
    pub kafka: Option<String>,
    /// Use this data directory (default: a fresh one); in-process servers
    /// only. The server keeps it, and it goes when the server does.
    pub data_dir: Option<TempDir>,
    /// Let the server take its secret from DATA_DIR/jwt.secret (generating
    /// it if missing) instead of `secret`.
    pub secret_from_data_dir: bool,
    pub tweak: fn(&mut ServerConfig),
    /// Child servers only: more flags, an open-file limit, and a file that
    /// gets the server's log.
    pub child_args: Vec<String>,
    pub child_nofile: Option<u64>,
    pub child_log: Option<std::path::PathBuf>,
    /// Child servers only: environment variables (`QT_TEST_PAUSE_AT`, say).
    pub child_env: Vec<(String, String)>,
    /// The payment gateway's base URL (`--pg-base-url`). When not set, a
    /// Redis-backed server pays through `shared_sandbox()` (it refuses to
    /// start without one) and an embedded one through its own sandbox.
    pub pg_base_url: Option<String>,
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
            child_env: Vec::new(),
            pg_base_url: None,
        }
    }

    /// The gateway a server with these options pays through, when it is
    /// not its own embedded sandbox.
    fn gateway_url(&self) -> Option<String> {
        match (&self.pg_base_url, &self.backend) {
            (Some(url), _) => Some(url.clone()),
            (None, Backend::Redis(_)) => Some(sandbox_url(shared_sandbox())),
            (None, Backend::Memory) => None,
        }
    }

    fn config(&self, data_dir: std::path::PathBuf) -> ServerConfig {
        let mut cfg = ServerConfig::for_data_dir(data_dir);
        cfg.jwt_secret = (!self.secret_from_data_dir).then(|| Secret(self.secret.clone()));
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
            cfg.kafka_coupon_topic = KAFKA_COUPON_TOPIC.into();
            cfg.kafka_order_topic = KAFKA_ORDER_TOPIC.into();
            cfg.kafka_partitions = 0; // the mock cluster has it already
        }
        cfg.pg_base_url = self.gateway_url();
        (self.tweak)(&mut cfg);
        cfg
    }
}

/// A server running in this test process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The server's keys, for checking the passes it signs.
    pub auth: Auth,
    /// The base URL of the payment gateway (a sandbox) it pays through.
    pub pg_base: String,
    secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), queueticket::app::StartError>>>,
    /// Removed once the server is gone (after `task`, by field order).
    _data_dir: TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(Options::new(backend)).await
    }

    pub async fn start_with(mut opts: Options) -> Self {
        init_logs();
        let data_dir = opts.data_dir.take().unwrap_or_else(temp_dir);
        let cfg = opts.config(data_dir.path().to_path_buf());
        let listener = queueticket::app::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pg_base = cfg.pg_base_url.clone().unwrap_or_else(|| sandbox_url(addr));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(queueticket::app::run(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let mut server = Self {
            addr,
            auth: Auth::new(opts.secret.as_bytes(), None, None).expect("auth"),
            pg_base,
            secret: opts.secret.clone(),
            stop: Some(stop),
            task: Some(task),
            _data_dir: data_dir,
        };
        server.wait_ready().await;
        if opts.secret_from_data_dir {
            let path = server._data_dir.path().join("jwt.secret");
            let secret = std::fs::read_to_string(path).expect("server wrote its secret");
            server.secret = secret.trim().to_owned();
            server.auth = Auth::new(server.secret.as_bytes(), None, None).expect("auth");
        }
        server
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = http(self.addr, "GET", "/healthz", None, None).await
                && r.status == 200
            {
                return;
            }
            if let Some(task) = self.task.take_if(|t| t.is_finished()) {
                match task.await {
                    Ok(Err(e)) => panic!("the server did not start: {e}"),
                    other => panic!("the server task ended during start-up: {other:?}"),
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's data directory (its SQLite file is `queueticket.db`
    /// there unless `Options::database_url` says otherwise).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
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

    /// A token with these claims, signed with the server's secret.
    pub fn mint(&self, claims: &Claims) -> String {
        mint(self.secret.as_bytes(), claims)
    }

    pub fn buyer_token(&self, user: &str) -> String {
        self.mint(&claims(user, Role::Buyer, 3_600))
    }

    pub fn seller_token(&self, seller: &str) -> String {
        self.mint(&Claims { seller: Some(seller.into()), ..claims(&format!("{seller}-admin"), Role::Seller, 3_600) })
    }

    pub fn expired_token(&self, user: &str) -> String {
        let exp = unix_now_s() - 600;
        self.mint(&Claims { sub: user.into(), role: Role::Buyer, exp, iat: None, nbf: None, seller: None })
    }

    pub async fn buyer(&self, user: &str) -> Client {
        Client::connect(self.addr, &self.buyer_token(user)).await
    }

    /// Changes the demo event's queue settings as its seller.
    pub async fn patch_queue(&self, body: Value) -> Value {
        let path = format!("/api/v1/seller/events/{EVENT}/queue");
        let r = http(self.addr, "PATCH", &path, Some(&self.seller_token("demo")), Some(body)).await.expect("patch");
        assert_eq!(r.status, 200, "patch refused: {}", r.body);
        r.json()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.addr, name).await
    }

    /// The charges its gateway (a sandbox) recorded for `order`.
    pub async fn charges(&self, order: &str) -> Vec<Value> {
        sandbox_charges(&self.pg_base, Some(order)).await
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
    /// The base URL of the payment gateway (a sandbox) it pays through.
    pub pg_base: String,
    child: tokio::process::Child,
    /// Removed once the child is gone (after `child`, by field order).
    _data_dir: TempDir,
}

impl ChildServer {
    pub async fn start(opts: &Options) -> Self {
        Self::start_in(opts, temp_dir()).await
    }

    /// `start` on a data directory of the caller's (one a killed server
    /// left, say: `kill_keeping_data`).
    pub async fn start_in(opts: &Options, data_dir: TempDir) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let node_id = opts.node_id.clone().unwrap_or_else(|| format!("child-{port}"));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_queueticket"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
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
            .env_remove("QT_TEST_PAUSE_AT")
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
                .arg("--kafka-coupon-topic")
                .arg(KAFKA_COUPON_TOPIC)
                .arg("--kafka-order-topic")
                .arg(KAFKA_ORDER_TOPIC)
                .arg("--kafka-partitions")
                .arg("0");
        }
        if let Backend::Redis(prefix) = &opts.backend {
            cmd.arg("--redis-url").arg(REDIS_URL).arg("--redis-prefix").arg(prefix);
        }
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let pg_base = match opts.gateway_url() {
            Some(url) => {
                cmd.arg("--pg-base-url").arg(&url);
                url
            }
            None => sandbox_url(addr),
        };
        for (name, value) in &opts.child_env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("spawn queueticket");
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(http(addr, "GET", "/healthz", None, None).await, Ok(r) if r.status == 200) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the child server exited during start-up: {status}");
            }
            assert!(tokio::time::Instant::now() < deadline, "child server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { addr, pg_base, child, _data_dir: data_dir }
    }

    /// The charges its gateway (a sandbox) recorded for `order`.
    pub async fn charges(&self, order: &str) -> Vec<Value> {
        sandbox_charges(&self.pg_base, Some(order)).await
    }

    /// SIGKILL: no goodbye, no lease release.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill child");
    }

    /// `kill`, keeping the data directory for a restart (`start_in`).
    pub async fn kill_keeping_data(mut self) -> TempDir {
        self.child.kill().await.expect("kill child");
        self._data_dir
    }

    /// The child's data directory (its SQLite file is `queueticket.db`
    /// there unless `Options::database_url` says otherwise).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }
}

// ------------------------------------------------------------ HTTP

pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP request with reqwest: a bearer token if given, a JSON body if
/// given.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Result<HttpReply> {
    http_with(addr, method, path, token, body, &[]).await
}

/// `http` with more request headers.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> reqwest::Result<HttpReply> {
    // A client per request: a client's connection pool lives on the runtime
    // that made it, and every test has a runtime of its own.
    let client = reqwest::Client::builder().no_proxy().timeout(WAIT).build()?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let reply = request.send().await?;
    let status = reply.status().as_u16();
    let body = reply.text().await?;
    Ok(HttpReply { status, body })
}

/// The HTTP status of a socket upgrade with `token` (101 when it opened).
pub async fn upgrade_status(addr: SocketAddr, token: Option<&str>) -> u16 {
    match Client::try_connect(addr, token).await {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

// ------------------------------------------------------------ sockets

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A buyer's socket. Every frame it receives must read as the shared wire
/// type (`qt_protocol::Envelope`), or the test fails.
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

/// A server message as JSON, once it has read as the shared wire type.
fn checked_frame(text: &str) -> Value {
    if let Err(e) = serde_json::from_str::<Envelope>(text) {
        panic!("the server sent a message that does not read as the wire types ({e}): {text}");
    }
    serde_json::from_str(text).expect("server sends JSON")
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
        Self::greeted(ws).await
    }

    /// Connects with the token in the `Authorization` header instead.
    pub async fn connect_with_header(addr: SocketAddr, token: &str) -> Self {
        let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
        let ws = tokio_tungstenite::connect_async(request).await.expect("upgrade").0;
        Self::greeted(ws).await
    }

    /// Reads the `hello` every socket opens with.
    async fn greeted(ws: Ws) -> Self {
        let mut c = Self { ws, next_req: 1, user: String::new() };
        match c.recv_msg().await.msg {
            ServerMsg::Hello(hello) => {
                assert_eq!(hello.protocol, qt_protocol::PROTOCOL_VERSION);
                c.user = hello.user;
            }
            other => panic!("expected hello, got {other:?}"),
        }
        c
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// Sends a JSON value as it is (for frames the wire types cannot build).
    pub async fn send(&mut self, v: Value) {
        self.send_raw(Message::Text(v.to_string().into())).await;
    }

    /// Sends a client message with `req` (or none).
    pub async fn send_msg(&mut self, msg: &ClientMsg, req: Option<i64>) {
        let text = msg.to_frame(req.map(Req::Int).as_ref());
        self.send_raw(Message::Text(text.into())).await;
    }

    /// `send_msg` that tells a gone socket (its server was killed) instead
    /// of failing the test.
    pub async fn send_msg_checked(&mut self, msg: &ClientMsg, req: i64) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::Text(msg.to_frame(Some(&Req::Int(req))).into())).await
    }

    /// The next text frame, as JSON.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("a frame in time")
    }

    /// The next text frame, as the wire type.
    pub async fn recv_msg(&mut self) -> Envelope {
        serde_json::from_value(self.recv().await).expect("checked on receipt")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(checked_frame(&t)),
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

    /// The next message of `kind`, as the wire type, skipping others.
    pub async fn recv_msg_within(&mut self, kind: &str, wait: Duration) -> ServerMsg {
        let v = self.recv_type_within(kind, wait).await;
        serde_json::from_value::<Envelope>(v).expect("checked on receipt").msg
    }

    /// Sends a request with a fresh `req` and returns the reply carrying it
    /// (pushes in between are skipped). The request is JSON as it is, for
    /// frames the wire types cannot build; `ask` builds the others.
    pub async fn request(&mut self, mut v: Value) -> Value {
        let req = self.take_req();
        v["req"] = json!(req);
        self.send(v).await;
        self.reply_to(req).await
    }

    /// Sends a client message with a fresh `req` and returns the reply
    /// carrying it (pushes in between are skipped).
    pub async fn ask(&mut self, msg: ClientMsg) -> Value {
        let req = self.take_req();
        self.send_msg(&msg, Some(req)).await;
        self.reply_to(req).await
    }

    fn take_req(&mut self) -> i64 {
        let req = self.next_req;
        self.next_req += 1;
        req
    }

    async fn reply_to(&mut self, req: i64) -> Value {
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
        self.ask(ClientMsg::Join { event: event.into() }).await
    }

    pub async fn leave(&mut self, event: &str) -> Value {
        self.ask(ClientMsg::Leave { event: event.into() }).await
    }

    pub async fn watch(&mut self, event: &str) -> Value {
        self.ask(ClientMsg::Watch { event: event.into(), format: Format::Full }).await
    }

    pub async fn unwatch(&mut self, event: &str) -> Value {
        self.ask(ClientMsg::Unwatch { event: event.into() }).await
    }

    pub async fn hold<S: Into<String>>(&mut self, event: &str, seats: impl IntoIterator<Item = S>) -> Value {
        self.ask(ClientMsg::Hold { event: event.into(), seats: seats.into_iter().map(Into::into).collect() }).await
    }

    pub async fn hold_best(&mut self, event: &str, count: u32) -> Value {
        self.ask(ClientMsg::HoldBest { event: event.into(), count, tier: None, section: None }).await
    }

    pub async fn release<S: Into<String>>(&mut self, event: &str, seats: impl IntoIterator<Item = S>) -> Value {
        self.ask(ClientMsg::Release { event: event.into(), seats: seats.into_iter().map(Into::into).collect() }).await
    }

    pub async fn ping(&mut self) -> Value {
        self.ask(ClientMsg::Ping).await
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

// ------------------------------------------------------------ seat maps

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
    // The same `seatmap` message a socket gets.
    MapView::from_snapshot(&checked_frame(&r.body))
}

/// A socket that watches an event and keeps its map current until
/// `settle` says it matches the store.
pub struct Watcher {
    pub client: Client,
    pub map: MapView,
}

impl Watcher {
    pub async fn start(mut client: Client, event: &str) -> Self {
        let snapshot = client.watch(event).await;
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
                    let snapshot = self.client.watch(event).await;
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
