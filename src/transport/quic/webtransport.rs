//! Browser subscribers over WebTransport (HTTP/3, ALPN `h3`) on the QUIC
//! listener: `https://host:4433/v1/apps/{app}/wt?room=…` (rooms and resume as
//! on WebSocket).
//!
//! After the session is accepted the server opens one unidirectional stream
//! and pushes the contract's messages on it, framed as on native QUIC (§5):
//! the same encoded bytes, queues and session loop. The client may open one
//! unidirectional stream for its pings; their pongs come on the server's
//! stream. Refusals of a well-formed request (unknown app or room, no room,
//! over capacity) are an `error` frame then a close, as on native QUIC, so a
//! browser learns why: WebTransport hides HTTP statuses from scripts. Any
//! other path is answered 404.

use std::sync::Arc;

use bytes::Bytes;
use web_transport_quinn::http::StatusCode;
use web_transport_quinn::{Request, SendStream, Session};

use super::HELLO_TIMEOUT;
use super::session::{CLOSE_DEADLINE, QuicSession, refuse};
use super::streams::{FrameSink, FrameSource, Peer, READ_CHUNK};
use crate::protocol::close::ws_code;
use crate::protocol::quic::Decoder;
use crate::state::Shared;
use crate::transport::capacity::Transport;
use crate::transport::session;

/// Takes an `h3` connection through its CONNECT request.
pub(super) async fn handle(conn: quinn::Connection, shared: Arc<Shared>) {
    let peer = conn.remote_address().ip();
    // The request holds a clone; this one outlives a rejection so the 404 gets out.
    let held = conn.clone();
    let request = match tokio::time::timeout(HELLO_TIMEOUT, Request::accept(conn)).await {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => return tracing::debug!(%error, "webtransport request failed"),
        Err(_) => return Peer::close(&held, ws_code::PROTOCOL_ERROR, "no request in time"),
    };
    let Some(app) = app_of(request.url.path()).map(str::to_owned) else {
        let _ = request.reject(StatusCode::NOT_FOUND).await;
        let _ = tokio::time::timeout(CLOSE_DEADLINE, held.closed()).await;
        return Peer::close(&held, ws_code::NORMAL, "not found");
    };
    let rooms: Vec<String> =
        request.url.query_pairs().filter(|(key, _)| key == "room").map(|(_, value)| value.into_owned()).collect();
    let Ok(session) = request.ok().await else { return };
    let Ok(mut send) = session.open_uni().await else { return };
    match session::admit(&shared, Transport::WebTransport, peer, &app, rooms.iter().map(String::as_str)) {
        Ok((memberships, permit)) => {
            let deliveries = shared.metrics.webtransport_deliveries.clone();
            let recv = PingStream { session: session.clone(), recv: None };
            let decoder = Decoder::default();
            let session =
                QuicSession { peer: session, send, recv, decoder, memberships, shared, deliveries, _permit: permit };
            tokio::spawn(session.run());
        }
        Err(error) => refuse(&session, &mut send, error.code, &error.message).await,
    }
}

/// `app` of `/v1/apps/{app}/wt`.
fn app_of(path: &str) -> Option<&str> {
    let app = path.strip_prefix("/v1/apps/")?.strip_suffix("/wt")?;
    (!app.is_empty() && !app.contains('/')).then_some(app)
}

/// The client's ping stream, accepted when it first sends.
struct PingStream {
    session: Session,
    recv: Option<web_transport_quinn::RecvStream>,
}

impl FrameSource for PingStream {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, ()> {
        let recv = match &mut self.recv {
            Some(recv) => recv,
            None => self.recv.insert(self.session.accept_uni().await.map_err(|_| ())?),
        };
        match recv.read_chunk(READ_CHUNK, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(_) => Err(()),
        }
    }
}

impl FrameSink for SendStream {
    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<quinn::Written, ()> {
        SendStream::write_chunks(self, chunks).await.map_err(|_| ())
    }

    fn finish(&mut self) {
        let _ = SendStream::finish(self);
    }

    async fn stopped(&mut self) {
        let _ = SendStream::stopped(self).await;
    }
}

impl Peer for Session {
    async fn closed(&self) {
        Session::closed(self).await;
    }

    fn close(&self, code: u16, reason: &str) {
        Session::close(self, code as u32, reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_subscribe_path_names_an_app() {
        assert_eq!(app_of("/v1/apps/demo/wt"), Some("demo"));
        assert_eq!(app_of("/v1/apps//wt"), None);
        assert_eq!(app_of("/v1/apps/a/b/wt"), None);
        assert_eq!(app_of("/v1/apps/demo/ws"), None);
        assert_eq!(app_of("/"), None);
    }
}
