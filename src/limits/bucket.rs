//! A token bucket: `rate` tokens a second, up to `burst` saved up. One
//! short std lock per take; takes are per request or per connection, never
//! per delivery.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is at least one token.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket { rate, burst, state: Mutex::new(State { tokens: burst, at: now }) }
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.refilled(now);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - state.tokens) / self.rate))
        }
    }

    /// Takes one token even when none is left, going into debt, and says how
    /// long until that token would have been there (zero when it was). Each
    /// reservation waits behind the ones before it, so waiters that sleep
    /// what they are told start in order, `1/rate` apart, without retrying.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut state = self.refilled(now);
        state.tokens -= 1.0;
        Duration::from_secs_f64((-state.tokens).max(0.0) / self.rate)
    }

    fn refilled(&self, now: Instant) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().expect("bucket lock");
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.burst);
        state.at = now.max(state.at);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| bucket.try_take(t0).is_ok()));
        let wait = bucket.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(99) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(bucket.try_take(t0 + wait).is_ok());
        assert!(bucket.try_take(t0 + wait).is_err());
    }

    #[test]
    fn reservations_past_the_burst_are_spaced_by_the_rate() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(10.0, 2.0, t0);
        let waits: Vec<_> = (0..5).map(|_| bucket.reserve(t0).as_millis()).collect();
        assert_eq!(waits, [0, 0, 100, 200, 300]);
        let wait = bucket.try_take(t0 + Duration::from_millis(300)).unwrap_err();
        assert!(
            wait > Duration::from_millis(99) && wait <= Duration::from_millis(100),
            "takes queue behind reservations: {wait:?}"
        );
    }

    proptest! {
        /// Over any schedule of takes and reservations on one bucket (TCP and
        /// QUIC share one): everything starts in order, no more start by any
        /// moment than the burst plus the rate times the time elapsed, and a
        /// refused take named a wait after which a token is indeed there.
        #[test]
        fn takes_and_reservations_start_in_order_within_burst_plus_rate(
            rate in 1.0f64..1000.0,
            burst in 1.0f64..100.0,
            steps in proptest::collection::vec((0u64..50_000, any::<bool>()), 1..300),
        ) {
            let t0 = Instant::now();
            let bucket = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            let mut starts = Vec::new();
            for (step, reserve) in steps {
                now += Duration::from_micros(step);
                if reserve {
                    starts.push(now + bucket.reserve(now));
                    continue;
                }
                if let Err(wait) = bucket.try_take(now) {
                    now += wait + Duration::from_micros(1);
                    prop_assert!(bucket.try_take(now).is_ok(), "a token after the wait it named");
                }
                starts.push(now);
            }
            prop_assert!(starts.is_sorted(), "first come, first started");
            for (started_before, start) in starts.iter().enumerate() {
                let allowed = burst + rate * start.duration_since(t0).as_secs_f64();
                prop_assert!((started_before + 1) as f64 <= allowed + 1e-6, "{} started by {start:?}", started_before + 1);
            }
        }
    }
}
