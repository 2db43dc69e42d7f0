//! The seat port: each event's seat states (free, held by whom until when,
//! sold), all-or-nothing holds, releases and expiry, a version that rises by
//! exactly one per changed seat, and a log of every change written in the
//! same atomic step (the outbox the relay publishes to the bus from).
//!
//! Seat ids are checked against the venue layout before the store is
//! called; the store trusts them. Time is passed in by the caller.

pub mod memory;
pub mod redis;

#[cfg(test)]
pub mod contract;

use super::StoreResult;
use crate::domain::UserId;
use crate::domain::events::{Cause, SeatDiff};
use crate::domain::seats::SeatStatus;
use async_trait::async_trait;

/// A log entry and where it sits in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub cursor: String,
    pub diff: SeatDiff,
}

/// A successful hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub expires_ms: i64,
    pub version: u64,
}

/// Seats released, and the event's version after.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Released {
    pub seats: Vec<String>,
    pub version: u64,
}

/// Why a hold was refused; nothing was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRefused {
    /// These seats are not free.
    Unavailable(Vec<String>),
    /// The buyer already holds `held` seats; the request would exceed the
    /// event's limit.
    Limit { held: u32 },
}

/// Seats sold, the event's version after, and the buyers whose holds on
/// them were overruled (the record said sold; the store had them held by
/// someone else, which only a crash between the two can cause).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sold {
    pub seats: Vec<String>,
    pub version: u64,
    pub overruled: Vec<(UserId, Vec<String>)>,
}

/// The seats that are not free, at a version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub version: u64,
    pub taken: Vec<(String, SeatStatus)>,
}

/// The start of a log, before any entry.
pub const LOG_START: &str = "0";

#[async_trait]
pub trait SeatStore: Send + Sync + 'static {
    /// Holds all `seats` for `user` until `expires_ms`, or none of them.
    async fn hold(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        expires_ms: i64,
        max_per_buyer: u32,
    ) -> StoreResult<Result<Held, HoldRefused>>;

    /// Marks `seats`, all held by `user`, as kept for the buyer's order and
    /// extends each hold to `until_ms` the first time that hold is checked
    /// out (once per hold: checking out again, after a cancel or to change
    /// the coupon, extends nothing). A checked-out hold is not released by
    /// `release` or `release_all`; it ends by expiry, by `uncheckout` and a
    /// release, or by `sell`. Returns the earliest expiry of the seats after,
    /// or the seats `user` does not hold (then nothing changed).
    async fn checkout(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<i64, Vec<String>>>;

    /// Makes those of `seats` that `user` holds ordinary holds again (the
    /// order was cancelled or failed); their expiry stays.
    async fn uncheckout(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<()>;

    /// For a payment that arrived: all `seats` become `user`'s checked-out
    /// holds until at least `until_ms` if each is free or already held by
    /// `user`; otherwise nothing changes and the seats that are not are
    /// returned. No hold limit applies (the seats were paid for).
    async fn retake(
        &self,
        event: &str,
        user: &str,
        seats: &[String],
        until_ms: i64,
    ) -> StoreResult<Result<Held, Vec<String>>>;

    /// Marks `seats` sold to `user`, whatever the store had: the SQL record
    /// of the sale is the truth. Seats already sold are left as they are.
    async fn sell(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Sold>;

    /// Puts sold `seats` back on sale (a refund); other seats are left.
    async fn unsell(&self, event: &str, seats: &[String]) -> StoreResult<Released>;

    /// Releases those of `seats` that `user` holds.
    async fn release(&self, event: &str, user: &str, seats: &[String]) -> StoreResult<Released>;

    /// Releases everything `user` holds at `event` (they left, or their
    /// window ended).
    async fn release_all(&self, event: &str, user: &str, cause: Cause) -> StoreResult<Released>;

    /// Ends holds whose time is up (at most `max` seats); each seat's expiry
    /// is processed once however many nodes sweep. Returns them by buyer.
    async fn expire(&self, event: &str, now_ms: i64, max: u64) -> StoreResult<Vec<(UserId, Vec<String>)>>;

    /// The seats `user` holds at `event`, with the earliest expiry.
    async fn holds_of(&self, event: &str, user: &str) -> StoreResult<(Vec<String>, Option<i64>)>;

    async fn snapshot(&self, event: &str) -> StoreResult<Snapshot>;

    async fn version(&self, event: &str) -> StoreResult<u64>;

    /// Log entries after `cursor`, oldest first, at most `max`.
    async fn log_after(&self, event: &str, cursor: &str, max: u64) -> StoreResult<Vec<LogEntry>>;

    /// Where the relay got to.
    async fn relay_cursor(&self, event: &str) -> StoreResult<String>;

    /// Records how far the relay got: the log cursor and the version of the
    /// last diff it published.
    async fn save_relay_cursor(&self, event: &str, cursor: &str, version: u64) -> StoreResult<()>;

    /// The version of the last diff the relay published; replicas behind it
    /// have missed something on the bus, replicas behind only the store have
    /// not had it yet.
    async fn relayed_version(&self, event: &str) -> StoreResult<u64>;
}
