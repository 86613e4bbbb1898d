//! One Server-Sent Events stream on a shard (docs/architecture.md,
//! "Server-Sent Events"): [`super::ws::WsConn`]'s state machine without a
//! decoder, since an SSE client says nothing after its request.
//!
//! What it reads is dropped; end of input ends it. It has no idle timeout
//! (its client never speaks): a dead peer is found by a write failing or by
//! its queue filling. Closing queues the `closing` event (with `retry:`),
//! ends the stream with a FIN once that has left, and lingers for the peer's
//! close until the deadline, as WebSocket does after its close frame. A
//! stream of several rooms writes its own `id:` lines (`StreamIds`).
//!
//! Sans-I/O over [`ShardSocket`], like the WebSocket connection.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::close_stage::CloseStage;
use super::conn::write_until_blocked;
use super::socket::ShardSocket;
use super::ws::{Life, ShardContext};
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::fanout::stream_ids::StreamIds;
use crate::protocol::{messages, sse};
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::{self, Membership};

pub struct SseConn<S> {
    socket: S,
    subscriber: Arc<Subscriber>,
    memberships: Vec<Membership>,
    out: Outbox,
    /// A stream of several rooms: the seqs its `id:` lines carry (boxed: a
    /// connection slot of the shard is as small as a WebSocket one).
    ids: Option<Box<StreamIds>>,
    closing: CloseStage,
    _permit: Option<ConnectionPermit>,
}

impl<S: ShardSocket> SseConn<S> {
    /// `welcome_seqs`: each membership's seq in the welcome, where the stream's id starts.
    pub fn new(
        socket: S,
        subscriber: Arc<Subscriber>,
        memberships: Vec<Membership>,
        welcome_seqs: &[u64],
        permit: Option<ConnectionPermit>,
    ) -> SseConn<S> {
        let ids = (memberships.len() > 1)
            .then(|| StreamIds::new(memberships.iter().map(|m| m.room.id().clone()).zip(welcome_seqs.iter().copied())))
            .map(Box::new);
        SseConn {
            socket,
            out: Outbox::new(&subscriber),
            subscriber,
            memberships,
            ids,
            closing: CloseStage::default(),
            _permit: permit,
        }
    }

    /// The deadline a handler just started, once: the shard queues it.
    pub fn new_deadline(&mut self) -> Option<Instant> {
        self.closing.new_deadline()
    }

    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// The socket is readable: drop what the client sends until it would block; end of input ends the stream.
    pub fn on_readable(&mut self, buf: &mut [u8]) -> Life {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return Life::Over,
                Ok(_) => {}
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

    /// Something was queued, the socket is writable, or the heartbeat came:
    /// write what can go, then park the queue's waker (`cx`).
    pub fn on_woken(&mut self, cx: &mut Context<'_>, shard: &ShardContext, now: Instant) -> Life {
        let ids = &mut self.ids;
        let written = write_until_blocked(
            &mut self.socket,
            &mut self.out,
            &self.subscriber,
            &mut self.closing,
            (shard, &shard.sse_deliveries),
            now,
            |reason, out| out.push_frame(sse::closing_event(&messages::closing(reason), reason.reconnect_after_ms())),
            |out, socket| match ids.as_deref_mut() {
                Some(ids) => out.write_with_ids(ids, |slices| socket.write_vectored(slices)),
                None => out.write(|slices| socket.write_vectored(slices)),
            },
        );
        written.unwrap_or_else(|| self.park(cx, shard, now))
    }

    /// Nothing left to write: end the stream if closing, else wait for the queue.
    fn park(&mut self, cx: &mut Context<'_>, shard: &ShardContext, now: Instant) -> Life {
        if self.closing.flushed(&mut self.socket, now) {
            return Life::Open;
        }
        match self.subscriber.poll_woken(cx) {
            Poll::Ready(()) => self.on_woken(cx, shard, now),
            Poll::Pending => Life::Open,
        }
    }

    /// The deadline passed: the last event did not leave in time, or the peer did not close.
    pub fn on_deadline(&mut self, now: Instant) -> Life {
        self.closing.on_deadline(now)
    }
}

impl<S> Drop for SseConn<S> {
    fn drop(&mut self) {
        session::leave(&self.memberships);
    }
}
