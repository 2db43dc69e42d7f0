//! Health, metrics and the OpenAPI document.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::{bearer_token, client_ip};
use crate::app::Ctx;
use crate::config::Secret;
use crate::error::{AppError, AppResult};

pub async fn health() -> &'static str {
    "ok"
}

/// `/metrics` on the main listener: for loopback clients, or anyone with
/// `--metrics-token`; absent when `--metrics-listen` moved it elsewhere.
pub async fn metrics(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if ctx.cfg.metrics_listen.is_some() {
        return Err(AppError::NotFound("route"));
    }
    let with_token = match (&ctx.cfg.metrics_token, bearer_token(&headers)) {
        (Some(Secret(want)), Some(got)) => same_secret(want.as_bytes(), got.as_bytes()),
        _ => false,
    };
    if !with_token && !client_ip(&ctx, &headers, &peer).is_loopback() {
        return Err(AppError::Forbidden("metrics are served to loopback clients only, or with --metrics-token"));
    }
    Ok(render(&ctx))
}

/// `/metrics` on the `--metrics-listen` address.
pub async fn metrics_open(State(ctx): State<Arc<Ctx>>) -> Response {
    render(&ctx)
}

fn render(ctx: &Ctx) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ctx.metrics.render(ctx.hub.waiting_count())).into_response()
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guess was right.
fn same_secret(want: &[u8], got: &[u8]) -> bool {
    want.len() == got.len() && want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
