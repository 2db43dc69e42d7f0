//! REST routes and the extractors they share. Handlers parse, call a
//! service, and shape the answer; the rules live in `services` and `domain`.

mod events;
pub mod guard;
mod guest;
mod meta;
mod seller;
pub mod serve;
mod web;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;

use crate::app::Ctx;
use crate::auth::{AuthError, Identity};
use crate::error::AppError;

pub fn router(ctx: Arc<Ctx>) -> Router {
    let request_timeout = Some(Duration::from_secs(ctx.cfg.http_request_timeout_s));
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::app_js))
        .route("/style.css", get(web::style_css))
        .route("/healthz", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .route("/api/v1/openapi.json", get(meta::openapi))
        .route("/api/v1/guest", post(guest::issue))
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{event}", get(events::detail))
        .route("/api/v1/events/{event}/seatmap", get(events::seatmap))
        .route(
            "/api/v1/events/{event}/queue",
            post(events::join_queue).get(events::queue_status).delete(events::leave_queue),
        )
        .route("/api/v1/seller/events", get(seller::events))
        .route("/api/v1/seller/events/{event}/queue", get(seller::queue_settings).patch(seller::patch_queue))
        .route("/ws", get(crate::ws::upgrade))
        .fallback(|| async { AppError::NotFound("route") })
        // A request body trickled in slowly holds its connection no longer.
        .layer(axum::middleware::from_fn_with_state(guard::GuardLimits { request_timeout }, guard::guard))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
}

/// The operator listener of `--metrics-listen`: `/metrics` for anyone who
/// can reach that address, and `/healthz`.
pub fn metrics_router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/metrics", get(meta::metrics_open))
        .route("/healthz", get(meta::health))
        .fallback(|| async { AppError::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(guard::GuardLimits { request_timeout: None }, guard::guard))
        .with_state(ctx)
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The verified caller of a REST request.
pub struct Caller(pub Identity);

impl FromRequestParts<Arc<Ctx>> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx>) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(AuthError::Missing)?;
        Ok(Caller(ctx.auth.verify(token)?))
    }
}

/// JSON bodies whose every rejection is our `bad_request`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(AppError::BadRequest(e.body_text())),
            Err(e) => Err(AppError::BadRequest(e.body_text())),
        }
    }
}

/// The client's address, for per-address limits: the peer, or behind a
/// trusted proxy the address it appended to X-Forwarded-For.
pub fn client_ip(ctx: &Ctx, headers: &HeaderMap, peer: &SocketAddr) -> IpAddr {
    if ctx.cfg.trust_forwarded_for
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.ip()
}
