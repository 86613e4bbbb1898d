//! bullhorn: a broadcast fan-out engine for online-member broadcast rooms.
//!
//! An app's admin creates a few long-lived rooms and pushes JSON messages
//! through the admin API; anonymous members connected right now (WebSocket,
//! QUIC, WebTransport) receive them. No member list is stored anywhere:
//! presence is sharded counters and in-memory queues.
//!
//! # The path of one broadcast
//! `admin::broadcast` validates the body and keeps `data` as raw JSON text →
//! the `broker` numbers it (here: `room::Room::publish`; in a cluster, the
//! room's NATS stream), the room encodes it once per framing
//! (`protocol::Frames`) and appends it to each shard's `fanout::lane` → the
//! `dataplane` shard thread that owns that lane's members clones the shared
//! `Bytes` into their bounded `fanout::queue`s and writes each one's queue
//! to its socket with one vectored send. docs/architecture.md tells the why
//! of each step.
//!
//! # Module map
//! * `config`, `cli`: configuration, merged flag > env > file > default.
//! * `server`, `state`, `shutdown`: assembling a node, shared state, drain.
//! * `broker`: who numbers broadcasts and keeps rooms: this node or the cluster.
//! * `cluster`: one node of a cluster over NATS (JetStream streams, KV, presence).
//! * `registry`: apps, rooms, the room cap, the durable registry, admin keys.
//! * `room`: one room's sequencer, presence and fan-out lanes.
//! * `presence`: sharded membership with per-shard counters.
//! * `fanout`: encoded broadcasts, lanes, per-subscriber queues, the writer.
//! * `dataplane`: the shard threads that own WebSocket subscribers' sockets.
//! * `protocol`: messages and framings; pure, no sockets.
//! * `cpu`: pinning threads to cores (shard threads, the harness's ceiling).
//! * `prefetch`: a CPU cache hint for the write pass over cold connections.
//! * `udp`: UDP sockets with storm-sized buffers, for the QUIC listener and clients.
//! * `transport`: accepting and admitting subscribers (WebSocket hand-over,
//!   QUIC and WebTransport sessions) and the public HTTP router.
//! * `tls`: certificates reloaded on SIGHUP, the admin TLS listener.
//! * `admin`: the admin REST API, health and metrics.
//! * `callbacks`: per-app HTTP callbacks before and after a broadcast.
//! * `tencent`: Tencent Cloud IM–style calls with UserSig, for migrating backends.
//! * `metrics`: every exported metric in one place.
//! * `client` (feature `client`, on by default): the Rust subscriber library.

pub mod admin;
pub mod api_error;
pub mod broker;
pub mod callbacks;
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod dataplane;
pub mod fanout;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod prefetch;
pub mod presence;
pub mod protocol;
pub mod pusher;
pub mod registry;
pub mod room;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tencent;
pub mod tls;
pub mod transport;
pub mod udp;

pub use config::Config;
pub use server::Server;
