//! Subscribers over QUIC: native apps (contract §5, ALPN `bullhorn/1`: one
//! client-opened bidirectional stream, length-prefixed JSON frames both ways)
//! and browsers (WebTransport over HTTP/3, ALPN `h3`), on one listener, with
//! the same fan-out queues as WebSocket and the QUIC framing of each broadcast.
//!
//! * [`tls`]: certificates, the development certificate and its fingerprint.
//! * [`connection`]: a native connection's hello and admission.
//! * [`webtransport`]: a browser session's CONNECT request and admission.
//! * [`session`]: one task per admitted subscriber, whichever the kind.
//! * [`reset`]: the endpoint's identity across restarts (stateless resets).
//!
//! The transport is tuned for very many mostly idle connections that receive
//! small messages and send almost nothing (see [`transport_config`]).

mod connection;
pub mod reset;
mod session;
mod streams;
pub mod tls;
pub mod webtransport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};

use super::turn::Turn;
use crate::state::Shared;
use crate::udp;

/// How long a client has to open its stream and send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport settings, and why each is what it is.
pub fn transport_config(idle_timeout: Duration) -> TransportConfig {
    let mut config = TransportConfig::default();
    // Native clients open one bidirectional stream; WebTransport clients one
    // for the CONNECT request. Allow no more.
    config.max_concurrent_bidi_streams(VarInt::from_u32(1));
    // HTTP/3 needs the client's control and two QPACK streams; WebTransport
    // clients add one for pings. Native clients open none, and what an
    // unaccepted stream can hold is bounded by the receive windows below.
    config.max_concurrent_uni_streams(VarInt::from_u32(4));
    // Clients send only a hello and pings: small receive windows bound what a
    // client can make us buffer (default 1.25 MB per stream).
    config.stream_receive_window(VarInt::from_u32(16 * 1024));
    config.receive_window(VarInt::from_u32(32 * 1024));
    // A small send window makes a slow reader visible to our own bounded queue
    // (drop, `lagged`, disconnect) instead of quinn buffering 10 MB for it.
    config.send_window(256 * 1024);
    // No datagrams in the protocol.
    config.datagram_receive_buffer_size(None);
    // Clients ping every heartbeat; a silent peer goes after the idle timeout.
    config.max_idle_timeout(Some(
        IdleTimeout::try_from(idle_timeout).unwrap_or(IdleTimeout::from(VarInt::from_u32(60_000))),
    ));
    config.keep_alive_interval(None);
    config
}

/// Binds the QUIC listener, with the reset identity `secret` (see [`reset`]).
pub fn bind(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    secret: &reset::ResetSecret,
    idle_timeout: Duration,
) -> anyhow::Result<Endpoint> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("TLS 1.3 is required for QUIC")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(idle_timeout)));
    server.migration(false);
    let (endpoint, buffers) = udp::endpoint(addr, secret.endpoint_config(), Some(server))
        .with_context(|| format!("cannot listen on {addr} (QUIC)"))?;
    tracing::info!(buffers.receive, buffers.send, "QUIC socket buffers (bytes, as the kernel reports them)");
    Ok(endpoint)
}

/// Accepts until the drain begins.
pub async fn serve(endpoint: Endpoint, shared: Arc<Shared>) {
    let draining = shared.drain.started();
    tokio::pin!(draining);
    loop {
        let incoming = tokio::select! {
            () = &mut draining => return,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        // While the handshake waits its turn, quinn holds the Initial (bounded
        // by its incoming buffer) and the client retransmits.
        let turn = Turn::take(&shared);
        let shared = shared.clone();
        tokio::spawn(async move {
            if !turn.come(&shared).await {
                return incoming.refuse();
            }
            let Some(incoming) = unless_full(incoming, &shared) else { return };
            handshake(incoming, shared).await;
        });
    }
}

/// `incoming`, unless the node is full: then it is refused (CONNECTION_REFUSED,
/// before any handshake work) and counted.
fn unless_full(incoming: quinn::Incoming, shared: &Shared) -> Option<quinn::Incoming> {
    if !shared.connections.is_full() {
        return Some(incoming);
    }
    shared.metrics.rejected_over_capacity.increment(1);
    incoming.refuse();
    None
}

/// Completes the handshake and hands the connection to its protocol.
async fn handshake(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(error) => return tracing::debug!(%error, "quic handshake failed"),
    };
    if alpn(&conn).as_deref() == Some(crate::protocol::quic::WEBTRANSPORT_ALPN) {
        webtransport::handle(conn, shared).await;
    } else {
        connection::handle(conn, shared).await;
    }
}

/// The protocol the handshake settled on.
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?.protocol
}
