//! Orders and payments on the wire: the `order` and `payment` messages, the
//! buyer's `GET /api/v1/me/orders`, and the seller's refund route.

use serde::{Deserialize, Serialize};

/// Where an order stands. `pending` → `paid` | `failed` | `expired` |
/// `cancelled`; `paid` → `refunded`. A payment that lands after the order
/// expired or was cancelled makes it `paid` (seats taken again) or
/// `refunded` (they were gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    Failed,
    Expired,
    Refunded,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Expired,
        OrderStatus::Refunded,
        OrderStatus::Cancelled,
    ];

    /// The name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Expired => "expired",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One seat of an order, priced by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    pub seat: String,
    pub tier: String,
    /// Minor units.
    pub price: i64,
}

/// The `order` message, and each item of `GET /api/v1/me/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    /// The order's id (`pay` names it; it is also the gateway's `orderId`).
    pub order: String,
    pub event: String,
    pub seats: Vec<String>,
    pub lines: Vec<OrderLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    #[schema(example = "KRW")]
    pub currency: String,
    /// The coupon applied, if any.
    pub coupon: Option<String>,
    /// When the buyer asked for the best coupon: why this one (or why none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_reason: Option<String>,
    pub status: OrderStatus,
    /// Why the order is where it is (a decline, an expiry, a refund).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Until when the seats are kept for payment.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When the order was made (an addition).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was paid (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub paid_at: Option<String>,
}

/// A payment's outcome as the buyer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Paid,
    Failed,
    /// Not known yet; a `payment` with the final status follows.
    Pending,
}

/// The `payment` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub order: String,
    pub status: PaymentStatus,
    /// Why it failed (or, an addition, why it is still pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/me/orders` and the seller's `GET /api/v1/seller/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// The cursor of the next page; null on the last.
    pub next: Option<String>,
}

/// The `orders` message (an addition): the buyer's orders, newest first,
/// optionally of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Orders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub orders: Vec<OrderView>,
}

/// `POST /api/v1/seller/orders/{order}/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Why, for the buyer and the ledger.
    pub reason: String,
}
