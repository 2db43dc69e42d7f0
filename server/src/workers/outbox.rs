//! The outbox relay and the effects consumer.
//!
//! The relay publishes unsent outbox rows in `(created_ms, id)` order
//! (so each order's announcements, and each event's, stay in order) and
//! only then marks them sent: a crash in between publishes them again, and
//! every consumer dedupes by the row id or is idempotent by construction.
//!
//! The effects consumer is the one member of the cluster's consumer group
//! that acts on each announcement: a completed payment turns the buyer's
//! holds into sold seats in the seat store (every watcher then sees `sold`
//! through the seat diffs) and adds a sale to the settlement ledger; a
//! refund puts seats back on sale and adds a refund to the ledger. Both
//! read the SQL record first, so a replayed or reordered announcement
//! cannot sell a seat that was refunded since, nor free one sold again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::WorkerError;
use crate::bus::orders::{OrderBus, OrderEvent};
use crate::clock::Clock;
use crate::domain::orders::{Announcement, kinds};
use crate::metrics::Metrics;
use crate::services::orders::OrderService;
use crate::store::outbox::announcement;
use crate::store::seats::SeatStore;
use crate::store::sql::{LedgerEntry, SqlStore};

/// Rows per publish.
const BATCH: u32 = 500;
/// The relay looks at the outbox at least this often, even unwoken (rows
/// written by other nodes, or left by a crash).
const POLL: Duration = Duration::from_millis(250);
/// After a failed publish the relay waits this long before trying again.
const RETRY: Duration = Duration::from_millis(500);
/// The effects consumers' group: one per cluster.
pub const EFFECTS_GROUP: &str = "qt-order-effects";
/// The ledger's dedupe name for the effects consumer.
const LEDGER_CONSUMER: &str = "ledger";

pub struct OutboxRelay {
    pub sql: SqlStore,
    pub bus: Arc<dyn OrderBus>,
    /// Woken when rows were written on this node.
    pub written: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub shutdown: CancellationToken,
}

impl OutboxRelay {
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = self.written.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            loop {
                // Shutdown cuts a publish short: the rows stay unsent and go
                // out after the restart.
                let step = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    step = self.step() => step,
                };
                match step {
                    Ok(n) if n == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "publishing the outbox failed; will retry");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(RETRY) => break,
                        }
                    }
                }
            }
        }
    }

    /// Publishes one batch; how many rows it published.
    pub async fn step(&self) -> Result<usize, WorkerError> {
        let rows = self.sql.outbox_unsent(BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events: Vec<OrderEvent> = rows.iter().map(OrderEvent::from).collect();
        crate::faults::point(crate::faults::BEFORE_PUBLISH).await;
        self.bus.publish(&events).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        self.sql.mark_sent(&ids, self.clock.now_ms()).await?;
        self.metrics.outbox_published.add(ids.len() as u64);
        debug!(rows = ids.len(), "outbox rows published");
        Ok(ids.len())
    }
}

pub struct OrderEffects {
    pub sql: SqlStore,
    pub seats: Arc<dyn SeatStore>,
    pub bus: Arc<dyn OrderBus>,
    pub clock: Clock,
    pub shutdown: CancellationToken,
}

impl OrderEffects {
    pub async fn run(self: Arc<Self>) {
        let mut sub = match self.bus.subscribe_group(EFFECTS_GROUP).await {
            Ok(sub) => sub,
            Err(e) => {
                // The supervisor restarts this worker.
                warn!(error = %e, "cannot subscribe to order events");
                tokio::time::sleep(RETRY).await;
                return;
            }
        };
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                next = sub.next() => next,
            };
            let Some(event) = next else { break };
            // Acts until it succeeds: an announcement is never skipped
            // because a store was briefly away.
            loop {
                match self.apply(&event).await {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(outbox = %event.id, kind = %event.kind, error = %e, "order effect failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(RETRY) => {}
                        }
                    }
                }
            }
            if let Err(e) = sub.ack(&event).await {
                warn!(outbox = %event.id, error = %e, "acknowledging an order event failed; it may come again");
            }
        }
    }

    /// Acts on one announcement; doing it twice changes nothing.
    pub async fn apply(&self, event: &OrderEvent) -> Result<(), WorkerError> {
        let Some(a) = announcement(&event.payload) else {
            warn!(outbox = %event.id, kind = %event.kind, "skipping an unreadable order announcement");
            return Ok(());
        };
        let now = self.clock.now_ms();
        match event.kind.as_str() {
            kinds::PAYMENT_COMPLETED => {
                // Only the seats the record still has sold to this order.
                let sold = self.sql.sold_seats_of(&a.event_id, &a.seats).await?;
                let mine: Vec<String> =
                    sold.into_iter().filter(|(_, order)| *order == a.order_id).map(|(seat, _)| seat).collect();
                if !mine.is_empty() {
                    let done = self.seats.sell(&a.event_id, &a.user_id, &mine).await?;
                    for (user, seats) in &done.overruled {
                        warn!(event = %a.event_id, user = %user, seats = ?seats, "a sale overruled another buyer's hold");
                    }
                }
                self.sql.record_ledger(&ledger_entry(&event.id, &a, "sale", 1, now), LEDGER_CONSUMER, now).await?;
            }
            kinds::ORDER_REFUNDED if a.was_paid => {
                // Seats sold to another order since are not this refund's.
                let resold: HashSet<String> =
                    self.sql.sold_seats_of(&a.event_id, &a.seats).await?.into_iter().map(|(seat, _)| seat).collect();
                let free: Vec<String> = a.seats.iter().filter(|s| !resold.contains(*s)).cloned().collect();
                if !free.is_empty() {
                    self.seats.unsell(&a.event_id, &free).await?;
                }
                self.sql.record_ledger(&ledger_entry(&event.id, &a, "refund", -1, now), LEDGER_CONSUMER, now).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A ledger line for a sale (`sign` 1) or a refund (`sign` -1).
fn ledger_entry(outbox_id: &str, a: &Announcement, kind: &str, sign: i64, now: i64) -> LedgerEntry {
    LedgerEntry {
        outbox_id: outbox_id.to_owned(),
        seller_id: a.seller_id.clone(),
        event_id: a.event_id.clone(),
        order_id: a.order_id.clone(),
        kind: kind.to_owned(),
        tickets: sign * a.seats.len() as i64,
        gross: sign * a.gross,
        discount_seller: sign * a.discount_seller,
        discount_platform: sign * a.discount_platform,
        amount: sign * a.total,
        currency: a.currency.clone(),
        at_ms: if a.at_ms > 0 { a.at_ms } else { now },
    }
}

/// Expires unpaid orders, on every node (each expiry is a compare-and-set
/// in SQL, so nodes never double up).
pub async fn run_expiry(orders: Arc<OrderService>, shutdown: CancellationToken) {
    let mut tick = super::ticker(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = orders.expire_step().await {
            warn!(error = %e, "expiring orders failed; will retry");
        }
    }
}

/// Looks up payments in doubt and retries refunds that are due; apart from
/// the expiry, since a lookup may wait out the gateway's retries.
pub async fn run_reconciler(orders: Arc<OrderService>, shutdown: CancellationToken) {
    let mut tick = super::ticker(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            done = orders.reconcile_step() => if let Err(e) = done {
                warn!(error = %e, "reconciling payments failed; will retry");
            }
        }
    }
}
