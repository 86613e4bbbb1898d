//! One WebSocket subscriber on a shard: an explicit state machine with a
//! handler per event (readable, woken or writable, deadline), driven by the
//! shard's event loop and by nothing else.
//!
//! It holds no task, no timer and no read buffer: reads go through the
//! shard's buffer, writes are vectored straight from the shared frames
//! (`fanout::writer`), and the only deadlines (the last frames' 2 s, then 2 s
//! of linger) are entries in the shard's deadline queue. Every handler returns whether
//! the connection lives on; a finished one is dropped by the shard, which
//! leaves its rooms and releases its connection slot.
//!
//! Sans-I/O over [`ShardSocket`], so tests drive it with any split of reads,
//! short writes at any byte and a close at any point.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::Counter;

use super::close_stage::CloseStage;
use super::conn::write_until_blocked;
use super::socket::ShardSocket;
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::protocol::close::ws_code;
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::pusher;
use crate::protocol::ws::{self, ClientEvent, Decoder};
use crate::registry::App;
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::{self, Membership};

/// `{"type":"pong"}` as one text frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\x81\x0f{\"type\":\"pong\"}";

pub use super::close_stage::CLOSE_DEADLINE;

/// Whether the connection lives on after a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Open,
    Over,
}

/// What every connection of a shard shares, handed to the handlers rather
/// than kept in each connection.
#[derive(Debug, Clone)]
pub struct ShardContext {
    /// A peer silent this long is dropped (checked when the connection is woken).
    pub idle_timeout: Duration,
    /// `bullhorn_deliveries_total{transport="websocket"}`.
    pub deliveries: Counter,
    /// `bullhorn_deliveries_total{transport="sse"}`.
    pub sse_deliveries: Counter,
    /// `bullhorn_deliveries_total{transport="pusher"}`.
    pub pusher_deliveries: Counter,
    /// The drain window, which native clients' `reconnect_after_ms` is drawn from ...
    pub drain_window: std::time::Duration,
    /// ... and the part of it over which Pusher clients, who reconnect the
    /// moment they are told, are told (within the drain's timeout).
    pub pusher_close_spread: std::time::Duration,
    /// Set once the node drains (by `Dataplane::drain_began`): a Pusher subscribe then closes at once.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// `bullhorn_pusher_subscriptions_refused_total`.
    pub pusher_refused: Counter,
    /// `bullhorn_dropped_messages_total{reason="expired"}`.
    pub expired: Counter,
}

pub struct WsConn<S> {
    socket: S,
    subscriber: Arc<Subscriber>,
    memberships: Vec<Membership>,
    out: Outbox,
    decoder: Decoder,
    last_heard: Instant,
    closing: CloseStage,
    /// A Pusher Channels client of this app (a native connection pays one
    /// pointer for the option); its subscriptions are `memberships`.
    pusher: Option<Arc<App>>,
    _permit: Option<ConnectionPermit>,
}

impl<S: ShardSocket> WsConn<S> {
    pub fn new(
        socket: S,
        subscriber: Arc<Subscriber>,
        memberships: Vec<Membership>,
        permit: Option<ConnectionPermit>,
    ) -> WsConn<S> {
        let deflate = subscriber.framing() == crate::protocol::Framing::WebSocketDeflate;
        WsConn {
            socket,
            out: Outbox::new(&subscriber),
            subscriber,
            memberships,
            decoder: Decoder::with_deflate(deflate),
            last_heard: Instant::now(),
            closing: CloseStage::default(),
            pusher: None,
            _permit: permit,
        }
    }

    /// The same connection speaking the Pusher Channels protocol, for a client of `app`.
    pub fn with_pusher(mut self, app: Arc<App>) -> WsConn<S> {
        self.pusher = Some(app);
        self
    }

    pub fn is_pusher(&self) -> bool {
        self.pusher.is_some()
    }

    pub fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// The deadline a handler just started, once: the shard queues it.
    pub fn new_deadline(&mut self) -> Option<Instant> {
        self.closing.new_deadline()
    }

    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// Bytes the handshake read past the upgrade request.
    pub fn early_input(&mut self, mut input: Vec<u8>, shard: &ShardContext, now: Instant) {
        let pusher = self.pusher.as_deref().map(|app| (app, shard, &mut self.memberships));
        if let Some(code) = handle_input(&mut self.decoder, &mut input, &self.subscriber, pusher) {
            self.close_with(code, now);
        }
    }

    /// The socket is readable: read until it would block (edge-triggered).
    pub fn on_readable(&mut self, buf: &mut [u8], shard: &ShardContext, now: Instant) -> Life {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return Life::Over,
                Ok(n) if self.closing.is_lingering() => {
                    let _ = n; // the peer's last words: discarded
                }
                Ok(n) => {
                    self.last_heard = now;
                    let pusher = self.pusher.as_deref().map(|app| (app, shard, &mut self.memberships));
                    if let Some(code) = handle_input(&mut self.decoder, &mut buf[..n], &self.subscriber, pusher)
                        && self.closing.is_open()
                    {
                        self.close_with(code, now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.socket.has_pending_input() {
                        return Life::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Life::Over,
            }
        }
    }

    /// Something was queued, the socket is writable, or the heartbeat woke
    /// it: write what can go, then park the queue's waker (`cx`).
    pub fn on_woken(&mut self, cx: &mut Context<'_>, shard: &ShardContext, now: Instant) -> Life {
        let pusher = self.pusher.is_some();
        if pusher {
            let in_no_room = self.memberships.is_empty();
            super::pusher::pace_drain_close(&self.subscriber, in_no_room, &mut self.closing, shard, now);
        }
        let deliveries = if pusher { &shard.pusher_deliveries } else { &shard.deliveries };
        let written = write_until_blocked(
            &mut self.socket,
            &mut self.out,
            &self.subscriber,
            &mut self.closing,
            (shard, deliveries),
            now,
            |reason, out| {
                if pusher {
                    return super::pusher::last_words(reason, out);
                }
                out.push_frame(ws::text_frame(&messages::closing(reason)));
                out.push_frame(close_frame(reason.ws_close_code()));
            },
            |out, socket| out.write(|slices| socket.write_vectored(slices)),
        );
        written.unwrap_or_else(|| self.park(cx, shard, now))
    }

    /// Nothing left to write: half-close if closing, else wait for the queue.
    fn park(&mut self, cx: &mut Context<'_>, shard: &ShardContext, now: Instant) -> Life {
        if self.closing.flushed(&mut self.socket, now) {
            return Life::Open;
        }
        if now.duration_since(self.last_heard) >= shard.idle_timeout {
            if self.pusher.is_none() {
                return Life::Over;
            }
            // A Pusher client is told why (4201), and reconnects at once.
            super::pusher::close_frames(pusher::close::PONG_TIMEOUT, "pong timeout", &mut self.out);
            self.closing.begin(now);
            return self.on_woken(cx, shard, now);
        }
        match self.subscriber.poll_woken(cx) {
            Poll::Ready(()) => self.on_woken(cx, shard, now),
            Poll::Pending => Life::Open,
        }
    }

    /// The deadline passed: the last frames did not leave in time, or the
    /// peer did not close after ours.
    pub fn on_deadline(&mut self, now: Instant) -> Life {
        self.closing.on_deadline(now)
    }

    /// Queues the close frame after whatever is in flight; starts its deadline.
    fn close_with(&mut self, code: u16, now: Instant) {
        self.out.push_frame(close_frame(code));
        self.closing.begin(now);
    }
}

fn close_frame(code: u16) -> Bytes {
    ws::close_frame(code, ws_code::reason(code))
}

impl<S> Drop for WsConn<S> {
    fn drop(&mut self) {
        session::leave(&self.memberships);
    }
}

/// Decodes client bytes; returns the close code to answer with, if any. A
/// Pusher client's text messages go to its session.
fn handle_input(
    decoder: &mut Decoder,
    input: &mut [u8],
    subscriber: &Arc<Subscriber>,
    mut pusher: Option<(&App, &ShardContext, &mut Vec<Membership>)>,
) -> Option<u16> {
    let mut close = None;
    let decoded = decoder.decode(input, |event| match event {
        ClientEvent::Text(text) => {
            if let Some((app, shard, memberships)) = pusher.as_mut() {
                // The decoder closed (1007) on text that is not UTF-8.
                let text = std::str::from_utf8(text).unwrap_or_default();
                super::pusher::on_text(app, shard, text, subscriber, memberships);
            } else if messages::parse_client(text) == ClientMessage::Ping {
                subscriber.push_reply(Bytes::from_static(PONG_FRAME));
            }
        }
        ClientEvent::Ping(payload) => {
            subscriber.push_reply(ws::frame(ws::opcode::PONG, payload));
        }
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
mod tests;
