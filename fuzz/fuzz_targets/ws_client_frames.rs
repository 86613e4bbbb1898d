//! The WebSocket client-frame decoder, with and without `permessage-deflate`
//! (compressed messages inflated under the size limit): any bytes, cut
//! anywhere, never panic, and never make it buffer more than one frame.
#![no_main]

use bullhorn::protocol::ws::{Decoder, MAX_CLIENT_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where reads are cut, so splits are fuzzed too.
    let Some((&cut, rest)) = data.split_first() else { return };
    // Its top bit picks whether deflate was negotiated.
    let mut decoder = Decoder::with_deflate(cut & 0x80 != 0);
    let cut = usize::from(cut & 0x7F).max(1);
    for chunk in rest.chunks(cut) {
        let mut chunk = chunk.to_vec();
        if decoder.decode(&mut chunk, |_| {}).is_err() {
            return;
        }
        assert!(decoder.buffered() <= MAX_CLIENT_FRAME);
    }
});
