//! A room's broadcasts through NATS: one JetStream stream per room, whose
//! stream sequence *is* the room's `seq` (contiguous, assigned by the stream's
//! leader), and one ordered consumer per room on every node.
//!
//! A broadcast is published once with its metadata in headers and `data` as
//! the payload, so each node encodes it once from the same bytes. The
//! `Idempotency-Key` travels as `Nats-Msg-Id`: within the stream's 5-minute
//! duplicate window a retry, on any node, is acknowledged with the first seq
//! and stored once. The 202 is answered only after the stream's ack.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Cluster, ClusterError, RETRY_AFTER, names};
use crate::fanout::{ConflateKey, Delivery, Priority};
use crate::registry::store::StoredSticky;
use crate::room::{Extras, Outgoing, Room, now_ms};

/// How long a stream keeps broadcasts: a node cut off from NATS for less
/// than this catches up on everything it missed when it returns.
const RETENTION: Duration = Duration::from_secs(10 * 60);
/// As long as the contract's idempotency window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Bytes one room's stream may hold before its oldest broadcasts go.
const MAX_STREAM_BYTES: i64 = 64 * 1024 * 1024;

const TS: &str = "Bullhorn-Ts";
const PRIORITY: &str = "Bullhorn-Priority";
const CONFLATE: &str = "Bullhorn-Conflate";
/// The broadcast's `ttl_ms`, counted from `Bullhorn-Ts` on every node.
const TTL: &str = "Bullhorn-Ttl";
/// Present when the broadcast is the room's pinned message.
const STICKY: &str = "Bullhorn-Sticky";
/// The broadcast's Pusher event name.
const EVENT: &str = "Bullhorn-Event";
/// Present when `data` stands for a Pusher data string that was not JSON.
const DATA_IS_TEXT: &str = "Bullhorn-Data-Is-Text";

/// The stream's answer to a publish.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub seq: u64,
    /// The idempotency key was seen: nothing new was stored.
    pub duplicate: bool,
}

pub(super) async fn create_stream(cluster: &Cluster, app: &str, room: &str) -> Result<(), ClusterError> {
    let config = stream::Config {
        name: names::stream(app, room),
        subjects: vec![names::broadcast_subject(app, room)],
        storage: stream::StorageType::File,
        max_age: RETENTION,
        max_bytes: MAX_STREAM_BYTES,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    cluster
        .jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| ClusterError::unavailable("creating the stream", e))?;
    Ok(())
}

pub(super) async fn delete_stream(cluster: &Cluster, app: &str, room: &str) {
    if let Err(error) = cluster.jetstream.delete_stream(names::stream(app, room)).await {
        tracing::warn!(%error, app, room, "could not delete a deleted room's stream; it expires by age");
    }
}

/// The room's last seq in the cluster (0 when its stream is not there yet).
pub(super) async fn last_seq(cluster: &Cluster, app: &str, room: &str) -> Result<u64, ClusterError> {
    match cluster.jetstream.get_stream(names::stream(app, room)).await {
        Ok(stream) => Ok(stream.cached_info().state.last_sequence),
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
            Ok(0)
        }
        Err(e) => Err(ClusterError::unavailable("reading the room's stream", e)),
    }
}

impl Cluster {
    /// Publishes one broadcast to its room's stream and waits for the ack.
    pub async fn publish(&self, room: &Room, outgoing: Outgoing<'_>) -> Result<Accepted, ClusterError> {
        self.require_connection()?;
        let mut headers = HeaderMap::new();
        let ts_ms = now_ms();
        headers.insert(TS, ts_ms.to_string().as_str());
        headers.insert(PRIORITY, outgoing.priority.as_str());
        if let Some(key) = outgoing.conflate {
            headers.insert(CONFLATE, key);
        }
        if let Some(ttl) = outgoing.extras.ttl {
            headers.insert(TTL, ttl.as_millis().to_string().as_str());
        }
        if outgoing.extras.sticky {
            headers.insert(STICKY, "1");
        }
        if let Some(event) = outgoing.extras.event {
            headers.insert(EVENT, event);
        }
        if outgoing.extras.data_is_text {
            headers.insert(DATA_IS_TEXT, "1");
        }
        let mut message = jetstream::message::PublishMessage::build()
            .payload(Bytes::copy_from_slice(outgoing.data.as_bytes()))
            .headers(headers);
        if let Some(key) = outgoing.idempotency_key {
            message = message.message_id(key);
        }
        let subject = names::broadcast_subject(room.app(), room.id());
        let acked = async {
            let ack = self.jetstream.send_publish(subject, message).await?;
            Ok::<_, async_nats::Error>(ack.await?)
        };
        match tokio::time::timeout(super::REQUEST_TIMEOUT, acked).await {
            Ok(Ok(ack)) => {
                if outgoing.extras.sticky && !ack.duplicate {
                    let expires_at_ms = outgoing.extras.ttl.map(|ttl| ts_ms.saturating_add(ttl.as_millis() as u64));
                    let pin =
                        StoredSticky { seq: ack.sequence, ts: ts_ms, data: outgoing.data.to_owned(), expires_at_ms };
                    self.record_pin(room.app(), room.id(), &pin).await;
                }
                Ok(Accepted { seq: ack.sequence, duplicate: ack.duplicate })
            }
            Ok(Err(error)) => Err(ClusterError::unavailable("the room's stream did not take the broadcast", error)),
            Err(_) => Err(ClusterError::Unavailable(
                "the room's stream did not acknowledge in time; retry with the same Idempotency-Key".into(),
            )),
        }
    }
}

/// Delivers the room's stream on this node for as long as the room lives
/// here: an ordered consumer from the seq after the last delivered one. The
/// consumer re-creates itself on a gap or a missed heartbeat; anything that
/// ends it (an error, the stream not there yet, NATS reconnecting) starts it
/// again from the last seq delivered, so nothing acknowledged is skipped.
pub(super) async fn follow(
    jetstream: jetstream::Context,
    connections: tokio::sync::watch::Receiver<u64>,
    room: Arc<Room>,
) {
    let stream = names::stream(room.app(), room.id());
    loop {
        if let Err(error) = super::until_reconnected(&connections, follow_once(&jetstream, &stream, &room)).await {
            tracing::debug!(%error, stream, "room feed ended; starting it again");
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

async fn follow_once(jetstream: &jetstream::Context, stream: &str, room: &Arc<Room>) -> Result<(), async_nats::Error> {
    let config = consumer::pull::OrderedConfig {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: room.seq() + 1 },
        ..Default::default()
    };
    let consumer = jetstream.get_stream(stream).await?.create_consumer(config).await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message.info()?.stream_sequence;
        match decode(&message) {
            Some((ts_ms, data, delivery, extras)) => {
                room.deliver_numbered(seq, ts_ms, data, delivery, extras);
            }
            // Not ours: left out, so members see it as one missed seq.
            None => tracing::warn!(stream, seq, "skipping a malformed message in a room stream"),
        }
    }
    Ok(())
}

/// A stream message's ts, `data` (valid JSON text), delivery and extras;
/// None when something other than a bullhorn node published it. A ttl is
/// what is left of it now, by this node's clock against the publisher's
/// `ts` (so nodes' clocks should agree to well under the shortest ttl).
fn decode(message: &async_nats::Message) -> Option<(u64, &str, Delivery, Extras<'_>)> {
    let headers = message.headers.as_ref()?;
    let ts_ms = headers.get(TS)?.as_str().parse().ok()?;
    let priority = match headers.get(PRIORITY).map(|v| v.as_str()) {
        Some("high") => Priority::High,
        Some("low") => Priority::Low,
        _ => Priority::Normal,
    };
    let conflate = headers.get(CONFLATE).map_or(ConflateKey::NONE, |key| ConflateKey::of(key.as_str()));
    let data = std::str::from_utf8(&message.payload).ok()?;
    serde_json::from_str::<&serde_json::value::RawValue>(data).ok()?;
    let ttl = match headers.get(TTL) {
        Some(ttl) => {
            let ttl_ms: u64 = ttl.as_str().parse().ok()?;
            Some(Duration::from_millis(ttl_ms.saturating_sub(now_ms().saturating_sub(ts_ms))))
        }
        None => None,
    };
    let event =
        headers.get(EVENT).map(|event| event.as_str()).filter(|event| crate::protocol::messages::is_event_name(event));
    let data_is_text = headers.get(DATA_IS_TEXT).is_some();
    let extras = Extras { ttl, sticky: headers.get(STICKY).is_some(), event, data_is_text };
    Some((ts_ms, data, Delivery { priority, conflate }, extras))
}
