//! The five group calls of `group_open_http_svc`, on bullhorn's rooms: a
//! `BChatRoom` group is a room, `GroupId` its id, `MsgSeq` its seq.

use std::sync::Arc;

use rand::Rng as _;
use serde_json::{Map, Value, json};

use super::reply::{TimError, code};
use crate::admin::broadcast::{self, Accepted, Origin};
use crate::admin::rooms;
use crate::fanout::Priority;
use crate::ids::is_valid_id;
use crate::registry::App;
use crate::room::Room;
use crate::room::{Extras, Outgoing};
use crate::state::Shared;

/// The only group type: the online-member broadcast group.
pub const GROUP_TYPE: &str = "BChatRoom";
/// The message element types the REST API may send.
const MSG_TYPES: [&str; 4] = ["TIMTextElem", "TIMFaceElem", "TIMLocationElem", "TIMCustomElem"];
/// Most group ids one list answer holds.
const MAX_LIST_LIMIT: u64 = 10_000;

/// Who is calling: the app, and the admin account named in `identifier`.
pub struct Caller<'a> {
    pub shared: &'a Arc<Shared>,
    pub app: &'a Arc<App>,
    pub identifier: &'a str,
}

pub async fn create_group(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Value, TimError> {
    match body.get("Type").and_then(Value::as_str) {
        Some(GROUP_TYPE) => {}
        Some(other) => return Err(TimError::invalid(format!("Type {other:?} is not supported: only BChatRoom"))),
        None => return Err(TimError::invalid("Type is required (BChatRoom)")),
    }
    if body.contains_key("MemberList") {
        return Err(TimError::new(
            code::PERMISSION,
            "a BChatRoom has no member list: members join by connecting, nobody can be added",
        ));
    }
    let name = match body.get("Name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(TimError::invalid("Name must be a string")),
    };
    let group_id = match body.get("GroupId") {
        None | Some(Value::Null) => generated_group_id(),
        Some(Value::String(id)) if is_valid_id(id) => id.clone(),
        Some(_) => {
            return Err(TimError::new(code::INVALID_GROUP_ID, "GroupId must match ^[A-Za-z0-9_-]{1,64}$ here"));
        }
    };
    rooms::create_room(caller.shared, caller.app, &group_id, name).await?;
    Ok(json!({"GroupId": group_id}))
}

pub async fn destroy_group(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Value, TimError> {
    let group_id = group_id(body)?;
    rooms::delete_room(caller.shared, caller.app, group_id).await?;
    Ok(json!({}))
}

pub async fn send_group_msg(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Value, TimError> {
    let room = room(caller, body)?;
    let random = match body.get("Random").and_then(Value::as_u64) {
        Some(random) if random <= u64::from(u32::MAX) => random,
        _ => return Err(TimError::invalid("Random is required: an unsigned 32-bit integer")),
    };
    let priority = match body.get("MsgPriority").and_then(Value::as_str) {
        None => Priority::Normal,
        Some("High") => Priority::High,
        Some("Normal") => Priority::Normal,
        Some("Low" | "Lowest") => Priority::Low,
        Some(other) => {
            return Err(TimError::invalid(format!("MsgPriority {other:?} is not High, Normal, Low or Lowest")));
        }
    };
    if body.contains_key("To_Account") {
        return Err(TimError::new(
            code::PERMISSION,
            "a BChatRoom message goes to every online member: there is no member list to pick from",
        ));
    }
    let from = match body.get("From_Account") {
        None | Some(Value::Null) => caller.identifier,
        Some(Value::String(from)) => from.as_str(),
        Some(_) => return Err(TimError::invalid("From_Account must be a string")),
    };
    let data = message_data(body, from)?;
    let limit = caller.shared.settings.max_payload_bytes;
    if data.len() > limit {
        return Err(TimError::new(code::TOO_LONG, format!("the message is over {limit} bytes")));
    }
    broadcast::check_depth(&data)?;
    // Tencent drops a repeat of the same sender's Random within 5 minutes; the
    // idempotency keys do exactly that, answering with the first seq.
    let key = format!("tencent:{from}:{random}");
    let outgoing =
        Outgoing { data: &data, priority, conflate: None, idempotency_key: Some(&key), extras: Extras::default() };
    let origin = Origin { from_account: Some(from), random: Some(random) };
    let Accepted { seq, .. } = broadcast::publish(caller.shared, &room, outgoing, origin).await?;
    Ok(json!({"MsgTime": unix_seconds(), "MsgSeq": seq}))
}

pub async fn get_online_member_num(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Value, TimError> {
    let room = room(caller, body)?;
    Ok(json!({"OnlineMemberNum": caller.shared.online(&room)}))
}

pub async fn get_appid_group_list(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Value, TimError> {
    let number = |name: &str, default: u64| match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_u64().ok_or_else(|| TimError::invalid(format!("{name} must be an unsigned integer"))),
    };
    let limit = number("Limit", MAX_LIST_LIMIT)?.clamp(1, MAX_LIST_LIMIT) as usize;
    let next = number("Next", 0)? as usize;
    let rooms = match body.get("GroupType").and_then(Value::as_str) {
        None | Some(GROUP_TYPE) => caller.app.rooms(),
        Some(_) => Vec::new(),
    };
    let page: Vec<Value> = rooms.iter().skip(next).take(limit).map(|room| json!({"GroupId": &**room.id()})).collect();
    let after = next + page.len();
    let next = if after < rooms.len() { after } else { 0 };
    Ok(json!({"TotalCount": rooms.len(), "GroupIdList": page, "Next": next}))
}

/// The broadcast's `data`: the message body as sent, and who sent it
/// (docs/migration.md has the mapping).
fn message_data(body: &Map<String, Value>, from: &str) -> Result<String, TimError> {
    let Some(Value::Array(elements)) = body.get("MsgBody") else {
        return Err(TimError::invalid("MsgBody is required: an array of message elements"));
    };
    if elements.is_empty() {
        return Err(TimError::invalid("MsgBody is empty"));
    }
    let mut custom = 0;
    for element in elements {
        let kind = element.get("MsgType").and_then(Value::as_str).unwrap_or("");
        if !MSG_TYPES.contains(&kind) {
            return Err(TimError::invalid(format!("MsgType {kind:?} is not one of {}", MSG_TYPES.join(", "))));
        }
        if !element.get("MsgContent").is_some_and(Value::is_object) {
            return Err(TimError::invalid("every element needs a MsgContent object"));
        }
        custom += usize::from(kind == "TIMCustomElem");
    }
    if custom > 1 {
        return Err(TimError::invalid("at most one TIMCustomElem per message"));
    }
    let mut data = Map::new();
    data.insert("MsgBody".into(), Value::Array(elements.clone()));
    data.insert("From_Account".into(), from.into());
    if let Some(custom_data) = body.get("CloudCustomData") {
        data.insert("CloudCustomData".into(), custom_data.clone());
    }
    Ok(Value::Object(data).to_string())
}

fn group_id(body: &Map<String, Value>) -> Result<&str, TimError> {
    match body.get("GroupId").and_then(Value::as_str) {
        Some(id) if is_valid_id(id) => Ok(id),
        Some(_) => Err(TimError::new(code::INVALID_GROUP_ID, "GroupId is not a valid group id")),
        None => Err(TimError::invalid("GroupId is required")),
    }
}

fn room(caller: &Caller<'_>, body: &Map<String, Value>) -> Result<Arc<Room>, TimError> {
    let id = group_id(body)?;
    caller.app.room(id).ok_or_else(|| TimError::new(code::GROUP_NOT_FOUND, format!("group {id:?} does not exist")))
}

/// An id for a group created without one: `TGS_` and 12 random letters and
/// digits, a valid room id (Tencent's `@TGS#…` is not one).
fn generated_group_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..12).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("TGS_{suffix}")
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_room_ids() {
        let id = generated_group_id();
        assert!(is_valid_id(&id) && id.starts_with("TGS_") && id.len() == 16, "{id}");
        assert_ne!(id, generated_group_id());
    }

    #[test]
    fn the_message_body_becomes_data_as_sent() {
        let body = json!({"MsgBody": [
            {"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}},
            {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{\"gift\":1}", "Desc": "d", "Ext": "e"}}
        ], "CloudCustomData": "c"});
        let data: Value = serde_json::from_str(&message_data(body.as_object().unwrap(), "admin").unwrap()).unwrap();
        assert_eq!(data["MsgBody"][1]["MsgContent"]["Data"], "{\"gift\":1}");
        assert_eq!(data["From_Account"], "admin");
        assert_eq!(data["CloudCustomData"], "c");
    }

    #[test]
    fn bad_message_bodies_are_refused() {
        for body in [
            json!({}),
            json!({"MsgBody": []}),
            json!({"MsgBody": [{"MsgType": "TIMImageElem", "MsgContent": {}}]}),
            json!({"MsgBody": [{"MsgType": "TIMTextElem"}]}),
            json!({"MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": {}}, {"MsgType": "TIMCustomElem", "MsgContent": {}}]}),
        ] {
            let error = message_data(body.as_object().unwrap(), "a").unwrap_err();
            assert_eq!(error.code, code::INVALID_PARAMETER, "{body}");
        }
    }
}
