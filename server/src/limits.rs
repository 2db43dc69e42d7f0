//! Rate limits (governor): guest tokens and socket upgrades per client
//! address, and frames per socket. Over the limit is an answer
//! (`rate_limited`, HTTP 429); a socket that stays over it is closed.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::ServerConfig;

pub type KeyedLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

pub struct Limits {
    pub guest: KeyedLimiter,
    pub upgrades: KeyedLimiter,
    msg_quota: Quota,
    abuse_close_after: Duration,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(cfg: &ServerConfig) -> Self {
        Self {
            guest: RateLimiter::keyed(Quota::per_minute(nz(cfg.guest_per_min)).allow_burst(nz(cfg.guest_per_min / 3))),
            upgrades: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.ws_upgrades_per_min)).allow_burst(nz(cfg.ws_upgrades_per_min / 10)),
            ),
            msg_quota: Quota::per_second(nz(cfg.ws_msgs_per_s)).allow_burst(nz(cfg.ws_msgs_per_s * 2)),
            abuse_close_after: Duration::from_secs(cfg.ws_abuse_close_s.into()),
        }
    }

    /// A fresh budget for one socket's frames.
    pub fn per_socket(&self) -> FrameBudget {
        FrameBudget { limiter: RateLimiter::direct(self.msg_quota), over: OverLimit::new(self.abuse_close_after) }
    }

    /// Forgets addresses that have been quiet long enough to be full again.
    pub fn forget_idle(&self) {
        self.guest.retain_recent();
        self.upgrades.retain_recent();
        self.guest.shrink_to_fit();
        self.upgrades.shrink_to_fit();
    }
}

/// What a socket may do with the frame it just sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit: answer `rate_limited` (for messages) and drop it.
    Refused,
    /// Over the limit for too long: close the socket.
    Close,
}

/// One socket's frame budget: every frame counts, control frames included,
/// since answering a ping costs as much as answering a message.
pub struct FrameBudget {
    limiter: DefaultDirectRateLimiter,
    over: OverLimit,
}

impl FrameBudget {
    pub fn check(&mut self) -> Verdict {
        match self.limiter.check() {
            Ok(()) => Verdict::Allowed,
            Err(_) if self.over.refused(Instant::now()) => Verdict::Close,
            Err(_) => Verdict::Refused,
        }
    }
}

/// Refusals closer together than this belong to one stretch over the limit.
/// A socket only slightly over its rate is refused now and then, with gaps
/// longer than this, and is never closed for it.
const OVER_LIMIT_GAP: Duration = Duration::from_secs(1);

/// How long a socket has been over its limit without a break.
#[derive(Debug)]
pub struct OverLimit {
    close_after: Duration,
    since: Option<Instant>,
    last: Option<Instant>,
}

impl OverLimit {
    pub fn new(close_after: Duration) -> Self {
        Self { close_after, since: None, last: None }
    }

    /// Records a refusal at `now`; true once the socket has been over its
    /// limit for `close_after` without a break.
    pub fn refused(&mut self, now: Instant) -> bool {
        let continues = self.last.is_some_and(|last| now.saturating_duration_since(last) <= OVER_LIMIT_GAP);
        let since = match (continues, self.since) {
            (true, Some(since)) => since,
            _ => now,
        };
        self.since = Some(since);
        self.last = Some(now);
        now.saturating_duration_since(since) >= self.close_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_over_its_limit_without_a_break_is_closed_after_the_time() {
        let t0 = Instant::now();
        let mut over = OverLimit::new(Duration::from_secs(3));
        let ms = |n: u64| t0 + Duration::from_millis(n);
        for n in (0..3_000).step_by(100) {
            assert!(!over.refused(ms(n)), "closed early at {n} ms");
        }
        assert!(over.refused(ms(3_000)));
    }

    #[test]
    fn refusals_with_breaks_never_add_up() {
        let t0 = Instant::now();
        let mut over = OverLimit::new(Duration::from_secs(3));
        // Slightly over the rate: one refusal every 1.5 s, for a minute.
        for n in 0..40u64 {
            assert!(!over.refused(t0 + Duration::from_millis(n * 1_500)));
        }
    }

    #[test]
    fn a_break_starts_the_count_again() {
        let t0 = Instant::now();
        let mut over = OverLimit::new(Duration::from_secs(3));
        let ms = |n: u64| t0 + Duration::from_millis(n);
        for n in (0..2_500).step_by(100) {
            assert!(!over.refused(ms(n)));
        }
        // 2 s without refusals, then another 2.5 s over: still not 3 s in a row.
        for n in (4_500..7_000).step_by(100) {
            assert!(!over.refused(ms(n)), "closed at {n} ms");
        }
        assert!(over.refused(ms(7_500)));
    }
}
