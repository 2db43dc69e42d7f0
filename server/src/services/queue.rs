//! Waiting-room use cases: join, status, leave, and the admission check
//! every later step (holds, checkout, payment) starts with.

use std::sync::Arc;

use serde::Serialize;

use crate::app::Ctx;
use crate::clock::rfc3339;
use crate::domain::event::Event;
use crate::domain::queue::eta;
use crate::domain::{EventId, UserId};
use crate::error::{AppError, AppResult};
use crate::store::seats::Cause;
use crate::store::waiting::{JoinOutcome, PlaceStatus};

/// A `queue` message: where the buyer stands and how long it may take.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "queue")]
pub struct QueueView {
    pub event: EventId,
    pub position: u64,
    pub waiting: u64,
    pub eta_s: u64,
    pub eta_low_s: u64,
    pub eta_high_s: u64,
    /// The current (measured) admission rate.
    pub rate_per_min: u64,
    /// Admissions are paused by the seller; the ETA assumes they resume.
    pub paused: bool,
}

/// An `admitted` message: the pass and the end of the shopping window.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "admitted")]
pub struct AdmittedView {
    pub event: EventId,
    pub pass: String,
    pub expires_at: String,
    /// Hold rules of the event, so a client can say them up front (additions).
    pub max_seats_per_buyer: u32,
    pub hold_s: u32,
    /// The end of the window, for the hub to tell the buyer when it passes.
    #[serde(skip)]
    pub until_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum QueueReply {
    Waiting(QueueView),
    Admitted(AdmittedView),
}

impl Ctx {
    /// The event and its interned id, or `not_found`.
    pub fn find_event(&self, event: &str) -> AppResult<(EventId, Arc<Event>)> {
        let id = self.catalog.id(event).ok_or(AppError::NotFound("event"))?;
        let e = self.catalog.get(event).ok_or(AppError::NotFound("event"))?;
        Ok((id, e))
    }

    /// The `queue` message for `position` at `now_ms`; before the on-sale
    /// time the ETA counts from the on-sale time.
    pub fn queue_view(&self, id: &EventId, event: &Event, position: u64, waiting: u64, now_ms: i64) -> QueueView {
        let stats = self.catalog.stats(id, &event.queue);
        let eta = eta(position, &stats, &event.queue, now_ms);
        QueueView {
            event: id.clone(),
            position,
            waiting: waiting.max(position),
            eta_s: eta.eta_s,
            eta_low_s: eta.low_s,
            eta_high_s: eta.high_s,
            // While paused nobody is admitted: the current rate is zero, and
            // the ETA says how long once admissions resume.
            rate_per_min: if event.queue.paused { 0 } else { stats.per_min.round() as u64 },
            paused: event.queue.paused,
        }
    }

    pub fn admitted_view(&self, user: &str, id: &EventId, until_ms: i64) -> AdmittedView {
        let rules = self.catalog.get(id).map(|e| e.queue).unwrap_or_default();
        AdmittedView {
            event: id.clone(),
            pass: self.auth.sign_pass(user, id, until_ms),
            expires_at: rfc3339(until_ms),
            max_seats_per_buyer: rules.max_seats_per_buyer,
            hold_s: rules.hold_s,
            until_ms,
        }
    }

    /// Joins the line (or finds the buyer's existing place or admission).
    pub async fn join_queue(&self, user: &UserId, event: &str) -> AppResult<(EventId, QueueReply)> {
        let (id, e) = self.find_event(event)?;
        let now = self.clock.now_ms();
        let outcome = self.queue.join(&id, user, now).await?.ok_or(AppError::NotFound("event"))?;
        self.metrics.joins.inc();
        let reply = match outcome {
            JoinOutcome::Waiting { position, waiting } => {
                QueueReply::Waiting(self.queue_view(&id, &e, position, waiting, now))
            }
            JoinOutcome::Admitted { until_ms } => QueueReply::Admitted(self.admitted_view(user, &id, until_ms)),
        };
        Ok((id, reply))
    }

    /// Where the buyer stands now; polling it keeps the place alive the way
    /// an open socket does.
    pub async fn queue_status(&self, user: &UserId, event: &str) -> AppResult<QueueReply> {
        let (id, e) = self.find_event(event)?;
        let now = self.clock.now_ms();
        let batch = self.queue.status(&id, std::slice::from_ref(user), now).await?;
        if let Some(stats) = batch.stats {
            self.catalog.set_stats(&id, stats);
        }
        match batch.statuses.first() {
            Some(PlaceStatus::Waiting { position }) => {
                Ok(QueueReply::Waiting(self.queue_view(&id, &e, *position, batch.waiting, now)))
            }
            Some(PlaceStatus::Admitted { until_ms }) => {
                Ok(QueueReply::Admitted(self.admitted_view(user, &id, *until_ms)))
            }
            _ => Err(AppError::NotFound("place in line")),
        }
    }

    /// Gives up the buyer's place or admission, and any seats they hold.
    pub async fn leave_queue(&self, user: &UserId, event: &str) -> AppResult<EventId> {
        let (id, _) = self.find_event(event)?;
        self.queue.leave(&id, user).await?;
        self.seats.release_all(&id, user, Cause::Released).await?;
        Ok(id)
    }

    /// The end of the buyer's shopping window for `event`, or `not_admitted`.
    pub async fn require_admission(&self, user: &UserId, event: &str) -> AppResult<(EventId, i64)> {
        let (id, _) = self.find_event(event)?;
        match self.queue.admission(&id, user, self.clock.now_ms()).await? {
            Some(until_ms) => Ok((id, until_ms)),
            None => Err(AppError::NotAdmitted),
        }
    }
}
