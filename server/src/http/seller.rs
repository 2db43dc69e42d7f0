//! Seller routes, always scoped to the token's seller: another seller's
//! event is `not_found`, exactly like an event that does not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use qt_protocol::error::ErrorResponse;
use qt_protocol::rest::EventView;

use super::ApiJson;
use crate::domain::queue::{QueuePatch, QueueSettings};
use crate::edge::Caller;
use crate::error::AppResult;
use crate::services::settings::SettingsService;

/// The caller's own events.
#[utoipa::path(
    get,
    path = "/api/v1/seller/events",
    operation_id = "list_seller_events",
    tag = "seller",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The seller's events", body = [EventView]),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the database cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn events(
    State(settings): State<Arc<SettingsService>>,
    Caller(who): Caller,
) -> AppResult<Json<Vec<EventView>>> {
    let seller = who.require_seller()?;
    let events = settings.seller_events(seller).await?;
    Ok(Json(events.iter().map(EventView::from).collect()))
}

/// The live queue settings of one of the caller's events.
#[utoipa::path(
    get,
    path = "/api/v1/seller/events/{event}/queue",
    operation_id = "get_queue_settings",
    tag = "seller",
    security(("bearer" = [])),
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The settings in force", body = QueueSettings),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the waiting room cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn queue_settings(
    State(settings): State<Arc<SettingsService>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueSettings>> {
    let seller = who.require_seller()?;
    Ok(Json(settings.of(seller, &event).await?))
}

/// Changes queue settings live.
///
/// Any subset of the fields; unknown fields and values out of range are
/// refused with nothing changed. Effective on every node within a second.
#[utoipa::path(
    patch,
    path = "/api/v1/seller/events/{event}/queue",
    operation_id = "patch_queue_settings",
    tag = "seller",
    security(("bearer" = [])),
    params(("event" = String, Path, description = "Event id")),
    request_body = QueuePatch,
    responses(
        (status = 200, description = "The settings now in force", body = QueueSettings),
        (
            status = 400,
            description = "`bad_request`: not JSON, an unknown field, a value out of range, or an event id that \
                is not UTF-8",
            body = ErrorResponse,
        ),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a seller's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event, or another seller's", body = ErrorResponse),
        (status = 503, description = "`unavailable`: a store cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn patch_queue(
    State(settings): State<Arc<SettingsService>>,
    Caller(who): Caller,
    Path(event): Path<String>,
    ApiJson(patch): ApiJson<QueuePatch>,
) -> AppResult<Json<QueueSettings>> {
    let seller = who.require_seller()?;
    Ok(Json(settings.patch(seller, &event, &patch).await?))
}
