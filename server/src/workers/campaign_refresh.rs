//! Keeps this node's campaign cache current: another node may have
//! created, paused, extended or restocked a campaign.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::services::coupons::CouponService;

pub async fn run(coupons: Arc<CouponService>, shutdown: CancellationToken) {
    let mut interval = super::ticker(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        if let Err(e) = coupons.reload().await {
            warn!(error = %e, "campaign reload failed");
        }
    }
}
