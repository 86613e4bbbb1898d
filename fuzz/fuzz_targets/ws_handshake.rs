//! The raw-socket WebSocket handshake parser: any request head is either
//! passed on (to hyper) or parsed into a subscribe request whose app id and
//! headers came from the input, without panicking.
#![no_main]

use bullhorn::protocol::handshake::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|head: &[u8]| {
    if let Some(request) = parse(head) {
        assert!(!request.app.is_empty());
        let text = String::from_utf8_lossy(head);
        assert!(text.contains(request.app), "the app id is from the request line");
    }
});
