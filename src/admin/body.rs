//! Request bodies into contract errors: a body over the limit is 413
//! `payload_too_large`, anything unreadable or malformed is 400
//! `invalid_request` with serde's sentence, never axum's plain-text rejection;
//! and an oversized body read to its end before it is refused, so the client
//! gets the answer rather than a reset.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use serde::Deserialize;

use crate::api_error::ApiError;

pub fn bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(limit),
        _ => ApiError::invalid_request(format!("could not read the request body: {rejection}")),
    })
}

pub fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
}

/// For optional string fields: absent is `None`, but `null` is refused like any
/// other non-string (the contract's fields are strings when present).
pub fn present_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    <String as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// [`present_string`] for optional integer fields.
pub fn present_u64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    <u64 as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// The optional `event` of a broadcast body: a string that
/// [`messages::is_event_name`](crate::protocol::messages::is_event_name).
pub fn event_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use crate::protocol::messages::{MAX_EVENT_NAME, is_event_name};
    let name = <String as serde::Deserialize>::deserialize(deserializer)?;
    if !is_event_name(&name) {
        return Err(serde::de::Error::custom(format!(
            "event must be 1 to {MAX_EVENT_NAME} visible ASCII characters without quotes or backslashes, \
             not starting with pusher: or pusher_internal:"
        )));
    }
    Ok(Some(name))
}

/// The most of an oversized body read only to be thrown away.
const DRAIN_AT_MOST: u64 = 4 * 1024 * 1024;
/// How long a sender of an oversized body gets to finish it.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// What [`drain_oversized`] hands a handler in place of a body it has read
/// and thrown away: one byte over the limit, made once and shared.
#[derive(Clone)]
pub struct OverLimit(Bytes);

impl OverLimit {
    pub fn new(limit: usize) -> OverLimit {
        OverLimit(Bytes::from(vec![0; limit + 1]))
    }

    fn limit(&self) -> usize {
        self.0.len() - 1
    }
}

/// A body whose `Content-Length` is over the limit is read to its end (up to
/// [`DRAIN_AT_MOST`]) before the handler refuses it. Otherwise the handler
/// answers 413 with the body's tail still unread, hyper closes the connection,
/// and the kernel, closing a socket with unread bytes, sends a reset that the
/// client may see instead of the answer. The handler still sees a body over
/// the limit, so each route refuses it in its own shape (Tencent's calls
/// answer 200 with `ActionStatus: FAIL`).
pub async fn drain_oversized(State(over): State<OverLimit>, request: Request, next: Next) -> Response {
    let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > over.limit() as u64 && n <= DRAIN_AT_MOST) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let mut chunks = body.into_data_stream();
    // A sender that stalls keeps its slot only this long; then it gets the answer it would have got anyway.
    let _ = tokio::time::timeout(DRAIN_FOR, async { while let Some(Ok(_)) = chunks.next().await {} }).await;
    tracing::debug!(declared, limit = over.limit(), "oversized admin body read and dropped");
    next.run(Request::from_parts(parts, Body::from(over.0))).await
}
