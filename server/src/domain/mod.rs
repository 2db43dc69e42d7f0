//! Pure domain logic: waiting-room policy, event and venue data, the demo
//! catalogue. Nothing here performs I/O or reads a clock; callers pass time in
//! as milliseconds since the Unix epoch so every rule is testable directly.

pub mod coupons;
pub mod demo;
pub mod event;
pub mod events;
pub mod orders;
pub mod queue;
pub mod seats;
pub mod settlement;
pub mod venues;

use std::sync::Arc;

/// A buyer's (or seller's) user id, as carried in the token's `sub` claim.
pub type UserId = Arc<str>;
/// An event id; the waiting room, the seat map and the bus are keyed by it.
pub type EventId = Arc<str>;
