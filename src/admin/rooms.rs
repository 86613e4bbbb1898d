//! Room administration: create (atomic against the cap), list, show, change
//! (name, occupancy interval), delete, and unpin its sticky message.
//! There is deliberately no endpoint that adds, invites or lists members.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body;
use crate::api_error::ApiError;
use crate::ids::is_valid_id;
use crate::registry::App;
use crate::room::{Room, occupancy};
use crate::state::Shared;

const MAX_NAME_CHARS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    room: String,
    #[serde(default, deserialize_with = "body::present_string")]
    name: Option<String>,
    #[serde(default)]
    occupancy_interval_ms: u64,
}

/// `PATCH …/rooms/{room}`: any of these, the rest unchanged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRoom {
    #[serde(default, deserialize_with = "body::present_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "body::present_u64")]
    occupancy_interval_ms: Option<u64>,
}

fn check_name(name: Option<&String>) -> Result<(), ApiError> {
    if name.is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
        return Err(ApiError::invalid_request(format!("name is longer than {MAX_NAME_CHARS} characters")));
    }
    Ok(())
}

fn check_interval(ms: u64) -> Result<(), ApiError> {
    if !occupancy::valid_interval(ms) {
        let (min, max) = (occupancy::MIN_INTERVAL_MS, occupancy::MAX_INTERVAL_MS);
        return Err(ApiError::invalid_request(format!("occupancy_interval_ms must be 0 (off) or {min} to {max}")));
    }
    Ok(())
}

/// The room object of contract §2 (`online` is cluster-wide in a cluster).
pub fn room_json(shared: &Shared, room: &Room) -> Value {
    json!({
        "room": &**room.id(),
        "name": room.name(),
        "online": shared.online(room),
        "seq": room.seq(),
        "created_at": room.created_at(),
        "sticky_seq": room.sticky_seq(),
        "occupancy_interval_ms": room.occupancy_interval_ms(),
    })
}

fn app<'a>(shared: &'a Shared, id: &str) -> Result<&'a Arc<App>, ApiError> {
    // Auth already proved the app exists; this only guards against misuse.
    shared.registry.app(id).ok_or_else(ApiError::unauthorized)
}

/// Field names that would add people to a room: refused with their own code.
fn is_invite_like(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("member") || key.contains("invite") || key == "users" || key == "user_ids"
}

/// A room request's body: a JSON object, no field that would add people
/// (refused with its own code), then the request's own fields.
fn room_body<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let bytes = body::bytes(body, shared.settings.max_payload_bytes)?;
    let value: Value = body::json(&bytes)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    if object.keys().any(|k| is_invite_like(k)) {
        return Err(ApiError::invites_not_allowed());
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid_request(format!("{what}: {e}")))
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let app = app(&shared, &app_id)?;
    let request: CreateRoom = room_body(&shared, body, "invalid room")?;
    if !is_valid_id(&request.room) {
        return Err(ApiError::invalid_request("room must match ^[A-Za-z0-9_-]{1,64}$"));
    }
    check_name(request.name.as_ref())?;
    check_interval(request.occupancy_interval_ms)?;
    let created = create_room(&shared, app, &request.room, request.name).await?;
    if request.occupancy_interval_ms > 0 {
        let interval = Some(request.occupancy_interval_ms);
        shared.broker.change_room(&shared.registry, app, &created, None, interval).await?;
    }
    Ok((StatusCode::CREATED, Json(room_json(&shared, &created))))
}

/// Creates a room, atomically against the app's cap, here or cluster-wide:
/// what every admin API that creates rooms goes through.
pub async fn create_room(
    shared: &Arc<Shared>,
    app: &App,
    room: &str,
    name: Option<String>,
) -> Result<Arc<Room>, ApiError> {
    shared.broker.create_room(&shared.registry, app, room, name).await
}

/// Deletes a room and closes its members, here or cluster-wide.
pub async fn delete_room(shared: &Arc<Shared>, app: &App, room: &str) -> Result<(), ApiError> {
    shared.broker.delete_room(&shared.registry, app, room).await
}

pub async fn list(State(shared): State<Arc<Shared>>, Path(app_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let app = app(&shared, &app_id)?;
    let rooms: Vec<Value> = app.rooms().iter().map(|room| room_json(&shared, room)).collect();
    Ok(Json(json!({"rooms": rooms, "limit": app.max_rooms()})))
}

pub async fn show(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app = app(&shared, &app_id)?;
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    Ok(Json(room_json(&shared, &room)))
}

/// `PATCH …/rooms/{room}`: changes its name or its occupancy interval.
pub async fn change(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let app = app(&shared, &app_id)?;
    let request: ChangeRoom = room_body(&shared, body, "invalid change")?;
    check_name(request.name.as_ref())?;
    if let Some(ms) = request.occupancy_interval_ms {
        check_interval(ms)?;
    }
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    shared.broker.change_room(&shared.registry, app, &room, request.name, request.occupancy_interval_ms).await?;
    Ok(Json(room_json(&shared, &room)))
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let app = app(&shared, &app_id)?;
    delete_room(&shared, app, &room_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/rooms/{room}/sticky`: unpins the room's message; the
/// registry is written at once, so a restart does not pin it again.
pub async fn unpin(
    State(shared): State<Arc<Shared>>,
    Path((app_id, room_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let app = app(&shared, &app_id)?;
    let room = app.room(&room_id).ok_or_else(|| ApiError::room_not_found(&room_id))?;
    if !shared.broker.unpin(&shared.registry, &room).await {
        return Err(ApiError::sticky_not_found(&room_id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_like_fields_are_recognised() {
        for key in ["members", "MemberList", "invite", "invitees", "member_ids"] {
            assert!(is_invite_like(key), "{key}");
        }
        for key in ["room", "name"] {
            assert!(!is_invite_like(key), "{key}");
        }
    }
}
