//! A broadcast message in every framing, encoded once: the JSON written once,
//! then each transport's frame around it (WebSocket, QUIC, SSE) (`Bytes` to share among subscribers).
//! Pure: the fan-out, the tests and the load harness's ceiling all encode here.

use bytes::{BufMut, Bytes, BytesMut};

use super::deflate::Compressor;
use super::{Framing, messages, pusher, quic, sse, ws};

/// The same message in every framing, each a complete frame ready for a socket.
#[derive(Debug, Clone)]
pub struct Frames {
    pub websocket: Bytes,
    pub quic: Bytes,
    /// The WebSocket frame compressed (`permessage-deflate`), for the
    /// connections that negotiated it; made only when some did and the
    /// message is large enough to gain from it.
    pub websocket_deflated: Option<Bytes>,
    /// One Server-Sent Event (`protocol::sse`); a broadcast's ends with its `id:` line.
    pub sse: Bytes,
    /// The Pusher channel event as one WebSocket text frame (`protocol::pusher`).
    pub pusher: Bytes,
}

impl Frames {
    /// Encodes `{"type":"broadcast",…}` once and frames it for each transport.
    /// The JSON is written after room reserved for the WebSocket header, so that
    /// frame costs no copy; the QUIC frame is one copy per broadcast.
    pub fn encode(room: &str, seq: u64, ts_ms: u64, data: &str) -> Frames {
        Frames::encode_as("broadcast", room, seq, ts_ms, PusherEvent::default(), data)
    }

    /// [`Frames::encode`] of a broadcast with a Pusher `event` name, when it has one.
    pub fn encode_event(room: &str, seq: u64, ts_ms: u64, event: PusherEvent<'_>, data: &str) -> Frames {
        Frames::encode_as("broadcast", room, seq, ts_ms, event, data)
    }

    /// [`Frames::encode`] with another message `type` (`sticky`, which
    /// Pusher clients get as `bullhorn:sticky`).
    pub fn encode_as(kind: &str, room: &str, seq: u64, ts_ms: u64, event: PusherEvent<'_>, data: &str) -> Frames {
        let PusherEvent { name: event, data_is_text } = event;
        let capacity = ws::MAX_HEADER_LEN + 80 + room.len() + data.len() + event.map_or(0, str::len);
        let mut buf = BytesMut::with_capacity(capacity);
        buf.put_bytes(0, ws::MAX_HEADER_LEN);
        messages::write_numbered(&mut buf, kind, room, seq, ts_ms, event, data);
        let json = &buf[ws::MAX_HEADER_LEN..];
        let quic = quic::frame(json);
        // Made for every broadcast: a member may join while it is encoded, and
        // an `EventSource` has no frame to fall back on.
        let sse = if kind == "broadcast" { sse::broadcast_event(json, room, seq) } else { sse::event(json) };
        let pusher_name = match kind {
            "broadcast" => event.unwrap_or("broadcast"),
            _ => "bullhorn:sticky",
        };
        let pusher =
            ws::text_frame(&pusher::channel_event(pusher_name, room, &pusher::data_string(data, data_is_text)));
        let websocket = ws::finish_reserved(ws::opcode::TEXT, buf);
        Frames { websocket, quic, websocket_deflated: None, sse, pusher }
    }

    /// Adds the compressed WebSocket frame (once per broadcast, whatever the
    /// number of subscribers that share it).
    pub fn with_deflated(mut self, compressor: &mut Compressor) -> Frames {
        let json = &self.quic[4..];
        self.websocket_deflated = Some(compressor.text_frame(json));
        self
    }

    /// The JSON all the frames carry.
    pub fn json(&self) -> &[u8] {
        &self.quic[4..]
    }

    /// A control message (one per broadcast, not per delivery) in both framings.
    pub fn control(json: &[u8]) -> Frames {
        Frames {
            websocket: ws::text_frame(json),
            quic: quic::frame(json),
            websocket_deflated: None,
            sse: sse::event(json),
            pusher: ws::text_frame(&pusher::native_as_event(json)),
        }
    }

    /// One frame standing for every framing: for tests and fuzz targets that
    /// look at queues, not at wire formats.
    pub fn same_in_every_framing(frame: Bytes) -> Frames {
        Frames {
            websocket: frame.clone(),
            quic: frame.clone(),
            websocket_deflated: None,
            sse: frame.clone(),
            pusher: frame,
        }
    }

    /// The frame for one framing: a reference the caller clones (a refcount bump).
    #[inline]
    pub fn get(&self, framing: Framing) -> &Bytes {
        match framing {
            Framing::WebSocket => &self.websocket,
            Framing::WebSocketDeflate => self.websocket_deflated.as_ref().unwrap_or(&self.websocket),
            Framing::Quic => &self.quic,
            Framing::Sse => &self.sse,
            Framing::Pusher => &self.pusher,
        }
    }

    /// Bytes held by all the frames.
    pub fn bytes(&self) -> usize {
        self.websocket.len()
            + self.quic.len()
            + self.sse.len()
            + self.pusher.len()
            + self.websocket_deflated.as_ref().map_or(0, Bytes::len)
    }
}

/// What the Pusher framing of a broadcast needs beyond the native message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PusherEvent<'a> {
    /// The event name Pusher clients bind (`"broadcast"` without one).
    pub name: Option<&'a str>,
    /// `data` is a JSON string holding a Pusher-triggered data string that
    /// was not JSON: Pusher clients get that string back, not its JSON text.
    pub data_is_text: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_framings_carry_the_same_json() {
        let f = Frames::encode("gifts", 7, 1, r#"{"text":"hi"}"#);
        let ws_json = &f.websocket[2..];
        let quic_json = &f.quic[4..];
        assert_eq!(ws_json, quic_json);
        assert_eq!(u32::from_be_bytes(f.quic[..4].try_into().unwrap()) as usize, quic_json.len());
        assert_eq!(f.websocket[1] as usize, ws_json.len());
        assert_eq!(f.get(Framing::WebSocketDeflate), &f.websocket, "no compressed frame: the plain one");
        let json = quic_json.to_vec();
        let f = f.with_deflated(&mut Compressor::default());
        let deflated = f.get(Framing::WebSocketDeflate);
        assert_eq!(deflated[0] & ws::RSV1, ws::RSV1);
        assert_eq!(super::super::deflate::inflate(&deflated[2..], 1 << 16).unwrap(), json);
    }

    fn pusher_message(frames: &Frames) -> serde_json::Value {
        let header = if frames.pusher[1] < 126 { 2 } else { 4 };
        serde_json::from_slice(&frames.pusher[header..]).unwrap()
    }

    #[test]
    fn pusher_clients_get_a_channel_event_with_the_data_string() {
        let event = PusherEvent { name: Some("gift"), data_is_text: false };
        let native = pusher_message(&Frames::encode_event("gifts", 7, 1, event, r#"{"n":1}"#));
        assert_eq!(native, serde_json::json!({"event":"gift","channel":"gifts","data":"{\"n\":1}"}));
        let text = PusherEvent { name: Some("gift"), data_is_text: true };
        assert_eq!(pusher_message(&Frames::encode_event("gifts", 8, 1, text, r#""hi there""#))["data"], "hi there");
        assert_eq!(pusher_message(&Frames::encode("gifts", 9, 1, "1"))["event"], "broadcast", "no event: broadcast");
        let pinned = Frames::encode_as("sticky", "gifts", 9, 1, PusherEvent::default(), "1");
        assert_eq!(pusher_message(&pinned)["event"], "bullhorn:sticky");
        let lagged = pusher_message(&Frames::control(&messages::lagged("gifts", 3, messages::LagReason::Slow)));
        assert_eq!((lagged["event"].as_str(), lagged["channel"].as_str()), (Some("bullhorn:lagged"), Some("gifts")));
    }
}
