//! A room: its sequencer, its presence shards, and the lanes that fan its
//! broadcasts out shard by shard.
//!
//! The path of one broadcast (see docs/architecture.md):
//! 1. under the room's sequencer lock: take the next `seq`, encode the message
//!    once per framing, append it to every shard's lane;
//! 2. outside the lock: drain the lanes this call was first to, one per shard,
//!    in parallel on the runtime when the room is large;
//! 3. per shard, under the shard lock: clone the shared frame (a refcount) into
//!    each member's bounded queue; the members' own tasks write it out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;
use metrics::Counter;

use crate::fanout::lane::Lane;
use crate::fanout::{Broadcast, Frames, Priority, PushOutcome};
use crate::metrics::Metrics;
use crate::presence::{Member, MemberKey, Presence, RoomClosed};
use crate::protocol::close::CloseReason;

/// Rooms with at least this many members fan out on several tasks at once.
pub const PARALLEL_FANOUT_MIN: usize = 2048;

#[derive(Debug)]
pub struct Room {
    app: Arc<str>,
    id: Arc<str>,
    name: String,
    created_at: String,
    /// The last seq handed out. A std `Mutex`: held to number, encode and
    /// enqueue one broadcast, never across an `.await`.
    sequencer: Mutex<u64>,
    last_seq: AtomicU64,
    presence: Presence,
    lanes: Box<[CachePadded<Lane>]>,
    destroyed: AtomicBool,
    broadcasts: Counter,
    metrics: Metrics,
}

/// What a room is made from.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub app: Arc<str>,
    pub id: Arc<str>,
    pub name: String,
    pub created_at: String,
    pub seq: u64,
}

/// The answer to an accepted broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub online: usize,
}

impl Room {
    pub fn new(spec: RoomSpec, shards: usize, metrics: Metrics) -> Room {
        let presence = Presence::new(shards, spec.seq);
        let lanes = (0..presence.shard_count()).map(|_| CachePadded::new(Lane::default())).collect();
        Room {
            broadcasts: metrics.room_broadcasts(&spec.app, &spec.id),
            app: spec.app,
            id: spec.id,
            name: spec.name,
            created_at: spec.created_at,
            sequencer: Mutex::new(spec.seq),
            last_seq: AtomicU64::new(spec.seq),
            presence,
            lanes,
            destroyed: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn app(&self) -> &Arc<str> {
        &self.app
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The last broadcast's seq (0 before the first).
    pub fn seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Members online now.
    pub fn online(&self) -> usize {
        self.presence.online()
    }

    pub fn shard_count(&self) -> usize {
        self.presence.shard_count()
    }

    /// Numbers, encodes and fans out one broadcast. `data` is valid JSON text.
    pub fn publish(self: &Arc<Self>, data: &str, priority: Priority) -> Published {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut to_drain = Vec::with_capacity(self.lanes.len());
        let seq = {
            let mut seq = self.sequencer.lock().expect("room sequencer lock");
            *seq += 1;
            let frames = Frames::encode(&self.id, *seq, ts_ms, data);
            let broadcast = Arc::new(Broadcast::new(*seq, priority, frames, self.lanes.len()));
            for (index, lane) in self.lanes.iter().enumerate() {
                if lane.enqueue(broadcast.clone()) {
                    to_drain.push(index);
                }
            }
            self.last_seq.store(*seq, Ordering::Release);
            *seq
        };
        self.broadcasts.increment(1);
        let online = self.online();
        self.drive(&to_drain, online);
        Published { seq, online }
    }

    /// Drains the lanes this publisher is responsible for: inline for small
    /// rooms, one task per shard for large ones (the last shard inline).
    fn drive(self: &Arc<Self>, lanes: &[usize], online: usize) {
        let parallel = online >= PARALLEL_FANOUT_MIN && tokio::runtime::Handle::try_current().is_ok();
        match lanes.split_last() {
            Some((last, rest)) if parallel => {
                for &index in rest {
                    let room = Arc::clone(self);
                    tokio::spawn(async move { room.drain_lane(index) });
                }
                self.drain_lane(*last);
            }
            _ => lanes.iter().for_each(|&index| self.drain_lane(index)),
        }
    }

    /// Delivers everything waiting in one shard's lane, in seq order.
    pub fn drain_lane(&self, index: usize) {
        let lane = &self.lanes[index];
        let shard = self.presence.shard(index);
        while let Some(broadcast) = lane.next() {
            let (mut dropped, mut slow) = (0u64, 0u64);
            {
                let mut state = shard.lock();
                state.delivered_seq = broadcast.seq;
                for (_, member) in state.members.iter() {
                    let frame = broadcast.frames.get(member.subscriber.framing());
                    match member.subscriber.push_broadcast(member.slot, frame) {
                        PushOutcome::Queued | PushOutcome::Closed => {}
                        PushOutcome::Dropped => dropped += 1,
                        PushOutcome::SlowConsumer => {
                            dropped += 1;
                            slow += 1;
                        }
                    }
                }
            }
            if dropped > 0 {
                self.metrics.dropped_slow.increment(dropped);
            }
            if slow > 0 {
                self.metrics.slow_disconnects.increment(slow);
            }
            if let Some(elapsed) = broadcast.shard_done() {
                self.metrics.fanout_duration.record(elapsed.as_secs_f64());
            }
        }
    }

    /// Adds a member; returns its key and the seq it starts after.
    pub fn join(&self, hint: u64, member: Member) -> Result<(MemberKey, u64), RoomClosed> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(RoomClosed);
        }
        self.presence.join(hint, member)
    }

    pub fn leave(&self, key: MemberKey) {
        self.presence.leave(key);
    }

    /// Closes every member with `room_destroyed` and refuses new ones.
    pub fn destroy(&self) {
        self.destroyed.store(true, Ordering::Release);
        for member in self.presence.close() {
            member.subscriber.close(CloseReason::RoomDestroyed);
        }
    }

    /// Sends the heartbeat to every member whose first room this is, so a
    /// subscriber in several rooms gets it once.
    pub fn heartbeat(&self) {
        self.presence.for_each_member(|member| {
            if member.slot == 0 {
                member.subscriber.heartbeat();
            }
        });
    }

    /// Asks every member to close with `reason_for` each (drain).
    pub fn close_members(&self, mut reason_for: impl FnMut() -> CloseReason) {
        // Under each shard's lock in turn (shard → subscriber is the lock order): no copy of the members.
        self.presence.for_each_member(|member| {
            member.subscriber.close(reason_for());
        });
    }
}
