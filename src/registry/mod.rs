//! Apps and their rooms: lookups, the atomic per-app room cap, and the
//! durable copy of the room list.
//!
//! Apps are fixed at start; rooms change only through the admin API. Room
//! writes are serialised by one async lock held across the durable write, so
//! of any number of concurrent creates exactly `max_rooms` succeed, and a 201
//! is only answered once the registry is on disk. Reads (connects, room
//! objects, broadcasts) take a short std `RwLock` read and clone an `Arc`.

pub mod keys;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::callbacks::{CallbackConfig, Callbacks};
use crate::fanout::lane::CloseWith;
use crate::limits::TokenBucket;
use crate::metrics::Metrics;
use crate::room::{Room, RoomConfig, RoomSpec};
use keys::AdminKey;
use store::{Snapshot, Store, StoredRoom};

/// An app: its key, its cap and its rooms.
#[derive(Debug)]
pub struct App {
    id: Arc<str>,
    key: AdminKey,
    max_rooms: usize,
    rooms: RwLock<BTreeMap<Arc<str>, Arc<Room>>>,
    request_limit: Option<TokenBucket>,
    /// How Tencent-style calls authenticate for this app (contract §8).
    tencent: Option<TencentIdentity>,
    pusher: Option<PusherIdentity>,
    callbacks: Option<Arc<Callbacks>>,
}

impl App {
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn max_rooms(&self) -> usize {
        self.max_rooms
    }

    pub fn room(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.read().expect("rooms lock").get(id).cloned()
    }

    /// Takes one admin request from the app's rate limit, or says how long to wait.
    pub fn admit_request(&self) -> Result<(), std::time::Duration> {
        self.request_limit.as_ref().map_or(Ok(()), |limit| limit.try_take(std::time::Instant::now()))
    }

    /// The app's rooms in id order.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.read().expect("rooms lock").values().cloned().collect()
    }

    pub fn tencent(&self) -> Option<&TencentIdentity> {
        self.tencent.as_ref()
    }

    pub fn callbacks(&self) -> Option<&Arc<Callbacks>> {
        self.callbacks.as_ref()
    }

    pub fn pusher(&self) -> Option<&PusherIdentity> {
        self.pusher.as_ref()
    }
}

/// An app's identity for Pusher's protocol and HTTP API (contract §12).
#[derive(Clone)]
pub struct PusherIdentity {
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl std::fmt::Debug for PusherIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("PusherIdentity").field("app_id", &self.app_id).field("key", &self.key).finish_non_exhaustive()
    }
}

/// An app's identity for Tencent-style calls: its SDKAppID, the key its
/// UserSigs are signed with, and the accounts that may administer it.
#[derive(Clone)]
pub struct TencentIdentity {
    pub sdkappid: u64,
    pub usersig_key: String,
    pub admin_identifiers: Vec<String>,
}

impl std::fmt::Debug for TencentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TencentIdentity")
            .field("sdkappid", &self.sdkappid)
            .field("admin_identifiers", &self.admin_identifiers)
            .finish_non_exhaustive()
    }
}

/// What the registry is built from: one entry per configured app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub id: String,
    pub admin_key: String,
    pub max_rooms: usize,
    /// Admin requests per second; 0: no limit.
    pub requests_per_sec: u32,
    pub tencent: Option<TencentIdentity>,
    pub pusher: Option<PusherIdentity>,
    pub callbacks: Option<CallbackConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("room {0:?} already exists")]
    RoomExists(String),
    #[error("the app already has its maximum of {0} rooms")]
    RoomLimit(usize),
    #[error("room {0:?} does not exist")]
    RoomNotFound(String),
    #[error("could not write the room registry: {0}")]
    Storage(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct Registry {
    apps: BTreeMap<Arc<str>, Arc<App>>,
    /// Rooms of apps not configured now, written back untouched.
    orphans: BTreeMap<String, Vec<StoredRoom>>,
    /// None in a cluster: the rooms live in NATS, and this node mirrors them.
    store: Option<Store>,
    writes: tokio::sync::Mutex<()>,
    room_config: RoomConfig,
    metrics: Metrics,
    /// Stands in for unknown apps so a 401 costs the same either way.
    decoy_key: AdminKey,
}

impl Registry {
    /// Loads the stored rooms of the configured apps. Without a store (a
    /// cluster node), starts with no rooms: the cluster's list fills them in.
    pub fn load(
        store: Option<Store>,
        specs: Vec<AppSpec>,
        room_config: RoomConfig,
        metrics: Metrics,
    ) -> std::io::Result<Registry> {
        let mut snapshot = match &store {
            Some(store) => store.load()?,
            None => Snapshot::default(),
        };
        let mut apps = BTreeMap::new();
        for spec in specs {
            let id: Arc<str> = Arc::from(spec.id.as_str());
            let mut rooms = BTreeMap::new();
            for stored in snapshot.apps.remove(&spec.id).unwrap_or_default() {
                let room = Room::new(
                    RoomSpec {
                        app: id.clone(),
                        id: Arc::from(stored.room.as_str()),
                        name: stored.name.unwrap_or_else(|| stored.room.clone()),
                        created_at: stored.created_at,
                        seq: stored.seq,
                        sticky: stored.sticky,
                        occupancy_interval_ms: u64::from(stored.occupancy_interval_ms),
                        occupied: stored.occupied,
                    },
                    room_config.clone(),
                    metrics.clone(),
                );
                rooms.insert(room.id().clone(), Arc::new(room));
            }
            if rooms.len() > spec.max_rooms {
                tracing::warn!(app = %spec.id, rooms = rooms.len(), max_rooms = spec.max_rooms, "app holds more rooms than its cap; creating more is refused");
            }
            let app = App {
                id: id.clone(),
                key: AdminKey::new(&spec.admin_key),
                max_rooms: spec.max_rooms,
                rooms: RwLock::new(rooms),
                request_limit: crate::limits::per_second(spec.requests_per_sec),
                callbacks: spec.callbacks.map(|config| {
                    let sdkappid = spec.tencent.as_ref().map(|t| t.sdkappid);
                    Arc::new(Callbacks::new(&spec.id, sdkappid, config))
                }),
                tencent: spec.tencent,
                pusher: spec.pusher,
            };
            apps.insert(id, Arc::new(app));
        }
        Ok(Registry {
            apps,
            orphans: snapshot.apps,
            store,
            writes: tokio::sync::Mutex::new(()),
            room_config,
            metrics,
            decoy_key: AdminKey::new("decoy key for unknown apps"),
        })
    }

    pub fn app(&self, id: &str) -> Option<&Arc<App>> {
        self.apps.get(id)
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.values()
    }

    /// The app a Tencent-style call names by its SDKAppID.
    pub fn app_by_sdkappid(&self, sdkappid: u64) -> Option<&Arc<App>> {
        self.apps.values().find(|app| app.tencent.as_ref().is_some_and(|t| t.sdkappid == sdkappid))
    }

    /// The app Pusher's HTTP API names by its `app_id`.
    pub fn app_by_pusher_id(&self, app_id: &str) -> Option<&Arc<App>> {
        self.apps.values().find(|app| app.pusher.as_ref().is_some_and(|p| p.app_id == app_id))
    }

    /// The app a Pusher client names by its key.
    pub fn app_by_pusher_key(&self, key: &str) -> Option<&Arc<App>> {
        self.apps.values().find(|app| app.pusher.as_ref().is_some_and(|p| p.key == key))
    }

    /// True when `presented` is the admin key of `app`. Unknown apps compare
    /// against a decoy, so the answer takes the same time whether or not the
    /// app exists.
    pub fn authorize(&self, app: &str, presented: &[u8]) -> bool {
        match self.apps.get(app) {
            Some(app) => app.key.verify(presented),
            None => {
                let _ = self.decoy_key.verify(presented);
                false
            }
        }
    }

    /// Creates a room, enforcing the cap atomically and durably.
    pub async fn create_room(&self, app: &App, room: &str, name: Option<String>) -> Result<Arc<Room>, RegistryError> {
        let _write = self.writes.lock().await;
        let created = {
            let mut rooms = app.rooms.write().expect("rooms lock");
            if rooms.contains_key(room) {
                return Err(RegistryError::RoomExists(room.to_owned()));
            }
            if rooms.len() >= app.max_rooms {
                return Err(RegistryError::RoomLimit(app.max_rooms));
            }
            let spec = RoomSpec {
                app: app.id.clone(),
                id: Arc::from(room),
                name: name.unwrap_or_else(|| room.to_owned()),
                created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                seq: 0,
                sticky: None,
                occupancy_interval_ms: 0,
                occupied: false,
            };
            let created = Arc::new(Room::new(spec, self.room_config.clone(), self.metrics.clone()));
            rooms.insert(created.id().clone(), created.clone());
            created
        };
        if let Err(e) = self.write_snapshot().await {
            app.rooms.write().expect("rooms lock").remove(room);
            return Err(e.into());
        }
        self.metrics.set_room_online(&app.id, room, 0);
        Ok(created)
    }

    /// Deletes a room durably, then closes its members with `room_destroyed`.
    pub async fn delete_room(&self, app: &App, room: &str) -> Result<(), RegistryError> {
        let _write = self.writes.lock().await;
        let removed = app.rooms.write().expect("rooms lock").remove(room);
        let Some(removed) = removed else {
            return Err(RegistryError::RoomNotFound(room.to_owned()));
        };
        if let Err(e) = self.write_snapshot().await {
            app.rooms.write().expect("rooms lock").insert(removed.id().clone(), removed);
            return Err(e.into());
        }
        removed.destroy();
        self.metrics.set_room_online(&app.id, room, 0);
        Ok(())
    }

    /// Cluster: builds a room the cluster lists, unless this node has it
    /// already; returns the room when it is new here.
    pub fn mirror_room(&self, app: &App, spec: RoomSpec) -> Option<Arc<Room>> {
        let mut rooms = app.rooms.write().expect("rooms lock");
        if rooms.contains_key(&spec.id) {
            return None;
        }
        let room = Arc::new(Room::new(spec, self.room_config.clone(), self.metrics.clone()));
        rooms.insert(room.id().clone(), room.clone());
        Some(room)
    }

    /// Cluster: removes a room the cluster no longer lists and closes its
    /// members with `room_destroyed`; false when this node did not have it.
    pub fn forget_room(&self, app: &App, room: &str) -> bool {
        let removed = app.rooms.write().expect("rooms lock").remove(room);
        let Some(removed) = removed else {
            return false;
        };
        removed.destroy();
        self.metrics.set_room_online(&app.id, room, 0);
        true
    }

    /// Writes the registry with current seqs (on drain).
    pub async fn persist(&self) -> std::io::Result<()> {
        let _write = self.writes.lock().await;
        self.write_snapshot().await
    }

    async fn write_snapshot(&self) -> std::io::Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let snapshot = self.snapshot();
        tokio::task::spawn_blocking(move || store.save(&snapshot)).await.map_err(std::io::Error::other)?
    }

    fn snapshot(&self) -> Snapshot {
        let mut apps = self.orphans.clone();
        for app in self.apps.values() {
            let rooms = app
                .rooms()
                .iter()
                .map(|room| StoredRoom {
                    room: room.id().to_string(),
                    name: Some(room.name()),
                    created_at: room.created_at().to_owned(),
                    seq: room.seq(),
                    sticky: room.stored_sticky(),
                    occupancy_interval_ms: room.occupancy_interval_ms() as u32,
                    occupied: room.occupied(),
                })
                .collect();
            apps.insert(app.id.to_string(), rooms);
        }
        Snapshot { version: 1, apps }
    }

    /// Asks every subscriber of every room to close, each with its own reason
    /// (drain spreads reconnect delays this way).
    pub fn close_all(&self, reason_for: CloseWith) {
        for app in self.apps.values() {
            for room in app.rooms() {
                room.close_members(reason_for.clone());
            }
        }
    }

    /// Every room of every app.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.apps.values().flat_map(|app| app.rooms()).collect()
    }

    /// One heartbeat to every subscriber of every room.
    pub fn heartbeat(&self) {
        for app in self.apps.values() {
            for room in app.rooms() {
                room.heartbeat();
            }
        }
    }

    /// Refreshes the per-room online gauges (called before each scrape).
    pub fn refresh_gauges(&self) {
        for app in self.apps.values() {
            for room in app.rooms() {
                self.metrics.set_room_online(&app.id, room.id(), room.online());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &std::path::Path, max_rooms: usize) -> Registry {
        let spec = AppSpec {
            id: "demo".into(),
            admin_key: "0123456789abcdef".into(),
            max_rooms,
            requests_per_sec: 0,
            tencent: None,
            pusher: None,
            callbacks: None,
        };
        Registry::load(
            Some(Store::open(dir).unwrap()),
            vec![spec],
            RoomConfig {
                shards: 2,
                resume: Default::default(),
                broadcasts_per_sec: 0,
                lanes: Default::default(),
                compress_min_bytes: None,
            },
            Metrics::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn concurrent_creates_respect_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(registry(dir.path(), 5));
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let reg = reg.clone();
                tokio::spawn(async move {
                    let app = reg.app("demo").unwrap().clone();
                    reg.create_room(&app, &format!("r{i}"), None).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(RegistryError::RoomLimit(5)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 5);
        assert_eq!(registry(dir.path(), 5).app("demo").unwrap().rooms().len(), 5, "durable");
    }

    #[tokio::test]
    async fn rooms_of_unconfigured_apps_survive_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut snap = Snapshot { version: 1, ..Default::default() };
        snap.apps.insert(
            "other".into(),
            vec![StoredRoom {
                room: "x".into(),
                name: None,
                created_at: "t".into(),
                seq: 9,
                sticky: None,
                occupancy_interval_ms: 0,
                occupied: false,
            }],
        );
        Store::open(dir.path()).unwrap().save(&snap).unwrap();
        let reg = registry(dir.path(), 5);
        let app = reg.app("demo").unwrap().clone();
        reg.create_room(&app, "gifts", None).await.unwrap();
        let stored = Store::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(stored.apps["other"][0].seq, 9);
        assert_eq!(stored.apps["demo"][0].room, "gifts");
    }

    #[test]
    fn authorize_checks_the_apps_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path(), 5);
        assert!(reg.authorize("demo", b"0123456789abcdef"));
        assert!(!reg.authorize("demo", b"wrong"));
        assert!(!reg.authorize("nope", b"0123456789abcdef"));
    }
}
