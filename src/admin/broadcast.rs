//! `POST /v1/apps/{app}/rooms/{room}/broadcast`: validate, number, fan out.
//!
//! `data` is kept as the raw JSON text the admin sent (already validated by
//! the parser), so it is written into the broadcast message as it is: no
//! value tree, no re-serialization, non-ASCII untouched.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{body, depth};
use crate::api_error::ApiError;
use crate::callbacks::wire::{self, Message, Verdict};
use crate::fanout::Priority;
use crate::limits;
use crate::room::{Extras, Outgoing};
use crate::room::{Room, now_ms};
use crate::state::Shared;

/// The longest `conflate` key accepted.
pub const MAX_CONFLATE_KEY: usize = 128;

/// The request header that makes a broadcast safe to retry (contract §2).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set on an answer repeated for a known idempotency key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A broadcast request body, validated: what the handler and the fuzz target share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody<'a> {
    /// The admin's JSON value as sent (valid JSON text, at most the payload limit).
    #[serde(borrow)]
    pub data: &'a RawValue,
    #[serde(default)]
    pub priority: Priority,
    /// 1 to 128 bytes when present.
    #[serde(default, deserialize_with = "body::present_string")]
    pub conflate: Option<String>,
    /// 1 to [`MAX_TTL_MS`] when present.
    #[serde(default, deserialize_with = "body::present_u64")]
    pub ttl_ms: Option<u64>,
    #[serde(default)]
    pub sticky: bool,
    /// A Pusher event name (contract §12), checked by [`body::event_name`].
    #[serde(default, deserialize_with = "body::event_name")]
    pub event: Option<String>,
}

/// The longest `ttl_ms`: a day.
pub const MAX_TTL_MS: u64 = 86_400_000;

impl BroadcastBody<'_> {
    /// The ttl and pin the body asks for.
    pub fn extras(&self) -> Extras<'_> {
        let ttl = self.ttl_ms.map(std::time::Duration::from_millis);
        Extras { ttl, sticky: self.sticky, event: self.event.as_deref(), data_is_text: false }
    }
}

/// Refuses `data` nested deeper than viewers' parsers are sure to take.
/// Checked where `data` enters, beside its size limit: in [`parse_body`], in
/// the Tencent-style call, and on a before-broadcast callback's replacement.
pub fn check_depth(data: &str) -> Result<(), ApiError> {
    if depth::within_limit(data) {
        return Ok(());
    }
    Err(ApiError::invalid_request(format!("data is nested deeper than {} levels", depth::MAX_DEPTH)))
}

/// Parses and checks a broadcast body against the contract (`limit`: bytes of `data`).
pub fn parse_body(bytes: &[u8], limit: usize) -> Result<BroadcastBody<'_>, ApiError> {
    // serde would also take a struct from a JSON array (`[data, priority]`): the contract's body is an object.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    let request: BroadcastBody<'_> = body::json(bytes)?;
    if request.data.get().len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    check_depth(request.data.get())?;
    if request.ttl_ms.is_some_and(|ttl| !(1..=MAX_TTL_MS).contains(&ttl)) {
        return Err(ApiError::invalid_request(format!("ttl_ms must be 1 to {MAX_TTL_MS}")));
    }
    if request.conflate.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_CONFLATE_KEY) {
        return Err(ApiError::invalid_request(format!("conflate must be 1 to {MAX_CONFLATE_KEY} bytes")));
    }
    Ok(request)
}

pub async fn broadcast(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let limit = shared.settings.max_payload_bytes;
    let bytes = body::bytes(body, limit)?;
    let request = parse_body(&bytes, limit)?;
    let app = shared.registry.app(&app_id).ok_or_else(ApiError::unauthorized)?;
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    let outgoing = Outgoing {
        data: request.data.get(),
        priority: request.priority,
        conflate: request.conflate.as_deref(),
        idempotency_key,
        extras: request.extras(),
    };
    let accepted = publish(&shared, &room, outgoing, Origin::default()).await?;
    let mut body = json!({"room": &**room.id(), "seq": accepted.seq, "online": accepted.online});
    if accepted.dropped {
        body["dropped"] = true.into();
    }
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if accepted.duplicate {
        response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A broadcast accepted by its room (or the cluster).
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub seq: u64,
    /// Members online when it was accepted.
    pub online: usize,
    /// An earlier broadcast with the same idempotency key answered for it; nothing was sent.
    pub duplicate: bool,
    /// The before-broadcast callback dropped it silently: nothing was sent, `seq` is the room's last.
    pub dropped: bool,
}

/// Who sent a broadcast, as the Tencent-style API names it (for callbacks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub from_account: Option<&'a str>,
    pub random: Option<u64>,
}

/// Hands a validated broadcast to the broker (this node, or the cluster), after the
/// room's rate limit and the app's before-broadcast callback; queues the
/// after-broadcast callback. What every admin API that broadcasts goes through.
pub async fn publish(
    shared: &Shared,
    room: &Arc<Room>,
    outgoing: Outgoing<'_>,
    origin: Origin<'_>,
) -> Result<Accepted, ApiError> {
    if let Err(wait) = room.admit_broadcast() {
        shared.metrics.rate_limited_broadcast.increment(1);
        let what = format!("over this room's {} broadcasts per second", shared.settings.limits.broadcasts_per_room);
        return Err(ApiError::rate_limited(&what, limits::retry_after_secs(wait)));
    }
    let callbacks = shared.registry.app(room.app()).and_then(|app| app.callbacks());
    let message = |data| Message {
        app: room.app(),
        room: room.id(),
        data,
        priority: outgoing.priority,
        from_account: origin.from_account,
        random: origin.random,
    };
    let replaced: String;
    let mut outgoing = outgoing;
    if let Some(callbacks) = callbacks.filter(|c| c.wants_before()) {
        match callbacks.before(&message(outgoing.data)).await {
            Ok(Verdict::Allow) => {}
            Ok(Verdict::Replace(data)) => {
                if data.len() > shared.settings.max_payload_bytes {
                    return Err(ApiError::payload_too_large(shared.settings.max_payload_bytes));
                }
                check_depth(&data)?;
                replaced = data;
                outgoing.data = &replaced;
            }
            Ok(Verdict::Reject(why)) => return Err(ApiError::rejected_by_callback(why)),
            Ok(Verdict::Drop) => {
                let online = shared.online(room);
                return Ok(Accepted { seq: room.seq(), online, duplicate: false, dropped: true });
            }
            Err(failed) => return Err(ApiError::callback_unavailable(failed.to_string())),
        }
    }
    let published = shared.broker.publish(room, outgoing).await?;
    let accepted =
        Accepted { seq: published.seq, online: published.online, duplicate: published.duplicate, dropped: false };
    if let Some(callbacks) = callbacks.filter(|c| c.wants_after())
        && !accepted.duplicate
    {
        callbacks.after(wire::after_body(&message(outgoing.data), accepted.seq, now_ms(), accepted.online));
    }
    Ok(accepted)
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key))
        }
        _ => Err(ApiError::invalid_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `broadcast_body` fuzz target: an array was taken as the body's fields in order.
    #[test]
    fn only_an_object_is_a_body() {
        assert!(parse_body(br#"[{"text":"hi"}]"#, 1024).is_err());
        assert!(parse_body(br#" {"data":[1]}"#, 1024).is_ok());
    }

    #[test]
    fn data_deeper_than_the_limit_is_refused() {
        let deep = |n: usize| format!(r#"{{"data":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        assert!(parse_body(deep(64).as_bytes(), 1 << 16).is_ok());
        let refused = parse_body(deep(65).as_bytes(), 1 << 16).unwrap_err();
        assert_eq!((refused.status, refused.code), (StatusCode::BAD_REQUEST, "invalid_request"));
        assert!(parse_body(deep(20_000).as_bytes(), 1 << 16).is_err(), "as deep as the issue's 40 KB body");
    }

    /// Also from the fuzzer: JSON numbers beyond f64 are valid JSON and go out exactly as sent.
    #[test]
    fn data_is_kept_as_sent_even_where_a_float_would_overflow() {
        let body = parse_body(br#"{"data":4444E4444}"#, 1024).unwrap();
        assert_eq!(body.data.get(), "4444E4444");
    }
}
