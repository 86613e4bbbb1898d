//! The admin broadcast body: any bytes are either refused with a contract
//! error or accepted as a body whose `data` is valid JSON within the limit;
//! an accepted body encodes into a broadcast message that is itself valid
//! JSON carrying that exact `data`, byte for byte. (JSON numbers beyond an
//! f64 are valid JSON and are kept as sent, so the checks use raw values.)
#![no_main]

use bullhorn::admin::broadcast::{MAX_CONFLATE_KEY, parse_body};
use bullhorn::fanout::Frames;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

const LIMIT: usize = 4096;

#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    room: &'a str,
    seq: u64,
    #[serde(borrow)]
    data: &'a RawValue,
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(body) = parse_body(bytes, LIMIT) else { return };
    let data = body.data.get();
    assert!(data.len() <= LIMIT);
    serde_json::from_str::<&RawValue>(data).expect("accepted data is JSON");
    assert!(body.conflate.as_ref().is_none_or(|k| (1..=MAX_CONFLATE_KEY).contains(&k.len())));
    let frames = Frames::encode("room", 7, 1, data);
    // The QUIC frame is a 4-byte length and the JSON message.
    let message: Message<'_> = serde_json::from_slice(&frames.quic[4..]).expect("the message is JSON");
    assert_eq!((message.kind, message.room, message.seq, message.data.get()), ("broadcast", "room", 7, data));
});
