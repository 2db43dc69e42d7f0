//! Public event listing and the waiting room for polling clients.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use qt_protocol::error::ErrorResponse;
use qt_protocol::frames::Seatmap;
use qt_protocol::rest::{EventView, QueueReply};

use crate::clock::rfc3339;
use crate::domain::event::Event;
use crate::edge::Caller;
use crate::error::AppResult;
use crate::services::catalog::Catalog;
use crate::services::queue::QueueService;
use crate::services::seats::SeatService;
use qt_protocol::Format;

/// An event as the REST bodies show it (the wire type of `qt_protocol`).
impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            name: e.name.clone(),
            seller: e.seller_id.clone(),
            venue: e.venue_id.clone(),
            starts_at: rfc3339(e.starts_at_ms),
            on_sale_at: rfc3339(e.queue.on_sale_at_ms),
            currency: e.currency.clone(),
            tiers: e.tiers.clone(),
            paused: e.queue.paused,
        }
    }
}

/// Every event, with its tiers and prices.
///
/// Public: no token needed.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "list_events",
    tag = "events",
    responses((status = 200, description = "Every event", body = [EventView])),
)]
pub async fn list(State(catalog): State<Arc<Catalog>>) -> Json<Vec<EventView>> {
    Json(catalog.all().iter().map(|e| EventView::from(&**e)).collect())
}

/// One event, with its tiers and prices.
///
/// Public: no token needed.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}",
    operation_id = "get_event",
    tag = "events",
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event", body = ErrorResponse),
    ),
)]
pub async fn detail(State(catalog): State<Arc<Catalog>>, Path(event): Path<String>) -> AppResult<Json<EventView>> {
    let (_, e) = catalog.find(&event)?;
    Ok(Json(EventView::from(&*e)))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct SeatmapQuery {
    /// `full` (the default): every seat spelled out; `compact`: rows as
    /// runs and one status letter per seat.
    #[serde(default)]
    #[param(inline, value_type = qt_protocol::Format)]
    format: Format,
}

/// The event's seat map, as the store has it now.
///
/// The socket's `seatmap` frame (it carries `"type": "seatmap"`), in the
/// form `format` asks for. Public: no token needed.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/seatmap",
    operation_id = "get_seatmap",
    tag = "events",
    params(("event" = String, Path, description = "Event id"), SeatmapQuery),
    responses(
        (status = 200, description = "The seat map", body = Seatmap),
        (
            status = 400,
            description = "`bad_request`: an unknown or repeated `format`, or an event id that is not UTF-8",
            body = ErrorResponse,
        ),
        (status = 404, description = "`not_found`: no such event", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the seat store cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn seatmap(
    State(seats): State<Arc<SeatService>>,
    Path(event): Path<String>,
    Query(q): Query<SeatmapQuery>,
) -> AppResult<impl IntoResponse> {
    let body = qt_protocol::encode(&qt_protocol::ServerMsg::Seatmap(seats.seatmap(&event, q.format).await?), None);
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Joins the waiting room, as the socket's `join` does.
///
/// Answers the buyer's place (`queue`), or the admission (`admitted`) when
/// there is room at once or the buyer was admitted already. One place per
/// buyer per event, from any tab, device or node.
#[utoipa::path(
    post,
    path = "/api/v1/events/{event}/queue",
    operation_id = "join_queue",
    tag = "queue",
    security(("bearer" = [])),
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The buyer's place or admission", body = QueueReply),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a buyer's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the waiting room cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn join_queue(
    State(queue): State<Arc<QueueService>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueReply>> {
    let who = who.require_buyer()?;
    let (_, place) = queue.join(&who.user, &event).await?;
    Ok(Json(place.into_reply()))
}

/// Gives the place (or admission) up, as the socket's `leave` does.
///
/// Seats the buyer holds for the event are released too.
#[utoipa::path(
    delete,
    path = "/api/v1/events/{event}/queue",
    operation_id = "leave_queue",
    tag = "queue",
    security(("bearer" = [])),
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 204, description = "Given up (also when the buyer had no place)"),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a buyer's token", body = ErrorResponse),
        (status = 404, description = "`not_found`: no such event", body = ErrorResponse),
        (status = 503, description = "`unavailable`: the waiting room cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn leave_queue(
    State(queue): State<Arc<QueueService>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<StatusCode> {
    let who = who.require_buyer()?;
    queue.leave(&who.user, &event, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the caller stands, for clients that poll.
///
/// Each call counts as presence: a poller keeps its place the way an open
/// socket does.
#[utoipa::path(
    get,
    path = "/api/v1/events/{event}/queue",
    operation_id = "queue_status",
    tag = "queue",
    security(("bearer" = [])),
    params(("event" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The buyer's place or admission", body = QueueReply),
        (status = 400, description = "`bad_request`: an event id that is not UTF-8", body = ErrorResponse),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not a buyer's token", body = ErrorResponse),
        (
            status = 404,
            description = "`not_found`: no such event, or the buyer has no place in its line",
            body = ErrorResponse,
        ),
        (status = 503, description = "`unavailable`: the waiting room cannot be reached; retry", body = ErrorResponse),
    ),
)]
pub async fn queue_status(
    State(queue): State<Arc<QueueService>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueReply>> {
    let who = who.require_buyer()?;
    Ok(Json(queue.status(&who.user, &event).await?.into_reply()))
}
