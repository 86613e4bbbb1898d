//! The resume seam under a real race, in process: one thread publishes
//! without pause while another resumes subscribers after a seq, hundreds of
//! times. Every resumed queue must hold each seq after the resume point
//! exactly once, in order, replayed or live, whatever the interleaving.

#[path = "../benches/support/rig.rs"]
mod rig;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bullhorn::fanout::{Delivery, QueueLimits, Subscriber};
use bullhorn::presence::Member;
use bullhorn::protocol::Framing;
use serde_json::Value;

#[test]
fn a_resume_racing_live_broadcasts_never_repeats_or_skips() {
    let rig = rig::Rig::with(4, 2, rig::Features::On);
    let room = rig.room.clone();
    for _ in 0..30 {
        room.publish("0", Delivery::default(), None);
    }
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (room, running) = (room.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                room.publish("1", Delivery::default(), None);
            }
        })
    };
    let mut out = VecDeque::new();
    for id in 0..500u64 {
        let after = room.seq().saturating_sub(20);
        let limits = QueueLimits { max_messages: 100_000, max_bytes: usize::MAX, ..QueueLimits::default() };
        let sub = Arc::new(Subscriber::new(1000 + id, Framing::Quic, [room.id().clone()], limits));
        let (key, welcome_seq) = room.join(id, Member { subscriber: sub.clone(), slot: 0 }, Some(after)).unwrap();
        assert_eq!(welcome_seq, after);
        let mut expected = after + 1;
        let mut first = true;
        while expected <= after + 40 {
            sub.take(&mut out);
            for frame in out.drain(..) {
                let message: Value = serde_json::from_slice(&frame.bytes(Framing::Quic)[4..]).unwrap();
                // A thread descheduled between reading the seq and joining may
                // fall out of the window: then one `expired` comes first.
                if std::mem::take(&mut first) && message["type"] == "lagged" {
                    assert_eq!(message["reason"], "expired");
                    expected += message["missed"].as_u64().unwrap();
                    continue;
                }
                assert_eq!(message["type"], "broadcast", "nothing dropped: {message}");
                assert_eq!(message["seq"], expected, "resume {id} after {after}");
                expected += 1;
            }
            std::thread::yield_now();
        }
        room.leave(key);
    }
    running.store(false, Ordering::Relaxed);
    publisher.join().unwrap();
}
