//! One node of a cluster over NATS (contract §7; docs/architecture.md,
//! "Cluster over NATS"). The single-node path is untouched: a cluster only
//! changes who numbers a broadcast and how it reaches the other nodes.
//!
//! * [`names`]: where each thing lives in NATS.
//! * [`rooms`]: each app's room list in a JetStream KV bucket, changed by
//!   compare-and-set, and mirrored into this node's registry.
//! * [`feed`]: a broadcast published to its room's stream (the stream numbers
//!   it), and the ordered consumer that delivers the stream on this node.
//! * [`presence`]: per-node room counts every second; `online` sums live nodes.
//! * [`reach`]: a broadcast's reach summed over the nodes, by scatter-gather.
//! * [`sticky`]: unpins reach every node (pins travel in the stream).
//! * [`events`]: one node tells each room event, by compare-and-set in a KV bucket.
//!
//! Health is the connection state: async-nats reconnects by itself and buffers
//! publishes meanwhile, so a publish returning proves nothing (crates.md §9).

pub mod events;
pub mod feed;
pub mod names;
pub mod presence;
pub mod reach;
pub mod rooms;
pub mod secrets;
pub mod sticky;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use tokio::task::AbortHandle;

use crate::metrics::Metrics;
use crate::registry::Registry;
use presence::Presence;

/// Every NATS request a node makes waits at most this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings find a dead broker this fast even when no socket error says so.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How long start waits for a first connection before it gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start waits for JetStream to answer.
const JETSTREAM_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before a failed watcher or feed tries again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why a cluster operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

impl ClusterError {
    fn unavailable(what: &str, error: impl std::fmt::Display) -> ClusterError {
        ClusterError::Unavailable(format!("{what}: {error}"))
    }
}

/// Opens the room bucket, waiting out a JetStream that is still electing its
/// leader (a NATS cluster starting alongside the nodes).
async fn open_bucket_when_ready(jetstream: &jetstream::Context) -> anyhow::Result<kv::Store> {
    let deadline = tokio::time::Instant::now() + JETSTREAM_READY_TIMEOUT;
    loop {
        match rooms::open_bucket(jetstream).await {
            Ok(store) => return Ok(store),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "JetStream not ready yet; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(error) => anyhow::bail!("cannot open the room bucket (is JetStream enabled on NATS?): {error}"),
        }
    }
}

/// The KV bucket `name` (one value per key, on file), created if it is not
/// there yet; a node that loses the race to create it opens the winner's.
async fn open_kv(
    jetstream: &jetstream::Context,
    name: &str,
    description: &str,
) -> Result<kv::Store, async_nats::Error> {
    if let Ok(store) = jetstream.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.into(),
        description: description.into(),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match jetstream.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(created) => jetstream.get_key_value(name).await.map_err(|_| created.into()),
    }
}

/// Runs `work` until it ends or NATS reconnects, whichever is first.
async fn until_reconnected<T>(
    connections: &tokio::sync::watch::Receiver<u64>,
    work: impl Future<Output = Result<T, async_nats::Error>>,
) -> Result<Option<T>, async_nats::Error> {
    let mut connections = connections.clone();
    connections.mark_unchanged();
    tokio::select! {
        done = work => done.map(Some),
        _ = connections.changed() => Ok(None),
    }
}

/// Calls `handle` with every message on `subject` for the node's lifetime,
/// subscribing again (after [`RETRY_AFTER`]) whenever the subscription ends;
/// what `handle` returns is published as the answer (to the message's reply subject).
async fn each_message(
    client: async_nats::Client,
    subject: String,
    what: &'static str,
    mut handle: impl FnMut(async_nats::Message) -> Option<(async_nats::Subject, bytes::Bytes)>,
) {
    use futures_util::StreamExt as _;
    loop {
        match client.subscribe(subject.clone()).await {
            Ok(mut messages) => {
                while let Some(message) = messages.next().await {
                    if let Some((reply, payload)) = handle(message)
                        && let Err(error) = client.publish(reply, payload).await
                    {
                        tracing::debug!(%error, what, "answer not sent");
                    }
                }
            }
            Err(error) => tracing::debug!(%error, what, "subscription failed"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// (app, room).
type RoomKey = (Arc<str>, Arc<str>);

/// This node's membership in the cluster.
pub struct Cluster {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    rooms: kv::Store,
    /// Each room's last room event ([`events`]).
    events: kv::Store,
    /// Each room's pinned message, for nodes that start after it ([`sticky`]).
    pins: kv::Store,
    node: String,
    presence: Presence,
    /// Each mirrored room's feed task, by (app, room).
    feeds: Mutex<HashMap<RoomKey, AbortHandle>>,
    /// The KV revision of each app's room list this node last mirrored.
    mirrored: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Counts (re)connections. Consumers made before a broker restart only
    /// notice after missed heartbeats (~15 s); watchers reopen at once instead.
    connections: tokio::sync::watch::Receiver<u64>,
    /// Wakes the presence report when this node's rooms change.
    rooms_changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS (`urls`: comma-separated) and opens the room bucket.
    /// Fails when no server answers within [`CONNECT_TIMEOUT`]; once running,
    /// the node rides out any outage.
    pub async fn connect(urls: &str, metrics: &Metrics) -> anyhow::Result<Cluster> {
        let node = format!("{:016x}", rand::random::<u64>());
        let connected = metrics.cluster_connected.clone();
        let (reconnected, connections) = tokio::sync::watch::channel(0u64);
        let options = async_nats::ConnectOptions::new()
            .name(format!("bullhorn-{node}"))
            .ping_interval(PING_INTERVAL)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connection_timeout(REQUEST_TIMEOUT)
            .event_callback(move |event| {
                let connected = connected.clone();
                let reconnected = reconnected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connected.set(1.0);
                            reconnected.send_modify(|n| *n += 1);
                            tracing::info!("connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            connected.set(0.0);
                            tracing::warn!("lost NATS: admin writes answer 503 until it is back");
                        }
                        other => tracing::info!(event = %other, "NATS"),
                    }
                }
            });
        let servers: Vec<&str> = urls.split(',').map(str::trim).collect();
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(servers))
            .await
            .map_err(|_| anyhow::anyhow!("no NATS server answered at {urls} within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("cannot connect to NATS at {urls}"))?;
        metrics.cluster_connected.set(1.0);
        let jetstream = jetstream::new(client.clone());
        let rooms = open_bucket_when_ready(&jetstream).await?;
        let events = events::open_bucket(&jetstream)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the room events bucket: {e}"))?;
        let pins =
            sticky::open_bucket(&jetstream).await.map_err(|e| anyhow::anyhow!("cannot open the pins bucket: {e}"))?;
        tracing::info!(node, urls, "joined the cluster");
        Ok(Cluster {
            client,
            jetstream,
            rooms,
            events,
            pins,
            presence: Presence::new(node.clone()),
            node,
            feeds: Mutex::default(),
            mirrored: tokio::sync::Mutex::default(),
            connections,
            rooms_changed: tokio::sync::Notify::new(),
        })
    }

    /// This node's id in the cluster (random per start).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// True while connected to NATS: admin writes and `/readyz` follow it.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Fails fast with `cluster_unavailable` while NATS is away, rather than
    /// letting a write wait in the client's reconnect buffer.
    fn require_connection(&self) -> Result<(), ClusterError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(ClusterError::Unavailable("NATS is unreachable from this node; retry shortly".into()))
        }
    }

    /// Starts what runs for the node's lifetime: the room watcher and presence.
    pub fn spawn(self: &Arc<Self>, registry: &Arc<Registry>, metrics: &Metrics) -> Vec<AbortHandle> {
        vec![
            tokio::spawn(rooms::watch(self.clone(), registry.clone())).abort_handle(),
            tokio::spawn(presence::publish(self.clone(), registry.clone())).abort_handle(),
            tokio::spawn(presence::listen(self.clone(), metrics.clone())).abort_handle(),
            tokio::spawn(reach::answer(self.clone(), registry.clone())).abort_handle(),
            tokio::spawn(sticky::follow_unpins(self.clone(), registry.clone())).abort_handle(),
        ]
    }

    /// Members of `room` online on every live node.
    pub fn online(&self, app: &str, room: &crate::room::Room) -> usize {
        room.online() + self.presence.remote_online(app, room.id())
    }
}
