use super::*;
use crate::fanout::Frames;
use crate::fanout::tag::{ConflateKey, Delivery};
use proptest::prelude::*;
use serde_json::Value;

const ROOMS: [&str; 2] = ["a", "b"];

fn sub(max_messages: usize, max_bytes: usize) -> Subscriber {
    Subscriber::new(
        1,
        Framing::Quic,
        ROOMS.map(Arc::from),
        QueueLimits { max_messages, max_bytes, slow_consumer_after: Duration::from_secs(3600) },
    )
}

fn json(frame: &Bytes) -> Value {
    serde_json::from_slice(&frame[4..]).unwrap()
}

fn frame_in(slot: usize, n: u64) -> Bytes {
    Framing::Quic.frame(format!(r#"{{"type":"broadcast","room":"{}","seq":{n}}}"#, ROOMS[slot]).as_bytes())
}

fn frame(n: u64) -> Bytes {
    frame_in(0, n)
}

/// Broadcast `n` of the room in `slot`, its frames as [`frame_in`] has them.
fn bc(slot: usize, n: u64, delivery: Delivery) -> Arc<Broadcast> {
    let frame = frame_in(slot, n);
    let frames = Frames::same_in_every_framing(frame);
    Arc::new(Broadcast::new(&Arc::from(ROOMS[slot]), n, delivery, frames, 1))
}

fn normal() -> Delivery {
    Delivery::default()
}

fn with(priority: Priority) -> Delivery {
    Delivery { priority, ..Delivery::default() }
}

fn keyed(key: &str) -> Delivery {
    Delivery { conflate: ConflateKey::of(key), ..Delivery::default() }
}

/// Pushes to slot 0 with a throwaway tally.
fn push(s: &Subscriber, n: u64, delivery: Delivery) -> PushOutcome {
    s.push_broadcast(0, &bc(0, n, delivery), &mut Drops::default())
}

/// Takes and "writes" everything; returns the messages as JSON.
fn drain(s: &Subscriber) -> Vec<Value> {
    let mut out = VecDeque::new();
    s.take(&mut out);
    let bytes = out.iter().map(|f: &Entry| f.bytes(Framing::Quic).len()).sum();
    s.written(bytes);
    out.iter().map(|f| json(f.bytes(Framing::Quic))).collect()
}

/// `"seq"` of broadcasts and `"lagged:N:reason"` of lagged messages, in order.
fn summary(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|v| match v["type"].as_str().unwrap() {
            "lagged" => format!("lagged:{}:{}", v["missed"], v["reason"].as_str().unwrap()),
            _ => v["seq"].to_string(),
        })
        .collect()
}

#[test]
fn overflow_becomes_lagged_before_the_next_message() {
    let s = sub(2, usize::MAX);
    assert_eq!(push(&s, 1, normal()), PushOutcome::Queued);
    assert_eq!(push(&s, 2, normal()), PushOutcome::Queued);
    assert_eq!(push(&s, 3, normal()), PushOutcome::Dropped);
    assert_eq!(push(&s, 4, normal()), PushOutcome::Dropped);
    assert_eq!(summary(&drain(&s)), ["1", "2"]);
    assert_eq!(push(&s, 5, normal()), PushOutcome::Queued);
    let messages = drain(&s);
    assert_eq!(summary(&messages), ["lagged:2:slow", "5"]);
    assert_eq!(messages[0]["room"], "a");
}

#[test]
fn lagged_is_sent_when_the_writer_catches_up_without_new_messages() {
    let s = sub(1, usize::MAX);
    s.push_broadcast(1, &bc(1, 1, normal()), &mut Drops::default());
    let mut drops = Drops::default();
    assert_eq!(s.push_broadcast(1, &bc(1, 2, normal()), &mut drops), PushOutcome::Dropped);
    assert_eq!(drops.slow, [0, 1, 0]);
    assert_eq!(summary(&drain(&s)), ["1"]);
    let messages = drain(&s);
    assert_eq!(summary(&messages), ["lagged:1:slow"]);
    assert_eq!(messages[0]["room"], "b");
}

#[test]
fn byte_bound_counts_what_the_writer_has_not_written() {
    let f = frame(1);
    let s = sub(100, f.len() * 2);
    let mut out = VecDeque::new();
    assert_eq!(push(&s, 1, normal()), PushOutcome::Queued);
    assert_eq!(push(&s, 2, normal()), PushOutcome::Queued);
    s.take(&mut out);
    assert_eq!(push(&s, 3, normal()), PushOutcome::Dropped, "taken is not written");
    s.written(f.len());
    assert_eq!(push(&s, 4, normal()), PushOutcome::Queued);
}

#[test]
fn an_idle_subscriber_keeps_one_buffer_and_a_stream_allocates_none() {
    let s = sub(8, usize::MAX);
    let mut out = VecDeque::new();
    push(&s, 1, normal());
    s.take(&mut out);
    out.clear();
    s.give_back(&mut out);
    assert_eq!(out.capacity(), 0, "the buffer went back to the queue");
    let queue_buffer = s.lock().items.capacity();
    assert!(queue_buffer > 0);
    for n in 2..10 {
        push(&s, n, normal());
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
        [Arc::from("a")],
        QueueLimits { max_messages: 1, max_bytes: usize::MAX, slow_consumer_after: Duration::ZERO },
    );
    let mut drops = Drops::default();
    s.push_broadcast(0, &bc(0, 1, normal()), &mut drops);
    assert_eq!(s.push_broadcast(0, &bc(0, 2, normal()), &mut drops), PushOutcome::SlowConsumer);
    assert_eq!(s.push_broadcast(0, &bc(0, 3, normal()), &mut drops), PushOutcome::Closed);
    assert!(matches!(s.closing(), Some(CloseReason::SlowConsumer { .. })));
    assert_eq!((drops.slow, drops.slow_consumers), ([0, 1, 0], 1));
}

#[test]
fn control_frames_ignore_the_bounds_and_welcome_goes_first() {
    let s = sub(1, 1);
    let mut out = VecDeque::new();
    s.push_control(Bytes::from_static(b"x"));
    s.push_control(Bytes::from_static(b"y"));
    s.push_control_front(Bytes::from_static(b"w"));
    s.take(&mut out);
    let frames: Vec<&[u8]> = out.iter().map(|f: &Entry| &f.bytes(Framing::Quic)[..]).collect();
    assert_eq!(frames, [&b"w"[..], &b"x"[..], &b"y"[..]]);
}

#[test]
fn a_resumed_subscriber_skips_what_it_has_seen() {
    let s = sub(10, usize::MAX);
    s.skip_through(0, 2);
    assert_eq!(push(&s, 2, normal()), PushOutcome::AlreadySeen);
    assert_eq!(push(&s, 3, normal()), PushOutcome::Queued);
    assert_eq!(summary(&drain(&s)), ["3"]);
}

#[test]
fn low_goes_before_normal_and_normal_before_high() {
    let s = sub(3, usize::MAX);
    let mut drops = Drops::default();
    for (n, p) in [(1, Priority::Low), (2, Priority::Normal), (3, Priority::Low)] {
        s.push_broadcast(0, &bc(0, n, with(p)), &mut drops);
    }
    // Full: a high message drops the oldest low, then the next low, then the normal.
    for n in 4..=6 {
        assert_eq!(s.push_broadcast(0, &bc(0, n, with(Priority::High)), &mut drops), PushOutcome::Queued);
    }
    assert_eq!(drops.slow, [2, 1, 0]);
    // Only highs are queued: the next high is dropped itself, as is a low.
    assert_eq!(s.push_broadcast(0, &bc(0, 7, with(Priority::High)), &mut drops), PushOutcome::Dropped);
    assert_eq!(s.push_broadcast(0, &bc(0, 8, with(Priority::Low)), &mut drops), PushOutcome::Dropped);
    assert_eq!(drops.slow, [3, 1, 1]);
    // Every drop is announced where it happened; adjacent gaps are one `lagged`.
    assert_eq!(summary(&drain(&s)), ["lagged:3:slow", "4", "5", "6"]);
    assert_eq!(summary(&drain(&s)), ["lagged:2:slow"]);
}

#[test]
fn equal_priorities_never_evict_each_other() {
    let s = sub(2, usize::MAX);
    let mut drops = Drops::default();
    s.push_broadcast(0, &bc(0, 1, with(Priority::Low)), &mut drops);
    s.push_broadcast(0, &bc(0, 2, with(Priority::Low)), &mut drops);
    assert_eq!(s.push_broadcast(0, &bc(0, 3, with(Priority::Low)), &mut drops), PushOutcome::Dropped);
    assert_eq!(summary(&drain(&s)), ["1", "2"]);
}

#[test]
fn a_conflated_message_is_replaced_by_the_newest_at_the_end() {
    let s = sub(10, usize::MAX);
    let mut drops = Drops::default();
    s.push_broadcast(0, &bc(0, 1, keyed("score")), &mut drops);
    s.push_broadcast(0, &bc(0, 2, normal()), &mut drops);
    s.push_broadcast(0, &bc(0, 3, keyed("score")), &mut drops);
    s.push_broadcast(1, &bc(1, 1, keyed("score")), &mut drops); // another room: its own key space
    s.push_broadcast(0, &bc(0, 4, keyed("other")), &mut drops);
    s.push_broadcast(0, &bc(0, 5, keyed("score")), &mut drops);
    assert_eq!(drops.conflated, 2);
    assert_eq!(summary(&drain(&s)), ["lagged:1:conflated", "2", "lagged:1:conflated", "1", "4", "5"]);
    // Once taken, nothing is replaced any more.
    s.push_broadcast(0, &bc(0, 6, keyed("score")), &mut drops);
    assert_eq!(summary(&drain(&s)), ["6"]);
}

#[test]
fn conflation_frees_room_for_the_newest() {
    let s = sub(2, usize::MAX);
    let mut drops = Drops::default();
    s.push_broadcast(0, &bc(0, 1, normal()), &mut drops);
    s.push_broadcast(0, &bc(0, 2, keyed("k")), &mut drops);
    assert_eq!(s.push_broadcast(0, &bc(0, 3, keyed("k")), &mut drops), PushOutcome::Queued);
    assert_eq!(summary(&drain(&s)), ["1", "lagged:1:conflated", "3"]);
    assert_eq!(drops, Drops { conflated: 1, targets: 3, ..Drops::default() });
}

/// One step of a queue's life.
#[derive(Debug, Clone)]
enum Op {
    Push { slot: usize, priority: Priority, key: Option<u8> },
    Occupancy { slot: usize, online: u32 },
    Drain,
}

fn occupancy_frame(slot: usize, online: u32) -> Bytes {
    Framing::Quic.frame(&messages::occupancy(ROOMS[slot], online as usize))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Drain),
        1 => (0usize..2, 0u32..3).prop_map(|(slot, online)| Op::Occupancy { slot, online }),
        3 => (0usize..2, 0usize..3, proptest::option::of(0u8..3))
            .prop_map(|(slot, p, key)| Op::Push { slot, priority: Priority::ALL[p], key }),
    ]
}

proptest! {
    /// Whatever the pushes, priorities, conflate keys and drains: each room's
    /// delivered seqs increase, every pushed broadcast is either delivered once
    /// or counted exactly once in a `lagged`, the queue's own tally agrees, and
    /// a high message is only dropped when nothing lower was queued. Occupancy
    /// counts take no part: at most one per room per take, never the same
    /// twice in a row, and the last one pushed always arrives.
    #[test]
    fn nothing_is_lost_silently(ops in proptest::collection::vec(op(), 1..300), max in 1usize..6) {
        let s = sub(max, usize::MAX);
        let mut pushed = [0u64; 2];
        let mut delivered = [0u64; 2];
        let mut lagged = [0u64; 2];
        let mut last = [0u64; 2];
        let mut told: [Option<u64>; 2] = [None; 2];
        let mut last_occupancy: [Option<u64>; 2] = [None; 2];
        let mut drops = Drops::default();
        let mut check = |messages: Vec<Value>| {
            let mut occupancies_in_take = [0; 2];
            for v in messages {
                let slot = ROOMS.iter().position(|r| v["room"] == *r).unwrap();
                if v["type"] == "occupancy" {
                    let online = v["online"].as_u64();
                    assert_ne!(told[slot], online, "room {slot}: told the same count twice in a row");
                    told[slot] = online;
                    occupancies_in_take[slot] += 1;
                    assert!(occupancies_in_take[slot] <= 1, "room {slot}: two occupancy messages waited at once");
                } else if v["type"] == "lagged" {
                    lagged[slot] += v["missed"].as_u64().unwrap();
                } else {
                    let seq = v["seq"].as_u64().unwrap();
                    assert!(seq > last[slot], "room {slot}: {seq} after {}", last[slot]);
                    last[slot] = seq;
                    delivered[slot] += 1;
                }
            }
        };
        for op in ops {
            match op {
                Op::Drain => check(drain(&s)),
                Op::Push { slot, priority, key } => {
                    pushed[slot] += 1;
                    let conflate = key.map_or(ConflateKey::NONE, |k| ConflateKey::of(&k.to_string()));
                    let lower_queued = s.lock().counts.queued.iter().take(priority.index()).any(|n| *n > 0);
                    let before = drops;
                    s.push_broadcast(slot, &bc(slot, pushed[slot], Delivery { priority, conflate }), &mut drops);
                    if priority == Priority::High && drops.slow[2] > before.slow[2] {
                        prop_assert!(!lower_queued, "a high message went while a lower one was queued");
                    }
                }
                Op::Occupancy { slot, online } => {
                    s.push_occupancy(slot, &occupancy_frame(slot, online), online);
                    last_occupancy[slot] = Some(u64::from(online));
                }
            }
        }
        check(drain(&s));
        check(drain(&s));
        prop_assert_eq!(told, last_occupancy, "the last count pushed is the last one told");
        for slot in 0..2 {
            prop_assert_eq!(delivered[slot] + lagged[slot], pushed[slot], "room {}", slot);
        }
        let tallied: u64 = drops.slow.iter().sum::<u64>() + drops.conflated;
        prop_assert_eq!(tallied, lagged[0] + lagged[1]);
    }
}

#[test]
fn replies_stop_once_many_frames_wait_unread() {
    let s = sub(1024, 1 << 20);
    let queued = (0..100).filter(|_| s.push_reply(Bytes::from_static(b"pong"))).count();
    assert_eq!(queued, MAX_QUEUED_FOR_REPLY, "a pinging client that never reads is answered a bounded number of times");
    let mut out = VecDeque::new();
    s.take(&mut out);
    assert_eq!(out.len(), MAX_QUEUED_FOR_REPLY);
    assert!(s.push_reply(Bytes::from_static(b"pong")), "once the writer took them, replies resume");
}

/// Broadcast `n` of `room`, in every framing the same QUIC frame.
fn bc_of(room: &str, n: u64) -> Arc<Broadcast> {
    let frame = Framing::Quic.frame(format!(r#"{{"type":"broadcast","room":"{room}","seq":{n}}}"#).as_bytes());
    let frames = Frames::same_in_every_framing(frame);
    Arc::new(Broadcast::new(&Arc::from(room), n, normal(), frames, 1))
}

#[test]
fn a_released_slot_is_reused_and_its_rooms_backlog_is_withdrawn() {
    let s = Subscriber::new(1, Framing::Quic, [], QueueLimits::default());
    assert_eq!(s.assign_slot(Arc::from("a")), 0);
    assert_eq!(s.assign_slot(Arc::from("b")), 1, "the slots grow as rooms come");
    let mut drops = Drops::default();
    let left = bc_of("a", 1);
    s.push_broadcast(0, &left, &mut drops);
    s.push_broadcast(1, &bc_of("b", 1), &mut drops);
    s.release_slot("a");
    assert_eq!(left.reach.totals().disconnected, 1, "withdrawn: counted in its reach");
    assert_eq!(s.assign_slot(Arc::from("c")), 0, "a free slot is taken before a new one");
    s.push_broadcast(0, &bc_of("c", 1), &mut drops);
    let rooms: Vec<Value> = drain(&s).into_iter().map(|v| v["room"].clone()).collect();
    assert_eq!(rooms, ["b", "c"]);
}

proptest! {
    /// Whatever the subscribes, unsubscribes, pushes and drains of a
    /// connection whose rooms come and go (a Pusher one): nothing of a room
    /// arrives once it is left, nor from before it was last joined, and a
    /// `lagged` always names a room the slot holds now.
    #[test]
    fn a_slot_never_mixes_two_rooms(ops in proptest::collection::vec((0u8..4, 0usize..3), 1..200), max in 1usize..6) {
        let names = ["a", "b", "c"];
        let limits = QueueLimits { max_messages: max, max_bytes: usize::MAX, slow_consumer_after: Duration::from_secs(3600) };
        let s = Subscriber::new(1, Framing::Quic, [], limits);
        let mut slot_of: [Option<usize>; 3] = [None; 3];
        let mut joined_after = [0u64; 3];
        let mut seq = 0;
        let check = |messages: Vec<Value>, slot_of: &[Option<usize>; 3], joined_after: &[u64; 3]| -> Result<(), TestCaseError> {
            for v in messages {
                let room = names.iter().position(|n| v["room"] == *n).unwrap();
                prop_assert!(slot_of[room].is_some(), "a message of room {} after it was left: {}", names[room], v);
                if v["type"] == "broadcast" {
                    prop_assert!(v["seq"].as_u64().unwrap() > joined_after[room], "from before the join: {}", v);
                }
            }
            Ok(())
        };
        for (op, room) in ops {
            match op {
                0 if slot_of[room].is_none() => {
                    slot_of[room] = Some(s.assign_slot(Arc::from(names[room])));
                    joined_after[room] = seq;
                }
                1 if slot_of[room].take().is_some() => s.release_slot(names[room]),
                2 => if let Some(slot) = slot_of[room] {
                    seq += 1;
                    s.push_broadcast(slot, &bc_of(names[room], seq), &mut Drops::default());
                },
                3 => check(drain(&s), &slot_of, &joined_after)?,
                _ => {}
            }
        }
        check(drain(&s), &slot_of, &joined_after)?;
    }
}

#[test]
fn a_pusher_subscribers_drain_close_is_only_asked_and_it_receives_until_closed() {
    // Asking costs no byte: it sits in padding (184 B without it, on 64-bit).
    const _: () = assert!(std::mem::size_of::<QueueState>() <= 184);
    let s = Subscriber::new(1, Framing::Pusher, [Arc::from("a")], QueueLimits::default());
    let drain = CloseReason::ServerDraining { reconnect_after_ms: 10 };
    assert!(s.close(drain));
    assert_eq!(s.closing(), None, "asked, not closed");
    assert_eq!(s.push_broadcast(0, &bc(0, 1, normal()), &mut Drops::default()), PushOutcome::Queued);
    assert_eq!(s.take_drain_asked(), Some(drain));
    assert_eq!(s.take_drain_asked(), None, "taken once");
    s.close_now(drain);
    assert_eq!(s.push_broadcast(0, &bc(0, 2, normal()), &mut Drops::default()), PushOutcome::Closed);
    let native = Subscriber::new(2, Framing::WebSocket, [Arc::from("a")], QueueLimits::default());
    native.close(drain);
    assert_eq!(native.closing(), Some(drain), "a native subscriber is closed at once (it resumes)");
}

/// A waker that counts its calls.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl CountingWaker {
    fn calls(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_parked_connection_is_woken_once_and_its_waker_is_kept() {
    let s = sub(100, 1 << 20);
    let counter = Arc::new(CountingWaker::default());
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(s.poll_woken(&mut cx).is_pending(), "nothing queued yet");
    for n in 1..=3 {
        push(&s, n, normal());
    }
    assert_eq!(counter.calls(), 1, "three pushes while parked: one wake");
    assert!(s.poll_woken(&mut cx).is_ready());
    assert_eq!(drain(&s).len(), 3);
    push(&s, 4, normal()); // the connection runs: nobody to wake, the permit is stored
    assert_eq!(counter.calls(), 1);
    assert!(s.poll_woken(&mut cx).is_ready(), "the push while running is not lost");
    assert_eq!(drain(&s).len(), 1);
    assert!(s.poll_woken(&mut cx).is_pending());
    push(&s, 5, normal());
    assert_eq!(counter.calls(), 2);
    assert_eq!(Arc::strong_count(&counter), 3, "ours, the Waker's, the queue's: one registration, no clones left");
}

proptest! {
    /// Whatever the interleaving of pushes, closes and polls (each ready poll
    /// followed by a take, as a connection does): something happens when a
    /// push finds the queue empty or the first close comes; it wakes the
    /// connection exactly when it is parked, and a poll is ready exactly when
    /// something happened since the last ready poll.
    #[test]
    fn wakes_reach_a_parked_connection_exactly_once(ops in proptest::collection::vec(0u8..3, 1..100)) {
        let s = sub(1000, 1 << 20);
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut parked, mut happened, mut queued, mut closed) = (false, false, false, false);
        let (mut wakes, mut n) = (0, 0);
        for op in ops {
            let happens = match op {
                0 => {
                    n += 1;
                    push(&s, n, normal());
                    !closed && !std::mem::replace(&mut queued, true)
                }
                1 => {
                    s.close_now(CloseReason::RoomDestroyed);
                    !std::mem::replace(&mut closed, true)
                }
                _ => {
                    let ready = s.poll_woken(&mut cx).is_ready();
                    prop_assert_eq!(ready, std::mem::take(&mut happened));
                    parked = !ready;
                    if ready {
                        drain(&s);
                        queued = false;
                    }
                    false
                }
            };
            if happens {
                wakes += usize::from(std::mem::take(&mut parked));
                happened = true;
            }
            prop_assert_eq!(counter.calls(), wakes);
        }
    }
}
