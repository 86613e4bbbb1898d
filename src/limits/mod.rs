//! The limits that keep a node serving its members under floods (docs/security.md):
//! token buckets for request and accept rates, and connections per client address.

pub mod bucket;
pub mod per_ip;

pub use bucket::TokenBucket;

use std::time::Instant;

/// A bucket of `per_sec` tokens a second with one second's worth saved up; None for 0 (no limit).
pub fn per_second(per_sec: u32) -> Option<TokenBucket> {
    (per_sec > 0).then(|| TokenBucket::new(f64::from(per_sec), f64::from(per_sec), Instant::now()))
}

/// Whole seconds to put in `Retry-After` for a wait (at least 1).
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
pub use per_ip::{IpSlot, PerIp};
