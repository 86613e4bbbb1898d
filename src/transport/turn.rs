//! Turns under `--accept-rate`: one queue for TCP connections and QUIC
//! handshakes, so neither transport can starve the other. A connection takes
//! its turn when it arrives; turns come in order, `1/rate` apart
//! ([`TokenBucket::reserve`](crate::limits::TokenBucket::reserve)), and its
//! handshake starts when the turn comes. Why the wait happens in the node and
//! not in the kernel's listen backlog: [`super::accept::serve`].

use std::time::{Duration, Instant};

use crate::state::Shared;

/// When an arriving connection may start its handshake.
#[derive(Debug)]
pub struct Turn {
    wait: Duration,
}

impl Turn {
    /// The turn of a connection arriving now: at once when there is no limit
    /// or a token is there, and when the node is full (a refusal spends no
    /// turn). A later turn is counted in `bullhorn_accept_throttled_total`.
    pub fn take(shared: &Shared) -> Turn {
        let wait = match &shared.accept_rate {
            Some(bucket) if !shared.connections.is_full() => bucket.reserve(Instant::now()),
            _ => Duration::ZERO,
        };
        if !wait.is_zero() {
            shared.metrics.accept_throttled.increment(1);
        }
        Turn { wait }
    }

    /// How long until the turn comes.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub fn is_now(&self) -> bool {
        self.wait.is_zero()
    }

    /// Waits for the turn; false when a drain began first, so that the
    /// caller answers the client at once instead of after its turn.
    pub async fn come(self, shared: &Shared) -> bool {
        if self.is_now() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(self.wait) => true,
            () = shared.drain.started() => false,
        }
    }
}
