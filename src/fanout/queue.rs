//! The bounded per-subscriber queue.
//!
//! Publishers push refcounted frames; the subscriber's connection task takes
//! everything queued in one swap and writes it out. The queue is bounded in
//! broadcast messages and in bytes (counting what the writer holds but has not
//! written yet). Overflow is a value, never a silent case:
//!
//! * over a bound, the oldest queued broadcast of the lowest priority below the
//!   new one's is dropped; with none, the new one is ([`PushOutcome::Dropped`]);
//! * a queued broadcast of the same room with the new one's conflate key is
//!   replaced: dropped where it stands, the new one queued at the end;
//! * a dropped entry becomes a `lagged` frame where it stood (merged with an
//!   adjacent one for the same room and reason); a dropped new message is
//!   announced ahead of the room's next queued one, or when the writer catches up;
//! * dropping for longer than the limit closes the subscriber as
//!   [`PushOutcome::SlowConsumer`].
//!
//! One deque keeps one order, so whatever is dropped, a room's seqs stay
//! increasing and every drop is counted once. Each entry's [`Tag`] sits in a
//! second deque beside the frames, so the writer still takes plain `Bytes`.
//!
//! A std `Mutex` guards the state: it is held for a push or a swap, never
//! across an `.await`, and it is per subscriber, so publishers contend only
//! with that subscriber's own writer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng as _;

use super::broadcast::{Broadcast, Entry};
use super::reach::Fate;
use super::tag::{Priority, Tag};
use crate::protocol::Framing;
use crate::protocol::close::CloseReason;
use crate::protocol::messages::{self, LagReason};

/// Frames queued past which a client's ping goes unanswered ([`Subscriber::push_reply`]).
pub const MAX_QUEUED_FOR_REPLY: usize = 64;

/// Bounds of one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Broadcasts waiting to be taken by the writer.
    pub max_messages: usize,
    /// Broadcast bytes queued or held by the writer and not yet written.
    pub max_bytes: usize,
    /// How long a subscriber may keep dropping before it is disconnected.
    pub slow_consumer_after: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { max_messages: 512, max_bytes: 1 << 20, slow_consumer_after: Duration::from_secs(10) }
    }
}

/// What a push did to the new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued (possibly in place of older, lower-priority or conflated ones).
    Queued,
    /// Over a bound with nothing of lower priority to drop: not queued,
    /// counted for the next `lagged`.
    Dropped,
    /// Over a bound for too long: the subscriber is now closing as slow.
    SlowConsumer,
    /// The subscriber is closing; nothing more is queued.
    Closed,
    /// The subscriber resumed after this seq: it has it already.
    AlreadySeen,
}

/// Messages pushes gave up, tallied by the caller over a delivery pass and
/// turned into metrics once per pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Broadcasts dropped for falling behind, by [`Priority::index`].
    pub slow: [u64; 3],
    /// Broadcasts replaced by a newer one with the same conflate key.
    pub conflated: u64,
    /// Subscribers closed as slow consumers.
    pub slow_consumers: u64,
    /// For the reach of the one broadcast pushed: subscribers it was queued
    /// for (pushes that were not refused as closed or already seen) ...
    pub targets: u64,
    /// ... and of those, the ones that dropped it at once.
    pub slow_targets: u64,
}

impl Drops {
    /// Nothing for the metrics (the reach tallies aside).
    pub fn is_empty(&self) -> bool {
        self.slow == [0; 3] && self.conflated == 0 && self.slow_consumers == 0
    }

    /// Adds this pass's tally to `broadcast`'s reach (shard of `hint`) and
    /// starts the next broadcast's tally at zero.
    pub fn count_reach(&mut self, broadcast: &Broadcast, hint: u64) {
        broadcast.reach.add_targets(hint, std::mem::take(&mut self.targets), std::mem::take(&mut self.slow_targets));
    }
}

/// A connected subscriber as the fan-out sees it: no socket, only a queue.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    framing: Framing,
    limits: QueueLimits,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    /// Whole frames or shared broadcasts, ready for the socket (an entry is
    /// 32 bytes: a deque of them stays small).
    items: VecDeque<Entry>,
    /// One tag per entry of `items`, same order.
    tags: VecDeque<Tag>,
    /// Broadcast entries in `items`, by priority, and those with a conflate key.
    counts: Counts,
    /// Bytes in `items` plus those the writer took and has not written.
    unwritten_bytes: usize,
    /// Per room slot: its id (for `lagged`) and the new messages dropped since the last `lagged`.
    slots: Box<[Slot]>,
    /// Since when this subscriber has been dropping without catching up.
    behind_since: Option<Instant>,
    /// The earliest `ttl_ms` deadline among the queued broadcasts.
    soonest_expiry: Option<Instant>,
    /// Some slot has an occupancy message waiting (so a take looks at the slots).
    occupancy_queued: bool,
    close: Option<CloseReason>,
    /// The connection's waker, registered by its first wait and kept: a
    /// waker under the lock we already hold costs less than a separate
    /// `Notify` per subscriber, and keeping it saves a clone and a drop of
    /// its `Arc` per delivery.
    waker: Option<Waker>,
    /// The connection waits for `woken`: the next wake calls its waker. Clear
    /// while the connection runs, so pushes meanwhile wake nobody.
    parked: bool,
    /// Something happened since the connection last looked (a stored permit).
    woken: bool,
    /// A Pusher subscriber's drain close, asked and not yet taken by its
    /// connection: its `reconnect_after_ms` ([`NOT_ASKED`] when none; a
    /// `u32` sits in the padding beside the flags, an `Option<CloseReason>`
    /// would add 16 B to every subscriber). It goes on receiving until its
    /// turn comes; the connection then closes the queue itself.
    drain_asked_ms: u32,
}

/// `drain_asked_ms` when no drain close was asked.
const NOT_ASKED: u32 = u32::MAX;

/// Kept in one small block, so marking a conflatable entry touches the
/// cache line the priority counts are already on (at 100k subscribers a
/// push is memory-bound: every extra line shows).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// By [`Priority::index`].
    queued: [u32; 3],
    /// One bit per conflate key queued since the last take (by its hash, mod
    /// 64): a push whose key's bit is clear cannot match, and skips the scan.
    /// Under backlog with distinct keys, that is most pushes.
    conflate_bits: u64,
}

#[derive(Debug)]
struct Slot {
    room: Arc<str>,
    missed: u64,
    /// Seqs up to here were seen before (a resume that named a seq the
    /// subscriber's shard had not delivered yet): not queued again.
    skip_through: u64,
    /// The room's online count last taken by the writer ([`NEVER_TOLD`] before the first) ...
    told_online: u32,
    /// ... and the one waiting in the queue ([`NEVER_TOLD`] when none waits).
    queued_online: u32,
}

/// A slot's `told_online` before its first occupancy message.
const NEVER_TOLD: u32 = u32::MAX;

impl QueueState {
    fn queued_messages(&self) -> usize {
        self.counts.queued.iter().map(|n| *n as usize).sum()
    }

    fn over_bounds(&self, len: usize, limits: &QueueLimits) -> bool {
        self.queued_messages() >= limits.max_messages || self.unwritten_bytes + len > limits.max_bytes
    }

    fn push_back(&mut self, entry: Entry, len: usize, tag: Tag) {
        self.unwritten_bytes += len;
        self.items.push_back(entry);
        self.tags.push_back(tag);
    }

    /// The queued broadcast of `slot` with the same conflate key as `tag`.
    /// There is at most one (each push replaces its predecessor), most likely
    /// near the back: search from there.
    fn find_conflatable(&self, tag: Tag) -> Option<usize> {
        if self.counts.conflate_bits & tag.conflate().bit() == 0 {
            return None;
        }
        self.tags.iter().rposition(|t| t.is_broadcast() && t.slot() == tag.slot() && t.conflate() == tag.conflate())
    }

    /// The oldest queued broadcast of the lowest priority below `priority`.
    fn oldest_below(&self, priority: Priority) -> Option<usize> {
        let lowest =
            Priority::ALL.into_iter().take_while(|p| *p < priority).find(|p| self.counts.queued[p.index()] > 0)?;
        self.tags.iter().position(|t| t.is_broadcast() && t.priority() == lowest)
    }

    /// Records a drop; true once the subscriber has been dropping too long.
    fn behind_too_long(&mut self, limits: &QueueLimits) -> bool {
        let now = Instant::now();
        let since = *self.behind_since.get_or_insert(now);
        now.duration_since(since) >= limits.slow_consumer_after
    }
}

impl Subscriber {
    pub fn new(
        id: u64,
        framing: Framing,
        rooms: impl IntoIterator<Item = Arc<str>>,
        limits: QueueLimits,
    ) -> Subscriber {
        let slots: Box<[Slot]> = rooms
            .into_iter()
            .map(|room| Slot { room, missed: 0, skip_through: 0, told_online: NEVER_TOLD, queued_online: NEVER_TOLD })
            .collect();
        assert!(slots.len() <= super::tag::MAX_SLOTS, "too many rooms for one subscriber");
        Subscriber {
            id,
            framing,
            limits,
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                tags: VecDeque::new(),
                counts: Counts::default(),
                unwritten_bytes: 0,
                slots,
                behind_since: None,
                soonest_expiry: None,
                occupancy_queued: false,
                close: None,
                waker: None,
                parked: false,
                woken: false,
                drain_asked_ms: NOT_ASKED,
            }),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Asks the CPU to load this queue's state, which the writer reads next
    /// (a cache hint; see `crate::prefetch`).
    pub fn prefetch(&self) {
        crate::prefetch::prefetch(&self.state);
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("subscriber queue lock")
    }

    /// Queues a broadcast for the room in `slot`. The hot path: one lock,
    /// one refcount bump, no allocation once the queue has warmed up; the
    /// priority and conflation rules only scan when there is something to find.
    /// A push that makes the subscriber one of the broadcast's targets is
    /// tallied in `drops` (for its reach), with those it dropped at once.
    pub fn push_broadcast(&self, slot: usize, broadcast: &Arc<Broadcast>, drops: &mut Drops) -> PushOutcome {
        let (seq, delivery) = (broadcast.seq, broadcast.delivery);
        let len = broadcast.frames.get(self.framing).len();
        let mut state = self.lock();
        if state.close.is_some() {
            return PushOutcome::Closed;
        }
        if seq <= state.slots[slot].skip_through {
            return PushOutcome::AlreadySeen;
        }
        drops.targets += 1;
        let tag = Tag::broadcast(slot, delivery);
        if delivery.conflate.is_some()
            && let Some(index) = state.find_conflatable(tag)
        {
            self.drop_in_place(&mut state, index, LagReason::Conflated);
            drops.conflated += 1;
        }
        while state.over_bounds(len, &self.limits) {
            let Some(index) = state.oldest_below(delivery.priority) else {
                return self.drop_new(state, slot, delivery.priority, drops);
            };
            drops.slow[state.tags[index].priority().index()] += 1;
            self.drop_in_place(&mut state, index, LagReason::Slow);
            if state.behind_too_long(&self.limits) {
                drops.slow_consumers += 1;
                drops.slow_targets += 1;
                return self.close_slow(state);
            }
        }
        let was_empty = state.items.is_empty();
        if state.slots[slot].missed > 0 {
            let missed = std::mem::take(&mut state.slots[slot].missed);
            let lagged = self.lagged_frame(&state.slots[slot].room, missed, LagReason::Slow);
            state.push_back(Entry::Frame(lagged.clone()), lagged.len(), Tag::gap(slot, LagReason::Slow, missed));
        }
        if let Some(at) = broadcast.expires_at {
            state.soonest_expiry = Some(state.soonest_expiry.map_or(at, |soonest| soonest.min(at)));
        }
        state.push_back(Entry::Broadcast(Arc::clone(broadcast)), len, tag);
        state.counts.queued[delivery.priority.index()] += 1;
        if delivery.conflate.is_some() {
            state.counts.conflate_bits |= delivery.conflate.bit();
        }
        if was_empty {
            wake(state);
        }
        PushOutcome::Queued
    }

    /// Drops the new message: counted for the room's next `lagged`.
    #[cold]
    fn drop_new(
        &self,
        mut state: MutexGuard<'_, QueueState>,
        slot: usize,
        priority: Priority,
        drops: &mut Drops,
    ) -> PushOutcome {
        state.slots[slot].missed += 1;
        drops.slow[priority.index()] += 1;
        drops.slow_targets += 1;
        if !state.behind_too_long(&self.limits) {
            return PushOutcome::Dropped;
        }
        drops.slow_consumers += 1;
        self.close_slow(state)
    }

    #[cold]
    fn close_slow(&self, mut state: MutexGuard<'_, QueueState>) -> PushOutcome {
        let reconnect_after_ms = rand::rng().random_range(1_000..5_000);
        state.close = Some(CloseReason::SlowConsumer { reconnect_after_ms });
        wake(state);
        PushOutcome::SlowConsumer
    }

    /// Turns the queued broadcast at `index` into a `lagged` where it stands,
    /// merged with an adjacent `lagged` for the same room and reason.
    #[cold]
    fn drop_in_place(&self, state: &mut QueueState, index: usize, reason: LagReason) {
        let tag = state.tags[index];
        debug_assert!(tag.is_broadcast());
        state.counts.queued[tag.priority().index()] -= 1;
        let slot = tag.slot();
        let mergeable = |t: &Tag| t.is_gap() && t.slot() == slot && t.gap_reason() == reason;
        let first = match index.checked_sub(1) {
            Some(before) if mergeable(&state.tags[before]) => before,
            _ => index,
        };
        let last = match state.tags.get(index + 1) {
            Some(after) if mergeable(after) => index + 1,
            _ => index,
        };
        if let Some(broadcast) = state.items[index].broadcast() {
            let fate = if reason == LagReason::Conflated { Fate::Conflated } else { Fate::Slow };
            broadcast.reach.count(self.id, fate);
        }
        let mut missed = 0;
        for i in first..=last {
            missed += if i == index { 1 } else { state.tags[i].missed() };
            state.unwritten_bytes -= state.items[i].bytes(self.framing).len();
        }
        let lagged = self.lagged_frame(&state.slots[slot].room, missed, reason);
        state.unwritten_bytes += lagged.len();
        state.items[first] = Entry::Frame(lagged);
        state.tags[first] = Tag::gap(slot, reason, missed);
        for _ in first..last {
            state.items.remove(first + 1);
            state.tags.remove(first + 1);
        }
    }

    /// A `lagged` frame in this subscriber's framing.
    pub fn lagged_frame(&self, room: &str, missed: u64, reason: LagReason) -> Bytes {
        self.framing.frame(&messages::lagged(room, missed, reason))
    }

    /// Gives `room` a slot (a Pusher connection subscribing to a channel):
    /// an empty one, or a new one past the last (the slots grow as a Pusher
    /// connection subscribes, so one that holds a channel pays for one slot,
    /// like a native member). Its counters start afresh. Done before the
    /// room is joined, so nothing of it can be queued yet. Cold.
    pub fn assign_slot(&self, room: Arc<str>) -> usize {
        let mut state = self.lock();
        let fresh = Slot { room, missed: 0, skip_through: 0, told_online: NEVER_TOLD, queued_online: NEVER_TOLD };
        if let Some(slot) = state.slots.iter().position(|slot| slot.room.is_empty()) {
            state.slots[slot] = fresh;
            return slot;
        }
        // Exactly one more: a Vec's first growth would hold four.
        let mut slots = Vec::with_capacity(state.slots.len() + 1);
        slots.extend(std::mem::take(&mut state.slots).into_vec());
        slots.push(fresh);
        assert!(slots.len() <= super::tag::MAX_SLOTS, "too many rooms for one subscriber");
        state.slots = slots.into_boxed_slice();
        state.slots.len() - 1
    }

    /// Empties the slot of `room` once the room was left (a Pusher
    /// unsubscribe): what is still queued of that room is withdrawn (its
    /// broadcasts count as disconnected in their reach: the client no longer
    /// wants them), so a room that takes the slot later inherits nothing of
    /// it. Cold.
    pub fn release_slot(&self, room: &str) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(slot) = state.slots.iter().position(|s| !s.room.is_empty() && &*s.room == room) else {
            return;
        };
        let mut index = state.tags.len();
        while index > 0 {
            index -= 1;
            let tag = state.tags[index];
            let of_slot = (tag.is_broadcast() || tag.is_gap() || tag == Tag::occupancy(slot)) && tag.slot() == slot;
            if !of_slot {
                continue;
            }
            if tag.is_broadcast() {
                state.counts.queued[tag.priority().index()] -= 1;
            }
            if let Some(broadcast) = state.items[index].broadcast() {
                broadcast.reach.count(self.id, Fate::Disconnected);
            }
            let len = state.items[index].bytes(self.framing).len();
            state.unwritten_bytes = state.unwritten_bytes.saturating_sub(len);
            state.items.remove(index);
            state.tags.remove(index);
        }
        state.slots[slot] = Slot {
            room: Arc::from(""),
            missed: 0,
            skip_through: 0,
            told_online: NEVER_TOLD,
            queued_online: NEVER_TOLD,
        };
    }

    /// Makes the room in `slot` skip seqs up to `seq`: the subscriber resumed
    /// after it, and its shard has not delivered it yet.
    pub fn skip_through(&self, slot: usize, seq: u64) {
        self.lock().slots[slot].skip_through = seq;
    }

    /// Queues protocol traffic after what is already queued.
    pub fn push_control(&self, frame: Bytes) {
        let mut state = self.lock();
        let was_empty = state.items.is_empty();
        let len = frame.len();
        state.push_back(Entry::Frame(frame), len, Tag::CONTROL);
        if was_empty {
            wake(state);
        }
    }

    /// Queues room `slot`'s online count (contract §9) unless this subscriber
    /// would be told what it was told last. Like a conflated message, at most
    /// one waits per room: a newer count replaces a waiting one where it
    /// stands (or withdraws it, when the count went back to the one told).
    /// Never bounded nor dropped, so never announced as `lagged` (at most one
    /// per room, a few dozen bytes). Returns true when something was queued.
    pub fn push_occupancy(&self, slot: usize, frame: &Bytes, online: u32) -> bool {
        let mut state = self.lock();
        let Slot { told_online, queued_online, .. } = state.slots[slot];
        if state.close.is_some() || online == if queued_online == NEVER_TOLD { told_online } else { queued_online } {
            return false;
        }
        if queued_online != NEVER_TOLD {
            let tag = Tag::occupancy(slot);
            let index = state.tags.iter().rposition(|t| *t == tag).expect("the waiting occupancy entry");
            let waiting = &state.items[index];
            // Saturating: frames the writer added itself (a close) are not in the tally.
            state.unwritten_bytes = state.unwritten_bytes.saturating_sub(waiting.bytes(self.framing).len());
            if online == told_online {
                state.items.remove(index);
                state.tags.remove(index);
                state.slots[slot].queued_online = NEVER_TOLD;
                return false;
            }
            state.items[index] = Entry::Frame(frame.clone());
            state.unwritten_bytes += frame.len();
            state.slots[slot].queued_online = online;
            return true;
        }
        state.slots[slot].queued_online = online;
        state.occupancy_queued = true;
        let was_empty = state.items.is_empty();
        state.push_back(Entry::Frame(frame.clone()), frame.len(), Tag::occupancy(slot));
        if was_empty {
            wake(state);
        }
        true
    }

    /// Queues a reply to the client (a pong) unless [`MAX_QUEUED_FOR_REPLY`]
    /// frames already wait: a client that pings without reading cannot grow
    /// its queue, and it has replies enough waiting (RFC 6455 §5.5.3 lets an
    /// endpoint answer only the latest ping). Returns whether it was queued.
    pub fn push_reply(&self, frame: Bytes) -> bool {
        if self.lock().items.len() >= MAX_QUEUED_FOR_REPLY {
            return false;
        }
        self.push_control(frame);
        true
    }

    /// The server's heartbeat: a ping for WebSocket subscribers, a comment for
    /// SSE streams; for every
    /// subscriber a wake-up, on which its connection checks its idle timeout.
    pub fn heartbeat(&self) {
        match self.framing {
            Framing::WebSocket | Framing::WebSocketDeflate | Framing::Pusher => {
                self.push_control(Bytes::from_static(crate::protocol::ws::PING_FRAME))
            }
            Framing::Sse => self.push_control(Bytes::from_static(crate::protocol::sse::HEARTBEAT)),
            Framing::Quic => wake(self.lock()),
        }
    }

    /// Queues protocol traffic ahead of everything (the `welcome`, which must
    /// precede broadcasts that arrived while the subscriber was joining).
    pub fn push_control_front(&self, frame: Bytes) {
        let mut state = self.lock();
        state.unwritten_bytes += frame.len();
        state.items.push_front(Entry::Frame(frame));
        state.tags.push_front(Tag::CONTROL);
        wake(state);
    }

    /// Asks the subscriber to close. The first reason wins; returns whether this was it.
    ///
    /// A Pusher subscriber's drain close is only asked
    /// ([`Subscriber::take_drain_asked`]): a Pusher client reconnects the
    /// moment it is told, and has no resume, so its connection tells it at
    /// its turn in the drain window and it receives everything until then.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut state = self.lock();
        if state.close.is_some() || state.drain_asked_ms != NOT_ASKED {
            return false;
        }
        if let (Framing::Pusher, CloseReason::ServerDraining { reconnect_after_ms }) = (self.framing, reason) {
            state.drain_asked_ms = reconnect_after_ms.min(u64::from(NOT_ASKED - 1)) as u32;
        } else {
            state.close = Some(reason);
        }
        wake(state);
        true
    }

    /// The drain close asked of this (Pusher) subscriber, once.
    pub fn take_drain_asked(&self) -> Option<CloseReason> {
        let asked = std::mem::replace(&mut self.lock().drain_asked_ms, NOT_ASKED);
        (asked != NOT_ASKED).then_some(CloseReason::ServerDraining { reconnect_after_ms: u64::from(asked) })
    }

    /// Closes the queue now, whatever was asked before (a Pusher
    /// connection's drain close, at its turn). The first close still wins.
    pub fn close_now(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.close = Some(reason);
            wake(state);
        }
    }

    /// The reason this subscriber is closing, if it is.
    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().close
    }

    /// Ready once something was queued or a close was requested since the
    /// last time it was ready; otherwise parks the connection: the next of
    /// those calls `cx`'s waker, which the queue keeps until it is dropped
    /// (a shard's waker, one per connection, lives as long anyway).
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        state.parked = true;
        Poll::Pending
    }

    /// Swaps everything queued into `out` (which must be empty, and keeps its
    /// capacity for the next swap: no allocation in steady state). When the
    /// writer had caught up, `lagged` messages owed for drops are queued first.
    pub fn take(&self, out: &mut VecDeque<Entry>) -> Taken {
        debug_assert!(out.is_empty());
        let mut state = self.lock();
        if state.items.is_empty() && state.unwritten_bytes == 0 {
            state.behind_since = None;
            if state.close.is_none() {
                for slot in 0..state.slots.len() {
                    let missed = std::mem::take(&mut state.slots[slot].missed);
                    if missed > 0 {
                        let lagged = self.lagged_frame(&state.slots[slot].room, missed, LagReason::Slow);
                        let len = lagged.len();
                        state.push_back(Entry::Frame(lagged), len, Tag::gap(slot, LagReason::Slow, missed));
                    }
                }
            }
        }
        if std::mem::take(&mut state.occupancy_queued) {
            for slot in state.slots.iter_mut().filter(|slot| slot.queued_online != NEVER_TOLD) {
                slot.told_online = std::mem::replace(&mut slot.queued_online, NEVER_TOLD);
            }
        }
        // Nothing queued: keep the buffer where the next push will want it.
        if !state.items.is_empty() {
            std::mem::swap(&mut state.items, out);
            state.tags.clear();
        }
        let broadcasts = state.queued_messages();
        state.counts = Counts::default();
        Taken { broadcasts, close: state.close, soonest_expiry: state.soonest_expiry.take() }
    }

    /// The writer's buffer, emptied: becomes the queue's buffer again when the
    /// queue has none, and is freed when the queue already has one. Either way
    /// an idle subscriber keeps one buffer, not two, and a steady stream of
    /// messages still allocates nothing (the buffer goes back and forth).
    pub fn give_back(&self, out: &mut VecDeque<Entry>) {
        debug_assert!(out.is_empty());
        if out.capacity() == 0 {
            return;
        }
        let mut state = self.lock();
        if state.items.capacity() == 0 {
            std::mem::swap(&mut state.items, out);
        } else if state.items.is_empty() {
            drop(state);
            *out = VecDeque::new();
        }
    }

    /// Tells the queue that the writer replaced `removed` bytes of taken
    /// frames with `added` bytes of its own (expired broadcasts became `lagged`).
    pub fn rewritten(&self, removed: usize, added: usize) {
        if removed != added {
            let mut state = self.lock();
            state.unwritten_bytes = (state.unwritten_bytes + added).saturating_sub(removed);
        }
    }

    /// Tells the queue that the writer put `bytes` of taken frames on the wire.
    pub fn written(&self, bytes: usize) {
        if bytes > 0 {
            let mut state = self.lock();
            state.unwritten_bytes = state.unwritten_bytes.saturating_sub(bytes);
        }
    }
}

/// What [`Subscriber::take`] hands the writer besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Broadcasts among the frames taken: deliveries once they are written.
    pub broadcasts: usize,
    /// Set once the subscriber must be closed, after what was taken is written
    /// (a slow consumer's entries are discarded instead).
    pub close: Option<CloseReason>,
    /// The earliest `ttl_ms` deadline among the broadcasts taken.
    pub soonest_expiry: Option<Instant>,
}

impl Drop for Subscriber {
    /// What a departing subscriber still held was never written: each such
    /// broadcast's reach counts it as disconnected.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for broadcast in state.items.iter().filter_map(Entry::broadcast) {
            broadcast.reach.count(self.id, Fate::Disconnected);
        }
    }
}

/// Records a wake-up and wakes the connection if it is parked, under the
/// lock: the waker stays registered, so it is called by reference rather than
/// taken out and dropped. A shard's waker marks the connection dirty on its
/// own thread or posts to the shard's inbox, whose lock comes after this one
/// (docs/architecture.md, lock order).
fn wake(mut state: MutexGuard<'_, QueueState>) {
    state.woken = true;
    if std::mem::take(&mut state.parked)
        && let Some(waker) = &state.waker
    {
        waker.wake_by_ref();
    }
}

#[cfg(test)]
mod tests;
