//! Sharded presence: who is online in a room, without a member list anywhere
//! but in memory, and with no lock shared by the whole room.
//!
//! A room has a fixed array of shards (at least one per worker thread). A
//! subscriber joins exactly one shard, picked from its connection id, so join
//! and leave are O(1) slab operations under that one shard's lock. The room's
//! online count is the sum of per-shard counters, read without any lock.
//!
//! Each shard also remembers the last `seq` it delivered. A subscriber that
//! joins is owed exactly the broadcasts after that seq: those still waiting in
//! the shard's lane and all later ones. This is what makes the `welcome` seq,
//! and later resume, exact without a room-wide lock on join.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use slab::Slab;

use crate::fanout::Subscriber;

/// One subscriber's place in a room.
#[derive(Debug, Clone)]
pub struct Member {
    pub subscriber: Arc<Subscriber>,
    /// The room's index in the subscriber's room list.
    pub slot: usize,
}

/// Where a member sits, to leave in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberKey {
    shard: usize,
    key: usize,
}

/// The presence of one room.
#[derive(Debug)]
pub struct Presence {
    shards: Box<[CachePadded<Shard>]>,
}

/// One shard: its members, its count and the last seq it delivered.
#[derive(Debug, Default)]
pub struct Shard {
    state: Mutex<ShardState>,
    online: AtomicUsize,
}

/// A shard's members as seen by a delivering lane, under the shard's lock.
#[derive(Debug, Default)]
pub struct ShardState {
    pub members: Slab<Member>,
    pub delivered_seq: u64,
    pub closed: bool,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the room was deleted")]
pub struct RoomClosed;

impl Presence {
    /// A presence with `shards` shards (at least one), starting after `seq`.
    pub fn new(shards: usize, seq: u64) -> Presence {
        let shards = (0..shards.max(1))
            .map(|_| {
                let shard = Shard::default();
                shard.state.lock().expect("fresh lock").delivered_seq = seq;
                CachePadded::new(shard)
            })
            .collect();
        Presence { shards }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard(&self, index: usize) -> &Shard {
        &self.shards[index]
    }

    /// The shard a member joining with `hint` lands in.
    pub fn shard_of(&self, hint: u64) -> usize {
        (hint % self.shards.len() as u64) as usize
    }

    /// Adds a member to the shard picked by `hint`, then calls `joined` with
    /// the last seq the shard delivered (every later one is owed to the
    /// member) while still holding the shard's lock: no delivery can slip in
    /// between. Returns the member's key and what `joined` returned.
    pub fn join<R>(
        &self,
        hint: u64,
        member: Member,
        joined: impl FnOnce(u64) -> R,
    ) -> Result<(MemberKey, R), RoomClosed> {
        let shard_index = self.shard_of(hint);
        let shard = &self.shards[shard_index];
        let mut state = shard.lock();
        if state.closed {
            return Err(RoomClosed);
        }
        let key = state.members.insert(member);
        shard.online.fetch_add(1, Ordering::Relaxed);
        let result = joined(state.delivered_seq);
        Ok((MemberKey { shard: shard_index, key }, result))
    }

    /// Removes a member. Leaving twice is harmless.
    /// Removes a member; returns it, None when it had left already.
    pub fn leave(&self, key: MemberKey) -> Option<Member> {
        let shard = &self.shards[key.shard];
        let mut state = shard.lock();
        let member = state.members.try_remove(key.key);
        if member.is_some() {
            shard.online.fetch_sub(1, Ordering::Relaxed);
        }
        member
    }

    /// Members online now: the sum of the shard counters.
    pub fn online(&self) -> usize {
        self.shards.iter().map(|s| s.online.load(Ordering::Relaxed)).sum()
    }

    /// Refuses further joins (the members stay until they leave).
    pub fn seal(&self) {
        for shard in self.shards.iter() {
            shard.lock().closed = true;
        }
    }

    /// Calls `f` for every member, one shard locked at a time.
    pub fn for_each_member(&self, mut f: impl FnMut(&Member)) {
        for shard in self.shards.iter() {
            shard.lock().members.iter().for_each(|(_, m)| f(m));
        }
    }
}

impl Shard {
    /// Locks the shard for a delivery pass (see `Room::drain_lane`).
    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().expect("presence shard lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::QueueLimits;
    use crate::protocol::Framing;

    fn member(id: u64) -> Member {
        let rooms = vec![Arc::from("r")].into_boxed_slice();
        Member { subscriber: Arc::new(Subscriber::new(id, Framing::WebSocket, rooms, QueueLimits::default())), slot: 0 }
    }

    #[test]
    fn online_is_the_sum_of_shards() {
        let p = Presence::new(4, 0);
        let keys: Vec<_> = (0..10).map(|i| p.join(i, member(i), |_| ()).unwrap().0).collect();
        assert_eq!(p.online(), 10);
        for k in &keys[..4] {
            p.leave(*k);
            p.leave(*k);
        }
        assert_eq!(p.online(), 6);
    }

    #[test]
    fn join_reports_the_shards_delivered_seq_and_closed_rooms_refuse() {
        let p = Presence::new(2, 41);
        assert_eq!(p.join(0, member(0), |seq| seq).unwrap().1, 41);
        p.shard(1).lock().delivered_seq = 45;
        assert_eq!(p.join(1, member(1), |seq| seq).unwrap().1, 45);
        p.seal();
        assert_eq!(p.online(), 2, "sealing keeps the members (their close goes through the lanes)");
        assert_eq!(p.join(2, member(2), |seq| seq), Err(RoomClosed));
    }
}
