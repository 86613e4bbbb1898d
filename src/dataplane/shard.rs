//! One shard thread: a mio event loop that owns its connections (a slab of
//! [`Conn`]s: WebSocket subscribers and SSE streams, and the QUIC connections of its socket of the QUIC port,
//! [`QuicPort`]), drains its lane of every room that asks, and writes to its
//! connections directly.
//!
//! Each pass: wait for socket events, the inbox's wake or the nearest
//! deadline; handle socket events; take the inbox (adoptions, lane drains,
//! connections woken elsewhere); drain the lanes, which pushes into members'
//! queues and, through their wakers, fills this thread's dirty list; then
//! write each dirty connection once. So a broadcast costs this thread one
//! wake, however many of its connections it reaches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::Conn;
use super::inbox::{self, ConnWaker, Inbox, Pending};
use super::quic::timers::earliest;
use super::quic::{QUIC_BIT, QuicPort};
use super::socket::AnySocket;
use super::sse::SseConn;
use super::ws::{Life, ShardContext, WsConn};
use super::{Adoption, Joined};
use crate::protocol::Framing;

/// The inbox's wake.
pub const WAKE: Token = Token(usize::MAX);
/// The shard's QUIC socket.
const UDP: Token = Token(usize::MAX - 1);
/// The shard's read buffer: subscribers send only pings and control frames.
const READ_BUFFER: usize = 4096;
/// Connections written between two looks at the inbox during a pass: a
/// look is one uncontended lock, a pass over 10,000 connections ~50 ms.
const INBOX_EVERY: usize = 256;

struct Entry {
    conn: Conn,
    waker: Waker,
}

pub struct Shard {
    pub index: usize,
    /// How many shards the node has.
    pub shards: usize,
    pub poll: Poll,
    pub inbox: Arc<Inbox>,
    /// The most connections this shard will hold: the slab is reserved for
    /// them at start, so it never doubles (and copies, and leaves the old
    /// half behind in the allocator) as the audience grows. Untouched pages
    /// of the reservation cost no memory.
    pub capacity: usize,
    pub context: ShardContext,
}

/// A shard's state while it runs.
struct Running {
    index: usize,
    shards: usize,
    /// QUIC, once the node handed this shard its socket.
    quic: Option<QuicPort>,
    poll: Poll,
    inbox: Arc<Inbox>,
    context: ShardContext,
    conns: Slab<Entry>,
    /// What the inbox held at the last look (kept for its buffers).
    pending: Pending,
    /// Connections to write this pass, in order; may repeat.
    dirty: Vec<u32>,
    /// Close deadlines, soonest first: most are `now` plus the same
    /// [`super::ws::CLOSE_DEADLINE`], a Pusher client's held drain close
    /// is later. An entry whose slot was reused or whose connection moved
    /// on is checked against the connection's own deadline and passes harmlessly.
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Shard {
    pub fn run(self) {
        let Shard { index, shards, poll, inbox, capacity, context } = self;
        inbox.enter();
        let mut running = Running {
            index,
            shards,
            quic: None,
            poll,
            inbox,
            context,
            conns: Slab::with_capacity(capacity),
            pending: Pending::default(),
            dirty: Vec::new(),
            deadlines: BinaryHeap::new(),
        };
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let next = earliest(
                running.deadlines.peek().map(|Reverse((at, _))| *at),
                running.quic.as_ref().and_then(QuicPort::next_wake),
            );
            // A queue pushed to late in the last pass (a pong to a QUIC ping read
            // mid-pass, a close at its deadline) left its connection in DIRTY:
            // look again at once rather than sleep on it.
            let timeout = if inbox::dirty_pending() {
                Some(std::time::Duration::ZERO)
            } else {
                next.map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(error) = running.poll.poll(&mut events, timeout)
                && error.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(%error, shard = index, "shard poll failed; its connections are dropped");
                return;
            }
            let now = Instant::now();
            running.handle_events(&events, &mut buf, now);
            if let Some(quic) = &mut running.quic {
                quic.receive(now);
            }
            if !running.take_inbox(now) || !running.write_dirty(now) {
                return running.stop(now);
            }
            // A drain close that came due is taken in the same pass.
            if running.expire(now) && !running.write_dirty(now) {
                return running.stop(now);
            }
            if let Some(quic) = &mut running.quic {
                quic.expire(now);
                quic.flush(now);
            }
        }
    }
}

impl Running {
    /// Reads what the sockets have; the connections that live on are written this pass.
    fn handle_events(&mut self, events: &Events, buf: &mut [u8], now: Instant) {
        for event in events.iter() {
            let token = event.token().0;
            if event.token() == WAKE {
                continue;
            }
            if event.token() == UDP {
                if let Some(quic) = &mut self.quic {
                    quic.on_socket(event.is_readable(), event.is_writable(), now);
                }
                continue;
            }
            let Some(entry) = self.conns.get_mut(token) else { continue };
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            if readable && entry.conn.on_readable(buf, &self.context, now) == Life::Over {
                self.close(token);
            } else {
                self.dirty.push(token as u32);
            }
        }
    }

    /// Handles what other threads posted: adoptions, lane drains (whose pushes
    /// mark their connections dirty on this thread), connections woken
    /// elsewhere. Returns false once the shard must stop.
    fn take_inbox(&mut self, now: Instant) -> bool {
        self.inbox.take(&mut self.pending);
        if self.pending.stop {
            return false;
        }
        if let Some(setup) = self.pending.serve_quic.take() {
            self.serve_quic(setup);
        }
        if std::mem::take(&mut self.pending.draining) {
            if let Some(quic) = &mut self.quic {
                quic.drain_began(now);
            }
            // A Pusher connection in no room hears of the drain only from itself.
            self.for_each_pusher_conn(|token, _, dirty| dirty.push(token));
        }
        if std::mem::take(&mut self.pending.heartbeat) {
            self.for_each_pusher_conn(|_, conn, _| conn.subscriber().heartbeat());
        }
        let adoptions = std::mem::take(&mut self.pending.adopt);
        for adoption in adoptions {
            self.adopt(adoption, now);
        }
        for room in self.pending.drains.drain(..) {
            room.drain_lane(self.index);
        }
        self.dirty.append(&mut self.pending.ready);
        inbox::take_dirty(&mut self.dirty);
        true
    }

    /// Writes every dirty connection once, in order. The inbox is looked at
    /// again every few connections, so a broadcast accepted during a long
    /// pass joins it (queued behind, and written with, what the rest of the
    /// pass writes) instead of waiting for the next one. Returns false once
    /// the shard must stop.
    fn write_dirty(&mut self, now: Instant) -> bool {
        let mut next = 0;
        while next < self.dirty.len() {
            if next % INBOX_EVERY == INBOX_EVERY - 1 {
                if !self.take_inbox(now) {
                    return false;
                }
                if let Some(quic) = &mut self.quic {
                    // A wave's ACKs come back while the wave is written; left
                    // in the socket they overflow its buffer, and each lost
                    // one costs a retransmission.
                    quic.receive_now(now);
                }
            }
            let token = self.dirty[next];
            next += 1;
            if token & QUIC_BIT != 0 {
                if let Some(quic) = &mut self.quic {
                    quic.prefetch(&self.dirty[next..]);
                    quic.woken((token & !QUIC_BIT) as usize, now);
                }
                continue;
            }
            let token = token as usize;
            let Some(entry) = self.conns.get_mut(token) else { continue };
            match entry.conn.on_woken(&mut Context::from_waker(&entry.waker), &self.context, now) {
                Life::Open => {
                    if let Some(at) = entry.conn.new_deadline() {
                        self.deadlines.push(Reverse((at, token)));
                    }
                }
                Life::Over => self.close(token),
            }
        }
        self.dirty.clear();
        true
    }

    /// Ends the connections whose close stage ran out of time; the others
    /// whose deadline passed are woken (a Pusher drain close may be due).
    /// Returns whether any was.
    fn expire(&mut self, now: Instant) -> bool {
        let mut woken = false;
        while let Some(&Reverse((at, token))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(entry) = self.conns.get_mut(token) else { continue };
            if entry.conn.on_deadline(now) == Life::Over {
                self.close(token);
            } else {
                self.dirty.push(token as u32);
                woken = true;
            }
        }
        woken
    }

    /// Calls `each` with every Pusher connection of the shard (its token, the
    /// connection and the dirty list).
    fn for_each_pusher_conn(&mut self, mut each: impl FnMut(u32, &mut WsConn<AnySocket>, &mut Vec<u32>)) {
        for (token, entry) in self.conns.iter_mut() {
            if let Some(conn) = entry.conn.pusher() {
                each(token as u32, conn, &mut self.dirty);
            }
        }
    }

    /// Takes a connection over from the control plane: register it, park
    /// its waker, and write what was queued while it was handed over. One
    /// that cannot be registered is dropped (leaving its rooms).
    fn adopt(&mut self, adoption: Adoption, now: Instant) {
        let Adoption { socket, early_input, id, join, permit, pusher } = adoption;
        let Joined { subscriber, memberships, welcome_seqs } = join();
        debug_assert_eq!(subscriber.id(), id, "the subscriber of the id that picked this shard");
        let mut conn = if let Some(app) = pusher {
            let mut ws = WsConn::new(socket, subscriber, memberships, Some(permit)).with_pusher(app);
            if !early_input.is_empty() {
                ws.early_input(early_input, &self.context, now);
            }
            Conn::Ws(ws)
        } else if subscriber.framing() == Framing::Sse {
            // What an SSE client sent past its request means nothing: dropped.
            Conn::Sse(SseConn::new(socket, subscriber, memberships, &welcome_seqs, Some(permit)))
        } else {
            let mut ws = WsConn::new(socket, subscriber, memberships, Some(permit));
            if !early_input.is_empty() {
                ws.early_input(early_input, &self.context, now);
            }
            Conn::Ws(ws)
        };
        let vacant = self.conns.vacant_entry();
        let token = vacant.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.poll.registry().register(conn.socket_mut().source(), Token(token), interest) {
            return tracing::warn!(%error, "cannot register a subscriber's socket with its shard");
        }
        let waker = Waker::from(Arc::new(ConnWaker { inbox: self.inbox.clone(), token: token as u32 }));
        vacant.insert(Entry { conn, waker });
        self.dirty.push(token as u32);
    }

    /// Starts serving this shard's socket of the QUIC port.
    fn serve_quic(&mut self, setup: super::quic::QuicSetup) {
        let mut port = QuicPort::new(setup, self.index, self.shards, self.inbox.clone());
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.poll.registry().register(port.socket_mut(), UDP, interest) {
            return tracing::error!(%error, shard = self.index, "cannot register the QUIC socket; this shard serves no QUIC");
        }
        // Datagrams may be waiting already: read at the next pass.
        port.on_socket(true, false, Instant::now());
        self.quic = Some(port);
    }

    /// The shard stops: QUIC connections are told (1001) before the thread ends.
    fn stop(&mut self, now: Instant) {
        if let Some(quic) = &mut self.quic {
            quic.stop(now);
        }
    }

    fn close(&mut self, token: usize) {
        let mut entry = self.conns.remove(token);
        let _ = self.poll.registry().deregister(entry.conn.socket_mut().source());
    }
}
