//! The state every handler and connection shares: a cheap-clone `Arc` over
//! what the server built at start. Nothing in it is locked as a whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::broker::Broker;
use crate::config::LimitsConfig;
use crate::dataplane::Dataplane;
use crate::fanout::QueueLimits;
use crate::limits::{self, TokenBucket};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::Room;
use crate::shutdown::Drain;
use crate::transport::capacity::Connections;

/// Per-connection and per-request settings, fixed at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: QueueLimits,
    pub heartbeat: Duration,
    pub idle_timeout: Duration,
    /// `permessage-deflate` is accepted when a WebSocket client offers it.
    pub ws_compression: bool,
    pub max_payload_bytes: usize,
    pub limits: LimitsConfig,
    /// Where browsers reach the QUIC listener for WebTransport: its port, and
    /// the development certificate's SHA-256 (hex) they must be told to
    /// accept (`serverCertificateHashes`); `None` with a real certificate.
    pub webtransport_port: u16,
    pub dev_cert_sha256: Option<String>,
}

#[derive(Debug)]
pub struct Shared {
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub drain: Drain,
    pub connections: Arc<Connections>,
    pub settings: Settings,
    pub prometheus: PrometheusHandle,
    /// Who numbers broadcasts and keeps the room list: this node, or the cluster.
    pub broker: Broker,
    /// `--accept-rate`, one bucket for the viewer and QUIC accept loops.
    pub accept_rate: Option<TokenBucket>,
    /// The shard threads that own WebSocket subscribers' sockets.
    pub dataplane: Arc<Dataplane>,
    next_connection_id: AtomicU64,
}

/// What a broadcast crosses: the broker that numbers it (this node, or the
/// cluster), then the data plane to the sockets.
pub struct Planes {
    pub broker: Broker,
    pub dataplane: Arc<Dataplane>,
}

impl Shared {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Metrics,
        drain: Drain,
        connections: Arc<Connections>,
        settings: Settings,
        prometheus: PrometheusHandle,
        Planes { broker, dataplane }: Planes,
    ) -> Shared {
        Shared {
            dataplane,
            accept_rate: limits::per_second(settings.limits.accept_rate),
            registry,
            metrics,
            drain,
            connections,
            settings,
            prometheus,
            broker,
            next_connection_id: AtomicU64::new(1),
        }
    }

    /// Members of `room` online now: on this node, or on every live node in a cluster.
    pub fn online(&self, room: &Room) -> usize {
        self.broker.online(room)
    }

    /// A process-unique connection id; it also picks the presence shard.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A process-unique connection id that picks presence shard `shard` of
    /// `shards` (congruent to it): for a connection whose socket a shard
    /// already owns (QUIC: the kernel chose the shard).
    pub fn next_connection_id_on(&self, shard: usize, shards: usize) -> u64 {
        let shards = shards.max(1) as u64;
        let mut id = 0;
        let _ = self.next_connection_id.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            id = next + (shard as u64 + shards - next % shards) % shards;
            Some(id + 1)
        });
        id
    }
}
