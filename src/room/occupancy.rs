//! When a room tells its members its online count (contract §9,
//! `occupancy_interval_ms`): at most once per interval, and only when the
//! count changed or someone joined since the last time (a joiner is told at
//! the next send, within one interval of its `welcome`; members already told
//! the same count are skipped by their queue). The server ticks every room every
//! [`TICK`] with its count (cluster-wide in a cluster); a tick that sends
//! costs one encoding, whatever the number of members.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the server looks at every room's count.
pub const TICK: Duration = Duration::from_millis(100);
/// The shortest interval a room may ask for (0 is off).
pub const MIN_INTERVAL_MS: u64 = 1_000;
/// The longest.
pub const MAX_INTERVAL_MS: u64 = 60_000;

/// Whether `ms` is an interval a room may have.
pub fn valid_interval(ms: u64) -> bool {
    ms == 0 || (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms)
}

#[derive(Debug, Default)]
pub struct OccupancyClock {
    interval_ms: AtomicU64,
    /// Someone joined since the last send: they are owed their first count.
    joined: AtomicBool,
    last: Mutex<LastSent>,
}

#[derive(Debug, Default)]
struct LastSent {
    at: Option<Instant>,
    online: Option<usize>,
}

impl OccupancyClock {
    pub fn new(interval_ms: u64) -> OccupancyClock {
        OccupancyClock { interval_ms: AtomicU64::new(interval_ms), ..OccupancyClock::default() }
    }

    /// 0 is off.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.load(Ordering::Relaxed)
    }

    pub fn set_interval_ms(&self, ms: u64) {
        debug_assert!(valid_interval(ms));
        self.interval_ms.store(ms, Ordering::Relaxed);
        // Everyone is owed the count under the new setting.
        self.joined.store(true, Ordering::Release);
    }

    /// A member joined (it is in the room's presence already).
    pub fn joined(&self) {
        if self.interval_ms() > 0 {
            self.joined.store(true, Ordering::Release);
        }
    }

    /// Whether the members are to be told `online` now; if so, it is recorded as sent.
    pub fn due(&self, now: Instant, online: usize) -> bool {
        let interval = self.interval_ms();
        if interval == 0 {
            return false;
        }
        let mut last = self.last.lock().expect("occupancy clock lock");
        if last.at.is_some_and(|at| now.duration_since(at) < Duration::from_millis(interval)) {
            return false;
        }
        let joined = self.joined.swap(false, Ordering::AcqRel);
        // Before the first send, an empty room owes nobody anything.
        if !joined && last.online.unwrap_or(0) == online {
            return false;
        }
        *last = LastSent { at: Some(now), online: Some(online) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_once_per_interval_and_only_when_owed() {
        let clock = OccupancyClock::new(1_000);
        let t0 = Instant::now();
        assert!(!clock.due(t0, 0), "an empty room that nobody joined owes nothing");
        clock.joined();
        assert!(clock.due(t0, 1));
        clock.joined();
        assert!(!clock.due(t0 + Duration::from_millis(999), 2), "within the interval");
        assert!(clock.due(t0 + Duration::from_millis(1_000), 2), "a joiner since, and a new count");
        assert!(!clock.due(t0 + Duration::from_millis(5_000), 2), "unchanged and nobody new");
        assert!(clock.due(t0 + Duration::from_millis(5_100), 1), "changed");
        let off = OccupancyClock::new(0);
        off.joined();
        assert!(!off.due(t0, 5), "off");
        off.set_interval_ms(1_000);
        assert!(off.due(t0, 5), "turned on: everyone is owed the count");
    }
}
