//! Who numbers broadcasts and keeps the room list: this node alone, or the
//! cluster through NATS (contract §7). The admin API, the Tencent-style calls
//! and the health checks go through [`Broker`] and never ask which one it is;
//! the difference lives here and in `cluster/`.
//!
//! Either way the result reaches local subscribers the same way: the room's
//! lanes and the data plane's shards.

use std::sync::Arc;

use tokio::task::AbortHandle;

use crate::api_error::ApiError;
use crate::cluster::events::Claim;
use crate::cluster::{Cluster, ClusterError};
use crate::fanout::{ConflateKey, Delivery};
use crate::metrics::Metrics;
use crate::registry::{App, Registry, RegistryError};
use crate::room::EventState;
use crate::room::events::Transition;
use crate::room::reach_log::Counts;
use crate::room::{Outgoing, Published, Room};

/// The longest a room event's claim may take before the next look tries again.
const CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The node's broker.
#[derive(Debug)]
pub enum Broker {
    /// One node: the registry (and its data dir) is the truth, the room's
    /// sequencer numbers each broadcast.
    Local,
    /// A cluster: rooms live in a NATS KV bucket, each room's stream numbers
    /// its broadcasts, every node delivers what its feed brings.
    Nats(Arc<Cluster>),
}

impl Broker {
    /// True while writes can be taken (a cluster needs NATS): `/readyz` follows it.
    pub fn is_ready(&self) -> bool {
        match self {
            Broker::Local => true,
            Broker::Nats(cluster) => cluster.is_connected(),
        }
    }

    /// Members of `room` online now: here, or on every live node.
    pub fn online(&self, room: &Room) -> usize {
        match self {
            Broker::Local => room.online(),
            Broker::Nats(cluster) => cluster.online(room.app(), room),
        }
    }

    /// Creates a room, atomically against the app's cap.
    pub async fn create_room(
        &self,
        registry: &Registry,
        app: &App,
        room: &str,
        name: Option<String>,
    ) -> Result<Arc<Room>, ApiError> {
        match self {
            Broker::Local => registry.create_room(app, room, name).await.map_err(registry_error),
            Broker::Nats(cluster) => cluster.create_room(registry, app, room, name).await.map_err(cluster_error),
        }
    }

    /// Deletes a room; its members are told `room_destroyed` (on every node).
    pub async fn delete_room(&self, registry: &Registry, app: &App, room: &str) -> Result<(), ApiError> {
        match self {
            Broker::Local => registry.delete_room(app, room).await.map_err(registry_error),
            Broker::Nats(cluster) => cluster.delete_room(registry, app, room).await.map_err(cluster_error),
        }
    }

    /// Changes a room's name or occupancy interval (on every node), and writes it down.
    pub async fn change_room(
        &self,
        registry: &Registry,
        app: &App,
        room: &Room,
        name: Option<String>,
        occupancy_interval_ms: Option<u64>,
    ) -> Result<(), ApiError> {
        match self {
            Broker::Local => {
                if let Some(name) = name {
                    room.rename(name);
                }
                if let Some(ms) = occupancy_interval_ms {
                    room.set_occupancy_interval_ms(ms);
                }
                registry.persist().await.map_err(|e| registry_error(RegistryError::Storage(e)))
            }
            Broker::Nats(cluster) => {
                cluster.change_room(registry, app, room.id(), name, occupancy_interval_ms).await.map_err(cluster_error)
            }
        }
    }

    /// Unpins the room's sticky message (on every node); false when none was pinned.
    pub async fn unpin(&self, registry: &Registry, room: &Room) -> bool {
        let Some(seq) = room.unpin() else {
            return false;
        };
        match self {
            Broker::Local => {
                if let Err(error) = registry.persist().await {
                    tracing::warn!(%error, room = %room.id(), "unpinned, but the registry could not be written");
                }
            }
            Broker::Nats(cluster) => cluster.publish_unpin(room.app(), room.id(), seq).await,
        }
        true
    }

    /// Numbers and sends one broadcast; `online` is counted on every live node in a cluster.
    pub async fn publish(&self, room: &Arc<Room>, outgoing: Outgoing<'_>) -> Result<Published, ApiError> {
        match self {
            Broker::Local => {
                let delivery = Delivery {
                    priority: outgoing.priority,
                    conflate: outgoing.conflate.map_or(ConflateKey::NONE, ConflateKey::of),
                };
                Ok(room.publish_with(outgoing.data, delivery, outgoing.extras, outgoing.idempotency_key))
            }
            Broker::Nats(cluster) => {
                let accepted = cluster.publish(room, outgoing).await.map_err(|error| {
                    tracing::warn!(%error, "broadcast refused: cluster unavailable");
                    ApiError::cluster_unavailable(error.to_string())
                })?;
                Ok(Published { seq: accepted.seq, online: self.online(room), duplicate: accepted.duplicate })
            }
        }
    }

    /// Broadcast `seq` of `room` as every node counted it (this one alone, on one node).
    pub async fn reach(&self, room: &Room, seq: u64) -> Option<Counts> {
        match self {
            Broker::Local => room.reach(seq),
            Broker::Nats(cluster) => cluster.reach(room, seq).await,
        }
    }

    /// Whether this node is the one to tell `room`'s `transition` (always, on
    /// one node). When it is not, the room takes the state the cluster holds;
    /// when the cluster cannot say, the room goes back to `before` the look,
    /// so the next look tries again.
    pub async fn claim_room_event(&self, room: &Room, transition: Transition, before: EventState) -> bool {
        let Broker::Nats(cluster) = self else {
            return true;
        };
        // Bounded, so a slow NATS does not hold up every other room's tick.
        let claim = cluster.claim_room_event(room.app(), room.id(), transition, room.events_revision());
        let timed_out = || Err(ClusterError::Unavailable("the claim timed out".into()));
        match tokio::time::timeout(CLAIM_TIMEOUT, claim).await.unwrap_or_else(|_| timed_out()) {
            Ok(Claim::Won { revision }) => {
                room.told_event(revision);
                true
            }
            Ok(Claim::Known { occupied, revision }) => {
                room.take_event_state(occupied, revision);
                false
            }
            Err(error) => {
                tracing::warn!(%error, room = %room.id(), event = transition.event(), "room event not decided; retrying");
                room.undo_look(before);
                false
            }
        }
    }

    /// Starts what runs for the node's lifetime (a cluster's room watcher and presence).
    pub fn spawn(&self, registry: &Arc<Registry>, metrics: &Metrics) -> Vec<AbortHandle> {
        match self {
            Broker::Local => Vec::new(),
            Broker::Nats(cluster) => cluster.spawn(registry, metrics),
        }
    }
}

fn cluster_error(error: ClusterError) -> ApiError {
    match error {
        ClusterError::Registry(error) => registry_error(error),
        ClusterError::Unavailable(message) => {
            tracing::warn!(%message, "admin write refused: cluster unavailable");
            ApiError::cluster_unavailable(message)
        }
    }
}

fn registry_error(error: RegistryError) -> ApiError {
    match error {
        RegistryError::RoomExists(room) => ApiError::room_exists(&room),
        RegistryError::RoomLimit(max) => ApiError::room_limit(max),
        RegistryError::RoomNotFound(room) => ApiError::room_not_found(&room),
        RegistryError::Storage(e) => {
            tracing::error!(error = %e, "room registry write failed");
            ApiError::internal("the room registry could not be written; nothing was changed")
        }
    }
}
