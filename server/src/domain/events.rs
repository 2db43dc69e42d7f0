//! Domain events: what happened to an event's seats, as the seat store
//! logs it, the relay publishes it and every node's feed applies it.

use serde::{Deserialize, Serialize};

use super::seats::{SeatChange, SeatStatus};

/// Why seats changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Held,
    Released,
    Expired,
    /// The buyer's shopping window ended with seats still held.
    WindowEnded,
    /// A payment arrived and its seats were taken for the order again.
    Retaken,
    Sold,
    /// A paid order was refunded; its seats are on sale again.
    Refunded,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Held => "held",
            Cause::Released => "released",
            Cause::Expired => "expired",
            Cause::WindowEnded => "window_ended",
            Cause::Retaken => "retaken",
            Cause::Sold => "sold",
            Cause::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "held" => Some(Cause::Held),
            "released" => Some(Cause::Released),
            "expired" => Some(Cause::Expired),
            "window_ended" => Some(Cause::WindowEnded),
            "retaken" => Some(Cause::Retaken),
            "sold" => Some(Cause::Sold),
            "refunded" => Some(Cause::Refunded),
            _ => None,
        }
    }
}

/// One atomic change to an event's seats: all its seats got `status`, and
/// the event's version became `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatDiff {
    pub event: String,
    pub version: u64,
    pub status: SeatStatus,
    pub seats: Vec<String>,
    /// Whose hold it was (or is).
    pub user: String,
    pub cause: Cause,
}

impl SeatDiff {
    pub fn changes(&self) -> impl Iterator<Item = SeatChange> + '_ {
        self.seats.iter().map(|id| SeatChange { id: id.clone(), status: self.status })
    }
}
