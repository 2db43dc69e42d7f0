//! Health, metrics and the OpenAPI document.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use qt_protocol::error::ErrorResponse;

use crate::config::{Secret, ServerConfig};
use crate::edge::{bearer_token, client_ip};
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::ws::hub::Hub;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "meta",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")),
)]
pub async fn health() -> &'static str {
    "ok"
}

/// Prometheus metrics, in the OpenMetrics text format.
///
/// Served to loopback clients (the X-Forwarded-For address behind a trusted
/// proxy), or to anyone with `Authorization: Bearer <--metrics-token>`.
/// With `--metrics-listen` it moves to that address, and this one is 404.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (
            status = 200,
            description = "The metrics",
            body = String,
            content_type = "application/openmetrics-text",
        ),
        (status = 403, description = "`forbidden`: not a loopback client, and no metrics token", body = ErrorResponse),
        (status = 404, description = "`not_found`: served on `--metrics-listen` instead", body = ErrorResponse),
    ),
)]
pub async fn metrics(
    State(cfg): State<Arc<ServerConfig>>,
    State(metrics): State<Arc<Metrics>>,
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> AppResult<Response> {
    if cfg.metrics_listen.is_some() {
        return Err(AppError::NotFound("route"));
    }
    let with_token = match (&cfg.metrics_token, bearer_token(&headers)) {
        (Some(Secret(want)), Some(got)) => same_secret(want.as_bytes(), got.as_bytes()),
        _ => false,
    };
    if !with_token && !client_ip(cfg.trust_forwarded_for, &headers, &peer).is_loopback() {
        return Err(AppError::Forbidden("metrics are served to loopback clients only, or with --metrics-token"));
    }
    Ok(render(&metrics, &hub))
}

/// `/metrics` on the `--metrics-listen` address.
pub async fn metrics_open(State(metrics): State<Arc<Metrics>>, State(hub): State<Arc<Hub>>) -> Response {
    render(&metrics, &hub)
}

fn render(metrics: &Metrics, hub: &Hub) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.render(hub.waiting_count())).into_response()
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guess was right.
fn same_secret(want: &[u8], got: &[u8]) -> bool {
    want.len() == got.len() && want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn openapi() -> impl IntoResponse {
    // Generated from the routes once; it cannot change while we run.
    static DOCUMENT: LazyLock<String> =
        LazyLock::new(|| super::openapi().to_json().expect("the OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
