//! The wire: subscriber messages and their two framings, with no sockets in sight.
//!
//! Everything here is pure so it can be unit-tested, property-tested and fuzzed
//! on its own. `messages` writes the contract's JSON objects (§3); `ws` is the
//! RFC 6455 framing (server frames out, masked client frames in);
//! `handshake` its opening handshake as the subscribe endpoint checks it; `quic` is the
//! 4-byte length prefix of §5 with the QUIC listener's ALPNs and the certificate
//! fingerprint clients pin; `frames` encodes a broadcast once in both framings;
//! `close` is the one table of close codes.

pub mod close;
pub mod frames;
pub mod handshake;
pub mod messages;
pub mod quic;
pub mod webtransport;
pub mod ws;

use bytes::Bytes;

pub use frames::Frames;

/// How a transport frames one JSON message. The fan-out pipeline encodes each
/// broadcast once per framing and shares the resulting `Bytes` among subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One unmasked WebSocket text frame.
    WebSocket,
    /// A 4-byte big-endian length, then the JSON (contract §5).
    Quic,
}

impl Framing {
    /// Frames one JSON message. Allocates once; meant for per-connection messages
    /// (welcome, lagged, closing), never for per-delivery work.
    pub fn frame(self, json: &[u8]) -> Bytes {
        match self {
            Framing::WebSocket => ws::text_frame(json),
            Framing::Quic => quic::frame(json),
        }
    }
}
