//! The QUIC endpoint's identity across restarts (contract §11): a secret kept
//! in the data dir from which the stateless-reset key and the connection-ID
//! key are derived, so a restarted process answers the packets of its
//! predecessor's connections with a reset their clients believe.
//!
//! Both keys matter. quinn's default connection-ID generator signs every ID
//! it issues with a key drawn at start and silently drops short-header
//! packets whose ID fails the check; a new process with a new key therefore
//! never reaches the point of sending a reset at all. And a reset is only
//! believed when its token, an HMAC of the ID under the reset key, matches
//! the one the client was given. With both derived from one kept secret, the
//! old connection's next packet (a client ping, at most seconds away) is
//! answered with a reset and the client reconnects at once.
//!
//! In a cluster the nodes adopt one secret (`cluster::secrets`), so a node
//! that receives the packets of a dead node's connection resets them too.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;

use crate::registry::keys::write_private;

/// The secret's file in the data dir (mode 0600).
pub const RESET_KEY_FILE: &str = "quic-reset-key";
/// The secret's length in bytes.
const SECRET_LEN: usize = 32;
/// The shortest gap between two resets an endpoint sends. quinn's default
/// (20 ms: 50 a second) would take minutes to reset the clients of a busy
/// node after a restart; a reset is always smaller than the packet that
/// caused it, so it cannot amplify or loop, and this bound only caps the
/// work an endpoint spends on strays.
const MIN_RESET_INTERVAL: Duration = Duration::from_micros(50);

/// The kept secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ResetSecret([u8; SECRET_LEN]);

impl std::fmt::Debug for ResetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetSecret(<redacted>)")
    }
}

impl ResetSecret {
    /// A new random secret.
    pub fn random() -> ResetSecret {
        let mut bytes = [0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut bytes);
        ResetSecret(bytes)
    }

    /// The secret in `data_dir`, made and written (0600) on a first start.
    /// An unreadable file is an error rather than a silent new identity.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<ResetSecret> {
        let path = data_dir.join(RESET_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => ResetSecret::from_text(text.trim())
                .with_context(|| format!("{} is not a QUIC reset key; delete it to make a new one", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = ResetSecret::random();
                secret.store(data_dir)?;
                Ok(secret)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the secret to `data_dir` (0600), replacing what was there.
    pub fn store(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(RESET_KEY_FILE);
        write_private(&path, self.to_text().as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Base64 (URL-safe, unpadded, as the generated admin key is written):
    /// what the file and the cluster keep.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`ResetSecret::to_text`]'s form.
    pub fn from_text(text: &str) -> anyhow::Result<ResetSecret> {
        let bytes = URL_SAFE_NO_PAD.decode(text).context("not base64")?;
        let bytes: [u8; SECRET_LEN] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| anyhow::anyhow!("expected {SECRET_LEN} bytes, found {}", bytes.len()))?;
        Ok(ResetSecret(bytes))
    }

    /// A key for one purpose, so that neither derived key reveals the other.
    fn derive(&self, label: &[u8]) -> ring::hmac::Tag {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0), label)
    }

    /// The key quinn's connection-ID generator signs and checks IDs with.
    fn connection_id_key(&self) -> u64 {
        let tag = self.derive(b"bullhorn quic connection id");
        u64::from_le_bytes(tag.as_ref()[..8].try_into().expect("a 32-byte tag"))
    }

    /// The endpoint configuration: reset key and connection-ID key from the
    /// secret, resets rate-limited only against strays.
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let reset_key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.derive(b"bullhorn quic stateless reset").as_ref());
        let mut config = quinn::EndpointConfig::new(std::sync::Arc::new(reset_key));
        let cid_key = self.connection_id_key();
        config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
        config.min_reset_interval(MIN_RESET_INTERVAL);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_made_once_kept_with_mode_0600_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let first = ResetSecret::load_or_create(dir.path()).unwrap();
        let second = ResetSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first, second, "a restart keeps the identity");
        assert_ne!(first, ResetSecret::random());
        assert_eq!(format!("{first:?}"), "ResetSecret(<redacted>)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(RESET_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn text_round_trips_and_garbage_is_refused() {
        let secret = ResetSecret::random();
        assert_eq!(ResetSecret::from_text(&secret.to_text()).unwrap(), secret);
        assert!(ResetSecret::from_text("abc").is_err(), "too short");
        assert!(ResetSecret::from_text(&"!".repeat(43)).is_err(), "not base64");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESET_KEY_FILE), "not a key\n").unwrap();
        let error = ResetSecret::load_or_create(dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains("delete it"), "{error:#}");
    }

    #[test]
    fn the_same_secret_signs_the_same_connection_ids() {
        use quinn_proto::ConnectionIdGenerator as _;
        let secret = ResetSecret::random();
        let factory =
            |secret: &ResetSecret| quinn_proto::HashedConnectionIdGenerator::from_key(secret.connection_id_key());
        let mut before = factory(&secret);
        let after = factory(&secret.clone());
        let other = factory(&ResetSecret::random());
        let cid = before.generate_cid();
        assert!(after.validate(&cid).is_ok(), "a restarted process accepts its predecessor's ids");
        assert!(other.validate(&cid).is_err(), "another secret does not");
    }
}
