//! Order and payment pushes: every node hears every order announcement and
//! tells the buyer's sockets connected here what their order is now (and,
//! for an outcome, the `payment`), so every tab and device of the buyer
//! sees the same order, whichever node answered the request.

use std::sync::Arc;
use std::time::Duration;

use qt_protocol::ServerMsg;
use tracing::warn;

use super::render::push;
use crate::bus::orders::{OrderBus, OrderEvent};
use crate::domain::orders::kinds;
use crate::services::orders::OrderService;
use crate::store::outbox::announcement;

pub async fn run(
    orders: Arc<OrderService>,
    hub: Arc<super::hub::Hub>,
    bus: Arc<dyn OrderBus>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut sub = match bus.subscribe_all().await {
        Ok(sub) => sub,
        Err(e) => {
            warn!(error = %e, "cannot subscribe to order events for pushes");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = sub.next() => next,
        };
        let Some(event) = next else { break };
        if let Err(e) = tell(&orders, &hub, &event).await {
            warn!(order = %event.order_id, error = %e, "could not push an order change");
        }
    }
}

async fn tell(orders: &OrderService, hub: &super::hub::Hub, event: &OrderEvent) -> crate::store::StoreResult<()> {
    let Some(a) = announcement(&event.payload) else { return Ok(()) };
    if !hub.is_connected(&a.user_id) {
        return Ok(());
    }
    // The order as it is now: a later change may have overtaken this one.
    let Some((order, payment)) = orders.view_of(&a.order_id).await? else { return Ok(()) };
    let outcome = match event.kind.as_str() {
        kinds::PAYMENT_COMPLETED | kinds::ORDER_FAILED => true,
        // A payment that came too late and went back.
        kinds::ORDER_REFUNDED => !a.was_paid,
        _ => false,
    };
    hub.tell(&a.user_id, || push(&ServerMsg::Order(order)));
    if outcome {
        hub.tell(&a.user_id, || push(&ServerMsg::Payment(payment)));
    }
    Ok(())
}
