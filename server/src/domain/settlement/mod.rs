//! Settlement: what a seller is owed for a period, worked out from the
//! ledger's sales and refunds. Pure arithmetic in integer minor units.
//!
//! The platform fee of a sale, by the seller's [`FeePlan`], is charged on
//! what the sale adds to the seller's side, its base `gross -
//! discounts_seller` (a discount the platform funds is paid to the seller by
//! the platform, so it is not the seller's loss and does not lower the base):
//!
//! ```text
//! fee = min(base, max(min_per_order, floor(base × percent_bp / 10,000) + fixed_per_ticket × tickets))
//! ```
//!
//! A refund gives back `refunded` of that base (`refunds`), and the fee in
//! proportion: after refunds that add up to `R` of the order's base, the
//! clawbacks add up to `floor(fee × R / base)`, so a whole refund gives the
//! whole fee back and the order nets to zero. Every line and every
//! statement satisfies, to the unit,
//! `net = gross - discounts_seller - fees + fee_clawbacks - refunds`.

use std::collections::HashMap;

use crate::domain::coupons::Money;

#[cfg(test)]
mod tests;

/// Basis points in a whole.
const WHOLE_BP: i128 = 10_000;

/// A seller's platform fee: a percentage (in basis points) of each sale's
/// base, plus a fixed amount per ticket, at least a minimum per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePlan {
    pub percent_bp: u32,
    pub fixed_per_ticket: Money,
    pub min_per_order: Money,
}

impl Default for FeePlan {
    /// 3 % plus nothing per ticket, no minimum.
    fn default() -> Self {
        Self { percent_bp: 300, fixed_per_ticket: 0, min_per_order: 0 }
    }
}

/// Why a fee plan is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPlan {
    #[error("percent_bp must be between 0 and 10000")]
    Percent,
    #[error("fixed_per_ticket must not be negative")]
    Fixed,
    #[error("min_per_order must not be negative")]
    Minimum,
}

impl FeePlan {
    pub fn check(&self) -> Result<(), BadPlan> {
        if i128::from(self.percent_bp) > WHOLE_BP {
            return Err(BadPlan::Percent);
        }
        if self.fixed_per_ticket < 0 {
            return Err(BadPlan::Fixed);
        }
        if self.min_per_order < 0 {
            return Err(BadPlan::Minimum);
        }
        Ok(())
    }

    /// The fee of a sale of `tickets` with `base` (see the module docs);
    /// never negative, never above the base.
    pub fn fee(&self, base: Money, tickets: i64) -> Money {
        if base <= 0 {
            return 0;
        }
        let percent = i128::from(base) * i128::from(self.percent_bp) / WHOLE_BP;
        let fixed = i128::from(self.fixed_per_ticket) * i128::from(tickets.max(0));
        let fee = (percent + fixed).max(i128::from(self.min_per_order)).min(i128::from(base));
        // Between 0 and `base`, so it fits.
        Money::try_from(fee).unwrap_or(base)
    }
}

/// The clawback of a refund that brings an order's refunded base from
/// `before` to `before + now` (both clamped to `0..=base`).
pub fn clawback(fee: Money, base: Money, before: Money, now: Money) -> Money {
    if base <= 0 || fee <= 0 {
        return 0;
    }
    let upto = |refunded: Money| {
        let r = i128::from(refunded.clamp(0, base));
        Money::try_from(i128::from(fee) * r / i128::from(base)).unwrap_or(fee)
    };
    upto(before.saturating_add(now.max(0))) - upto(before)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Sale,
    Refund,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sale => "sale",
            Self::Refund => "refund",
        }
    }
}

/// A ledger entry as settlement reads it. A refund's amounts are what it
/// gives back, as positive numbers (`gross` and `discount_seller` of the
/// part refunded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub event: String,
    pub order: String,
    pub kind: EntryKind,
    pub at_ms: i64,
    pub tickets: i64,
    pub gross: Money,
    pub discount_seller: Money,
    pub discount_platform: Money,
}

/// One statement line: a sale or a refund of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub entry: String,
    pub event: String,
    pub order: String,
    pub kind: &'static str,
    pub at_ms: i64,
    /// Tickets sold (negative for tickets refunded).
    pub tickets: i64,
    pub gross: Money,
    pub discounts_seller: Money,
    pub discounts_platform: Money,
    pub fees: Money,
    pub fee_clawbacks: Money,
    pub refunds: Money,
    pub net: Money,
}

/// A statement's figures: the sums of its lines, `orders` counting sales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub orders: i64,
    pub tickets: i64,
    pub gross: Money,
    pub discounts_seller: Money,
    pub discounts_platform: Money,
    pub fees: Money,
    pub fee_clawbacks: Money,
    pub refunds: Money,
    pub net: Money,
}

impl Totals {
    pub fn of(lines: &[Line]) -> Self {
        let mut t = Self::default();
        for l in lines {
            t.orders += i64::from(l.kind == EntryKind::Sale.as_str());
            t.tickets += l.tickets;
            t.gross += l.gross;
            t.discounts_seller += l.discounts_seller;
            t.discounts_platform += l.discounts_platform;
            t.fees += l.fees;
            t.fee_clawbacks += l.fee_clawbacks;
            t.refunds += l.refunds;
            t.net += l.net;
        }
        t
    }

    /// Whether the balance identity holds.
    pub fn balances(&self) -> bool {
        self.net == self.gross - self.discounts_seller - self.fees + self.fee_clawbacks - self.refunds
    }
}

/// What settlement remembers of an order while walking its history.
#[derive(Default)]
struct Sold {
    base: Money,
    fee: Money,
    refunded: Money,
}

/// The lines of the entries `included` picks, worked out over `history`:
/// every entry of the orders concerned, in time order (a refund needs its
/// sale's fee and the refunds before it, which may lie in earlier
/// statements). A refund of an order whose sale is not in `history` gives
/// back its base and claws nothing back. `charged` is the fee a sale was
/// settled with, once a closed statement fixed it: refunds claw back what
/// was charged, whatever the plan says now.
pub fn lines(
    history: &[Entry],
    plan: &FeePlan,
    charged: impl Fn(&Entry) -> Option<Money>,
    included: impl Fn(&Entry) -> bool,
) -> Vec<Line> {
    let mut orders: HashMap<&str, Sold> = HashMap::new();
    let mut out = Vec::new();
    for e in history {
        let sold = orders.entry(e.order.as_str()).or_default();
        let line = match e.kind {
            EntryKind::Sale => {
                let base = e.gross - e.discount_seller;
                let fee = charged(e).unwrap_or_else(|| plan.fee(base, e.tickets));
                *sold = Sold { base, fee, refunded: 0 };
                Line {
                    tickets: e.tickets,
                    gross: e.gross,
                    discounts_seller: e.discount_seller,
                    discounts_platform: e.discount_platform,
                    fees: fee,
                    net: base - fee,
                    ..Line::default()
                }
            }
            EntryKind::Refund => {
                let refunds = e.gross - e.discount_seller;
                let back = clawback(sold.fee, sold.base, sold.refunded, refunds);
                sold.refunded = sold.refunded.saturating_add(refunds);
                Line { tickets: -e.tickets, fee_clawbacks: back, refunds, net: back - refunds, ..Line::default() }
            }
        };
        if included(e) {
            out.push(Line {
                entry: e.id.clone(),
                event: e.event.clone(),
                order: e.order.clone(),
                kind: e.kind.as_str(),
                at_ms: e.at_ms,
                ..line
            });
        }
    }
    out
}
