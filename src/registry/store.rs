//! The durable room registry: one JSON file replaced atomically.
//!
//! A write goes to a temporary file in the same directory, is fsynced,
//! renamed over the old file, and the directory is fsynced. A kill -9 at any
//! instant leaves either the old registry or the new one, never a torn file.
//! Only rooms are written: member lists exist nowhere but in memory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const REGISTRY_FILE: &str = "rooms.json";

/// What the file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// Rooms by app id, including apps that are not configured right now, so
    /// that a config change never loses another app's rooms.
    pub apps: BTreeMap<String, Vec<StoredRoom>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRoom {
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: String,
    /// The last seq known when this snapshot was written. Broadcasts do not
    /// rewrite the file; a clean shutdown does.
    #[serde(default)]
    pub seq: u64,
    /// The pinned message, as of this snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StoredSticky>,
    /// Occupancy pushed to viewers every this many ms; 0 is off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub occupancy_interval_ms: u32,
    /// The last room event told was `room.occupied` (so a restart does not tell it twice).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub occupied: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A room's pinned broadcast as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSticky {
    pub seq: u64,
    /// Its `ts` (ms since the Unix epoch).
    pub ts: u64,
    /// Its `data`, as JSON text.
    pub data: String,
    /// When its `ttl_ms` passes (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store in `dir`, created if missing.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        Ok(Store { dir: dir.to_owned() })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(REGISTRY_FILE)
    }

    /// Reads the registry; an absent file is an empty registry.
    pub fn load(&self) -> std::io::Result<Snapshot> {
        match std::fs::read(self.path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a valid registry: {e}", self.path().display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Snapshot { version: 1, ..Default::default() }),
            Err(e) => Err(e),
        }
    }

    /// Replaces the registry atomically and durably.
    pub fn save(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!(".{REGISTRY_FILE}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, self.path())?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap().apps.len(), 0);
        let mut snap = Snapshot { version: 1, ..Default::default() };
        snap.apps.insert(
            "demo".into(),
            vec![StoredRoom {
                room: "gifts".into(),
                name: Some("Gifts".into()),
                created_at: "2026-01-01T00:00:00Z".into(),
                seq: 3,
                sticky: None,
                occupancy_interval_ms: 0,
                occupied: false,
            }],
        );
        store.save(&snap).unwrap();
        assert_eq!(store.load().unwrap(), snap);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(REGISTRY_FILE)]);
    }

    #[test]
    fn a_torn_file_is_an_error_not_an_empty_registry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REGISTRY_FILE), b"{\"version\":1,\"apps\":{").unwrap();
        assert!(Store::open(dir.path()).unwrap().load().is_err());
    }
}
