//! Keeps this node's catalogue cache current: live queue settings from the
//! waiting-room store every second (another node may have changed them),
//! new events from SQL every few seconds, and idle rate-limit keys pruned.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::app::Ctx;

const SQL_RELOAD_EVERY: u32 = 10;

pub async fn run(ctx: Arc<Ctx>) {
    let mut interval = super::ticker(Duration::from_secs(1));
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(SQL_RELOAD_EVERY) {
            if let Err(e) = ctx.load_catalog().await {
                warn!(error = %e, "catalogue reload failed");
            }
            ctx.limits.forget_idle();
        }
        for id in ctx.catalog.ids() {
            match ctx.queue.settings(&id).await {
                Ok(Some(settings)) => ctx.catalog.set_queue(&id, settings),
                Ok(None) => {
                    if let Some(e) = ctx.catalog.get(&id)
                        && let Err(err) = ctx.queue.configure(&id, &e.queue).await
                    {
                        warn!(event = %id, error = %err, "could not configure queue");
                    }
                }
                Err(e) => warn!(event = %id, error = %e, "queue settings refresh failed"),
            }
        }
    }
}
