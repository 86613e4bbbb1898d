//! `bullhorn-loadtest`: how many viewers a node holds, and how fast a
//! broadcast reaches them.
//!
//! The coordinator (this process) starts worker processes (this binary with
//! the hidden `worker` sub-command), because one process here may hold at
//! most 20,000 open files. Workers open the subscribers and count what they
//! receive; the coordinator drives broadcasts through the admin API, reads
//! the server's memory from /proc, merges the workers' results and writes the
//! JSON report (contract §6).
//!
//! Scenarios: `fanout` (deliveries per second and latency), `burst` (time
//! until the last subscriber has one broadcast), `idle` (server memory per
//! idle subscriber), `slow` (some subscribers stop reading) and `churn`
//! (subscribers come and go), `storm` (everyone reconnects at once). Every
//! run is bounded in count and time.

mod admin;
mod chart;
mod proc_stats;
mod progress;
mod pusher_client;
mod report;
mod scenario;
mod sse_client;
mod worker;
mod workers;
mod ws_client;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "bullhorn-loadtest", version, about = "Load-test harness for bullhorn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N subscribers; broadcasts at a rate with a payload size for a duration.
    Fanout(FanoutArgs),
    /// Ramp to N subscribers, hold, report the server's memory per subscriber.
    Idle(IdleArgs),
    /// One broadcast to N subscribers, time until the last has it (p100), repeated.
    Burst(BurstArgs),
    /// A fan-out with all subscribers reading, then with a fraction that never reads.
    Slow(SlowArgs),
    /// A fan-out while subscribers leave and join; checks the server's `online` count.
    Churn(ChurnArgs),
    /// Every subscriber drops and reconnects at once, resuming, while broadcasts flow.
    Storm(StormArgs),
    /// This machine's raw loopback write rate: one frame per write over N sockets.
    Ceiling(CeilingArgs),
    /// Churn, broadcasts and non-reading subscribers at a steady load for a long time;
    /// the server's memory and open files sampled throughout and after.
    Soak(SoakArgs),
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

/// What every scenario needs to reach the server and spread its clients.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Viewer base URL (WebSocket); repeat for several nodes (subscribers spread round-robin)
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080")]
    pub urls: Vec<String>,
    /// Subscriber transport: websocket, quic, webtransport (QUIC as browsers use it), sse (Server-Sent Events),
    /// pusher (the Pusher Channels protocol, with --pusher-key), or mix (alternate workers use websocket and
    /// quic; give --workers 2 or more)
    #[arg(long, default_value = "websocket", value_parser = ["websocket", "quic", "webtransport", "sse", "pusher", "mix"])]
    pub transport: String,
    /// QUIC listener address (with --transport quic or webtransport); repeat for several nodes
    #[arg(long = "quic-addr", default_value = "127.0.0.1:4433")]
    pub quic_addrs: Vec<std::net::SocketAddr>,
    /// WebSocket subscribers offer `permessage-deflate` (as browsers do) and inflate what comes compressed
    #[arg(long)]
    pub deflate: bool,
    /// The app's Pusher key (`[app.pusher] key`), with --transport pusher: `--room` is the channel
    #[arg(long, default_value = "bench-pusher-key")]
    pub pusher_key: String,
    /// Local addresses to connect from, to pass 64k connections per address:
    /// a list (127.0.0.1,127.0.0.2) or a range (127.0.0.1-127.0.0.16)
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Pin the worker processes to these CPUs (taskset list, e.g. `1` or `8-15`)
    #[arg(long)]
    pub worker_cpus: Option<String>,
    /// Pin the `ceiling` writer thread to this CPU (where the server would run)
    #[arg(long)]
    pub ceiling_cpu: Option<usize>,
    /// Seed of every random choice (which subscribers churn), for repeatable runs
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The server's certificate fingerprint file (dev-cert.sha256), for --transport quic or webtransport
    #[arg(long, default_value = "data/dev-cert.sha256")]
    pub fingerprint_file: PathBuf,
    /// Admin base URL
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub admin: String,
    /// Admin key of the app (or BULLHORN_ADMIN_KEY)
    #[arg(long, env = "BULLHORN_ADMIN_KEY")]
    #[serde(skip)] // a secret: never in a report
    pub key: String,
    #[arg(long, default_value = "demo")]
    pub app: String,
    /// Room to use; created when missing
    #[arg(long, default_value = "loadtest")]
    pub room: String,
    /// Subscribers to open
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Worker processes (each holds at most ~19,000 connections here)
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// New connections per second, across all workers
    #[arg(long, default_value_t = 5000)]
    pub connect_rate: u64,
    /// The server's pid, to read its memory from /proc
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Where to write the JSON report
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where to draw the run as an SVG chart (deliveries per second, latency by percentile)
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Broadcasts per second
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Bytes of `data` per broadcast
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of broadcasting
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Every reader stops reading for this many ms after its first broadcast,
    /// then reads on: a viewer whose network stalls (past its queue, the server
    /// drops and says `lagged`)
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    /// Also measure `ceiling` (same frame, same number of sockets) after the run,
    /// and report deliveries per second as a ratio against it
    #[arg(long)]
    pub with_ceiling: bool,
}

/// The delivery options of each broadcast (contract §2), to measure what they cost.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct DeliveryArgs {
    /// `priority` of every broadcast: high, normal or low
    #[arg(long)]
    pub priority: Option<String>,
    /// `conflate` key of every broadcast; `{n}` in it becomes the broadcast's number
    #[arg(long)]
    pub conflate: Option<String>,
    /// Send a fresh `Idempotency-Key` with every broadcast
    #[arg(long)]
    pub idempotency_keys: bool,
    /// `ttl_ms` of every broadcast (contract §9)
    #[arg(long)]
    pub ttl_ms: Option<u64>,
    /// Pin every broadcast as the room's sticky message
    #[arg(long)]
    pub sticky: bool,
    /// The room's `occupancy_interval_ms`, set before the run (0 turns it off)
    #[arg(long)]
    pub occupancy_interval_ms: Option<u64>,
    /// After the run, read every broadcast's reach from the admin API and
    /// check that `delivered` adds up to what the subscribers received
    #[arg(long)]
    pub check_reach: bool,
    /// `data` of every broadcast: this file's JSON object (a real gift message, say) with the
    /// send time added as `"t"`, instead of `--payload` bytes of filler
    #[arg(long)]
    pub payload_json: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct BurstArgs {
    #[command(flatten)]
    pub common: Common,
    /// Broadcasts to send, one at a time
    #[arg(long, default_value_t = 10)]
    pub repeat: u64,
    /// Pause after each broadcast, so they do not overlap
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Bytes of `data` per broadcast
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SlowArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Fraction of subscribers that never read
    #[arg(long, default_value_t = 0.1)]
    pub non_reader_fraction: f64,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct SoakArgs {
    /// Broadcasts, payload and duration (`--duration`, seconds: 1800 for the 30-minute soak)
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Subscribers closed and replaced per second, across all workers
    #[arg(long, default_value_t = 50.0)]
    pub churn_per_sec: f64,
    /// Fraction of subscribers that never read (the server drops, then disconnects them)
    #[arg(long, default_value_t = 0.05)]
    pub non_reader_fraction: f64,
    /// Seconds between samples of the server's memory and open files
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
    /// Seconds of warm-up before memory growth is measured
    #[arg(long, default_value_t = 300)]
    pub warmup_secs: u64,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Subscribers closed and replaced per second, across all workers
    #[arg(long, default_value_t = 100.0)]
    pub churn_per_sec: f64,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes of `data` in the frame (as in `fanout --payload`)
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of writing
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Write in rounds, one frame to every socket each this many ms, as a
    /// broadcast would, instead of back to back (the readers then sleep
    /// between rounds, as they do at a scenario's rate)
    #[arg(long)]
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,
    /// Broadcasts per second, from start to end
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Bytes of `data` per broadcast
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of broadcasts before the storm
    #[arg(long, default_value_t = 2)]
    pub before: u64,
    /// Seconds of broadcasts after it
    #[arg(long, default_value_t = 3)]
    pub after: u64,
    /// The storm is a node's drain: SIGTERM to --server-pid (or an outside drain);
    /// its subscribers follow `closing` to the next --url
    #[arg(long)]
    pub drain: bool,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Seconds to hold the subscribers before measuring
    #[arg(long, default_value_t = 3)]
    pub hold: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match cli.command {
        Command::Worker(args) => worker::run(args),
        Command::Fanout(args) => runtime()?.block_on(scenario::fanout::fanout(args)),
        Command::Idle(args) => runtime()?.block_on(scenario::idle::idle(args)),
        Command::Burst(args) => runtime()?.block_on(scenario::burst::burst(args)),
        Command::Slow(args) => runtime()?.block_on(scenario::fanout::slow(args)),
        Command::Churn(args) => runtime()?.block_on(scenario::fanout::churn(args)),
        Command::Storm(args) => runtime()?.block_on(scenario::storm::storm(args)),
        Command::Ceiling(args) => runtime()?.block_on(scenario::ceiling::ceiling(args)),
        Command::Soak(args) => runtime()?.block_on(scenario::soak::soak(args)),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}
