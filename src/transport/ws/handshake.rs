//! The WebSocket handshake on a raw socket: the accept loop's fast path.
//!
//! The request head was read by the accept loop; this parses it (httparse,
//! no allocation but the header map the checks share with the axum route),
//! answers refusals as JSON and success as 101, and starts the connection in
//! a task of its own.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::connection::hand_over;
use super::upgrade::{Admitted, admit, switching_protocols};
use crate::api_error::ApiError;
use crate::state::Shared;
use crate::transport::socket::ViewerStream;

/// Headers parsed from one request head.
const MAX_HEADERS: usize = 32;

/// A request for the subscribe endpoint.
#[derive(Debug)]
pub struct WsRequest {
    pub app: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
}

/// `Some` when `head` is `GET /v1/apps/{app}/ws[?…]`; anything else (other
/// paths, other methods, heads httparse rejects) is for the HTTP router.
pub fn parse(head: &[u8]) -> Option<WsRequest> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    if !request.parse(head).ok()?.is_complete() || request.method? != "GET" {
        return None;
    }
    let target = request.path?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let app = path.strip_prefix("/v1/apps/")?.strip_suffix("/ws")?;
    if app.is_empty() || app.contains('/') {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    Some(WsRequest { app: app.to_owned(), query, headers })
}

/// Answers a subscribe request on its raw socket (or TLS stream).
pub async fn accept<S: ViewerStream>(
    mut stream: S,
    peer: IpAddr,
    request: WsRequest,
    early_input: &[u8],
    shared: Arc<Shared>,
) {
    match admit(&shared, &request.app, request.query.as_deref(), &request.headers, peer) {
        Ok(Admitted { memberships, permit, accept }) => {
            drop(request);
            if stream.write_all(&switching_protocols(&accept)).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            hand_over(stream, early_input.to_vec(), memberships, &shared, permit);
        }
        Err(error) => refuse(stream, &error).await,
    }
}

/// A head over the size limit.
pub async fn refuse_oversized(stream: impl AsyncWrite + Unpin) {
    refuse(stream, &ApiError::headers_too_large()).await
}

async fn refuse(mut stream: impl AsyncWrite + Unpin, error: &ApiError) {
    if stream.write_all(&error.to_http1()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_the_subscribe_endpoint() {
        let ws =
            parse(b"GET /v1/apps/demo/ws?room=a&room=b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_eq!(ws.app, "demo");
        assert_eq!(ws.query.as_deref(), Some("room=a&room=b"));
        assert_eq!(ws.headers["upgrade"], "websocket");
        for other in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /sdk/bullhorn.js HTTP/1.1\r\n\r\n",
            b"POST /v1/apps/demo/ws HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/ws/x HTTP/1.1\r\n\r\n",
            b"GET /v1/apps//ws HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn refusals_are_complete_json_responses() {
        let raw = ApiError::over_capacity(5).to_http1();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("retry-after: 5\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "over_capacity");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
