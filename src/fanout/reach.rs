//! The reach of one broadcast (contract §9): for how many members it was
//! queued, and what became of each copy.
//!
//! Counted where each fate is already decided, never by a pass of its own:
//! a lane's drain adds its shard's targets once per broadcast; the queue
//! counts a copy it drops (slow, conflated); the writer counts a copy the
//! socket took, or that expired before it could; a subscriber that goes
//! away counts what it still held. Each shard has its own cache-padded
//! counters, touched only by the thread that owns that shard's sockets, so
//! counting is a relaxed add on a line no other core writes: no lock.
//!
//! Invariant: every copy counted in `targets` ends in exactly one of the
//! other counters, so `targets = delivered + slow + conflated + expired +
//! disconnected + pending`, and `pending` is what is still queued.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// What became of one queued copy of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The socket (or the QUIC stream) took it.
    Delivered,
    /// Dropped for falling behind, or discarded with a slow consumer.
    Slow,
    /// Replaced by a newer broadcast with the same conflate key.
    Conflated,
    /// Its `ttl_ms` passed before it could be written.
    Expired,
    /// Its subscriber went away before it was written.
    Disconnected,
}

#[derive(Debug, Default)]
struct ShardCounts {
    targets: AtomicU64,
    delivered: AtomicU64,
    slow: AtomicU64,
    conflated: AtomicU64,
    expired: AtomicU64,
    disconnected: AtomicU64,
}

impl ShardCounts {
    fn of(&self, fate: Fate) -> &AtomicU64 {
        match fate {
            Fate::Delivered => &self.delivered,
            Fate::Slow => &self.slow,
            Fate::Conflated => &self.conflated,
            Fate::Expired => &self.expired,
            Fate::Disconnected => &self.disconnected,
        }
    }
}

/// One broadcast's counters, one block per presence shard.
#[derive(Debug)]
pub struct Reach {
    shards: Box<[CachePadded<ShardCounts>]>,
    /// Lanes that have not yet queued it for their members. Until this is
    /// 0 some targets may be uncounted, so the broadcast cannot be complete.
    undrained_lanes: AtomicU64,
}

/// A broadcast's counters summed over shards (and, by the admin API, over nodes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReachTotals {
    pub targets: u64,
    pub delivered: u64,
    pub slow: u64,
    pub conflated: u64,
    pub expired: u64,
    pub disconnected: u64,
    /// Lanes (on every node summed) still to queue it: their targets are not counted yet.
    #[serde(default)]
    pub undrained_lanes: u64,
}

impl ReachTotals {
    /// Copies still queued somewhere.
    pub fn pending(&self) -> u64 {
        self.targets.saturating_sub(self.delivered + self.slow + self.conflated + self.expired + self.disconnected)
    }

    /// Every lane has counted its targets and every copy has met its fate.
    pub fn complete(&self) -> bool {
        self.undrained_lanes == 0 && self.pending() == 0
    }

    pub fn add(&mut self, other: &ReachTotals) {
        self.targets += other.targets;
        self.delivered += other.delivered;
        self.slow += other.slow;
        self.conflated += other.conflated;
        self.expired += other.expired;
        self.disconnected += other.disconnected;
        self.undrained_lanes += other.undrained_lanes;
    }
}

impl Reach {
    /// Counters for a broadcast that `lanes` lanes (one per presence shard) will queue.
    pub fn new(lanes: usize) -> Reach {
        Reach {
            shards: (0..lanes.max(1)).map(|_| CachePadded::new(ShardCounts::default())).collect(),
            undrained_lanes: AtomicU64::new(lanes as u64),
        }
    }

    /// One lane has queued the broadcast for its members and added their
    /// targets (released, so a reader that sees the lane done sees them).
    pub fn lane_drained(&self) {
        self.undrained_lanes.fetch_sub(1, Ordering::Release);
    }

    /// The counters of the shard a subscriber with id `hint` (or the lane
    /// with that index) belongs to: presence places members by `id % shards`.
    fn shard(&self, hint: u64) -> &ShardCounts {
        &self.shards[(hint % self.shards.len() as u64) as usize]
    }

    /// A lane's drain (or a replay) queued `targets` copies, of which
    /// `slow` were dropped at once.
    pub fn add_targets(&self, hint: u64, targets: u64, slow: u64) {
        if targets == 0 {
            return;
        }
        let shard = self.shard(hint);
        shard.targets.fetch_add(targets, Ordering::Relaxed);
        if slow > 0 {
            shard.slow.fetch_add(slow, Ordering::Relaxed);
        }
    }

    /// One copy met its fate.
    pub fn count(&self, hint: u64, fate: Fate) {
        self.shard(hint).of(fate).fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of every shard, summed. Read while counting goes on, a
    /// fate may be seen before its target: `pending` saturates at 0 then.
    pub fn totals(&self) -> ReachTotals {
        // Read first: once a lane is seen done, its targets are seen too.
        let undrained_lanes = self.undrained_lanes.load(Ordering::Acquire);
        let mut totals = ReachTotals { undrained_lanes, ..ReachTotals::default() };
        for shard in self.shards.iter() {
            let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
            totals.add(&ReachTotals {
                targets: read(&shard.targets),
                delivered: read(&shard.delivered),
                slow: read(&shard.slow),
                conflated: read(&shard.conflated),
                expired: read(&shard.expired),
                disconnected: read(&shard.disconnected),
                undrained_lanes: 0,
            });
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_pending_is_what_is_left() {
        let reach = Reach::new(2);
        reach.add_targets(0, 3, 1);
        reach.add_targets(1, 2, 0);
        reach.count(2, Fate::Delivered);
        reach.count(3, Fate::Expired);
        let totals = reach.totals();
        assert_eq!((totals.targets, totals.slow, totals.delivered, totals.expired), (5, 1, 1, 1));
        assert_eq!(totals.pending(), 2);
        reach.count(0, Fate::Delivered);
        reach.count(1, Fate::Disconnected);
        assert_eq!(reach.totals().pending(), 0);
        assert!(!reach.totals().complete(), "no lane has said its targets are all counted");
        reach.lane_drained();
        assert!(!reach.totals().complete(), "one of two lanes");
        reach.lane_drained();
        assert!(reach.totals().complete());
    }
}
