//! The relay: for every event whose lease this node holds, publish the seat
//! store's change log to the bus in order, then remember how far it got.
//! A crash between publishing and remembering publishes again; consumers
//! drop what they have seen by version. One relay per event (the lease)
//! keeps each event's diffs in order on the bus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use tokio_util::sync::CancellationToken;

use super::{Leases, WorkerError};
use crate::bus::SeatBus;
use crate::domain::EventId;
use crate::domain::events::SeatDiff;
use crate::metrics::Metrics;
use crate::store::seats::SeatStore;

pub struct Relay {
    pub seats: Arc<dyn SeatStore>,
    pub bus: Arc<dyn SeatBus>,
    /// The events whose lease this node holds: it relays only theirs.
    pub leases: Arc<Leases>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// How often the log is read: the floor of diff delivery delay.
const POLL: Duration = Duration::from_millis(5);
/// Entries per read and publish.
const BATCH: u64 = 500;
/// Batches per event per poll, so one busy event cannot starve others.
const BATCHES_PER_POLL: usize = 8;

pub async fn run(ctx: Arc<Relay>) {
    let mut interval = super::ticker(POLL);
    let mut cursors: HashMap<EventId, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let held: Vec<EventId> = ctx.leases.lock().iter().cloned().collect();
        // A lease lost and later regained starts from the stored cursor,
        // which another relay may have moved meanwhile.
        cursors.retain(|e, _| held.contains(e));
        for id in held {
            if let Err(e) = relay(&ctx, &id, &mut cursors).await {
                warn!(event = %id, error = %e, "relaying seat diffs failed; will retry");
            }
        }
    }
}

async fn relay(ctx: &Relay, id: &EventId, cursors: &mut HashMap<EventId, String>) -> Result<(), WorkerError> {
    let mut cursor = match cursors.get(id) {
        Some(c) => c.clone(),
        None => ctx.seats.relay_cursor(id).await?,
    };
    for _ in 0..BATCHES_PER_POLL {
        let entries = ctx.seats.log_after(id, &cursor, BATCH).await?;
        let Some(last) = entries.last() else { break };
        let (last, version) = (last.cursor.clone(), last.diff.version);
        let diffs: Vec<SeatDiff> = entries.into_iter().map(|e| e.diff).collect();
        ctx.bus.publish(&diffs).await?;
        ctx.metrics.diffs_relayed.add(diffs.len() as u64);
        ctx.seats.save_relay_cursor(id, &last, version).await?;
        cursor = last;
        cursors.insert(id.clone(), cursor.clone());
        if (diffs.len() as u64) < BATCH {
            break;
        }
    }
    cursors.insert(id.clone(), cursor);
    Ok(())
}
