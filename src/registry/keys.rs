//! Admin keys: compared in constant time, never printed.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

/// The file holding the generated demo key, inside the data dir.
pub const DEMO_KEY_FILE: &str = "demo-admin-key";
/// The variable that sets the demo key.
pub const DEMO_KEY_ENV: &str = "BULLHORN_DEMO_ADMIN_KEY";

/// An app's admin key. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct AdminKey {
    digest: [u8; 20],
}

impl AdminKey {
    pub fn new(key: &str) -> AdminKey {
        AdminKey { digest: sha1_smol::Sha1::from(key).digest().bytes() }
    }

    /// Compares digests in constant time, so neither the key's bytes nor its
    /// length leak through timing.
    pub fn verify(&self, presented: &[u8]) -> bool {
        let digest = sha1_smol::Sha1::from(presented).digest().bytes();
        self.digest.ct_eq(&digest).into()
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

/// Where the demo app's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    /// Generated on a first start and kept in this file.
    Generated(PathBuf),
}

/// Resolves the demo key: the environment variable, else the key file, else
/// a new random key written to the key file with mode 0600.
pub fn demo_key(data_dir: &Path, from_env: Option<String>) -> std::io::Result<(String, KeySource)> {
    if let Some(key) = from_env.filter(|k| !k.is_empty()) {
        return Ok((key, KeySource::Environment));
    }
    let path = data_dir.join(DEMO_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => {
            return Ok((key.trim().to_owned(), KeySource::Generated(path)));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, key.as_bytes())?;
    Ok((key, KeySource::Generated(path)))
}

/// Writes `contents` and a newline to `path`, readable by the owner only (0600), synced.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_exact_key() {
        let key = AdminKey::new("secret-key-123");
        assert!(key.verify(b"secret-key-123"));
        assert!(!key.verify(b"secret-key-12"));
        assert!(!key.verify(b""));
        assert_eq!(format!("{key:?}"), "AdminKey(<redacted>)");
    }

    #[test]
    fn demo_key_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = demo_key(dir.path(), None).unwrap();
        assert_eq!(source, KeySource::Generated(dir.path().join(DEMO_KEY_FILE)));
        let (second, _) = demo_key(dir.path(), None).unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(DEMO_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (env, source) = demo_key(dir.path(), Some("from-env-key".into())).unwrap();
        assert_eq!((env.as_str(), source), ("from-env-key", KeySource::Environment));
    }
}
