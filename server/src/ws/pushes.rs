//! Position pushes: every tick, fetch the places of all buyers waiting or
//! admitted on this node's sockets (one store call per event and chunk,
//! which also keeps waiting places alive) and push what changed: positions
//! when due, admissions, lost places and ended shopping windows. Admissions
//! and window ends decided by another node's admitter reach this node's
//! sockets this way.

use std::sync::Arc;
use std::time::Duration;

use qt_protocol::ServerMsg;
use qt_protocol::frames::LeftReason;
use tracing::warn;

use super::Sockets;
use super::hub::News;
use super::render;
use crate::workers::ticker;

/// Buyers per status call: bounds one Redis script's run time.
const STATUS_CHUNK: usize = 2_000;

pub async fn run(ctx: Arc<Sockets>, tick: Duration) {
    let mut interval = ticker(tick);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        // One time for the whole tick: push decisions line up with the tick
        // they belong to, however long the store calls take.
        let now = ctx.clock.now_ms();
        let tick_ms = tick.as_millis() as i64;
        for (event, users) in ctx.hub.joined_users() {
            let Some(e) = ctx.catalog.get(&event) else { continue };
            for chunk in users.chunks(STATUS_CHUNK) {
                let batch = match ctx.queue.refresh(&event, chunk, now).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        warn!(event = %event, error = %err, "position refresh failed");
                        continue;
                    }
                };
                let pushed = ctx.hub.deliver(&event, chunk, &batch.statuses, now, tick_ms, |news| match news {
                    News::Position(position) => {
                        render::push(&ServerMsg::Queue(ctx.queue.queue_view(&event, &e, position, batch.waiting, now)))
                    }
                    News::Admitted { user, until_ms } => {
                        render::push(&ServerMsg::Admitted(ctx.queue.admitted_view(user, &event, until_ms)))
                    }
                    News::Gone => render::left(&event, LeftReason::Gone),
                    News::WindowEnded => render::left(&event, LeftReason::WindowEnded),
                });
                ctx.metrics.position_pushes.add(pushed.positions);
                ctx.metrics.pushes_skipped_full.add(pushed.skipped_full);
            }
        }
    }
}
