//! A worker process: opens its share of subscribers at a paced rate, tells
//! the coordinator once they are connected, counts what arrives, and answers
//! the coordinator's commands (JSON lines on stdout, words on stdin):
//!
//! * `pause`: stop churning; report how many subscribers are open;
//! * `storm`: close every reader at once and reconnect it at once, resuming
//!   after its last seq; report how long until all were back;
//! * `drain-wait`: (with `--follow-closing`) wait until every subscriber a
//!   draining node sent away is connected to the next node; report it;
//! * `stop`: report what was received, and exit.
//!
//! Subscribers spread over the server addresses and source addresses given,
//! round-robin. The first `--non-readers` never read after connecting (the
//! `slow` scenario); with `--churn-per-sec`, readers are closed and replaced
//! at that rate, picked by a seeded generator (the `churn` scenario).

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;
use tokio::task::JoinHandle;

use crate::ws_client::{self, FrameStream, Seen, Stats};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Server addresses (viewer TCP or QUIC UDP), used round-robin.
    #[arg(long = "addr", required = true)]
    pub addrs: Vec<SocketAddr>,
    #[arg(long)]
    pub host: String,
    #[arg(long)]
    pub path: String,
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub connect_rate: u64,
    /// Subscribe over QUIC, pinning this certificate fingerprint.
    #[arg(long)]
    pub quic_fingerprint: Option<String>,
    /// With --quic-fingerprint: subscribe as browsers do, over WebTransport (HTTP/3).
    #[arg(long)]
    pub webtransport: bool,
    /// WebSocket: offer `permessage-deflate`.
    #[arg(long)]
    pub deflate: bool,
    /// Subscribe over Server-Sent Events (`--path` is the SSE endpoint).
    #[arg(long)]
    pub sse: bool,
    /// Speak the Pusher Channels protocol (`--path` is `/app/{key}`): subscribe to `--room` once upgraded.
    #[arg(long)]
    pub pusher: bool,
    #[arg(long, default_value = "demo")]
    pub app: String,
    #[arg(long, default_value = "loadtest")]
    pub room: String,
    /// Local addresses to connect from, round-robin.
    #[arg(long = "source-ip")]
    pub source_ips: Vec<IpAddr>,
    /// This worker's first subscriber number (spreads addresses across workers).
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
    /// Subscribers that never read after connecting.
    #[arg(long, default_value_t = 0)]
    pub non_readers: usize,
    /// Record receivers and the slowest latency per broadcast.
    #[arg(long)]
    pub per_seq: bool,
    /// Readers closed and replaced per second once all are connected.
    #[arg(long, default_value_t = 0.0)]
    pub churn_per_sec: f64,
    /// Readers stop reading for this many ms after their first broadcast, once.
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Plain TCP sinks for `ceiling`: connect, read and discard, count bytes.
    #[arg(long)]
    pub raw: bool,
    /// After a `closing` (a drained node), wait the delay it asks for and
    /// reconnect to the next address, resuming.
    #[arg(long)]
    pub follow_closing: bool,
}

/// QUIC connections per client endpoint (each endpoint is one UDP socket and one driver task).
const QUIC_PER_ENDPOINT: usize = 4096;

/// One line from a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Connected {
        connected: usize,
        errors: usize,
        first_error: Option<String>,
    },
    Paused {
        open: usize,
        churned: u64,
    },
    Stormed {
        reconnected: usize,
        errors: usize,
        /// From the first close until the last reader was connected again.
        millis: u64,
        first_error: Option<String>,
    },
    Done {
        deliveries: u64,
        broadcast_bytes: u64,
        gaps: u64,
        lagged: u64,
        first_us: u64,
        last_us: u64,
        latency: Vec<(u64, u64)>,
        /// (seq, receivers, slowest latency µs), with `--per-seq`.
        per_seq: Vec<(u64, u64, u64)>,
        /// (second since the epoch, deliveries in it).
        timeline: Vec<(u64, u64)>,
        cpu_seconds: f64,
    },
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, work(args))
}

/// The worker's subscribers: one task per slot, replaceable.
struct Fleet {
    args: WorkerArgs,
    stats: Rc<RefCell<Stats>>,
    endpoints: Vec<quinn::Endpoint>,
    slots: RefCell<Vec<Option<JoinHandle<()>>>>,
    /// Per slot: what its subscriber saw (to resume after, and where a drain sent it).
    seqs: Vec<Rc<Seen>>,
    /// `--follow-closing`: subscribers a drain sent away, those back, those lost.
    moves: Moves,
    /// Subscribers connected and not yet closed.
    open: Cell<usize>,
    connected: Cell<usize>,
    errors: Cell<usize>,
    /// The first error since it was last reported (each event reports its own).
    first_error: RefCell<Option<String>>,
    /// Connections tried and settled (connected or failed), replacements included.
    attempts: Cell<usize>,
}

/// Subscribers sent away by a draining node, and their way back: each is
/// away, back or lost.
#[derive(Default)]
struct Moves {
    away: Cell<usize>,
    back: Cell<usize>,
    lost: Cell<usize>,
    first_away: Cell<Option<std::time::Instant>>,
    last_away: Cell<Option<std::time::Instant>>,
    last_back: Cell<Option<std::time::Instant>>,
}

/// One connected subscriber, before it is served.
enum Conn {
    WebSocket(tokio::net::TcpStream, bytes::BytesMut),
    Sse(crate::sse_client::SseStream),
    Quic(bullhorn::client::QuicStream),
    WebTransport(Box<bullhorn::client::WtStream>),
    Raw(tokio::net::TcpStream),
}

impl Moves {
    fn sent_away(&self) -> usize {
        self.away.get() + self.back.get() + self.lost.get()
    }
}

/// Counts a subscriber as open while it lives, however its task ends.
struct OpenGuard<'a>(&'a Cell<usize>);

impl OpenGuard<'_> {
    fn new(open: &Cell<usize>) -> OpenGuard<'_> {
        open.set(open.get() + 1);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Fleet {
    fn new(args: WorkerArgs) -> anyhow::Result<Rc<Fleet>> {
        let endpoints = match &args.quic_fingerprint {
            Some(fingerprint) => (0..args.count.div_ceil(QUIC_PER_ENDPOINT).max(1))
                .map(|n| {
                    let source = source_ip(&args, n * QUIC_PER_ENDPOINT).unwrap_or([127, 0, 0, 1].into());
                    // Buffers as large as the server's: thousands of handshakes land at once.
                    let (mut endpoint, _) =
                        bullhorn::udp::endpoint(SocketAddr::new(source, 0), quinn::EndpointConfig::default(), None)?;
                    let alpn = match args.webtransport {
                        true => bullhorn::protocol::quic::WEBTRANSPORT_ALPN,
                        false => bullhorn::protocol::quic::ALPN,
                    };
                    endpoint.set_default_client_config(bullhorn::client::tls::pinned_quic_config(fingerprint, alpn));
                    Ok(endpoint)
                })
                .collect::<std::io::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(Rc::new(Fleet {
            stats: Rc::new(RefCell::new(Stats::new(args.per_seq))),
            slots: RefCell::new((0..args.count).map(|_| None).collect()),
            seqs: (0..args.count).map(|_| Rc::new(Seen::stalling(args.stall_ms))).collect(),
            moves: Moves::default(),
            args,
            endpoints,
            open: Cell::new(0),
            connected: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
            attempts: Cell::new(0),
        }))
    }

    /// Opens (or reopens) the subscriber in `slot`.
    fn open_slot(self: &Rc<Self>, slot: usize) {
        let fleet = self.clone();
        let task = tokio::task::spawn_local(async move { fleet.subscribe(slot).await });
        if let Some(old) = self.slots.borrow_mut()[slot].replace(task) {
            old.abort();
        }
    }

    fn close_slot(&self, slot: usize) {
        if let Some(task) = self.slots.borrow_mut()[slot].take() {
            task.abort();
        }
    }

    async fn subscribe(self: Rc<Self>, slot: usize) {
        match self.connect(slot, 0).await {
            Ok(conn) => {
                let _open = self.connected_one();
                self.serve(slot, conn).await;
            }
            Err(error) => return self.failed_one(error),
        }
        if self.args.follow_closing {
            self.follow(slot).await;
        }
    }

    /// After a drained node's `closing`: wait the delay it asked for, then
    /// connect to the next address (retrying for up to 30 s), resuming.
    async fn follow(&self, slot: usize) {
        let moves = &self.moves;
        let mut hop = 0;
        while let Some(delay) = self.seqs[slot].reconnect_after_ms.take() {
            let now = std::time::Instant::now();
            moves.away.set(moves.away.get() + 1);
            moves.first_away.set(Some(moves.first_away.get().unwrap_or(now)));
            moves.last_away.set(Some(now));
            tokio::time::sleep(Duration::from_millis(delay)).await;
            hop += 1;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut backoff = Duration::from_millis(100);
            let conn = loop {
                match self.connect(slot, hop).await {
                    Ok(conn) => break Ok(conn),
                    Err(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(error) => break Err(error),
                }
            };
            moves.away.set(moves.away.get() - 1);
            let conn = match conn {
                Ok(conn) => conn,
                Err(error) => {
                    moves.lost.set(moves.lost.get() + 1);
                    self.first_error.borrow_mut().get_or_insert(error);
                    return;
                }
            };
            moves.back.set(moves.back.get() + 1);
            moves.last_back.set(Some(std::time::Instant::now()));
            let _open = OpenGuard::new(&self.open);
            self.serve(slot, conn).await;
        }
    }

    /// Connects the subscriber in `slot` to the address `hop` places after its
    /// own, resuming after what it saw; connected means welcomed.
    async fn connect(&self, slot: usize, hop: usize) -> Result<Conn, String> {
        let index = self.args.first_index + slot;
        let addr = self.args.addrs[(index + hop) % self.args.addrs.len()];
        let seen = &self.seqs[slot];
        if self.args.raw {
            return tokio::net::TcpStream::connect(addr).await.map(Conn::Raw).map_err(|e| e.to_string());
        }
        if let Some(endpoint) = self.endpoints.get(slot / QUIC_PER_ENDPOINT) {
            let room = match seen.last_seq.get() {
                Some(seq) => format!("{}@{seq}", self.args.room),
                None => self.args.room.clone(),
            };
            let (app, rooms) = (&self.args.app, [room]);
            if self.args.webtransport {
                let connect = bullhorn::client::WtStream::connect(endpoint, addr, "localhost", app, &rooms);
                let mut stream = connect.await.map_err(|e| e.to_string())?;
                self.welcomed(&mut stream, seen).await?;
                return Ok(Conn::WebTransport(Box::new(stream)));
            }
            let connect = bullhorn::client::QuicStream::connect(endpoint, addr, "localhost", app, &rooms);
            let mut stream = connect.await.map_err(|e| e.to_string())?;
            self.welcomed(&mut stream, seen).await?;
            return Ok(Conn::Quic(stream));
        }
        let path = match seen.last_seq.get() {
            Some(seq) => format!("{}@{seq}", self.args.path),
            None => self.args.path.clone(),
        };
        let source = source_ip(&self.args, index);
        if self.args.sse {
            let connect = crate::sse_client::connect(addr, source, &self.args.host, &path);
            let mut stream = connect.await.map_err(|e| e.to_string())?;
            self.welcomed(&mut stream, seen).await?;
            return Ok(Conn::Sse(stream));
        }
        let (mut stream, mut leftover) = ws_client::connect(addr, source, &self.args.host, &path, self.args.deflate)
            .await
            .map_err(|e| e.to_string())?;
        if self.args.pusher {
            // The first frame (`connection_established`) is skipped with any other that is not the answer.
            crate::pusher_client::subscribe(&mut stream, &mut leftover, &self.args.room)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Conn::WebSocket(stream, leftover))
    }

    /// Reads the first frame, which must be the welcome.
    async fn welcomed(&self, stream: &mut impl FrameStream, seen: &Seen) -> Result<(), String> {
        match stream.next_frame().await {
            Ok(Some(first)) if first.starts_with(br#"{"type":"welcome""#) => {
                ws_client::on_text(&first, seen, &self.stats);
                Ok(())
            }
            other => Err(format!("no welcome: {other:?}")),
        }
    }

    /// Reads (or, for a non-reader, holds) the connection until it ends.
    async fn serve(&self, slot: usize, conn: Conn) {
        let seen = self.seqs[slot].clone();
        let reader = slot >= self.args.non_readers;
        match conn {
            Conn::Raw(stream) => ws_client::sink(stream, self.stats.clone()).await,
            Conn::Quic(stream) if reader => ws_client::receive_frames(stream, self.stats.clone(), seen).await,
            Conn::WebTransport(stream) if reader => ws_client::receive_frames(*stream, self.stats.clone(), seen).await,
            Conn::WebSocket(stream, leftover) if reader => {
                ws_client::receive(stream, leftover, self.stats.clone(), seen).await
            }
            Conn::Sse(stream) if reader => ws_client::receive_frames(stream, self.stats.clone(), seen).await,
            Conn::Sse(stream) => hold(stream).await,
            Conn::Quic(stream) => hold(stream).await,
            Conn::WebTransport(stream) => hold(stream).await,
            Conn::WebSocket(stream, _) => hold(stream).await,
        }
    }

    fn connected_one(&self) -> OpenGuard<'_> {
        self.connected.set(self.connected.get() + 1);
        self.attempted();
        OpenGuard::new(&self.open)
    }

    fn failed_one(&self, error: String) {
        self.errors.set(self.errors.get() + 1);
        self.first_error.borrow_mut().get_or_insert(error);
        self.attempted();
    }

    fn attempted(&self) {
        self.attempts.set(self.attempts.get() + 1);
    }

    /// Waits until `attempts` connections have settled, or `limit` passed (an
    /// attempt aborted by churn or a storm never settles).
    async fn settled(&self, attempts: usize, limit: Duration) {
        let wait = async {
            while self.attempts.get() < attempts {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Closes and replaces random readers at the configured rate until `paused`.
    async fn churn(self: Rc<Self>, paused: Rc<Cell<bool>>, churned: Rc<Cell<u64>>) {
        let readers = self.args.non_readers..self.args.count;
        if self.args.churn_per_sec <= 0.0 || readers.is_empty() {
            return;
        }
        let mut rng = SplitMix(self.args.seed ^ self.args.first_index as u64);
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / self.args.churn_per_sec));
        pace.tick().await;
        while !paused.get() {
            pace.tick().await;
            if paused.get() {
                break;
            }
            let slot = readers.start + (rng.next() % readers.len() as u64) as usize;
            self.close_slot(slot);
            self.seqs[slot].last_seq.set(None); // a new subscriber, not a reconnect
            self.open_slot(slot);
            churned.set(churned.get() + 1);
        }
    }
}

/// Holds a connection without reading from it: a subscriber that stopped reading.
async fn hold<T>(connection: T) {
    let _connection = connection;
    std::future::pending::<()>().await
}

fn source_ip(args: &WorkerArgs, index: usize) -> Option<IpAddr> {
    (!args.source_ips.is_empty()).then(|| args.source_ips[index % args.source_ips.len()])
}

/// A small seeded generator (SplitMix64): repeatable picks, no dependency.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

async fn work(args: WorkerArgs) -> anyhow::Result<()> {
    let fleet = Fleet::new(args.clone())?;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / args.connect_rate.max(1) as f64));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for slot in 0..args.count {
        pace.tick().await;
        fleet.open_slot(slot);
    }
    // Every first connection settles on its own (a connect times out or fails).
    fleet.settled(args.count, Duration::MAX).await;
    emit(&WorkerEvent::Connected {
        connected: fleet.connected.get(),
        errors: fleet.errors.get(),
        first_error: fleet.first_error.take(),
    });

    let (paused, churned) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)));
    tokio::task::spawn_local(fleet.clone().churn(paused.clone(), churned.clone()));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line.trim() {
            "pause" => {
                paused.set(true);
                // Let replacements still connecting finish first.
                fleet.settled(fleet.args.count + churned.get() as usize, Duration::from_secs(5)).await;
                emit(&WorkerEvent::Paused { open: fleet.open.get(), churned: churned.get() });
            }
            "storm" => {
                let readers = fleet.args.non_readers..fleet.args.count;
                let (attempts, connected, errors) = (fleet.attempts.get(), fleet.connected.get(), fleet.errors.get());
                let started = std::time::Instant::now();
                for slot in readers.clone() {
                    fleet.close_slot(slot);
                }
                for slot in readers.clone() {
                    fleet.open_slot(slot);
                }
                fleet.settled(attempts + readers.len(), Duration::from_secs(120)).await;
                emit(&WorkerEvent::Stormed {
                    reconnected: fleet.connected.get() - connected,
                    errors: fleet.errors.get() - errors,
                    millis: started.elapsed().as_millis() as u64,
                    first_error: fleet.first_error.take(),
                });
            }
            "drain-wait" => {
                let moves = &fleet.moves;
                let settled = async {
                    loop {
                        let quiet = moves.last_away.get().is_some_and(|at| at.elapsed() > Duration::from_millis(300));
                        if moves.sent_away() > 0 && moves.away.get() == 0 && quiet {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(90), settled).await;
                let millis = match (moves.first_away.get(), moves.last_back.get()) {
                    (Some(away), Some(back)) => back.saturating_duration_since(away).as_millis() as u64,
                    _ => 0,
                };
                emit(&WorkerEvent::Stormed {
                    reconnected: moves.back.get(),
                    errors: moves.lost.get() + moves.away.get(),
                    millis,
                    first_error: fleet.first_error.take(),
                });
            }
            "stop" => break,
            _ => {}
        }
    }
    let stats = fleet.stats.borrow();
    let mut per_seq: Vec<(u64, u64, u64)> =
        stats.per_seq.iter().flatten().map(|(seq, (receivers, max))| (*seq, *receivers, *max)).collect();
    per_seq.sort_unstable();
    emit(&WorkerEvent::Done {
        deliveries: stats.deliveries,
        broadcast_bytes: stats.broadcast_bytes,
        gaps: stats.gaps,
        lagged: stats.lagged,
        first_us: stats.first_us,
        last_us: stats.last_us,
        latency: stats.latency.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect(),
        per_seq,
        timeline: stats.timeline.clone(),
        cpu_seconds: crate::proc_stats::cpu_seconds("self").unwrap_or(0.0),
    });
    std::process::exit(0);
}

fn emit(event: &WorkerEvent) {
    println!("{}", serde_json::to_string(event).expect("serializable"));
}
