//! TLS for the QUIC listener: certificates from PEM files (reloaded on
//! SIGHUP, `crate::tls::certs`), or a self-signed
//! development certificate for `localhost` whose SHA-256 fingerprint is
//! printed and written to `<data-dir>/dev-cert.sha256`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tls::CertStore;
use crate::tls::certs::CertFiles;

/// ALPN of the native subscriber protocol (contract §5).
pub const ALPN: &[u8] = b"bullhorn/1";
/// The fingerprint file in the data dir.
pub const FINGERPRINT_FILE: &str = "dev-cert.sha256";

/// The certificate the QUIC listener serves, and the fingerprint of a
/// self-signed one.
pub struct Identity {
    pub store: Arc<CertStore>,
    /// Hex SHA-256 of the leaf certificate, for self-signed ones.
    pub dev_fingerprint: Option<String>,
}

impl Identity {
    /// Loads `files` when given (reloaded on SIGHUP); otherwise makes a
    /// self-signed certificate for `localhost`, valid 13 days (browsers accept
    /// at most 14 for pinned hashes), and writes its fingerprint file.
    pub fn load_or_generate(files: Option<&CertFiles>, data_dir: &Path) -> anyhow::Result<Identity> {
        match files {
            Some(files) => {
                let store = CertStore::from_files("viewer and QUIC", files.clone()).context("--tls-cert/--tls-key")?;
                Ok(Identity { store, dev_fingerprint: None })
            }
            None => generate(data_dir),
        }
    }

    /// The rustls configuration for QUIC: TLS 1.3, ALPN `bullhorn/1` (native)
    /// or `h3` (WebTransport), ring.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(self.store.clone());
        config.alpn_protocols = vec![ALPN.to_vec(), super::webtransport::ALPN.to_vec()];
        Ok(config)
    }
}

fn generate(data_dir: &Path) -> anyhow::Result<Identity> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(13);
    let cert = params.self_signed(&key)?;
    let der = cert.der().clone();
    let fingerprint = hex_sha256(&der);
    let path: PathBuf = data_dir.join(FINGERPRINT_FILE);
    std::fs::write(&path, format!("{fingerprint}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(Identity { store: CertStore::fixed("viewer and QUIC", vec![der], key)?, dev_fingerprint: Some(fingerprint) })
}

/// Lower-case hex of the SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
