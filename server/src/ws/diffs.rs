//! Seat diffs to watchers: this node's one subscription to the seat-diff bus. Applies
//! every diff to the live replicas, batches what arrived together into one
//! `seats` frame per event, tells buyers whose holds ended, and keeps the
//! replicas honest (resync on gaps, version probes against the store).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use qt_protocol::ServerMsg;
use qt_protocol::frames::HoldExpired;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Sockets;
use super::render;
use crate::bus::{BusEvent, SeatBus};
use crate::domain::events::Cause;
use crate::domain::seats::Applied;
use crate::workers::ticker;

const MAINTAIN_EVERY: Duration = Duration::from_millis(500);
/// Watchers get at most one `seats` frame per event per flush interval:
/// under load this bounds frames per socket, whose cost (a write, a wake-up)
/// dominates fan-out, while the first change after a quiet spell still goes
/// out at once. The interval grows with the number of watchers so that one
/// round of writes fits in it.
fn flush_every(watchers: usize) -> Duration {
    Duration::from_micros((watchers as u64 * 10).clamp(25_000, 100_000))
}
/// Diffs applied in one go before the loop looks at its timers again.
const MAX_BATCH: usize = 1_000;

pub async fn run(ctx: Arc<Sockets>, bus: Arc<dyn SeatBus>) {
    let mut sub = match bus.subscribe().await {
        Ok(sub) => sub,
        Err(e) => {
            warn!(error = %e, "cannot subscribe to the seat-diff bus");
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            return;
        }
    };
    let mut maintenance = ticker(MAINTAIN_EVERY);
    let mut last_flush = Instant::now() - flush_every(0);
    let mut flush_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                ctx.feed.flush(ctx.clock.now_ms());
                last_flush = Instant::now();
                flush_at = None;
            }
            event = sub.next() => {
                let Some(event) = event else {
                    warn!("the seat-diff bus closed");
                    return;
                };
                handle(&ctx, event);
                // Whatever else is already here is applied now too.
                let mut batched = 1;
                while batched < MAX_BATCH {
                    match sub.next().now_or_never() {
                        Some(Some(event)) => handle(&ctx, event),
                        _ => break,
                    }
                    batched += 1;
                }
                if flush_at.is_none() {
                    let due = last_flush + flush_every(ctx.feed.watcher_count());
                    if due <= Instant::now() {
                        ctx.feed.flush(ctx.clock.now_ms());
                        last_flush = Instant::now();
                    } else {
                        flush_at = Some(due);
                    }
                }
            }
            _ = maintenance.tick() => maintain(&ctx).await,
        }
    }
}

fn handle(ctx: &Sockets, event: BusEvent) {
    match event {
        BusEvent::Diff(diff) => {
            let outcome = ctx.feed.apply(&diff);
            if outcome == Some(Applied::Applied) {
                ctx.metrics.diffs_applied.inc();
            }
            // Tell the buyer their hold ended, once (not on a redelivery).
            if matches!(diff.cause, Cause::Expired | Cause::WindowEnded) && outcome != Some(Applied::Duplicate) {
                ctx.hub.tell(&diff.user, || {
                    render::push(&ServerMsg::HoldExpired(HoldExpired {
                        event: diff.event.clone(),
                        seats: diff.seats.clone(),
                    }))
                });
            }
        }
        BusEvent::Lost => {
            info!("seat diffs may have been lost; checking every replica");
            ctx.feed.mark_all_stale();
        }
    }
}

async fn maintain(ctx: &Sockets) {
    let now = ctx.clock.now_ms();
    let chores = ctx.feed.maintain(now);
    let mut resync = chores.resync;
    for (id, _) in chores.probe {
        // Against what was published, not what the store has: a relay that
        // lags under load is not a lost diff.
        match ctx.seats.relayed_version(&id).await {
            Ok(version) if ctx.feed.probed(&id, version) => resync.push(id),
            Ok(_) => {}
            Err(e) => warn!(event = %id, error = %e, "seat version probe failed"),
        }
    }
    for id in resync {
        match ctx.seats.snapshot(&id).await {
            Ok(snapshot) => {
                ctx.feed.resync(&id, &snapshot, ctx.clock.now_ms());
                ctx.metrics.resyncs.inc();
            }
            Err(e) => warn!(event = %id, error = %e, "seat map resync failed"),
        }
    }
}
