//! Server frames of the QUIC framing (4-byte length, JSON) as they arrive in
//! stream chunks: what the native QUIC and the WebTransport clients read.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{ClientError, MAX_SERVER_FRAME};
use crate::protocol::quic::Decoder;

/// Whole frames decoded so far, and the start of the next one.
pub(super) struct FrameBuffer {
    decoder: Decoder,
    frames: VecDeque<Bytes>,
}

impl FrameBuffer {
    pub fn new() -> FrameBuffer {
        FrameBuffer { decoder: Decoder::with_limit(MAX_SERVER_FRAME), frames: VecDeque::new() }
    }

    /// The oldest whole frame not yet taken.
    pub fn pop(&mut self) -> Option<Bytes> {
        self.frames.pop_front()
    }

    /// Decodes a chunk read from the stream.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ClientError> {
        let frames = &mut self.frames;
        self.decoder
            .decode(chunk, |frame| frames.push_back(Bytes::copy_from_slice(frame)))
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
