//! What a QUIC subscriber session needs of its connection and streams, so one
//! loop ([`super::session`]) serves native `bullhorn/1` connections and
//! browser WebTransport sessions alike: only the stream types differ.

use std::future::Future;

use bytes::Bytes;

/// The most the session reads from a client at once.
pub const READ_CHUNK: usize = 4096;

/// Where the session writes its frames.
pub trait FrameSink: Send {
    /// Writes from the front of `chunks` as much as flow control allows now;
    /// `Err` once the stream or connection is gone.
    fn write_chunks(&mut self, chunks: &mut [Bytes]) -> impl Future<Output = Result<quinn::Written, ()>> + Send;
    /// Ends the stream after what was written.
    fn finish(&mut self);
    /// Resolves once the peer has everything, or the stream was stopped.
    fn stopped(&mut self) -> impl Future<Output = ()> + Send;
}

/// What the client sends: pings, as length-prefixed frames.
pub trait FrameSource: Send {
    /// The next bytes; `Ok(None)` once the client finished its side.
    fn read_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, ()>> + Send;
}

/// The connection itself.
pub trait Peer: Send + Sync {
    /// Resolves when the connection is gone.
    fn closed(&self) -> impl Future<Output = ()> + Send;
    /// Closes with a WebSocket-numbered code (contract §5) and a reason.
    fn close(&self, code: u16, reason: &str);
}

impl FrameSink for quinn::SendStream {
    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<quinn::Written, ()> {
        quinn::SendStream::write_chunks(self, chunks).await.map_err(|_| ())
    }

    fn finish(&mut self) {
        let _ = quinn::SendStream::finish(self);
    }

    async fn stopped(&mut self) {
        let _ = quinn::SendStream::stopped(self).await;
    }
}

impl FrameSource for quinn::RecvStream {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, ()> {
        match quinn::RecvStream::read_chunk(self, READ_CHUNK, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(_) => Err(()),
        }
    }
}

impl Peer for quinn::Connection {
    async fn closed(&self) {
        quinn::Connection::closed(self).await;
    }

    fn close(&self, code: u16, reason: &str) {
        quinn::Connection::close(self, quinn::VarInt::from_u32(code as u32), reason.as_bytes());
    }
}
