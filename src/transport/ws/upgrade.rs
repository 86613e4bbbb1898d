//! `GET /v1/apps/{app}/ws?room=…`: checks, refusals before the upgrade, the
//! RFC 6455 handshake, and the hand-off to a connection task.
//!
//! Every refusal happens before anything is spent on the connection: drain,
//! unknown app or room, malformed request, connection cap.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::connection::{Membership, WsConnection};
use crate::api_error::ApiError;
use crate::ids::RoomRequest;
use crate::state::Shared;
use crate::transport::capacity::Transport;

/// How long an over-capacity or draining client is asked to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// The WebSocket subscribe endpoint.
pub async fn subscribe(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Response {
    let subscription = match check(&shared, &app, query.as_deref(), request.headers()) {
        Ok(checked) => checked,
        Err(error) => return error.into_response(),
    };
    let Some(permit) = shared.connections.try_acquire(Transport::WebSocket) else {
        shared.metrics.rejected_over_capacity.increment(1);
        return ApiError::over_capacity(RETRY_AFTER_SECS).into_response();
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::invalid_request("this connection cannot be upgraded (HTTP/1.1 is required)").into_response();
    };
    let accept = accept_key(request.headers());
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => return tracing::debug!(%error, "websocket upgrade failed"),
        };
        match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
            // A task of its own, so the connection's long-lived future holds
            // nothing of this short one (smaller per-connection memory).
            Ok(parts) => {
                let connection = WsConnection::new(parts.io.into_inner(), parts.read_buf, subscription, shared, permit);
                tokio::spawn(connection.run());
            }
            Err(_) => tracing::error!("upgraded connection is not a TcpStream"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    response
}

/// Everything that must hold before the upgrade.
fn check(shared: &Shared, app_id: &str, query: Option<&str>, headers: &HeaderMap) -> Result<Vec<Membership>, ApiError> {
    if shared.drain.is_draining() {
        return Err(ApiError::over_capacity(RETRY_AFTER_SECS));
    }
    let app = shared.registry.app(app_id).ok_or_else(|| ApiError::app_not_found(app_id))?;
    let mut requests: Vec<RoomRequest> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key != "room" {
            continue;
        }
        let request = RoomRequest::parse(&value)
            .ok_or_else(|| ApiError::invalid_request(format!("room {value:?} is not a room id or room@seq")))?;
        if requests.iter().any(|r| r.room == request.room) {
            return Err(ApiError::invalid_request(format!("room {:?} is named twice", request.room)));
        }
        requests.push(request);
    }
    if requests.is_empty() {
        return Err(ApiError::invalid_request("name at least one room: ?room=<room>"));
    }
    if requests.len() > app.max_rooms() {
        return Err(ApiError::invalid_request(format!("at most {} rooms per connection", app.max_rooms())));
    }
    let mut memberships = Vec::with_capacity(requests.len());
    for request in &requests {
        let room = app.room(&request.room).ok_or_else(|| ApiError::room_not_found(&request.room))?;
        memberships.push(Membership { room, resume_after: request.resume_after, key: None });
    }
    check_handshake(headers)?;
    Ok(memberships)
}

fn check_handshake(headers: &HeaderMap) -> Result<(), ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(ApiError::invalid_request("this endpoint speaks WebSocket: send Upgrade: websocket"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(ApiError::invalid_request("Sec-WebSocket-Version must be 13"));
    }
    let key_ok = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k.as_bytes()).ok())
        .is_some_and(|k| k.len() == 16);
    if !key_ok {
        return Err(ApiError::invalid_request("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    Ok(())
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + RFC 6455 GUID)).
fn accept_key(headers: &HeaderMap) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = sha1_smol::Sha1::new();
    sha.update(headers.get(header::SEC_WEBSOCKET_KEY).map_or(&[][..], |k| k.as_bytes()));
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        let mut headers = HeaderMap::new();
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(accept_key(&headers), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
