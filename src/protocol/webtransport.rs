//! The server's side of WebTransport over HTTP/3, as bytes (no I/O): what a
//! shard writes on a browser's connection and how it reads what the browser
//! sends. The encodings are `web-transport-proto`'s; this module only picks
//! the ones a subscriber session needs and parses stream prefixes
//! incrementally, since a shard sees stream data in whatever pieces QUIC
//! delivers them.
//!
//! A session, in order: our control stream (type 0x00, SETTINGS with
//! WebTransport on); the browser's control and QPACK streams, read and
//! discarded; the extended CONNECT request, a HEADERS frame on the browser's
//! first bidirectional stream, answered on that stream; then our
//! unidirectional stream (type 0x54, the session id) with the subscriber's
//! frames, and the browser's own 0x54 stream with its pings. The session
//! ends with the `CLOSE_WEBTRANSPORT_SESSION` capsule on the CONNECT stream.

use bytes::{Buf, Bytes, BytesMut};
use url::Url;
use web_transport_proto::{Capsule, ConnectRequest, ConnectResponse, Frame, Settings, StreamUni, VarInt};

/// The most a CONNECT request's bytes may take before its HEADERS frame ends.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Our control stream's whole content: its type and our SETTINGS (one session).
pub fn control_stream() -> Bytes {
    let mut settings = Settings::default();
    settings.enable_webtransport(1);
    let mut buf = BytesMut::new();
    settings.encode(&mut buf);
    buf.freeze()
}

/// The answer to a CONNECT request with `status` (200 accepts the session).
pub fn connect_response(status: u16) -> Bytes {
    let status = web_transport_proto::http::StatusCode::from_u16(status).expect("a valid status");
    let mut buf = BytesMut::new();
    ConnectResponse::new(status).encode(&mut buf).expect("a status and a fixed header encode");
    buf.freeze()
}

/// The prefix of the server's unidirectional stream in session `session`.
pub fn uni_stream_header(session: u64) -> Bytes {
    let mut buf = BytesMut::new();
    StreamUni::WEBTRANSPORT.encode(&mut buf);
    varint(session).encode(&mut buf);
    buf.freeze()
}

/// `CLOSE_WEBTRANSPORT_SESSION` with `code` and `reason`, in the DATA frame
/// that carries capsules on the CONNECT stream (RFC 9297 §3.2).
pub fn close_capsule(code: u32, reason: &str) -> Bytes {
    let mut capsule = Vec::new();
    Capsule::CloseWebTransportSession { code, reason: reason.to_owned() }.encode(&mut capsule);
    let mut buf = BytesMut::new();
    Frame::DATA.encode(&mut buf);
    varint(capsule.len() as u64).encode(&mut buf);
    buf.extend_from_slice(&capsule);
    buf.freeze()
}

/// The QUIC application close code that carries WebTransport code `code`.
pub fn connection_close_code(code: u32) -> u64 {
    web_transport_proto::error_to_http3(code)
}

fn varint(value: u64) -> VarInt {
    VarInt::from_u64(value).expect("stream ids and lengths are below 2^62")
}

/// What a browser's unidirectional stream turned out to be from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniKind {
    /// Its pings, in session `session`.
    WebTransport { session: u64 },
    /// Control, QPACK or anything else: read and discarded.
    Other,
}

/// Reads a unidirectional stream's prefix from pieces: the stream type, and
/// for a WebTransport stream the session id.
#[derive(Debug, Default)]
pub struct UniPrefix {
    seen: Vec<u8>,
}

impl UniPrefix {
    /// Adds `input`; once the prefix is whole, its kind and the bytes of
    /// `input` after it. A prefix is at most 16 bytes, so what is kept is too.
    pub fn push(&mut self, input: &[u8]) -> Option<(UniKind, usize)> {
        let before = self.seen.len();
        self.seen.extend_from_slice(&input[..input.len().min(16 - before)]);
        let mut rest = &self.seen[..];
        let kind = StreamUni::decode(&mut rest).ok()?;
        let kind = if kind == StreamUni::WEBTRANSPORT {
            UniKind::WebTransport { session: VarInt::decode(&mut rest).ok()?.into_inner() }
        } else {
            UniKind::Other
        };
        let used = self.seen.len() - rest.len();
        Some((kind, used - before))
    }
}

/// Why a CONNECT request was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request is over {MAX_REQUEST_BYTES} bytes")]
    TooBig,
    #[error("not a WebTransport CONNECT request: {0}")]
    Malformed(String),
}

/// Collects a CONNECT stream's bytes until its HEADERS frame is whole,
/// skipping frames of other types before it (GREASE).
#[derive(Debug, Default)]
pub struct RequestReader {
    buf: Vec<u8>,
}

impl RequestReader {
    /// Adds `input`; the request's URL once its HEADERS frame is whole.
    pub fn push(&mut self, input: &[u8]) -> Result<Option<Url>, RequestError> {
        if self.buf.len() + input.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooBig);
        }
        self.buf.extend_from_slice(input);
        loop {
            let mut rest = &self.buf[..];
            let Ok(kind) = VarInt::decode(&mut rest) else { return Ok(None) };
            let Ok(length) = VarInt::decode(&mut rest) else { return Ok(None) };
            let header = self.buf.len() - rest.len();
            let Some(end) = usize::try_from(length.into_inner()).ok().and_then(|l| l.checked_add(header)) else {
                return Err(RequestError::TooBig);
            };
            if end > MAX_REQUEST_BYTES {
                return Err(RequestError::TooBig);
            }
            if self.buf.len() < end {
                return Ok(None);
            }
            if Frame(kind) != Frame::HEADERS {
                self.buf.drain(..end);
                continue;
            }
            let mut frame = &self.buf[..end];
            let request = ConnectRequest::decode(&mut frame).map_err(|e| RequestError::Malformed(e.to_string()))?;
            debug_assert!(!frame.has_remaining());
            return Ok(Some(request.url));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request_bytes(url: &str) -> Vec<u8> {
        let mut buf = BytesMut::new();
        ConnectRequest::new(Url::parse(url).unwrap()).encode(&mut buf).unwrap();
        buf.to_vec()
    }

    #[test]
    fn a_request_after_a_grease_frame_is_read() {
        let mut bytes = vec![0x21, 2, 9, 9]; // GREASE frame 0x21, two bytes
        bytes.extend(request_bytes("https://h:1/v1/apps/demo/wt?room=gifts"));
        let url = RequestReader::default().push(&bytes).unwrap().unwrap();
        assert_eq!(url.path(), "/v1/apps/demo/wt");
        assert_eq!(url.query(), Some("room=gifts"));
    }

    #[test]
    fn a_request_that_never_ends_is_refused_at_the_limit() {
        let mut reader = RequestReader::default();
        // HEADERS with a declared length past the limit.
        let mut head = BytesMut::new();
        Frame::HEADERS.encode(&mut head);
        varint(MAX_REQUEST_BYTES as u64).encode(&mut head);
        assert_eq!(reader.push(&head), Err(RequestError::TooBig));
        let mut reader = RequestReader::default();
        assert_eq!(reader.push(&vec![0x21; MAX_REQUEST_BYTES + 1]), Err(RequestError::TooBig));
    }

    #[test]
    fn a_non_webtransport_request_is_malformed() {
        // A HEADERS frame whose field section is garbage.
        assert!(matches!(RequestReader::default().push(&[0x01, 2, 0xff, 0xff]), Err(RequestError::Malformed(_))));
    }

    #[test]
    fn the_server_encodings_decode_as_the_client_reads_them() {
        let response = connect_response(200);
        assert!(ConnectResponse::decode(&mut &response[..]).is_ok());
        assert!(ConnectResponse::decode(&mut &connect_response(404)[..]).is_err(), "a 404 is not accepted");
        let settings = Settings::decode(&mut &control_stream()[..]).unwrap();
        assert!(settings.supports_webtransport() > 0);
        let close = close_capsule(1009, "frame too big");
        let mut rest = &close[..];
        assert_eq!(Frame::decode(&mut rest).unwrap(), Frame::DATA);
        let length = VarInt::decode(&mut rest).unwrap().into_inner() as usize;
        assert_eq!(length, rest.len());
        let capsule = Capsule::decode(&mut rest).unwrap();
        assert_eq!(capsule, Capsule::CloseWebTransportSession { code: 1009, reason: "frame too big".into() });
        assert_eq!(web_transport_proto::error_from_http3(connection_close_code(1009)), Some(1009));
    }

    proptest! {
        /// Any split of a request into pieces reads the same URL, once.
        #[test]
        fn any_split_of_a_request_reads_it(cuts in proptest::collection::vec(0usize..200, 0..6)) {
            let bytes = request_bytes("https://localhost:4433/v1/apps/demo/wt?room=gifts%402&room=b");
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            points.sort_unstable();
            let mut reader = RequestReader::default();
            let mut start = 0;
            let mut read = None;
            for point in points.into_iter().chain([bytes.len()]) {
                if let Some(url) = reader.push(&bytes[start..point]).unwrap() {
                    prop_assert!(read.is_none());
                    prop_assert_eq!(point, bytes.len(), "whole only with its last byte");
                    read = Some(url);
                }
                start = point;
            }
            let url = read.unwrap();
            prop_assert_eq!(url.query(), Some("room=gifts%402&room=b"));
        }

        /// Any split of a stream prefix finds its kind and where the data starts.
        #[test]
        fn any_split_of_a_uni_prefix_reads_it(session in 0u64..(1 << 40), split in 0usize..32, data in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = uni_stream_header(session).to_vec();
            let prefix = bytes.len();
            bytes.extend(&data);
            let split = split % (bytes.len() + 1);
            let mut reader = UniPrefix::default();
            let (kind, offset) = match reader.push(&bytes[..split]) {
                Some((kind, offset)) => (kind, offset),
                None => {
                    prop_assert!(split < prefix);
                    let (kind, offset) = reader.push(&bytes[split..]).unwrap();
                    (kind, offset + split)
                }
            };
            prop_assert_eq!(kind, UniKind::WebTransport { session });
            prop_assert_eq!(offset, prefix);
        }
    }
}
