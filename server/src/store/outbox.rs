//! Outbox rows as the services make them and the consumers read them: the
//! payload is the domain's [`Announcement`] as JSON.

use crate::bus::orders::OrderEvent;
use crate::domain::orders::Announcement;
use crate::store::sql::{OrderRecord, OutboxRow};

/// The row announcing `kind` for `order` as it is after the change.
/// `was_paid`: for a refund, whether the order's seats had been sold.
pub fn outbox_row(kind: &str, order: &OrderRecord, was_paid: bool, now_ms: i64) -> OutboxRow {
    let announcement = Announcement {
        order_id: order.id.clone(),
        event_id: order.event_id.clone(),
        seller_id: order.seller_id.clone(),
        user_id: order.user_id.clone(),
        status: order.status,
        seats: order.seats(),
        gross: order.subtotal,
        discount_seller: order.discount_seller,
        discount_platform: order.discount_platform,
        total: order.total,
        currency: order.currency.clone(),
        was_paid,
        reason: order.reason.clone(),
        at_ms: now_ms,
    };
    OutboxRow {
        id: format!("ob-{:032x}", rand::random::<u128>()),
        event_id: order.event_id.clone(),
        order_id: order.id.clone(),
        kind: kind.to_owned(),
        // A struct of strings, numbers and enums always serializes.
        payload: serde_json::to_string(&announcement).unwrap_or_default(),
        created_ms: now_ms,
    }
}

/// The announcement a row carries; `None` for a payload no consumer can
/// read (logged and skipped by the caller).
pub fn announcement(payload: &str) -> Option<Announcement> {
    serde_json::from_str(payload).ok()
}

/// Rows travel the bus whole.
impl From<&OutboxRow> for OrderEvent {
    fn from(row: &OutboxRow) -> Self {
        row.clone().into()
    }
}

impl From<OutboxRow> for OrderEvent {
    fn from(row: OutboxRow) -> Self {
        let OutboxRow { id, event_id, order_id, kind, payload, created_ms } = row;
        Self { id, event_id, order_id, kind, payload, created_ms }
    }
}

impl From<OrderEvent> for OutboxRow {
    fn from(event: OrderEvent) -> Self {
        let OrderEvent { id, event_id, order_id, kind, payload, created_ms } = event;
        Self { id, event_id, order_id, kind, payload, created_ms }
    }
}
