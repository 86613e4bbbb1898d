//! `Last-Event-ID`, the one thing an SSE client sends besides its URL: any
//! value parses into rooms and seqs that write back to the same id line,
//! or is refused, without panicking.
#![no_main]

use bullhorn::protocol::sse::{parse_last_event_id, write_id_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    if let Ok(rooms) = parse_last_event_id(value) {
        if rooms.is_empty() {
            return;
        }
        let mut line = Vec::new();
        write_id_line(&mut line, rooms.iter().copied());
        let again = parse_last_event_id(&line[4..line.len() - 1]).expect("an id line we wrote parses");
        assert_eq!(again, rooms);
    }
});
