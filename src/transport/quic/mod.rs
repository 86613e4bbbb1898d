//! The QUIC listener's setup: its certificates, its identity across
//! restarts, its transport settings, and the `SO_REUSEPORT` group of UDP
//! sockets on its port, one per shard thread. The connections themselves,
//! native apps (contract §5, ALPN `bullhorn/1`) and browsers (WebTransport
//! over HTTP/3, ALPN `h3`) alike, are served by the shards
//! ([`crate::dataplane::quic`]).
//!
//! * [`tls`]: certificates, the development certificate and its fingerprint.
//! * [`reset`]: the endpoint's identity across restarts (stateless resets).
//! * [`lean`]: the TLS session, which forgets rustls after the handshake.
//!
//! The transport is tuned for very many mostly idle connections that receive
//! small messages and send almost nothing (see [`transport_config`]).

pub mod lean;
pub mod reset;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn_proto::{AckFrequencyConfig, EndpointConfig, IdleTimeout, ServerConfig, TransportConfig, VarInt};

use crate::dataplane::quic::QuicSetup;
use crate::dataplane::quic::udp::bind_group;
use crate::state::Shared;

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
    // The shards send one datagram per transmit, in batches (`sendmmsg`).
    config.enable_segmentation_offload(false);
    // Ask clients that support it (quinn's do) for one ACK per several
    // deliveries rather than one each (docs/architecture.md, "ACKs").
    config.ack_frequency_config(Some(ack_frequency()));
    config
}

/// How often a client is asked to acknowledge (the ACK frequency extension,
/// draft-ietf-quic-ack-frequency): after more than [`ACK_ELICITING_THRESHOLD`]
/// packets, or [`MAX_ACK_DELAY`] after the first unacknowledged one.
///
/// A delivery is one small packet, and processing its ACK (a datagram read,
/// opened and matched against the sent packets, on connection state gone
/// cold) was over a third of a delivery's server CPU (docs/benchmarks.md
/// §32). Without the extension, each delivery draws its own ACK as soon as
/// the broadcasts are further apart than 25 ms. With it, at five broadcasts a
/// second a client acknowledges every fifth. The price is on a lost packet
/// that nothing follows: its probe waits for the longer delay (about 1 s more).
/// A gap that a later packet reveals is acknowledged at once (reordering
/// threshold 1, as without the extension), so its loss is found at once.
fn ack_frequency() -> AckFrequencyConfig {
    let mut config = AckFrequencyConfig::default();
    config.ack_eliciting_threshold(VarInt::from_u32(ACK_ELICITING_THRESHOLD));
    config.max_ack_delay(Some(MAX_ACK_DELAY));
    config.reordering_threshold(VarInt::from_u32(1));
    config
}

/// Unacknowledged packets a client may hold; one more and it acknowledges at once.
const ACK_ELICITING_THRESHOLD: u32 = 4;

/// The longest a client is asked to wait before acknowledging a packet.
const MAX_ACK_DELAY: Duration = Duration::from_secs(1);

/// The QUIC port, bound: one socket per shard and the endpoints' settings.
pub struct Listener {
    sockets: Vec<std::net::UdpSocket>,
    addr: SocketAddr,
    endpoint: Arc<EndpointConfig>,
    server: Arc<ServerConfig>,
}

impl Listener {
    /// Binds `shards` sockets on `addr`, with the reset identity `secret`
    /// (see [`reset`]).
    pub fn bind(
        addr: SocketAddr,
        shards: usize,
        tls: rustls::ServerConfig,
        secret: &reset::ResetSecret,
        idle_timeout: Duration,
    ) -> anyhow::Result<Listener> {
        let crypto = lean::LeanServerConfig::new(tls).context("TLS 1.3 is required for QUIC")?;
        let mut server = ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport_config(idle_timeout)));
        server.migration(false);
        // What an Initial waiting for its turn may hold buffered (quinn's
        // defaults, 10 MiB each and 100 MiB in all, are for 0-RTT data, which
        // is off): a client's retransmitted Initials fit, a flood does not.
        server.incoming_buffer_size(16 * 1024);
        server.incoming_buffer_size_total(32 << 20);
        let sockets = bind_group(addr, shards).with_context(|| format!("cannot listen on {addr} (QUIC)"))?;
        let bound = sockets[0].local_addr().context("QUIC listener address")?;
        let socket = socket2::SockRef::from(&sockets[0]);
        tracing::info!(
            receive = socket.recv_buffer_size()?,
            send = socket.send_buffer_size()?,
            sockets = sockets.len(),
            "QUIC socket buffers (bytes, as the kernel reports them)"
        );
        Ok(Listener { sockets, addr: bound, endpoint: Arc::new(secret.endpoint_config()), server: Arc::new(server) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each shard needs to serve its socket, in shard order.
    pub fn into_setups(self, shared: &Arc<Shared>) -> Vec<QuicSetup> {
        let Listener { sockets, endpoint, server, .. } = self;
        sockets
            .into_iter()
            .map(|socket| QuicSetup {
                socket,
                endpoint: endpoint.clone(),
                server: server.clone(),
                shared: shared.clone(),
            })
            .collect()
    }
}
