//! Rooms and the per-app cap, cluster-wide: one KV key per app holding its
//! room list. A create or delete reads the list and its revision and writes
//! it back with `update(key, list, revision)`, which the server refuses when
//! another write came first; the loser re-reads and tries again. So of any
//! number of concurrent creates on any nodes, exactly `max_rooms` succeed
//! (compare-and-set, never check-then-write).
//!
//! Every node watches the bucket and mirrors each list into its registry:
//! a listed room it lacks is built (starting after its stream's last seq)
//! with a feed; a room no longer listed is destroyed, its members told.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, RETRY_AFTER, feed, names};
use crate::registry::{App, Registry, RegistryError};
use crate::room::{Room, RoomSpec};

/// The longest a create waits for every live node to serve the new room.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// One room as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRoom {
    pub room: String,
    pub name: String,
    pub created_at: String,
    /// Occupancy pushed to members every this many ms; 0 is off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub occupancy_interval_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(super) async fn open_bucket(jetstream: &jetstream::Context) -> Result<kv::Store, async_nats::Error> {
    super::open_kv(jetstream, names::ROOMS_BUCKET, "bullhorn: each app's room list").await
}

/// An app's room list and the revision it was read at (None: never written).
async fn read(cluster: &Cluster, app: &str) -> Result<(Vec<ListedRoom>, Option<u64>), ClusterError> {
    let entry = cluster.rooms.entry(app).await.map_err(|e| ClusterError::unavailable("reading the room list", e))?;
    match entry {
        Some(entry) => Ok((parse(&entry.value), Some(entry.revision))),
        None => Ok((Vec::new(), None)),
    }
}

fn parse(value: &[u8]) -> Vec<ListedRoom> {
    serde_json::from_slice(value).unwrap_or_else(|error| {
        tracing::error!(%error, "unreadable room list in NATS; treating it as empty");
        Vec::new()
    })
}

/// Writes `list` if the key is still at `revision`; Ok(None) when another
/// write came first.
async fn write(
    cluster: &Cluster,
    app: &str,
    list: &[ListedRoom],
    revision: Option<u64>,
) -> Result<Option<u64>, ClusterError> {
    let value = Bytes::from(serde_json::to_vec(list).expect("serializable"));
    let written = match revision {
        Some(revision) => match cluster.rooms.update(app, value, revision).await {
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(None),
            other => other.map_err(|e| ClusterError::unavailable("writing the room list", e)),
        },
        None => match cluster.rooms.create(app, value).await {
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
            other => other.map_err(|e| ClusterError::unavailable("writing the room list", e)),
        },
    };
    written.map(Some)
}

impl Cluster {
    /// Creates a room cluster-wide, within the app's cap.
    pub async fn create_room(
        &self,
        registry: &Registry,
        app: &App,
        room: &str,
        name: Option<String>,
    ) -> Result<Arc<Room>, ClusterError> {
        self.require_connection()?;
        let listed = ListedRoom {
            room: room.to_owned(),
            name: name.unwrap_or_else(|| room.to_owned()),
            created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            occupancy_interval_ms: 0,
        };
        loop {
            let (mut list, revision) = read(self, app.id()).await?;
            if list.iter().any(|r| r.room == room) {
                return Err(RegistryError::RoomExists(room.to_owned()).into());
            }
            if list.len() >= app.max_rooms() {
                return Err(RegistryError::RoomLimit(app.max_rooms()).into());
            }
            // Before the list names the room, so every node's feed finds its stream.
            feed::create_stream(self, app.id(), room).await?;
            list.push(listed.clone());
            if let Some(revision) = write(self, app.id(), &list, revision).await? {
                self.mirror(registry, app, &list, revision).await?;
                self.settle(app.id(), room).await;
                return app
                    .room(room)
                    .ok_or_else(|| ClusterError::Unavailable("the room was replaced meanwhile".into()));
            }
        }
    }

    /// Deletes a room cluster-wide; every node closes its members.
    pub async fn delete_room(&self, registry: &Registry, app: &App, room: &str) -> Result<(), ClusterError> {
        self.require_connection()?;
        loop {
            let (mut list, revision) = read(self, app.id()).await?;
            let before = list.len();
            list.retain(|r| r.room != room);
            if list.len() == before {
                return Err(RegistryError::RoomNotFound(room.to_owned()).into());
            }
            if let Some(revision) = write(self, app.id(), &list, revision).await? {
                self.mirror(registry, app, &list, revision).await?;
                feed::delete_stream(self, app.id(), room).await;
                self.forget_room_events(app.id(), room).await;
                self.forget_pin(app.id(), room).await;
                return Ok(());
            }
        }
    }

    /// Changes a room's name or occupancy interval in the list; every node
    /// (this one at once) takes the change from the list it mirrors.
    pub async fn change_room(
        &self,
        registry: &Registry,
        app: &App,
        room: &str,
        name: Option<String>,
        occupancy_interval_ms: Option<u64>,
    ) -> Result<(), ClusterError> {
        self.require_connection()?;
        loop {
            let (mut list, revision) = read(self, app.id()).await?;
            let Some(listed) = list.iter_mut().find(|r| r.room == room) else {
                return Err(RegistryError::RoomNotFound(room.to_owned()).into());
            };
            if let Some(name) = &name {
                listed.name.clone_from(name);
            }
            if let Some(ms) = occupancy_interval_ms {
                listed.occupancy_interval_ms = ms;
            }
            if let Some(revision) = write(self, app.id(), &list, revision).await? {
                return self.mirror(registry, app, &list, revision).await;
            }
        }
    }

    /// Waits (briefly) until every live node reports the new room, so a
    /// viewer sent to any node right after the 201 finds it there.
    async fn settle(&self, app: &str, room: &str) {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        while !self.presence.everyone_has(app, room) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(app, room, "not every node reported the new room in time; answering anyway");
                return;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Makes this node's rooms of `app` what `list` (at `revision`) says.
    /// Older revisions than one already mirrored are ignored, so the watcher
    /// and a local write never undo each other.
    async fn mirror(
        &self,
        registry: &Registry,
        app: &App,
        list: &[ListedRoom],
        revision: u64,
    ) -> Result<(), ClusterError> {
        let mut mirrored = self.mirrored.lock().await;
        if mirrored.get(&**app.id()).is_some_and(|&seen| seen >= revision) {
            return Ok(());
        }
        for listed in list {
            if let Some(room) = app.room(&listed.room) {
                if room.name() != listed.name {
                    room.rename(listed.name.clone());
                }
                if room.occupancy_interval_ms() != listed.occupancy_interval_ms {
                    room.set_occupancy_interval_ms(listed.occupancy_interval_ms);
                }
                continue;
            }
            let seq = feed::last_seq(self, app.id(), &listed.room).await?;
            let (occupied, events_revision) = self.room_event_state(app.id(), &listed.room).await?;
            let sticky = self.pin_of(app.id(), &listed.room).await?;
            let spec = RoomSpec {
                app: app.id().clone(),
                id: Arc::from(listed.room.as_str()),
                name: listed.name.clone(),
                created_at: listed.created_at.clone(),
                seq,
                sticky,
                occupancy_interval_ms: listed.occupancy_interval_ms,
                occupied,
            };
            if let Some(room) = registry.mirror_room(app, spec) {
                room.take_event_state(occupied, events_revision);
                self.start_feed(room);
            }
        }
        for room in app.rooms() {
            if !list.iter().any(|listed| *listed.room == **room.id()) {
                self.stop_feed(app.id(), room.id());
                registry.forget_room(app, room.id());
            }
        }
        mirrored.insert(app.id().to_string(), revision);
        self.rooms_changed.notify_one();
        Ok(())
    }

    fn start_feed(&self, room: Arc<Room>) {
        let key = (room.app().clone(), room.id().clone());
        let task = tokio::spawn(feed::follow(self.jetstream.clone(), self.connections.clone(), room)).abort_handle();
        if let Some(old) = self.feeds.lock().expect("feeds lock").insert(key, task) {
            old.abort();
        }
    }

    fn stop_feed(&self, app: &Arc<str>, room: &Arc<str>) {
        if let Some(task) = self.feeds.lock().expect("feeds lock").remove(&(app.clone(), room.clone())) {
            task.abort();
        }
    }
}

/// Mirrors every app's room list, now and on every change, for the node's
/// lifetime. A broken watch (NATS restarting) is opened again; it starts with
/// each key's current list, so nothing missed meanwhile stays missed.
pub(super) async fn watch(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    loop {
        if let Err(error) = super::until_reconnected(&cluster.connections, watch_once(&cluster, &registry)).await {
            tracing::debug!(%error, "room watch ended; opening it again");
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

async fn watch_once(cluster: &Cluster, registry: &Registry) -> Result<(), async_nats::Error> {
    let mut entries = cluster.rooms.watch_with_history(">").await?;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Some(app) = registry.app(&entry.key) else {
            continue;
        };
        let list = match entry.operation {
            kv::Operation::Put => parse(&entry.value),
            kv::Operation::Delete | kv::Operation::Purge => Vec::new(),
        };
        cluster.mirror(registry, app, &list, entry.revision).await?;
    }
    Ok(())
}
