//! `POST /api/v1/guest`: a buyer token for an anonymous visitor.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use qt_protocol::error::ErrorResponse;
use qt_protocol::rest::GuestToken;

use crate::auth::{Auth, Role};
use crate::config::ServerConfig;
use crate::edge::client_ip;
use crate::error::{AppError, AppResult};
use crate::limits::Limits;

/// Issues a buyer token for an anonymous visitor.
///
/// Rate limited per client address; a server may turn guests off.
#[utoipa::path(
    post,
    path = "/api/v1/guest",
    operation_id = "issue_guest_token",
    tag = "identity",
    responses(
        (status = 201, description = "A buyer token and the user id it names", body = GuestToken),
        (status = 403, description = "`forbidden`: guest access is disabled on this server", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many guests from this address; slow down", body = ErrorResponse),
    ),
)]
pub async fn issue(
    State(cfg): State<Arc<ServerConfig>>,
    State(limits): State<Arc<Limits>>,
    State(auth): State<Arc<Auth>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> AppResult<(StatusCode, Json<GuestToken>)> {
    if !cfg.guest_enabled() {
        return Err(AppError::Forbidden("guest access is disabled on this server"));
    }
    if limits.guest.check_key(&client_ip(cfg.trust_forwarded_for, &headers, &addr)).is_err() {
        return Err(AppError::RateLimited);
    }
    let user = format!("g-{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>());
    let token = auth.mint_hs(&user, Role::Buyer, None, cfg.guest_ttl_s);
    Ok((StatusCode::CREATED, Json(GuestToken { token, user })))
}
