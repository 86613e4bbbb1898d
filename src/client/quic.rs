//! One QUIC subscription stream (contract §5): connect, hello, then frames.

use std::net::SocketAddr;

use bytes::Bytes;

use super::frames::FrameBuffer;
use super::{ClientError, Message};
use crate::protocol::quic;

/// An open subscription over QUIC: the connection and its one stream.
pub struct QuicStream {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    frames: FrameBuffer,
}

impl QuicStream {
    /// Connects through `endpoint` to `addr` (TLS name `server_name`) and sends
    /// the hello for `rooms` (each `room` or `room@seq`) of `app`.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        server_name: &str,
        app: &str,
        rooms: &[String],
    ) -> Result<QuicStream, ClientError> {
        let conn = endpoint.connect(addr, server_name).map_err(|e| ClientError::Connect(e.to_string()))?.await?;
        let (mut send, recv) = conn.open_bi().await?;
        let hello = serde_json::json!({"type": "hello", "app": app, "rooms": rooms}).to_string();
        send.write_all(&quic::frame(hello.as_bytes())).await.map_err(|e| ClientError::Io(e.to_string()))?;
        Ok(QuicStream { conn, send, recv, frames: FrameBuffer::new() })
    }

    /// The next message; `None` once the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        Ok(match self.next_frame().await? {
            Some(frame) => Some(Message::parse(&frame)?),
            None => None,
        })
    }

    /// The next raw JSON frame (what the load harness reads without parsing).
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(frame) = self.frames.pop() {
                return Ok(Some(frame));
            }
            let Some(chunk) =
                self.recv.read_chunk(64 * 1024, true).await.map_err(|e| ClientError::Io(e.to_string()))?
            else {
                return Ok(None);
            };
            self.frames.push(&chunk.bytes)?;
        }
    }

    /// Sends `{"type":"ping"}`; the answer arrives as [`Message::Pong`].
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.send.write_all(&quic::frame(br#"{"type":"ping"}"#)).await.map_err(|e| ClientError::Io(e.to_string()))
    }

    /// The underlying connection (close reason, stats).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}
