//! One decision per room event across a cluster (contract §9). Every node
//! looks at each room with the cluster-wide count (`room::events`); a
//! transition one of them sees is told only by the node that moves the
//! room's state in the KV bucket [`names::ROOM_EVENTS_BUCKET`] by
//! compare-and-set. The others find the state already there and take it as
//! their own, so each transition is sent once and a room's events keep
//! alternating whichever node sees what first. A node that mirrors a room
//! starts from the state in the bucket, so a restarted or new node neither
//! repeats `room.occupied` nor forgets the `room.vacated` owed.

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::{Cluster, ClusterError, names};
use crate::room::events::Transition;

const OCCUPIED: &[u8] = b"occupied";
const VACATED: &[u8] = b"vacated";

/// What became of a node's claim to tell a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This node moved the shared state: it tells the event.
    Won,
    /// The shared state is already this (occupied or not): nothing to tell.
    Known { occupied: bool },
}

pub(super) async fn open_bucket(jetstream: &async_nats::jetstream::Context) -> Result<kv::Store, async_nats::Error> {
    super::open_kv(jetstream, names::ROOM_EVENTS_BUCKET, "bullhorn: each room's last room event").await
}

impl Cluster {
    /// Tries to move `room`'s shared state to `transition`.
    pub async fn claim_room_event(&self, app: &str, room: &str, transition: Transition) -> Result<Claim, ClusterError> {
        self.require_connection()?;
        let key = names::room_events_key(app, room);
        let want = match transition {
            Transition::Occupied => OCCUPIED,
            Transition::Vacated => VACATED,
        };
        let unavailable = |error: &dyn std::fmt::Display| ClusterError::unavailable("the room events bucket", error);
        let entry = self.events.entry(&key).await.map_err(|e| unavailable(&e))?;
        let moved = match entry.filter(|e| e.operation == kv::Operation::Put) {
            Some(entry) if entry.value.as_ref() == want => return Ok(Claim::Known { occupied: want == OCCUPIED }),
            Some(entry) => self.events.update(&key, Bytes::from_static(want), entry.revision).await.is_ok(),
            None => self.events.create(&key, Bytes::from_static(want)).await.is_ok(),
        };
        if moved {
            return Ok(Claim::Won);
        }
        // Another node moved it first: whatever it holds now is the room's state.
        Ok(Claim::Known { occupied: self.room_occupied(app, room).await? })
    }

    /// The room's shared state: its last event told was `room.occupied`.
    pub async fn room_occupied(&self, app: &str, room: &str) -> Result<bool, ClusterError> {
        let key = names::room_events_key(app, room);
        let entry =
            self.events.entry(&key).await.map_err(|e| ClusterError::unavailable("the room events bucket", e))?;
        Ok(entry.is_some_and(|e| e.operation == kv::Operation::Put && e.value.as_ref() == OCCUPIED))
    }

    /// Forgets a deleted room's state, so a room created again under its id starts afresh.
    pub(super) async fn forget_room_events(&self, app: &str, room: &str) {
        if let Err(error) = self.events.purge(names::room_events_key(app, room)).await {
            tracing::warn!(%error, app, room, "could not clear a deleted room's event state");
        }
    }
}
