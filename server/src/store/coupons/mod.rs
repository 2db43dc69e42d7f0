//! The coupon-claim port: exact stock and one coupon per buyer per
//! campaign, under any concurrency, durable before a claim is answered.
//!
//! - `memory` (embedded): the checks in process, the claim answered once a
//!   group commit has it in SQLite.
//! - `redis` (distributed): the checks in one Lua script, the claim
//!   produced to Kafka before it is answered, and a consumer that writes it
//!   to Postgres, whose constraints refuse what Redis got wrong.
//!
//! The SQL store is the record either way: an adapter that has not seen a
//! campaign yet (a fresh node, a restarted Redis) loads it from there.

pub mod claim_log;
pub mod memory;
pub mod redis;

#[cfg(test)]
pub mod contract;

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::coupons::{Campaign, Coupon};

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The buyer's new coupon, durable.
    Claimed(Coupon),
    /// Every coupon of the campaign is issued.
    SoldOut,
    /// The buyer has one of this campaign's coupons already.
    AlreadyClaimed,
}

/// Why a new stock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BelowIssued {
    pub issued: u64,
}

#[async_trait]
pub trait CouponClaims: Send + Sync + 'static {
    /// Claims one coupon of `campaign` for `user` at `now_ms`. The caller
    /// has checked that the campaign is claimable; the store checks stock
    /// and the buyer. `Claimed` only once the coupon is in the SQL store or
    /// on its way there through a log that cannot lose it.
    async fn claim(&self, campaign: &Campaign, user: &str, now_ms: i64) -> StoreResult<Claim>;

    /// Makes a campaign that was just created (nothing issued, nothing in
    /// flight) live at once, so its first claims need no load.
    async fn open(&self, campaign: &Campaign) -> StoreResult<()>;

    /// Applies a campaign's new stock (`None`: unlimited) to the live
    /// counts; refused, with nothing changed, below what was issued.
    async fn set_stock(&self, campaign: &Campaign) -> StoreResult<Result<(), BelowIssued>>;

    /// Coupons issued so far, as the live counts have it; `None` when this
    /// store has not loaded the campaign (the SQL store then knows).
    async fn issued(&self, campaign: &str) -> StoreResult<Option<u64>>;
}
