//! `GET /v1/apps/{app}/ws?room=…`: checks, refusals before the upgrade, the
//! RFC 6455 handshake, and the hand-off to a connection task.
//!
//! Every refusal happens before anything is spent on the connection: drain,
//! unknown app or room, malformed request, connection cap.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::connection::hand_over;
use crate::api_error::ApiError;
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::peer::PeerAddr;
use crate::transport::prefixed::Prefixed;
use crate::transport::session::{self, Membership};
use crate::transport::socket::ViewerStream;

/// What an admitted subscriber gets: its rooms, its connection slot and the
/// `Sec-WebSocket-Accept` value for the 101 answer.
pub(super) struct Admitted {
    pub memberships: Vec<Membership>,
    pub permit: ConnectionPermit,
    pub accept: String,
}

/// Every check before the upgrade, in the order that spends the least on a
/// refusal; shared by the accept loop's fast path and the axum route.
pub(super) fn admit(
    shared: &Shared,
    app: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Admitted, ApiError> {
    let memberships = check(shared, app, query, headers)?;
    let permit = session::acquire(shared, Transport::WebSocket, peer)?;
    Ok(Admitted { memberships, permit, accept: accept_key(headers) })
}

/// The 101 answer's headers.
pub(super) fn switching_protocols(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// The WebSocket subscribe endpoint as an axum route: reached only when a
/// client upgrades a keep-alive connection that first served a page; fresh
/// connections take the accept loop's fast path (`handshake`).
pub async fn subscribe(
    State(shared): State<Arc<Shared>>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    mut request: Request,
) -> Response {
    let admitted = match admit(&shared, &app, query.as_deref(), request.headers(), peer) {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::invalid_request("this connection cannot be upgraded (HTTP/1.1 is required)").into_response();
    };
    let Admitted { memberships, permit, accept } = admitted;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => return tracing::debug!(%error, "websocket upgrade failed"),
        };
        // The viewer listener's stream, plain or TLS.
        let upgraded = match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
            Ok(parts) => return start(parts, memberships, shared, permit),
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Prefixed<TlsStream<TcpStream>>>>() {
            Ok(parts) => start(parts, memberships, shared, permit),
            Err(_) => tracing::error!("upgraded connection is not the viewer listener's socket"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    response
}

/// Hands the upgraded connection to its shard.
fn start<S: ViewerStream>(
    parts: hyper::upgrade::Parts<TokioIo<Prefixed<S>>>,
    memberships: Vec<Membership>,
    shared: Arc<Shared>,
    permit: ConnectionPermit,
) {
    let (unread, stream) = parts.io.into_inner().into_parts();
    let mut early_input = unread.to_vec();
    early_input.extend_from_slice(&parts.read_buf);
    hand_over(stream, early_input, memberships, &shared, permit);
}

/// Everything that must hold before the upgrade.
fn check(shared: &Shared, app_id: &str, query: Option<&str>, headers: &HeaderMap) -> Result<Vec<Membership>, ApiError> {
    let rooms = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "room")
        .map(|(_, value)| value.into_owned())
        .collect::<Vec<_>>();
    let memberships = session::resolve(shared, app_id, rooms.iter().map(String::as_str))?;
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
