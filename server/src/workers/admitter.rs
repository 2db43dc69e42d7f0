//! The admitter: for every event, hold (or wait for) the event's lease and,
//! while holding it, run one admission step per tick. Exactly one node's
//! admitter acts per event; the fencing token makes a stale one harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Leases;
use crate::domain::EventId;
use crate::domain::queue::RateMeter;
use crate::services::queue::QueueService;
use crate::store::StoreResult;
use crate::store::waiting::Lease;

/// What the admitter works with: the waiting room's use cases (and through
/// them its store, the seats, the catalogue and the sockets' notices).
pub struct Admitter {
    pub queue: Arc<QueueService>,
    /// The events whose lease this node holds, for the relay.
    pub leases: Arc<Leases>,
    pub node_id: String,
    pub tick: Duration,
    pub shutdown: CancellationToken,
}

/// A lease outlives a missed renewal or two, and a dead holder is replaced
/// within TTL + one renewal period.
pub const LEASE_TTL_MS: i64 = 3_000;
const LEASE_RENEW_MS: i64 = 1_000;
const MAX_BATCH: u64 = 2_000;
const PUBLISH_STATS_MS: i64 = 1_000;

#[derive(Default)]
struct EventAdmitter {
    lease: Option<Lease>,
    lease_checked_ms: Option<i64>,
    meter: RateMeter,
    published_ms: i64,
}

pub async fn run(ctx: Arc<Admitter>) {
    let mut interval = super::ticker(ctx.tick);
    let mut events: HashMap<EventId, EventAdmitter> = HashMap::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let now = ctx.queue.clock.now_ms();
        for id in ctx.queue.catalog.ids() {
            let state = events.entry(id.clone()).or_default();
            if let Err(e) = step(&ctx, &id, state, now).await {
                warn!(event = %id, error = %e, "admission step failed");
            }
        }
    }
    // Hand over at once instead of making the next admitter wait out the TTL.
    ctx.leases.lock().clear();
    for (id, state) in events {
        if let Some(lease) = state.lease
            && let Err(e) = ctx.queue.room.release_lease(&id, &ctx.node_id, lease).await
        {
            warn!(event = %id, error = %e, "could not release admitter lease");
        }
    }
}

/// Tells the relay which events' diffs it publishes.
fn set_held(ctx: &Admitter, id: &EventId, held: bool) {
    let mut leases = ctx.leases.lock();
    if held {
        leases.insert(id.clone());
    } else {
        leases.remove(id);
    }
}

async fn step(ctx: &Admitter, id: &EventId, state: &mut EventAdmitter, now: i64) -> StoreResult<()> {
    if state.lease_checked_ms.is_none_or(|t| now - t >= LEASE_RENEW_MS) {
        state.lease_checked_ms = Some(now);
        let lease = ctx.queue.room.acquire_lease(id, &ctx.node_id, now, LEASE_TTL_MS).await?;
        if lease != state.lease {
            match lease {
                Some(l) => info!(event = %id, token = l.token, "admitter lease taken"),
                None => info!(event = %id, "admitter lease held elsewhere"),
            }
        }
        state.lease = lease;
        set_held(ctx, id, lease.is_some());
    }
    let Some(lease) = state.lease else { return Ok(()) };
    let Some(admitted) = ctx.queue.admission_step(id, lease, now, MAX_BATCH).await? else {
        warn!(event = %id, token = lease.token, "admitter lease lost; standing down");
        state.lease = None;
        state.lease_checked_ms = None;
        set_held(ctx, id, false);
        return Ok(());
    };
    state.meter.record(now, admitted);
    if now - state.published_ms >= PUBLISH_STATS_MS
        && let Some(event) = ctx.queue.catalog.get(id)
    {
        state.published_ms = now;
        let stats = state.meter.stats(now, &event.queue);
        ctx.queue.room.publish_stats(id, &stats).await?;
        ctx.queue.catalog.set_stats(id, stats);
    }
    Ok(())
}
