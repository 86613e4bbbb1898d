//! One accepted broadcast, encoded once per framing (`protocol::Frames`), on
//! its way through the shards of its room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::tag::Delivery;
pub use crate::protocol::Frames;

/// A broadcast on its way through the shards of its room.
#[derive(Debug)]
pub struct Broadcast {
    pub seq: u64,
    pub delivery: Delivery,
    pub frames: Frames,
    pub accepted_at: Instant,
    shards_left: AtomicUsize,
}

impl Broadcast {
    pub fn new(seq: u64, delivery: Delivery, frames: Frames, shards: usize) -> Broadcast {
        Broadcast { seq, delivery, frames, accepted_at: Instant::now(), shards_left: AtomicUsize::new(shards) }
    }

    /// Marks one shard done; returns the time since acceptance once the last
    /// shard has queued it on all its subscribers.
    pub fn shard_done(&self) -> Option<std::time::Duration> {
        (self.shards_left.fetch_sub(1, Ordering::AcqRel) == 1).then(|| self.accepted_at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_shard_reports_the_fanout_time() {
        let b = Broadcast::new(1, Delivery::default(), Frames::encode("r", 1, 1, "1"), 3);
        assert!(b.shard_done().is_none());
        assert!(b.shard_done().is_none());
        assert!(b.shard_done().is_some());
    }
}
