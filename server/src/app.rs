//! Wiring: builds the shared context from configuration, starts the
//! supervised workers and serves HTTP and WebSockets until shutdown.
//! `run` is what the binary and the integration tests both call.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{Auth, KeyError};
use crate::bus::kafka::KafkaBus;
use crate::bus::memory::MemoryBus;
use crate::bus::{BusError, SeatBus};
use crate::clock::Clock;
use crate::config::{Secret, ServerConfig};
use crate::domain::EventId;
use crate::http::serve::{ServeSettings, serve};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::services::catalog::Catalog;
use crate::services::feed::Feed;
use crate::store::StoreError;
use crate::store::seats::SeatStore;
use crate::store::seats::memory::MemorySeatStore;
use crate::store::seats::redis::RedisSeatStore;
use crate::store::sql::SqlStore;
use crate::store::waiting::WaitingRoom;
use crate::store::waiting::memory::MemoryWaitingRoom;
use crate::store::waiting::redis::RedisWaitingRoom;
use crate::workers;
use crate::ws::hub::Hub;

/// How long open sockets get to say goodbye on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// Everything a request handler, a session or a worker may need.
pub struct Ctx {
    pub cfg: ServerConfig,
    pub node_id: String,
    pub auth: Auth,
    pub sql: SqlStore,
    pub queue: Arc<dyn WaitingRoom>,
    pub seats: Arc<dyn SeatStore>,
    pub bus: Arc<dyn SeatBus>,
    /// Live seat maps and their watchers on this node.
    pub feed: Feed,
    /// Events whose admitter lease this node holds (the relay publishes
    /// their diffs).
    pub leases: Mutex<HashSet<EventId>>,
    pub catalog: Catalog,
    pub hub: Hub,
    pub clock: Clock,
    pub limits: Limits,
    pub metrics: Metrics,
    /// Cancelled once when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Open socket sessions, awaited on shutdown.
    pub sessions: TaskTracker,
}

impl Ctx {
    /// Reloads events from SQL into the cache.
    pub async fn load_catalog(&self) -> Result<(), StoreError> {
        self.catalog.replace_all(self.sql.events().await?);
        Ok(())
    }
}

/// The HS256 secret: configured, or generated once into the data directory
/// so that `queueticket token` and the server agree.
pub fn load_secret(cfg: &ServerConfig) -> Result<Secret, StartError> {
    if let Some(secret) = &cfg.jwt_secret {
        return Ok(secret.clone());
    }
    let path = cfg.data_dir.join("jwt.secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(Secret(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(io_err(format!("cannot create {}", cfg.data_dir.display())))?;
    let secret = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    match file.open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes()).map_err(io_err(format!("cannot write {}", path.display())))?;
            Ok(Secret(secret))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = std::fs::read_to_string(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
            Ok(Secret(existing.trim().to_owned()))
        }
        Err(e) => Err(io_err(format!("cannot create {}", path.display()))(e)),
    }
}

fn read_pem(path: Option<&Path>) -> Result<Option<Vec<u8>>, StartError> {
    path.map(|p| std::fs::read(p).map_err(io_err(format!("cannot read {}", p.display())))).transpose()
}

pub fn build_auth(cfg: &ServerConfig) -> Result<Auth, StartError> {
    let secret = load_secret(cfg)?;
    let public = read_pem(cfg.jwt_public_key.as_deref())?;
    let private = read_pem(cfg.jwt_private_key.as_deref())?;
    Ok(Auth::new(secret.0.as_bytes(), public.as_deref(), private.as_deref())?)
}

async fn build(cfg: ServerConfig) -> Result<Arc<Ctx>, StartError> {
    cfg.validate().map_err(StartError::Config)?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(io_err(format!("cannot create {}", cfg.data_dir.display())))?;
    let auth = build_auth(&cfg)?;
    let clock = Clock::system();
    let sql = SqlStore::connect(&cfg.database_url()).await?;
    if cfg.demo_enabled() && sql.seed_demo(clock.now_ms()).await? {
        info!("seeded the demo seller, hall and event");
    }
    let (queue, seats): (Arc<dyn WaitingRoom>, Arc<dyn SeatStore>) = match &cfg.redis_url {
        Some(url) => {
            let conn = crate::store::redis_connection(url).await?;
            (
                Arc::new(RedisWaitingRoom::with_connection(conn.clone(), &cfg.redis_prefix)),
                Arc::new(RedisSeatStore::new(conn, &cfg.redis_prefix)),
            )
        }
        None => (Arc::new(MemoryWaitingRoom::new()), Arc::new(MemorySeatStore::new())),
    };
    let node_id = cfg.node_id.clone().unwrap_or_else(|| format!("node-{:08x}", rand::random::<u32>()));
    let bus: Arc<dyn SeatBus> = match &cfg.kafka_brokers {
        Some(brokers) => Arc::new(KafkaBus::connect(brokers, &cfg.kafka_topic, &node_id, cfg.kafka_partitions).await?),
        None => {
            if cfg.redis_url.is_some() {
                warn!("no --kafka-brokers: seat maps on other nodes only catch up by polling the store");
            }
            Arc::new(MemoryBus::default())
        }
    };
    let ctx = Arc::new(Ctx {
        limits: Limits::new(&cfg),
        cfg,
        node_id,
        auth,
        sql,
        queue,
        seats,
        bus,
        feed: Feed::default(),
        leases: Mutex::new(HashSet::new()),
        catalog: Catalog::default(),
        hub: Hub::default(),
        clock,
        metrics: Metrics::default(),
        shutdown: CancellationToken::new(),
        sessions: TaskTracker::new(),
    });
    ctx.load_catalog().await?;
    // SQL is the record; the waiting-room store gets its settings from it.
    for e in ctx.catalog.all() {
        ctx.queue.configure(&e.id, &e.queue).await?;
    }
    Ok(ctx)
}

/// Connections the kernel queues while the server accepts: a surge of
/// buyers connects faster than one accept loop, and the default of 128
/// overflows into one-second client retries.
const LISTEN_BACKLOG: u32 = 4_096;

/// Binds the listening socket with a backlog fit for a surge.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs the server on `listener` until `shutdown` completes, then closes
/// sockets with a `closing` message, stops the workers (releasing admitter
/// leases) and returns.
pub async fn run(
    listener: TcpListener,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let ctx = build(cfg).await?;
    let addr = listener.local_addr().map_err(io_err("listener has no address"))?;
    let metrics_listener = match ctx.cfg.metrics_listen {
        Some(at) => Some(bind(at).map_err(io_err(format!("cannot listen for metrics on {at}")))?),
        None => None,
    };
    info!(%addr, node = %ctx.node_id, embedded = ctx.cfg.embedded(), "queueticket listening");

    let workers = TaskTracker::new();
    let c = ctx.clone();
    workers::supervise(&workers, ctx.shutdown.clone(), "admitter", move || workers::admitter::run(c.clone()));
    let c = ctx.clone();
    workers::supervise(&workers, ctx.shutdown.clone(), "notifier", move || workers::notifier::run(c.clone()));
    let c = ctx.clone();
    workers::supervise(&workers, ctx.shutdown.clone(), "relay", move || workers::relay::run(c.clone()));
    let c = ctx.clone();
    workers::supervise(&workers, ctx.shutdown.clone(), "feed", move || workers::feed::run(c.clone()));
    let c = ctx.clone();
    workers::supervise(&workers, ctx.shutdown.clone(), "catalog-refresh", move || {
        workers::catalog_refresh::run(c.clone())
    });

    let token = ctx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = token.cancelled() => {}
        }
        token.cancel();
    });
    let settings = ServeSettings::from_config(&ctx.cfg);
    info!(max = settings.limits.max(), per_ip = ctx.cfg.max_connections_per_ip, "connection limits");
    let main = serve(listener, crate::http::router(ctx.clone()), settings, ctx.shutdown.clone());
    match metrics_listener {
        Some(l) => {
            let metrics =
                serve(l, crate::http::metrics_router(ctx.clone()), ServeSettings::internal(), ctx.shutdown.clone());
            tokio::join!(main, metrics);
        }
        None => main.await,
    }
    ctx.shutdown.cancel();
    ctx.sessions.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, ctx.sessions.wait()).await.is_err() {
        warn!(open = ctx.sessions.len(), "sockets still open after the drain timeout");
    }
    workers.close();
    workers.wait().await;
    ctx.sql.close().await;
    info!("queueticket stopped");
    Ok(())
}
