//! The data plane: per-core shard threads that own their subscribers'
//! sockets and deliver to them directly (docs/architecture.md, "The data
//! plane on shard threads").
//!
//! * [`shard`]: one thread's event loop: socket events, its inbox, its lane
//!   of every room, its connections' deadlines.
//! * [`inbox`]: how other threads reach a shard, and the waker a shard-owned
//!   connection's queue parks (a push on the shard's own thread costs no
//!   syscall).
//! * [`ws`]: a WebSocket subscriber's state machine; [`sse`]: an SSE
//!   stream's; [`conn`]: either, as the shard holds them, and the write step
//!   they share; [`close_stage`]: their close sequence; [`pusher`]: what a
//!   Pusher Channels client's WebSocket adds (its subscriptions, its closes).
//! * [`socket`]: the non-blocking socket under it, plain or TLS.
//! * [`quic`]: the shard's QUIC endpoint and its connections (native and
//!   WebTransport).
//!
//! Invariants: shard *i* is the only thread that touches its connections'
//! sockets and the only drainer of lane *i* of every room; a subscriber owned
//! by shard *i* is a member of presence shard *i* of each of its rooms (both
//! are its connection id modulo the shard count: a WebSocket subscriber's id
//! picks its shard, a QUIC subscriber's shard, picked by the kernel, picks
//! its id).

pub mod close_stage;
pub mod conn;
pub mod inbox;
pub mod pusher;
pub mod quic;
pub mod shard;
pub mod socket;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use crate::fanout::Subscriber;
use crate::room::{DrainLanes, Room};
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::Membership;
pub use socket::{AnySocket, ShardSocket};
pub use ws::ShardContext;

/// A connection handed from the control plane to its shard, answered
/// already (101 or SSE's 200), with everything its connection needs.
pub struct Adoption {
    pub socket: AnySocket,
    /// Bytes the handshake read past the upgrade request.
    pub early_input: Vec<u8>,
    /// The subscriber's connection id: it picks the shard.
    pub id: u64,
    /// Makes the subscriber (with id `id`) and joins its rooms.
    pub join: Join,
    pub permit: ConnectionPermit,
    /// A Pusher Channels client of this app (subscribed to nothing yet).
    pub pusher: Option<Arc<crate::registry::App>>,
}

/// Makes an adopted connection's subscriber, joins its rooms and queues its
/// welcome. The shard that adopts the connection runs it, so that what a
/// subscriber keeps for its whole life (itself and its queue, its
/// memberships, its place in each room) is allocated by the thread that owns
/// it. Made during the handshake instead, on tokio's threads, it would lie
/// among the handshakes' short-lived tasks and buffers, and a storm of slow
/// handshakes would leave the heap holed for as long as the subscribers live
/// (docs/benchmarks.md §22).
pub type Join = Box<dyn FnOnce() -> Joined + Send>;

/// What [`Join`] made.
pub struct Joined {
    pub subscriber: Arc<Subscriber>,
    pub memberships: Vec<Membership>,
    /// Each membership's welcome seq, where an SSE stream's `id:` starts
    /// (WebSocket does not need them).
    pub welcome_seqs: Vec<u64>,
}

/// The shard threads of a node.
pub struct Dataplane {
    inboxes: Vec<Arc<inbox::Inbox>>,
    /// The shards' `ShardContext::draining`.
    draining: Arc<std::sync::atomic::AtomicBool>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("shards", &self.inboxes.len()).finish()
    }
}

impl Dataplane {
    /// Starts `shards` threads (at least one), pinned one per allowed core
    /// when `pin` is set, for at most `max_connections` in all, each
    /// handing its connections `context`.
    pub fn start(
        shards: usize,
        pin: bool,
        max_connections: usize,
        context: ShardContext,
    ) -> std::io::Result<Arc<Dataplane>> {
        let shards = shards.max(1);
        let cores = if pin { crate::cpu::allowed() } else { Vec::new() };
        let mut inboxes = Vec::new();
        let mut threads = Vec::new();
        for index in 0..shards {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), shard::WAKE)?;
            let inbox = Arc::new(inbox::Inbox::new(waker));
            let capacity = max_connections.div_ceil(shards);
            let shard = shard::Shard { index, shards, poll, inbox: inbox.clone(), capacity, context: context.clone() };
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread = std::thread::Builder::new().name(format!("bullhorn-shard-{index}")).spawn(move || {
                if let Some(core) = core
                    && let Err(error) = crate::cpu::pin(core)
                {
                    tracing::warn!(core, %error, "cannot pin a shard thread to its core");
                }
                shard.run();
            })?;
            inboxes.push(inbox);
            threads.push(thread);
        }
        Ok(Arc::new(Dataplane { inboxes, draining: context.draining, threads: std::sync::Mutex::new(threads) }))
    }

    /// The shard that owns subscriber `id` (and whose presence shards it joins).
    pub fn shard_of(&self, id: u64) -> usize {
        (id % self.inboxes.len() as u64) as usize
    }

    /// Hands a connection to its shard, which joins its subscriber (`Adoption::join`).
    pub fn adopt(&self, adoption: Adoption) {
        let shard = self.shard_of(adoption.id);
        self.inboxes[shard].post(|pending| pending.adopt.push(adoption));
    }

    /// How many shard threads there are (and QUIC sockets to hand them).
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Hands each shard its socket of the QUIC port's group (one per shard,
    /// in order) and what it needs to serve it.
    pub fn serve_quic(&self, setups: Vec<quic::QuicSetup>) {
        debug_assert_eq!(setups.len(), self.inboxes.len());
        for (inbox, setup) in self.inboxes.iter().zip(setups) {
            inbox.post(|pending| pending.serve_quic = Some(setup));
        }
    }

    /// The heartbeat, for the connections no room's heartbeat reaches
    /// (Pusher ones, whose subscriptions come and go).
    pub fn heartbeat(&self) {
        for inbox in &self.inboxes {
            inbox.post(|pending| pending.heartbeat = true);
        }
    }

    /// Tells every shard that the drain began (QUIC handshakes waiting for
    /// their turn are refused at once; Pusher connections in no room are
    /// told, as rooms tell their members).
    pub fn drain_began(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Release);
        for inbox in &self.inboxes {
            inbox.post(|pending| pending.draining = true);
        }
    }

    /// Stops every shard and waits for its thread to end: WebSocket
    /// connections are dropped (after a drain, none are left), QUIC ones told
    /// (1001) first. A shard ends within its current pass.
    pub fn stop(&self) {
        for inbox in &self.inboxes {
            inbox.post(|pending| pending.stop = true);
        }
        for thread in std::mem::take(&mut *self.threads.lock().expect("shard threads lock")) {
            let _ = thread.join();
        }
        for inbox in &self.inboxes {
            inbox.close();
        }
    }
}

impl DrainLanes for Dataplane {
    fn drain(&self, shard: usize, room: Arc<Room>) {
        self.inboxes[shard].post(|pending| pending.drains.push(room));
    }
}
