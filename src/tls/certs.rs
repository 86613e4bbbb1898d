//! A listener's certificate: loaded from PEM files, reloaded on SIGHUP.
//!
//! The store is the rustls certificate resolver, so every handshake takes the
//! certificate current at that moment. A reload that fails (a file missing or
//! half-written, a key that does not match) keeps the certificate in use and
//! says why: an operator's mistake must not take the listener down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where a listener's certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct CertStore {
    /// Which listeners use it, for logs.
    name: &'static str,
    /// `None` for a certificate made at start: nothing to reload.
    files: Option<CertFiles>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads `files`; fails when either cannot be read or they do not match.
    pub fn from_files(name: &'static str, files: CertFiles) -> anyhow::Result<Arc<CertStore>> {
        let key = load(&files)?;
        Ok(Arc::new(CertStore { name, files: Some(files), current: RwLock::new(Arc::new(key)) }))
    }

    /// A certificate held in memory (the development certificate).
    pub fn fixed(
        name: &'static str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<Arc<CertStore>> {
        let key = certified(chain, key)?;
        Ok(Arc::new(CertStore { name, files: None, current: RwLock::new(Arc::new(key)) }))
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reads the files again and serves what they hold from the next
    /// handshake on. `Ok(false)`: nothing to reload. On error the current
    /// certificate stays.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Some(files) = &self.files else { return Ok(false) };
        let key = load(files)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
        Ok(true)
    }

    /// The certificate chain served now.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("name", &self.name).field("files", &self.files).finish_non_exhaustive()
    }
}

fn load(files: &CertFiles) -> anyhow::Result<CertifiedKey> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{}: no PEM private key could be read", files.key.display()))?;
    certified(chain, key).with_context(|| format!("{} and {}", files.cert.display(), files.key.display()))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate in it", path.display());
    Ok(chain)
}

fn certified(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<CertifiedKey> {
    CertifiedKey::from_der(chain, key, &provider()).context("the certificate and the key do not match")
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> CertFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let files = CertFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn reload_swaps_the_certificate_and_a_bad_reload_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "a");
        let second = write_pair(dir.path(), "b");
        let store = CertStore::from_files("viewer", first.clone()).unwrap();
        let served = store.chain();

        std::fs::copy(&second.cert, &first.cert).unwrap();
        std::fs::copy(&second.key, &first.key).unwrap();
        assert!(store.reload().unwrap());
        assert_ne!(store.chain(), served, "the new certificate is served");
        let reloaded = store.chain();

        // A certificate with another certificate's key: refused, the current one stays.
        let third = write_pair(dir.path(), "c");
        std::fs::copy(&third.cert, &first.cert).unwrap();
        let error = store.reload().unwrap_err();
        assert!(format!("{error:#}").contains("do not match"), "{error:#}");
        std::fs::write(&first.key, "not pem").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.chain(), reloaded);
    }

    #[test]
    fn a_fixed_certificate_has_nothing_to_reload() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let store = CertStore::fixed("quic", vec![cert.der().clone()], key).unwrap();
        assert!(!store.reload().unwrap());
    }
}
