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
//!
//! The room also keeps its resume window ([`resume`]) and the idempotency keys
//! it answered ([`idempotency`]), both filled under the sequencer.

pub mod events;
pub mod idempotency;
pub mod occupancy;
pub mod reach_log;
pub mod resume;
pub mod sticky;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;
use metrics::Counter;

use crate::fanout::lane::{CloseWith, Lane, LaneEntry, Occupancy};
use crate::fanout::{Broadcast, Delivery, Drops, Frames, Subscriber};
use crate::limits::{self, TokenBucket};
use crate::metrics::Metrics;
use crate::presence::{Member, MemberKey, Presence, RoomClosed};
use crate::protocol::Framing;
use crate::protocol::close::CloseReason;
use crate::protocol::deflate::Compressor;
use crate::protocol::frames::PusherEvent;
use crate::protocol::messages::{self, LagReason};
use crate::registry::store::StoredSticky;
use events::{Transition, Transitions};
use idempotency::IdempotencyKeys;
use occupancy::OccupancyClock;
use reach_log::ReachLog;
use resume::{ResumeLimits, ResumeRing};
use sticky::Sticky;

/// Rooms with at least this many members fan out on several tasks at once.
pub const PARALLEL_FANOUT_MIN: usize = 2048;

#[derive(Debug)]
pub struct Room {
    app: Arc<str>,
    id: Arc<str>,
    name: Mutex<String>,
    created_at: String,
    /// A std `Mutex`: held to number, encode and enqueue one broadcast,
    /// never across an `.await`.
    sequencer: Mutex<Sequencer>,
    last_seq: AtomicU64,
    resume: Mutex<ResumeRing>,
    reach_log: Mutex<ReachLog>,
    sticky: Sticky,
    occupancy: OccupancyClock,
    /// Joins ever, so a look at the room sees a member that came and went.
    joins: AtomicU64,
    /// Occupied or vacated, as of the last look.
    events: Mutex<EventState>,
    presence: Presence,
    lanes: Box<[CachePadded<Lane>]>,
    destroyed: AtomicBool,
    broadcast_limit: Option<TokenBucket>,
    /// See [`RoomConfig::compress_min_bytes`].
    compress_min_bytes: Option<usize>,
    /// Members on connections that negotiated `permessage-deflate`.
    deflate_members: AtomicUsize,
    broadcasts: Counter,
    metrics: Metrics,
    lane_driver: LaneDriver,
}

/// What the sequencer guards.
#[derive(Debug)]
struct Sequencer {
    /// The last seq handed out.
    seq: u64,
    keys: IdempotencyKeys,
    /// Made at the first broadcast a deflate member needs compressed.
    compressor: Option<Compressor>,
}

/// How every room of this node is built.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Presence shards (and lanes) per room.
    pub shards: usize,
    pub resume: ResumeLimits,
    /// Broadcasts accepted per second; 0: no limit.
    pub broadcasts_per_sec: u32,
    /// Who drains the lanes a publish filled.
    pub lanes: LaneDriver,
    /// Broadcasts at least this long are also compressed (`permessage-deflate`)
    /// while the room has members that negotiated it; None: never.
    pub compress_min_bytes: Option<usize>,
}

/// Who drains a room's lanes once a publish has filled them.
#[derive(Clone, Default)]
pub enum LaneDriver {
    /// The publisher itself (and tokio tasks for large rooms): rooms without
    /// a data plane, as in unit tests and benches.
    #[default]
    Inline,
    /// The data plane's shard threads: lane *i* is drained by shard *i*, the
    /// thread that owns the sockets of presence shard *i*'s members.
    Shards(Arc<dyn DrainLanes>),
}

impl std::fmt::Debug for LaneDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LaneDriver::Inline => "Inline",
            LaneDriver::Shards(_) => "Shards",
        })
    }
}

/// Asks the thread of shard `shard` to drain that lane of `room`.
pub trait DrainLanes: Send + Sync {
    fn drain(&self, shard: usize, room: Arc<Room>);
}

/// What a room is made from.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub app: Arc<str>,
    pub id: Arc<str>,
    pub name: String,
    pub created_at: String,
    pub seq: u64,
    /// The pinned message it had when last written (restored on load).
    pub sticky: Option<StoredSticky>,
    /// Occupancy pushed to members every this many ms; 0 is off.
    pub occupancy_interval_ms: u64,
    /// The last room event told was `room.occupied` (restored on load).
    pub occupied: bool,
}

/// A room's event state ([`events`]): occupied or not, the joins seen at the
/// last look, and in a cluster the revision of the shared state it follows.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventState {
    transitions: Transitions,
    joins_seen: u64,
    revision: u64,
}

/// A broadcast as the admin asked for it, before it is numbered: what a
/// broker publishes (here, or to every node of a cluster).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The admin's `data`, valid JSON text.
    pub data: &'a str,
    pub priority: crate::fanout::Priority,
    pub conflate: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub extras: Extras<'a>,
}

/// A broadcast with its seq and ts, as the sequencer enqueues it.
#[derive(Debug, Clone, Copy)]
struct Numbered<'a> {
    seq: u64,
    ts_ms: u64,
    data: &'a str,
    delivery: Delivery,
    extras: Extras<'a>,
}

/// What a broadcast may ask beyond its delivery (contract §9, §12).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras<'a> {
    /// Not written to a subscriber by then, it is dropped as `expired`.
    pub ttl: Option<Duration>,
    /// Pinned as the room's sticky message.
    pub sticky: bool,
    /// Its Pusher event name (`event`), carried in the `broadcast` message.
    pub event: Option<&'a str>,
    /// `data` is a JSON string standing for a Pusher-triggered data string
    /// that was not JSON: Pusher subscribers get the string itself.
    pub data_is_text: bool,
}

/// The answer to an accepted broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub online: usize,
    /// The answer is a repeat: the idempotency key was seen, nothing was sent.
    pub duplicate: bool,
}

impl Room {
    pub fn new(spec: RoomSpec, config: RoomConfig, metrics: Metrics) -> Room {
        let presence = Presence::new(config.shards, spec.seq);
        let lanes = (0..presence.shard_count()).map(|_| CachePadded::new(Lane::default())).collect();
        let sticky = Sticky::default();
        if let Some(stored) = spec.sticky {
            sticky.pin(&spec.id, stored);
        }
        Room {
            broadcasts: metrics.room_broadcasts(&spec.app, &spec.id),
            app: spec.app,
            id: spec.id,
            name: Mutex::new(spec.name),
            created_at: spec.created_at,
            sequencer: Mutex::new(Sequencer { seq: spec.seq, keys: IdempotencyKeys::default(), compressor: None }),
            last_seq: AtomicU64::new(spec.seq),
            resume: Mutex::new(ResumeRing::new(config.resume)),
            reach_log: Mutex::new(ReachLog::default()),
            sticky,
            occupancy: OccupancyClock::new(spec.occupancy_interval_ms),
            joins: AtomicU64::new(0),
            events: Mutex::new(EventState { transitions: Transitions::new(spec.occupied), ..EventState::default() }),
            presence,
            lanes,
            destroyed: AtomicBool::new(false),
            broadcast_limit: limits::per_second(config.broadcasts_per_sec),
            compress_min_bytes: config.compress_min_bytes,
            deflate_members: AtomicUsize::new(0),
            metrics,
            lane_driver: config.lanes,
        }
    }

    pub fn app(&self) -> &Arc<str> {
        &self.app
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn name(&self) -> String {
        self.name.lock().expect("room name lock").clone()
    }

    pub fn rename(&self, name: String) {
        *self.name.lock().expect("room name lock") = name;
    }

    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The last broadcast's seq (0 before the first).
    pub fn seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Takes one broadcast from the room's rate limit, or says how long to wait.
    pub fn admit_broadcast(&self) -> Result<(), std::time::Duration> {
        self.broadcast_limit.as_ref().map_or(Ok(()), |limit| limit.try_take(Instant::now()))
    }

    /// Members online now.
    pub fn online(&self) -> usize {
        self.presence.online()
    }

    pub fn shard_count(&self) -> usize {
        self.presence.shard_count()
    }

    fn sequencer(&self) -> MutexGuard<'_, Sequencer> {
        self.sequencer.lock().expect("room sequencer lock")
    }

    fn resume_ring(&self) -> MutexGuard<'_, ResumeRing> {
        self.resume.lock().expect("room resume lock")
    }

    /// Numbers, encodes and fans out one broadcast. `data` is valid JSON text.
    /// With an `idempotency_key` already answered in the last 5 minutes,
    /// returns that answer again (marked `duplicate`) and sends nothing.
    pub fn publish(self: &Arc<Self>, data: &str, delivery: Delivery, idempotency_key: Option<&str>) -> Published {
        self.publish_with(data, delivery, Extras::default(), idempotency_key)
    }

    /// [`Room::publish`] with a ttl or as the pinned message.
    pub fn publish_with(
        self: &Arc<Self>,
        data: &str,
        delivery: Delivery,
        extras: Extras<'_>,
        idempotency_key: Option<&str>,
    ) -> Published {
        let mut to_drain = Vec::with_capacity(self.lanes.len());
        let published = {
            let mut sequencer = self.sequencer();
            let now = Instant::now();
            if let Some(key) = idempotency_key
                && let Some(first) = sequencer.keys.get(key, now)
            {
                drop(sequencer);
                self.metrics.idempotent_duplicates.increment(1);
                return Published { duplicate: true, ..first };
            }
            let seq = sequencer.seq + 1;
            let numbered = Numbered { seq, ts_ms: now_ms(), data, delivery, extras };
            self.enqueue(&mut sequencer, numbered, &mut to_drain);
            let published = Published { seq, online: self.online(), duplicate: false };
            if let Some(key) = idempotency_key {
                let evicted = sequencer.keys.insert(key, published, now);
                if evicted > 0 {
                    self.metrics.idempotency_keys_evicted.increment(evicted as u64);
                }
            }
            published
        };
        self.drive(&to_drain, published.online);
        published
    }

    /// Fans out a broadcast the cluster already numbered (its room stream's
    /// sequence). A seq this room has passed is a redelivery and is ignored;
    /// a seq beyond the next means the ones between are gone from the stream,
    /// so every member is told with one `lagged` (`expired`) in its place.
    /// Returns false for an ignored redelivery.
    pub fn deliver_numbered(
        self: &Arc<Self>,
        seq: u64,
        ts_ms: u64,
        data: &str,
        delivery: Delivery,
        extras: Extras<'_>,
    ) -> bool {
        let mut to_drain = Vec::with_capacity(self.lanes.len());
        {
            let mut sequencer = self.sequencer();
            if seq <= sequencer.seq {
                return false;
            }
            let missed = seq - sequencer.seq - 1;
            if missed > 0 {
                let gap = Frames::control(&messages::lagged(&self.id, missed, LagReason::Expired));
                let gap = Arc::new(Broadcast::new(&self.id, seq - 1, Delivery::URGENT, gap, self.lanes.len()));
                // The ring holds a contiguous run: what came before the gap is no longer resumable.
                self.resume_ring().clear();
                self.metrics.cluster_missed.increment(missed);
                self.append_to_lanes(&gap, &mut to_drain);
            }
            self.enqueue(&mut sequencer, Numbered { seq, ts_ms, data, delivery, extras }, &mut to_drain);
        }
        self.drive(&to_drain, self.online());
        true
    }

    /// Under the sequencer: encode broadcast `seq` once, keep it for resume,
    /// and append it to every lane (collecting the lanes this call must drain).
    fn enqueue(&self, sequencer: &mut Sequencer, numbered: Numbered<'_>, to_drain: &mut Vec<usize>) {
        let Numbered { seq, ts_ms, data, delivery, extras } = numbered;
        sequencer.seq = seq;
        let pusher = PusherEvent { name: extras.event, data_is_text: extras.data_is_text };
        let mut frames = Frames::encode_event(&self.id, seq, ts_ms, pusher, data);
        // Compressed once for every member that negotiated it, only while some did.
        if self.compress_min_bytes.is_some_and(|min| frames.json().len() >= min)
            && self.deflate_members.load(Ordering::Relaxed) > 0
        {
            frames = frames.with_deflated(sequencer.compressor.get_or_insert_with(Compressor::default));
            self.metrics.compressed_broadcasts.increment(1);
        }
        let broadcast =
            Arc::new(Broadcast::new(&self.id, seq, delivery, frames, self.lanes.len()).with_ttl(extras.ttl));
        self.resume_ring().push(&broadcast);
        if extras.sticky {
            // What is left of the ttl from now (in a cluster, less than ttl_ms).
            let expires_at_ms = extras.ttl.map(|left| now_ms().saturating_add(left.as_millis() as u64));
            self.sticky.pin(&self.id, StoredSticky { seq, ts: ts_ms, data: data.to_owned(), expires_at_ms });
        }
        self.reach_log.lock().expect("reach log lock").push(seq, ts_ms, Arc::clone(&broadcast.reach));
        self.append_to_lanes(&broadcast, to_drain);
        self.last_seq.store(seq, Ordering::Release);
        self.broadcasts.increment(1);
    }

    fn append_to_lanes(&self, broadcast: &Arc<Broadcast>, to_drain: &mut Vec<usize>) {
        for (index, lane) in self.lanes.iter().enumerate() {
            if lane.enqueue(LaneEntry::Broadcast(broadcast.clone())) && !to_drain.contains(&index) {
                to_drain.push(index);
            }
        }
    }

    /// Closes every member with `reason`, behind what each lane still holds:
    /// a broadcast accepted before the close reaches them first.
    fn close_through_lanes(self: &Arc<Self>, reason: CloseWith) {
        let to_drain: Vec<usize> = (0..self.lanes.len())
            .filter(|&index| self.lanes[index].enqueue(LaneEntry::Close(reason.clone())))
            .collect();
        self.drive(&to_drain, 0);
    }

    /// Drains the lanes this publisher is responsible for: on their shard
    /// threads when there is a data plane; else inline for small rooms, one
    /// task per shard for large ones (the last shard inline).
    fn drive(self: &Arc<Self>, lanes: &[usize], online: usize) {
        if let LaneDriver::Shards(shards) = &self.lane_driver {
            return lanes.iter().for_each(|&index| shards.drain(index, Arc::clone(self)));
        }
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
        while let Some(entry) = lane.next() {
            let broadcast = match entry {
                LaneEntry::Broadcast(broadcast) => broadcast,
                LaneEntry::Close(reason) => {
                    // Under the shard's lock (shard → subscriber is the lock order).
                    let state = shard.lock();
                    state.members.iter().for_each(|(_, member)| {
                        member.subscriber.close(reason());
                    });
                    continue;
                }
                LaneEntry::Occupancy(occupancy) => {
                    let state = shard.lock();
                    for (_, member) in state.members.iter() {
                        let frame = occupancy.frames.get(member.subscriber.framing());
                        member.subscriber.push_occupancy(member.slot, frame, occupancy.online);
                    }
                    continue;
                }
            };
            let mut drops = Drops::default();
            {
                let mut state = shard.lock();
                state.delivered_seq = broadcast.seq;
                for (_, member) in state.members.iter() {
                    member.subscriber.push_broadcast(member.slot, &broadcast, &mut drops);
                }
            }
            drops.count_reach(&broadcast, index as u64);
            broadcast.reach.lane_drained();
            if !drops.is_empty() {
                self.metrics.record_drops(&drops);
            }
            if let Some(elapsed) = broadcast.shard_done() {
                self.metrics.fanout_duration.record(elapsed.as_secs_f64());
            }
        }
    }

    /// Adds a member; returns its key and the seq it starts after (its
    /// welcome seq). A member resuming after a seq is first queued what the
    /// resume window holds after it, under the shard's lock, so the live
    /// broadcasts that follow neither repeat nor skip one.
    pub fn join(&self, hint: u64, member: Member, resume_after: Option<u64>) -> Result<(MemberKey, u64), RoomClosed> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(RoomClosed);
        }
        let subscriber = Arc::clone(&member.subscriber);
        let slot = member.slot;
        let lane = &self.lanes[self.presence.shard_of(hint)];
        let joined = self.presence.join(hint, member, |delivered| {
            // Broadcasts still waiting in this shard's lane were accepted
            // before the join (their 202 may be out already): the member is
            // treated as if the shard thread had delivered them before it
            // joined, so the lane skips them for it and a resume replays them.
            let upto = delivered.max(lane.appended());
            // The pinned message goes right after the welcome, before any of this room's broadcasts.
            if let Some(pinned) = self.sticky.frame(subscriber.framing(), Instant::now()) {
                subscriber.push_control(pinned);
            }
            let welcome = match resume_after {
                Some(after) if after < upto => {
                    self.replay(&subscriber, slot, after, upto);
                    after
                }
                // Seen on an earlier connection, not yet delivered by this shard.
                Some(after) if after <= self.seq() => after,
                // Fresh, or ahead of this room (its seqs restarted: the node lost them).
                None | Some(_) => upto,
            };
            let skip = welcome.max(upto);
            if skip > delivered {
                subscriber.skip_through(slot, skip);
            }
            welcome
        })?;
        self.occupancy.joined();
        self.joins.fetch_add(1, Ordering::Release);
        if subscriber.framing() == Framing::WebSocketDeflate {
            self.deflate_members.fetch_add(1, Ordering::Relaxed);
        }
        Ok(joined)
    }

    fn event_state(&self) -> MutexGuard<'_, EventState> {
        self.events.lock().expect("room events lock")
    }

    /// One look at the room for its events ([`events`]), with its count
    /// (cluster-wide in a cluster): the transition to tell, if any, and
    /// what the room was before it (to go back to if it cannot be told).
    pub fn look_for_events(
        &self,
        now: Instant,
        online: usize,
        vacated_after: Duration,
    ) -> Option<(Transition, EventState)> {
        let mut events = self.event_state();
        let before = *events;
        let joins = self.joins.load(Ordering::Acquire);
        let joined = std::mem::replace(&mut events.joins_seen, joins) != joins;
        let transition = events.transitions.look(now, online, joined, vacated_after)?;
        Some((transition, before))
    }

    /// Puts the room back to where it was before a look whose transition could not be decided.
    pub fn undo_look(&self, before: EventState) {
        *self.event_state() = before;
    }

    /// Takes the cluster's state of the room's events (`occupied` at `revision`) as its own.
    pub fn take_event_state(&self, occupied: bool, revision: u64) {
        let mut events = self.event_state();
        events.transitions = Transitions::new(occupied);
        events.revision = revision;
    }

    /// The transition just looked at was told, the shared state now at `revision`.
    pub fn told_event(&self, revision: u64) {
        self.event_state().revision = revision;
    }

    /// The revision of the cluster's state this room's events last followed (0: none).
    pub fn events_revision(&self) -> u64 {
        self.event_state().revision
    }

    /// The last room event told was `room.occupied`.
    pub fn occupied(&self) -> bool {
        self.event_state().transitions.occupied()
    }

    /// Occupancy pushed to members every this many ms; 0 is off.
    pub fn occupancy_interval_ms(&self) -> u64 {
        self.occupancy.interval_ms()
    }

    pub fn set_occupancy_interval_ms(&self, ms: u64) {
        self.occupancy.set_interval_ms(ms);
    }

    /// Called every [`occupancy::TICK`] with the room's online count
    /// (cluster-wide in a cluster): when the members are owed it, encodes
    /// it once and has every lane queue it for those not told it yet.
    pub fn tick_occupancy(self: &Arc<Self>, now: Instant, online: usize) {
        if !self.occupancy.due(now, online) {
            return;
        }
        let online = u32::try_from(online).unwrap_or(u32::MAX - 1);
        let frames = Frames::control(&messages::occupancy(&self.id, online as usize));
        let occupancy = Arc::new(Occupancy { online, frames });
        let to_drain: Vec<usize> = (0..self.lanes.len())
            .filter(|&index| self.lanes[index].enqueue(LaneEntry::Occupancy(Arc::clone(&occupancy))))
            .collect();
        self.drive(&to_drain, self.online());
    }

    /// Queues what a member resuming after `after` is owed up to `upto`: one
    /// `lagged`/`expired` for what is no longer held, then the held broadcasts.
    fn replay(&self, subscriber: &Subscriber, slot: usize, after: u64, upto: u64) {
        let framing = subscriber.framing();
        let (mut drops, mut replayed) = (Drops::default(), 0);
        let now = Instant::now();
        let expired = {
            let mut ring = self.resume_ring();
            let (_, held) = ring.replay(after, upto, now);
            // What is no longer held, or whose ttl passed, is owed as one `lagged` `expired`.
            let held: Vec<Arc<Broadcast>> = held.filter(|b| !b.expired(now)).cloned().collect();
            let expired = upto - after - held.len() as u64;
            if expired > 0 {
                subscriber.push_control(framing.frame(&messages::lagged(&self.id, expired, LagReason::Expired)));
            }
            for broadcast in &held {
                subscriber.push_broadcast(slot, broadcast, &mut drops);
                drops.count_reach(broadcast, subscriber.id());
                replayed += 1;
            }
            expired
        };
        self.metrics.record_resume(replayed, expired);
        if !drops.is_empty() {
            self.metrics.record_drops(&drops);
        }
    }

    /// Unpins the room's sticky message; returns its seq, None when none was pinned.
    pub fn unpin(&self) -> Option<u64> {
        self.sticky.unpin(Instant::now())
    }

    /// Unpins a pin of `seq` or earlier (another node's unpin, in a cluster).
    pub fn unpin_through(&self, seq: u64) {
        self.sticky.unpin_through(seq);
    }

    /// The pinned broadcast's seq, unless none is pinned (or it expired).
    pub fn sticky_seq(&self) -> Option<u64> {
        self.sticky.seq(Instant::now())
    }

    /// The pinned message as the registry writes it.
    pub fn stored_sticky(&self) -> Option<StoredSticky> {
        self.sticky.stored(Instant::now())
    }

    /// Broadcast `seq`'s reach as this node counted it, if it is still held.
    pub fn reach(&self, seq: u64) -> Option<reach_log::Counts> {
        self.reach_log.lock().expect("reach log lock").get(seq)
    }

    pub fn leave(&self, key: MemberKey) {
        if self.presence.leave(key).is_some_and(|member| member.subscriber.framing() == Framing::WebSocketDeflate) {
            self.deflate_members.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Refuses new members and closes every member with `room_destroyed`,
    /// after the broadcasts accepted before.
    pub fn destroy(self: &Arc<Self>) {
        self.destroyed.store(true, Ordering::Release);
        self.presence.seal();
        self.close_through_lanes(Arc::new(|| CloseReason::RoomDestroyed));
    }

    /// Sends the heartbeat to every member whose first room this is, so a
    /// subscriber in several rooms gets it once; and lets go of resume-window
    /// broadcasts and idempotency keys past their age, so a quiet room does
    /// not hold them.
    pub fn heartbeat(&self) {
        let now = Instant::now();
        self.resume_ring().expire(now);
        self.reach_log.lock().expect("reach log lock").settle(now_ms());
        self.sequencer().keys.expire(now);
        self.presence.for_each_member(|member| {
            // A Pusher connection's slots come and go: its shard beats for it.
            if member.slot == 0 && member.subscriber.framing() != Framing::Pusher {
                member.subscriber.heartbeat();
            }
        });
    }

    /// Asks every member to close with `reason_for` each (drain), after the
    /// broadcasts accepted before.
    pub fn close_members(self: &Arc<Self>, reason_for: CloseWith) {
        self.close_through_lanes(reason_for);
    }
}

/// Milliseconds since the Unix epoch: a broadcast's `ts`.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::fanout::QueueLimits;
    use crate::protocol::Framing;

    /// Leaves the lanes for the test to drain, as a busy shard thread would.
    struct Later;

    impl DrainLanes for Later {
        fn drain(&self, _shard: usize, _room: Arc<Room>) {}
    }

    /// A one-shard room whose lane is drained only when the test says.
    fn room_whose_lane_waits() -> Arc<Room> {
        let spec = RoomSpec {
            app: "a".into(),
            id: "r".into(),
            name: "r".into(),
            created_at: String::new(),
            seq: 0,
            sticky: None,
            occupancy_interval_ms: 0,
            occupied: false,
        };
        let lanes = LaneDriver::Shards(Arc::new(Later));
        let config = RoomConfig {
            shards: 1,
            resume: ResumeLimits::default(),
            broadcasts_per_sec: 0,
            lanes,
            compress_min_bytes: None,
        };
        Arc::new(Room::new(spec, config, Metrics::new()))
    }

    #[test]
    fn a_member_joining_while_a_broadcast_waits_in_its_lane_starts_after_it() {
        let room = room_whose_lane_waits();
        assert_eq!(room.publish("1", Delivery::default(), None).seq, 1);
        let subscriber = Arc::new(Subscriber::new(1, Framing::WebSocket, [room.id().clone()], QueueLimits::default()));
        let (_, welcome) = room.join(1, Member { subscriber: subscriber.clone(), slot: 0 }, None).unwrap();
        assert_eq!(welcome, 1, "accepted before the join: the welcome starts after it");
        let mut out = VecDeque::new();
        room.drain_lane(0);
        assert_eq!(subscriber.take(&mut out).broadcasts, 0, "and it is not delivered to the newcomer");
        room.publish("2", Delivery::default(), None);
        room.drain_lane(0);
        out.clear();
        assert_eq!(subscriber.take(&mut out).broadcasts, 1, "the next one is");

        // A resume while broadcasts wait in the lane: replayed from the window once, never again by the lane.
        room.publish("3", Delivery::default(), None);
        let resumer = Arc::new(Subscriber::new(2, Framing::WebSocket, [room.id().clone()], QueueLimits::default()));
        let (_, welcome) = room.join(2, Member { subscriber: resumer.clone(), slot: 0 }, Some(1)).unwrap();
        assert_eq!(welcome, 1);
        room.drain_lane(0);
        out.clear();
        assert_eq!(resumer.take(&mut out).broadcasts, 2, "seqs 2 and 3, each once");
    }

    #[test]
    fn a_close_waits_behind_the_broadcasts_accepted_before_it() {
        let room = room_whose_lane_waits();
        let member = Arc::new(Subscriber::new(1, Framing::WebSocket, [room.id().clone()], QueueLimits::default()));
        room.join(1, Member { subscriber: member.clone(), slot: 0 }, None).unwrap();
        room.publish("1", Delivery::default(), None);
        room.close_members(Arc::new(|| CloseReason::ServerDraining { reconnect_after_ms: 7 }));
        room.destroy();
        assert_eq!(member.closing(), None, "not before the lane is drained");
        let newcomer = Arc::new(Subscriber::new(2, Framing::WebSocket, [room.id().clone()], QueueLimits::default()));
        assert!(room.join(2, Member { subscriber: newcomer, slot: 0 }, None).is_err(), "a deleted room takes no one");
        room.drain_lane(0);
        let mut out = VecDeque::new();
        let taken = member.take(&mut out);
        assert_eq!(taken.broadcasts, 1, "the broadcast accepted before the close is delivered");
        assert_eq!(taken.close, Some(CloseReason::ServerDraining { reconnect_after_ms: 7 }), "then the first close");
    }
}
