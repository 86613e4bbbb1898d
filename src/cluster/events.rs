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
    /// This node moved the shared state (now at `revision`): it tells the event.
    Won { revision: u64 },
    /// The shared state moved since this node last knew it: it is this (occupied or not) at
    /// `revision`, and this node takes it as its own without telling anything.
    Known { occupied: bool, revision: u64 },
}

pub(super) async fn open_bucket(jetstream: &async_nats::jetstream::Context) -> Result<kv::Store, async_nats::Error> {
    super::open_kv(jetstream, names::ROOM_EVENTS_BUCKET, "bullhorn: each room's last room event").await
}

impl Cluster {
    /// Tries to move `room`'s shared state to `transition`, from the state
    /// this node last knew (at `known_revision`, 0 for none): a compare-and-set
    /// on that revision, so a node whose view is stale (another node told a
    /// transition since) cannot undo it, and takes the current state instead.
    pub async fn claim_room_event(
        &self,
        app: &str,
        room: &str,
        transition: Transition,
        known_revision: u64,
    ) -> Result<Claim, ClusterError> {
        self.require_connection()?;
        let key = names::room_key(app, room);
        let want = Bytes::from_static(match transition {
            Transition::Occupied => OCCUPIED,
            Transition::Vacated => VACATED,
        });
        let moved = match known_revision {
            0 => self.events.create(&key, want).await.ok(),
            revision => self.events.update(&key, want, revision).await.ok(),
        };
        if let Some(revision) = moved {
            return Ok(Claim::Won { revision });
        }
        let (occupied, revision) = self.room_event_state(app, room).await?;
        Ok(Claim::Known { occupied, revision })
    }

    /// The room's shared state: whether its last event told was `room.occupied`, and its revision (0: none).
    pub async fn room_event_state(&self, app: &str, room: &str) -> Result<(bool, u64), ClusterError> {
        let key = names::room_key(app, room);
        let entry =
            self.events.entry(&key).await.map_err(|e| ClusterError::unavailable("the room events bucket", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => (e.value.as_ref() == OCCUPIED, e.revision),
            // Deleted or purged: a create would fail on the marker, so name its revision.
            Some(e) => (false, e.revision),
            None => (false, 0),
        })
    }

    /// Forgets a deleted room's state, so a room created again under its id starts afresh.
    pub(super) async fn forget_room_events(&self, app: &str, room: &str) {
        if let Err(error) = self.events.purge(names::room_key(app, room)).await {
            tracing::warn!(%error, app, room, "could not clear a deleted room's event state");
        }
    }
}
