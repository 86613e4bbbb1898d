//! What a callback request carries and how its answer is read. Pure: no I/O.
//!
//! One request serves two kinds of callback servers. Its body has bullhorn's
//! fields (`event`, `app`, `room`, `data`, …) and, beside them, Tencent Cloud
//! IM's (`CallbackCommand`, `GroupId`, `MsgBody`, …), and its query has
//! Tencent's (`SdkAppid`, `CallbackCommand`, `Sign`, `RequestTime`), so a
//! callback server written for either works unchanged. The answer is read in
//! whichever shape it comes: `ErrorCode` means Tencent's, `action` bullhorn's.

use serde_json::{Map, Value, json};

use crate::fanout::Priority;

/// Tencent's command names for the two callbacks.
pub const BEFORE_COMMAND: &str = "Group.CallbackBeforeSendMsg";
pub const AFTER_COMMAND: &str = "Group.CallbackAfterSendMsg";

/// A broadcast as the callbacks describe it.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub app: &'a str,
    pub room: &'a str,
    /// The broadcast's `data`, JSON text.
    pub data: &'a str,
    pub priority: Priority,
    /// Tencent's sender and `Random`, for calls that came through the Tencent-style API.
    pub from_account: Option<&'a str>,
    pub random: Option<u64>,
}

/// What the before-broadcast callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Send this `data` (JSON text) instead.
    Replace(String),
    /// Refuse; the admin sees this sentence.
    Reject(String),
    /// Tell the admin it was accepted, send nothing.
    Drop,
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callback answer: {0}")]
pub struct BadAnswer(pub String);

/// The body of the before-broadcast request.
pub fn before_body(message: &Message<'_>) -> Value {
    let mut body = common(message, BEFORE_COMMAND);
    body.insert("event".into(), "before_broadcast".into());
    Value::Object(body)
}

/// The body of the after-broadcast request.
/// `{"event":"room.occupied","app":…,"room":…,"online":…,"at":"<RFC 3339>"}` (contract §9).
pub fn room_event_body(event: &str, app: &str, room: &str, online: usize, at: std::time::SystemTime) -> Value {
    let at = humantime::format_rfc3339_millis(at).to_string();
    serde_json::json!({"event": event, "app": app, "room": room, "online": online, "at": at})
}

pub fn after_body(message: &Message<'_>, seq: u64, time_ms: u64, online: usize) -> Value {
    let mut body = common(message, AFTER_COMMAND);
    body.insert("event".into(), "after_broadcast".into());
    body.insert("seq".into(), seq.into());
    body.insert("online".into(), online.into());
    body.insert("MsgSeq".into(), seq.into());
    body.insert("MsgTime".into(), (time_ms / 1000).into());
    body.insert("EventTime".into(), time_ms.to_string().into());
    body.insert("OnlineOnlyFlag".into(), 1.into());
    Value::Object(body)
}

fn common(message: &Message<'_>, command: &str) -> Map<String, Value> {
    let data: Value = serde_json::from_str(message.data).unwrap_or(Value::Null);
    let msg_body = msg_body_of(&data);
    let from = message.from_account.unwrap_or("administrator");
    let mut body = Map::new();
    body.insert("app".into(), message.app.into());
    body.insert("room".into(), message.room.into());
    body.insert("priority".into(), message.priority.as_str().into());
    body.insert("CallbackCommand".into(), command.into());
    body.insert("GroupId".into(), message.room.into());
    body.insert("Type".into(), "BChatRoom".into());
    body.insert("From_Account".into(), from.into());
    body.insert("Operator_Account".into(), from.into());
    body.insert("Random".into(), message.random.unwrap_or(0).into());
    body.insert("MsgBody".into(), msg_body);
    body.insert("data".into(), data);
    body
}

/// `MsgBody` for Tencent-shaped servers: the one a Tencent-style call sent,
/// or the native `data` as one `TIMCustomElem` whose `Data` is its JSON text.
fn msg_body_of(data: &Value) -> Value {
    match data.get("MsgBody") {
        Some(body @ Value::Array(_)) => body.clone(),
        _ => json!([{"MsgType": "TIMCustomElem", "MsgContent": {"Data": data.to_string()}}]),
    }
}

/// Reads the before-broadcast answer, in either shape. `data` is the
/// broadcast's current `data`, for a Tencent-shaped rewrite of `MsgBody`.
pub fn verdict(answer: &[u8], data: &str) -> Result<Verdict, BadAnswer> {
    let answer: Value = serde_json::from_slice(answer).map_err(|e| BadAnswer(format!("not JSON: {e}")))?;
    if let Some(code) = answer.get("ErrorCode") {
        return tencent_verdict(&answer, code, data);
    }
    let message = || answer.get("message").and_then(Value::as_str).unwrap_or("refused by the callback").to_owned();
    match answer.get("action").and_then(Value::as_str) {
        Some("allow") => Ok(Verdict::Allow),
        Some("drop") => Ok(Verdict::Drop),
        Some("reject") => Ok(Verdict::Reject(message())),
        Some("replace") => match answer.get("data") {
            Some(data) => Ok(Verdict::Replace(data.to_string())),
            None => Err(BadAnswer("replace without data".into())),
        },
        _ => Err(BadAnswer("neither ErrorCode nor a known action".into())),
    }
}

/// Tencent's rules: 0 allows (with `MsgBody`, rewrites it), 1 rejects, 2 drops silently.
fn tencent_verdict(answer: &Value, code: &Value, data: &str) -> Result<Verdict, BadAnswer> {
    match code.as_u64() {
        Some(0) => match answer.get("MsgBody") {
            Some(msg_body @ Value::Array(_)) => Ok(Verdict::Replace(rewrite(data, msg_body.clone()))),
            _ => Ok(Verdict::Allow),
        },
        Some(1) => {
            let info = answer.get("ErrorInfo").and_then(Value::as_str).filter(|i| !i.is_empty());
            Ok(Verdict::Reject(info.unwrap_or("refused by the callback").to_owned()))
        }
        Some(2) => Ok(Verdict::Drop),
        _ => Err(BadAnswer(format!("ErrorCode {code} is not 0, 1 or 2"))),
    }
}

/// `data` with its `MsgBody` replaced; native data that was presented as one
/// `TIMCustomElem` gets back that element's `Data` if it is JSON.
fn rewrite(data: &str, msg_body: Value) -> String {
    let mut current: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    if let Some(object) = current.as_object_mut().filter(|o| o.contains_key("MsgBody")) {
        object.insert("MsgBody".into(), msg_body);
        return current.to_string();
    }
    let custom = msg_body.as_array().filter(|elements| elements.len() == 1).and_then(|elements| {
        let element = &elements[0];
        (element.get("MsgType")? == "TIMCustomElem").then(|| element.get("MsgContent")?.get("Data")?.as_str())?
    });
    match custom.and_then(|text| serde_json::from_str::<Value>(text).ok()) {
        Some(native) => native.to_string(),
        None => json!({"MsgBody": msg_body}).to_string(),
    }
}

/// Tencent's request signature: hex SHA-256 of the token and the request time.
pub fn sign(token: &str, request_time: u64) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{token}{request_time}").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(data: &str) -> Message<'_> {
        Message { app: "live", room: "gifts", data, priority: Priority::Normal, from_account: None, random: None }
    }

    #[test]
    fn the_sign_matches_tencents_documented_example() {
        assert_eq!(sign("xxxxyyyy", 1_669_872_112), "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061");
    }

    #[test]
    fn both_shapes_are_in_one_body() {
        let body = before_body(&native(r#"{"gift":"rocket"}"#));
        assert_eq!(body["event"], "before_broadcast");
        assert_eq!(body["data"]["gift"], "rocket");
        assert_eq!(body["CallbackCommand"], BEFORE_COMMAND);
        assert_eq!(body["GroupId"], "gifts");
        assert_eq!(body["MsgBody"][0]["MsgContent"]["Data"], r#"{"gift":"rocket"}"#);
        let after = after_body(&native("1"), 7, 1_700_000_000_123, 3);
        assert_eq!((after["MsgSeq"].as_u64(), after["MsgTime"].as_u64()), (Some(7), Some(1_700_000_000)));
        assert_eq!(after["EventTime"], "1700000000123");
    }

    #[test]
    fn native_answers() {
        assert_eq!(verdict(br#"{"action":"allow"}"#, "1"), Ok(Verdict::Allow));
        assert_eq!(verdict(br#"{"action":"drop"}"#, "1"), Ok(Verdict::Drop));
        assert_eq!(verdict(br#"{"action":"reject","message":"no ads"}"#, "1"), Ok(Verdict::Reject("no ads".into())));
        assert_eq!(verdict(br#"{"action":"replace","data":{"a":1}}"#, "1"), Ok(Verdict::Replace(r#"{"a":1}"#.into())));
        assert!(verdict(br#"{"action":"replace"}"#, "1").is_err());
        assert!(verdict(b"<html>", "1").is_err());
        assert!(verdict(br#"{"ok":true}"#, "1").is_err());
    }

    #[test]
    fn tencent_answers() {
        let ok = |code: u32| format!(r#"{{"ActionStatus":"OK","ErrorInfo":"why","ErrorCode":{code}}}"#);
        assert_eq!(verdict(ok(0).as_bytes(), "1"), Ok(Verdict::Allow));
        assert_eq!(verdict(ok(1).as_bytes(), "1"), Ok(Verdict::Reject("why".into())));
        assert_eq!(verdict(ok(2).as_bytes(), "1"), Ok(Verdict::Drop));
        assert!(verdict(ok(5).as_bytes(), "1").is_err());
        // A rewrite of a Tencent-style message replaces its MsgBody and keeps the rest.
        let data = r#"{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"bad word"}}],"From_Account":"a"}"#;
        let answer = br#"{"ErrorCode":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"***"}}]}"#;
        let Ok(Verdict::Replace(new)) = verdict(answer, data) else { panic!() };
        let new: Value = serde_json::from_str(&new).unwrap();
        assert_eq!(
            (new["MsgBody"][0]["MsgContent"]["Text"].as_str(), new["From_Account"].as_str()),
            (Some("***"), Some("a"))
        );
        // A rewrite of a native broadcast's custom element gives back native data.
        let answer =
            br#"{"ErrorCode":0,"MsgBody":[{"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"gift\":\"car\"}"}}]}"#;
        assert_eq!(verdict(answer, r#"{"gift":"rocket"}"#), Ok(Verdict::Replace(r#"{"gift":"car"}"#.into())));
    }
}
