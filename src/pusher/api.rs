//! Pusher's HTTP API on the admin listener (contract §12), for backends that
//! publish with Pusher's server libraries: `POST /apps/{app_id}/events` and
//! `…/batch_events`, `GET /apps/{app_id}/channels` and `…/channels/{channel}`.
//!
//! Each request is authenticated by its signature ([`super::signature`])
//! against the app whose `[app.pusher]` has that `app_id`, then takes the app's
//! admin rate limit; events go through the native broadcast path
//! (`admin::broadcast::publish`: the room's rate limit, callbacks, cluster).
//! Answers are Pusher's: `{}` or the asked-for channel info on success, a
//! plain-text reason with the status on a refusal.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::signature;
use crate::admin::broadcast::{self, Origin};
use crate::api_error::ApiError;
use crate::fanout::Priority;
use crate::protocol::messages::is_event_name;
use crate::registry::App;
use crate::room::{Extras, Outgoing};
use crate::state::Shared;

/// The most channels one event may name, and events one batch may hold (Pusher's limits).
const MAX_CHANNELS: usize = 100;
const MAX_BATCH: usize = 10;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
}

/// A refusal as Pusher answers it: the status and a line of text.
#[derive(Debug)]
pub struct PusherError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl PusherError {
    fn new(status: StatusCode, message: impl Into<String>) -> PusherError {
        PusherError { status, message: message.into(), retry_after_secs: None }
    }

    fn bad_request(message: impl Into<String>) -> PusherError {
        PusherError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for PusherError {
    fn from(error: ApiError) -> PusherError {
        PusherError { status: error.status, message: error.message, retry_after_secs: error.retry_after_secs }
    }
}

impl IntoResponse for PusherError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.message + "\n").into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

type Answer = Result<axum::Json<Value>, PusherError>;

/// One event as `events` takes it (`channels`, or one `channel`) and as a
/// `batch` entry holds it. `socket_id` (the triggering client's connection,
/// left out of the recipients) is accepted and ignored, like any other field:
/// no Pusher connection triggers here.
#[derive(Debug, Deserialize)]
struct Event {
    name: String,
    data: String,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    /// `subscription_count` (or `user_count`, for presence channels: refused).
    #[serde(default)]
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Batch {
    batch: Vec<Event>,
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let (app, event): (_, Event) = signed_post(&shared, &app_id, uri.path(), query.as_deref(), body)?;
    let channels = match (event.channels.as_deref(), event.channel.as_deref()) {
        (Some(channels), None) if !channels.is_empty() && channels.len() <= MAX_CHANNELS => channels.to_vec(),
        (None, Some(channel)) => vec![channel.to_owned()],
        _ => {
            return Err(PusherError::bad_request(format!("give channel, or channels: 1 to {MAX_CHANNELS} of them")));
        }
    };
    let counts = trigger(&shared, app, &event, &channels).await?;
    Ok(axum::Json(info_answer(event.info.as_deref(), &counts)?))
}

async fn batch_events(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let (app, Batch { batch }) = signed_post(&shared, &app_id, uri.path(), query.as_deref(), body)?;
    if batch.is_empty() || batch.len() > MAX_BATCH {
        return Err(PusherError::bad_request(format!("a batch holds 1 to {MAX_BATCH} events")));
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut asked = false;
    for event in &batch {
        let Some(channel) = event.channel.clone().filter(|_| event.channels.is_none()) else {
            return Err(PusherError::bad_request("each batch event names one channel"));
        };
        let counted = wants_subscription_count(event.info.as_deref())?;
        let counts = trigger(&shared, app, event, &[channel]).await?;
        asked |= counted;
        answers.push(if counted { json!({"subscription_count": counts[0].1}) } else { json!({}) });
    }
    Ok(axum::Json(if asked { json!({"batch": answers}) } else { json!({}) }))
}

async fn channels(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Answer {
    let app = authenticate(&shared, &app_id, Method::GET, uri.path(), query.as_deref(), b"")?;
    let params = params(query.as_deref());
    let prefix = param(&params, "filter_by_prefix").unwrap_or("");
    let counted = wants_subscription_count(param(&params, "info"))?;
    let mut out = Map::new();
    for room in app.rooms() {
        let online = shared.online(&room);
        if online == 0 || !room.id().starts_with(prefix) {
            continue;
        }
        let info = if counted { json!({"subscription_count": online}) } else { json!({}) };
        out.insert(room.id().to_string(), info);
    }
    Ok(axum::Json(json!({"channels": out})))
}

async fn channel(
    State(shared): State<Arc<Shared>>,
    Path((app_id, channel)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Answer {
    let app = authenticate(&shared, &app_id, Method::GET, uri.path(), query.as_deref(), b"")?;
    let counted = wants_subscription_count(param(&params(query.as_deref()), "info"))?;
    let online = app.room(&channel).map_or(0, |room| shared.online(&room));
    let mut out = json!({"occupied": online > 0});
    if counted {
        out["subscription_count"] = online.into();
    }
    Ok(axum::Json(out))
}

/// A POST's app ([`authenticate`]) and its JSON body.
fn signed_post<'a, T: serde::de::DeserializeOwned>(
    shared: &'a Shared,
    app_id: &str,
    path: &str,
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(&'a Arc<App>, T), PusherError> {
    let body = body.map_err(|_| too_large(shared))?;
    let app = authenticate(shared, app_id, Method::POST, path, query, &body)?;
    let parsed = serde_json::from_slice(&body)
        .map_err(|error| PusherError::bad_request(format!("the body is not valid: {error}")))?;
    Ok((app, parsed))
}

/// The app named by `app_id`, once the request's signature holds and its rate limit lets it through.
fn authenticate<'a>(
    shared: &'a Shared,
    app_id: &str,
    method: Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<&'a Arc<App>, PusherError> {
    let app = shared
        .registry
        .app_by_pusher_id(app_id)
        .ok_or_else(|| PusherError::new(StatusCode::NOT_FOUND, format!("Unknown app_id {app_id:?}")))?;
    let identity = app.pusher().expect("found by its Pusher app_id");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    signature::verify(identity, method.as_str(), path, &params(query), body, now).map_err(|error| {
        shared.metrics.rejected_pusher_auth.increment(1);
        PusherError::new(StatusCode::UNAUTHORIZED, error.to_string())
    })?;
    if let Err(wait) = app.admit_request() {
        shared.metrics.rate_limited_admin.increment(1);
        let mut error = PusherError::new(StatusCode::TOO_MANY_REQUESTS, "over this app's admin request rate");
        error.retry_after_secs = Some(crate::limits::retry_after_secs(wait));
        return Err(error);
    }
    Ok(app)
}

/// Broadcasts `event` to each of `channels` that is a room of `app`; returns
/// each room's `online`. A channel that is no room gets nothing, as a Pusher
/// channel without subscribers would, and is counted.
async fn trigger(
    shared: &Shared,
    app: &App,
    event: &Event,
    channels: &[String],
) -> Result<Vec<(String, usize)>, PusherError> {
    if !is_event_name(&event.name) {
        return Err(PusherError::bad_request(
            "name must be 1 to 200 visible ASCII characters without quotes or backslashes, not pusher:…",
        ));
    }
    let limit = shared.settings.max_payload_bytes;
    if event.data.len() > limit {
        return Err(PusherError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("data is over {limit} bytes")));
    }
    let (data, data_is_text) = json_data(&event.data);
    broadcast::check_depth(&data)?;
    let mut counts = Vec::with_capacity(channels.len());
    for channel in channels {
        let Some(room) = app.room(channel) else {
            shared.metrics.pusher_unknown_channels.increment(1);
            counts.push((channel.clone(), 0));
            continue;
        };
        let extras = Extras { event: Some(&event.name), data_is_text, ..Extras::default() };
        let outgoing =
            Outgoing { data: &data, priority: Priority::Normal, conflate: None, idempotency_key: None, extras };
        let accepted = broadcast::publish(shared, &room, outgoing, Origin::default()).await?;
        counts.push((channel.clone(), accepted.online));
    }
    Ok(counts)
}

/// An event's data string as a broadcast's `data`: itself when it is JSON,
/// else the string as a JSON string (contract §12), and true then (the
/// broadcast's Pusher frame gives the string back as it came).
pub fn json_data(data: &str) -> (String, bool) {
    match serde_json::from_str::<&serde_json::value::RawValue>(data) {
        Ok(_) => (data.to_owned(), false),
        Err(_) => (Value::String(data.to_owned()).to_string(), true),
    }
}

fn info_answer(info: Option<&str>, counts: &[(String, usize)]) -> Result<Value, PusherError> {
    if !wants_subscription_count(info)? {
        return Ok(json!({}));
    }
    let channels: Map<String, Value> =
        counts.iter().map(|(channel, online)| (channel.clone(), json!({"subscription_count": online}))).collect();
    Ok(json!({"channels": channels}))
}

/// Whether `info` asks for `subscription_count`; `user_count` is for presence channels, which there are none of.
fn wants_subscription_count(info: Option<&str>) -> Result<bool, PusherError> {
    let mut wanted = false;
    for attribute in info.unwrap_or("").split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match attribute {
            "subscription_count" => wanted = true,
            "user_count" => {
                return Err(PusherError::bad_request(
                    "user_count is for presence channels, which bullhorn has none of",
                ));
            }
            other => return Err(PusherError::bad_request(format!("unknown info attribute {other:?}"))),
        }
    }
    Ok(wanted)
}

fn params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn too_large(shared: &Shared) -> PusherError {
    PusherError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over the limit for {} bytes of data", shared.settings.max_payload_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_that_is_json_stays_as_it_is_and_other_text_becomes_a_string() {
        assert_eq!(json_data(r#"{"gift":"rocket"}"#), (r#"{"gift":"rocket"}"#.to_owned(), false));
        assert_eq!(json_data("42"), ("42".to_owned(), false));
        assert_eq!(json_data("hello \"you\""), (r#""hello \"you\"""#.to_owned(), true));
    }

    #[test]
    fn info_asks_only_for_what_public_channels_have() {
        assert!(!wants_subscription_count(None).unwrap());
        assert!(wants_subscription_count(Some("subscription_count")).unwrap());
        assert!(wants_subscription_count(Some("user_count")).is_err());
        assert!(wants_subscription_count(Some("nope")).is_err());
    }
}
