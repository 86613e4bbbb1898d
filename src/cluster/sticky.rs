//! A room's pinned message across a cluster. Pins travel with their
//! broadcast in the room's stream (`Bullhorn-Sticky`), so every node pins in
//! seq order. An unpin is not a broadcast: the node asked unpins and
//! publishes the unpinned seq on `bullhorn.unpin.<app>.<room>`; every node
//! unpins that seq or earlier and refuses such pins from then on, so an
//! unpin that overtakes its pin on a lagging node still wins. A node cut off
//! from NATS at that moment keeps the pin until its ttl or the next pin.
//!
//! A node that starts after a pin finds it in the KV bucket
//! [`names::PINS_BUCKET`] (the room's pin, written by the node that published
//! it, a newer seq always replacing an older one; removed by an unpin), and
//! pins it when it mirrors the room.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::{Cluster, ClusterError, names};
use crate::registry::Registry;
use crate::registry::store::StoredSticky;

pub(super) async fn open_bucket(jetstream: &async_nats::jetstream::Context) -> Result<kv::Store, async_nats::Error> {
    super::open_kv(jetstream, names::PINS_BUCKET, "bullhorn: each room's pinned message").await
}

/// The pin an entry of the bucket holds, if it is one.
fn pin_in(entry: &kv::Entry) -> Option<StoredSticky> {
    (entry.operation == kv::Operation::Put).then(|| serde_json::from_slice(&entry.value).ok()).flatten()
}

impl Cluster {
    /// Keeps `pin` as `room`'s pin for nodes that start later, unless a newer
    /// one is there already (compare-and-set, a few tries; a failure is logged:
    /// running nodes have the pin from the stream either way).
    pub(super) async fn record_pin(&self, app: &str, room: &str, pin: &StoredSticky) {
        let key = names::room_key(app, room);
        let value = Bytes::from(serde_json::to_vec(pin).expect("serializable"));
        for _ in 0..3 {
            let written = match self.pins.entry(&key).await {
                Ok(Some(entry)) if pin_in(&entry).is_some_and(|kept| kept.seq >= pin.seq) => return,
                Ok(Some(entry)) => self.pins.update(&key, value.clone(), entry.revision).await.is_ok(),
                Ok(None) => self.pins.create(&key, value.clone()).await.is_ok(),
                Err(error) => return tracing::warn!(%error, app, room, "the pin was not recorded for later nodes"),
            };
            if written {
                return;
            }
        }
        tracing::warn!(app, room, "the pin was not recorded for later nodes: too many concurrent pins");
    }

    /// `room`'s pin as nodes that start now must know it.
    pub(super) async fn pin_of(&self, app: &str, room: &str) -> Result<Option<StoredSticky>, ClusterError> {
        let entry = self.pins.entry(names::room_key(app, room)).await;
        let entry = entry.map_err(|e| ClusterError::unavailable("the pins bucket", e))?;
        Ok(entry.as_ref().and_then(pin_in))
    }

    /// Forgets the recorded pin if it is `seq` or older (an unpin).
    async fn forget_pin_through(&self, app: &str, room: &str, seq: u64) {
        let key = names::room_key(app, room);
        if let Ok(Some(entry)) = self.pins.entry(&key).await
            && pin_in(&entry).is_some_and(|kept| kept.seq <= seq)
            && let Err(error) = self.pins.delete_expect_revision(&key, Some(entry.revision)).await
        {
            tracing::warn!(%error, app, room, "the unpin was not recorded for later nodes");
        }
    }

    /// Forgets a deleted room's pin.
    pub(super) async fn forget_pin(&self, app: &str, room: &str) {
        if let Err(error) = self.pins.purge(names::room_key(app, room)).await {
            tracing::warn!(%error, app, room, "could not clear a deleted room's pin");
        }
    }

    /// Tells every other node that `room`'s pin of `seq` is gone.
    pub async fn publish_unpin(&self, app: &str, room: &str, seq: u64) {
        let subject = names::room_subject(names::UNPIN_PREFIX, app, room);
        if let Err(error) = self.client.publish(subject, Bytes::from(seq.to_string())).await {
            tracing::warn!(%error, app, room, "the unpin was not sent to the other nodes");
        }
        self.forget_pin_through(app, room, seq).await;
    }
}

/// Applies the other nodes' unpins, for this node's lifetime.
pub(super) async fn follow_unpins(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let wildcard = format!("{}>", names::UNPIN_PREFIX);
    super::each_message(cluster.client.clone(), wildcard, "unpin", |unpin| {
        let seq = std::str::from_utf8(&unpin.payload).ok().and_then(|s| s.parse::<u64>().ok());
        let room =
            names::room_of(names::UNPIN_PREFIX, &unpin.subject).and_then(|(app, room)| registry.app(app)?.room(room));
        if let (Some(room), Some(seq)) = (room, seq) {
            room.unpin_through(seq);
        }
        None
    })
    .await
}
