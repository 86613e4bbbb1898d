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
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::body;
use crate::api_error::ApiError;
use crate::fanout::Priority;
use crate::state::Shared;

/// The longest `conflate` key accepted.
const MAX_CONFLATE_KEY: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    priority: Priority,
    conflate: Option<String>,
}

pub async fn broadcast(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let limit = shared.settings.max_payload_bytes;
    let bytes = body::bytes(body, limit)?;
    let request: BroadcastBody<'_> = body::json(&bytes)?;
    if request.data.get().len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    if request.conflate.as_ref().is_some_and(|k| k.is_empty() || k.len() > MAX_CONFLATE_KEY) {
        return Err(ApiError::invalid_request(format!("conflate must be 1 to {MAX_CONFLATE_KEY} bytes")));
    }
    let app = shared.registry.app(&app_id).ok_or_else(ApiError::unauthorized)?;
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    let published = room.publish(request.data.get(), request.priority);
    Ok((StatusCode::ACCEPTED, Json(json!({"room": &**room.id(), "seq": published.seq, "online": published.online}))))
}
