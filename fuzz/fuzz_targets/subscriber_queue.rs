//! The subscriber queue under any sequence of pushes (room, priority,
//! conflate key), takes and partial writes: it never panics, each room's
//! delivered seqs increase, and delivered + announced in `lagged` = pushed.
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bullhorn::fanout::{Broadcast, ConflateKey, Delivery, Drops, Entry, Frames, Priority, QueueLimits, Subscriber};
use bullhorn::protocol::Framing;
use libfuzzer_sys::fuzz_target;

const ROOMS: [&str; 3] = ["a", "b", "c"];

fuzz_target!(|data: &[u8]| {
    let Some((&bound, ops)) = data.split_first() else { return };
    let limits = QueueLimits {
        max_messages: usize::from(bound % 8) + 1,
        max_bytes: 4096,
        slow_consumer_after: Duration::from_secs(3600),
    };
    let sub = Subscriber::new(1, Framing::Quic, ROOMS.map(Arc::from), limits);
    let mut pushed = [0u64; 3];
    let mut seen = [0u64; 3];
    let mut last = [0u64; 3];
    let mut out = VecDeque::new();
    let mut drops = Drops::default();
    let read = |sub: &Subscriber, out: &mut VecDeque<_>, seen: &mut [u64; 3], last: &mut [u64; 3]| {
        sub.take(out);
        let mut written = 0;
        for entry in out.drain(..) {
            let entry: Entry = entry;
            let frame = entry.bytes(Framing::Quic).clone();
            written += frame.len();
            let text = std::str::from_utf8(&frame[4..]).unwrap();
            let room = ROOMS.iter().position(|r| text.contains(&format!(r#""room":"{r}""#))).unwrap();
            if let Some(missed) = field(text, "missed") {
                seen[room] += missed;
            } else {
                let seq = field(text, "seq").unwrap();
                assert!(seq > last[room]);
                last[room] = seq;
                seen[room] += 1;
            }
        }
        sub.written(written);
    };
    for &op in ops {
        if op & 0x80 != 0 {
            read(&sub, &mut out, &mut seen, &mut last);
            continue;
        }
        let room = usize::from(op & 3) % 3;
        let priority = Priority::ALL[usize::from(op >> 2 & 3) % 3];
        let key = op >> 4 & 7;
        let conflate = if key < 3 { ConflateKey::of(&key.to_string()) } else { ConflateKey::NONE };
        pushed[room] += 1;
        let seq = pushed[room];
        let frame = Framing::Quic.frame(format!(r#"{{"type":"broadcast","room":"{}","seq":{seq}}}"#, ROOMS[room]).as_bytes());
        let frames = Frames::same_in_every_framing(frame);
        let broadcast = Arc::new(Broadcast::new(&Arc::from(ROOMS[room]), seq, Delivery { priority, conflate }, frames, 1));
        sub.push_broadcast(room, &broadcast, &mut drops);
    }
    read(&sub, &mut out, &mut seen, &mut last);
    read(&sub, &mut out, &mut seen, &mut last);
    assert_eq!(seen, pushed);
});

/// The number after `"name":` in a flat JSON object.
fn field(text: &str, name: &str) -> Option<u64> {
    let start = text.find(&format!(r#""{name}":"#))? + name.len() + 3;
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
