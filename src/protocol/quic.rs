//! QUIC stream framing (contract §5): a 4-byte unsigned big-endian length, then
//! that many bytes of UTF-8 JSON, in both directions.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Frames one JSON message.
pub fn frame(json: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + json.len());
    buf.put_u32(json.len() as u32);
    buf.put_slice(json);
    buf.freeze()
}
