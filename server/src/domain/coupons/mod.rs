//! First-come coupon campaigns, pure: what a campaign is, when it may be
//! claimed, what each kind of coupon takes off a priced order, who funds
//! the discount, and which of a buyer's coupons is best for an order.
//!
//! Money is `i64` minor units throughout. No I/O and no clock: callers pass
//! the time in.

mod best;
mod kinds;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;

pub use best::{BestCoupon, best_coupon, coupon_discount};
pub use kinds::{CouponKind, KINDS, kind_named};
pub use validate::{FieldErrors, validate_new, validate_patch};

/// An amount in the minor unit of a currency.
pub type Money = i64;

/// Who pays for a campaign's discounts, in whole percent; they sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FundedBy {
    pub seller_pct: u8,
    pub platform_pct: u8,
}

/// A discount divided between its funders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub seller: Money,
    pub platform: Money,
}

impl FundedBy {
    /// Splits `discount` so the parts add up to it exactly: the seller's
    /// share rounds down, the platform takes the remainder.
    pub fn split(&self, discount: Money) -> Split {
        let discount = discount.max(0);
        let seller = mul_div_floor(discount, i64::from(self.seller_pct.min(100)), 100);
        Split { seller, platform: discount - seller }
    }
}

/// `a * b / c` rounded down, without overflow for any money amount.
pub(crate) fn mul_div_floor(a: Money, b: i64, c: i64) -> Money {
    let v = (i128::from(a) * i128::from(b)).div_euclid(i128::from(c.max(1)));
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// What a campaign's orders may be: events of its seller, and tiers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    /// `None`: every event of the seller.
    pub events: Option<Vec<String>>,
    /// `None`: every tier.
    pub tiers: Option<Vec<String>>,
}

/// The numbers a kind reads: the stated value and the limits around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// The amount off (`fixed`) or the percentage (`percent`).
    pub value: i64,
    /// No discount exceeds this; `None` for no cap.
    pub max_discount: Option<Money>,
    /// The order's applicable subtotal must be at least this.
    pub min_spend: Money,
}

/// A coupon campaign as the domain holds it.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    pub seller_id: String,
    pub name: String,
    pub kind: &'static dyn CouponKind,
    pub terms: Terms,
    /// `None`: unlimited.
    pub stock: Option<u64>,
    pub starts_at_ms: i64,
    /// Claims and uses stop here; claimed coupons expire here too.
    pub ends_at_ms: i64,
    pub paused: bool,
    pub targets: Targets,
    pub funded_by: FundedBy,
    pub created_ms: i64,
}

impl PartialEq for Campaign {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.seller_id == o.seller_id
            && self.name == o.name
            && self.kind.name() == o.kind.name()
            && self.terms == o.terms
            && self.stock == o.stock
            && self.starts_at_ms == o.starts_at_ms
            && self.ends_at_ms == o.ends_at_ms
            && self.paused == o.paused
            && self.targets == o.targets
            && self.funded_by == o.funded_by
            && self.created_ms == o.created_ms
    }
}

impl Eq for Campaign {}

/// Why a campaign cannot be claimed from right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    NotStarted,
    Ended,
    Paused,
}

impl Inactive {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotStarted => "this campaign has not started yet",
            Self::Ended => "this campaign has ended",
            Self::Paused => "this campaign is paused",
        }
    }
}

impl Campaign {
    /// Whether buyers may claim at `now_ms` (stock aside: the stores count it).
    pub fn claimable(&self, now_ms: i64) -> Result<(), Inactive> {
        if now_ms < self.starts_at_ms {
            Err(Inactive::NotStarted)
        } else if now_ms >= self.ends_at_ms {
            Err(Inactive::Ended)
        } else if self.paused {
            Err(Inactive::Paused)
        } else {
            Ok(())
        }
    }

    /// Whether coupons of this campaign may be used on an event.
    pub fn covers_event(&self, seller_id: &str, event: &str) -> bool {
        self.seller_id == seller_id && self.targets.events.as_ref().is_none_or(|e| e.iter().any(|id| id == event))
    }

    fn covers_tier(&self, tier: &str) -> bool {
        self.targets.tiers.as_ref().is_none_or(|t| t.iter().any(|id| id == tier))
    }

    /// The part of an order's subtotal this campaign discounts: the lines
    /// in its tiers, and nothing when the order's event is not a target.
    pub fn applicable_subtotal(&self, order: &PricedOrder) -> Money {
        if !self.covers_event(&order.seller_id, &order.event) {
            return 0;
        }
        order
            .lines
            .iter()
            .filter(|l| self.covers_tier(&l.tier))
            .fold(0, |sum: Money, l| sum.saturating_add(l.price.max(0)))
    }

    /// What this campaign's coupon takes off `order`, or why it does not
    /// apply. Never negative, never above the order's subtotal nor the
    /// campaign's cap.
    pub fn discount(&self, order: &PricedOrder) -> Result<Money, NotApplicable> {
        if !self.covers_event(&order.seller_id, &order.event) {
            return Err(NotApplicable::OtherEvent);
        }
        let base = self.applicable_subtotal(order);
        if base == 0 {
            return Err(NotApplicable::NoTier);
        }
        if base < self.terms.min_spend {
            return Err(NotApplicable::BelowMinSpend { min_spend: self.terms.min_spend, base });
        }
        let raw = self.kind.discount(&self.terms, base).max(0);
        let capped = self.terms.max_discount.map_or(raw, |cap| raw.min(cap.max(0)));
        Ok(capped.min(base).min(order.subtotal()))
    }

    /// Coupons left to claim, given how many were issued.
    pub fn remaining(&self, issued: u64) -> Option<u64> {
        self.stock.map(|s| s.saturating_sub(issued))
    }
}

/// Why a coupon does not apply to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApplicable {
    OtherEvent,
    NoTier,
    BelowMinSpend { min_spend: Money, base: Money },
    Used,
    Expired,
}

impl NotApplicable {
    /// What the buyer is told.
    pub fn reason(self) -> String {
        match self {
            Self::OtherEvent => "this coupon is not valid for this event".into(),
            Self::NoTier => "this coupon is not valid for the seats in this order".into(),
            Self::BelowMinSpend { min_spend, base } => {
                let (min_spend, base) = (best::thousands(min_spend), best::thousands(base));
                format!("this coupon needs a spend of at least {min_spend}; the order has {base}")
            }
            Self::Used => "this coupon was already used".into(),
            Self::Expired => "this coupon has expired".into(),
        }
    }
}

/// One priced seat of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub seat: String,
    pub tier: String,
    pub price: Money,
}

/// An order priced by the server from the event's tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedOrder {
    pub event: String,
    pub seller_id: String,
    pub lines: Vec<PricedLine>,
}

impl PricedOrder {
    pub fn subtotal(&self) -> Money {
        self.lines.iter().fold(0, |sum: Money, l| sum.saturating_add(l.price.max(0)))
    }
}

/// A claimed coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub id: String,
    pub campaign_id: String,
    pub user: String,
    pub claimed_ms: i64,
    /// When it was spent on a paid order; a coupon is used once.
    pub used_ms: Option<i64>,
}

/// Fresh coupon ids: unique without coordination between nodes.
pub fn new_coupon_id(rand: u128) -> String {
    format!("cp-{rand:032x}")
}

/// Fresh campaign ids, in the form clients may choose them too.
pub fn new_campaign_id(rand: u64) -> String {
    format!("cmp-{rand:016x}")
}

/// Field name → what is wrong with it.
pub type Fields = BTreeMap<String, String>;
