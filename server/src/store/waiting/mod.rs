//! The waiting-room port: who waits for which event in what order, who is
//! admitted until when, the admission budget, and the admitter lease.
//!
//! Places are ordered by a store-assigned sequence (never a clock), so FIFO
//! holds across nodes. A waiting place stays alive while somebody reports the
//! buyer present ([`WaitingRoom::status`] and [`WaitingRoom::join`] do); the
//! admitter drops places unseen for longer than the event's grace.
//!
//! Time is passed in by the caller (the node's clock) so both adapters can be
//! driven by the same contract tests with a fake clock.

pub mod memory;
pub mod redis;

#[cfg(test)]
pub mod contract;

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::UserId;
use crate::domain::queue::{QueueSettings, RateStats};

/// Where a buyer stands after `join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// In line: `position` 1 is next; `waiting` is the length of the line.
    Waiting { position: u64, waiting: u64 },
    /// Admitted; the shopping window ends at `until_ms`.
    Admitted { until_ms: i64 },
}

/// Where a buyer stands, as seen by a status query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceStatus {
    Waiting {
        position: u64,
    },
    Admitted {
        until_ms: i64,
    },
    /// Not in line and not admitted: left, dropped after the grace, or the
    /// window ended.
    Gone,
}

/// Statuses of many buyers of one event, answered in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBatch {
    /// Length of the line.
    pub waiting: u64,
    /// The admission rate last published by the admitter, if any.
    pub stats: Option<RateStats>,
    /// One per requested user, in request order.
    pub statuses: Vec<PlaceStatus>,
}

/// Proof of holding an event's admitter lease. The token rises with every
/// new holder; the store refuses ticks carrying a token that is no longer
/// current, so a paused or partitioned former admitter cannot admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub token: u64,
}

/// What one admitter tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickOutcome {
    /// The lease was no longer ours; nothing was changed.
    pub fenced: bool,
    /// Admitted buyers in queue order, each with the end of their window.
    pub admitted: Vec<(UserId, i64)>,
    /// Waiting buyers dropped because nobody saw them within the grace.
    pub dropped: Vec<UserId>,
    /// Admitted buyers whose shopping window ended.
    pub expired: Vec<UserId>,
    /// Line length and open windows after the tick.
    pub waiting: u64,
    pub active: u64,
}

#[async_trait]
pub trait WaitingRoom: Send + Sync + 'static {
    /// Sets an event's live queue settings (creating its queue).
    async fn configure(&self, event: &str, settings: &QueueSettings) -> StoreResult<()>;

    async fn settings(&self, event: &str) -> StoreResult<Option<QueueSettings>>;

    /// Puts a buyer in line, or returns the place they already have, or
    /// admits at once when nobody waits and there is room and budget.
    /// `None` when the event has no queue.
    async fn join(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<JoinOutcome>>;

    /// Gives up the buyer's place or admission. Whether they had one.
    async fn leave(&self, event: &str, user: &str) -> StoreResult<bool>;

    /// Statuses of `users`, marking those still waiting as present now.
    async fn status(&self, event: &str, users: &[UserId], now_ms: i64) -> StoreResult<StatusBatch>;

    /// The end of the buyer's open shopping window, if any.
    async fn admission(&self, event: &str, user: &str, now_ms: i64) -> StoreResult<Option<i64>>;

    /// Takes or renews the admitter lease for `ttl_ms`; `None` while another
    /// node holds it.
    async fn acquire_lease(&self, event: &str, node: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<Option<Lease>>;

    async fn release_lease(&self, event: &str, node: &str, lease: Lease) -> StoreResult<()>;

    /// One admitter step: ends expired windows, drops ghosts, then admits
    /// from the head of the line as budget and room allow (at most
    /// `max_batch` of each).
    async fn tick(&self, event: &str, lease: Lease, now_ms: i64, max_batch: u64) -> StoreResult<TickOutcome>;

    /// Publishes the measured admission rate for every node's ETAs.
    async fn publish_stats(&self, event: &str, stats: &RateStats) -> StoreResult<()>;
}
