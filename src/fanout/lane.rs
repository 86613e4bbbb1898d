//! A shard's ordered inbox of broadcasts.
//!
//! The publisher appends to every shard's lane while it holds the room's
//! sequencer, so each lane holds broadcasts in `seq` order. Exactly one task
//! drains a lane at a time (the one whose `enqueue` returned `true`), so shards
//! fan out in parallel and a shard never delivers `seq` 43 before 42.
//!
//! A std `Mutex` is right here: it guards a push or a pop, never an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Broadcast;

#[derive(Debug, Default)]
pub struct Lane {
    state: Mutex<LaneState>,
    /// The last seq ever appended (appends come in seq order, under the
    /// room's sequencer): a member joining while broadcasts still wait here
    /// starts after it, as it would had the lane been drained already.
    appended: AtomicU64,
}

#[derive(Debug, Default)]
struct LaneState {
    pending: VecDeque<Arc<Broadcast>>,
    draining: bool,
}

impl Lane {
    /// Appends a broadcast. Returns `true` when the caller became this lane's
    /// drainer and must call [`Lane::next`] until it returns `None`.
    pub fn enqueue(&self, broadcast: Arc<Broadcast>) -> bool {
        let mut state = self.state.lock().expect("lane lock");
        self.appended.fetch_max(broadcast.seq, Ordering::AcqRel);
        state.pending.push_back(broadcast);
        !std::mem::replace(&mut state.draining, true)
    }

    /// The last seq appended, delivered or not.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// The next broadcast to deliver; `None` ends this drainer's turn.
    pub fn next(&self) -> Option<Arc<Broadcast>> {
        let mut state = self.state.lock().expect("lane lock");
        let next = state.pending.pop_front();
        if next.is_none() {
            state.draining = false;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{Delivery, Frames};

    fn bc(seq: u64) -> Arc<Broadcast> {
        Arc::new(Broadcast::new(seq, Delivery::default(), Frames::encode("r", seq, 0, "0"), 1))
    }

    #[test]
    fn one_drainer_at_a_time_in_order() {
        let lane = Lane::default();
        assert!(lane.enqueue(bc(1)));
        assert!(!lane.enqueue(bc(2)), "a drainer is already running");
        assert_eq!(lane.next().unwrap().seq, 1);
        assert!(!lane.enqueue(bc(3)));
        assert_eq!(lane.next().unwrap().seq, 2);
        assert_eq!(lane.next().unwrap().seq, 3);
        assert!(lane.next().is_none());
        assert!(lane.enqueue(bc(4)), "the turn ended, the next publisher drains");
    }
}
