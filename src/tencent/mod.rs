//! Tencent Cloud IM–style REST calls on the admin listener (contract §8), so
//! a live-streaming backend that calls the cloud IM's broadcast-group API can
//! move by changing its base URL.
//!
//! `POST /v4/group_open_http_svc/{command}?sdkappid=…&identifier=…&usersig=…&random=…&contenttype=json`:
//! the app is found by `sdkappid`, the caller proves itself with a UserSig
//! ([`usersig`]) for an account in the app's `admin_identifiers`, then the
//! app's admin rate limit applies and the command runs ([`groups`]) through
//! the same room and broadcast paths as the native API. Every answer is HTTP
//! 200 with the cloud IM's envelope ([`reply`]).

pub mod groups;
pub mod reply;
pub mod usersig;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value};

use groups::Caller;
use reply::{TimError, code};

use crate::registry::App;
use crate::state::Shared;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/v4/group_open_http_svc/{command}", any(call))
}

async fn call(
    State(shared): State<Arc<Shared>>,
    Path(command): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = run(&shared, &command, query.as_deref().unwrap_or(""), body).await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.code.to_string(),
    };
    let command = if COMMANDS.contains(&command.as_str()) { command } else { "unknown".to_owned() };
    metrics::counter!(crate::metrics::TENCENT_CALLS, "command" => command, "code" => outcome).increment(1);
    match result {
        Ok(fields) => reply::ok(fields),
        Err(error) => error.into_response(),
    }
}

const COMMANDS: [&str; 5] =
    ["create_group", "destroy_group", "send_group_msg", "get_online_member_num", "get_appid_group_list"];

async fn run(
    shared: &Arc<Shared>,
    command: &str,
    query: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, TimError> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let (app, identifier) = authenticate(shared, &params)?;
    if let Err(wait) = app.admit_request() {
        shared.metrics.rate_limited_admin.increment(1);
        return Err(TimError::new(
            code::RATE_LIMITED,
            format!("over this app's admin request rate; retry in {} s", crate::limits::retry_after_secs(wait)),
        ));
    }
    let bytes = body.map_err(|_| TimError::new(code::TOO_LONG, "the request body is too large"))?;
    let body = parse_body(&bytes)?;
    let caller = Caller { shared, app, identifier };
    match command {
        "create_group" => groups::create_group(&caller, &body).await,
        "destroy_group" => groups::destroy_group(&caller, &body).await,
        "send_group_msg" => groups::send_group_msg(&caller, &body).await,
        "get_online_member_num" => groups::get_online_member_num(&caller, &body).await,
        "get_appid_group_list" => groups::get_appid_group_list(&caller, &body).await,
        _ => Err(TimError::new(code::BAD_URL, format!("{command:?} is not a supported group_open_http_svc command"))),
    }
}

/// The app named by `sdkappid`, once `usersig` proves `identifier` is one of its admins.
fn authenticate<'a>(
    shared: &'a Shared,
    params: &'a HashMap<String, String>,
) -> Result<(&'a Arc<App>, &'a str), TimError> {
    let sdkappid = params
        .get("sdkappid")
        .ok_or_else(|| TimError::new(code::SDKAPPID_MISSING, "sdkappid is missing from the query"))?;
    let app =
        sdkappid.parse().ok().and_then(|sdkappid| shared.registry.app_by_sdkappid(sdkappid)).ok_or_else(|| {
            TimError::new(code::SDKAPPID_INVALID, format!("sdkappid {sdkappid} is not configured here"))
        })?;
    let tencent = app.tencent().expect("found by its sdkappid");
    let (Some(identifier), Some(usersig)) = (params.get("identifier"), params.get("usersig")) else {
        return Err(TimError::new(code::ACCOUNT_OR_SIG, "identifier and usersig are required in the query"));
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    usersig::verify(usersig, tencent.sdkappid, identifier, tencent.usersig_key.as_bytes(), now)
        .map_err(|error| TimError::new(error.code(), error.to_string()))?;
    if !tencent.admin_identifiers.iter().any(|admin| admin == identifier) {
        return Err(TimError::new(code::NOT_ADMIN, format!("{identifier:?} is not an App admin of this app")));
    }
    Ok((app, identifier))
}

/// The JSON object body; an empty body counts as `{}`.
fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, TimError> {
    if bytes.trim_ascii().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(TimError::new(code::JSON_PARSE, "the body must be a JSON object")),
        Err(error) => Err(TimError::new(code::JSON_PARSE, format!("the body is not valid JSON: {error}"))),
    }
}
