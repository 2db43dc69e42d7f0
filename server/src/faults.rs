//! Crash points for the crash tests: with `QT_TEST_PAUSE_AT=<point>` in its
//! environment, the server stops dead at that point (the task waits
//! forever) after printing `QT-PAUSED-AT <point>` to stderr, so a test can
//! SIGKILL the process exactly there. Unset (always, outside those tests),
//! a point costs one comparison with a value read once.

use std::sync::OnceLock;
use std::time::Duration;

/// Between the gateway's approval and the commit of the sale.
pub const AFTER_APPROVAL: &str = "after_approval";
/// Between the commit of an outbox row and its publication.
pub const BEFORE_PUBLISH: &str = "before_publish";
/// While the reconciler looks a payment up.
pub const DURING_LOOKUP: &str = "during_lookup";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT.get_or_init(|| std::env::var("QT_TEST_PAUSE_AT").ok().filter(|p| !p.is_empty())).as_deref()
}

/// Stops this task for good if the crash tests armed `point`.
pub async fn point(point: &'static str) {
    if armed() == Some(point) {
        eprintln!("QT-PAUSED-AT {point}");
        loop {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
    }
}
