//! The JSON objects a subscriber receives (contract §3), and the few it sends.
//!
//! Broadcasts are written by hand into a caller's buffer: ids are restricted
//! to `[A-Za-z0-9_-]` and `data` arrives as already-validated JSON text, so the
//! message is a few `extend`s with no escaping and no intermediate value tree.

use std::io::Write as _;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;

use super::close::CloseReason;

/// `{"type":"pong"}`.
pub const PONG: &[u8] = br#"{"type":"pong"}"#;

/// Why a `lagged` message says messages were not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagReason {
    /// Dropped because the subscriber fell behind.
    Slow,
    /// Replaced by a newer message with the same conflate key.
    Conflated,
    /// On resume, no longer held by the server.
    Expired,
}

impl LagReason {
    /// In declaration order, so `ALL[reason as usize] == reason`.
    pub const ALL: [LagReason; 3] = [LagReason::Slow, LagReason::Conflated, LagReason::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            LagReason::Slow => "slow",
            LagReason::Conflated => "conflated",
            LagReason::Expired => "expired",
        }
    }
}

/// The longest Pusher event name.
pub const MAX_EVENT_NAME: usize = 200;

/// A Pusher event name as a broadcast may carry one (contract §12): 1 to 200
/// visible ASCII characters other than `"` and `\\` (so it is written into
/// JSON as it is), and not one of the protocol's own (`pusher:…`,
/// `pusher_internal:…`).
pub fn is_event_name(name: &str) -> bool {
    (1..=MAX_EVENT_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        && !name.starts_with("pusher:")
        && !name.starts_with("pusher_internal:")
}

/// Appends `{"type":"broadcast","room":…,"seq":…,"ts":…,"data":…}` to `out`.
/// `room` must be a valid id and `data` valid JSON text.
pub fn write_broadcast(out: &mut BytesMut, room: &str, seq: u64, ts_ms: u64, data: &str) {
    write_numbered(out, "broadcast", room, seq, ts_ms, None, data);
}

/// [`write_broadcast`] with another `type` (`sticky`: the same fields) and,
/// when given, the broadcast's Pusher `event` name after `ts` (contract §12;
/// checked by `admin::body::event_name`, so it needs no escaping).
pub fn write_numbered(
    out: &mut BytesMut,
    kind: &str,
    room: &str,
    seq: u64,
    ts_ms: u64,
    event: Option<&str>,
    data: &str,
) {
    out.reserve(80 + room.len() + data.len() + event.map_or(0, str::len));
    out.put_slice(br#"{"type":""#);
    out.put_slice(kind.as_bytes());
    out.put_slice(br#"","room":""#);
    out.put_slice(room.as_bytes());
    out.put_slice(br#"","seq":"#);
    put_u64(out, seq);
    out.put_slice(br#","ts":"#);
    put_u64(out, ts_ms);
    if let Some(event) = event {
        out.put_slice(br#","event":""#);
        out.put_slice(event.as_bytes());
        out.put_u8(b'"');
    }
    out.put_slice(br#","data":"#);
    out.put_slice(data.as_bytes());
    out.put_u8(b'}');
}

fn put_u64(out: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// `{"type":"welcome","rooms":[{"room":…,"seq":…}…],"heartbeat_ms":…}`.
pub fn welcome<'a>(rooms: impl IntoIterator<Item = (&'a str, u64)>, heartbeat_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(br#"{"type":"welcome","rooms":["#);
    for (i, (room, seq)) in rooms.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, r#"{{"room":"{room}","seq":{seq}}}"#);
    }
    let _ = write!(out, r#"],"heartbeat_ms":{heartbeat_ms}}}"#);
    out
}

/// `{"type":"occupancy","room":…,"online":…}`.
pub fn occupancy(room: &str, online: usize) -> Vec<u8> {
    format!(r#"{{"type":"occupancy","room":"{room}","online":{online}}}"#).into_bytes()
}

/// `{"type":"lagged","room":…,"missed":…,"reason":…}`.
pub fn lagged(room: &str, missed: u64, reason: LagReason) -> Vec<u8> {
    format!(r#"{{"type":"lagged","room":"{room}","missed":{missed},"reason":"{}"}}"#, reason.as_str()).into_bytes()
}

/// `{"type":"closing","reason":…[,"reconnect_after_ms":…]}`.
pub fn closing(reason: CloseReason) -> Vec<u8> {
    match reason.reconnect_after_ms() {
        Some(ms) => format!(r#"{{"type":"closing","reason":"{}","reconnect_after_ms":{ms}}}"#, reason.as_str()),
        None => format!(r#"{{"type":"closing","reason":"{}"}}"#, reason.as_str()),
    }
    .into_bytes()
}

/// What a subscriber sent, as far as the server cares.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Ping,
    /// Anything else: ignored, per the contract.
    Other,
}

/// Classifies one text message from a subscriber.
pub fn parse_client(text: &[u8]) -> ClientMessage {
    if text == br#"{"type":"ping"}"# {
        return ClientMessage::Ping;
    }
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Typed<'_>>(text) {
        Ok(t) if t.kind == "ping" => ClientMessage::Ping,
        _ => ClientMessage::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    #[test]
    fn broadcast_is_the_contract_shape() {
        let mut out = BytesMut::new();
        write_broadcast(&mut out, "gifts", 42, 1_764_264_000_123, r#"{"text":"火箭 🚀"}"#);
        assert_eq!(
            parse(&out),
            json!({"type":"broadcast","room":"gifts","seq":42,"ts":1_764_264_000_123u64,"data":{"text":"火箭 🚀"}})
        );
    }

    #[test]
    fn control_messages_are_the_contract_shape() {
        assert_eq!(
            parse(&welcome([("gifts", 41), ("b", 0)], 25000)),
            json!({"type":"welcome","rooms":[{"room":"gifts","seq":41},{"room":"b","seq":0}],"heartbeat_ms":25000})
        );
        assert_eq!(
            parse(&lagged("gifts", 17, LagReason::Slow)),
            json!({"type":"lagged","room":"gifts","missed":17,"reason":"slow"})
        );
        assert_eq!(
            parse(&closing(CloseReason::ServerDraining { reconnect_after_ms: 1234 })),
            json!({"type":"closing","reason":"server_draining","reconnect_after_ms":1234})
        );
        assert_eq!(parse(&closing(CloseReason::RoomDestroyed)), json!({"type":"closing","reason":"room_destroyed"}));
        assert_eq!(parse(PONG), json!({"type":"pong"}));
    }

    #[test]
    fn recognises_pings_only() {
        assert_eq!(parse_client(br#"{"type":"ping"}"#), ClientMessage::Ping);
        assert_eq!(parse_client(br#"{ "type" : "ping", "x": 1 }"#), ClientMessage::Ping);
        assert_eq!(parse_client(br#"{"type":"pong"}"#), ClientMessage::Other);
        assert_eq!(parse_client(b"not json"), ClientMessage::Other);
    }

    proptest! {
        #[test]
        fn numbers_render_like_std(seq in any::<u64>(), ts in any::<u64>()) {
            let mut out = BytesMut::new();
            write_broadcast(&mut out, "r", seq, ts, "null");
            let v = parse(&out);
            prop_assert_eq!(v["seq"].as_u64(), Some(seq));
            prop_assert_eq!(v["ts"].as_u64(), Some(ts));
        }
    }
}
