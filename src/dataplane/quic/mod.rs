//! QUIC and WebTransport on a shard thread (docs/architecture.md, "QUIC and
//! WebTransport on the shard threads"): the shard's socket of the QUIC
//! port's `SO_REUSEPORT` group, its own `quinn_proto::Endpoint`, and the
//! connections that socket's clients opened, driven from the shard's loop.
//!
//! * [`conn`]: one connection's subscriber state machine.
//! * [`timers`]: the shard's QUIC deadlines.
//! * [`udp`]: the socket group and the `sendmmsg` batch.
//! * [`pktinfo`]: on a wildcard address, where each datagram came to and
//!   goes from.
//!
//! Invariants: a connection lives on the shard whose socket received its
//! first Initial, for its whole life (migration is off); its subscriber
//! joins that shard's presence shard. Driving a connection (after its
//! datagrams, a queue wake or a deadline) always ends with its packets in
//! the batch and its next deadline queued; a drained connection is removed
//! in the same drive, before the endpoint can hand its handle to another.

pub mod conn;
pub mod pktinfo;
pub mod timers;
pub mod udp;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::BytesMut;
use quinn_proto::{ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Incoming, ServerConfig};

use super::inbox::{ConnWaker, Inbox};
use crate::state::Shared;
use crate::transport::turn::Turn;
use conn::{Cx, QuicConn};
use timers::Timers;
use udp::Batch;

/// How many connections ahead of the one being written the write pass asks
/// for the lines holding a connection's pointers, and then for what they
/// point at: far enough apart that the second finds the first's lines loaded.
const PREFETCH_ROOTS_AHEAD: usize = 2;
const PREFETCH_STATE_AHEAD: usize = 1;

/// Set in a dirty-list token that names a QUIC connection (by its handle).
pub const QUIC_BIT: u32 = 1 << 31;
/// Datagrams read per pass before the shard turns to its other work.
const RECEIVE_BUDGET: usize = 1024;
/// The largest UDP payload.
const MAX_UDP: usize = 65_535;

/// What a shard needs to serve QUIC, handed over once the node is built.
pub struct QuicSetup {
    pub socket: std::net::UdpSocket,
    pub endpoint: Arc<EndpointConfig>,
    pub server: Arc<ServerConfig>,
    pub shared: Arc<Shared>,
}

/// A shard's QUIC side.
pub struct QuicPort {
    socket: mio::net::UdpSocket,
    /// Bound to a wildcard address: each datagram's destination is read with
    /// it and answered from (`pktinfo::receive_with_destination`).
    wildcard: bool,
    endpoint: Endpoint,
    /// By connection handle (the endpoint's own slab index).
    conns: Vec<Option<QuicConn>>,
    timers: Timers,
    batch: Batch,
    shared: Arc<Shared>,
    shard: usize,
    shards: usize,
    inbox: Arc<Inbox>,
    /// Handshakes waiting for their turn (`--accept-rate`), in turn order.
    waiting: VecDeque<(Instant, Incoming)>,
    /// The socket may hold datagrams this pass left (the budget ran out).
    unread: bool,
    /// The kernel's send buffer was full: the batch waits for WRITABLE, and
    /// these connections still had packets to write.
    blocked: bool,
    unsent: Vec<u32>,
    /// Connections that received datagrams this pass, to drive once each.
    touched: Vec<u32>,
    read_buf: Vec<u8>,
    /// Where datagrams are kept for quinn-proto (split off, so one
    /// allocation serves many small datagrams).
    datagrams: BytesMut,
    /// The endpoint's own answers (resets, refusals) are written here.
    scratch: Vec<u8>,
}

impl QuicPort {
    pub fn new(setup: QuicSetup, shard: usize, shards: usize, inbox: Arc<Inbox>) -> QuicPort {
        let QuicSetup { socket, endpoint, server, shared } = setup;
        let wildcard = socket.local_addr().is_ok_and(|addr| addr.ip().is_unspecified());
        QuicPort {
            socket: mio::net::UdpSocket::from_std(socket),
            wildcard,
            // No path MTU discovery (`allow_mtud: false`): datagrams stay at 1,200 bytes.
            endpoint: Endpoint::new(endpoint, Some(server), false, None),
            conns: Vec::new(),
            timers: Timers::default(),
            batch: Batch::default(),
            shared,
            shard,
            shards,
            inbox,
            waiting: VecDeque::new(),
            unread: false,
            blocked: false,
            unsent: Vec::new(),
            touched: Vec::new(),
            read_buf: vec![0; MAX_UDP],
            datagrams: BytesMut::new(),
            scratch: Vec::new(),
        }
    }

    pub fn socket_mut(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// When the shard must look again at the latest: a deadline, a turn, or
    /// at once when datagrams were left unread.
    pub fn next_wake(&self) -> Option<Instant> {
        if self.unread {
            return Some(Instant::now());
        }
        timers::earliest(self.timers.next(), self.waiting.front().map(|(at, _)| *at))
    }

    /// The socket is readable, writable, or both.
    pub fn on_socket(&mut self, readable: bool, writable: bool, now: Instant) {
        if writable && self.blocked {
            self.flush(now);
        }
        if readable {
            self.unread = true;
        }
    }

    /// Reads the socket whether or not it reported readable (in the middle
    /// of a long pass, which no readiness event interrupts).
    pub fn receive_now(&mut self, now: Instant) {
        self.unread = true;
        self.receive(now);
    }

    /// Reads what the socket has (up to the budget) and drives each
    /// connection that received something once.
    pub fn receive(&mut self, now: Instant) {
        if !self.unread {
            return;
        }
        for _ in 0..RECEIVE_BUDGET {
            let received = if self.wildcard {
                pktinfo::receive_with_destination(&self.socket, &mut self.read_buf)
            } else {
                self.socket.recv_from(&mut self.read_buf).map(|(len, from)| (len, from, None))
            };
            let (len, from, local_ip) = match received {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unread = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error of an earlier send, reported here: not ours to act on.
                Err(_) => continue,
            };
            self.datagrams.reserve(len);
            self.datagrams.extend_from_slice(&self.read_buf[..len]);
            let datagram = self.datagrams.split();
            self.scratch.clear();
            match self.endpoint.handle(now, from, local_ip, None, datagram, &mut self.scratch) {
                Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                    if let Some(Some(entry)) = self.conns.get_mut(handle.0) {
                        entry.conn.handle_event(event);
                        if !entry.touched {
                            entry.touched = true;
                            self.touched.push(handle.0 as u32);
                        }
                    }
                }
                Some(DatagramEvent::NewConnection(incoming)) => self.on_incoming(incoming, now),
                Some(DatagramEvent::Response(transmit)) => {
                    self.push_scratch(transmit.destination, transmit.src_ip, transmit.size)
                }
                None => {}
            }
        }
        for slot in std::mem::take(&mut self.touched) {
            if let Some(Some(entry)) = self.conns.get_mut(slot as usize) {
                entry.touched = false;
            }
            self.drive(slot as usize, now);
        }
    }

    /// A new client: refused while draining or full, else accepted at its turn.
    fn on_incoming(&mut self, incoming: Incoming, now: Instant) {
        let turn = Turn::take(&self.shared);
        if turn.is_now() {
            self.accept(incoming, now);
        } else {
            // quinn-proto keeps its Initial (and buffers what follows) meanwhile.
            self.waiting.push_back((now + turn.wait(), incoming));
        }
    }

    fn accept(&mut self, incoming: Incoming, now: Instant) {
        let full = self.shared.connections.is_full();
        if full || self.shared.drain.is_draining() {
            if full {
                self.shared.metrics.rejected_over_capacity.increment(1);
            }
            self.scratch.clear();
            let transmit = self.endpoint.refuse(incoming, &mut self.scratch);
            return self.push_scratch(transmit.destination, transmit.src_ip, transmit.size);
        }
        self.scratch.clear();
        match self.endpoint.accept(incoming, now, &mut self.scratch, None) {
            Ok((ConnectionHandle(slot), connection)) => {
                if self.conns.len() <= slot {
                    self.conns.resize_with(slot + 1, || None);
                }
                let token = slot as u32 | QUIC_BIT;
                let waker = Waker::from(Arc::new(ConnWaker { inbox: self.inbox.clone(), token }));
                self.conns[slot] = Some(QuicConn::new(connection, waker));
                self.drive(slot, now);
            }
            Err(error) => {
                tracing::debug!(cause = %error.cause, "quic handshake not accepted");
                if let Some(transmit) = error.response {
                    self.push_scratch(transmit.destination, transmit.src_ip, transmit.size);
                }
            }
        }
    }

    /// Cache hints for the QUIC connections among the write pass's next
    /// dirty tokens (`upcoming`, from the one after the connection being
    /// written): each connection is cold by its turn, and most of its cost
    /// is waiting on loads that follow pointers (docs/benchmarks.md §36).
    pub fn prefetch(&self, upcoming: &[u32]) {
        let conn = |ahead: usize| {
            let token = *upcoming.get(ahead - 1)?;
            if token & QUIC_BIT == 0 {
                return None;
            }
            self.conns.get((token & !QUIC_BIT) as usize)?.as_ref()
        };
        if let Some(conn) = conn(PREFETCH_STATE_AHEAD) {
            conn.prefetch_state();
        }
        if let Some(conn) = conn(PREFETCH_ROOTS_AHEAD) {
            conn.prefetch_roots();
        }
    }

    /// A queue wake (a broadcast, a close) for connection `slot`.
    pub fn woken(&mut self, slot: usize, now: Instant) {
        let Some(Some(entry)) = self.conns.get_mut(slot) else { return };
        entry.on_woken(&Cx { shared: &self.shared, shard: self.shard, shards: self.shards, now });
        self.drive(slot, now);
    }

    /// Runs the deadlines that are due, and the turns that came.
    pub fn expire(&mut self, now: Instant) {
        while let Some(slot) = self.timers.pop_due(now) {
            let Some(Some(entry)) = self.conns.get_mut(slot as usize) else { continue };
            // Every drive sets the deadline, so it is due; should it have
            // moved without one, it is put back rather than run early.
            let next = entry.next_deadline();
            if next.is_some_and(|at| at > now) {
                self.timers.set(slot, next);
                continue;
            }
            entry.on_timeout(&Cx { shared: &self.shared, shard: self.shard, shards: self.shards, now });
            self.drive(slot as usize, now);
        }
        while self.waiting.front().is_some_and(|(at, _)| *at <= now) {
            let (_, incoming) = self.waiting.pop_front().expect("just seen");
            self.accept(incoming, now);
        }
    }

    /// The drain began: handshakes waiting for their turn are refused now.
    pub fn drain_began(&mut self, now: Instant) {
        for (_, incoming) in std::mem::take(&mut self.waiting) {
            self.accept(incoming, now); // refused: the node is draining
        }
    }

    /// Sends what the batch holds; once the socket takes it all, drives the
    /// connections that had packets left when it was full, and sends theirs.
    /// Whatever unblocks the socket ends here, so none is left waiting.
    pub fn flush(&mut self, now: Instant) {
        loop {
            if self.batch.flush(&self.socket).is_err() {
                self.blocked = true; // WouldBlock: WRITABLE will come
                return;
            }
            self.blocked = false;
            if self.unsent.is_empty() {
                return;
            }
            for slot in std::mem::take(&mut self.unsent) {
                if let Some(Some(entry)) = self.conns.get_mut(slot as usize) {
                    entry.unsent = false;
                }
                self.drive(slot as usize, now);
            }
        }
    }

    /// The node stops: every connection is closed (1001) and told so now.
    pub fn stop(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            if let Some(Some(entry)) = self.conns.get_mut(slot) {
                entry.stop(now);
                self.drive(slot, now);
            }
        }
        self.flush(now);
    }

    /// Everything a connection has to do after something happened to it:
    /// its application events, its endpoint events, its packets, its next
    /// deadline; or its removal once drained.
    fn drive(&mut self, slot: usize, now: Instant) {
        let QuicPort { conns, endpoint, timers, batch, shared, socket, blocked, unsent, shard, shards, .. } = self;
        let Some(Some(entry)) = conns.get_mut(slot) else { return };
        let cx = Cx { shared, shard: *shard, shards: *shards, now };
        loop {
            entry.on_events(&cx);
            let mut more = false;
            while let Some(event) = entry.conn.poll_endpoint_events() {
                if let Some(event) = endpoint.handle_event(ConnectionHandle(slot), event) {
                    entry.conn.handle_event(event);
                    more = true;
                }
            }
            if !*blocked {
                loop {
                    if batch.is_full() && batch.flush(socket).is_err() {
                        *blocked = true;
                        break;
                    }
                    let buffer = batch.next_buffer();
                    match entry.conn.poll_transmit(now, 1, buffer) {
                        Some(transmit) => batch.commit(transmit.destination, transmit.src_ip, transmit.size),
                        None => break,
                    }
                }
            }
            if *blocked && !entry.unsent {
                entry.unsent = true;
                unsent.push(slot as u32);
            }
            if !more {
                break;
            }
        }
        if entry.conn.is_drained() {
            conns[slot] = None;
            timers.set(slot as u32, None);
        } else {
            timers.set(slot as u32, entry.next_deadline());
        }
    }

    /// Queues the endpoint answer written to `scratch`.
    fn push_scratch(&mut self, to: std::net::SocketAddr, from: Option<std::net::IpAddr>, size: usize) {
        // Only `flush` clears `blocked` (it re-drives the connections waiting).
        if self.batch.is_full() && self.batch.flush(&self.socket).is_err() {
            self.blocked = true;
            return; // dropped, as a network would; the client retransmits
        }
        self.batch.push(to, from, &self.scratch[..size]);
    }
}
