//! Pusher's HTTP API signature check: any query and body is accepted only
//! when signed with the app's secret (never here, without it) or refused
//! with a reason, without panicking.
#![no_main]

use bullhorn::pusher::signature::verify;
use bullhorn::registry::PusherIdentity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (query, body) = input;
    let app = PusherIdentity { app_id: "1".into(), key: "key".into(), secret: "secret".into() };
    let params: Vec<(String, String)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    assert!(verify(&app, "POST", "/apps/1/events", &params, body, 1_764_633_600).is_err());
});
