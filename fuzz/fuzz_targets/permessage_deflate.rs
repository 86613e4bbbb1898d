//! `permessage-deflate`: any bytes as a client's compressed message inflate
//! to at most the limit or are refused, never panic; any text as a
//! `Sec-WebSocket-Extensions` offer is judged without panicking; and what the
//! server compresses always inflates back to itself.
#![no_main]

use bullhorn::protocol::deflate::{Compressor, accepts_offer, inflate};
use bullhorn::protocol::ws::MAX_CLIENT_PAYLOAD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(inflated) = inflate(data, MAX_CLIENT_PAYLOAD) {
        assert!(inflated.len() <= MAX_CLIENT_PAYLOAD);
    }
    let _ = accepts_offer(std::iter::once(data));
    let frame = Compressor::default().text_frame(data);
    let header = match frame[1] {
        127 => 10,
        126 => 4,
        _ => 2,
    };
    assert_eq!(inflate(&frame[header..], data.len()).expect("our own frame inflates"), data);
});
