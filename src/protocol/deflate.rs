//! `permessage-deflate` (RFC 7692, contract §10) as bullhorn speaks it: the
//! offer in a client's handshake, one compressed frame per broadcast that is
//! valid for every subscriber, and the inflating of what clients send.
//!
//! Sharing one compressed frame among subscribers needs no context takeover
//! on the server's side: each message is compressed on its own (the
//! compressor is reset per message), so the answer always says
//! `server_no_context_takeover`, which a server may add even when the client
//! did not ask (§7.1.1.1). It also says `client_no_context_takeover`, so what
//! clients send can be inflated one message at a time with no state kept per
//! connection. An offer this server cannot honour (a `server_max_window_bits`
//! below 15: the compressor's window is 32 KiB) or one the RFC calls invalid
//! (an unknown or repeated parameter, a bad value) is declined; the next offer
//! is tried, and with none left the connection goes without the extension.

use bytes::{BufMut, Bytes, BytesMut};
use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::ws;

/// The extension as the 101 answers it ...
pub const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
/// ... and when the accepted offer named `server_max_window_bits` (RFC 7692 §7.1.2.1: accepted by echoing it).
pub const ANSWER_WITH_WINDOW: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15";

/// How the 101 answers the offer, if one is accepted.
pub fn answer_offer<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<&'static str> {
    values.filter_map(|value| std::str::from_utf8(value).ok()).flat_map(|value| value.split(',')).find_map(|offer| {
        acceptable(offer).then(|| {
            let names_window =
                offer.split(';').any(|p| p.trim().to_ascii_lowercase().starts_with("server_max_window_bits"));
            if names_window { ANSWER_WITH_WINDOW } else { ANSWER }
        })
    })
}

/// What a sync flush ends with; RFC 7692 §7.2.1 takes it off the wire.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Deflate level: 1 is miniz's fastest; gift JSON is small and repetitive.
const LEVEL: u8 = 1;

/// True when one of the `Sec-WebSocket-Extensions` values (`headers`, as
/// sent, any number of them) holds a `permessage-deflate` offer this server accepts.
pub fn accepts_offer<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    answer_offer(values).is_some()
}

/// One offer: `permessage-deflate` and its parameters, each at most once.
fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate")) {
        return false;
    }
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            // Only the 32 KiB window this compressor uses.
            "server_max_window_bits" if value == Some("15") => 2,
            "client_max_window_bits" if value.is_none_or(|v| window_bits(v).is_some()) => 3,
            _ => return false,
        };
        if std::mem::replace(&mut seen[index], true) {
            return false;
        }
    }
    true
}

fn window_bits(value: &str) -> Option<u8> {
    let bits: u8 = value.parse().ok()?;
    (value.len() <= 2 && (8..=15).contains(&bits)).then_some(bits)
}

/// Compresses whole messages into frames, each on its own (no context takeover).
pub struct Compressor {
    state: Box<CompressorOxide>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Default for Compressor {
    fn default() -> Self {
        let mut state = Box::<CompressorOxide>::default();
        state.set_format_and_level(miniz_oxide::DataFormat::Raw, LEVEL);
        Compressor { state, out: Vec::new() }
    }
}

impl Compressor {
    /// One final text frame with RSV1 set around `json` compressed.
    pub fn text_frame(&mut self, json: &[u8]) -> Bytes {
        self.state.reset();
        self.out.clear();
        self.out.resize(json.len() + json.len() / 8 + 64, 0);
        let mut written = 0;
        let mut read = 0;
        loop {
            let (status, used, wrote) =
                compress(&mut self.state, &json[read..], &mut self.out[written..], TDEFLFlush::Sync);
            read += used;
            written += wrote;
            assert!(status == TDEFLStatus::Okay, "deflate into memory cannot fail: {status:?}");
            if read == json.len() && written < self.out.len() {
                break;
            }
            let grown = self.out.len() * 2;
            self.out.resize(grown, 0);
        }
        let compressed = &self.out[..written];
        let payload = compressed.strip_suffix(&SYNC_TAIL).unwrap_or(compressed);
        let mut header = [0u8; ws::MAX_HEADER_LEN];
        let used = ws::write_header(ws::opcode::TEXT, payload.len(), &mut header);
        let mut frame = BytesMut::with_capacity(used + payload.len());
        frame.put_slice(&header[ws::MAX_HEADER_LEN - used..]);
        frame[0] |= ws::RSV1;
        frame.put_slice(payload);
        frame.freeze()
    }
}

/// Why a client's compressed message cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooBig,
    /// It is not a valid deflate stream.
    Invalid,
}

/// Inflates one message a client sent compressed (no context takeover),
/// refusing it as soon as it would grow past `limit` bytes.
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    Inflater::default().inflate(payload, limit).map(<[u8]>::to_vec)
}

/// Inflates messages one after another with one state and one buffer, for a
/// reader of many (a load client); each message is still inflated on its own.
#[derive(Default)]
pub struct Inflater {
    state: Box<DecompressorOxide>,
    input: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Inflater {
    /// [`inflate`], into this inflater's buffer.
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<&[u8], InflateError> {
        self.state.init();
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&SYNC_TAIL);
        // One byte of room past the limit tells "exactly the limit" from "over it".
        self.out.resize(limit + 1, 0);
        // A sync-flushed message has no final block: "more input" is its normal end.
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
        let (status, read, written) = decompress(&mut self.state, &self.input, &mut self.out[..=limit], 0, flags);
        match status {
            _ if written > limit => Err(InflateError::TooBig),
            TINFLStatus::HasMoreOutput => Err(InflateError::TooBig),
            TINFLStatus::Done => Ok(&self.out[..written]),
            TINFLStatus::NeedsMoreInput if read == self.input.len() => Ok(&self.out[..written]),
            _ => Err(InflateError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer(values: &[&str]) -> bool {
        accepts_offer(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn offers_browsers_and_libraries_send_are_accepted() {
        assert!(offer(&["permessage-deflate; client_max_window_bits"])); // Chromium, Firefox
        assert!(offer(&["permessage-deflate; server_max_window_bits=15; client_max_window_bits=15"]));
        assert!(offer(&["permessage-deflate; client_no_context_takeover; server_no_context_takeover"]));
        assert!(offer(&["permessage-deflate"]));
        assert!(offer(&["x-webkit-deflate-frame", "PerMessage-Deflate; client_max_window_bits=\"10\""]));
    }

    #[test]
    fn offers_the_rfc_calls_invalid_or_this_server_cannot_honour_are_declined() {
        assert!(!offer(&[]));
        assert!(!offer(&["x-webkit-deflate-frame"]));
        assert!(!offer(&["permessage-deflate; server_max_window_bits=10"]), "a smaller window than ours");
        assert!(!offer(&["permessage-deflate; client_max_window_bits=7"]));
        assert!(!offer(&["permessage-deflate; client_max_window_bits=015"]));
        assert!(!offer(&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"]));
        assert!(!offer(&["permessage-deflate; client_no_context_takeover=1"]));
        assert!(!offer(&["permessage-deflate; unknown"]));
        // A declined offer falls through to the next one.
        assert!(offer(&["permessage-deflate; server_max_window_bits=9, permessage-deflate"]));
    }

    #[test]
    fn a_window_the_client_named_is_echoed_in_the_answer() {
        let answer = |v: &str| answer_offer(std::iter::once(v.as_bytes()));
        assert_eq!(answer("permessage-deflate; client_max_window_bits"), Some(ANSWER));
        assert_eq!(answer("permessage-deflate; server_max_window_bits=15"), Some(ANSWER_WITH_WINDOW));
        assert_eq!(answer("permessage-deflate; server_max_window_bits=9, permessage-deflate"), Some(ANSWER));
        assert_eq!(answer("permessage-deflate; server_max_window_bits=9"), None);
    }

    #[test]
    fn a_compressed_frame_has_rsv1_and_inflates_to_the_message() {
        let json = br#"{"type":"broadcast","room":"gifts","seq":1,"ts":1,"data":{"text":"Ana sent a rocket","n":1}}"#;
        let frame = Compressor::default().text_frame(&json.repeat(4));
        assert_eq!(frame[0], 0x80 | ws::RSV1 | ws::opcode::TEXT, "final, RSV1, text");
        let (len, header) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(frame.len(), header + len);
        assert!(len < json.len() * 4 / 2, "repetitive JSON shrinks");
        assert_eq!(inflate(&frame[header..], 4096).unwrap(), json.repeat(4));
    }

    #[test]
    fn inflating_stops_at_the_limit_and_refuses_garbage() {
        let frame = Compressor::default().text_frame(&[b'a'; 10_000]);
        assert!(frame[1] < 126, "10,000 times the same byte compresses to a few");
        let payload = &frame[2..];
        assert_eq!(inflate(payload, 4096), Err(InflateError::TooBig), "a small message that inflates large");
        assert_eq!(inflate(payload, 10_000).unwrap().len(), 10_000);
        assert_eq!(inflate(&[0xff, 0xff, 0xff], 4096), Err(InflateError::Invalid));
        // One inflater, message after message, each on its own.
        let mut inflater = Inflater::default();
        let mut compressor = Compressor::default();
        for text in [&b"first"[..], b"second, longer", b""] {
            let frame = compressor.text_frame(text);
            assert_eq!(inflater.inflate(&frame[2..], 64).unwrap(), text);
        }
        assert_eq!(inflater.inflate(payload, 4096), Err(InflateError::TooBig));
        assert_eq!(inflater.inflate(&compressor.text_frame(b"again")[2..], 64).unwrap(), b"again");
    }

    proptest! {
        #[test]
        fn every_message_survives_compression(json in proptest::collection::vec(any::<u8>(), 0..5_000)) {
            let mut compressor = Compressor::default();
            for _ in 0..2 {
                // Twice on one compressor: no context is carried from one message to the next.
                let frame = compressor.text_frame(&json);
                let header = match frame[1] { 127 => 10, 126 => 4, _ => 2 };
                prop_assert_eq!(inflate(&frame[header..], 5_000).unwrap(), json.clone());
            }
        }

        #[test]
        fn any_offer_text_is_judged_without_panicking(value in ".{0,200}") {
            let _ = accepts_offer(std::iter::once(value.as_bytes()));
        }
    }
}
