//! `GET /v1/apps/{app}/ws?room=…`: checks, refusals before the upgrade, the
//! RFC 6455 handshake (its rules in `protocol::handshake`), and the hand-over
//! to the connection's data-plane shard.
//!
//! Every refusal happens before anything is spent on the connection: drain,
//! unknown app or room, malformed request, connection cap.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::connection::hand_over;
use crate::api_error::ApiError;
use crate::protocol::handshake;
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
    /// The client offered `permessage-deflate` and this node accepts it: the 101's answer.
    pub deflate: Option<&'static str>,
}

/// Every check before the upgrade, in the order that spends the least on a
/// refusal; shared by the accept loop's fast path and the axum route.
/// `headers`: name (any case) and value, as sent.
pub(super) fn admit<'a>(
    shared: &Shared,
    app: &str,
    query: Option<&str>,
    headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    peer: IpAddr,
) -> Result<Admitted, ApiError> {
    let rooms = crate::protocol::rooms_in(query);
    let memberships = session::resolve(shared, app, rooms.iter().map(String::as_str))?;
    let accept = handshake::check(headers.clone()).map_err(|error| ApiError::invalid_request(error.to_string()))?;
    let deflate = handshake::offers_deflate(headers).filter(|_| shared.settings.ws_compression);
    let permit = session::acquire(shared, Transport::WebSocket, peer)?;
    Ok(Admitted { memberships, permit, accept, deflate })
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
    // Only keep-alive upgrades come this way (fresh ones take the fast path): a small Vec is fine.
    let admitted = {
        let headers: Vec<(&str, &[u8])> =
            request.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes())).collect();
        match admit(&shared, &app, query.as_deref(), headers.iter().copied(), peer) {
            Ok(admitted) => admitted,
            Err(error) => return error.into_response(),
        }
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return ApiError::invalid_request("this connection cannot be upgraded (HTTP/1.1 is required)").into_response();
    };
    let Admitted { memberships, permit, accept, deflate } = admitted;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => return tracing::debug!(%error, "websocket upgrade failed"),
        };
        // The viewer listener's stream, plain or TLS.
        let upgraded = match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
            Ok(parts) => return start(parts, memberships, shared, permit, deflate.is_some()),
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Prefixed<TlsStream<TcpStream>>>>() {
            Ok(parts) => start(parts, memberships, shared, permit, deflate.is_some()),
            Err(_) => tracing::error!("upgraded connection is not the viewer listener's socket"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    if let Some(answer) = deflate {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(answer));
    }
    response
}

/// Hands the upgraded connection to its shard.
fn start<S: ViewerStream>(
    parts: hyper::upgrade::Parts<TokioIo<Prefixed<S>>>,
    memberships: Vec<Membership>,
    shared: Arc<Shared>,
    permit: ConnectionPermit,
    deflate: bool,
) {
    let (unread, stream) = parts.io.into_inner().into_parts();
    let mut early_input = unread.to_vec();
    early_input.extend_from_slice(&parts.read_buf);
    hand_over(stream, early_input, memberships, &shared, permit, deflate);
}
