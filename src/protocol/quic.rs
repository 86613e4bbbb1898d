//! QUIC stream framing (contract §5): a 4-byte unsigned big-endian length, then
//! that many bytes of UTF-8 JSON, in both directions; the listener's ALPNs;
//! and the certificate fingerprint clients pin (hex SHA-256).

use bytes::{BufMut, Bytes, BytesMut};

/// ALPN of the native subscriber protocol (contract §5).
pub const ALPN: &[u8] = b"bullhorn/1";
/// ALPN of HTTP/3, which WebTransport sessions negotiate on the same listener.
pub const WEBTRANSPORT_ALPN: &[u8] = b"h3";

/// Lower-case hex of the SHA-256 of a certificate's DER: what the server
/// writes to `dev-cert.sha256` and clients pin.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Frames one JSON message.
pub fn frame(json: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + json.len());
    buf.put_u32(json.len() as u32);
    buf.put_slice(json);
    buf.freeze()
}

/// The largest frame a client may send (contract §3).
pub const MAX_CLIENT_FRAME: usize = 4096;

/// Why a client's QUIC stream bytes cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client frame of {0} bytes is over the 4 KiB limit")]
pub struct FrameTooBig(pub usize);

/// Incremental decoder of length-prefixed frames. Holds no memory until
/// bytes arrive, and never more than one frame plus what one read brought.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    limit: usize,
}

impl Default for Decoder {
    /// A decoder for client frames: at most [`MAX_CLIENT_FRAME`] bytes each.
    fn default() -> Self {
        Decoder::with_limit(MAX_CLIENT_FRAME)
    }
}

impl Decoder {
    /// A decoder refusing frames over `limit` bytes (clients read server
    /// frames with the server's payload limit plus the envelope).
    pub fn with_limit(limit: usize) -> Decoder {
        Decoder { buf: Vec::new(), limit }
    }

    /// Appends `input` and calls `on_frame` for each complete frame.
    pub fn decode(&mut self, input: &[u8], mut on_frame: impl FnMut(&[u8])) -> Result<(), FrameTooBig> {
        self.buf.extend_from_slice(input);
        let mut pos = 0;
        while self.buf.len() - pos >= PREFIX_LEN {
            let len = u32::from_be_bytes(self.buf[pos..pos + PREFIX_LEN].try_into().expect("4 bytes")) as usize;
            if len > self.limit {
                return Err(FrameTooBig(len));
            }
            if self.buf.len() - pos < PREFIX_LEN + len {
                break;
            }
            on_frame(&self.buf[pos + PREFIX_LEN..pos + PREFIX_LEN + len]);
            pos += PREFIX_LEN + len;
        }
        self.buf.drain(..pos);
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// The first frame a QUIC subscriber sends (contract §5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Hello {
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub rooms: Vec<String>,
}

/// Parses a hello frame; the message says what is wrong.
pub fn parse_hello(frame: &[u8]) -> Result<Hello, String> {
    let hello: Hello = serde_json::from_slice(frame).map_err(|e| format!("invalid hello: {e}"))?;
    if hello.kind != "hello" {
        return Err(format!("the first frame must be a hello, not {:?}", hello.kind));
    }
    Ok(hello)
}

/// `{"type":"error","code":…,"message":…}`.
pub fn error_message(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "error", "code": code, "message": message})).expect("serializable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_are_length_prefixed() {
        let f = frame(br#"{"type":"pong"}"#);
        assert_eq!(&f[..4], &15u32.to_be_bytes());
        assert_eq!(&f[4..], br#"{"type":"pong"}"#);
    }

    #[test]
    fn oversized_lengths_are_refused_from_the_prefix() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&4097u32.to_be_bytes(), |_| {}), Err(FrameTooBig(4097)));
        let mut d = Decoder::default();
        assert!(d.decode(&frame(&[b'x'; 4096]), |f| assert_eq!(f.len(), 4096)).is_ok());
    }

    #[test]
    fn hello_is_validated() {
        let h = parse_hello(br#"{"type":"hello","app":"demo","rooms":["gifts","b@4"]}"#).unwrap();
        assert_eq!(h.rooms, ["gifts", "b@4"]);
        assert!(parse_hello(br#"{"type":"ping"}"#).is_err());
        assert!(parse_hello(br#"{"type":"ping","app":"a","rooms":[]}"#).is_err());
        assert!(parse_hello(b"nope").is_err());
    }

    proptest! {
        /// Frames cut anywhere decode to the same frames.
        #[test]
        fn split_anywhere(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..10), cut in 1usize..50) {
            let wire: Vec<u8> = frames.iter().flat_map(|f| frame(f).to_vec()).collect();
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.decode(chunk, |f| got.push(f.to_vec())).unwrap();
            }
            prop_assert_eq!(got, frames);
        }
    }
}
