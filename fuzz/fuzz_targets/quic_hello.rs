//! The hello parser and the subscriber-message classifier: any bytes give a
//! value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = bullhorn::protocol::quic::parse_hello(data) {
        assert_eq!(hello.kind, "hello");
    }
    let _ = bullhorn::protocol::messages::parse_client(data);
});
