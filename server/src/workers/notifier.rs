//! The notifier: every tick, fetch the places of all buyers waiting or
//! admitted on this node's sockets (one store call per event and chunk,
//! which also keeps waiting places alive) and push what changed: positions
//! when due, admissions, lost places and ended shopping windows. Admissions
//! and window ends decided by another node's admitter reach this node's
//! sockets this way.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::app::Ctx;
use crate::ws::hub::News;
use crate::ws::protocol::{Left, encode};

/// Buyers per status call: bounds one Redis script's run time.
const STATUS_CHUNK: usize = 2_000;

pub async fn run(ctx: Arc<Ctx>) {
    let mut interval = super::ticker(Duration::from_millis(ctx.cfg.notify_tick_ms));
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        // One time for the whole tick: push decisions line up with the tick
        // they belong to, however long the store calls take.
        let now = ctx.clock.now_ms();
        let tick_ms = ctx.cfg.notify_tick_ms as i64;
        for (event, users) in ctx.hub.joined_users() {
            let Some(e) = ctx.catalog.get(&event) else { continue };
            for chunk in users.chunks(STATUS_CHUNK) {
                let batch = match ctx.queue.status(&event, chunk, now).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        warn!(event = %event, error = %err, "position refresh failed");
                        continue;
                    }
                };
                if let Some(stats) = batch.stats {
                    ctx.catalog.set_stats(&event, stats);
                }
                let pushed = ctx.hub.deliver(&event, chunk, &batch.statuses, now, tick_ms, |news| {
                    let frame = match news {
                        News::Position(position) => {
                            encode(&ctx.queue_view(&event, &e, position, batch.waiting, now), None)
                        }
                        News::Admitted { user, until_ms } => encode(&ctx.admitted_view(user, &event, until_ms), None),
                        News::Gone => encode(&Left { event: &event, reason: "gone" }, None),
                        News::WindowEnded => encode(&Left { event: &event, reason: "window_ended" }, None),
                    };
                    frame.into()
                });
                ctx.metrics.position_pushes.add(pushed.positions);
                ctx.metrics.pushes_skipped_full.add(pushed.skipped_full);
            }
        }
    }
}
