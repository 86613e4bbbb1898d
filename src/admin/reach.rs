//! `GET /v1/apps/{app}/rooms/{room}/broadcasts/{seq}`: how many members one
//! broadcast reached (contract §9), from the counts the fan-out keeps
//! (`fanout::reach`, `room::reach_log`), summed over every node in a cluster
//! (`cluster::reach`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::state::Shared;

pub async fn show(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id, seq)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = shared.registry.app(&app_id).ok_or_else(ApiError::unauthorized)?;
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    let not_found = || ApiError::broadcast_not_found(&room_id, &seq);
    let n = seq.parse::<u64>().map_err(|_| not_found())?;
    let counts = shared.broker.reach(&room, n).await.ok_or_else(not_found)?;
    let seq = n;
    let totals = counts.totals;
    let accepted_at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(counts.ts_ms)).to_string();
    Ok(Json(json!({
        "room": &**room.id(),
        "seq": seq,
        "accepted_at": accepted_at,
        "targets": totals.targets,
        "delivered": totals.delivered,
        "dropped": {"slow": totals.slow, "conflated": totals.conflated, "expired": totals.expired},
        "disconnected": totals.disconnected,
        "pending": totals.pending(),
        "complete": totals.complete(),
    })))
}
