//! Every metric bullhorn exports: names, labels, descriptions, and the handles
//! the hot paths hold so they never look a metric up per event.
//!
//! Served as Prometheus text on the admin listener only. Label cardinality is
//! bounded: `transport`, `reason` and `priority` have three values each, and `app`/`room` at
//! most `max_rooms` per configured app.

use std::sync::{Arc, OnceLock};

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::fanout::{Drops, Priority};

pub const CONNECTIONS: &str = "bullhorn_connections";
pub const ROOM_ONLINE: &str = "bullhorn_room_online";
pub const BROADCASTS: &str = "bullhorn_broadcasts_total";
pub const DELIVERIES: &str = "bullhorn_deliveries_total";
pub const DROPPED: &str = "bullhorn_dropped_messages_total";
pub const SLOW_DISCONNECTS: &str = "bullhorn_slow_consumer_disconnects_total";
pub const FANOUT_DURATION: &str = "bullhorn_fanout_duration_seconds";
pub const REJECTED_CONNECTIONS: &str = "bullhorn_rejected_connections_total";
pub const DROPPED_BY_PRIORITY: &str = "bullhorn_dropped_by_priority_total";
pub const RESUME_REPLAYED: &str = "bullhorn_resume_replayed_total";
pub const IDEMPOTENT_DUPLICATES: &str = "bullhorn_idempotent_duplicates_total";
pub const IDEMPOTENCY_KEYS_EVICTED: &str = "bullhorn_idempotency_keys_evicted_total";
pub const RATE_LIMITED: &str = "bullhorn_rate_limited_total";
pub const ACCEPT_THROTTLED: &str = "bullhorn_accept_throttled_total";
pub const CLUSTER_CONNECTED: &str = "bullhorn_cluster_connected";
pub const CLUSTER_MISSED: &str = "bullhorn_cluster_missed_broadcasts_total";
pub const COMPRESSED: &str = "bullhorn_compressed_broadcasts_total";
pub const CLUSTER_NODES: &str = "bullhorn_cluster_nodes";
pub const TLS_RELOADS: &str = "bullhorn_tls_reloads_total";
pub const TENCENT_CALLS: &str = "bullhorn_tencent_calls_total";
pub const PUSHER_AUTH_REJECTED: &str = "bullhorn_pusher_auth_rejected_total";
pub const PUSHER_UNKNOWN_CHANNELS: &str = "bullhorn_pusher_unknown_channels_total";
pub const PUSHER_SUBSCRIPTIONS_REFUSED: &str = "bullhorn_pusher_subscriptions_refused_total";
pub const CALLBACKS: &str = "bullhorn_callbacks_total";
pub const CALLBACK_OVERFLOW: &str = "bullhorn_callback_queue_overflow_total";
pub const CALLBACK_QUEUE: &str = "bullhorn_callback_queue_depth";

/// Buckets of the fan-out histogram, in seconds: 10 µs to 1 s.
const FANOUT_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(FANOUT_DURATION.into()), FANOUT_BUCKETS)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(CONNECTIONS, "Open subscriber connections by transport.");
    describe_gauge!(ROOM_ONLINE, "Members online in a room on this node.");
    describe_counter!(BROADCASTS, "Broadcasts accepted by room.");
    describe_counter!(DELIVERIES, "Broadcast frames written to subscribers, by transport.");
    describe_counter!(DROPPED, "Messages owed to subscribers and not sent, by reason.");
    describe_counter!(SLOW_DISCONNECTS, "Subscribers disconnected for staying behind.");
    describe_histogram!(FANOUT_DURATION, "Broadcast accepted until queued on every local subscriber.");
    describe_counter!(REJECTED_CONNECTIONS, "Subscriber connections refused before the upgrade, by reason.");
    describe_counter!(PUSHER_AUTH_REJECTED, "Pusher HTTP API requests refused for their signature.");
    describe_counter!(
        PUSHER_UNKNOWN_CHANNELS,
        "Channels named by Pusher HTTP API events that are no room: nothing sent."
    );
    describe_counter!(
        PUSHER_SUBSCRIPTIONS_REFUSED,
        "Pusher subscribes refused: private or presence channels, unknown rooms, past the room cap."
    );
    describe_counter!(DROPPED_BY_PRIORITY, "Broadcasts dropped for slow subscribers, by the broadcast's priority.");
    describe_counter!(RESUME_REPLAYED, "Broadcasts replayed to subscribers resuming with room@seq.");
    describe_counter!(IDEMPOTENT_DUPLICATES, "Broadcast requests answered from an earlier Idempotency-Key, not sent.");
    describe_counter!(
        IDEMPOTENCY_KEYS_EVICTED,
        "Idempotency keys forgotten before 5 minutes to respect the per-room cap."
    );
    describe_counter!(
        RATE_LIMITED,
        "Admin requests answered 429, by the limit: broadcast (per room) or admin (per app)."
    );
    describe_counter!(
        ACCEPT_THROTTLED,
        "Times an accept loop (viewer or QUIC) paused at --accept-rate (a storm queued in the backlog)."
    );
    describe_counter!(
        CALLBACKS,
        "Callback requests by app, kind (before, after) and result (ok, failed_open, failed_closed, retried)."
    );
    describe_counter!(
        CALLBACK_OVERFLOW,
        "After-broadcast events not queued because the app's callback queue was full."
    );
    describe_gauge!(CALLBACK_QUEUE, "After-broadcast events waiting for the app's callback server.");
    describe_counter!(TENCENT_CALLS, "Tencent-style REST calls, by command and outcome (ok, or the ErrorCode).");
    describe_counter!(TLS_RELOADS, "Certificate reloads on SIGHUP, by result: ok or error (the old one stays).");
    describe_gauge!(CLUSTER_CONNECTED, "1 while this node is connected to NATS (cluster mode only).");
    describe_counter!(CLUSTER_MISSED, "Broadcasts gone from a room's stream before this node delivered them.");
    describe_counter!(
        COMPRESSED,
        "Broadcasts compressed (once each) for WebSocket members that negotiated permessage-deflate."
    );
    describe_gauge!(CLUSTER_NODES, "Nodes whose presence report is fresh, this one included (cluster mode only).");
}

/// Handles for the metrics touched on hot paths, registered once.
///
/// Created before a recorder is installed (as in benches), they are no-ops.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Handles>,
}

pub struct Handles {
    pub ws_connections: Gauge,
    pub quic_connections: Gauge,
    pub webtransport_connections: Gauge,
    pub sse_connections: Gauge,
    pub pusher_connections: Gauge,
    pub ws_deliveries: Counter,
    pub quic_deliveries: Counter,
    pub webtransport_deliveries: Counter,
    pub sse_deliveries: Counter,
    pub pusher_deliveries: Counter,
    pub dropped_slow: Counter,
    pub dropped_conflated: Counter,
    pub dropped_expired: Counter,
    /// By `Priority::index`.
    pub dropped_by_priority: [Counter; 3],
    pub slow_disconnects: Counter,
    pub resume_replayed: Counter,
    pub idempotent_duplicates: Counter,
    pub idempotency_keys_evicted: Counter,
    pub fanout_duration: Histogram,
    pub rejected_over_capacity: Counter,
    pub rejected_per_ip: Counter,
    pub rejected_handshake_timeout: Counter,
    pub rejected_tls_handshake: Counter,
    pub tls_reloads_ok: Counter,
    pub tls_reloads_failed: Counter,
    pub rate_limited_broadcast: Counter,
    pub rate_limited_admin: Counter,
    pub rejected_pusher_auth: Counter,
    pub pusher_unknown_channels: Counter,
    pub pusher_subscriptions_refused: Counter,
    pub accept_throttled: Counter,
    pub cluster_connected: Gauge,
    pub cluster_missed: Counter,
    pub compressed_broadcasts: Counter,
    pub cluster_nodes: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            inner: Arc::new(Handles {
                ws_connections: gauge!(CONNECTIONS, "transport" => "websocket"),
                quic_connections: gauge!(CONNECTIONS, "transport" => "quic"),
                webtransport_connections: gauge!(CONNECTIONS, "transport" => "webtransport"),
                sse_connections: gauge!(CONNECTIONS, "transport" => "sse"),
                pusher_connections: gauge!(CONNECTIONS, "transport" => "pusher"),
                ws_deliveries: counter!(DELIVERIES, "transport" => "websocket"),
                quic_deliveries: counter!(DELIVERIES, "transport" => "quic"),
                webtransport_deliveries: counter!(DELIVERIES, "transport" => "webtransport"),
                sse_deliveries: counter!(DELIVERIES, "transport" => "sse"),
                pusher_deliveries: counter!(DELIVERIES, "transport" => "pusher"),
                dropped_slow: counter!(DROPPED, "reason" => "slow"),
                dropped_conflated: counter!(DROPPED, "reason" => "conflated"),
                dropped_expired: counter!(DROPPED, "reason" => "expired"),
                dropped_by_priority: Priority::ALL.map(|p| counter!(DROPPED_BY_PRIORITY, "priority" => p.as_str())),
                slow_disconnects: counter!(SLOW_DISCONNECTS),
                resume_replayed: counter!(RESUME_REPLAYED),
                idempotent_duplicates: counter!(IDEMPOTENT_DUPLICATES),
                idempotency_keys_evicted: counter!(IDEMPOTENCY_KEYS_EVICTED),
                fanout_duration: histogram!(FANOUT_DURATION),
                rejected_over_capacity: counter!(REJECTED_CONNECTIONS, "reason" => "over_capacity"),
                rejected_per_ip: counter!(REJECTED_CONNECTIONS, "reason" => "per_ip"),
                rejected_handshake_timeout: counter!(REJECTED_CONNECTIONS, "reason" => "handshake_timeout"),
                rejected_tls_handshake: counter!(REJECTED_CONNECTIONS, "reason" => "tls_handshake"),
                tls_reloads_ok: counter!(TLS_RELOADS, "result" => "ok"),
                tls_reloads_failed: counter!(TLS_RELOADS, "result" => "error"),
                rate_limited_broadcast: counter!(RATE_LIMITED, "limit" => "broadcast"),
                rate_limited_admin: counter!(RATE_LIMITED, "limit" => "admin"),
                rejected_pusher_auth: counter!(PUSHER_AUTH_REJECTED),
                pusher_unknown_channels: counter!(PUSHER_UNKNOWN_CHANNELS),
                pusher_subscriptions_refused: counter!(PUSHER_SUBSCRIPTIONS_REFUSED),
                accept_throttled: counter!(ACCEPT_THROTTLED),
                cluster_connected: gauge!(CLUSTER_CONNECTED),
                cluster_missed: counter!(CLUSTER_MISSED),
                compressed_broadcasts: counter!(COMPRESSED),
                cluster_nodes: gauge!(CLUSTER_NODES),
            }),
        }
    }

    /// Adds a delivery pass's drops.
    pub fn record_drops(&self, drops: &Drops) {
        let slow: u64 = drops.slow.iter().sum();
        if slow > 0 {
            self.dropped_slow.increment(slow);
            for (counter, n) in self.dropped_by_priority.iter().zip(drops.slow) {
                if n > 0 {
                    counter.increment(n);
                }
            }
        }
        if drops.conflated > 0 {
            self.dropped_conflated.increment(drops.conflated);
        }
        if drops.slow_consumers > 0 {
            self.slow_disconnects.increment(drops.slow_consumers);
        }
    }

    /// Adds one resume's replayed and expired broadcasts.
    pub fn record_resume(&self, replayed: u64, expired: u64) {
        if replayed > 0 {
            self.resume_replayed.increment(replayed);
        }
        if expired > 0 {
            self.dropped_expired.increment(expired);
        }
    }

    /// The per-room broadcast counter, registered when a room is created or loaded.
    pub fn room_broadcasts(&self, app: &str, room: &str) -> Counter {
        counter!(BROADCASTS, "app" => app.to_owned(), "room" => room.to_owned())
    }

    /// Sets a room's online gauge (refreshed just before each scrape).
    pub fn set_room_online(&self, app: &str, room: &str, online: usize) {
        gauge!(ROOM_ONLINE, "app" => app.to_owned(), "room" => room.to_owned()).set(online as f64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::ops::Deref for Metrics {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.inner
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
