//! A UDP relay that injects faults between a QUIC client and the server, for
//! tests that prove delivery survives a bad network: datagrams dropped,
//! reordered and truncated ("cut") on the way, by a seeded generator so that
//! a given seed makes the same decisions for the same sequence of datagrams,
//! or one chosen datagram to the client lost ([`UdpProxy::drop_next_to_client_of`]).
//!
//! The client connects to [`UdpProxy::addr`]. Each distinct client address
//! gets its own upstream socket (so the server sees one 4-tuple per client,
//! as without the proxy); datagrams go client -> proxy -> server through it
//! and server -> proxy -> client back. The relay stops when the proxy is
//! dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long a datagram held back for reordering waits for a successor before
/// it is sent anyway: nothing is held forever.
pub const HOLD: Duration = Duration::from_millis(20);

/// What the proxy does to datagrams. Each fault is rolled independently per
/// datagram, in parts per thousand; all zero is a faithful relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Discards the datagram.
    pub drop_per_mille: u32,
    /// Holds the datagram back and sends it right after the next one that
    /// passes in the same direction (or after [`HOLD`] if none comes). At most
    /// one datagram per direction is held at a time.
    pub reorder_per_mille: u32,
    /// Truncates the datagram at a random byte (keeping 1..len bytes) before
    /// forwarding it. A cut QUIC packet fails authentication at the receiver.
    pub cut_per_mille: u32,
    /// Seeds the generator; each client and direction derives its own stream
    /// from it.
    pub seed: u64,
    /// Faults both ways when true; when false only client -> server datagrams
    /// are faulted and the server's pass untouched.
    pub both_directions: bool,
    /// When set, only the first N datagrams of each client and direction are
    /// subject to faults (to hit the handshake alone); the rest pass untouched.
    pub only_first: Option<u64>,
}

/// Counters of one direction (or their sum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams discarded.
    pub dropped: u64,
    /// Datagrams held back and sent after a later one (or after [`HOLD`]).
    pub reordered: u64,
    /// Datagrams truncated (and forwarded).
    pub cut: u64,
    /// Datagrams sent on, cut and reordered ones included.
    pub forwarded: u64,
}

/// What the proxy has done so far, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub to_server: Counts,
    pub to_client: Counts,
}

impl ProxyStats {
    /// Both directions added up.
    pub fn total(&self) -> Counts {
        let (a, b) = (self.to_server, self.to_client);
        Counts {
            dropped: a.dropped + b.dropped,
            reordered: a.reordered + b.reordered,
            cut: a.cut + b.cut,
            forwarded: a.forwarded + b.forwarded,
        }
    }
}

#[derive(Default)]
struct AtomicCounts {
    dropped: AtomicU64,
    reordered: AtomicU64,
    cut: AtomicU64,
    forwarded: AtomicU64,
}

impl AtomicCounts {
    fn load(&self) -> Counts {
        Counts {
            dropped: self.dropped.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Stats {
    to_server: AtomicCounts,
    to_client: AtomicCounts,
    /// When not 0: the next server -> client datagram of at least this many
    /// bytes is dropped (once), whatever the faults.
    drop_next_down_of: AtomicUsize,
}

/// A running fault-injecting relay in front of `server`.
pub struct UdpProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl UdpProxy {
    /// Binds 127.0.0.1:0 and relays to `server` with `faults`.
    pub async fn start(server: SocketAddr, faults: Faults) -> UdpProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind the proxy"));
        let addr = front.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(relay(front, server, faults, stats.clone()));
        UdpProxy { addr, stats, task }
    }

    /// Where clients send their datagrams.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops the next server -> client datagram of at least `bytes` bytes
    /// (once): a chosen loss, for a test that needs that one lost.
    pub fn drop_next_to_client_of(&self, bytes: usize) {
        self.stats.drop_next_down_of.store(bytes.max(1), Ordering::Relaxed);
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats { to_server: self.stats.to_server.load(), to_client: self.stats.to_client.load() }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        // The relay task owns the per-client tasks' JoinSet: aborting it
        // drops the set, which aborts them all.
        self.task.abort();
    }
}

/// Receives from clients, starting a pair of pipes for each new one.
async fn relay(front: Arc<UdpSocket>, server: SocketAddr, faults: Faults, stats: Arc<Stats>) {
    let mut clients: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, client)) = front.recv_from(&mut buf).await else { continue };
        let datagram = buf[..len].to_vec();
        let index = clients.len() as u64;
        let to_server = clients.entry(client).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let seed = faults.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let upstream = Shaper::new(faults, seed.wrapping_add(1), stats.clone(), Direction::ToServer);
            let passthrough = Faults { drop_per_mille: 0, reorder_per_mille: 0, cut_per_mille: 0, ..faults };
            let down_faults = if faults.both_directions { faults } else { passthrough };
            let downstream = Shaper::new(down_faults, seed.wrapping_add(2), stats.clone(), Direction::ToClient);
            tasks.spawn(client_pipes(front.clone(), client, server, rx, upstream, downstream));
            tx
        });
        let _ = to_server.send(datagram);
    }
}

/// One client's two directions through its own upstream socket.
async fn client_pipes(
    front: Arc<UdpSocket>,
    client: SocketAddr,
    server: SocketAddr,
    from_client: mpsc::UnboundedReceiver<Vec<u8>>,
    upstream: Shaper,
    downstream: Shaper,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind an upstream socket");
    socket.connect(server).await.expect("connect the upstream socket");
    let socket = Arc::new(socket);
    tokio::join!(to_server(socket.clone(), from_client, upstream), to_client(socket, front, client, downstream));
}

async fn to_server(socket: Arc<UdpSocket>, mut from_client: mpsc::UnboundedReceiver<Vec<u8>>, mut shaper: Shaper) {
    loop {
        let deadline = shaper.deadline();
        tokio::select! {
            datagram = from_client.recv() => {
                let Some(datagram) = datagram else { return };
                for out in shaper.pass(datagram) {
                    let _ = socket.send(&out).await;
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some(out) = shaper.release() {
                    let _ = socket.send(&out).await;
                }
            }
        }
    }
}

async fn to_client(socket: Arc<UdpSocket>, front: Arc<UdpSocket>, client: SocketAddr, mut shaper: Shaper) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let deadline = shaper.deadline();
        tokio::select! {
            received = socket.recv(&mut buf) => {
                match received {
                    Ok(len) if shaper.chosen_loss(len) => {}
                    Ok(len) => {
                        for out in shaper.pass(buf[..len].to_vec()) {
                            let _ = front.send_to(&out, client).await;
                        }
                    }
                    // An ICMP unreachable from an earlier send: not fatal.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => return,
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some(out) = shaper.release() {
                    let _ = front.send_to(&out, client).await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToServer,
    ToClient,
}

/// The faults of one direction of one client.
struct Shaper {
    faults: Faults,
    rng: SplitMix64,
    stats: Arc<Stats>,
    direction: Direction,
    seen: u64,
    held: Option<(Vec<u8>, Instant)>,
}

impl Shaper {
    fn new(faults: Faults, seed: u64, stats: Arc<Stats>, direction: Direction) -> Shaper {
        Shaper { faults, rng: SplitMix64(seed), stats, direction, seen: 0, held: None }
    }

    fn counts(&self) -> &AtomicCounts {
        match self.direction {
            Direction::ToServer => &self.stats.to_server,
            Direction::ToClient => &self.stats.to_client,
        }
    }

    /// Whether a datagram of `len` bytes is the one loss a test asked for
    /// ([`UdpProxy::drop_next_to_client_of`]); counted as dropped if so.
    fn chosen_loss(&self, len: usize) -> bool {
        let wanted = &self.stats.drop_next_down_of;
        let at_least = wanted.load(Ordering::Relaxed);
        if at_least == 0
            || len < at_least
            || wanted.compare_exchange(at_least, 0, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return false;
        }
        self.counts().dropped.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// What to send now, in order, for one datagram received.
    fn pass(&mut self, mut datagram: Vec<u8>) -> Vec<Vec<u8>> {
        // The same four draws for every datagram: a seed's decisions for the
        // n-th datagram do not depend on which faults are enabled.
        let (drop, cut, reorder, at) =
            (self.rng.per_mille(), self.rng.per_mille(), self.rng.per_mille(), self.rng.next());
        self.seen += 1;
        let faulty = self.faults.only_first.is_none_or(|n| self.seen <= n);
        if faulty && drop < self.faults.drop_per_mille {
            self.counts().dropped.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        if faulty && cut < self.faults.cut_per_mille && datagram.len() > 1 {
            datagram.truncate(1 + (at % (datagram.len() as u64 - 1)) as usize);
            self.counts().cut.fetch_add(1, Ordering::Relaxed);
        }
        if faulty && reorder < self.faults.reorder_per_mille && self.held.is_none() {
            self.counts().reordered.fetch_add(1, Ordering::Relaxed);
            self.held = Some((datagram, Instant::now() + HOLD));
            return Vec::new();
        }
        let mut out = vec![datagram];
        out.extend(self.held.take().map(|(held, _)| held));
        self.counts().forwarded.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// When the held datagram (if any) is due.
    fn deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, at)| *at)
    }

    /// The held datagram, once its successor did not come in time.
    fn release(&mut self) -> Option<Vec<u8>> {
        let (held, _) = self.held.take()?;
        self.counts().forwarded.fetch_add(1, Ordering::Relaxed);
        Some(held)
    }
}

/// SplitMix64: a tiny seeded generator, written out so that a seed's
/// sequence never changes with a dependency's version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..1000.
    fn per_mille(&mut self) -> u32 {
        (self.next() % 1000) as u32
    }
}
