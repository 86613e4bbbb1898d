//! The wire: subscriber messages and their two framings, with no sockets in sight.
//!
//! Everything here is pure so it can be unit-tested, property-tested and fuzzed
//! on its own. `messages` writes the contract's JSON objects (§3); `ws` is the
//! RFC 6455 framing (server frames out, masked client frames in);
//! `handshake` its opening handshake as the subscribe endpoint checks it; `quic` is the
//! 4-byte length prefix of §5 with the QUIC listener's ALPNs and the certificate
//! fingerprint clients pin; `frames` encodes a broadcast once in every framing; `sse` is Server-Sent
//! Events; `pusher` the Pusher Channels protocol's messages;
//! `close` is the one table of close codes.

pub mod close;
pub mod deflate;
pub mod frames;
pub mod handshake;
pub mod messages;
pub mod pusher;
pub mod quic;
pub mod sse;
pub mod webtransport;
pub mod ws;

use bytes::Bytes;

pub use frames::Frames;

/// The app of a subscribe path, `/v1/apps/{app}/{endpoint}` (`ws`, `wt`).
pub fn subscribe_app<'a>(path: &'a str, endpoint: &str) -> Option<&'a str> {
    let app = path.strip_prefix("/v1/apps/")?.strip_suffix(endpoint)?.strip_suffix('/')?;
    (!app.is_empty() && !app.contains('/')).then_some(app)
}

/// The rooms a subscribe URL's query names (`room=a&room=b@41`), decoded, in order.
pub fn rooms_in(query: Option<&str>) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "room")
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// How a transport frames one JSON message. The fan-out pipeline encodes each
/// broadcast once per framing and shares the resulting `Bytes` among subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One unmasked WebSocket text frame.
    WebSocket,
    /// The same, on a connection that negotiated `permessage-deflate`: a
    /// broadcast's frame is its shared compressed one when it has one.
    WebSocketDeflate,
    /// A 4-byte big-endian length, then the JSON (contract §5).
    Quic,
    /// One Server-Sent Event (`protocol::sse`): `event: <type>`, `data: <json>`.
    Sse,
    /// A Pusher Channels client's WebSocket (`protocol::pusher`): a broadcast
    /// is its channel event; the native protocol's own messages become
    /// `bullhorn:<type>` events on their room's channel.
    Pusher,
}

impl Framing {
    /// Frames one JSON message. Allocates once; meant for per-connection messages
    /// (welcome, lagged, closing), never for per-delivery work.
    pub fn frame(self, json: &[u8]) -> Bytes {
        match self {
            Framing::WebSocket | Framing::WebSocketDeflate => ws::text_frame(json),
            Framing::Quic => quic::frame(json),
            Framing::Sse => sse::event(json),
            Framing::Pusher => ws::text_frame(&pusher::native_as_event(json)),
        }
    }
}

#[cfg(test)]
mod subscribe_url_tests {
    use super::*;

    #[test]
    fn only_a_subscribe_path_names_an_app() {
        assert_eq!(subscribe_app("/v1/apps/demo/wt", "wt"), Some("demo"));
        assert_eq!(subscribe_app("/v1/apps/demo/ws", "ws"), Some("demo"));
        assert_eq!(subscribe_app("/v1/apps//wt", "wt"), None);
        assert_eq!(subscribe_app("/v1/apps/a/b/wt", "wt"), None);
        assert_eq!(subscribe_app("/v1/apps/demo/ws", "wt"), None);
        assert_eq!(subscribe_app("/v1/apps/demowt", "wt"), None);
        assert_eq!(subscribe_app("/", "wt"), None);
    }

    #[test]
    fn rooms_are_the_room_parameters_decoded() {
        assert_eq!(rooms_in(Some("room=a&x=1&room=b%4041")), vec!["a", "b@41"]);
        assert!(rooms_in(None).is_empty());
    }
}
