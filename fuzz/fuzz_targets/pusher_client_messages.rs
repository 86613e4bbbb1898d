//! What a Pusher client sends (`pusher:subscribe` with its data as an object
//! or a string, pings, client events): any text is read or refused without
//! panicking, and a channel it names is judged without panicking either.
#![no_main]

use bullhorn::protocol::pusher::{ClientMessage, channel_kind, parse_client};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(ClientMessage::Subscribe { channel } | ClientMessage::Unsubscribe { channel }) = parse_client(text) {
        let _ = channel_kind(&channel);
    }
});
