//! Cluster-wide `online` without a member list: every second each node
//! publishes its per-room counts on `bullhorn.presence.<node>`; every node
//! keeps the last report of each other node and sums those younger than
//! [`FRESH_FOR`], so a killed node stops counting within 5 s.
//!
//! A report lists every room the node has, members or not, so a node that
//! creates a room can tell when every live node serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Cluster, names};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// How often a node reports its counts.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A report older than this no longer counts: its node is presumed dead.
pub const FRESH_FOR: Duration = Duration::from_secs(4);

/// One node's counts: `(app, room, online)`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    rooms: Vec<(String, String, u64)>,
}

/// The other nodes' last reports.
#[derive(Debug)]
pub struct Presence {
    node: String,
    reports: Mutex<HashMap<String, (Instant, Report)>>,
}

impl Presence {
    pub fn new(node: String) -> Presence {
        Presence { node, reports: Mutex::default() }
    }

    /// Members of `room` on live nodes other than this one.
    pub fn remote_online(&self, app: &str, room: &str) -> usize {
        let now = Instant::now();
        let reports = self.reports.lock().expect("presence lock");
        let counts = reports.values().filter(|(at, _)| now.duration_since(*at) < FRESH_FOR).flat_map(|(_, report)| {
            report.rooms.iter().filter(|(a, r, _)| a == app && r == room).map(|(_, _, online)| *online as usize)
        });
        counts.sum()
    }

    /// Live nodes other than this one.
    pub fn live_others(&self) -> usize {
        let now = Instant::now();
        let reports = self.reports.lock().expect("presence lock");
        reports.values().filter(|(at, _)| now.duration_since(*at) < FRESH_FOR).count()
    }

    /// True when every live node's last report lists `room`.
    pub fn everyone_has(&self, app: &str, room: &str) -> bool {
        let now = Instant::now();
        let reports = self.reports.lock().expect("presence lock");
        reports
            .values()
            .filter(|(at, _)| now.duration_since(*at) < FRESH_FOR)
            .all(|(_, report)| report.rooms.iter().any(|(a, r, _)| a == app && r == room))
    }

    /// Keeps a report; forgets nodes long silent. Returns the live nodes, this one included.
    fn record(&self, node: &str, report: Report) -> usize {
        let now = Instant::now();
        let mut reports = self.reports.lock().expect("presence lock");
        if node != self.node {
            reports.insert(node.to_owned(), (now, report));
        }
        reports.retain(|_, (at, _)| now.duration_since(*at) < FRESH_FOR * 10);
        1 + reports.values().filter(|(at, _)| now.duration_since(*at) < FRESH_FOR).count()
    }
}

/// Publishes this node's counts every second, and at once when its rooms
/// change, for its lifetime.
pub(super) async fn publish(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let subject = names::presence_subject(&cluster.node);
    let mut every = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = cluster.rooms_changed.notified() => {}
        }
        if !cluster.is_connected() {
            continue;
        }
        let mut report = Report::default();
        for app in registry.apps() {
            for room in app.rooms() {
                report.rooms.push((app.id().to_string(), room.id().to_string(), room.online() as u64));
            }
        }
        let payload = Bytes::from(serde_json::to_vec(&report).expect("serializable"));
        if let Err(error) = cluster.client.publish(subject.clone(), payload).await {
            tracing::debug!(%error, "presence report not sent");
        }
    }
}

/// Keeps every node's last report for its lifetime.
pub(super) async fn listen(cluster: Arc<Cluster>, metrics: Metrics) {
    let wildcard = format!("{}*", names::PRESENCE_PREFIX);
    super::each_message(cluster.client.clone(), wildcard, "presence", |message| {
        let node = message.subject.strip_prefix(names::PRESENCE_PREFIX)?;
        match serde_json::from_slice::<Report>(&message.payload) {
            Ok(report) => metrics.cluster_nodes.set(cluster.presence.record(node, report) as f64),
            Err(error) => tracing::warn!(%error, node, "unreadable presence report"),
        }
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rooms: &[(&str, &str, u64)]) -> Report {
        Report { rooms: rooms.iter().map(|(a, r, n)| (a.to_string(), r.to_string(), *n)).collect() }
    }

    #[test]
    fn sums_other_nodes_and_ignores_its_own_echo() {
        let presence = Presence::new("me".into());
        presence.record("a", report(&[("demo", "gifts", 3), ("demo", "other", 100)]));
        presence.record("b", report(&[("demo", "gifts", 4)]));
        let live = presence.record("me", report(&[("demo", "gifts", 1000)]));
        assert_eq!(presence.remote_online("demo", "gifts"), 7);
        assert_eq!(live, 3);
    }

    #[test]
    fn a_room_is_everywhere_once_every_live_node_lists_it() {
        let presence = Presence::new("me".into());
        presence.record("a", report(&[("demo", "gifts", 0)]));
        presence.record("b", report(&[]));
        assert!(!presence.everyone_has("demo", "gifts"));
        presence.reports.lock().unwrap().get_mut("b").unwrap().0 -= FRESH_FOR;
        assert!(presence.everyone_has("demo", "gifts"), "a dead node is not waited for");
    }

    #[test]
    fn a_stale_report_stops_counting() {
        let presence = Presence::new("me".into());
        presence.record("a", report(&[("demo", "gifts", 3)]));
        presence.reports.lock().unwrap().get_mut("a").unwrap().0 -= FRESH_FOR;
        assert_eq!(presence.remote_online("demo", "gifts"), 0);
    }
}
