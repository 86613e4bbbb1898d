//! One accepted broadcast, encoded once per framing (`protocol::Frames`), on
//! its way through the shards of its room, with its deadline (`ttl_ms`) and
//! its reach counters; and [`Entry`], what a subscriber's queue holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::reach::Reach;
use super::tag::Delivery;
pub use crate::protocol::Frames;
use crate::protocol::Framing;

/// A broadcast on its way through the shards of its room.
#[derive(Debug)]
pub struct Broadcast {
    pub room: Arc<str>,
    pub seq: u64,
    pub delivery: Delivery,
    pub frames: Frames,
    pub accepted_at: Instant,
    /// Not written to a socket after this, it is dropped as `expired` (`ttl_ms`).
    pub expires_at: Option<Instant>,
    pub reach: Arc<Reach>,
    shards_left: AtomicUsize,
}

impl Broadcast {
    pub fn new(room: &Arc<str>, seq: u64, delivery: Delivery, frames: Frames, shards: usize) -> Broadcast {
        Broadcast {
            room: Arc::clone(room),
            seq,
            delivery,
            frames,
            accepted_at: Instant::now(),
            expires_at: None,
            reach: Arc::new(Reach::new(shards)),
            shards_left: AtomicUsize::new(shards),
        }
    }

    /// The same broadcast, expiring `ttl` after its acceptance.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Broadcast {
        self.expires_at = ttl.map(|ttl| self.accepted_at + ttl);
        self
    }

    /// True once its ttl has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Marks one shard done; returns the time since acceptance once the last
    /// shard has queued it on all its subscribers.
    pub fn shard_done(&self) -> Option<std::time::Duration> {
        (self.shards_left.fetch_sub(1, Ordering::AcqRel) == 1).then(|| self.accepted_at.elapsed())
    }
}

/// One entry of a subscriber's queue or of its writer's batch: a broadcast
/// (shared by every subscriber of the room: a refcount, like the `Bytes` of
/// its frame would be) or a frame of this subscriber's own (welcome, lagged,
/// pong, closing). The writer takes the broadcast's frame for the
/// subscriber's framing, and knows which broadcast it wrote.
#[derive(Debug, Clone)]
pub enum Entry {
    Frame(Bytes),
    Broadcast(Arc<Broadcast>),
}

impl Entry {
    /// The bytes to write in `framing`.
    #[inline]
    pub fn bytes(&self, framing: Framing) -> &Bytes {
        match self {
            Entry::Frame(frame) => frame,
            Entry::Broadcast(broadcast) => broadcast.frames.get(framing),
        }
    }

    pub fn broadcast(&self) -> Option<&Arc<Broadcast>> {
        match self {
            Entry::Broadcast(broadcast) => Some(broadcast),
            Entry::Frame(_) => None,
        }
    }
}

impl From<Bytes> for Entry {
    fn from(frame: Bytes) -> Entry {
        Entry::Frame(frame)
    }
}

// A queue entry is as small as the `Bytes` it replaced: the broadcast's
// pointer sits beside the frame's niche.
const _: () = assert!(std::mem::size_of::<Entry>() == std::mem::size_of::<Bytes>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_shard_reports_the_fanout_time() {
        let b = Broadcast::new(&Arc::from("r"), 1, Delivery::default(), Frames::encode("r", 1, 1, "1"), 3);
        assert!(b.shard_done().is_none());
        assert!(b.shard_done().is_none());
        assert!(b.shard_done().is_some());
    }

    #[test]
    fn a_ttl_counts_from_acceptance() {
        let b = Broadcast::new(&Arc::from("r"), 1, Delivery::default(), Frames::encode("r", 1, 1, "1"), 1)
            .with_ttl(Some(Duration::from_millis(50)));
        assert!(!b.expired(b.accepted_at));
        assert!(b.expired(b.accepted_at + Duration::from_millis(50)));
    }
}
