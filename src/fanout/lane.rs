//! A shard's ordered inbox of broadcasts, and of the closes requested after
//! them.
//!
//! The publisher appends to every shard's lane while it holds the room's
//! sequencer, so each lane holds broadcasts in `seq` order. A close of the
//! room's members (the room deleted, the node draining) is appended the same
//! way, so a broadcast accepted before it reaches its members before they
//! are told to close. Exactly one task
//! drains a lane at a time (the one whose `enqueue` returned `true`), so shards
//! fan out in parallel and a shard never delivers `seq` 43 before 42.
//!
//! A std `Mutex` is right here: it guards a push or a pop, never an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Broadcast, Frames};
use crate::protocol::close::CloseReason;

/// The reason each member is closed with (a drain draws a delay per member).
pub type CloseWith = Arc<dyn Fn() -> CloseReason + Send + Sync>;

/// What a lane holds, in order.
pub enum LaneEntry {
    Broadcast(Arc<Broadcast>),
    /// Close every member of this shard.
    Close(CloseWith),
    /// Tell every member of this shard the room's online count, unless told it already.
    Occupancy(Arc<Occupancy>),
}

/// A room's online count, encoded once for all its members (contract §9).
#[derive(Debug)]
pub struct Occupancy {
    pub online: u32,
    pub frames: Frames,
}

impl std::fmt::Debug for LaneEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaneEntry::Broadcast(broadcast) => write!(f, "Broadcast({})", broadcast.seq),
            LaneEntry::Close(_) => f.write_str("Close"),
            LaneEntry::Occupancy(occupancy) => write!(f, "Occupancy({})", occupancy.online),
        }
    }
}

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
    pending: VecDeque<LaneEntry>,
    draining: bool,
}

impl Lane {
    /// Appends an entry. Returns `true` when the caller became this lane's
    /// drainer and must call [`Lane::next`] until it returns `None`.
    pub fn enqueue(&self, entry: LaneEntry) -> bool {
        let mut state = self.state.lock().expect("lane lock");
        if let LaneEntry::Broadcast(broadcast) = &entry {
            self.appended.fetch_max(broadcast.seq, Ordering::AcqRel);
        }
        state.pending.push_back(entry);
        !std::mem::replace(&mut state.draining, true)
    }

    /// The last seq appended, delivered or not.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// The next entry; `None` ends this drainer's turn.
    pub fn next(&self) -> Option<LaneEntry> {
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

    fn bc(seq: u64) -> LaneEntry {
        LaneEntry::Broadcast(Arc::new(Broadcast::new(
            &Arc::from("r"),
            seq,
            Delivery::default(),
            Frames::encode("r", seq, 0, "0"),
            1,
        )))
    }

    fn seq(entry: Option<LaneEntry>) -> u64 {
        match entry {
            Some(LaneEntry::Broadcast(broadcast)) => broadcast.seq,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_drainer_at_a_time_in_order() {
        let lane = Lane::default();
        assert!(lane.enqueue(bc(1)));
        assert!(!lane.enqueue(bc(2)), "a drainer is already running");
        assert_eq!(seq(lane.next()), 1);
        assert!(!lane.enqueue(bc(3)));
        assert!(!lane.enqueue(LaneEntry::Close(Arc::new(|| CloseReason::RoomDestroyed))));
        assert_eq!(lane.appended(), 3, "a close is not a seq");
        assert_eq!(seq(lane.next()), 2);
        assert_eq!(seq(lane.next()), 3);
        assert!(matches!(lane.next(), Some(LaneEntry::Close(_))), "the close after what came before it");
        assert!(lane.next().is_none());
        assert!(lane.enqueue(bc(4)), "the turn ended, the next publisher drains");
    }
}
