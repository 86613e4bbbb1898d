//! RFC 6455 framing: unmasked server frames out, masked client frames in.
//!
//! The server side only ever writes whole frames that were encoded before, so
//! encoding is a header in front of a payload. The client side is a small
//! incremental decoder: subscribers send almost nothing (`{"type":"ping"}`,
//! pings, pongs, close), so it keeps no buffer at all until a frame arrives in
//! pieces, and it refuses any frame or message over [`MAX_CLIENT_PAYLOAD`]
//! before reading its payload.

use bytes::{BufMut, Bytes, BytesMut};

/// The largest payload a client may send in one frame or one message (contract §3).
pub const MAX_CLIENT_PAYLOAD: usize = 4096;

/// Room a caller reserves in front of a payload so the header can be written in place.
pub const MAX_HEADER_LEN: usize = 10;

/// The largest client frame on the wire: header with mask, then payload.
pub const MAX_CLIENT_FRAME: usize = 14 + MAX_CLIENT_PAYLOAD;

/// Frame opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The first byte's RSV1 bit: a compressed message (`permessage-deflate`).
pub const RSV1: u8 = 0x40;

/// A server ping with an empty payload.
pub const PING_FRAME: &[u8] = &[0x80 | opcode::PING, 0];

/// Writes the header of a final, unmasked frame into the end of `out` and
/// returns how many bytes it used (2, 4 or 10).
pub fn write_header(opcode: u8, payload_len: usize, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let first = 0x80 | opcode;
    if payload_len < 126 {
        out[8] = first;
        out[9] = payload_len as u8;
        2
    } else if payload_len <= u16::MAX as usize {
        out[6] = first;
        out[7] = 126;
        out[8..10].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[0] = first;
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Turns a buffer that starts with [`MAX_HEADER_LEN`] reserved bytes followed by
/// a payload into one frame, without copying the payload.
pub fn finish_reserved(opcode: u8, mut buf: BytesMut) -> Bytes {
    debug_assert!(buf.len() >= MAX_HEADER_LEN);
    let payload_len = buf.len() - MAX_HEADER_LEN;
    let mut header = [0u8; MAX_HEADER_LEN];
    let used = write_header(opcode, payload_len, &mut header);
    let start = MAX_HEADER_LEN - used;
    buf[start..MAX_HEADER_LEN].copy_from_slice(&header[start..]);
    buf.freeze().slice(start..)
}

/// One frame around a copy of `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    buf.put_bytes(0, MAX_HEADER_LEN);
    buf.put_slice(payload);
    finish_reserved(opcode, buf)
}

/// One text frame around a copy of `json`.
pub fn text_frame(json: &[u8]) -> Bytes {
    frame(opcode::TEXT, json)
}

/// A close frame with a status code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    frame(opcode::CLOSE, &payload)
}

/// What a client sent, one complete frame or reassembled message at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// A close frame, with its status code when it carried one.
    Close(Option<u16>),
}

/// Why a client's bytes cannot be accepted. Each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame or message larger than {MAX_CLIENT_PAYLOAD} bytes")]
    TooBig,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl DecodeError {
    /// The close code the server answers this error with.
    pub fn close_code(&self) -> u16 {
        use super::close::ws_code;
        match self {
            DecodeError::TooBig => ws_code::TOO_BIG,
            DecodeError::Protocol(_) => ws_code::PROTOCOL_ERROR,
            DecodeError::InvalidUtf8 => ws_code::INVALID_PAYLOAD,
        }
    }
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragment {
    opcode: u8,
    /// Sent compressed (RSV1 on its first frame): inflated once whole.
    compressed: bool,
    data: Vec<u8>,
}

/// Incremental decoder of masked client frames.
///
/// Holds no heap memory while idle: `carry` only fills when a read ends inside
/// a frame, and it never grows past [`MAX_CLIENT_FRAME`].
#[derive(Debug, Default)]
pub struct Decoder {
    carry: Vec<u8>,
    fragment: Option<Box<Fragment>>,
    /// `permessage-deflate` was negotiated: a data message may come compressed.
    deflate: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for a connection that negotiated `permessage-deflate` (or not).
    pub fn with_deflate(deflate: bool) -> Self {
        Decoder { deflate, ..Self::default() }
    }

    /// Feeds freshly read bytes, calling `on_event` for each complete frame.
    /// `input` is unmasked in place. After an error the connection must close.
    pub fn decode(&mut self, input: &mut [u8], mut on_event: impl FnMut(ClientEvent<'_>)) -> Result<(), DecodeError> {
        let deflate = self.deflate;
        if self.carry.is_empty() {
            let used = parse_frames(input, deflate, &mut self.fragment, &mut on_event)?;
            self.carry.extend_from_slice(&input[used..]);
        } else {
            self.carry.extend_from_slice(input);
            let mut carry = std::mem::take(&mut self.carry);
            let used = parse_frames(&mut carry, deflate, &mut self.fragment, &mut on_event)?;
            carry.drain(..used);
            if carry.is_empty() {
                carry = Vec::new(); // give the memory back: idle connections hold none
            }
            self.carry = carry;
        }
        Ok(())
    }

    /// Bytes of a partial frame held until the rest arrives.
    pub fn buffered(&self) -> usize {
        self.carry.len()
    }

    /// True while part of a frame or message is buffered.
    pub fn is_mid_message(&self) -> bool {
        !self.carry.is_empty() || self.fragment.is_some()
    }
}

/// Parses as many complete frames as `buf` holds; returns the bytes consumed.
fn parse_frames(
    buf: &mut [u8],
    deflate: bool,
    fragment: &mut Option<Box<Fragment>>,
    on_event: &mut impl FnMut(ClientEvent<'_>),
) -> Result<usize, DecodeError> {
    let mut pos = 0;
    while let Some(frame) = parse_header(&buf[pos..], deflate)? {
        let start = pos + frame.header_len;
        let end = start + frame.payload_len;
        let payload = &mut buf[start..end];
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= frame.mask[i & 3];
        }
        dispatch(&frame, payload, fragment, on_event)?;
        pos = end;
    }
    Ok(pos)
}

#[derive(Debug)]
struct FrameHeader {
    fin: bool,
    /// RSV1: the message this frame starts is compressed.
    compressed: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// Reads one header; `None` until the whole frame is in `buf`. With
/// `deflate`, RSV1 may mark the first frame of a data message (RFC 7692 §6),
/// never a control frame or a continuation.
fn parse_header(buf: &[u8], deflate: bool) -> Result<Option<FrameHeader>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let compressed = b0 & RSV1 != 0;
    if b0 & 0x30 != 0 || compressed && !deflate {
        return Err(DecodeError::Protocol("reserved bits set without an extension"));
    }
    if compressed && !matches!(opcode, opcode::TEXT | opcode::BINARY) {
        return Err(DecodeError::Protocol("RSV1 is only for the first frame of a data message"));
    }
    let control = opcode & 0x08 != 0;
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {}
        _ => return Err(DecodeError::Protocol("reserved opcode")),
    }
    if b1 & 0x80 == 0 {
        return Err(DecodeError::Protocol("client frames must be masked"));
    }
    let len7 = (b1 & 0x7F) as usize;
    if control && (!fin || len7 > 125) {
        return Err(DecodeError::Protocol("control frames must be final and at most 125 bytes"));
    }
    let (payload_len, len_bytes) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            (usize::try_from(len).unwrap_or(usize::MAX), 8)
        }
        n => (n, 0),
    };
    if payload_len > MAX_CLIENT_PAYLOAD {
        return Err(DecodeError::TooBig);
    }
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len + payload_len {
        return Ok(None);
    }
    let mask = buf[header_len - 4..header_len].try_into().expect("4 bytes");
    Ok(Some(FrameHeader { fin, compressed, opcode, mask, header_len, payload_len }))
}

fn dispatch(
    frame: &FrameHeader,
    payload: &[u8],
    fragment: &mut Option<Box<Fragment>>,
    on_event: &mut impl FnMut(ClientEvent<'_>),
) -> Result<(), DecodeError> {
    match frame.opcode {
        opcode::PING => on_event(ClientEvent::Ping(payload)),
        opcode::PONG => on_event(ClientEvent::Pong),
        opcode::CLOSE => {
            let code = match payload.len() {
                0 => None,
                1 => return Err(DecodeError::Protocol("close payload of one byte")),
                _ => {
                    std::str::from_utf8(&payload[2..]).map_err(|_| DecodeError::InvalidUtf8)?;
                    Some(u16::from_be_bytes([payload[0], payload[1]]))
                }
            };
            on_event(ClientEvent::Close(code));
        }
        opcode::CONTINUATION => {
            let Some(partial) = fragment.as_mut() else {
                return Err(DecodeError::Protocol("continuation without a message"));
            };
            if partial.data.len() + payload.len() > MAX_CLIENT_PAYLOAD {
                return Err(DecodeError::TooBig);
            }
            partial.data.extend_from_slice(payload);
            if frame.fin {
                let whole = fragment.take().expect("checked above");
                emit_message(whole.opcode, whole.compressed, &whole.data, on_event)?;
            }
        }
        data_opcode => {
            if fragment.is_some() {
                return Err(DecodeError::Protocol("new message before the last one finished"));
            }
            if frame.fin {
                emit_message(data_opcode, frame.compressed, payload, on_event)?;
            } else {
                let data = payload.to_vec();
                *fragment = Some(Box::new(Fragment { opcode: data_opcode, compressed: frame.compressed, data }));
            }
        }
    }
    Ok(())
}

fn emit_message(
    opcode: u8,
    compressed: bool,
    payload: &[u8],
    on_event: &mut impl FnMut(ClientEvent<'_>),
) -> Result<(), DecodeError> {
    if compressed {
        // Inflated under the same limit as a plain message: a small frame cannot grow past it.
        let inflated = super::deflate::inflate(payload, MAX_CLIENT_PAYLOAD).map_err(|error| match error {
            super::deflate::InflateError::TooBig => DecodeError::TooBig,
            super::deflate::InflateError::Invalid => DecodeError::Protocol("compressed message is not valid deflate"),
        })?;
        return emit_message(opcode, false, &inflated, on_event);
    }
    if opcode == opcode::TEXT {
        std::str::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)?;
        on_event(ClientEvent::Text(payload));
    } else {
        on_event(ClientEvent::Binary(payload));
    }
    Ok(())
}

/// Test and fuzz helper: a masked client frame, as a browser would send it.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn collect(decoder: &mut Decoder, input: &[u8]) -> Result<Vec<Owned>, DecodeError> {
        let mut events = Vec::new();
        let mut input = input.to_vec();
        decoder.decode(&mut input, |event| {
            events.push(match event {
                ClientEvent::Text(t) => Owned::Text(t.to_vec()),
                ClientEvent::Binary(b) => Owned::Binary(b.to_vec()),
                ClientEvent::Ping(p) => Owned::Ping(p.to_vec()),
                ClientEvent::Pong => Owned::Pong,
                ClientEvent::Close(c) => Owned::Close(c),
            })
        })?;
        Ok(events)
    }

    fn server_payload(frame: &[u8]) -> (u8, &[u8]) {
        let len7 = frame[1] & 0x7F;
        let start = match len7 {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
        (frame[0], &frame[start..])
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let f = text_frame(&vec![b'x'; len]);
            assert_eq!(f.len(), header + len, "payload {len}");
            let (b0, payload) = server_payload(&f);
            assert_eq!(b0, 0x81);
            assert_eq!(payload.len(), len);
        }
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let f = close_frame(4001, "room_destroyed");
        let (b0, payload) = server_payload(&f);
        assert_eq!(b0, 0x88);
        assert_eq!(&payload[..2], &4001u16.to_be_bytes());
        assert_eq!(&payload[2..], b"room_destroyed");
    }

    #[test]
    fn decodes_text_ping_pong_close() {
        let mut input = client_frame(true, opcode::TEXT, br#"{"type":"ping"}"#, [1, 2, 3, 4]);
        input.extend(client_frame(true, opcode::PING, b"hi", [9, 9, 9, 9]));
        input.extend(client_frame(true, opcode::PONG, b"", [0, 0, 0, 0]));
        input.extend(client_frame(true, opcode::CLOSE, &1000u16.to_be_bytes(), [5, 6, 7, 8]));
        let events = collect(&mut Decoder::new(), &input).unwrap();
        assert_eq!(
            events,
            vec![
                Owned::Text(br#"{"type":"ping"}"#.to_vec()),
                Owned::Ping(b"hi".to_vec()),
                Owned::Pong,
                Owned::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn rejects_unmasked_oversized_and_reserved() {
        let unmasked = [0x81u8, 0x01, b'a'];
        assert!(matches!(collect(&mut Decoder::new(), &unmasked), Err(DecodeError::Protocol(_))));
        let big = client_frame(true, opcode::TEXT, &vec![b'a'; MAX_CLIENT_PAYLOAD + 1], [1; 4]);
        // Refused from the header alone, before the payload arrives.
        assert_eq!(collect(&mut Decoder::new(), &big[..8]), Err(DecodeError::TooBig));
        let mut rsv = client_frame(true, opcode::TEXT, b"a", [1; 4]);
        rsv[0] |= 0x40;
        assert!(matches!(collect(&mut Decoder::new(), &rsv), Err(DecodeError::Protocol(_))));
        let reserved_op = client_frame(true, 0x3, b"a", [1; 4]);
        assert!(matches!(collect(&mut Decoder::new(), &reserved_op), Err(DecodeError::Protocol(_))));
        let long_ping = client_frame(true, opcode::PING, &[0; 126], [1; 4]);
        assert!(matches!(collect(&mut Decoder::new(), &long_ping), Err(DecodeError::Protocol(_))));
        let bad_utf8 = client_frame(true, opcode::TEXT, &[0xFF, 0xFE], [1; 4]);
        assert_eq!(collect(&mut Decoder::new(), &bad_utf8), Err(DecodeError::InvalidUtf8));
    }

    /// A client frame whose payload is `json` compressed, RSV1 set.
    fn compressed_client_frame(fin: bool, opcode: u8, json: &[u8]) -> Vec<u8> {
        let frame = super::super::deflate::Compressor::default().text_frame(json);
        let (_, payload) = server_payload(&frame);
        let mut out = client_frame(fin, opcode, payload, [3, 1, 4, 1]);
        out[0] |= RSV1;
        out
    }

    #[test]
    fn with_deflate_a_compressed_message_is_inflated_and_bounded() {
        let ping = br#"{"type":"ping"}"#;
        let input = compressed_client_frame(true, opcode::TEXT, ping);
        assert_eq!(collect(&mut Decoder::with_deflate(true), &input).unwrap(), vec![Owned::Text(ping.to_vec())]);
        assert!(matches!(collect(&mut Decoder::new(), &input), Err(DecodeError::Protocol(_))), "not negotiated");
        // Fragmented: RSV1 on the first frame only, inflated once whole.
        let whole = compressed_client_frame(true, opcode::TEXT, &ping.repeat(20));
        let payload = &whole[6..]; // 2-byte header + mask: short compressed payload
        assert!(whole[1] & 0x7F < 126);
        let unmasked: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ [3, 1, 4, 1][i & 3]).collect();
        let (a, b) = unmasked.split_at(unmasked.len() / 2);
        let mut input = client_frame(false, opcode::TEXT, a, [7; 4]);
        input[0] |= RSV1;
        input.extend(client_frame(true, opcode::CONTINUATION, b, [8; 4]));
        assert_eq!(collect(&mut Decoder::with_deflate(true), &input).unwrap(), vec![Owned::Text(ping.repeat(20))]);
        // A small frame that inflates past the limit is refused as too big.
        let bomb = compressed_client_frame(true, opcode::TEXT, &vec![b'a'; MAX_CLIENT_PAYLOAD + 1]);
        assert_eq!(collect(&mut Decoder::with_deflate(true), &bomb), Err(DecodeError::TooBig));
        // RSV1 never on control frames or continuations, RSV2 and RSV3 never.
        let mut ping_frame = client_frame(true, opcode::PING, b"", [1; 4]);
        ping_frame[0] |= RSV1;
        assert!(matches!(collect(&mut Decoder::with_deflate(true), &ping_frame), Err(DecodeError::Protocol(_))));
        let mut rsv2 = client_frame(true, opcode::TEXT, b"a", [1; 4]);
        rsv2[0] |= 0x20;
        assert!(matches!(collect(&mut Decoder::with_deflate(true), &rsv2), Err(DecodeError::Protocol(_))));
        let mut input = client_frame(false, opcode::TEXT, b"{", [1; 4]);
        let mut continuation = client_frame(true, opcode::CONTINUATION, b"}", [1; 4]);
        continuation[0] |= RSV1;
        input.extend(continuation);
        assert!(matches!(collect(&mut Decoder::with_deflate(true), &input), Err(DecodeError::Protocol(_))));
        let garbage = {
            let mut f = client_frame(true, opcode::TEXT, &[0xff, 0xff, 0xff], [1; 4]);
            f[0] |= RSV1;
            f
        };
        assert!(matches!(collect(&mut Decoder::with_deflate(true), &garbage), Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn fragmented_messages_are_bounded_as_a_whole() {
        let mut d = Decoder::new();
        let first = client_frame(false, opcode::TEXT, &vec![b'a'; 3000], [1; 4]);
        let second = client_frame(true, opcode::CONTINUATION, &vec![b'b'; 2000], [2; 4]);
        assert!(collect(&mut d, &first).unwrap().is_empty());
        assert!(d.is_mid_message());
        assert_eq!(collect(&mut d, &second), Err(DecodeError::TooBig));
    }

    #[test]
    fn continuation_without_start_is_a_protocol_error() {
        let f = client_frame(true, opcode::CONTINUATION, b"x", [1; 4]);
        assert!(matches!(collect(&mut Decoder::new(), &f), Err(DecodeError::Protocol(_))));
    }

    proptest! {
        /// Any sequence of valid frames, cut into any pieces, decodes to the same events.
        #[test]
        fn split_anywhere_decodes_the_same(
            messages in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..600), any::<[u8; 4]>(), 1usize..4), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (payload, mask, parts) in &messages {
                let chunk = payload.len().div_ceil(*parts).max(1);
                let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(chunk).collect() };
                for (i, piece) in pieces.iter().enumerate() {
                    let op = if i == 0 { opcode::BINARY } else { opcode::CONTINUATION };
                    wire.extend(client_frame(i + 1 == pieces.len(), op, piece, *mask));
                }
                expected.push(Owned::Binary(payload.clone()));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut decoder = Decoder::new();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                got.extend(collect(&mut decoder, &wire[pair[0]..pair[1]]).unwrap());
            }
            prop_assert_eq!(got, expected);
            prop_assert!(!decoder.is_mid_message());
        }

        /// Arbitrary bytes never panic the decoder, and it never buffers more than one frame.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut decoder = Decoder::new();
            for chunk in chunks {
                let mut chunk = chunk;
                if decoder.decode(&mut chunk, |_| {}).is_err() {
                    break;
                }
                prop_assert!(decoder.carry.len() <= MAX_CLIENT_FRAME);
            }
        }

        /// Server frames round-trip through a client decoder once masked.
        #[test]
        fn server_frame_lengths_round_trip(len in 0usize..70_000) {
            let payload = vec![7u8; len];
            let f = text_frame(&payload);
            let (_, body) = server_payload(&f);
            prop_assert_eq!(body, &payload[..]);
        }
    }
}
