//! The bounded per-subscriber queue.
//!
//! Publishers push refcounted frames; the subscriber's connection task takes
//! everything queued in one swap and writes it out. The queue is bounded in
//! broadcast messages and in bytes (counting what the writer holds but has not
//! written yet). Overflow is a value, never a silent case:
//!
//! * [`PushOutcome::Dropped`]: the message is not queued; the room's missed
//!   count grows and a `lagged` (reason `slow`) goes out ahead of the room's
//!   next queued message, or as soon as the writer catches up.
//! * [`PushOutcome::SlowConsumer`]: the subscriber has been dropping for longer
//!   than the limit; it is closed with `closing`/`slow_consumer`.
//!
//! Broadcasts and protocol frames share one `VecDeque<Bytes>`; the queue
//! counts broadcasts apart (`queued_messages`), so priority lanes and
//! conflation (contract §3) can become rules over the same deque, with the
//! per-entry metadata they need kept beside it, rather than a new structure.
//!
//! A std `Mutex` guards the state: it is held for a push or a swap, never
//! across an `.await`, and it is per subscriber, so publishers contend only
//! with that subscriber's own writer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng as _;
use std::task::{Context, Poll, Waker};

use crate::protocol::Framing;
use crate::protocol::close::CloseReason;
use crate::protocol::messages::{self, LagReason};

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

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Over a bound: not queued, counted for the next `lagged`.
    Dropped,
    /// Over a bound for too long: the subscriber is now closing as slow.
    SlowConsumer,
    /// The subscriber is closing; nothing more is queued.
    Closed,
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
    /// Whole frames, ready for the socket (a `Bytes` is 32 bytes: a deque of them stays small).
    items: VecDeque<Bytes>,
    /// Broadcast entries in `items`.
    queued_messages: usize,
    /// Bytes in `items` plus those the writer took and has not written.
    unwritten_bytes: usize,
    /// Per room slot: its id (for `lagged`) and the messages dropped since the last `lagged`.
    slots: Box<[Slot]>,
    /// Since when this subscriber has been dropping without catching up.
    behind_since: Option<Instant>,
    close: Option<CloseReason>,
    /// The connection task, parked until something is queued. A waker under
    /// the lock we already hold costs less than a separate `Notify` per subscriber.
    waker: Option<Waker>,
    /// Something happened since the connection last looked (a stored permit).
    woken: bool,
}

#[derive(Debug)]
struct Slot {
    room: Arc<str>,
    missed: u64,
}

/// What [`Subscriber::take`] hands the writer besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Broadcasts among the frames taken: deliveries once they are written.
    pub broadcasts: usize,
    /// Set once the subscriber must be closed, after what was taken is written
    /// (a slow consumer's entries are discarded instead).
    pub close: Option<CloseReason>,
}

impl Subscriber {
    pub fn new(
        id: u64,
        framing: Framing,
        rooms: impl IntoIterator<Item = Arc<str>>,
        limits: QueueLimits,
    ) -> Subscriber {
        let slots = rooms.into_iter().map(|room| Slot { room, missed: 0 }).collect();
        Subscriber {
            id,
            framing,
            limits,
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                queued_messages: 0,
                unwritten_bytes: 0,
                slots,
                behind_since: None,
                close: None,
                waker: None,
                woken: false,
            }),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().expect("subscriber queue lock")
    }

    /// Queues a broadcast frame for the room in `slot`. The hot path: one lock,
    /// one refcount bump, no allocation once the queue has warmed up.
    pub fn push_broadcast(&self, slot: usize, frame: &Bytes) -> PushOutcome {
        let mut state = self.lock();
        if state.close.is_some() {
            return PushOutcome::Closed;
        }
        let len = frame.len();
        if state.queued_messages >= self.limits.max_messages || state.unwritten_bytes + len > self.limits.max_bytes {
            return self.drop_one(state, slot);
        }
        let was_empty = state.items.is_empty();
        if state.slots[slot].missed > 0 {
            let lagged = self.lagged_frame(&mut state.slots[slot]);
            state.unwritten_bytes += lagged.len();
            state.items.push_back(lagged);
        }
        state.items.push_back(frame.clone());
        state.queued_messages += 1;
        state.unwritten_bytes += len;
        if was_empty {
            wake(state);
        }
        PushOutcome::Queued
    }

    #[cold]
    fn drop_one(&self, mut state: MutexGuard<'_, QueueState>, slot: usize) -> PushOutcome {
        state.slots[slot].missed += 1;
        let now = Instant::now();
        let since = *state.behind_since.get_or_insert(now);
        if now.duration_since(since) < self.limits.slow_consumer_after {
            return PushOutcome::Dropped;
        }
        let reconnect_after_ms = rand::rng().random_range(1_000..5_000);
        state.close = Some(CloseReason::SlowConsumer { reconnect_after_ms });
        wake(state);
        PushOutcome::SlowConsumer
    }

    /// The `lagged` for a slot's drops; resets its count.
    fn lagged_frame(&self, slot: &mut Slot) -> Bytes {
        let json = messages::lagged(&slot.room, std::mem::take(&mut slot.missed), LagReason::Slow);
        self.framing.frame(&json)
    }

    /// Queues protocol traffic after what is already queued.
    pub fn push_control(&self, frame: Bytes) {
        let mut state = self.lock();
        let was_empty = state.items.is_empty();
        state.unwritten_bytes += frame.len();
        state.items.push_back(frame);
        if was_empty {
            wake(state);
        }
    }

    /// The server's heartbeat: a ping for WebSocket subscribers; for every
    /// subscriber a wake-up, on which its connection checks its idle timeout.
    pub fn heartbeat(&self) {
        match self.framing {
            Framing::WebSocket => self.push_control(Bytes::from_static(crate::protocol::ws::PING_FRAME)),
            Framing::Quic => wake(self.lock()),
        }
    }

    /// Queues protocol traffic ahead of everything (the `welcome`, which must
    /// precede broadcasts that arrived while the subscriber was joining).
    pub fn push_control_front(&self, frame: Bytes) {
        let mut state = self.lock();
        state.unwritten_bytes += frame.len();
        state.items.push_front(frame);
        wake(state);
    }

    /// Asks the subscriber to close. The first reason wins; returns whether this was it.
    pub fn close(&self, reason: CloseReason) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(reason);
        wake(state);
        true
    }

    /// The reason this subscriber is closing, if it is.
    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().close
    }

    /// Ready once something was queued or a close was requested since the
    /// last time it was ready; otherwise parks the calling task.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits as [`Subscriber::poll_woken`] says.
    pub async fn woken(&self) {
        std::future::poll_fn(|cx| self.poll_woken(cx)).await
    }

    /// Swaps everything queued into `out` (which must be empty, and keeps its
    /// capacity for the next swap: no allocation in steady state). When the
    /// writer had caught up, `lagged` messages owed for drops are queued first.
    pub fn take(&self, out: &mut VecDeque<Bytes>) -> Taken {
        debug_assert!(out.is_empty());
        let mut state = self.lock();
        if state.items.is_empty() && state.unwritten_bytes == 0 {
            state.behind_since = None;
            if state.close.is_none() {
                let state = &mut *state;
                for slot in state.slots.iter_mut().filter(|slot| slot.missed > 0) {
                    let lagged = self.lagged_frame(slot);
                    state.unwritten_bytes += lagged.len();
                    state.items.push_back(lagged);
                }
            }
        }
        // Nothing queued: keep the buffer where the next push will want it.
        if !state.items.is_empty() {
            std::mem::swap(&mut state.items, out);
        }
        let broadcasts = std::mem::take(&mut state.queued_messages);
        Taken { broadcasts, close: state.close }
    }

    /// The writer's buffer, emptied: becomes the queue's buffer again when the
    /// queue has none, and is freed when the queue already has one. Either way
    /// an idle subscriber keeps one buffer, not two, and a steady stream of
    /// messages still allocates nothing (the buffer goes back and forth).
    pub fn give_back(&self, out: &mut VecDeque<Bytes>) {
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

    /// Tells the queue that the writer put `bytes` of taken frames on the wire.
    pub fn written(&self, bytes: usize) {
        if bytes > 0 {
            let mut state = self.lock();
            state.unwritten_bytes = state.unwritten_bytes.saturating_sub(bytes);
        }
    }
}

/// Records a wake-up and wakes the parked task, after releasing the lock.
fn wake(mut state: MutexGuard<'_, QueueState>) {
    state.woken = true;
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn sub(max_messages: usize, max_bytes: usize) -> Subscriber {
        Subscriber::new(
            1,
            Framing::Quic,
            vec![Arc::from("a"), Arc::from("b")].into_boxed_slice(),
            QueueLimits { max_messages, max_bytes, slow_consumer_after: Duration::from_secs(3600) },
        )
    }

    fn json(frame: &Bytes) -> Value {
        serde_json::from_slice(&frame[4..]).unwrap()
    }

    fn frame(n: u64) -> Bytes {
        Framing::Quic.frame(format!(r#"{{"type":"broadcast","room":"a","seq":{n}}}"#).as_bytes())
    }

    #[test]
    fn overflow_becomes_lagged_before_the_next_message() {
        let s = sub(2, usize::MAX);
        let mut out = VecDeque::new();
        assert_eq!(s.push_broadcast(0, &frame(1)), PushOutcome::Queued);
        assert_eq!(s.push_broadcast(0, &frame(2)), PushOutcome::Queued);
        assert_eq!(s.push_broadcast(0, &frame(3)), PushOutcome::Dropped);
        assert_eq!(s.push_broadcast(0, &frame(4)), PushOutcome::Dropped);
        s.take(&mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        assert_eq!(s.push_broadcast(0, &frame(5)), PushOutcome::Queued);
        s.take(&mut out);
        assert_eq!(json(&out[0])["type"], "lagged");
        assert_eq!(json(&out[0])["missed"], 2);
        assert_eq!(json(&out[0])["room"], "a");
        assert_eq!(json(&out[1])["seq"], 5);
    }

    #[test]
    fn lagged_is_sent_when_the_writer_catches_up_without_new_messages() {
        let s = sub(1, usize::MAX);
        let mut out = VecDeque::new();
        s.push_broadcast(1, &frame(1));
        assert_eq!(s.push_broadcast(1, &frame(2)), PushOutcome::Dropped);
        s.take(&mut out);
        let written: usize = out.iter().map(|f| f.len()).sum();
        out.clear();
        s.written(written);
        s.take(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(json(&out[0])["room"], "b");
        assert_eq!(json(&out[0])["missed"], 1);
    }

    #[test]
    fn byte_bound_counts_what_the_writer_has_not_written() {
        let f = frame(1);
        let s = sub(100, f.len() * 2);
        // Only broadcasts here: protocol frames count against the bytes bound too.
        let mut out = VecDeque::new();
        assert_eq!(s.push_broadcast(0, &f), PushOutcome::Queued);
        assert_eq!(s.push_broadcast(0, &f), PushOutcome::Queued);
        s.take(&mut out);
        assert_eq!(s.push_broadcast(0, &f), PushOutcome::Dropped, "taken is not written");
        s.written(f.len());
        assert_eq!(s.push_broadcast(0, &f), PushOutcome::Queued);
    }

    #[test]
    fn an_idle_subscriber_keeps_one_buffer_and_a_stream_allocates_none() {
        let s = sub(8, usize::MAX);
        let mut out = VecDeque::new();
        s.push_broadcast(0, &frame(1));
        s.take(&mut out);
        out.clear();
        s.give_back(&mut out);
        assert_eq!(out.capacity(), 0, "the buffer went back to the queue");
        let queue_buffer = s.lock().items.capacity();
        assert!(queue_buffer > 0);
        for n in 2..10 {
            s.push_broadcast(0, &frame(n));
            s.take(&mut out);
            out.clear();
            s.give_back(&mut out);
            assert_eq!((out.capacity(), s.lock().items.capacity()), (0, queue_buffer), "no new buffer");
        }
    }

    #[test]
    fn staying_behind_closes_as_slow_consumer() {
        let s = Subscriber::new(
            1,
            Framing::WebSocket,
            vec![Arc::from("a")].into_boxed_slice(),
            QueueLimits { max_messages: 1, max_bytes: usize::MAX, slow_consumer_after: Duration::ZERO },
        );
        s.push_broadcast(0, &frame(1));
        assert_eq!(s.push_broadcast(0, &frame(2)), PushOutcome::SlowConsumer);
        assert_eq!(s.push_broadcast(0, &frame(3)), PushOutcome::Closed);
        assert!(matches!(s.closing(), Some(CloseReason::SlowConsumer { .. })));
    }

    #[test]
    fn control_frames_ignore_the_bounds_and_welcome_goes_first() {
        let s = sub(1, 1);
        let mut out = VecDeque::new();
        s.push_control(Bytes::from_static(b"x"));
        s.push_control(Bytes::from_static(b"y"));
        s.push_control_front(Bytes::from_static(b"w"));
        s.take(&mut out);
        let frames: Vec<&[u8]> = out.iter().map(|f| &f[..]).collect();
        assert_eq!(frames, [&b"w"[..], &b"x"[..], &b"y"[..]]);
    }

    proptest! {
        /// Whatever the interleaving of pushes and takes, every pushed broadcast
        /// is either delivered once, in order, or counted exactly once in a `lagged`.
        #[test]
        fn nothing_is_lost_silently(ops in proptest::collection::vec(0u8..4, 1..300), max in 1usize..6) {
            let s = sub(max, usize::MAX);
            let mut out = VecDeque::new();
            let (mut next, mut delivered, mut announced, mut last) = (1u64, 0u64, 0u64, 0u64);
            let drain = |s: &Subscriber, out: &mut VecDeque<Bytes>, delivered: &mut u64, announced: &mut u64, last: &mut u64| {
                s.take(out);
                let mut bytes = 0;
                for e in out.drain(..) {
                    bytes += e.len();
                    let v = json(&e);
                    if v["type"] == "lagged" {
                        *announced += v["missed"].as_u64().unwrap();
                    } else {
                        let seq = v["seq"].as_u64().unwrap();
                        assert!(seq > *last, "in order");
                        *last = seq;
                        *delivered += 1;
                    }
                }
                s.written(bytes);
            };
            for op in ops {
                if op == 0 {
                    drain(&s, &mut out, &mut delivered, &mut announced, &mut last);
                } else {
                    s.push_broadcast(0, &frame(next));
                    next += 1;
                }
            }
            drain(&s, &mut out, &mut delivered, &mut announced, &mut last);
            drain(&s, &mut out, &mut delivered, &mut announced, &mut last);
            prop_assert_eq!(delivered + announced, next - 1);
        }
    }
}
