//! The TOML config file: any text is either refused with an error naming a
//! field or gives a configuration that holds the invariants start relies on.
#![no_main]

use bullhorn::Config;
use bullhorn::cli::ServeArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let Ok(text) = std::str::from_utf8(text) else { return };
    match Config::from_toml(&ServeArgs::default(), text, |_| Some("an-admin-key-from-the-environment".into())) {
        Ok(config) => {
            assert!(config.websocket.idle_timeout > config.websocket.heartbeat);
            assert!(config.fanout.queue.max_messages > 0);
            assert!(!config.limits.handshake_timeout.is_zero());
            assert!(config.apps.iter().all(|app| !app.admin_key.is_empty()));
        }
        Err(error) => assert!(!error.field.is_empty()),
    }
});
