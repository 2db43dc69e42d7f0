//! The node's clock: wall-clock milliseconds anchored once at start-up and
//! advanced by tokio's monotonic clock, so tests can pause and advance time
//! and a wall-clock jump never makes windows or holds run backwards.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_ms: i64,
    anchor: Instant,
}

impl Clock {
    pub fn system() -> Self {
        let anchor_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Self { anchor_ms, anchor: Instant::now() }
    }

    pub fn now_ms(&self) -> i64 {
        self.anchor_ms + self.anchor.elapsed().as_millis() as i64
    }
}

/// RFC 3339 UTC with milliseconds, as the wire contract wants times.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let c = Clock::system();
        let t0 = c.now_ms();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(c.now_ms() - t0, 90_000);
    }
}
