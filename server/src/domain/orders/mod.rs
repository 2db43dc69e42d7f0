//! Orders, pure: pricing a buyer's held seats from the event's tiers, the
//! totals with a coupon, and the order's state machine. Every transition is
//! named ([`Step`]) and checked here; the stores only record what this
//! module allowed, with its time and reason.
//!
//! Money is `i64` minor units. No I/O and no clock: callers pass the time.

#[cfg(test)]
mod tests;

use thiserror::Error;

pub use qt_protocol::orders::OrderStatus;

use super::coupons::{Money, PricedLine, PricedOrder, Split};
use super::event::Event;
use super::seats::SeatLayout;

/// Why seats cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    #[error("no seats to check out: hold some first")]
    NoSeats,
    #[error("seat {0} is not in this event's venue")]
    UnknownSeat(String),
    #[error("seat {seat} has tier {tier}, which has no price in this event")]
    NoPrice { seat: String, tier: String },
    #[error("an order of this size is beyond any price")]
    Overflow,
}

/// Prices `seats` (in the order given, each once) from the event's tiers;
/// the client never sends a price.
pub fn price_seats(event: &Event, layout: &SeatLayout, seats: &[String]) -> Result<PricedOrder, PricingError> {
    if seats.is_empty() {
        return Err(PricingError::NoSeats);
    }
    let mut lines: Vec<PricedLine> = Vec::with_capacity(seats.len());
    let mut total: Money = 0;
    for seat in seats {
        if lines.iter().any(|l| &l.seat == seat) {
            continue;
        }
        let i = layout.index_of(seat).ok_or_else(|| PricingError::UnknownSeat(seat.clone()))?;
        let tier = &layout.seats[i].tier;
        let price = event
            .tiers
            .iter()
            .find(|t| &t.id == tier)
            .map(|t| t.price)
            .filter(|p| *p >= 0)
            .ok_or_else(|| PricingError::NoPrice { seat: seat.clone(), tier: tier.clone() })?;
        total = total.checked_add(price).ok_or(PricingError::Overflow)?;
        lines.push(PricedLine { seat: seat.clone(), tier: tier.clone(), price });
    }
    Ok(PricedOrder { event: event.id.clone(), seller_id: event.seller_id.clone(), lines })
}

/// What an order costs: the subtotal, the discount (never more than the
/// subtotal, never negative) and who funds it, and the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: Money,
    pub discount: Money,
    pub split: Split,
    pub total: Money,
}

impl Totals {
    /// `split` must come from the coupon's funders for `discount`; it is
    /// scaled down with the discount if the discount had to be clamped.
    pub fn new(subtotal: Money, discount: Money, split: impl Fn(Money) -> Split) -> Totals {
        let subtotal = subtotal.max(0);
        let discount = discount.clamp(0, subtotal);
        Totals { subtotal, discount, split: split(discount), total: subtotal - discount }
    }
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The gateway approved the payment and the seats are the buyer's.
    Paid,
    /// The gateway declined for good (or the payment could not be
    /// confirmed and was given up).
    Declined,
    /// The order's time ran out unpaid.
    Expire,
    /// The buyer gave up an unpaid order.
    Cancel,
    /// The money went back: a refund of a paid order, or of a payment that
    /// landed after its seats were gone.
    Refund,
}

impl Step {
    pub const ALL: [Step; 5] = [Step::Paid, Step::Declined, Step::Expire, Step::Cancel, Step::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Paid => "paid",
            Step::Declined => "declined",
            Step::Expire => "expire",
            Step::Cancel => "cancel",
            Step::Refund => "refund",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("an order that is {from} cannot be {}", step.as_str())]
pub struct IllegalStep {
    pub from: &'static str,
    pub step: Step,
}

/// The state machine. `pending` → `paid` | `failed` | `expired` |
/// `cancelled`; `paid` → `refunded`. A payment that lands late (after
/// `expired` or `cancelled`) still ends `paid` when the seats could be
/// taken again, or `refunded` when they could not: money never stays
/// without a ticket (a payment approved after its order failed is
/// refunded too). Nothing leads back to `pending`; `refunded` is final, and
/// `failed` leads only there.
pub fn next_status(from: OrderStatus, step: Step) -> Result<OrderStatus, IllegalStep> {
    use OrderStatus as S;
    let to = match (from, step) {
        (S::Pending, Step::Paid) => S::Paid,
        (S::Pending, Step::Declined) => S::Failed,
        (S::Pending, Step::Expire) => S::Expired,
        (S::Pending, Step::Cancel) => S::Cancelled,
        (S::Paid, Step::Refund) => S::Refunded,
        // Late payments.
        (S::Expired | S::Cancelled, Step::Paid) => S::Paid,
        (S::Pending | S::Expired | S::Cancelled, Step::Refund) => S::Refunded,
        // An approval that arrived after the payment was taken for failed.
        (S::Failed, Step::Refund) => S::Refunded,
        _ => return Err(IllegalStep { from: from.as_str(), step }),
    };
    Ok(to)
}

/// Whether the order still keeps its seats (and its coupon) for payment.
pub fn keeps_seats(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Pending | OrderStatus::Paid)
}

/// Whether the buyer may have a paid order refunded now under the event's
/// policy: refunds until `refund_until_ms`, exclusive; none without one.
pub fn buyer_may_refund(refund_until_ms: Option<i64>, now_ms: i64) -> bool {
    refund_until_ms.is_some_and(|until| now_ms < until)
}

/// A fresh order id: unique without coordination, and valid as a Toss
/// `orderId` (6–64 characters of `[A-Za-z0-9_-]`).
pub fn new_order_id(rand: u128) -> String {
    format!("ord-{rand:032x}")
}

/// When a checked-out order expires: its holds are extended once, by at
/// most `hold_s`, from when they would have ended; never earlier than they
/// would have ended anyway.
pub fn order_expiry(hold_end_ms: i64, now_ms: i64, hold_s: u32) -> i64 {
    hold_end_ms.max(now_ms).saturating_add(i64::from(hold_s) * 1000).max(hold_end_ms)
}

/// What an outbox row announces about an order: enough for every consumer
/// (seat store, ledger, pushes) without reading the order again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    pub order_id: String,
    pub event_id: String,
    pub seller_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub seats: Vec<String>,
    /// Ticket prices before discounts.
    pub gross: Money,
    pub discount_seller: Money,
    pub discount_platform: Money,
    /// What the buyer paid (or is paid back).
    pub total: Money,
    pub currency: String,
    /// For a refund: whether the order had been paid (its seats sold), so
    /// the seats go back on sale; a late payment refunded never sold any.
    pub was_paid: bool,
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// The outbox row kinds.
pub mod kinds {
    pub const PAYMENT_COMPLETED: &str = "payment.completed";
    pub const ORDER_REFUNDED: &str = "order.refunded";
    pub const ORDER_EXPIRED: &str = "order.expired";
    pub const ORDER_FAILED: &str = "order.failed";
    pub const ORDER_CANCELLED: &str = "order.cancelled";
    pub const ORDER_CREATED: &str = "order.created";
}
