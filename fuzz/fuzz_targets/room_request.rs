//! `room` / `room@seq` parsing: accepted ids always satisfy the contract's pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(request) = bullhorn::ids::RoomRequest::parse(text) {
        assert!(bullhorn::ids::is_valid_id(&request.room));
    }
});
