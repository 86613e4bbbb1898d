//! The Pusher Channels protocol (version 7; 5 and 6 are the same for public
//! channels) as bullhorn's viewer side speaks it (contract §12;
//! docs/research/pusher-protocol-7.md has the sources for every rule here):
//! the messages a server writes, the ones a client sends, channel names and
//! close codes. Pure, for property tests and a fuzz target.
//!
//! Invariants: every server→client `data` is a JSON-encoded string except
//! `pusher:error`'s, an object (Swift reads nothing else); every message has
//! `data`; a channel event's data string is the broadcast's data as Pusher
//! clients expect it (the original string of a Pusher-triggered event, the
//! JSON text of a native one).

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Seconds without a message after which a client pings (we advertise Pusher's own value).
pub const ACTIVITY_TIMEOUT_SECS: u64 = 120;

/// The protocol's close codes (4000–4099: the client stops; 4100–4199: it
/// retries after a second; 4200–4299: at once).
pub mod close {
    /// No app has this key.
    pub const APP_NOT_FOUND: u16 = 4001;
    /// Over the node's connection cap.
    pub const OVER_QUOTA: u16 = 4004;
    /// A protocol version before 5.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// Drain, room deletion: come back now (to another node).
    pub const RECONNECT_NOW: u16 = 4200;
    /// Silent past the activity timeout and its pong grace.
    pub const PONG_TIMEOUT: u16 = 4201;
    /// Too slow to keep up: come back after a second.
    pub const SLOW_CONSUMER: u16 = 4100;

    /// The code a server close for `reason` ends with: a drain and a deleted
    /// room ask for a reconnect at once (to another node; a deleted room's
    /// resubscribe is then refused), a slow consumer after a second.
    pub fn for_reason(reason: crate::protocol::close::CloseReason) -> u16 {
        use crate::protocol::close::CloseReason;
        match reason {
            CloseReason::ServerDraining { .. } | CloseReason::RoomDestroyed => RECONNECT_NOW,
            CloseReason::SlowConsumer { .. } => SLOW_CONSUMER,
        }
    }
}

/// The protocol versions served: Java connects with 5, pusher-js and Swift with 7.
pub fn supported_protocol(version: Option<&str>) -> bool {
    match version {
        None => true,
        Some(version) => version.parse::<u32>().is_ok_and(|v| (5..=7).contains(&v)),
    }
}

/// A socket id as Pusher's server libraries check it (`^\d+\.\d+$`), from a
/// connection id and a per-process salt.
pub fn socket_id(connection_id: u64, salt: u64) -> String {
    format!("{}.{}", salt % 1_000_000_000, connection_id)
}

/// JSON text of a string (quotes and escapes).
fn string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The first message of every connection.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> Vec<u8> {
    let data = format!(r#"{{"socket_id":{},"activity_timeout":{activity_timeout_secs}}}"#, string(socket_id));
    format!(r#"{{"event":"pusher:connection_established","data":{}}}"#, string(&data)).into_bytes()
}

/// The answer to a subscribe to a public channel (data `"{}"`: Swift needs it).
pub fn subscription_succeeded(channel: &str) -> Vec<u8> {
    format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":{},"data":"{{}}"}}"#, string(channel))
        .into_bytes()
}

/// A refused subscribe; the connection stays open.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Vec<u8> {
    let data = serde_json::json!({"type": kind, "error": error, "status": status}).to_string();
    format!(r#"{{"event":"pusher:subscription_error","channel":{},"data":{}}}"#, string(channel), string(&data))
        .into_bytes()
}

/// `pusher:error`, whose data is an object (`code` a number or null).
pub fn error(code: Option<u16>, message: &str) -> Vec<u8> {
    serde_json::json!({"event": "pusher:error", "data": {"code": code, "message": message}}).to_string().into_bytes()
}

/// The answer to `pusher:ping`.
pub const PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

/// A broadcast as Pusher clients get it: once per broadcast, for all of them.
pub fn channel_event(event: &str, channel: &str, data: &str) -> Vec<u8> {
    format!(r#"{{"event":{},"channel":{},"data":{}}}"#, string(event), string(channel), string(data)).into_bytes()
}

/// A message of the native protocol (`lagged`, `occupancy`, …) as the
/// event `bullhorn:<type>` on its room's channel, with the message's JSON
/// text as the data string: what Pusher's protocol has no event for, a
/// Pusher client can still bind. Made once per message, never per delivery.
pub fn native_as_event(json: &[u8]) -> Vec<u8> {
    #[derive(Deserialize)]
    struct Native<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        room: Option<std::borrow::Cow<'a, str>>,
    }
    let text = String::from_utf8_lossy(json);
    let (kind, room) = match serde_json::from_str::<Native>(&text) {
        Ok(native) => (native.kind.into_owned(), native.room.map(|room| room.into_owned())),
        Err(_) => ("message".to_owned(), None),
    };
    channel_event(&format!("bullhorn:{kind}"), room.as_deref().unwrap_or(""), &text)
}

/// A broadcast's `data` as Pusher clients expect the string: the JSON text,
/// or, for a Pusher-triggered event whose data was not JSON (`is_text`), the
/// original string that `data` holds as a JSON string.
pub fn data_string(data_json: &str, is_text: bool) -> std::borrow::Cow<'_, str> {
    if is_text && let Ok(Value::String(text)) = serde_json::from_str::<Value>(data_json) {
        return text.into();
    }
    data_json.into()
}

/// What a channel name is to a server of public channels only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    /// `private-`, `presence-`, `private-encrypted-`, `#`…: not offered (no per-user authorization here).
    Unsupported,
    /// Not a valid Pusher channel name.
    Invalid,
}

/// The longest channel name Pusher's libraries take.
pub const MAX_CHANNEL: usize = 200;

pub fn channel_kind(name: &str) -> ChannelKind {
    let valid = (1..=MAX_CHANNEL).contains(&name.len())
        && name.strip_prefix('#').unwrap_or(name).bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b));
    if !valid {
        ChannelKind::Invalid
    } else if name.starts_with("private-") || name.starts_with("presence-") || name.starts_with('#') {
        ChannelKind::Unsupported
    } else {
        ChannelKind::Public
    }
}

/// A message from a Pusher client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe {
        channel: String,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
    Pong,
    /// `client-…` on a channel: refused with `pusher:error`, never broadcast.
    ClientEvent {
        event: String,
    },
    /// Any other event (`pusher:signin`, unknown ones): ignored.
    Other,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChannelData {
    channel: String,
}

/// Why a client message could not be read: answered with `pusher:error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a message is a JSON object with an event")]
    NotAMessage,
    #[error("pusher:subscribe and pusher:unsubscribe name a channel in their data")]
    NoChannel,
}

/// Reads one client text message. `data` may be an object or a JSON string
/// holding one (hand-written clients send either); a ping needs none (Java's has none).
pub fn parse_client(text: &str) -> Result<ClientMessage, ParseError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|_| ParseError::NotAMessage)?;
    let channel = || -> Result<String, ParseError> {
        let data = envelope.data.ok_or(ParseError::NoChannel)?;
        let parsed: ChannelData = match serde_json::from_str::<String>(data.get()) {
            Ok(inner) => serde_json::from_str(&inner),
            Err(_) => serde_json::from_str(data.get()),
        }
        .map_err(|_| ParseError::NoChannel)?;
        Ok(parsed.channel)
    };
    Ok(match &*envelope.event {
        "pusher:subscribe" => ClientMessage::Subscribe { channel: channel()? },
        "pusher:unsubscribe" => ClientMessage::Unsubscribe { channel: channel()? },
        "pusher:ping" => ClientMessage::Ping,
        "pusher:pong" => ClientMessage::Pong,
        event if event.starts_with("client-") => ClientMessage::ClientEvent { event: event.to_owned() },
        _ => ClientMessage::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn server_messages_have_the_shapes_clients_read() {
        let established = json(&connection_established("123.456", 120));
        let data: Value = serde_json::from_str(established["data"].as_str().expect("a string")).unwrap();
        assert_eq!(data, serde_json::json!({"socket_id": "123.456", "activity_timeout": 120}));
        let ok = json(&subscription_succeeded("gifts"));
        assert_eq!((ok["channel"].as_str(), ok["data"].as_str()), (Some("gifts"), Some("{}")));
        let refused = json(&subscription_error("private-x", "AuthError", "no private channels", 403));
        let data: Value = serde_json::from_str(refused["data"].as_str().expect("a string")).unwrap();
        assert_eq!(data["status"], 403);
        let error = json(&error(Some(4301), "client events are not offered"));
        assert_eq!(error["data"]["code"], 4301, "an object with a number");
        assert_eq!(json(&super::error(None, "x"))["data"]["code"], Value::Null);
        assert_eq!(json(PONG)["data"], serde_json::json!({}));
    }

    #[test]
    fn socket_ids_are_what_server_libraries_accept() {
        let id = socket_id(42, u64::MAX);
        let (a, b) = id.split_once('.').unwrap();
        assert!(!a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit()), "{id}");
    }

    #[test]
    fn client_messages_in_every_form_clients_send() {
        let sub = |text| parse_client(text).unwrap();
        assert_eq!(
            sub(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"gifts"}}"#),
            ClientMessage::Subscribe { channel: "gifts".into() }
        );
        assert_eq!(
            sub(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"gifts\"}"}"#),
            ClientMessage::Subscribe { channel: "gifts".into() }
        );
        assert_eq!(
            sub(r#"{"event":"pusher:unsubscribe","data":{"channel":"gifts"}}"#),
            ClientMessage::Unsubscribe { channel: "gifts".into() }
        );
        assert_eq!(sub(r#"{"event": "pusher:ping"}"#), ClientMessage::Ping, "Java's ping has no data");
        assert_eq!(
            sub(r#"{"event":"client-typing","channel":"gifts","data":{}}"#),
            ClientMessage::ClientEvent { event: "client-typing".into() }
        );
        assert_eq!(sub(r#"{"event":"pusher:signin","data":{}}"#), ClientMessage::Other);
        assert_eq!(parse_client(r#"{"event":"pusher:subscribe","data":{}}"#), Err(ParseError::NoChannel));
        assert_eq!(parse_client("[]"), Err(ParseError::NotAMessage));
    }

    #[test]
    fn only_public_channels_are_offered() {
        assert_eq!(channel_kind("gifts"), ChannelKind::Public);
        assert_eq!(channel_kind("live_8812-a=b@c,d.e;f"), ChannelKind::Public);
        for name in ["private-x", "presence-x", "private-encrypted-x", "#server-to-user-1"] {
            assert_eq!(channel_kind(name), ChannelKind::Unsupported, "{name}");
        }
        for name in ["", "a b", "é", &"a".repeat(201)] {
            assert_eq!(channel_kind(name), ChannelKind::Invalid, "{name:?}");
        }
    }

    #[test]
    fn protocols_five_to_seven_are_served() {
        assert!(supported_protocol(Some("7")) && supported_protocol(Some("5")) && supported_protocol(None));
        assert!(!supported_protocol(Some("4")) && !supported_protocol(Some("8")) && !supported_protocol(Some("x")));
    }

    proptest! {
        /// Whatever the data, a Pusher client reads back exactly the string it was meant to get.
        #[test]
        fn a_channel_event_carries_its_data_string_exactly(data in any::<String>(), event in "[a-z-]{1,20}", channel in "[a-z_]{1,20}") {
            let message = json(&channel_event(&event, &channel, &data));
            prop_assert_eq!(message["data"].as_str(), Some(data.as_str()));
            prop_assert_eq!(message["event"].as_str(), Some(event.as_str()));
            prop_assert_eq!(message["channel"].as_str(), Some(channel.as_str()));
        }

        /// A Pusher-triggered text comes back as the original string; JSON data as its text.
        #[test]
        fn data_strings_round_trip(text in any::<String>()) {
            let as_json = Value::String(text.clone()).to_string();
            prop_assert_eq!(data_string(&as_json, true), text.as_str());
            prop_assert_eq!(data_string(&as_json, false), as_json.as_str());
        }

        /// Whatever native message, its Pusher event carries its JSON text exactly.
        #[test]
        fn a_native_message_becomes_a_bullhorn_event(room in "[a-z_]{1,20}", missed in 1u64..1000) {
            let native = crate::protocol::messages::lagged(&room, missed, crate::protocol::messages::LagReason::Slow);
            let message = json(&native_as_event(&native));
            prop_assert_eq!(message["event"].as_str(), Some("bullhorn:lagged"));
            prop_assert_eq!(message["channel"].as_str(), Some(room.as_str()));
            prop_assert_eq!(message["data"].as_str().map(str::as_bytes), Some(native.as_slice()));
        }

        /// Nothing a client sends panics the reader.
        #[test]
        fn any_text_parses_or_is_refused(text in any::<String>()) {
            let _ = parse_client(&text);
        }
    }
}
