//! The buyer WebSocket: upgrade (authentication and rate limit before any
//! socket exists), the per-socket session, this node's fan-out (the hub of
//! joined sockets, the feed of live seat maps, and the tasks that push
//! positions and seat diffs) and frames rendered as text.

pub mod diffs;
pub mod feed;
#[cfg(test)]
mod fuzz;
pub mod hub;
pub mod order_pushes;
pub mod outbox;
pub mod protocol;
pub mod pushes;
pub mod render;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Auth, AuthError};
use crate::clock::Clock;
use crate::edge::{bearer_token, client_ip};
use crate::error::{AppError, AppResult};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::services::catalog::Catalog;
use crate::services::coupons::CouponService;
use crate::services::queue::QueueService;
use crate::services::seats::SeatService;

/// What the buyer socket needs: the use cases, this node's fan-out, and
/// the socket limits.
pub struct Sockets {
    pub queue: Arc<QueueService>,
    pub seats: Arc<SeatService>,
    pub coupons: Arc<CouponService>,
    pub orders: Arc<crate::services::orders::OrderService>,
    pub catalog: Arc<Catalog>,
    pub hub: Arc<hub::Hub>,
    pub feed: Arc<feed::Feed>,
    pub auth: Arc<Auth>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Frames a socket may have queued.
    pub outbox_capacity: usize,
    pub trust_forwarded_for: bool,
    /// Cancelled once when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Open socket sessions, awaited on shutdown.
    pub sessions: TaskTracker,
}

/// Largest client message or frame; bigger ones close the socket (1009/1008).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Small read buffer: an idle socket's biggest cost after the kernel's.
const READ_BUFFER_BYTES: usize = 1024;
/// Cap on bytes queued inside the socket writer.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// The `?token=` of a socket upgrade; more than one is ambiguous.
fn query_token(query: Option<&str>) -> Result<Option<String>, AppError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "token" && found.replace(value.into_owned()).is_some() {
            return Err(AppError::BadRequest("give `token` once".into()));
        }
    }
    Ok(found)
}

/// Opens the buyer WebSocket.
///
/// Text frames, one JSON object each, with a `type` (docs/protocol.md);
/// the first is `hello`. The token comes in the `Authorization` header or,
/// for browsers, as `?token=`; it is checked before the upgrade, so a
/// refused socket is never opened.
#[utoipa::path(
    get,
    path = "/ws",
    operation_id = "open_socket",
    tag = "socket",
    security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "The login JWT, for clients that cannot set headers")),
    responses(
        (status = 101, description = "Switching protocols: the socket is open"),
        (
            status = 400,
            description = "`bad_request`: not a WebSocket upgrade, or `token` given twice",
            body = qt_protocol::error::ErrorResponse,
        ),
        (
            status = 401,
            description = "`unauthorized`: no token, or an invalid or expired one",
            body = qt_protocol::error::ErrorResponse,
        ),
        (status = 403, description = "`forbidden`: not a buyer's token", body = qt_protocol::error::ErrorResponse),
        (
            status = 429,
            description = "`rate_limited`: too many upgrades from this address",
            body = qt_protocol::error::ErrorResponse,
        ),
    ),
)]
pub async fn upgrade(
    State(ctx): State<Arc<Sockets>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> AppResult<Response> {
    if ctx.limits.upgrades.check_key(&client_ip(ctx.trust_forwarded_for, &headers, &addr)).is_err() {
        return Err(AppError::RateLimited);
    }
    let query = query_token(uri.query())?;
    let token = bearer_token(&headers).or(query.as_deref()).ok_or(AuthError::Missing)?;
    let who = ctx.auth.verify(token)?.require_buyer()?;
    let sessions = ctx.sessions.clone();
    Ok(ws
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| sessions.track_future(session::run(ctx, who, socket))))
}
