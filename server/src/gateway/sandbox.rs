//! The payment sandbox: a gateway of our own that speaks the Toss Payments
//! API (the wire types live in `toss.rs`), for embedded mode, tests and load
//! scripts. It owns its ledger of charges and its idempotency records, in
//! its own SQLite file (or in memory); it never touches the server's
//! database, and it never approves, refuses or answers other than the
//! `paymentKey` prefix says.
//!
//! Routes, relative to where it is mounted (`/pg-sandbox` in the server;
//! both there and at the root when run alone with `queueticket pg-sandbox`):
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/payments/confirm` | the payment object, or a Toss error |
//! | `GET /v1/payments/orders/{orderId}` | 200 payment (`DONE` or `CANCELED`), or 404 `NOT_FOUND_PAYMENT` |
//! | `GET /v1/payments/{paymentKey}` | the same, by payment key |
//! | `POST /v1/payments/{paymentKey}/cancel` | 200 payment, `CANCELED`; 404 `NOT_FOUND_PAYMENT` |
//! | `GET /v1/charges?orderId=&limit=` | `{"charges": [...]}`, no authentication (the audit view) |
//!
//! Confirm outcomes by `paymentKey` prefix:
//!
//! | prefix | outcome |
//! |---|---|
//! | `ok` | approved |
//! | `decline` | 403 `REJECT_CARD_PAYMENT`, final |
//! | `flaky` | 500 `FAILED_INTERNAL_SYSTEM_PROCESSING` the first `flaky_failures` (2) confirms of the order, then approved |
//! | `slow` | approved, answered after `slow_ms` (5 s, past the client's 3 s time-out); meanwhile the same `Idempotency-Key` gets 409 `IDEMPOTENT_REQUEST_PROCESSING` |
//! | `lost` | approved and recorded, then the connection drops before the reply (the client sees a transport error) |
//! | `forged` | a test hook: approved for the amount asked, but every reply about the payment (confirm, lookup, cancel) says `totalAmount` + `forged_extra` (1000); the ledger shows the truth |
//! | anything else | 400 `INVALID_REQUEST`, final (a typo should fail loudly, not pass as `ok`) |
//!
//! Like Toss it keeps idempotency keys: an approval or a final refusal is
//! stored under the `Idempotency-Key` (per route) and replayed for the same
//! key, whatever the new body says; a retryable failure is not stored. An
//! order is charged at most once: a confirm under another key (or none) for
//! an order already charged answers 400 `ALREADY_PROCESSED_PAYMENT`. A
//! `paymentKey` names one payment, as at Toss: reusing it for another order
//! is a 400 `INVALID_REQUEST` (use `ok-<unique>`). Only whole cancels are
//! supported. Authentication is HTTP Basic with the configured secret key
//! and an empty password; anything else is 401 `UNAUTHORIZED_KEY`.
//!
//! Every charge and stored reply is committed (SQLite `synchronous=FULL`)
//! before the reply is sent, so the ledger survives a crash of the process
//! it runs in. A memory-only sandbox keeps them on one SQLite connection
//! that lives as long as the sandbox.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor as _, FromRow, SqliteConnection, SqlitePool};
use tracing::{debug, warn};

use super::toss::codes;
use super::toss::wire;

/// The ledger's file name in a data directory.
pub const DB_FILE: &str = "pg-sandbox.db";

/// Where the server mounts the sandbox on its own listener.
pub const MOUNT: &str = "/pg-sandbox";

/// Charges a ledger read returns when `?limit` is not given, and at most.
pub const DEFAULT_LIMIT: u32 = 1_000;
pub const MAX_LIMIT: u32 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandbox_charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_key TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    reported_amount INTEGER NOT NULL,
    status TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    cancel_reason TEXT,
    canceled_at TEXT
);
CREATE INDEX IF NOT EXISTS sandbox_charges_order ON sandbox_charges (order_id);
CREATE TABLE IF NOT EXISTS sandbox_replies (
    route TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (route, idempotency_key)
);
";

/// Behaviour of the prefixes that take a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSettings {
    /// How long a `slow` confirm takes to answer. The default is past the
    /// client's default request time-out, so the client times out, retries
    /// into 409s and gets the stored approval once the delay is over.
    pub slow_ms: u64,
    /// How many confirms of a `flaky` order fail before one is approved.
    pub flaky_failures: u32,
    /// What replies about a `forged` payment add to the amount charged.
    pub forged_extra: i64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self { slow_ms: 5_000, flaky_failures: 2, forged_extra: 1_000 }
    }
}

/// One approved charge, as the audit view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    pub payment_key: String,
    pub order_id: String,
    /// What was really charged (a `forged` reply says otherwise).
    pub amount: i64,
    /// `DONE`, or `CANCELED` once refunded.
    pub status: String,
    pub approved_at: String,
}

/// The sandbox gateway's state; serve it with [`router`].
pub struct Sandbox {
    /// What the Basic credentials must decode to: `secret:`.
    credentials: Vec<u8>,
    settings: SandboxSettings,
    db: SqlitePool,
    /// Serializes each read-decide-write step (replay check, charge,
    /// cancel), so two requests can never both charge one order. Never held
    /// across a `slow` delay.
    gate: tokio::sync::Mutex<()>,
    live: Mutex<Live>,
}

/// What need not survive a restart.
#[derive(Default)]
struct Live {
    /// Idempotency keys of confirms still being processed.
    in_flight: HashSet<String>,
    /// Failures already given to each `flaky` order.
    flaky_failed: HashMap<String, u32>,
    /// Confirm requests received per order, for tests.
    confirms: HashMap<String, u32>,
    /// 409 `IDEMPOTENT_REQUEST_PROCESSING` answers given, for tests.
    in_progress_answers: u32,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The outcome a `paymentKey` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Decline,
    Flaky,
    Slow,
    Lost,
    Forged,
    Unknown,
}

impl Kind {
    fn of(payment_key: &str) -> Self {
        const PREFIXES: [(&str, Kind); 6] = [
            ("ok", Kind::Ok),
            ("decline", Kind::Decline),
            ("flaky", Kind::Flaky),
            ("slow", Kind::Slow),
            ("lost", Kind::Lost),
            ("forged", Kind::Forged),
        ];
        PREFIXES.iter().find(|(prefix, _)| payment_key.starts_with(prefix)).map_or(Kind::Unknown, |(_, k)| *k)
    }
}

/// An answer: status and JSON body, as sent and as stored for replay.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: String,
}

impl Reply {
    fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let body = wire::ErrorBody { code: code.to_owned(), message: message.into() };
        Self { status, body: serde_json::to_string(&body).unwrap_or_default() }
    }

    fn payment(payment: &wire::Payment) -> Self {
        Self { status: StatusCode::OK, body: serde_json::to_string(payment).unwrap_or_default() }
    }

    fn is_ok(&self) -> bool {
        self.status == StatusCode::OK
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "application/json")], self.body).into_response()
    }
}

/// A confirm's answer: sent, or lost on the way.
enum Sent {
    Reply(Reply),
    Lost,
}

/// A response whose body fails before its first byte: the server drops the
/// connection without having written the status line, so the client sees a
/// transport error, exactly as when a reply is lost in the network.
fn lost() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("the sandbox drops this reply on purpose"))
    });
    Response::new(Body::from_stream(failing))
}

/// Routes of a stored reply.
const CONFIRM: &str = "confirm";
const CANCEL: &str = "cancel";

#[derive(FromRow)]
struct ChargeRow {
    payment_key: String,
    order_id: String,
    amount: i64,
    reported_amount: i64,
    status: String,
    approved_at: String,
    cancel_reason: Option<String>,
    canceled_at: Option<String>,
}

const CHARGE_COLUMNS: &str =
    "payment_key, order_id, amount, reported_amount, status, approved_at, cancel_reason, canceled_at";

impl ChargeRow {
    /// The payment object every reply about this charge shows.
    fn payment(&self) -> wire::Payment {
        let canceled = self.status == "CANCELED";
        let cancels = match (&self.canceled_at, canceled) {
            (Some(at), true) => Some(vec![wire::Cancel {
                cancel_amount: self.reported_amount,
                cancel_reason: self.cancel_reason.clone().unwrap_or_default(),
                canceled_at: at.clone(),
            }]),
            _ => None,
        };
        wire::Payment {
            payment_key: self.payment_key.clone(),
            order_id: self.order_id.clone(),
            status: self.status.clone(),
            total_amount: self.reported_amount,
            balance_amount: Some(if canceled { 0 } else { self.reported_amount }),
            currency: Some("KRW".into()),
            approved_at: Some(self.approved_at.clone()),
            cancels,
        }
    }

    fn charge(self) -> Charge {
        Charge {
            payment_key: self.payment_key,
            order_id: self.order_id,
            amount: self.amount,
            status: self.status,
            approved_at: self.approved_at,
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| Box::pin(async move { conn.execute(SCHEMA).await.map(drop) }))
}

/// One connection that is never closed: the memory database lives in it.
fn memory_pool() -> SqlitePool {
    pool_options(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(SqliteConnectOptions::new().in_memory(true))
}

impl Sandbox {
    /// A memory-only sandbox with the default settings.
    pub fn new(secret: &str) -> Self {
        Self::with_pool(memory_pool(), secret, SandboxSettings::default())
    }

    /// A sandbox whose ledger lives in the SQLite file at `path` (created
    /// with its directory when missing), or in memory when `None`.
    pub async fn open(path: Option<&Path>, secret: &str, settings: SandboxSettings) -> Result<Self, sqlx::Error> {
        let db = match path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // WAL with NORMAL survives the process being killed
                    // (what the crash tests do); only power loss can undo
                    // the last commits, and this is a sandbox.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                pool_options(4).connect_with(options).await?
            }
            None => memory_pool(),
        };
        // Creates the tables now, so a bad path fails at start-up.
        db.acquire().await?;
        Ok(Self::with_pool(db, secret, settings))
    }

    fn with_pool(db: SqlitePool, secret: &str, settings: SandboxSettings) -> Self {
        Self {
            credentials: format!("{secret}:").into_bytes(),
            settings,
            db,
            gate: tokio::sync::Mutex::new(()),
            live: Mutex::new(Live::default()),
        }
    }

    pub fn settings(&self) -> SandboxSettings {
        self.settings
    }

    /// Approved charges in the order they were made, for one order or all,
    /// at most `limit`.
    pub async fn charges(&self, order_id: Option<&str>, limit: u32) -> Result<Vec<Charge>, sqlx::Error> {
        let limit = i64::from(limit.min(MAX_LIMIT));
        let rows: Vec<ChargeRow> = match order_id {
            Some(order) => {
                sqlx::query_as(&format!(
                    "SELECT {CHARGE_COLUMNS} FROM sandbox_charges WHERE order_id = ? ORDER BY seq LIMIT ?"
                ))
                .bind(order)
                .bind(limit)
                .fetch_all(&self.db)
                .await?
            }
            None => {
                sqlx::query_as(&format!("SELECT {CHARGE_COLUMNS} FROM sandbox_charges ORDER BY seq LIMIT ?"))
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?
            }
        };
        Ok(rows.into_iter().map(ChargeRow::charge).collect())
    }

    /// Confirm requests received for `order_id` since this sandbox started
    /// (every answer counted, retries included).
    pub fn confirm_requests(&self, order_id: &str) -> u32 {
        self.live.lock().confirms.get(order_id).copied().unwrap_or(0)
    }

    /// 409 `IDEMPOTENT_REQUEST_PROCESSING` answers given since start.
    pub fn in_progress_answers(&self) -> u32 {
        self.live.lock().in_progress_answers
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(token) = value.strip_prefix("Basic ") else {
            return false;
        };
        base64::engine::general_purpose::STANDARD.decode(token.trim()).is_ok_and(|decoded| decoded == self.credentials)
    }

    async fn stored(&self, route: &str, key: &str) -> Result<Option<Reply>, sqlx::Error> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT status, body FROM sandbox_replies WHERE route = ? AND idempotency_key = ?")
                .bind(route)
                .bind(key)
                .fetch_optional(&self.db)
                .await?;
        Ok(row.map(|(status, body)| Reply {
            status: u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK),
            body,
        }))
    }

    async fn store(
        conn: &mut SqliteConnection,
        route: &str,
        key: Option<&str>,
        reply: &Reply,
    ) -> Result<(), sqlx::Error> {
        if let Some(key) = key {
            sqlx::query(
                "INSERT OR REPLACE INTO sandbox_replies (route, idempotency_key, status, body) VALUES (?, ?, ?, ?)",
            )
            .bind(route)
            .bind(key)
            .bind(i64::from(reply.status.as_u16()))
            .bind(&reply.body)
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    /// A final answer that charges nothing, stored under `key`.
    async fn refuse(&self, route: &str, key: Option<&str>, reply: Reply) -> Result<Reply, sqlx::Error> {
        // Writers take turns: SQLite refuses a second writer at once (a
        // deferred transaction cannot wait for the lock it upgrades to).
        let _gate = self.gate.lock().await;
        let mut conn = self.db.acquire().await?;
        Self::store(&mut conn, route, key, &reply).await?;
        Ok(reply)
    }

    async fn charge_row(
        conn: &mut SqliteConnection,
        column: &str,
        value: &str,
    ) -> Result<Option<ChargeRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {CHARGE_COLUMNS} FROM sandbox_charges WHERE {column} = ? ORDER BY seq DESC LIMIT 1"
        ))
        .bind(value)
        .fetch_optional(conn)
        .await
    }

    async fn find(&self, column: &str, value: &str) -> Result<Option<ChargeRow>, sqlx::Error> {
        let mut conn = self.db.acquire().await?;
        Self::charge_row(&mut conn, column, value).await
    }

    async fn confirm(&self, key: Option<String>, request: wire::ConfirmRequest) -> Result<Sent, sqlx::Error> {
        let order = request.order_id.as_str();
        *self.live.lock().confirms.entry(order.to_owned()).or_default() += 1;
        let key = key.as_deref();
        let _in_flight = match key {
            Some(key) => {
                let _gate = self.gate.lock().await;
                if self.live.lock().in_flight.contains(key) {
                    self.live.lock().in_progress_answers += 1;
                    debug!(order_id = order, "confirm still in progress under this key");
                    return Ok(Sent::Reply(Reply::error(
                        StatusCode::CONFLICT,
                        codes::IDEMPOTENT_REQUEST_PROCESSING,
                        "a request with this Idempotency-Key is still being processed",
                    )));
                }
                if let Some(reply) = self.stored(CONFIRM, key).await? {
                    debug!(order_id = order, status = reply.status.as_u16(), "confirm replayed");
                    return Ok(Sent::Reply(reply));
                }
                Some(InFlight::mark(&self.live, key))
            }
            None => None,
        };
        let kind = Kind::of(&request.payment_key);
        let reply = match kind {
            Kind::Unknown => {
                let message = "unknown sandbox payment key; start it with ok, decline, flaky, slow, lost or forged";
                self.refuse(CONFIRM, key, Reply::error(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message))
                    .await?
            }
            Kind::Decline => {
                let message = "the card company rejected the payment (sandbox)";
                let reply = Reply::error(StatusCode::FORBIDDEN, codes::REJECT_CARD_PAYMENT, message);
                self.refuse(CONFIRM, key, reply).await?
            }
            Kind::Flaky if self.flaky_fails(order) => {
                return Ok(Sent::Reply(Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    codes::FAILED_INTERNAL_SYSTEM_PROCESSING,
                    "a temporary failure (sandbox); try again",
                )));
            }
            _ => self.charge(key, &request, kind).await?,
        };
        debug!(order_id = order, kind = ?kind, status = reply.status.as_u16(), "sandbox confirm");
        if kind == Kind::Slow && reply.is_ok() {
            tokio::time::sleep(Duration::from_millis(self.settings.slow_ms)).await;
        }
        if kind == Kind::Lost && reply.is_ok() {
            return Ok(Sent::Lost);
        }
        Ok(Sent::Reply(reply))
    }

    /// Counts a failure for a `flaky` order; false once it had its share.
    fn flaky_fails(&self, order_id: &str) -> bool {
        let mut live = self.live.lock();
        let failed = live.flaky_failed.entry(order_id.to_owned()).or_default();
        if *failed >= self.settings.flaky_failures {
            return false;
        }
        *failed += 1;
        true
    }

    /// Charges the order once, recording the charge and the reply together.
    async fn charge(
        &self,
        key: Option<&str>,
        request: &wire::ConfirmRequest,
        kind: Kind,
    ) -> Result<Reply, sqlx::Error> {
        let _gate = self.gate.lock().await;
        let mut tx = self.db.begin().await?;
        let reply = if Self::charge_row(&mut tx, "order_id", &request.order_id).await?.is_some() {
            Reply::error(StatusCode::BAD_REQUEST, codes::ALREADY_PROCESSED_PAYMENT, "this order was already paid")
        } else if Self::charge_row(&mut tx, "payment_key", &request.payment_key).await?.is_some() {
            let message = "this paymentKey was already used for another order; sandbox payment keys must be unique";
            Reply::error(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message)
        } else {
            let extra = if kind == Kind::Forged { self.settings.forged_extra } else { 0 };
            let row = ChargeRow {
                payment_key: request.payment_key.clone(),
                order_id: request.order_id.clone(),
                amount: request.amount,
                reported_amount: request.amount.saturating_add(extra),
                status: "DONE".into(),
                approved_at: now_rfc3339(),
                cancel_reason: None,
                canceled_at: None,
            };
            sqlx::query(
                "INSERT INTO sandbox_charges (payment_key, order_id, amount, reported_amount, status, approved_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.payment_key)
            .bind(&row.order_id)
            .bind(row.amount)
            .bind(row.reported_amount)
            .bind(&row.status)
            .bind(&row.approved_at)
            .execute(&mut *tx)
            .await?;
            Reply::payment(&row.payment())
        };
        Self::store(&mut tx, CONFIRM, key, &reply).await?;
        tx.commit().await?;
        Ok(reply)
    }

    async fn cancel(&self, key: Option<&str>, payment_key: &str, reason: &str) -> Result<Reply, sqlx::Error> {
        let _gate = self.gate.lock().await;
        if let Some(key) = key
            && let Some(reply) = self.stored(CANCEL, key).await?
        {
            return Ok(reply);
        }
        let mut tx = self.db.begin().await?;
        let Some(mut row) = Self::charge_row(&mut tx, "payment_key", payment_key).await? else {
            // Not stored: the payment may yet be made.
            return Ok(Reply::error(StatusCode::NOT_FOUND, codes::NOT_FOUND_PAYMENT, "no such payment"));
        };
        let reply = if row.status == "CANCELED" {
            Reply::error(StatusCode::BAD_REQUEST, codes::ALREADY_CANCELED_PAYMENT, "the payment was already cancelled")
        } else {
            row.status = "CANCELED".into();
            row.cancel_reason = Some(reason.to_owned());
            row.canceled_at = Some(now_rfc3339());
            sqlx::query(
                "UPDATE sandbox_charges SET status = ?, cancel_reason = ?, canceled_at = ? WHERE payment_key = ?",
            )
            .bind(&row.status)
            .bind(&row.cancel_reason)
            .bind(&row.canceled_at)
            .bind(payment_key)
            .execute(&mut *tx)
            .await?;
            debug!(order_id = %row.order_id, "sandbox cancel");
            Reply::payment(&row.payment())
        };
        Self::store(&mut tx, CANCEL, key, &reply).await?;
        tx.commit().await?;
        Ok(reply)
    }
}

/// Marks a confirm's idempotency key as in progress until dropped.
struct InFlight<'a> {
    live: &'a Mutex<Live>,
    key: String,
}

impl<'a> InFlight<'a> {
    fn mark(live: &'a Mutex<Live>, key: &str) -> Self {
        live.lock().in_flight.insert(key.to_owned());
        Self { live, key: key.to_owned() }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.live.lock().in_flight.remove(&self.key);
    }
}

/// The sandbox's routes, relative to its mount point.
pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/orders/{order_id}", get(lookup))
        .route("/v1/payments/{payment_key}", get(payment))
        .route("/v1/payments/{payment_key}/cancel", post(cancel))
        .route("/v1/charges", get(charges))
        .with_state(sandbox)
}

/// The routes both at the root and at [`MOUNT`], for the sandbox run on
/// its own: `{base}` may be `http://ADDR` or `http://ADDR/pg-sandbox`.
pub fn standalone_router(sandbox: Arc<Sandbox>) -> Router {
    Router::new().nest(MOUNT, router(sandbox.clone())).merge(router(sandbox))
}

fn unauthorized() -> Response {
    Reply::error(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED_KEY, "wrong or missing secret key").into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    Reply::error(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message).into_response()
}

fn ledger_failed(e: &sqlx::Error) -> Response {
    warn!(error = %e, "the sandbox ledger failed");
    Reply::error(StatusCode::INTERNAL_SERVER_ERROR, codes::FAILED_INTERNAL_SYSTEM_PROCESSING, "sandbox ledger failed")
        .into_response()
}

/// The `Idempotency-Key` header, when given (at most 300 characters).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Reply> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 300 => Ok(Some(key.to_owned())),
        _ => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            "Idempotency-Key must be 1 to 300 visible ASCII characters",
        )),
    }
}

/// Toss's rule for order ids: 6 to 64 of `A-Z a-z 0-9 - _`.
fn valid_order_id(id: &str) -> bool {
    (6..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn confirm(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap, body: Bytes) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let request: wire::ConfirmRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("the body must be {{\"paymentKey\", \"orderId\", \"amount\"}}: {e}")),
    };
    if request.payment_key.is_empty() || request.payment_key.len() > 200 {
        return invalid("paymentKey must be 1 to 200 characters");
    }
    if !valid_order_id(&request.order_id) {
        return invalid("orderId must be 6 to 64 of A-Z, a-z, 0-9, - and _");
    }
    if request.amount <= 0 {
        return invalid("amount must be positive");
    }
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(reply) => return reply.into_response(),
    };
    // Runs to the end even when the client hangs up, as a real gateway
    // does: a slow confirm stays in progress for its whole delay.
    let task = tokio::spawn(async move { sandbox.confirm(key, request).await });
    match task.await {
        Ok(Ok(Sent::Reply(reply))) => reply.into_response(),
        Ok(Ok(Sent::Lost)) => lost(),
        Ok(Err(e)) => ledger_failed(&e),
        Err(e) => {
            warn!(error = %e, "a sandbox confirm task failed");
            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, codes::FAILED_INTERNAL_SYSTEM_PROCESSING, "sandbox failed")
                .into_response()
        }
    }
}

async fn found(sandbox: &Sandbox, column: &str, value: &str) -> Response {
    match sandbox.find(column, value).await {
        Ok(Some(row)) => Reply::payment(&row.payment()).into_response(),
        Ok(None) => Reply::error(StatusCode::NOT_FOUND, codes::NOT_FOUND_PAYMENT, "no such payment").into_response(),
        Err(e) => ledger_failed(&e),
    }
}

async fn lookup(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath(order_id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    found(&sandbox, "order_id", &order_id).await
}

async fn payment(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath(payment_key): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    found(&sandbox, "payment_key", &payment_key).await
}

async fn cancel(
    State(sandbox): State<Arc<Sandbox>>,
    UrlPath(payment_key): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !sandbox.authorized(&headers) {
        return unauthorized();
    }
    let request: wire::CancelRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("the body must be {{\"cancelReason\"}}: {e}")),
    };
    if request.cancel_reason.trim().is_empty() || request.cancel_reason.chars().count() > 200 {
        return invalid("cancelReason must be 1 to 200 characters");
    }
    if request.cancel_amount.is_some() {
        return invalid("the sandbox cancels whole payments only; leave cancelAmount out");
    }
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(reply) => return reply.into_response(),
    };
    match sandbox.cancel(key.as_deref(), &payment_key, &request.cancel_reason).await {
        Ok(reply) => reply.into_response(),
        Err(e) => ledger_failed(&e),
    }
}

#[derive(Serialize)]
struct Charges {
    charges: Vec<Charge>,
}

async fn charges(State(sandbox): State<Arc<Sandbox>>, RawQuery(query): RawQuery) -> Response {
    let (mut order_id, mut limit) = (None, DEFAULT_LIMIT);
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "orderId" => order_id = Some(value.into_owned()),
            "limit" => match u32::from_str(&value) {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => return invalid(format!("limit must be 1 to {MAX_LIMIT}")),
            },
            _ => {}
        }
    }
    match sandbox.charges(order_id.as_deref(), limit).await {
        Ok(charges) => axum::Json(Charges { charges }).into_response(),
        Err(e) => ledger_failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "test_sk_sandbox";

    async fn serve(sandbox: Arc<Sandbox>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, standalone_router(sandbox)).await });
        format!("http://{addr}")
    }

    async fn confirm_raw(base: &str, secret: Option<&str>, key: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().post(format!("{base}/v1/payments/confirm")).json(&body);
        if let Some(secret) = secret {
            request = request.basic_auth(secret, Some(""));
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn body(payment_key: &str, order_id: &str, amount: i64) -> Value {
        json!({"paymentKey": payment_key, "orderId": order_id, "amount": amount})
    }

    #[tokio::test]
    async fn authentication_is_required_except_for_the_ledger() {
        let base = serve(Arc::new(Sandbox::new(SECRET))).await;
        let (status, reply) = confirm_raw(&base, None, None, body("ok-a", "order-auth", 10)).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::UNAUTHORIZED, Some(codes::UNAUTHORIZED_KEY)));
        let (status, _) = confirm_raw(&base, Some("test_sk_other"), None, body("ok-a", "order-auth", 10)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = confirm_raw(&base, Some(SECRET), None, body("ok-a", "order-auth", 10)).await;
        assert_eq!(status, StatusCode::OK);
        let ledger: Value = reqwest::get(format!("{base}/v1/charges?orderId=order-auth"))
            .await
            .expect("ledger")
            .json()
            .await
            .expect("json");
        assert_eq!(ledger["charges"][0]["amount"], 10);
        assert_eq!(ledger["charges"][0]["status"], "DONE");
    }

    #[tokio::test]
    async fn both_mount_points_answer_when_run_alone() {
        let base = serve(Arc::new(Sandbox::new(SECRET))).await;
        let (status, _) =
            confirm_raw(&format!("{base}{MOUNT}"), Some(SECRET), None, body("ok-m", "order-mount", 5)).await;
        assert_eq!(status, StatusCode::OK);
        let root: Value = reqwest::get(format!("{base}/v1/charges")).await.expect("ledger").json().await.expect("json");
        assert_eq!(root["charges"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_toss_codes() {
        let base = serve(Arc::new(Sandbox::new(SECRET))).await;
        let (status, reply) = confirm_raw(&base, Some(SECRET), None, body("mystery-1", "order-unknown", 10)).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::BAD_REQUEST, Some(codes::INVALID_REQUEST)));
        let (status, _) = confirm_raw(&base, Some(SECRET), None, body("ok-1", "bad/order", 10)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = confirm_raw(&base, Some(SECRET), None, body("ok-1", "order-zero", 0)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = confirm_raw(&base, Some(SECRET), None, json!({"orderId": "order-x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let status = reqwest::get(format!("{base}/v1/charges?limit=0")).await.expect("ledger").status();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_order_is_charged_once_whatever_the_key() {
        let sandbox = Arc::new(Sandbox::new(SECRET));
        let base = serve(sandbox.clone()).await;
        let (status, _) = confirm_raw(&base, Some(SECRET), Some("k1"), body("ok-1", "order-once", 10)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, reply) = confirm_raw(&base, Some(SECRET), Some("k2"), body("ok-2", "order-once", 10)).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::BAD_REQUEST, Some(codes::ALREADY_PROCESSED_PAYMENT)));
        let (status, _) = confirm_raw(&base, Some(SECRET), None, body("ok-1", "order-once", 10)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The first key still replays the approval.
        let (status, reply) = confirm_raw(&base, Some(SECRET), Some("k1"), body("ok-1", "order-once", 10)).await;
        assert_eq!((status, reply["totalAmount"].as_i64()), (StatusCode::OK, Some(10)));
        // A payment key names one payment.
        let (status, _) = confirm_raw(&base, Some(SECRET), Some("k3"), body("ok-1", "order-other", 10)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(sandbox.charges(None, 100).await.expect("charges").len(), 1);
    }

    #[tokio::test]
    async fn a_declined_key_replays_the_decline_and_a_flaky_failure_is_not_stored() {
        let sandbox = Arc::new(Sandbox::new(SECRET));
        let base = serve(sandbox.clone()).await;
        for _ in 0..2 {
            let (status, reply) = confirm_raw(&base, Some(SECRET), Some("d"), body("decline-1", "order-d1", 10)).await;
            assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some(codes::REJECT_CARD_PAYMENT)));
        }
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(confirm_raw(&base, Some(SECRET), Some("f"), body("flaky-1", "order-f1", 10)).await.0);
        }
        assert_eq!(
            statuses,
            [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::OK, StatusCode::OK]
        );
        assert_eq!(sandbox.charges(Some("order-f1"), 10).await.expect("charges").len(), 1);
    }

    #[tokio::test]
    async fn a_slow_confirm_keeps_its_key_busy_until_it_answers() {
        let settings = SandboxSettings { slow_ms: 300, ..SandboxSettings::default() };
        let sandbox = Arc::new(Sandbox::open(None, SECRET, settings).await.expect("sandbox"));
        let base = serve(sandbox.clone()).await;
        let first = {
            let base = base.clone();
            tokio::spawn(
                async move { confirm_raw(&base, Some(SECRET), Some("s"), body("slow-1", "order-s1", 10)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, reply) = confirm_raw(&base, Some(SECRET), Some("s"), body("slow-1", "order-s1", 10)).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (StatusCode::CONFLICT, Some(codes::IDEMPOTENT_REQUEST_PROCESSING))
        );
        assert_eq!(first.await.expect("first").0, StatusCode::OK);
        let (status, _) = confirm_raw(&base, Some(SECRET), Some("s"), body("slow-1", "order-s1", 10)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sandbox.charges(Some("order-s1"), 10).await.expect("charges").len(), 1);
    }

    #[tokio::test]
    async fn the_ledger_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join(DB_FILE);
        {
            let sandbox = Arc::new(Sandbox::open(Some(&path), SECRET, SandboxSettings::default()).await.expect("open"));
            let base = serve(sandbox.clone()).await;
            let (status, _) = confirm_raw(&base, Some(SECRET), Some("p"), body("ok-p", "order-persist", 42)).await;
            assert_eq!(status, StatusCode::OK);
            sandbox.db.close().await;
        }
        let sandbox = Arc::new(Sandbox::open(Some(&path), SECRET, SandboxSettings::default()).await.expect("reopen"));
        let charges = sandbox.charges(Some("order-persist"), 10).await.expect("charges");
        assert_eq!(charges.len(), 1);
        assert_eq!((charges[0].payment_key.as_str(), charges[0].amount), ("ok-p", 42));
        // The stored reply is replayed after the restart; nothing is charged again.
        let base = serve(sandbox.clone()).await;
        let (status, reply) = confirm_raw(&base, Some(SECRET), Some("p"), body("ok-p", "order-persist", 42)).await;
        assert_eq!((status, reply["totalAmount"].as_i64()), (StatusCode::OK, Some(42)));
        assert_eq!(sandbox.charges(None, 10).await.expect("charges").len(), 1);
    }

    #[test]
    fn prefixes_choose_the_outcome() {
        assert_eq!(Kind::of("ok"), Kind::Ok);
        assert_eq!(Kind::of("ok-123"), Kind::Ok);
        assert_eq!(Kind::of("declined"), Kind::Decline);
        assert_eq!(Kind::of("flaky_9"), Kind::Flaky);
        assert_eq!(Kind::of("slow"), Kind::Slow);
        assert_eq!(Kind::of("lost-1"), Kind::Lost);
        assert_eq!(Kind::of("forged-1"), Kind::Forged);
        assert_eq!(Kind::of("OK-1"), Kind::Unknown);
        assert_eq!(Kind::of(""), Kind::Unknown);
    }
}
