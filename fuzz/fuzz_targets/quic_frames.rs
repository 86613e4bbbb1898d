//! The QUIC length-prefixed frame decoder: any bytes, cut anywhere, never
//! panic, and every frame it yields respects the 4 KiB limit.
#![no_main]

use bullhorn::protocol::quic::{Decoder, MAX_CLIENT_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let mut decoder = Decoder::default();
    for chunk in rest.chunks(usize::from(cut).max(1)) {
        if decoder.decode(chunk, |frame| assert!(frame.len() <= MAX_CLIENT_FRAME)).is_err() {
            return;
        }
    }
});
