//! A TLS session for quinn-proto that forgets rustls once the handshake is
//! over: what an idle subscriber's connection keeps of TLS is the traffic
//! secrets for the next key update (under 200 B), not rustls's whole
//! `ServerConnection` with its buffers and key schedule (~3 KB measured,
//! docs/benchmarks.md).
//!
//! It follows quinn-proto's own rustls session (`quinn_proto::crypto::
//! rustls`, 0.11) call for call while the handshake runs; the difference is
//! only what happens after. The rustls connection is dropped when it is no
//! longer handshaking and has nothing left to write (the session tickets go
//! out before). quinn-proto asks a server's session for nothing after that
//! but the next 1-RTT keys (kept as rustls's `Secrets`) and, were the peer
//! to send post-handshake TLS messages (a client sends none in QUIC), a read:
//! refused as a protocol violation.
//!
//! 0-RTT is off (the server config's `max_early_data_size` stays 0), so
//! there are no early keys to keep either.
//!
//! The keys of the next key phase, which quinn-proto asks for as soon as the
//! handshake ends and keeps for the connection's life (two AEAD key schedules,
//! ~1.1 KB), are lazy: a copy of the secrets, derived on first use. Clients do
//! not update keys in a subscriber's lifetime (the limit is 2^23 packets), so
//! nearly every connection never derives them. A packet claiming the next phase
//! costs one derivation, once per connection (then the keys are kept): the
//! timing difference RFC 9001 §9.5 warns of is between a connection's first
//! such packet and the rest, which tells an attacker nothing about the keys.

use std::any::Any;
use std::io;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use quinn_proto::crypto::rustls::{HandshakeData, QuicServerConfig};
use quinn_proto::crypto::{self, CryptoError, ExportKeyingMaterialError, KeyPair, Keys, UnsupportedVersion};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError, TransportErrorCode};
use rustls::quic::{KeyChange, PacketKeySet, Secrets, ServerConnection, Suite, Version};

/// The server side: rustls's config, and quinn-proto's for the Initial and
/// Retry work that needs no session.
pub struct LeanServerConfig {
    tls: Arc<rustls::ServerConfig>,
    quic: QuicServerConfig,
    initial: Suite,
}

impl LeanServerConfig {
    pub fn new(tls: rustls::ServerConfig) -> anyhow::Result<LeanServerConfig> {
        let tls = Arc::new(tls);
        let initial = initial_suite(&tls).ok_or_else(|| anyhow::anyhow!("TLS 1.3 with AES-128-GCM is required"))?;
        let quic = QuicServerConfig::try_from(tls.clone())?;
        Ok(LeanServerConfig { tls, quic, initial })
    }
}

/// TLS_AES_128_GCM_SHA256, which QUIC's Initial packets use.
fn initial_suite(tls: &rustls::ServerConfig) -> Option<Suite> {
    tls.crypto_provider().cipher_suites.iter().find_map(|suite| match (suite.suite(), suite.tls13()) {
        (rustls::CipherSuite::TLS13_AES_128_GCM_SHA256, Some(tls13)) => tls13.quic_suite(),
        _ => None,
    })
}

fn version(version: u32) -> Result<Version, UnsupportedVersion> {
    match version {
        0xff00_001d..=0xff00_0020 => Ok(Version::V1Draft),
        0x0000_0001 | 0xff00_0021..=0xff00_0022 => Ok(Version::V1),
        _ => Err(UnsupportedVersion),
    }
}

impl crypto::ServerConfig for LeanServerConfig {
    fn initial_keys(&self, version: u32, dst_cid: &ConnectionId) -> Result<Keys, UnsupportedVersion> {
        self.quic.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.quic.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(self: Arc<Self>, version_number: u32, params: &TransportParameters) -> Box<dyn crypto::Session> {
        // quinn-proto calls this only for a version `initial_keys` accepted.
        let version = version(version_number).expect("a version initial_keys accepted");
        let mut encoded = Vec::new();
        params.write(&mut encoded);
        Box::new(LeanSession::new(&self, version, encoded))
    }
}

pub struct LeanSession {
    version: Version,
    initial: Suite,
    /// rustls, until the handshake is over and written.
    tls: Option<Box<ServerConnection>>,
    /// The negotiated protocol, kept past rustls.
    alpn: Option<Vec<u8>>,
    got_handshake_data: bool,
    /// The secrets the next 1-RTT keys derive from.
    next: Option<Secrets>,
}

impl LeanSession {
    /// A session of `config` sending our transport parameters `params` (encoded).
    fn new(config: &LeanServerConfig, version: Version, params: Vec<u8>) -> LeanSession {
        let tls = ServerConnection::new(config.tls.clone(), version, params).expect("a QUIC-capable TLS 1.3 config");
        LeanSession {
            version,
            initial: config.initial,
            tls: Some(Box::new(tls)),
            alpn: None,
            got_handshake_data: false,
            next: None,
        }
    }

    /// Drops rustls once it has nothing more to do.
    fn forget_tls_when_done(&mut self) {
        if self.tls.as_ref().is_some_and(|tls| !tls.is_handshaking() && !tls.wants_write()) {
            self.tls = None;
        }
    }
}

fn key_pair<T>(local: T, remote: T) -> KeyPair<T> {
    KeyPair { local, remote }
}

impl crypto::Session for LeanSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        let side = match side {
            Side::Client => rustls::Side::Client,
            Side::Server => rustls::Side::Server,
        };
        let keys = self.initial.keys(dst_cid, side, self.version);
        Keys {
            header: key_pair(Box::new(keys.local.header), Box::new(keys.remote.header)),
            packet: key_pair(Box::new(keys.local.packet), Box::new(keys.remote.packet)),
        }
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.got_handshake_data {
            return None;
        }
        let server_name = self.tls.as_ref().and_then(|tls| tls.server_name()).map(str::to_owned);
        Some(Box::new(HandshakeData { protocol: self.alpn.clone(), server_name }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        None // no client certificates
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn crypto::PacketKey>)> {
        None // 0-RTT is off
    }

    fn early_data_accepted(&self) -> Option<bool> {
        None // a server's question only
    }

    fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        let Some(tls) = self.tls.as_mut() else {
            return Err(TransportError {
                code: TransportErrorCode::PROTOCOL_VIOLATION,
                frame: None,
                reason: "TLS message after the handshake".into(),
            });
        };
        tls.read_hs(buf).map_err(|error| match tls.alert() {
            Some(alert) => TransportError {
                code: TransportErrorCode::crypto(alert.into()),
                frame: None,
                reason: error.to_string(),
            },
            None => TransportError {
                code: TransportErrorCode::PROTOCOL_VIOLATION,
                frame: None,
                reason: format!("TLS error: {error}"),
            },
        })?;
        if !self.got_handshake_data
            && (tls.alpn_protocol().is_some() || tls.server_name().is_some() || !tls.is_handshaking())
        {
            self.alpn = tls.alpn_protocol().map(<[u8]>::to_vec);
            self.got_handshake_data = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        let Some(encoded) = self.tls.as_ref().and_then(|tls| tls.quic_transport_parameters()) else { return Ok(None) };
        Ok(Some(TransportParameters::read(Side::Server, &mut io::Cursor::new(encoded))?))
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let tls = self.tls.as_mut()?;
        let change = tls.write_hs(buf);
        if change.is_none() && buf.is_empty() {
            self.forget_tls_when_done();
        }
        let keys = match change? {
            KeyChange::Handshake { keys } => keys,
            KeyChange::OneRtt { keys, next } => {
                self.next = Some(next);
                keys
            }
        };
        Some(Keys {
            header: key_pair(Box::new(keys.local.header), Box::new(keys.remote.header)),
            packet: key_pair(Box::new(keys.local.packet), Box::new(keys.remote.packet)),
        })
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn crypto::PacketKey>>> {
        let secrets = self.next.as_mut()?;
        let phase = Arc::new(LazyPhase { secrets: secrets.clone(), keys: OnceLock::new() });
        // Advances the secrets to the phase after this one; these keys are
        // derived again from the copy if the phase is ever used.
        drop(secrets.next_packet_keys());
        Some(key_pair(
            Box::new(LazyKey { phase: phase.clone(), local: true }),
            Box::new(LazyKey { phase, local: false }),
        ))
    }

    fn is_valid_retry(&self, _orig_dst_cid: &ConnectionId, _header: &[u8], _payload: &[u8]) -> bool {
        false // a client's check: a server never receives a Retry
    }

    fn export_keying_material(
        &self,
        _output: &mut [u8],
        _label: &[u8],
        _context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        // Nothing in bullhorn's protocols exports keys (rustls's server
        // connection under QUIC offers no exporter either).
        Err(ExportKeyingMaterialError)
    }
}

/// A key phase's secrets, and its keys once first used.
struct LazyPhase {
    secrets: Secrets,
    keys: OnceLock<PacketKeySet>,
}

/// One direction's key of a [`LazyPhase`].
struct LazyKey {
    phase: Arc<LazyPhase>,
    local: bool,
}

impl LazyKey {
    // quinn-proto implements its `PacketKey` for the box, not for the trait object.
    #[allow(clippy::borrowed_box)]
    fn key(&self) -> &Box<dyn rustls::quic::PacketKey> {
        let keys = self.phase.keys.get_or_init(|| self.phase.secrets.clone().next_packet_keys());
        if self.local { &keys.local } else { &keys.remote }
    }
}

impl crypto::PacketKey for LazyKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        self.key().encrypt(packet, buf, header_len);
    }

    fn decrypt(&self, packet: u64, header: &[u8], payload: &mut BytesMut) -> Result<(), CryptoError> {
        self.key().decrypt(packet, header, payload)
    }

    fn tag_len(&self) -> usize {
        crypto::PacketKey::tag_len(self.key())
    }

    fn confidentiality_limit(&self) -> u64 {
        crypto::PacketKey::confidentiality_limit(self.key())
    }

    fn integrity_limit(&self) -> u64 {
        crypto::PacketKey::integrity_limit(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::crypto::Session as _;
    use rustls::quic::{Connection, KeyChange};

    /// A rustls client and our server session, handshaking in memory until
    /// both have 1-RTT keys; returns the client's next-phase secrets and the session.
    fn handshake() -> (Secrets, LeanSession) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        server_tls.alpn_protocols = vec![b"bullhorn/1".to_vec()];
        let config = LeanServerConfig::new(server_tls).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![b"bullhorn/1".to_vec()];
        // Transport parameters are opaque to TLS: any bytes do here.
        let encoded = vec![0u8; 4];
        let mut client = Connection::Client(
            rustls::quic::ClientConnection::new(
                Arc::new(client_tls),
                Version::V1,
                "localhost".try_into().unwrap(),
                encoded,
            )
            .unwrap(),
        );
        let mut session = LeanSession::new(&config, Version::V1, vec![0u8; 4]);
        // Each write is one key epoch's messages: the peer reads them apart.
        let mut client_next = None;
        for _ in 0..8 {
            loop {
                let mut chunk = Vec::new();
                let change = client.write_hs(&mut chunk);
                let changed = change.is_some();
                if let Some(KeyChange::OneRtt { next, .. }) = change {
                    client_next = Some(next);
                }
                if !chunk.is_empty() {
                    session.read_handshake(&chunk).unwrap();
                }
                if !changed && chunk.is_empty() {
                    break;
                }
            }
            loop {
                let mut chunk = Vec::new();
                let keys = session.write_handshake(&mut chunk);
                if !chunk.is_empty() {
                    client.read_hs(&chunk).unwrap();
                }
                if keys.is_none() && chunk.is_empty() {
                    break;
                }
            }
        }
        assert!(!client.is_handshaking() && !session.is_handshaking());
        (client_next.expect("client 1-RTT keys"), session)
    }

    #[test]
    fn rustls_is_forgotten_after_the_handshake_and_lazy_keys_match_the_peers() {
        let (mut client_next, mut session) = handshake();
        assert!(session.tls.is_none(), "rustls dropped once done");
        let data = session.handshake_data().unwrap().downcast::<HandshakeData>().unwrap();
        assert_eq!(data.protocol.as_deref(), Some(&b"bullhorn/1"[..]), "the ALPN outlives rustls");
        assert!(session.read_handshake(b"late").is_err(), "post-handshake TLS is refused");
        // Two key phases ahead: what the client seals, our lazy keys open.
        for _phase in 0..2 {
            let client_keys = client_next.next_packet_keys();
            let ours = session.next_1rtt_keys().unwrap();
            let header = [0x40u8, 1, 2, 3];
            let mut packet = header.to_vec();
            packet.extend_from_slice(b"hello next phase");
            packet.extend_from_slice(&[0; 16]);
            crypto::PacketKey::encrypt(&client_keys.local, 7, &mut packet, header.len());
            let mut payload = BytesMut::from(&packet[header.len()..]);
            ours.remote.decrypt(7, &header, &mut payload).unwrap();
            assert_eq!(&payload[..], b"hello next phase");
            assert_eq!(ours.local.tag_len(), 16);
        }
    }
}
