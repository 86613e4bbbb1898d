//! One shard thread: a mio event loop that owns its connections (a slab of
//! [`WsConn`]s), drains its lane of every room that asks, and writes to its
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

use super::Adoption;
use super::inbox::{self, ConnWaker, Inbox, Pending};
use super::socket::AnySocket;
use super::ws::{Life, WsConn};

/// The inbox's wake.
pub const WAKE: Token = Token(usize::MAX);
/// The shard's read buffer: subscribers send only pings and control frames.
const READ_BUFFER: usize = 4096;
/// Connections written between two looks at the inbox during a pass: a
/// look is one uncontended lock, a pass over 10,000 connections ~50 ms.
const INBOX_EVERY: usize = 256;

struct Entry {
    conn: WsConn<AnySocket>,
    waker: Waker,
    /// The deadline already in the shard's heap for this connection.
    scheduled: Option<Instant>,
}

impl Entry {
    /// Puts the connection's current deadline in the heap, once.
    fn schedule(&mut self, token: usize, deadlines: &mut BinaryHeap<Reverse<(Instant, usize)>>) {
        if let Some(at) = self.conn.deadline
            && self.scheduled != Some(at)
        {
            self.scheduled = Some(at);
            deadlines.push(Reverse((at, token)));
        }
    }
}

pub struct Shard {
    pub index: usize,
    pub poll: Poll,
    pub inbox: Arc<Inbox>,
    /// The most connections this shard will hold: the slab is reserved for
    /// them at start, so it never doubles (and copies, and leaves the old
    /// half behind in the allocator) as the audience grows. Untouched pages
    /// of the reservation cost no memory.
    pub capacity: usize,
}

impl Shard {
    pub fn run(self) {
        let Shard { index, mut poll, inbox, capacity } = self;
        inbox.enter();
        let mut conns: Slab<Entry> = Slab::with_capacity(capacity);
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut pending = Pending::default();
        let mut dirty: Vec<u32> = Vec::new();
        let mut deadlines: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        loop {
            let timeout = deadlines.peek().map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
            if let Err(error) = poll.poll(&mut events, timeout)
                && error.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(%error, shard = index, "shard poll failed; its connections are dropped");
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                let token = event.token();
                if token == WAKE {
                    continue;
                }
                let Some(entry) = conns.get_mut(token.0) else { continue };
                let mut life = Life::Open;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    life = entry.conn.on_readable(&mut buf, now);
                }
                if life == Life::Open {
                    dirty.push(token.0 as u32);
                } else {
                    close(&poll, &mut conns, token.0);
                }
            }
            if !take_inbox(index, &poll, &inbox, &mut pending, &mut conns, &mut dirty, now) {
                return;
            }
            // Written in order; the inbox is looked at again every few
            // connections, so a broadcast accepted during a long pass joins
            // it (queued behind, and written with, what the rest of the pass
            // writes) instead of waiting for the next one.
            let mut next = 0;
            while next < dirty.len() {
                if next % INBOX_EVERY == INBOX_EVERY - 1
                    && !take_inbox(index, &poll, &inbox, &mut pending, &mut conns, &mut dirty, now)
                {
                    return;
                }
                let token = dirty[next] as usize;
                next += 1;
                let Some(entry) = conns.get_mut(token) else { continue };
                match entry.conn.on_woken(&mut Context::from_waker(&entry.waker), now) {
                    Life::Open => entry.schedule(token, &mut deadlines),
                    Life::Over => close(&poll, &mut conns, token),
                }
            }
            dirty.clear();
            while let Some(&Reverse((at, token))) = deadlines.peek() {
                if at > now {
                    break;
                }
                deadlines.pop();
                // An entry may be stale: a newer deadline, or a reused slot, decides.
                if let Some(entry) = conns.get_mut(token)
                    && entry.conn.on_deadline(now) == Life::Over
                {
                    close(&poll, &mut conns, token);
                }
            }
        }
    }
}

/// Handles what other threads posted: adoptions, lane drains (whose pushes
/// mark their connections dirty on this thread), connections woken
/// elsewhere. Returns false once the shard must stop.
fn take_inbox(
    index: usize,
    poll: &Poll,
    inbox: &Arc<Inbox>,
    pending: &mut Pending,
    conns: &mut Slab<Entry>,
    dirty: &mut Vec<u32>,
    now: Instant,
) -> bool {
    inbox.take(pending);
    if pending.stop {
        return false;
    }
    for adoption in pending.adopt.drain(..) {
        adopt(poll, inbox, conns, dirty, adoption, now);
    }
    for room in pending.drains.drain(..) {
        room.drain_lane(index);
    }
    dirty.append(&mut pending.ready);
    inbox::take_dirty(dirty);
    true
}

/// Takes a connection over from the control plane: register it, park its
/// waker, and write what was queued while it was handed over.
fn adopt(
    poll: &Poll,
    inbox: &Arc<Inbox>,
    conns: &mut Slab<Entry>,
    dirty: &mut Vec<u32>,
    adoption: Adoption,
    now: Instant,
) {
    let Adoption { mut socket, early_input, subscriber, memberships, idle_timeout, deliveries, permit } = adoption;
    let vacant = conns.vacant_entry();
    let token = vacant.key();
    if let Err(error) = poll.registry().register(socket.source(), Token(token), Interest::READABLE | Interest::WRITABLE)
    {
        tracing::warn!(%error, "cannot register a subscriber's socket with its shard");
        return session_leave(memberships);
    }
    let waker = Waker::from(Arc::new(ConnWaker { inbox: inbox.clone(), token: token as u32 }));
    let mut conn = WsConn::new(socket, subscriber, memberships, idle_timeout, deliveries, Some(permit));
    if !early_input.is_empty() {
        conn.early_input(early_input, now);
    }
    vacant.insert(Entry { conn, waker, scheduled: None });
    dirty.push(token as u32);
}

fn session_leave(memberships: Vec<crate::transport::session::Membership>) {
    crate::transport::session::leave(&memberships);
}

fn close(poll: &Poll, conns: &mut Slab<Entry>, token: usize) {
    let mut entry = conns.remove(token);
    let _ = poll.registry().deregister(entry.conn.socket_mut().source());
}
