//! A room's pinned message across a cluster. Pins travel with their
//! broadcast in the room's stream (`Bullhorn-Sticky`), so every node pins in
//! seq order. An unpin is not a broadcast: the node asked unpins and
//! publishes the unpinned seq on `bullhorn.unpin.<app>.<room>`; every node
//! unpins that seq or earlier and refuses such pins from then on, so an
//! unpin that overtakes its pin on a lagging node still wins. A node cut off
//! from NATS at that moment keeps the pin until its ttl or the next pin.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Cluster, RETRY_AFTER, names};
use crate::registry::Registry;

impl Cluster {
    /// Tells every other node that `room`'s pin of `seq` is gone.
    pub async fn publish_unpin(&self, app: &str, room: &str, seq: u64) {
        let subject = names::unpin_subject(app, room);
        if let Err(error) = self.client.publish(subject, Bytes::from(seq.to_string())).await {
            tracing::warn!(%error, app, room, "the unpin was not sent to the other nodes");
        }
    }
}

/// Applies the other nodes' unpins, for this node's lifetime.
pub(super) async fn follow_unpins(cluster: Arc<Cluster>, registry: Arc<Registry>) {
    let wildcard = format!("{}>", names::UNPIN_PREFIX);
    loop {
        match cluster.client.subscribe(wildcard.clone()).await {
            Ok(mut unpins) => {
                while let Some(unpin) = unpins.next().await {
                    let seq = std::str::from_utf8(&unpin.payload).ok().and_then(|s| s.parse::<u64>().ok());
                    let room = names::unpin_room(&unpin.subject).and_then(|(app, room)| registry.app(app)?.room(room));
                    if let (Some(room), Some(seq)) = (room, seq) {
                        room.unpin_through(seq);
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "unpin subscription failed"),
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}
