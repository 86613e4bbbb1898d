//! TLS for the QUIC listener: certificates from PEM files (reloaded on
//! SIGHUP, `crate::tls::certs`), or a self-signed
//! development certificate for `localhost` whose SHA-256 fingerprint is
//! printed and written to `<data-dir>/dev-cert.sha256`. The development
//! certificate is kept in the data dir and served again after a restart
//! until two days before it expires, so pinned hashes stay valid.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::protocol::quic;
use crate::registry::keys::write_private;
use crate::tls::CertStore;
use crate::tls::certs::CertFiles;

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
    /// Loads `files` when given (reloaded on SIGHUP); otherwise serves the
    /// kept self-signed certificate for `localhost`, or makes one valid 13
    /// days (browsers accept at most 14 for pinned hashes), and writes its
    /// fingerprint file.
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
        config.alpn_protocols = vec![quic::ALPN.to_vec(), quic::WEBTRANSPORT_ALPN.to_vec()];
        Ok(config)
    }
}

/// The development certificate and its key in the data dir (mode 0600), so a
/// restart serves the same one: pages and apps that pinned its hash reconnect
/// to the restarted node instead of failing the handshake.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// How long a development certificate is made valid for: browsers accept at
/// most 14 days for a pinned hash.
const DEV_CERT_DAYS: i64 = 13;
/// A kept development certificate with less left than this is replaced.
const DEV_CERT_RENEW_BEFORE: time::Duration = time::Duration::days(2);

fn generate(data_dir: &Path) -> anyhow::Result<Identity> {
    let path: PathBuf = data_dir.join(DEV_CERT_FILE);
    let (der, key) = match kept_dev_cert(&path) {
        Some(kept) => kept,
        None => new_dev_cert(&path)?,
    };
    let fingerprint = quic::certificate_fingerprint(&der);
    let path: PathBuf = data_dir.join(FINGERPRINT_FILE);
    std::fs::write(&path, format!("{fingerprint}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Identity { store: CertStore::fixed("viewer and QUIC", vec![der], key)?, dev_fingerprint: Some(fingerprint) })
}

/// The development certificate kept at `path`, unless it is missing,
/// unreadable or close to its end (then a new one is made).
fn kept_dev_cert(path: &Path) -> Option<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let expires: i64 = text.lines().next()?.strip_prefix("expires: ")?.trim().parse().ok()?;
    let left = time::OffsetDateTime::from_unix_timestamp(expires).ok()? - time::OffsetDateTime::now_utc();
    if left < DEV_CERT_RENEW_BEFORE {
        return None;
    }
    let der = CertificateDer::from_pem_slice(text.as_bytes()).ok()?;
    let key = PrivateKeyDer::from_pem_slice(text.as_bytes()).ok()?;
    Some((der, key))
}

/// A new self-signed certificate for `localhost`, kept at `path` with its
/// expiry on the first line (text before a PEM block is ignored by parsers).
fn new_dev_cert(path: &Path) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(DEV_CERT_DAYS);
    let cert = params.self_signed(&key)?;
    let kept = format!("expires: {}\n{}{}", params.not_after.unix_timestamp(), cert.pem(), key.serialize_pem());
    write_private(path, kept.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_certificate_is_kept_across_restarts_and_renewed_near_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_generate(None, dir.path()).unwrap().dev_fingerprint.unwrap();
        let again = Identity::load_or_generate(None, dir.path()).unwrap().dev_fingerprint.unwrap();
        assert_eq!(first, again, "a restart serves the same certificate");
        let file = std::fs::read_to_string(dir.path().join(FINGERPRINT_FILE)).unwrap();
        assert_eq!(file.trim(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(DEV_CERT_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the file holds the private key");
        }
        // One day left: replaced.
        let path = dir.path().join(DEV_CERT_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let soon = (time::OffsetDateTime::now_utc() + time::Duration::days(1)).unix_timestamp();
        let rest = text.split_once('\n').unwrap().1;
        std::fs::write(&path, format!("expires: {soon}\n{rest}")).unwrap();
        let renewed = Identity::load_or_generate(None, dir.path()).unwrap().dev_fingerprint.unwrap();
        assert_ne!(renewed, first);
        // Garbage: replaced, not fatal.
        std::fs::write(&path, "nonsense").unwrap();
        assert!(Identity::load_or_generate(None, dir.path()).unwrap().dev_fingerprint.is_some());
    }
}
