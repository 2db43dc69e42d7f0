//! The composition root: builds the adapters from configuration, the
//! services on them and the transports' state, starts the supervised
//! workers and serves HTTP and WebSockets until shutdown.
//! `run` is what the binary and the integration tests both call.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{Auth, KeyError};
use crate::bus::kafka::KafkaBus;
use crate::bus::memory::MemoryBus;
use crate::bus::orders::{KafkaOrderBus, MemoryOrderBus, OrderBus};
use crate::bus::{BusError, SeatBus};
use crate::clock::Clock;
use crate::config::{Secret, ServerConfig};
use crate::gateway::Gateway;
use crate::gateway::sandbox::{Sandbox, SandboxSettings};
use crate::gateway::toss::TossGateway;
use crate::http::AppState;
use crate::http::serve::{ServeSettings, serve};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::services::catalog::Catalog;
use crate::services::coupons::CouponService;
use crate::services::orders::{OrderService, PaymentTimings};
use crate::services::queue::QueueService;
use crate::services::seats::SeatService;
use crate::services::settings::SettingsService;
use crate::services::settlement::SettlementService;
use crate::services::venues::VenueService;
use crate::store::StoreError;
use crate::store::coupons::CouponClaims;
use crate::store::coupons::claim_log::{ClaimLog, ClaimWriter};
use crate::store::coupons::memory::{GroupCommit, MemoryCouponClaims};
use crate::store::coupons::redis::RedisCouponClaims;
use crate::store::seats::SeatStore;
use crate::store::seats::memory::MemorySeatStore;
use crate::store::seats::redis::RedisSeatStore;
use crate::store::sql::SqlStore;
use crate::store::waiting::WaitingRoom;
use crate::store::waiting::memory::MemoryWaitingRoom;
use crate::store::waiting::redis::RedisWaitingRoom;
use crate::workers::outbox::{OrderEffects, OutboxRelay};
use crate::workers::{self, Leases, admitter::Admitter, relay::Relay};
use crate::ws::Sockets;
use crate::ws::feed::Feed;
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

/// Everything the server runs with: the route state, and the workers'
/// dependencies.
struct Built {
    state: AppState,
    claim_worker: ClaimWorker,
    bus: Arc<dyn SeatBus>,
    admitter: Arc<Admitter>,
    relay: Arc<Relay>,
    outbox: Arc<OutboxRelay>,
    effects: Arc<OrderEffects>,
    order_bus: Arc<dyn OrderBus>,
    /// The sandbox gateway mounted at `/pg-sandbox`, when no gateway is
    /// configured.
    sandbox: Option<Arc<Sandbox>>,
    sql: SqlStore,
}

/// The payment gateway: the one configured, or the sandbox on this
/// server's own listener (`addr`).
async fn gateway(cfg: &ServerConfig, addr: SocketAddr) -> Result<(Arc<dyn Gateway>, Option<Arc<Sandbox>>), StartError> {
    let secret = cfg.pg_secret_key.0.clone();
    let (base, sandbox) = match &cfg.pg_base_url {
        Some(base) => (base.clone(), None),
        // Nodes of a cluster must all confirm with one gateway: a sandbox
        // per node would not know another node's charges, so a lookup on
        // one could charge again what another already charged.
        None if !cfg.embedded() => {
            return Err(StartError::Config(
                "with --redis-url every node needs the same --pg-base-url (the Toss API, or one \
                 `queueticket pg-sandbox --listen ADDR` for all nodes)"
                    .into(),
            ));
        }
        None => {
            let settings = SandboxSettings { slow_ms: cfg.pg_sandbox_slow_ms, ..SandboxSettings::default() };
            let path = cfg.data_dir.join("pg-sandbox.db");
            let sandbox = Sandbox::open(Some(&path), &secret, settings)
                .await
                .map_err(|e| StartError::Config(format!("cannot open the payment sandbox: {e}")))?;
            let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
            let host = if addr.is_ipv6() && !addr.ip().is_unspecified() { format!("[{host}]") } else { host };
            (format!("http://{host}:{}/pg-sandbox", addr.port()), Some(Arc::new(sandbox)))
        }
    };
    let roots = match &cfg.pg_ca_file {
        Some(path) => std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?,
        None => Vec::new(),
    };
    let client = TossGateway::trusting(&base, &secret, cfg.gateway_policy(), &roots)
        .map_err(|e| StartError::Config(format!("invalid payment gateway settings: {e}")))?;
    Ok((Arc::new(client), sandbox))
}

async fn build(cfg: ServerConfig, addr: SocketAddr, shutdown: CancellationToken) -> Result<Built, StartError> {
    cfg.validate().map_err(StartError::Config)?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(io_err(format!("cannot create {}", cfg.data_dir.display())))?;
    let auth = Arc::new(build_auth(&cfg)?);
    let clock = Clock::system();
    let sql = SqlStore::connect(&cfg.database_url()).await?;
    if cfg.demo_enabled() {
        if sql.seed_demo(clock.now_ms()).await? {
            info!("seeded the demo seller, hall and event");
        }
        // Also on a data directory from before campaigns existed.
        for c in crate::domain::demo::campaigns(clock.now_ms()) {
            if sql.insert_campaign(&c).await? {
                info!(campaign = %c.id, "seeded a demo coupon campaign");
            }
        }
    }
    let redis = match &cfg.redis_url {
        Some(url) => Some(crate::store::redis_connection(url).await?),
        None => None,
    };
    let (room, store): (Arc<dyn WaitingRoom>, Arc<dyn SeatStore>) = match &redis {
        Some(conn) => (
            Arc::new(RedisWaitingRoom::with_connection(conn.clone(), &cfg.redis_prefix)),
            Arc::new(RedisSeatStore::new(conn.clone(), &cfg.redis_prefix)),
        ),
        None => {
            // Places, windows and holds written through to their own SQLite
            // file (one commit order for both), rebuilt from it at start.
            let journal = crate::store::journal::Journal::open(&cfg.data_dir.join("state.db")).await?;
            (
                Arc::new(MemoryWaitingRoom::open(journal.clone(), clock.now_ms()).await?),
                Arc::new(MemorySeatStore::open(journal).await?),
            )
        }
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
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::default());
    let limits = Arc::new(Limits::new(&cfg));
    let catalog = Arc::new(Catalog::new(sql.clone()));
    let hub = Arc::new(Hub::default());
    let feed = Arc::new(Feed::default());
    let settings = Arc::new(SettingsService { sql: sql.clone(), room: room.clone(), catalog: catalog.clone() });
    // SQL is the record; the waiting-room store gets its settings from it.
    settings.load().await?;
    let queue = Arc::new(QueueService {
        room,
        seats: store.clone(),
        catalog: catalog.clone(),
        clock,
        auth: auth.clone(),
        notices: hub.clone(),
        metrics: metrics.clone(),
    });
    let seats = Arc::new(SeatService {
        store: store.clone(),
        catalog: catalog.clone(),
        queue: queue.clone(),
        maps: feed.clone(),
        clock,
        metrics: metrics.clone(),
    });
    let (claims, claim_worker) = coupon_claims(&cfg, &metrics, redis.as_ref(), &sql).await?;
    let coupons = Arc::new(CouponService::new(sql.clone(), claims, catalog.clone(), clock, metrics.clone()));
    coupons.reload().await?;
    let (gateway, sandbox) = gateway(&cfg, addr).await?;
    let order_bus: Arc<dyn OrderBus> = match &cfg.kafka_brokers {
        Some(brokers) => {
            Arc::new(KafkaOrderBus::connect(brokers, &cfg.kafka_order_topic, &node_id, cfg.kafka_partitions).await?)
        }
        None => Arc::new(MemoryOrderBus::default()),
    };
    let outbox_written = Arc::new(tokio::sync::Notify::new());
    let orders = Arc::new(OrderService {
        sql: sql.clone(),
        seats: store.clone(),
        catalog: catalog.clone(),
        queue: queue.clone(),
        coupons: coupons.clone(),
        gateway,
        clock,
        metrics: metrics.clone(),
        outbox_written: outbox_written.clone(),
        timings: PaymentTimings {
            answer_wait: Duration::from_millis(cfg.pay_answer_wait_ms),
            in_doubt_after_ms: cfg.pg_in_doubt_after_ms,
            give_up_after_ms: cfg.pg_give_up_after_ms,
        },
        payments: TaskTracker::new(),
        refund_backoff: Default::default(),
    });
    // The record says which seats are sold; a seat store that lost them
    // (Redis restarted empty) learns them again.
    orders.resync_sold().await?;
    let outbox = Arc::new(OutboxRelay {
        sql: sql.clone(),
        bus: order_bus.clone(),
        written: outbox_written,
        metrics: metrics.clone(),
        clock,
        shutdown: shutdown.clone(),
    });
    let effects = Arc::new(OrderEffects {
        sql: sql.clone(),
        seats: store.clone(),
        bus: order_bus.clone(),
        clock,
        shutdown: shutdown.clone(),
    });
    let sockets = Arc::new(Sockets {
        queue: queue.clone(),
        seats: seats.clone(),
        coupons: coupons.clone(),
        orders: orders.clone(),
        catalog: catalog.clone(),
        hub: hub.clone(),
        feed,
        auth: auth.clone(),
        limits: limits.clone(),
        metrics: metrics.clone(),
        clock,
        outbox_capacity: cfg.ws_outbox,
        trust_forwarded_for: cfg.trust_forwarded_for,
        shutdown: shutdown.clone(),
        sessions: TaskTracker::new(),
    });
    let leases = Arc::new(Leases::default());
    let admitter = Arc::new(Admitter {
        queue: queue.clone(),
        leases: leases.clone(),
        node_id,
        tick: Duration::from_millis(cfg.admit_tick_ms),
        shutdown: shutdown.clone(),
    });
    let relay = Arc::new(Relay { seats: store, bus: bus.clone(), leases, metrics: metrics.clone(), shutdown });
    let settlement =
        Arc::new(SettlementService { sql: sql.clone(), catalog: catalog.clone(), clock, default_plan: cfg.fee_plan() });
    let venues = Arc::new(VenueService { sql: sql.clone(), clock });
    let state = AppState {
        cfg,
        auth,
        limits,
        metrics,
        catalog,
        queue,
        seats,
        coupons,
        orders,
        settlement,
        venues,
        settings,
        sockets,
        hub,
    };
    Ok(Built { state, claim_worker, bus, admitter, relay, outbox, effects, order_bus, sandbox, sql })
}

/// The coupon-claim store and the worker that makes its claims durable.
enum ClaimWorker {
    /// Embedded: claims committed to SQL in groups before they are answered.
    GroupCommit(Arc<GroupCommit>),
    /// Distributed: the consumer that writes logged claims to Postgres, and
    /// the adapter whose heartbeat says this process is alive.
    Writer(Arc<ClaimWriter>, Arc<RedisCouponClaims>),
}

/// With Redis and Kafka: counts in Redis, each claim logged to Kafka before
/// it is answered and written to Postgres by the writers. Otherwise counts
/// in process, each claim committed to SQL (with every other claim queued
/// with it) before it is answered; with several nodes on one Postgres that
/// stays exact, as the database refuses what a node's counts got wrong.
async fn coupon_claims(
    cfg: &ServerConfig,
    metrics: &Metrics,
    redis: Option<&redis::aio::ConnectionManager>,
    sql: &SqlStore,
) -> Result<(Arc<dyn CouponClaims>, ClaimWorker), StartError> {
    if let (Some(conn), Some(brokers)) = (redis, &cfg.kafka_brokers) {
        let log = Arc::new(ClaimLog::connect(brokers, &cfg.kafka_coupon_topic, cfg.kafka_partitions).await?);
        let writer = Arc::new(ClaimWriter::new(&log, sql.clone(), metrics.coupon_claims_refused_by_db.clone()));
        let claims = Arc::new(RedisCouponClaims::new(conn.clone(), &cfg.redis_prefix, log, sql.clone()));
        return Ok((claims.clone(), ClaimWorker::Writer(writer, claims)));
    }
    let (claims, writer) = MemoryCouponClaims::new(sql.clone(), metrics.coupon_claims_refused_by_db.clone());
    Ok((Arc::new(claims), ClaimWorker::GroupCommit(Arc::new(writer))))
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
    let shutdown_token = CancellationToken::new();
    let addr = listener.local_addr().map_err(io_err("listener has no address"))?;
    let Built { state, claim_worker, bus, admitter, relay, outbox, effects, order_bus, sandbox, sql } =
        build(cfg, addr, shutdown_token.clone()).await?;
    let cfg = state.cfg.clone();
    let metrics_listener = match cfg.metrics_listen {
        Some(at) => Some(bind(at).map_err(io_err(format!("cannot listen for metrics on {at}")))?),
        None => None,
    };
    info!(%addr, node = %admitter.node_id, embedded = cfg.embedded(), "queueticket listening");

    let workers = TaskTracker::new();
    let token = shutdown_token.clone();
    workers::supervise(&workers, token.clone(), "admitter", move || workers::admitter::run(admitter.clone()));
    workers::supervise(&workers, token.clone(), "relay", move || workers::relay::run(relay.clone()));
    let (settings, limits) = (state.settings.clone(), state.limits.clone());
    let t = token.clone();
    workers::supervise(&workers, token.clone(), "catalog-refresh", move || {
        workers::catalog_refresh::run(settings.clone(), limits.clone(), t.clone())
    });
    let t = token.clone();
    match claim_worker {
        ClaimWorker::GroupCommit(writer) => {
            workers::supervise(&workers, token.clone(), "coupon-commit", move || writer.clone().run(t.clone()))
        }
        ClaimWorker::Writer(writer, claims) => {
            let tw = t.clone();
            workers::supervise(&workers, token.clone(), "coupon-writer", move || {
                workers::coupon_writer::run(writer.clone(), tw.clone())
            });
            workers::supervise(&workers, token.clone(), "coupon-heartbeat", move || {
                let (claims, t) = (claims.clone(), t.clone());
                async move { claims.heartbeat(t).await }
            });
        }
    }
    let (coupons, t) = (state.coupons.clone(), token.clone());
    workers::supervise(&workers, token.clone(), "campaign-refresh", move || {
        crate::workers::campaign_refresh::run(coupons.clone(), t.clone())
    });
    let (sockets, tick) = (state.sockets.clone(), Duration::from_millis(cfg.notify_tick_ms));
    workers::supervise(&workers, token.clone(), "pushes", move || crate::ws::pushes::run(sockets.clone(), tick));
    let sockets = state.sockets.clone();
    workers::supervise(&workers, token.clone(), "diffs", move || crate::ws::diffs::run(sockets.clone(), bus.clone()));
    workers::supervise(&workers, token.clone(), "outbox-relay", move || outbox.clone().run());
    workers::supervise(&workers, token.clone(), "order-effects", move || effects.clone().run());
    let (orders, hub, t) = (state.orders.clone(), state.hub.clone(), token.clone());
    workers::supervise(&workers, token.clone(), "order-pushes", move || {
        crate::ws::order_pushes::run(orders.clone(), hub.clone(), order_bus.clone(), t.clone())
    });
    let (orders, t) = (state.orders.clone(), token.clone());
    workers::supervise(&workers, token.clone(), "order-expiry", move || {
        crate::workers::outbox::run_expiry(orders.clone(), t.clone())
    });
    let (orders, t) = (state.orders.clone(), token.clone());
    workers::supervise(&workers, token.clone(), "payment-reconciler", move || {
        crate::workers::outbox::run_reconciler(orders.clone(), t.clone())
    });

    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = token.cancelled() => {}
        }
        token.cancel();
    });
    let settings = ServeSettings::from_config(&cfg);
    info!(max = settings.limits.max(), per_ip = cfg.max_connections_per_ip, "connection limits");
    let mut router = crate::http::router(state.clone());
    if let Some(sandbox) = sandbox {
        info!(confirm = "/pg-sandbox/v1/payments/confirm", "the payment sandbox is mounted on this listener");
        router = router.nest("/pg-sandbox", crate::gateway::sandbox::router(sandbox));
    }
    let main = serve(listener, router, settings, shutdown_token.clone());
    match metrics_listener {
        Some(l) => {
            let metrics =
                serve(l, crate::http::metrics_router(state.clone()), ServeSettings::internal(), shutdown_token.clone());
            tokio::join!(main, metrics);
        }
        None => main.await,
    }
    shutdown_token.cancel();
    let sessions = &state.sockets.sessions;
    sessions.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, sessions.wait()).await.is_err() {
        warn!(open = sessions.len(), "sockets still open after the drain timeout");
    }
    workers.close();
    workers.wait().await;
    sql.close().await;
    info!("queueticket stopped");
    Ok(())
}
