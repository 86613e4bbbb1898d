//! A broadcast message in every framing, encoded once: the JSON written once,
//! then each transport's frame around it (WebSocket, QUIC, SSE) (`Bytes` to share among subscribers).
//! Pure: the fan-out, the tests and the load harness's ceiling all encode here.

use bytes::{BufMut, Bytes, BytesMut};

use super::deflate::Compressor;
use super::{Framing, messages, quic, sse, ws};

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
}

impl Frames {
    /// Encodes `{"type":"broadcast",…}` once and frames it for each transport.
    /// The JSON is written after room reserved for the WebSocket header, so that
    /// frame costs no copy; the QUIC frame is one copy per broadcast.
    pub fn encode(room: &str, seq: u64, ts_ms: u64, data: &str) -> Frames {
        Frames::encode_as("broadcast", room, seq, ts_ms, None, data)
    }

    /// [`Frames::encode`] of a broadcast with a Pusher `event` name, when it has one.
    pub fn encode_event(room: &str, seq: u64, ts_ms: u64, event: Option<&str>, data: &str) -> Frames {
        Frames::encode_as("broadcast", room, seq, ts_ms, event, data)
    }

    /// [`Frames::encode`] with another message `type` (`sticky`).
    pub fn encode_as(kind: &str, room: &str, seq: u64, ts_ms: u64, event: Option<&str>, data: &str) -> Frames {
        let capacity = ws::MAX_HEADER_LEN + 80 + room.len() + data.len() + event.map_or(0, str::len);
        let mut buf = BytesMut::with_capacity(capacity);
        buf.put_bytes(0, ws::MAX_HEADER_LEN);
        messages::write_numbered(&mut buf, kind, room, seq, ts_ms, event, data);
        let json = &buf[ws::MAX_HEADER_LEN..];
        let quic = quic::frame(json);
        // Made for every broadcast: a member may join while it is encoded, and
        // an `EventSource` has no frame to fall back on.
        let sse = if kind == "broadcast" { sse::broadcast_event(json, room, seq) } else { sse::event(json) };
        let websocket = ws::finish_reserved(ws::opcode::TEXT, buf);
        Frames { websocket, quic, websocket_deflated: None, sse }
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
        }
    }

    /// Bytes held by all the frames.
    pub fn bytes(&self) -> usize {
        self.websocket.len() + self.quic.len() + self.sse.len() + self.websocket_deflated.as_ref().map_or(0, Bytes::len)
    }
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
}
