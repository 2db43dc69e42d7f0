//! Configuration: defaults in code, overridden by `QT_*` environment
//! variables, overridden by flags. Validated once at start-up. `--help`
//! documents every setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::Role;
use crate::gateway::toss::RetryPolicy;

/// A secret that never shows up in logs or debug output.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "queueticket",
    version,
    about = "Real-time ticket on-sale server: waiting room, live seat map, holds, checkout."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: ServerConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Mint a token for an operator, signed with the same key as a server on
    /// the same data directory (or the same --jwt-secret).
    Token(TokenArgs),
    /// Run the payment sandbox alone on --listen, its ledger in
    /// DATA_DIR/pg-sandbox.db. It answers both at the root and under
    /// /pg-sandbox, so a server's --pg-base-url may be http://ADDR or
    /// http://ADDR/pg-sandbox.
    PgSandbox(PgSandboxArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PgSandboxArgs {
    /// Secret key the sandbox accepts (HTTP Basic, empty password); defaults
    /// to --pg-secret-key, so a server and a sandbox given the same
    /// QT_PG_SECRET_KEY agree.
    #[arg(long)]
    pub secret_key: Option<Secret>,
    /// How long a `slow` confirm takes to answer, in milliseconds; defaults
    /// to --pg-sandbox-slow-ms.
    #[arg(long)]
    pub slow_ms: Option<u64>,
    /// Keep the ledger in memory only (lost when the sandbox stops).
    #[arg(long)]
    pub memory: bool,
}

/// Roles by their wire names, listed in `--help`.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str)).try_map(|name| name.parse::<Role>())
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[arg(long, default_value = "buyer", value_parser = role_parser())]
    pub role: Role,
    /// User id (the `sub` claim).
    #[arg(long)]
    pub sub: String,
    /// Seller id a seller token acts for.
    #[arg(long)]
    pub seller: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_s: u64,
    /// Sign with RS256 using --jwt-private-key instead of HS256.
    #[arg(long)]
    pub rs256: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "QT_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Directory for the SQLite database and the generated JWT secret.
    #[arg(long, env = "QT_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// SQL database URL; defaults to SQLite in the data directory. Use
    /// postgres://… for distributed mode.
    #[arg(long, env = "QT_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Redis URL; when set, the waiting room lives in Redis and many nodes
    /// can share it.
    #[arg(long, env = "QT_REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// Kafka bootstrap servers; when set, seat diffs travel over Kafka so
    /// every node sees every change. Without it they stay in process (one
    /// node).
    #[arg(long, env = "QT_KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,

    /// Topic of the seat diffs (keyed by event id).
    #[arg(long, env = "QT_KAFKA_TOPIC", default_value = "qt.seat-diffs", global = true)]
    pub kafka_topic: String,

    /// Partitions of the seat-diff topic when this node creates it (0: do
    /// not create it; the brokers or an operator do).
    #[arg(long, env = "QT_KAFKA_PARTITIONS", default_value_t = 12, global = true)]
    pub kafka_partitions: i32,

    /// Topic of coupon claims (keyed by campaign id), from the node that
    /// answered a claim to the writer that stores it in Postgres. Used with
    /// Redis and Kafka both set.
    #[arg(long, env = "QT_KAFKA_COUPON_TOPIC", default_value = "qt.coupon-claims", global = true)]
    pub kafka_coupon_topic: String,

    /// Topic of order announcements from the outbox (keyed by event id):
    /// payments completed, refunds, expiries. Used with Kafka set.
    #[arg(long, env = "QT_KAFKA_ORDER_TOPIC", default_value = "qt.order-events", global = true)]
    pub kafka_order_topic: String,

    /// Prefix of every Redis key, so several deployments can share a Redis.
    #[arg(long, env = "QT_REDIS_PREFIX", default_value = "qt", global = true)]
    pub redis_prefix: String,

    /// This node's name in leases and logs; random when not set.
    #[arg(long, env = "QT_NODE_ID", global = true)]
    pub node_id: Option<String>,

    /// HS256 secret for tokens and admission passes (at least 16 bytes).
    /// Every node of a cluster needs the same one. When not set, one is
    /// generated once and kept in DATA_DIR/jwt.secret.
    #[arg(long, env = "QT_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM file of an RSA public key; RS256 tokens signed by its private key
    /// are accepted as well.
    #[arg(long, env = "QT_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// PEM file of the RSA private key, for `queueticket token --rs256`.
    #[arg(long, env = "QT_JWT_PRIVATE_KEY", global = true)]
    pub jwt_private_key: Option<PathBuf>,

    /// Issue guest buyer tokens at POST /api/v1/guest. On by default in
    /// embedded mode, off when --redis-url is set.
    #[arg(long, env = "QT_GUEST", global = true)]
    pub guest: Option<bool>,

    /// Lifetime of guest tokens, in seconds.
    #[arg(long, env = "QT_GUEST_TTL_S", default_value_t = 86_400, global = true)]
    pub guest_ttl_s: u64,

    /// Seed the demo seller, hall and event on first start. On by default in
    /// embedded mode.
    #[arg(long, env = "QT_DEMO", global = true)]
    pub demo: Option<bool>,

    /// Take the client address from the last X-Forwarded-For entry, for
    /// per-address limits behind a proxy you run (which appends the peer).
    #[arg(long, env = "QT_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub trust_forwarded_for: bool,

    /// Guest tokens per minute per client address.
    #[arg(long, env = "QT_GUEST_PER_MIN", default_value_t = 30, global = true)]
    pub guest_per_min: u32,

    /// WebSocket upgrades per minute per client address (burst: a tenth).
    #[arg(long, env = "QT_WS_UPGRADES_PER_MIN", default_value_t = 600, global = true)]
    pub ws_upgrades_per_min: u32,

    /// Messages per second per socket (burst: twice that).
    #[arg(long, env = "QT_WS_MSGS_PER_S", default_value_t = 20, global = true)]
    pub ws_msgs_per_s: u32,

    /// Seconds a socket may stay over its message limit (every frame counts,
    /// pings and pongs too) before it is closed with 1008.
    #[arg(long, env = "QT_WS_ABUSE_CLOSE_S", default_value_t = 3, global = true)]
    pub ws_abuse_close_s: u32,

    /// Open connections at most (plain HTTP and sockets alike); 0 derives it
    /// from the open-file limit, leaving room for the process's own files.
    /// Connections past it are closed at once and logged.
    #[arg(long, env = "QT_MAX_CONNECTIONS", default_value_t = 0, global = true)]
    pub max_connections: u32,

    /// Open connections at most per client address (0: no cap). Carrier NAT
    /// puts many buyers behind one address, hence the generous default.
    #[arg(long, env = "QT_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000, global = true)]
    pub max_connections_per_ip: u32,

    /// Seconds a connection gets to send a complete request head, counted
    /// from when it opens or its previous response ended; an idle
    /// keep-alive connection is closed after the same time.
    #[arg(long, env = "QT_HTTP_HEADER_TIMEOUT_S", default_value_t = 10, global = true)]
    pub http_header_timeout_s: u64,

    /// Seconds a request may take to arrive and be answered (a body sent
    /// slowly included; a streamed response may run longer). Past it: 408.
    #[arg(long, env = "QT_HTTP_REQUEST_TIMEOUT_S", default_value_t = 30, global = true)]
    pub http_request_timeout_s: u64,

    /// Seconds a response may wait on a client that does not read before
    /// the connection is dropped (sockets have their own 10 s send time-out).
    #[arg(long, env = "QT_HTTP_WRITE_STALL_S", default_value_t = 30, global = true)]
    pub http_write_stall_s: u64,

    /// Serve /metrics on this separate address instead (then the main
    /// listener does not serve it).
    #[arg(long, env = "QT_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Bearer token that opens /metrics on the main listener to any address.
    /// Without it (and without --metrics-listen) only loopback clients get it.
    #[arg(long, env = "QT_METRICS_TOKEN", global = true, hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Frames a socket may have queued before pushes to it are dropped or,
    /// for frames that matter, the socket is closed.
    #[arg(long, env = "QT_WS_OUTBOX", default_value_t = 32, global = true)]
    pub ws_outbox: usize,

    /// How often the admitter runs, in milliseconds.
    #[arg(long, env = "QT_ADMIT_TICK_MS", default_value_t = 200, global = true)]
    pub admit_tick_ms: u64,

    /// How often waiting positions are refreshed, in milliseconds.
    #[arg(long, env = "QT_NOTIFY_TICK_MS", default_value_t = 500, global = true)]
    pub notify_tick_ms: u64,

    /// Base URL of the Toss Payments compatible gateway (without /v1). When
    /// not set, the server mounts the payment sandbox on its own listener at
    /// /pg-sandbox and pays through it. http:// or https://.
    #[arg(long, env = "QT_PG_BASE_URL", global = true)]
    pub pg_base_url: Option<String>,

    /// Platform fee of a seller without a plan of its own: basis points of
    /// each sale's `gross - discounts_seller` (300 = 3 %).
    #[arg(long, env = "QT_FEE_PERCENT_BP", default_value_t = 300, global = true)]
    pub fee_percent_bp: u32,

    /// Platform fee per ticket sold, minor units, on top of the percentage.
    #[arg(long, env = "QT_FEE_FIXED_PER_TICKET", default_value_t = 0, global = true)]
    pub fee_fixed_per_ticket: i64,

    /// Smallest platform fee of one order, minor units (never more than the
    /// order's own base).
    #[arg(long, env = "QT_FEE_MIN_PER_ORDER", default_value_t = 0, global = true)]
    pub fee_min_per_order: i64,

    /// PEM file of more roots to trust for an https:// gateway besides the
    /// system's (a private CA, a TLS egress proxy).
    #[arg(long, env = "QT_PG_CA_FILE", global = true)]
    pub pg_ca_file: Option<std::path::PathBuf>,

    /// Gateway secret key (HTTP Basic user, empty password). The default is
    /// the sandbox's.
    #[arg(long, env = "QT_PG_SECRET_KEY", default_value = "test_sk_sandbox", hide_env_values = true, global = true)]
    pub pg_secret_key: Secret,

    /// Time-out of one gateway request, connect to last byte, in
    /// milliseconds.
    #[arg(long, env = "QT_PG_TIMEOUT_MS", default_value_t = 3_000, global = true)]
    pub pg_timeout_ms: u64,

    /// Attempts per gateway call, the first included; time-outs, connection
    /// errors, 5xx and "try again" answers are retried.
    #[arg(long, env = "QT_PG_RETRY_ATTEMPTS", default_value_t = 10, global = true)]
    pub pg_retry_attempts: u32,

    /// Total time one gateway call may take, every attempt and backoff
    /// included, in milliseconds; past it the outcome is unknown and the
    /// payment is reconciled later.
    #[arg(long, env = "QT_PG_RETRY_MAX_MS", default_value_t = 20_000, global = true)]
    pub pg_retry_max_ms: u64,

    /// First backoff step between gateway attempts, in milliseconds; it
    /// doubles up to --pg-retry-max-delay-ms, and each sleep is uniform in
    /// zero to the step (full jitter).
    #[arg(long, env = "QT_PG_RETRY_FIRST_DELAY_MS", default_value_t = 200, global = true)]
    pub pg_retry_first_delay_ms: u64,

    /// Largest backoff step between gateway attempts, in milliseconds.
    #[arg(long, env = "QT_PG_RETRY_MAX_DELAY_MS", default_value_t = 2_000, global = true)]
    pub pg_retry_max_delay_ms: u64,

    /// How long the sandbox's `slow` payment keys take to answer, in
    /// milliseconds (longer than --pg-timeout-ms, so clients time out).
    #[arg(long, env = "QT_PG_SANDBOX_SLOW_MS", default_value_t = 5_000, global = true)]
    pub pg_sandbox_slow_ms: u64,

    /// How long `pay` waits for the gateway before answering `pending`
    /// (the final `payment` is pushed), in milliseconds.
    #[arg(long, env = "QT_PAY_ANSWER_WAIT_MS", default_value_t = 2_500, global = true)]
    pub pay_answer_wait_ms: u64,

    /// A payment whose outcome is still unknown this long after it started
    /// is looked up by the reconciler, in milliseconds; longer than
    /// --pg-retry-max-ms, so the live attempt has given up by then.
    #[arg(long, env = "QT_PG_IN_DOUBT_AFTER_MS", default_value_t = 25_000, global = true)]
    pub pg_in_doubt_after_ms: i64,

    /// A payment the gateway still has no record of this long after it
    /// started is logged as an error for an operator, in milliseconds; it is
    /// confirmed again under its idempotency key until the gateway answers,
    /// never given up by time alone.
    #[arg(long, env = "QT_PG_GIVE_UP_AFTER_MS", default_value_t = 600_000, global = true)]
    pub pg_give_up_after_ms: i64,

    /// Log format: text or json. Filter with QT_LOG (e.g. "info,queueticket=debug").
    #[arg(long, env = "QT_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

impl ServerConfig {
    pub fn embedded(&self) -> bool {
        self.redis_url.is_none()
    }

    pub fn guest_enabled(&self) -> bool {
        self.guest.unwrap_or(self.embedded())
    }

    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or(self.embedded())
    }

    /// The retry policy of the payment gateway client.
    /// The default platform fee plan (`--fee-*`).
    pub fn fee_plan(&self) -> crate::domain::settlement::FeePlan {
        crate::domain::settlement::FeePlan {
            percent_bp: self.fee_percent_bp,
            fixed_per_ticket: self.fee_fixed_per_ticket,
            min_per_order: self.fee_min_per_order,
        }
    }

    pub fn gateway_policy(&self) -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_millis(self.pg_timeout_ms),
            first_delay: Duration::from_millis(self.pg_retry_first_delay_ms),
            max_delay: Duration::from_millis(self.pg_retry_max_delay_ms),
            max_attempts: self.pg_retry_attempts,
            max_total: Duration::from_millis(self.pg_retry_max_ms),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("queueticket.db").display()))
    }

    /// Defaults for tests and embedding: everything as the binary would
    /// have it with no flags, on an ephemeral data directory.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        let mut cfg = Cli::parse_from(["queueticket"]).server;
        cfg.data_dir = data_dir;
        cfg
    }

    pub fn validate(&self) -> Result<(), String> {
        self.fee_plan().check().map_err(|e| format!("invalid --fee-* settings: {e}"))?;
        if self.ws_msgs_per_s == 0 || self.ws_upgrades_per_min == 0 || self.guest_per_min == 0 {
            return Err("rate limits must be positive".into());
        }
        if self.ws_outbox < 4 {
            return Err("--ws-outbox must be at least 4".into());
        }
        if !(10..=10_000).contains(&self.admit_tick_ms) || !(50..=1_500).contains(&self.notify_tick_ms) {
            return Err("--admit-tick-ms must be 10..10000 and --notify-tick-ms 50..1500".into());
        }
        if self.ws_abuse_close_s == 0 {
            return Err("--ws-abuse-close-s must be at least 1".into());
        }
        if !(1..=300).contains(&self.http_header_timeout_s)
            || !(1..=3_600).contains(&self.http_request_timeout_s)
            || !(1..=3_600).contains(&self.http_write_stall_s)
        {
            return Err(
                "--http-header-timeout-s must be 1..300, --http-request-timeout-s and --http-write-stall-s 1..3600"
                    .into(),
            );
        }
        if matches!(&self.metrics_token, Some(Secret(t)) if t.len() < 16) {
            return Err("--metrics-token must be at least 16 bytes".into());
        }
        if !(1..=60_000).contains(&self.pg_timeout_ms) || !(1..=20).contains(&self.pg_retry_attempts) {
            return Err("--pg-timeout-ms must be 1..60000 and --pg-retry-attempts 1..20".into());
        }
        if !(self.pg_timeout_ms..=600_000).contains(&self.pg_retry_max_ms) {
            return Err("--pg-retry-max-ms must be at least --pg-timeout-ms and at most 600000".into());
        }
        if self.pg_retry_first_delay_ms > self.pg_retry_max_delay_ms || self.pg_retry_max_delay_ms > 60_000 {
            return Err("--pg-retry-first-delay-ms must not exceed --pg-retry-max-delay-ms (at most 60000)".into());
        }
        if !(1..=60_000).contains(&self.pay_answer_wait_ms)
            || !(1..=3_600_000).contains(&self.pg_in_doubt_after_ms)
            || self.pg_give_up_after_ms < self.pg_in_doubt_after_ms
            || self.pg_in_doubt_after_ms <= i64::try_from(self.pg_retry_max_ms).unwrap_or(i64::MAX)
        {
            return Err("--pay-answer-wait-ms must be 1..60000, --pg-in-doubt-after-ms 1..3600000 and more than \
                --pg-retry-max-ms (the live attempt must be over before the reconciler takes over), and \
                --pg-give-up-after-ms at least --pg-in-doubt-after-ms"
                .into());
        }
        if self.pg_sandbox_slow_ms > 600_000 {
            return Err("--pg-sandbox-slow-ms must be at most 600000".into());
        }
        if self.pg_secret_key.0.is_empty() {
            return Err("--pg-secret-key must not be empty".into());
        }
        if let Some(url) = &self.pg_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("--pg-base-url must be an http:// or https:// URL".into());
        }
        if let Some(Secret(s)) = &self.jwt_secret
            && s.len() < 16
        {
            return Err("--jwt-secret must be at least 16 bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_defaults_match_the_client_defaults() {
        let cfg = ServerConfig::for_data_dir(PathBuf::from("unused"));
        assert_eq!(cfg.gateway_policy(), RetryPolicy::default());
        assert_eq!(cfg.pg_secret_key.0, "test_sk_sandbox");
        assert!(cfg.pg_base_url.is_none());
        assert!(cfg.pg_sandbox_slow_ms > cfg.pg_timeout_ms, "slow must outlast the client's time-out");
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn gateway_sandbox_command_parses_with_the_shared_flags() {
        let cli = Cli::parse_from(["queueticket", "pg-sandbox", "--listen", "127.0.0.1:9999", "--slow-ms", "10"]);
        let Some(Command::PgSandbox(args)) = cli.command else { panic!("expected pg-sandbox") };
        assert_eq!(args.slow_ms, Some(10));
        assert!(args.secret_key.is_none() && !args.memory);
        assert_eq!(cli.server.listen.port(), 9999);
    }
}
