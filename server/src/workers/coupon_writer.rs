//! The coupon writer: moves claims from the claim log (Kafka) into the
//! database, in the one consumer group every node shares. It owns no
//! decision about who gets a coupon and never commits a batch the database
//! has not taken, but for a claim the database fails on alone, which it
//! logs in full and skips; the work itself is
//! `store::coupons::claim_log::ClaimWriter`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::store::coupons::claim_log::ClaimWriter;

/// Pause before a consumer that could not be made is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the writer until `shutdown`. Each round makes a fresh consumer, so
/// a restart by the supervisor (after a panic) resumes from the group's
/// committed offsets.
pub async fn run(writer: Arc<ClaimWriter>, shutdown: CancellationToken) {
    loop {
        match writer.run(&shutdown).await {
            Ok(()) => break,
            Err(e) => error!(error = %e, "the coupon writer could not consume; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}
