//! A shard's TCP connection: a WebSocket subscriber or an SSE stream, each its
//! own state machine with the same handlers, so the shard's loop treats them
//! alike; and the write loop both run.

use std::io;
use std::task::Context;
use std::time::Instant;

use metrics::Counter;

use super::close_stage::CloseStage;
use super::socket::{AnySocket, ShardSocket};
use super::sse::SseConn;
use super::ws::{Life, ShardContext, WsConn};
use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::protocol::close::CloseReason;

pub enum Conn {
    Ws(WsConn<AnySocket>),
    Sse(SseConn<AnySocket>),
}

impl Conn {
    pub fn socket_mut(&mut self) -> &mut AnySocket {
        match self {
            Conn::Ws(conn) => conn.socket_mut(),
            Conn::Sse(conn) => conn.socket_mut(),
        }
    }

    pub fn on_readable(&mut self, buf: &mut [u8], shard: &ShardContext, now: Instant) -> Life {
        match self {
            Conn::Ws(conn) => conn.on_readable(buf, shard, now),
            Conn::Sse(conn) => conn.on_readable(buf),
        }
    }

    pub fn on_woken(&mut self, cx: &mut Context<'_>, shard: &ShardContext, now: Instant) -> Life {
        match self {
            Conn::Ws(conn) => conn.on_woken(cx, shard, now),
            Conn::Sse(conn) => conn.on_woken(cx, shard, now),
        }
    }

    /// A deadline passed: `Over` when the connection ran out of time; one
    /// that lives on is woken (a Pusher drain close may have come due).
    pub fn on_deadline(&mut self, now: Instant) -> Life {
        match self {
            Conn::Ws(conn) => conn.on_deadline(now),
            Conn::Sse(conn) => conn.on_deadline(now),
        }
    }

    /// A Pusher connection: the shard beats for it and wakes it when the drain begins (`dataplane::pusher`).
    pub fn pusher(&mut self) -> Option<&mut WsConn<AnySocket>> {
        match self {
            Conn::Ws(conn) if conn.is_pusher() => Some(conn),
            _ => None,
        }
    }

    pub fn new_deadline(&mut self) -> Option<Instant> {
        match self {
            Conn::Ws(conn) => conn.new_deadline(),
            Conn::Sse(conn) => conn.new_deadline(),
        }
    }
}

/// Writes until the socket is full (`Some(Open)`: WRITABLE comes) or
/// fails (`Some(Over)`), or nothing is left (`None`: the caller parks). Once
/// the queue asks to close and the backlog before that has left (a slow
/// consumer's is dropped by `refill`), `last_words` queues the frames that end
/// the connection and the close stage begins.
#[allow(clippy::too_many_arguments)] // the connection's parts, borrowed apart
pub fn write_until_blocked<S: ShardSocket>(
    socket: &mut S,
    out: &mut Outbox,
    subscriber: &Subscriber,
    closing: &mut CloseStage,
    counters: (&ShardContext, &Counter),
    now: Instant,
    last_words: impl Fn(CloseReason, &mut Outbox),
    mut write: impl FnMut(&mut Outbox, &mut S) -> io::Result<usize>,
) -> Option<Life> {
    loop {
        if out.is_empty()
            && closing.is_open()
            && let Some(reason) = out.refill(subscriber)
            && out.is_empty()
        {
            last_words(reason, out);
            closing.begin(now);
        }
        match write_step(socket, out, subscriber, counters, now, &mut write) {
            Step::Wrote => {}
            Step::Blocked => return Some(Life::Open),
            Step::Failed => return Some(Life::Over),
            Step::Idle => return None,
        }
    }
}

/// What one write step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Bytes left (or the call was interrupted): write again.
    Wrote,
    /// The socket is full: WRITABLE comes.
    Blocked,
    /// Nothing is left to write.
    Idle,
    /// The socket failed: the connection is over.
    Failed,
}

/// One step of writing a connection's batch: TLS records of frames already
/// taken leave first; else broadcasts whose ttl passed become `lagged`, and
/// `write` sends what one call takes. Bytes that left are counted in the
/// queue, and a finished batch's broadcasts in `deliveries`.
fn write_step<S: ShardSocket>(
    socket: &mut S,
    out: &mut Outbox,
    subscriber: &Subscriber,
    (shard, deliveries): (&ShardContext, &Counter),
    now: Instant,
    write: impl FnOnce(&mut Outbox, &mut S) -> io::Result<usize>,
) -> Step {
    let written = if socket.has_pending_output() {
        socket.flush_pending().map(|()| 0)
    } else if out.is_empty() {
        return Step::Idle;
    } else {
        let expired = out.expire(subscriber, now);
        if expired > 0 {
            shard.expired.increment(expired);
        }
        write(out, socket)
    };
    match written {
        Ok(bytes) => {
            out.sent(subscriber, bytes, deliveries);
            Step::Wrote
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Wrote,
        Err(_) => Step::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sse_stream_does_not_grow_the_shards_slab() {
        let (ws, sse, conn) = (
            std::mem::size_of::<WsConn<AnySocket>>(),
            std::mem::size_of::<SseConn<AnySocket>>(),
            std::mem::size_of::<Conn>(),
        );
        assert!(sse <= ws, "SseConn {sse} B > WsConn {ws} B");
        assert_eq!(conn, ws, "the enum costs no more than a WebSocket connection");
    }
}
