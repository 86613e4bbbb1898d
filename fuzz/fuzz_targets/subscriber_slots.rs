//! A subscriber whose rooms come and go (a Pusher connection's slots,
//! `Subscriber::assign_slot` / `release_slot`) under any sequence of
//! subscribes, unsubscribes, pushes, takes and partial writes: it never
//! panics, nothing of a room arrives after the room was left or from before
//! it was last joined, a `lagged` names a room held now, and once all is
//! written the queue takes more again (its byte tally came back to zero).
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bullhorn::fanout::{Broadcast, Delivery, Drops, Entry, Frames, Priority, QueueLimits, Subscriber};
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
    let sub = Subscriber::new(1, Framing::Quic, [], limits);
    let mut slot_of: [Option<usize>; 3] = [None; 3];
    let mut joined_after = [0u64; 3];
    let mut seq = 0u64;
    let mut out = VecDeque::new();
    let read = |sub: &Subscriber, out: &mut VecDeque<Entry>, slot_of: &[Option<usize>; 3], joined_after: &[u64; 3]| {
        sub.take(out);
        let mut written = 0;
        for entry in out.drain(..) {
            let frame = entry.bytes(Framing::Quic).clone();
            written += frame.len();
            let text = std::str::from_utf8(&frame[4..]).unwrap();
            let room = ROOMS.iter().position(|r| text.contains(&format!(r#""room":"{r}""#))).unwrap();
            assert!(slot_of[room].is_some(), "a message of a left room: {text}");
            if let Some(at) = text.find(r#""seq":"#) {
                let digits: String = text[at + 6..].chars().take_while(char::is_ascii_digit).collect();
                assert!(digits.parse::<u64>().unwrap() > joined_after[room], "from before the join: {text}");
            }
        }
        sub.written(written);
    };
    for &op in ops {
        let room = usize::from(op & 3) % 3;
        match op >> 6 {
            0 if slot_of[room].is_none() => {
                slot_of[room] = Some(sub.assign_slot(Arc::from(ROOMS[room])));
                joined_after[room] = seq;
            }
            1 if slot_of[room].take().is_some() => sub.release_slot(ROOMS[room]),
            2 => {
                if let Some(slot) = slot_of[room] {
                    seq += 1;
                    let text = format!(r#"{{"type":"broadcast","room":"{}","seq":{seq}}}"#, ROOMS[room]);
                    let frames = Frames::same_in_every_framing(Framing::Quic.frame(text.as_bytes()));
                    let priority = Priority::ALL[usize::from(op >> 2 & 3) % 3];
                    let delivery = Delivery { priority, ..Delivery::default() };
                    let broadcast = Arc::new(Broadcast::new(&Arc::from(ROOMS[room]), seq, delivery, frames, 1));
                    sub.push_broadcast(slot, &broadcast, &mut Drops::default());
                }
            }
            3 => read(&sub, &mut out, &slot_of, &joined_after),
            _ => {}
        }
    }
    read(&sub, &mut out, &slot_of, &joined_after);
    read(&sub, &mut out, &slot_of, &joined_after);
    // Everything was written: a room held now takes a broadcast again.
    if let Some(room) = (0..3).find(|&r| slot_of[r].is_some()) {
        seq += 1;
        let text = format!(r#"{{"type":"broadcast","room":"{}","seq":{seq}}}"#, ROOMS[room]);
        let frames = Frames::same_in_every_framing(Framing::Quic.frame(text.as_bytes()));
        let broadcast = Arc::new(Broadcast::new(&Arc::from(ROOMS[room]), seq, Delivery::default(), frames, 1));
        let outcome = sub.push_broadcast(slot_of[room].unwrap(), &broadcast, &mut Drops::default());
        assert_eq!(outcome, bullhorn::fanout::PushOutcome::Queued);
    }
});
