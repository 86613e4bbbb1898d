//! bullhorn: a broadcast fan-out engine for online-member broadcast rooms.
//!
//! An app's admin creates a few long-lived rooms and pushes JSON messages
//! through the admin API; anonymous members connected right now (WebSocket,
//! later QUIC) receive them. No member list is stored anywhere: presence is
//! sharded counters and in-memory queues.
//!
//! # The path of one broadcast
//! `admin::broadcast` validates the body and keeps `data` as raw JSON text →
//! `room::Room::publish` takes the next `seq` and encodes the message once per
//! framing (`fanout::Frames`) → appends it to each shard's `fanout::lane` →
//! each shard clones the shared `Bytes` into its members' bounded
//! `fanout::queue`s → each connection (`transport::ws`) writes its queue with
//! vectored writes. docs/architecture.md tells the why of each step.
//!
//! # Module map
//! * `config`, `cli`: configuration, merged flag > env > file > default.
//! * `server`, `state`, `shutdown`: assembling a node, shared state, drain.
//! * `cluster`: one node of a cluster over NATS (JetStream streams, KV, presence).
//! * `registry`: apps, rooms, the room cap, the durable registry, admin keys.
//! * `room`: one room's sequencer, presence and fan-out lanes.
//! * `presence`: sharded membership with per-shard counters.
//! * `fanout`: encoded broadcasts, lanes, per-subscriber queues, the writer.
//! * `protocol`: messages and framings; pure, no sockets.
//! * `transport`: WebSocket and QUIC subscribers and the public HTTP router.
//! * `tls`: certificates reloaded on SIGHUP, TLS sockets and listeners.
//! * `admin`: the admin REST API, health and metrics.
//! * `callbacks`: per-app HTTP callbacks before and after a broadcast.
//! * `tencent`: Tencent Cloud IM–style calls with UserSig, for migrating backends.
//! * `metrics`: every exported metric in one place.
//! * `client` (feature `client`, on by default): the Rust subscriber library.

pub mod admin;
pub mod api_error;
pub mod callbacks;
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod dataplane;
pub mod fanout;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod room;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tencent;
pub mod tls;
pub mod transport;

pub use config::Config;
pub use server::Server;
