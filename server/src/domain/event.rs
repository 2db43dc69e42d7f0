//! Events, venues, seats and price tiers as the rest of the domain sees them.

use serde::Serialize;

use super::queue::QueueSettings;

/// A price tier of an event, as the contract has it; seats name their tier
/// by `id`.
pub use qt_protocol::frames::Tier;

/// One seat of a venue, with its position on the seat map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seat {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: i64,
    pub x: i64,
    pub y: i64,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Venue {
    pub id: String,
    pub seller_id: String,
    pub name: String,
}

/// An event as the catalogue stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub seller_id: String,
    pub venue_id: String,
    pub name: String,
    pub starts_at_ms: i64,
    pub currency: String,
    pub queue: QueueSettings,
    pub tiers: Vec<Tier>,
    /// Until when (exclusive) a buyer may have a paid order refunded; `None`:
    /// no buyer refunds (a seller may still refund).
    pub refund_until_ms: Option<i64>,
}
