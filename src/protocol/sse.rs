//! Server-Sent Events as the SSE endpoint speaks them (contract §10): the
//! response head, each message of contract §3 as one event, the `id:` line
//! that is a stream's resume vector, and the `Last-Event-ID` that brings it
//! back. Pure, so it is property-tested and fuzzed on its own.
//!
//! Invariants: every event is `event:` + one `data:` line (+ `id:`/`retry:`)
//! + a blank line; `data` never holds a line break (a raw break in the
//!   admin's JSON is whitespace between tokens and becomes a space); ids are
//!   `room@seq[,room@seq…]` with rooms in the stream's order.

use bytes::{BufMut, Bytes, BytesMut};

/// The answer before the stream. The body ends with the connection, so no
/// write is framed (no chunked encoding); anonymous viewers on pages of other
/// origins may read it; proxies are asked not to buffer it.
pub const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: text/event-stream\r\n\
cache-control: no-cache\r\n\
access-control-allow-origin: *\r\n\
x-accel-buffering: no\r\n\
connection: close\r\n\r\n";

/// The heartbeat: a comment, which `EventSource` ignores and proxies see as traffic.
pub const HEARTBEAT: &[u8] = b":\n\n";

/// The longest `Last-Event-ID` taken: five rooms of 64 characters with 20-digit seqs fit.
pub const MAX_LAST_EVENT_ID: usize = 512;

/// The message `type` of one of our JSON messages (they all begin `{"type":"…"`).
fn kind(json: &[u8]) -> &[u8] {
    let rest = json.strip_prefix(br#"{"type":""#).unwrap_or(b"");
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(0);
    &rest[..end]
}

/// Appends `data: <json>\n`, line breaks turned into spaces.
fn put_data(out: &mut BytesMut, json: &[u8]) {
    out.put_slice(b"data: ");
    let start = out.len();
    out.put_slice(json);
    for byte in &mut out[start..] {
        if *byte == b'\n' || *byte == b'\r' {
            *byte = b' ';
        }
    }
    out.put_u8(b'\n');
}

/// `event: <type>\ndata: <json>\n\n`: a message of a connection's own. Allocates once.
pub fn event(json: &[u8]) -> Bytes {
    event_with(json, |_| {})
}

/// `event: closing` with `retry: <ms>`, which `EventSource` waits before it reconnects.
pub fn closing_event(json: &[u8], reconnect_after_ms: Option<u64>) -> Bytes {
    event_with(json, |out| {
        if let Some(ms) = reconnect_after_ms {
            out.put_slice(format!("retry: {ms}\n").as_bytes());
        }
    })
}

/// `welcome`, with the id of every room at its welcome seq: a stream cut
/// before its first broadcast resumes exactly too.
pub fn welcome_event<'a>(json: &[u8], rooms: impl IntoIterator<Item = (&'a str, u64)>) -> Bytes {
    event_with(json, |out| {
        let mut line = Vec::new();
        write_id_line(&mut line, rooms);
        out.put_slice(&line);
    })
}

fn event_with(json: &[u8], extra: impl FnOnce(&mut BytesMut)) -> Bytes {
    let kind = kind(json);
    let mut out = BytesMut::with_capacity(json.len() + kind.len() + 48);
    out.put_slice(b"event: ");
    out.put_slice(kind);
    out.put_u8(b'\n');
    put_data(&mut out, json);
    extra(&mut out);
    out.put_u8(b'\n');
    out.freeze()
}

/// A broadcast's shared event: `event: broadcast\ndata: <json>\nid: <room>@<seq>\n\n`.
/// The `id:` line comes last, so a stream of several rooms writes
/// [`without_id`] of it and its own id line.
pub fn broadcast_event(json: &[u8], room: &str, seq: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + room.len() + 64);
    out.put_slice(b"event: broadcast\n");
    put_data(&mut out, json);
    let mut line = Vec::with_capacity(room.len() + 28);
    write_id_line(&mut line, [(room, seq)]);
    out.put_slice(&line);
    out.put_u8(b'\n');
    out.freeze()
}

/// A [`broadcast_event`] of `room`@`seq` without its `id:` line and final blank line.
pub fn without_id<'a>(event: &'a [u8], room: &str, seq: u64) -> &'a [u8] {
    let suffix = "id: ".len() + room.len() + 1 + digits(seq) + 2;
    &event[..event.len() - suffix]
}

fn digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// Appends `id: room@seq[,room@seq…]\n` to `out` (no allocation once `out` has room).
pub fn write_id_line<'a>(out: &mut Vec<u8>, rooms: impl IntoIterator<Item = (&'a str, u64)>) {
    use std::io::Write as _;
    out.extend_from_slice(b"id: ");
    for (i, (room, seq)) in rooms.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(room.as_bytes());
        let _ = write!(out, "@{seq}");
    }
    out.push(b'\n');
}

/// Why a `Last-Event-ID` was refused: the text is the `invalid_request` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LastEventIdError {
    #[error("Last-Event-ID must be room@seq[,room@seq…]")]
    Malformed,
    #[error("Last-Event-ID is longer than 512 bytes")]
    TooLong,
}

/// Parses `Last-Event-ID` (`room@seq[,room@seq…]`) into its rooms and seqs,
/// in order. Room names are checked against the id alphabet here; whether
/// they exist is the caller's question. An empty header resumes nothing.
pub fn parse_last_event_id(value: &[u8]) -> Result<Vec<(&str, u64)>, LastEventIdError> {
    if value.len() > MAX_LAST_EVENT_ID {
        return Err(LastEventIdError::TooLong);
    }
    let text = std::str::from_utf8(value).map_err(|_| LastEventIdError::Malformed)?.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|entry| {
            let (room, seq) = entry.trim().split_once('@').ok_or(LastEventIdError::Malformed)?;
            let seq = (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
                .then(|| seq.parse().ok())
                .flatten()
                .ok_or(LastEventIdError::Malformed)?;
            crate::ids::is_valid_id(room).then_some((room, seq)).ok_or(LastEventIdError::Malformed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses a stream as `EventSource` does (HTML §9.2.6) into (type, data, last id).
    fn events(stream: &[u8]) -> Vec<(String, String, String)> {
        let text = std::str::from_utf8(stream).unwrap();
        let (mut out, mut kind, mut data, mut id) = (Vec::new(), String::new(), String::new(), String::new());
        for line in text.split('\n') {
            if line.is_empty() {
                if !data.is_empty() {
                    out.push((std::mem::take(&mut kind), std::mem::take(&mut data), id.clone()));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "event" => kind = value.into(),
                "data" => data = value.into(),
                "id" => id = value.into(),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn a_message_is_one_event_of_its_type() {
        let stream = [&event(br#"{"type":"lagged","room":"a","missed":2}"#)[..], HEARTBEAT].concat();
        assert_eq!(
            events(&stream),
            [("lagged".into(), r#"{"type":"lagged","room":"a","missed":2}"#.into(), "".into())]
        );
    }

    #[test]
    fn the_welcome_names_every_room_and_closing_sets_the_retry() {
        let welcome = welcome_event(br#"{"type":"welcome"}"#, [("a", 4), ("b", 0)]);
        assert_eq!(events(&welcome)[0].2, "a@4,b@0");
        let closing = closing_event(br#"{"type":"closing"}"#, Some(1500));
        assert!(std::str::from_utf8(&closing).unwrap().contains("\nretry: 1500\n"));
    }

    #[test]
    fn line_breaks_in_data_become_spaces() {
        let json = b"{\"type\":\"broadcast\",\"data\":{\r\n\"a\":\n1}}";
        let event = broadcast_event(json, "gifts", 7);
        let (kind, data, id) = events(&event).remove(0);
        assert_eq!((kind.as_str(), id.as_str()), ("broadcast", "gifts@7"));
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(value["data"]["a"], 1);
    }

    #[test]
    fn a_stream_of_several_rooms_swaps_the_id_line() {
        let event = broadcast_event(br#"{"type":"broadcast"}"#, "gifts", 1234);
        let mut mine = Vec::new();
        write_id_line(&mut mine, [("gifts", 1234), ("news", 8)]);
        let stream = [without_id(&event, "gifts", 1234), &mine, b"\n"].concat();
        assert_eq!(events(&stream)[0].2, "gifts@1234,news@8");
    }

    #[test]
    fn last_event_id_is_room_at_seq_lists() {
        assert_eq!(parse_last_event_id(b"a@1, b_2@30").unwrap(), [("a", 1), ("b_2", 30)]);
        assert_eq!(parse_last_event_id(b"").unwrap(), []);
        for bad in [&b"a"[..], b"a@", b"a@x", b"@1", b"a@1,,b@2", b"a b@1", b"a@99999999999999999999999", b"\xff"] {
            assert_eq!(parse_last_event_id(bad), Err(LastEventIdError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_last_event_id(&[b'a'; 600]), Err(LastEventIdError::TooLong));
    }

    proptest! {
        /// Whatever ids a stream writes, `Last-Event-ID` reads them back.
        #[test]
        fn ids_round_trip(rooms in proptest::collection::vec(("[A-Za-z0-9_-]{1,64}", any::<u64>()), 1..6)) {
            let mut line = Vec::new();
            write_id_line(&mut line, rooms.iter().map(|(r, s)| (r.as_str(), *s)));
            let value = &line[4..line.len() - 1];
            let parsed = parse_last_event_id(value).unwrap();
            let expected: Vec<(&str, u64)> = rooms.iter().map(|(r, s)| (r.as_str(), *s)).collect();
            prop_assert_eq!(parsed, expected);
        }

        /// Any data, any room and seq: one event whose data is one line and whose id is room@seq.
        #[test]
        fn a_broadcast_is_one_well_formed_event(data in "[ -~\r\n]{0,200}", room in "[a-z]{1,8}", seq in any::<u64>()) {
            let json = format!(r#"{{"type":"broadcast","data":{data}}}"#);
            let event = broadcast_event(json.as_bytes(), &room, seq);
            let parsed = events(&event);
            prop_assert_eq!(parsed.len(), 1);
            prop_assert_eq!(&parsed[0].2, &format!("{room}@{seq}"));
            prop_assert_eq!(parsed[0].1.len(), json.len());
            prop_assert!(without_id(&event, &room, seq).ends_with(b"\n"));
        }

        /// Nothing a client sends as `Last-Event-ID` panics the parser.
        #[test]
        fn any_header_parses_or_is_refused(value in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_last_event_id(&value);
        }
    }
}
