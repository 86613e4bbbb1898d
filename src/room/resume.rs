//! A room's resume window: its last broadcasts, as the already-encoded
//! frames the lanes share, for subscribers that reconnect with `room@seq`.
//!
//! Appended under the room's sequencer, so it always holds a contiguous run
//! of seqs ending at the newest. Bounded by count, bytes and age (contract
//! §3: by default the last 64 messages and at most 60 s; 0 turns it off).
//! Nothing here is written to disk: this is reconnect recovery, not history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fanout::Broadcast;

/// Bounds of a room's resume window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeLimits {
    /// Broadcasts held; 0 turns resume off.
    pub messages: usize,
    /// Bytes of frames held (both framings counted).
    pub max_bytes: usize,
    /// How long a broadcast stays resumable.
    pub max_age: Duration,
}

impl Default for ResumeLimits {
    fn default() -> Self {
        ResumeLimits { messages: 64, max_bytes: 8 << 20, max_age: Duration::from_secs(60) }
    }
}

#[derive(Debug)]
pub struct ResumeRing {
    limits: ResumeLimits,
    held: VecDeque<Arc<Broadcast>>,
    bytes: usize,
}

impl ResumeRing {
    pub fn new(limits: ResumeLimits) -> ResumeRing {
        ResumeRing { limits, held: VecDeque::new(), bytes: 0 }
    }

    /// Holds a just-numbered broadcast, letting go of what falls out of bounds.
    pub fn push(&mut self, broadcast: &Arc<Broadcast>) {
        if self.limits.messages == 0 {
            return;
        }
        self.bytes += broadcast.frames.bytes();
        self.held.push_back(Arc::clone(broadcast));
        while self.held.len() > self.limits.messages || self.bytes > self.limits.max_bytes {
            self.pop_oldest();
        }
        self.expire(broadcast.accepted_at);
    }

    /// Lets go of broadcasts older than the age bound.
    pub fn expire(&mut self, now: Instant) {
        while self.held.front().is_some_and(|b| now.duration_since(b.accepted_at) > self.limits.max_age) {
            self.pop_oldest();
        }
    }

    /// Lets go of everything held.
    pub fn clear(&mut self) {
        self.held.clear();
        self.bytes = 0;
    }

    fn pop_oldest(&mut self) {
        if let Some(oldest) = self.held.pop_front() {
            self.bytes -= oldest.frames.bytes();
        }
    }

    /// What a subscriber that saw everything up to `after` is owed up to
    /// `upto` (which the ring has seen): how many are no longer held (one
    /// `lagged`/`expired`), then those held, in seq order. The ring holds a
    /// contiguous run of seqs, so what is missing is always the oldest part.
    pub fn replay(
        &mut self,
        after: u64,
        upto: u64,
        now: Instant,
    ) -> (u64, impl Iterator<Item = &Arc<Broadcast>> + Clone) {
        self.expire(now);
        let held = self.held.iter().skip_while(move |b| b.seq <= after).take_while(move |b| b.seq <= upto);
        let expired = upto.saturating_sub(after) - held.clone().count() as u64;
        (expired, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{Delivery, Frames};
    use proptest::prelude::*;

    fn broadcast(seq: u64, at: Instant) -> Arc<Broadcast> {
        let mut b = Broadcast::new(&Arc::from("r"), seq, Delivery::default(), Frames::encode("r", seq, 0, "0"), 1);
        b.accepted_at = at;
        Arc::new(b)
    }

    fn seqs<'a>((expired, held): (u64, impl Iterator<Item = &'a Arc<Broadcast>>)) -> (u64, Vec<u64>) {
        (expired, held.map(|b| b.seq).collect())
    }

    #[test]
    fn holds_the_last_messages_and_reports_the_rest_expired() {
        let now = Instant::now();
        let mut ring = ResumeRing::new(ResumeLimits { messages: 3, ..ResumeLimits::default() });
        for seq in 1..=10 {
            ring.push(&broadcast(seq, now));
        }
        assert_eq!(seqs(ring.replay(8, 10, now)), (0, vec![9, 10]));
        assert_eq!(seqs(ring.replay(2, 10, now)), (5, vec![8, 9, 10]));
        assert_eq!(seqs(ring.replay(2, 9, now)), (5, vec![8, 9]), "the shard has not delivered 10 yet");
        assert_eq!(seqs(ring.replay(2, 6, now)), (4, vec![]));
    }

    #[test]
    fn old_broadcasts_expire_and_zero_turns_it_off() {
        let start = Instant::now();
        let mut ring = ResumeRing::new(ResumeLimits { max_age: Duration::from_secs(60), ..ResumeLimits::default() });
        ring.push(&broadcast(1, start));
        ring.push(&broadcast(2, start + Duration::from_secs(30)));
        assert_eq!(seqs(ring.replay(0, 2, start + Duration::from_secs(61))), (1, vec![2]));
        let mut off = ResumeRing::new(ResumeLimits { messages: 0, ..ResumeLimits::default() });
        off.push(&broadcast(1, start));
        assert!(off.held.is_empty());
        assert_eq!(seqs(off.replay(0, 1, start)), (1, vec![]));
    }

    #[test]
    fn the_byte_bound_lets_go_of_the_oldest() {
        let now = Instant::now();
        let size = broadcast(1, now).frames.bytes();
        let mut ring = ResumeRing::new(ResumeLimits { max_bytes: size * 2, ..ResumeLimits::default() });
        for seq in 1..=5 {
            ring.push(&broadcast(seq, now));
        }
        assert_eq!(ring.held.len(), 2);
    }

    proptest! {
        /// For any window and any resume point, expired + replayed is exactly
        /// what was owed, and the replay is the newest of it, in order.
        #[test]
        fn replay_covers_exactly_what_is_owed(n in 1u64..100, cap in 0usize..20, after in 0u64..100, lag in 0u64..5) {
            let now = Instant::now();
            let mut ring = ResumeRing::new(ResumeLimits { messages: cap, ..ResumeLimits::default() });
            for seq in 1..=n {
                ring.push(&broadcast(seq, now));
            }
            let upto = n.saturating_sub(lag);
            prop_assume!(after < upto);
            let (expired, held) = seqs(ring.replay(after, upto, now));
            prop_assert_eq!(expired + held.len() as u64, upto - after);
            let expected: Vec<u64> = (after + 1 + expired..=upto).collect();
            prop_assert_eq!(held, expected);
        }
    }
}
