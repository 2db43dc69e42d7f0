//! Health, metrics and the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::Ctx;

pub async fn health() -> &'static str {
    "ok"
}

pub async fn metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ctx.metrics.render(ctx.hub.waiting_count()))
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
