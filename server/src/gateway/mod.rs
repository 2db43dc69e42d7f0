//! The payment gateway port: confirm a payment, look an outcome up by order
//! id, refund. The Toss Payments client (`toss.rs`) is the adapter; the
//! sandbox (`sandbox.rs`) is a gateway of our own that speaks the same API,
//! for embedded mode, tests and load scripts.
//!
//! Every outcome is one of three: known good, known bad, or unknown. An
//! unknown outcome is never guessed: the caller keeps the payment pending
//! and looks it up later.

pub mod sandbox;
pub mod toss;

use async_trait::async_trait;

/// A payment the gateway approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The gateway's key for the payment (refunds name it).
    pub payment_key: String,
    /// The order id the gateway recorded; the caller checks it is its own.
    pub order_id: String,
    /// The amount the gateway says it charged; the caller checks it against
    /// the stored order, never trusts it.
    pub amount: i64,
    /// `DONE`, or `CANCELED` once refunded.
    pub status: String,
    pub approved_at: Option<String>,
}

/// A final refusal: retrying will not change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declined {
    /// The gateway's code, such as `REJECT_CARD_PAYMENT`.
    pub code: String,
    pub message: String,
}

/// What a confirm or a refund came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Approved(Approval),
    Declined(Declined),
    /// Time-outs, lost replies, 5xx or "try again" until the retries ran out:
    /// the charge may or may not have happened.
    Unknown(String),
}

/// What a lookup by order id found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Approval),
    /// The gateway has no approved payment for the order.
    NotFound,
    /// The gateway could not be asked; try again later.
    Unknown(String),
}

#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// `POST /v1/payments/confirm` with `Idempotency-Key: order_id`, retried
    /// as configured.
    async fn confirm(&self, payment_key: &str, order_id: &str, amount: i64) -> Outcome;

    /// `GET /v1/payments/orders/{orderId}`.
    async fn lookup(&self, order_id: &str) -> Lookup;

    /// `POST /v1/payments/{paymentKey}/cancel`, idempotent under
    /// `idempotency_key`. `Approved` carries the payment, now `CANCELED`.
    async fn cancel(&self, payment_key: &str, reason: &str, idempotency_key: &str) -> Outcome;
}
