//! Public event listing and the waiting room for polling clients.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::Caller;
use crate::app::Ctx;
use crate::clock::rfc3339;
use crate::domain::event::{Event, Tier};
use crate::error::AppResult;
use crate::services::queue::QueueReply;
use crate::services::seatmap::Format;
use crate::ws::protocol::{Left, encode};

#[derive(Serialize)]
pub struct EventView {
    pub id: String,
    pub name: String,
    pub seller: String,
    pub venue: String,
    pub starts_at: String,
    pub on_sale_at: String,
    pub currency: String,
    pub tiers: Vec<Tier>,
    /// Whether admissions are paused right now.
    pub paused: bool,
}

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

pub async fn list(State(ctx): State<Arc<Ctx>>) -> Json<Vec<EventView>> {
    Json(ctx.catalog.all().iter().map(|e| EventView::from(&**e)).collect())
}

pub async fn detail(State(ctx): State<Arc<Ctx>>, Path(event): Path<String>) -> AppResult<Json<EventView>> {
    let (_, e) = ctx.find_event(&event)?;
    Ok(Json(EventView::from(&*e)))
}

#[derive(serde::Deserialize)]
pub struct SeatmapQuery {
    #[serde(default)]
    format: Format,
}

/// `GET …/seatmap`: the `seatmap` object as the store has it now.
pub async fn seatmap(
    State(ctx): State<Arc<Ctx>>,
    Path(event): Path<String>,
    Query(q): Query<SeatmapQuery>,
) -> AppResult<impl IntoResponse> {
    let body = ctx.seatmap(&event, q.format).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// `POST …/queue`: the same as a socket `join`.
pub async fn join_queue(
    State(ctx): State<Arc<Ctx>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueReply>> {
    let who = who.require_buyer()?;
    let (_, reply) = ctx.join_queue(&who.user, &event).await?;
    Ok(Json(reply))
}

/// `DELETE …/queue`: gives the place (or admission) up, as `leave` does.
pub async fn leave_queue(
    State(ctx): State<Arc<Ctx>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<StatusCode> {
    let who = who.require_buyer()?;
    let id = ctx.leave_queue(&who.user, &event).await?;
    ctx.hub.take_user_and_tell(&id, &who.user, None, || encode(&Left { event: &id, reason: "left" }, None).into());
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/queue`: where the caller stands, for clients that poll.
pub async fn queue_status(
    State(ctx): State<Arc<Ctx>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueReply>> {
    let who = who.require_buyer()?;
    Ok(Json(ctx.queue_status(&who.user, &event).await?))
}
