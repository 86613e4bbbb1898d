//! One QUIC subscriber: the hello, admission, then one task that writes the
//! queued frames to the stream and reads the little the client sends.
//!
//! Refusals follow the contract: an `error` frame on the stream for a bad
//! hello, unknown app or room; an application close for a frame over 4 KiB
//! (1009) or no hello in time (1002). Close codes use the WebSocket numbers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream, VarInt};

use super::HELLO_TIMEOUT;
use crate::api_error::ApiError;
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::protocol::Framing;
use crate::protocol::close::{CloseReason, ws_code};
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::quic::{self, Decoder, parse_hello};
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::session::{self, Membership};

/// `{"type":"pong"}` as one QUIC frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\0\0\0\x0f{\"type\":\"pong\"}";

/// How long the last frames may take to be acknowledged before the close.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// The largest chunk read from the client's stream at once.
const READ_CHUNK: usize = 4096;

/// Takes a new connection through its hello.
pub(super) async fn handle(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(error) => return tracing::debug!(%error, "quic handshake failed"),
    };
    let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => return close(&conn, ws_code::PROTOCOL_ERROR, "no stream opened in time"),
    };
    let mut decoder = Decoder::default();
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, first_frame(&mut recv, &mut decoder)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(_)) => return close(&conn, ws_code::TOO_BIG, "frame too big"),
        Err(_) => return close(&conn, ws_code::PROTOCOL_ERROR, "no hello in time"),
    };
    match admit(&shared, &hello, conn.remote_address().ip()) {
        Ok((memberships, permit)) => {
            let session = QuicSession { conn, send, recv, decoder, memberships, shared, _permit: permit };
            tokio::spawn(session.run());
        }
        Err(error) => {
            let frame = quic::frame(&quic::error_message(error.code, &error.message));
            if send.write_chunk(frame).await.is_ok() {
                let _ = send.finish();
                let _ = tokio::time::timeout(CLOSE_DEADLINE, send.stopped()).await;
            }
            close(&conn, ws_code::NORMAL, error.code);
        }
    }
}

fn close(conn: &Connection, code: u16, reason: &str) {
    conn.close(VarInt::from_u32(code as u32), reason.as_bytes());
}

fn admit(shared: &Shared, hello: &[u8], peer: IpAddr) -> Result<(Vec<Membership>, ConnectionPermit), ApiError> {
    let hello = parse_hello(hello).map_err(ApiError::invalid_request)?;
    let memberships = session::resolve(shared, &hello.app, hello.rooms.iter().map(String::as_str))?;
    let permit = session::acquire(shared, Transport::Quic, peer)?;
    Ok((memberships, permit))
}

/// Reads until the first whole frame; `None` if the stream ended first.
async fn first_frame(recv: &mut RecvStream, decoder: &mut Decoder) -> Result<Option<Vec<u8>>, quic::FrameTooBig> {
    loop {
        let chunk = match recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => chunk,
            _ => return Ok(None),
        };
        let mut first = None;
        decoder.decode(&chunk.bytes, |frame| {
            first.get_or_insert_with(|| frame.to_vec());
        })?;
        if first.is_some() {
            return Ok(first);
        }
    }
}

struct QuicSession {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    decoder: Decoder,
    memberships: Vec<Membership>,
    shared: Arc<Shared>,
    _permit: ConnectionPermit,
}

/// What woke the session loop.
enum Event {
    Written(Result<(usize, usize), ()>),
    Read(Result<Option<Bytes>, ()>),
    Woken,
    Lost,
}

impl QuicSession {
    async fn run(mut self) {
        let subscriber = session::open(&self.shared, Framing::Quic, &mut self.memberships);
        self.serve(&subscriber).await;
        session::leave(&self.memberships);
    }

    async fn serve(&mut self, subscriber: &Subscriber) {
        let deliveries = &self.shared.metrics.quic_deliveries;
        let mut out = Outbox::default();
        let mut closing: Option<CloseReason> = None;
        let mut reading = true;
        loop {
            if out.is_empty() && closing.is_none() {
                // A stream is ordered: the closing message can follow the backlog at once.
                if let Some(reason) = out.refill(subscriber) {
                    out.frames.push_back(quic::frame(&messages::closing(reason)));
                    closing = Some(reason);
                }
            }
            if out.is_empty()
                && let Some(reason) = closing
            {
                return self.finish(reason).await;
            }
            let event = tokio::select! {
                written = self.send.write_chunks(out.frames.make_contiguous()), if !out.is_empty() => {
                    Event::Written(written.map(|w| (w.chunks, w.bytes)).map_err(|_| ()))
                }
                chunk = self.recv.read_chunk(READ_CHUNK, true), if reading => {
                    Event::Read(chunk.map(|c| c.map(|c| c.bytes)).map_err(|_| ()))
                }
                () = subscriber.woken(), if out.is_empty() && closing.is_none() => Event::Woken,
                _ = self.conn.closed() => Event::Lost,
            };
            match event {
                Event::Written(Ok((chunks, bytes))) => {
                    out.frames.drain(..chunks);
                    out.sent(subscriber, bytes, deliveries);
                }
                Event::Written(Err(())) | Event::Read(Err(())) | Event::Lost => return,
                Event::Read(Ok(None)) => reading = false, // the client finished its side
                Event::Read(Ok(Some(bytes))) => {
                    let decoded = self.decoder.decode(&bytes, |frame| {
                        if messages::parse_client(frame) == ClientMessage::Ping {
                            subscriber.push_control(Bytes::from_static(PONG_FRAME));
                        }
                    });
                    if decoded.is_err() {
                        return close(&self.conn, ws_code::TOO_BIG, "frame too big");
                    }
                }
                Event::Woken => {}
            }
        }
    }

    /// After `closing`: finish the stream, give the peer a moment to
    /// acknowledge it, then close with the reason's code.
    async fn finish(&mut self, reason: CloseReason) {
        let _ = self.send.finish();
        let _ = tokio::time::timeout(CLOSE_DEADLINE, self.send.stopped()).await;
        close(&self.conn, reason.ws_close_code(), reason.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG_FRAME, &quic::frame(messages::PONG)[..]);
    }
}
