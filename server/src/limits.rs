//! Rate limits (governor): guest tokens and socket upgrades per client
//! address, and messages per socket. Over the limit is an answer
//! (`rate_limited`, HTTP 429), never a failure.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::ServerConfig;

pub type KeyedLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

pub struct Limits {
    pub guest: KeyedLimiter,
    pub upgrades: KeyedLimiter,
    msg_quota: Quota,
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
        }
    }

    /// A fresh limiter for one socket's messages.
    pub fn per_socket(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(self.msg_quota)
    }

    /// Forgets addresses that have been quiet long enough to be full again.
    pub fn forget_idle(&self) {
        self.guest.retain_recent();
        self.upgrades.retain_recent();
        self.guest.shrink_to_fit();
        self.upgrades.shrink_to_fit();
    }
}
