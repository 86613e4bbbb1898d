//! One QUIC subscriber after admission: a task that writes its queued frames
//! to the stream and answers the pings the client sends. Native connections
//! and WebTransport sessions share it; only their streams differ
//! ([`super::streams`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics::Counter;

use super::streams::{FrameSink, FrameSource, Peer};
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::protocol::Framing;
use crate::protocol::close::{CloseReason, ws_code};
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::quic::{self, Decoder};
use crate::state::Shared;
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::{self, Membership};

/// `{"type":"pong"}` as one QUIC frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\0\0\0\x0f{\"type\":\"pong\"}";

/// How long the last frames may take to be acknowledged before the close.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

/// An admitted subscriber and its streams.
pub struct QuicSession<P, S, R> {
    pub peer: P,
    pub send: S,
    pub recv: R,
    /// What the client sent so far of an unfinished frame.
    pub decoder: Decoder,
    pub memberships: Vec<Membership>,
    pub shared: Arc<Shared>,
    /// `bullhorn_deliveries_total` for this transport.
    pub deliveries: Counter,
    /// The connection slot, freed when the session ends.
    pub _permit: ConnectionPermit,
}

/// What woke the session loop.
enum Event {
    Written(Result<(usize, usize), ()>),
    Read(Result<Option<Bytes>, ()>),
    Woken,
    Lost,
}

impl<P: Peer, S: FrameSink, R: FrameSource> QuicSession<P, S, R> {
    /// Joins the rooms, serves until either side ends, then leaves them.
    pub async fn run(mut self) {
        let subscriber = session::open(&self.shared, Framing::Quic, &mut self.memberships);
        self.serve(&subscriber).await;
        session::leave(&self.memberships);
    }

    async fn serve(&mut self, subscriber: &Subscriber) {
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
                    Event::Written(written.map(|w| (w.chunks, w.bytes)))
                }
                chunk = self.recv.read_chunk(), if reading => Event::Read(chunk),
                () = subscriber.woken(), if out.is_empty() && closing.is_none() => Event::Woken,
                () = self.peer.closed() => Event::Lost,
            };
            match event {
                Event::Written(Ok((chunks, bytes))) => {
                    out.frames.drain(..chunks);
                    out.sent(subscriber, bytes, &self.deliveries);
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
                        return self.peer.close(ws_code::TOO_BIG, "frame too big");
                    }
                }
                Event::Woken => {}
            }
        }
    }

    /// After `closing`: finish the stream, give the peer a moment to
    /// acknowledge it, then close with the reason's code.
    async fn finish(&mut self, reason: CloseReason) {
        self.send.finish();
        let _ = tokio::time::timeout(CLOSE_DEADLINE, self.send.stopped()).await;
        self.peer.close(reason.ws_close_code(), reason.as_str());
    }
}

/// Refuses an admission: the `error` frame (contract §5), the stream
/// finished, a moment for the peer to read it, then a normal close.
pub async fn refuse(peer: &impl Peer, send: &mut impl FrameSink, code: &str, message: &str) {
    let mut frame = [quic::frame(&quic::error_message(code, message))];
    while !frame[0].is_empty() {
        if send.write_chunks(&mut frame).await.is_err() {
            return peer.close(ws_code::NORMAL, code);
        }
    }
    send.finish();
    let _ = tokio::time::timeout(CLOSE_DEADLINE, send.stopped()).await;
    peer.close(ws_code::NORMAL, code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG_FRAME, &quic::frame(messages::PONG)[..]);
    }
}
