//! Seller routes, always scoped to the token's seller: another seller's
//! event is `not_found`, exactly like an event that does not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};

use super::events::EventView;
use super::{ApiJson, Caller};
use crate::app::Ctx;
use crate::domain::queue::{QueuePatch, QueueSettings};
use crate::error::{AppError, AppResult};

pub async fn events(State(ctx): State<Arc<Ctx>>, Caller(who): Caller) -> AppResult<Json<Vec<EventView>>> {
    let seller = who.require_seller()?;
    let events = ctx.sql.seller_events(seller).await?;
    Ok(Json(events.iter().map(EventView::from).collect()))
}

/// The live settings of one of the caller's events.
async fn own_settings(ctx: &Ctx, seller: &str, event: &str) -> AppResult<QueueSettings> {
    let e = ctx.catalog.get(event).filter(|e| e.seller_id == seller).ok_or(AppError::NotFound("event"))?;
    Ok(ctx.queue.settings(&e.id).await?.unwrap_or(e.queue))
}

pub async fn queue_settings(
    State(ctx): State<Arc<Ctx>>,
    Caller(who): Caller,
    Path(event): Path<String>,
) -> AppResult<Json<QueueSettings>> {
    let seller = who.require_seller()?;
    Ok(Json(own_settings(&ctx, seller, &event).await?))
}

/// Changes queue settings live: saved to SQL (the record), then to the
/// waiting-room store, where every node's admitter reads them each tick.
pub async fn patch_queue(
    State(ctx): State<Arc<Ctx>>,
    Caller(who): Caller,
    Path(event): Path<String>,
    ApiJson(patch): ApiJson<QueuePatch>,
) -> AppResult<Json<QueueSettings>> {
    let seller = who.require_seller()?;
    let current = own_settings(&ctx, seller, &event).await?;
    let next = current.apply(&patch)?;
    if !ctx.sql.update_queue_settings(seller, &event, &next).await? {
        return Err(AppError::NotFound("event"));
    }
    ctx.queue.configure(&event, &next).await?;
    ctx.catalog.set_queue(&event, next);
    tracing::info!(%event, %seller, ?next, "queue settings changed");
    Ok(Json(next))
}
