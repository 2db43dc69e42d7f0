//! The buyer WebSocket: upgrade (authentication and rate limit before any
//! socket exists), the per-socket session, the local fan-out hub and the
//! wire types.

#[cfg(test)]
mod fuzz;
pub mod hub;
pub mod outbox;
pub mod protocol;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use crate::app::Ctx;
use crate::auth::AuthError;
use crate::error::{AppError, AppResult};
use crate::http::{bearer_token, client_ip};

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

pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> AppResult<Response> {
    if ctx.limits.upgrades.check_key(&client_ip(&ctx, &headers, &addr)).is_err() {
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
