//! One WebSocket subscriber: join its rooms, then a single task that reads
//! the little a subscriber sends and writes what the fan-out queued.
//!
//! Reading and writing share one task and one `select!`, and neither waits on
//! the other: a full socket only stops the writer branch, while pings keep
//! being read. Reads go through a stack buffer in a plain function, so an idle
//! connection holds no read buffer; writes are vectored straight from the
//! shared frames (`fanout::writer`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::fanout::writer::write_some;
use crate::protocol::Framing;
use crate::protocol::close::ws_code;
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::ws::{self, ClientEvent, Decoder};
use crate::state::Shared;
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::{self, Membership};
use crate::transport::socket::Socket;

/// `{"type":"pong"}` as one text frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\x81\x0f{\"type\":\"pong\"}";

/// How long the final frames may take to leave, and the peer to close after.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

pub(super) struct WsConnection<S> {
    stream: S,
    /// Bytes the HTTP server read past the upgrade request.
    early_input: Option<Box<[u8]>>,
    memberships: Vec<Membership>,
    shared: Arc<Shared>,
    _permit: ConnectionPermit,
}

/// What a read asked for.
enum ReadOutcome {
    Data,
    WouldBlock,
    /// The peer closed or failed: nothing more can be said to it.
    Gone,
    /// Answer with a close frame with this code, then end.
    Close(u16),
}

impl<S: Socket> WsConnection<S> {
    pub(super) fn new(
        stream: S,
        early_input: Bytes,
        memberships: Vec<Membership>,
        shared: Arc<Shared>,
        permit: ConnectionPermit,
    ) -> WsConnection<S> {
        // hyper hands over a slice of its whole read buffer: keep only the bytes,
        // or every connection would pin that buffer for its lifetime.
        let early_input = (!early_input.is_empty()).then(|| Box::from(&early_input[..]));
        WsConnection { stream, early_input, memberships, shared, _permit: permit }
    }

    pub(super) async fn run(mut self) {
        let subscriber = session::open(&self.shared, Framing::WebSocket, &mut self.memberships);
        self.serve(&subscriber).await;
        session::leave(&self.memberships);
    }

    /// The connection's life after joining: returns when it is over.
    ///
    /// There is no timer per connection: the server's heartbeat task queues a
    /// ping for every WebSocket subscriber each interval, which also wakes this
    /// loop to check the idle timeout. Only a closing connection holds a timer
    /// (boxed), for the deadline of its last frames.
    async fn serve(&mut self, subscriber: &Subscriber) {
        let settings = &self.shared.settings;
        let deliveries = &self.shared.metrics.ws_deliveries;
        let mut out = Outbox::default();
        let mut decoder = Decoder::new();
        let mut last_heard = Instant::now();
        // Set once the last frame (a close) is queued: the deadline to flush it.
        let mut closing: Option<Pin<Box<Sleep>>> = None;

        if let Some(mut input) = self.early_input.take()
            && let Some(code) = handle_input(&mut decoder, &mut input, subscriber)
        {
            closing = Some(close_with(&mut out.frames, code));
        }
        loop {
            if out.is_empty() && closing.is_none() {
                // The closing message goes out once the backlog has (a slow
                // consumer's backlog is dropped by `refill`).
                if let Some(reason) = out.refill(subscriber)
                    && out.is_empty()
                {
                    out.frames.push_back(ws::text_frame(&messages::closing(reason)));
                    closing = Some(close_with(&mut out.frames, reason.ws_close_code()));
                }
            }
            // TLS may hold records of frames already taken; they leave before anything else.
            let flushing = self.stream.has_pending_output();
            if flushing {
                match self.stream.flush_pending() {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            } else if !out.is_empty() {
                match write_some(&mut out.frames, |slices| self.stream.try_write_vectored(slices)) {
                    Ok(written) => {
                        out.sent(subscriber, written, deliveries);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            } else if closing.is_some() {
                // Boxed: only closing connections pay for the linger future's state.
                return Box::pin(self.linger()).await;
            }
            if closing.is_none() && last_heard.elapsed() >= settings.idle_timeout {
                return; // the peer went silent
            }
            let event = tokio::select! {
                biased;
                // The poll-based readiness calls (not `readable()`) put this task's
                // waker in the socket's own slot, replacing the HTTP server's,
                // which would otherwise keep that finished task's memory alive.
                ready = std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)) => Event::Readable(ready.is_ok()),
                _ = std::future::poll_fn(|cx| self.stream.poll_write_ready(cx)), if flushing || !out.is_empty() => Event::Woken,
                () = subscriber.woken(), if out.is_empty() && closing.is_none() => Event::Woken,
                () = deadline(&mut closing), if closing.is_some() => Event::Deadline,
            };
            match event {
                Event::Readable(false) | Event::Deadline => return,
                Event::Woken => {}
                Event::Readable(true) => match read(&mut self.stream, &mut decoder, subscriber) {
                    ReadOutcome::Data => last_heard = Instant::now(),
                    ReadOutcome::WouldBlock => {}
                    ReadOutcome::Gone => return,
                    ReadOutcome::Close(code) => {
                        if closing.is_none() {
                            closing = Some(close_with(&mut out.frames, code));
                        }
                    }
                },
            }
        }
    }

    /// After the close frame: half-close and wait briefly for the peer to close,
    /// so unread input does not turn our close into a reset that loses the
    /// frames just sent.
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
            self.stream.shutdown().await;
            loop {
                if std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)).await.is_err() {
                    return;
                }
                if let ReadOutcome::Gone = discard(&mut self.stream) {
                    return;
                }
            }
        })
        .await;
    }
}

/// What woke the connection loop.
enum Event {
    /// The socket is readable (`false`: it failed).
    Readable(bool),
    /// The socket is writable again, or something was queued.
    Woken,
    /// The last frames did not leave in time.
    Deadline,
}

async fn deadline(closing: &mut Option<Pin<Box<Sleep>>>) {
    match closing {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Queues the close frame after whatever is in flight; returns the flush deadline.
fn close_with(out: &mut VecDeque<Bytes>, code: u16) -> Pin<Box<Sleep>> {
    let reason = match code {
        ws_code::TOO_BIG => "frame too big",
        ws_code::PROTOCOL_ERROR => "protocol error",
        ws_code::INVALID_PAYLOAD => "invalid utf-8",
        ws_code::GOING_AWAY => "server_draining",
        ws_code::ROOM_DESTROYED => "room_destroyed",
        ws_code::SLOW_CONSUMER => "slow_consumer",
        _ => "",
    };
    out.push_back(ws::close_frame(code, reason));
    Box::pin(tokio::time::sleep(CLOSE_DEADLINE))
}

/// One non-blocking read into a stack buffer (never held across an await).
fn read(stream: &mut impl Socket, decoder: &mut Decoder, subscriber: &Subscriber) -> ReadOutcome {
    let mut buf = [0u8; 4096];
    match stream.try_read(&mut buf) {
        Ok(0) => ReadOutcome::Gone,
        Ok(n) => match handle_input(decoder, &mut buf[..n], subscriber) {
            None => ReadOutcome::Data,
            Some(code) => ReadOutcome::Close(code),
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
        Err(_) => ReadOutcome::Gone,
    }
}

fn discard(stream: &mut impl Socket) -> ReadOutcome {
    let mut buf = [0u8; 1024];
    match stream.try_read(&mut buf) {
        Ok(0) => ReadOutcome::Gone,
        Ok(_) => ReadOutcome::Data,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
        Err(_) => ReadOutcome::Gone,
    }
}

/// Decodes client bytes; returns the close code to answer with, if any.
fn handle_input(decoder: &mut Decoder, input: &mut [u8], subscriber: &Subscriber) -> Option<u16> {
    let mut close = None;
    let decoded = decoder.decode(input, |event| match event {
        ClientEvent::Text(text) => {
            if messages::parse_client(text) == ClientMessage::Ping {
                subscriber.push_control(Bytes::from_static(PONG_FRAME));
            }
        }
        ClientEvent::Ping(payload) => subscriber.push_control(ws::frame(ws::opcode::PONG, payload)),
        ClientEvent::Binary(_) | ClientEvent::Pong => {}
        ClientEvent::Close(_) => close = close.or(Some(ws_code::NORMAL)),
    });
    match decoded {
        Ok(()) => close,
        Err(error) => {
            tracing::debug!(%error, "closing on bad client input");
            Some(error.close_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG_FRAME, &ws::text_frame(messages::PONG)[..]);
    }
}
