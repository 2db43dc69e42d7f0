//! `POST /api/v1/guest`: a buyer token for an anonymous visitor.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::app::Ctx;
use crate::auth::Role;
use crate::error::{AppError, AppResult};

pub async fn issue(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> AppResult<(StatusCode, Json<Value>)> {
    if !ctx.cfg.guest_enabled() {
        return Err(AppError::Forbidden("guest access is disabled on this server"));
    }
    if ctx.limits.guest.check_key(&super::client_ip(&ctx, &headers, &addr)).is_err() {
        return Err(AppError::RateLimited);
    }
    let user = format!("g-{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>());
    let token = ctx.auth.mint_hs(&user, Role::Buyer, None, ctx.cfg.guest_ttl_s);
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "user": user }))))
}
