//! Keeps this node's catalogue cache current: live queue settings from the
//! waiting-room store every second (another node may have changed them),
//! new events from SQL every few seconds, and idle rate-limit keys pruned.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use tokio_util::sync::CancellationToken;

use crate::limits::Limits;
use crate::services::settings::SettingsService;

const SQL_RELOAD_EVERY: u32 = 10;

pub async fn run(settings: Arc<SettingsService>, limits: Arc<Limits>, shutdown: CancellationToken) {
    let mut interval = super::ticker(Duration::from_secs(1));
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        round = round.wrapping_add(1);
        if round.is_multiple_of(SQL_RELOAD_EVERY) {
            if let Err(e) = settings.catalog.reload().await {
                warn!(error = %e, "catalogue reload failed");
            }
            limits.forget_idle();
        }
        settings.refresh().await;
    }
}
