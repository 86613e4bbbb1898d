//! A shard's QUIC deadlines: one heap for all its connections, with at most
//! one live entry per connection in the common case.
//!
//! A connection's next deadline moves with every packet (loss detection, ACK
//! delay, idle timeout, its own hello or close deadline). Pushing every move
//! would make the heap as long as the packets; instead an entry is pushed
//! only when the new deadline is *earlier* than the one the connection has
//! queued. A later one waits: the earlier entry fires, the connection finds
//! nothing due, and its real deadline is queued then. A popped entry whose
//! connection has queued another since, or whose slot now holds another
//! connection, is recognised by `scheduled` and passes harmlessly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl Timers {
    /// Queues `at` for connection `slot`, whose queued deadline is
    /// `scheduled`, unless that one comes first; updates `scheduled`.
    pub fn schedule(&mut self, slot: u32, at: Option<Instant>, scheduled: &mut Option<Instant>) {
        let Some(at) = at else { return };
        if scheduled.is_some_and(|queued| queued <= at) {
            return;
        }
        *scheduled = Some(at);
        self.heap.push(Reverse((at, slot)));
    }

    /// The earliest queued deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops an entry due by `now`: its deadline and connection.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_earlier_deadlines_are_queued_and_due_ones_pop_in_order() {
        let start = Instant::now();
        let at = |ms| Some(start + Duration::from_millis(ms));
        let mut timers = Timers::default();
        let (mut a, mut b) = (None, None);
        timers.schedule(0, at(50), &mut a);
        timers.schedule(0, at(80), &mut a); // later: not queued
        timers.schedule(0, at(20), &mut a); // earlier: queued
        timers.schedule(1, at(30), &mut b);
        timers.schedule(1, None, &mut b);
        assert_eq!((a, b), (at(20), at(30)));
        assert_eq!(timers.next(), at(20));
        assert_eq!(timers.pop_due(start + Duration::from_millis(10)), None);
        let due = start + Duration::from_millis(60);
        let popped: Vec<_> = std::iter::from_fn(|| timers.pop_due(due)).collect();
        assert_eq!(popped, vec![(at(20).unwrap(), 0), (at(30).unwrap(), 1), (at(50).unwrap(), 0)]);
        assert_eq!(timers.next(), None);
    }
}
