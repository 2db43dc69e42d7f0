//! Background tasks. Each is named, runs under a supervisor that restarts
//! it if it panics or returns early, and stops when the server shuts down.

pub mod admitter;
pub mod campaign_refresh;
pub mod catalog_refresh;
pub mod coupon_writer;
pub mod outbox;

pub mod relay;

use std::collections::HashSet;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

/// Events whose admitter lease this node holds (the relay publishes their
/// diffs).
pub type Leases = parking_lot::Mutex<HashSet<crate::domain::EventId>>;

/// A periodic tick for a worker loop. A late tick is not made up for with a
/// burst: after a stall the worker simply carries on at its pace.
pub fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// What a worker's step can fail with; the step is retried.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
}

/// Runs `make()` until `shutdown`, restarting it with backoff whenever it
/// ends early or panics.
pub fn supervise<F, Fut>(tracker: &TaskTracker, shutdown: CancellationToken, name: &'static str, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let span = info_span!("worker", name);
    tracker.spawn(
        async move {
            let mut backoff = Duration::from_millis(100);
            info!("started");
            loop {
                let run = tokio::spawn(make().instrument(info_span!("run", name)));
                match run.await {
                    Ok(()) if shutdown.is_cancelled() => break,
                    Ok(()) => warn!("returned early; restarting"),
                    Err(e) if e.is_panic() => error!(error = %e, "panicked; restarting"),
                    Err(e) => error!(error = %e, "was cancelled; restarting"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            info!("stopped");
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn restarts_a_panicking_worker_and_stops_on_shutdown() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (r, s) = (runs.clone(), shutdown.clone());
        supervise(&tracker, shutdown.clone(), "flaky", move || {
            let (r, s) = (r.clone(), s.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                s.cancelled().await;
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two panics, then a healthy run");
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
