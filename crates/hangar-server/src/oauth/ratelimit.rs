//! Rate limits of the token-style endpoints, per client and per peer address (GCRA from the
//! `governor` crate, in memory: a limit is a protection, not state users depend on).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Limits: sustained requests per second and burst, per client and per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per second one client may make.
    pub per_client_per_s: u32,
    /// Requests per second one peer address may make.
    pub per_addr_per_s: u32,
    /// How many requests may come at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateConfig {
    /// 50/s per client, 100/s per address, bursts of 100.
    fn default() -> Self {
        Self {
            per_client_per_s: 50,
            per_addr_per_s: 100,
            burst: 100,
        }
    }
}

/// The limiters.
#[derive(Debug)]
pub struct RateLimits {
    per_client: DefaultKeyedRateLimiter<String>,
    per_addr: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn quota(per_s: u32, burst: u32) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(per_s).unwrap_or(one))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: RateConfig) -> Self {
        Self {
            per_client: RateLimiter::keyed(quota(config.per_client_per_s, config.burst)),
            per_addr: RateLimiter::keyed(quota(config.per_addr_per_s, config.burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request from `addr`; `Err(retry_after)` when over the limit.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), Duration> {
        self.per_addr
            .check_key(&addr)
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    /// Counts one request of `client_id`; `Err(retry_after)` when over the limit.
    pub fn check_client(&self, client_id: &str) -> Result<(), Duration> {
        // Bound the key: a client id is at most 128 characters once parsed.
        let key: String = client_id.chars().take(128).collect();
        self.per_client
            .check_key(&key)
            .map_err(|n| n.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose state is back to full (call now and then to bound memory).
    pub fn shrink(&self) {
        self.per_client.retain_recent();
        self.per_addr.retain_recent();
    }
}
