//! Command-line interface: `bullhorn [serve] [flags]`. Every flag has a
//! `BULLHORN_*` environment twin; both override the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bullhorn",
    version,
    about = "Broadcast fan-out engine: online-member broadcast rooms over WebSocket and QUIC"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node (the default when no sub-command is given).
    Serve(ServeArgs),
}

impl Cli {
    /// The serve arguments, whether given with or without `serve`.
    pub fn into_serve_args(self) -> ServeArgs {
        match self.command {
            Some(Command::Serve(args)) => args,
            None => self.serve,
        }
    }
}

/// Flags of `bullhorn serve`. All optional: unset ones fall back to the config
/// file, then to the defaults in `config.rs`.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// Public WebSocket listener [default: 0.0.0.0:8080]
    #[arg(long, env = "BULLHORN_VIEWER_ADDR")]
    pub viewer_addr: Option<SocketAddr>,
    /// Public QUIC listener [default: 0.0.0.0:4433]
    #[arg(long, env = "BULLHORN_QUIC_ADDR")]
    pub quic_addr: Option<SocketAddr>,
    /// The UDP port browsers reach the QUIC listener at for WebTransport, where a load balancer or NAT maps
    /// another; the demo page tells the browser client [default: the QUIC listener's port]
    #[arg(long, env = "BULLHORN_QUIC_PUBLIC_PORT")]
    pub quic_public_port: Option<u16>,
    /// Private admin listener [default: 127.0.0.1:8081]
    #[arg(long, env = "BULLHORN_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Directory for the room registry and the demo admin key [default: ./data]
    #[arg(long, env = "BULLHORN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM) for QUIC, and for wss with --viewer-tls; reloaded on SIGHUP [default: a self-signed one for localhost]
    #[arg(long, env = "BULLHORN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert
    #[arg(long, env = "BULLHORN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve the viewer listener over TLS (wss://, https://) with --tls-cert/--tls-key
    #[arg(long, env = "BULLHORN_VIEWER_TLS")]
    pub viewer_tls: bool,
    /// TLS certificate chain (PEM) for the admin listener (https); reloaded on SIGHUP [default: plain HTTP]
    #[arg(long, env = "BULLHORN_ADMIN_TLS_CERT")]
    pub admin_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --admin-tls-cert
    #[arg(long, env = "BULLHORN_ADMIN_TLS_KEY")]
    pub admin_tls_key: Option<PathBuf>,
    /// TOML config file
    #[arg(long, env = "BULLHORN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Join a cluster through NATS: nats://host:port[,…]
    #[arg(long, env = "BULLHORN_CLUSTER_NATS")]
    pub cluster_nats: Option<String>,
    /// Data-plane shard threads, each owning its subscribers' sockets and one presence shard of every room [default: the cores allowed]
    #[arg(long, env = "BULLHORN_SHARDS")]
    pub shards: Option<usize>,
    /// Pin each shard thread to one of the cores allowed
    #[arg(long, env = "BULLHORN_PIN_SHARDS")]
    pub pin_shards: bool,
    /// Broadcasts a subscriber may have queued before drops begin [default: 512]
    #[arg(long, env = "BULLHORN_QUEUE_MAX_MESSAGES")]
    pub queue_max_messages: Option<usize>,
    /// Bytes a subscriber may have queued before drops begin [default: 1048576]
    #[arg(long, env = "BULLHORN_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<usize>,
    /// Dropping for this long disconnects a subscriber as slow [default: 10000]
    #[arg(long, env = "BULLHORN_SLOW_CONSUMER_AFTER_MS")]
    pub slow_consumer_after_ms: Option<u64>,
    /// Broadcasts each room holds for resume (`room@seq`); 0 turns resume off [default: 64]
    #[arg(long, env = "BULLHORN_RESUME_MESSAGES")]
    pub resume_messages: Option<usize>,
    /// Bytes of frames each room holds for resume [default: 8388608]
    #[arg(long, env = "BULLHORN_RESUME_MAX_BYTES")]
    pub resume_max_bytes: Option<usize>,
    /// How long a broadcast stays resumable [default: 60000]
    #[arg(long, env = "BULLHORN_RESUME_MAX_AGE_MS")]
    pub resume_max_age_ms: Option<u64>,
    /// Server ping interval, also sent in `welcome` [default: 25000]
    #[arg(long, env = "BULLHORN_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// A subscriber silent this long is dropped [default: 60000]
    #[arg(long, env = "BULLHORN_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// `permessage-deflate` for WebSocket clients that offer it: on or off [default: on]
    #[arg(long, env = "BULLHORN_WS_COMPRESSION")]
    pub ws_compression: Option<String>,
    /// Broadcasts at least this long go compressed to clients that negotiated it [default: 256]
    #[arg(long, env = "BULLHORN_WS_COMPRESS_MIN_BYTES")]
    pub ws_compress_min_bytes: Option<usize>,
    /// Subscriber connections this node accepts [default: open-file limit minus a reserve]
    #[arg(long, env = "BULLHORN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest broadcast `data`, in bytes [default: 65536]
    #[arg(long, env = "BULLHORN_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Subscriber connections per client address, IPv6 per /64; 0: no limit [default: 4096]
    #[arg(long, env = "BULLHORN_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// A viewer must finish its TLS handshake and request head within this (slowloris) [default: 10000]
    #[arg(long, env = "BULLHORN_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// New connections (WebSocket and QUIC) taken per second, the rest wait; 0: no limit [default: 10000]
    #[arg(long, env = "BULLHORN_ACCEPT_RATE")]
    pub accept_rate: Option<u32>,
    /// Broadcasts each room accepts per second (429 beyond); 0: no limit [default: 1000]
    #[arg(long, env = "BULLHORN_BROADCASTS_PER_ROOM")]
    pub broadcasts_per_room: Option<u32>,
    /// Admin requests each app may make per second (429 beyond); 0: no limit [default: 2000]
    #[arg(long, env = "BULLHORN_ADMIN_REQUESTS_PER_APP")]
    pub admin_requests_per_app: Option<u32>,
    /// Reconnect delays on drain are spread over this window [default: 10000]
    #[arg(long, env = "BULLHORN_DRAIN_WINDOW_MS")]
    pub drain_window_ms: Option<u64>,
    /// How long a drain waits for subscribers to be closed [default: 5000]
    #[arg(long, env = "BULLHORN_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
}
