//! The WebSocket handshake on a raw socket: the accept loop's fast path.
//!
//! The request head was read by the accept loop; this parses it
//! (`protocol::handshake`: the rules the axum route applies too), answers
//! refusals as JSON and success as 101, and hands the connection to its shard.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::upgrade::{Admitted, admit};
use crate::api_error::ApiError;
use crate::protocol::Framing;
use crate::protocol::handshake::{SubscribeRequest, switching_protocols};
use crate::state::Shared;
use crate::transport::session;
use crate::transport::socket::ViewerStream;

/// Answers a subscribe request on its raw socket (or TLS stream).
pub async fn accept<S: ViewerStream>(
    mut stream: S,
    peer: IpAddr,
    request: SubscribeRequest<'_>,
    early_input: &[u8],
    shared: Arc<Shared>,
) {
    match admit(&shared, request.app, request.query, request.header_pairs(), peer) {
        Ok(Admitted { memberships, permit, accept, deflate }) => {
            drop(request);
            let answer = switching_protocols(&accept, deflate);
            if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            let framing = if deflate.is_some() { Framing::WebSocketDeflate } else { Framing::WebSocket };
            session::hand_over(stream, early_input.to_vec(), framing, memberships, &shared, permit);
        }
        Err(error) => refuse(stream, &error).await,
    }
}

/// A head over the size limit.
pub async fn refuse_oversized(stream: impl AsyncWrite + Unpin) {
    refuse(stream, &ApiError::headers_too_large()).await
}

/// Answers a refusal as a complete JSON response and closes.
pub(crate) async fn refuse(mut stream: impl AsyncWrite + Unpin, error: &ApiError) {
    if stream.write_all(&error.to_http1()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
