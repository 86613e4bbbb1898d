//! UserSig verification (Tencent's TLSSigAPIv2), as the cloud IM's REST API
//! does it: so a backend's existing signing code keeps working unchanged.
//!
//! A UserSig is `base64(zlib(json))` with `+/=` written `*-_`. The JSON holds
//! the app (`TLS.sdkappid`), the account (`TLS.identifier`), when it was made
//! and for how long it holds (`TLS.time`, `TLS.expire`, seconds), and
//! `TLS.sig`: HMAC-SHA256, keyed by the app's secret, over those fields as
//! `name:value\n` lines. The ports that make UserSigs differ in JSON key order,
//! spacing and zlib level, so the document is parsed, never compared as text.

use base64::Engine as _;
use serde::Deserialize;

/// The longest UserSig accepted (real ones are 150 to 400 characters).
pub const MAX_USERSIG_CHARS: usize = 4096;
/// The longest document inside one, inflated.
const MAX_DOCUMENT_BYTES: usize = 4096;

/// Why a UserSig was refused, with the cloud IM's error code for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserSigError {
    #[error("UserSig expired")]
    Expired,
    #[error("UserSig could not be decoded (truncated or not a UserSig)")]
    Malformed,
    #[error("UserSig does not verify with this app's key")]
    BadSignature,
    #[error("UserSig was made for another identifier")]
    OtherIdentifier,
    #[error("UserSig was made for another SDKAppID")]
    OtherApp,
}

impl UserSigError {
    /// The ErrorCode Tencent's service answers with.
    pub fn code(self) -> u32 {
        match self {
            UserSigError::Expired => 70001,
            UserSigError::Malformed => 70003,
            UserSigError::BadSignature => 70009,
            UserSigError::OtherIdentifier => 70013,
            UserSigError::OtherApp => 70014,
        }
    }
}

/// The document inside a UserSig. Numbers may arrive as numbers or strings.
#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "TLS.identifier")]
    identifier: String,
    #[serde(rename = "TLS.sdkappid", deserialize_with = "number")]
    sdkappid: u64,
    #[serde(rename = "TLS.time", deserialize_with = "number")]
    time: u64,
    #[serde(rename = "TLS.expire", deserialize_with = "number")]
    expire: u64,
    #[serde(rename = "TLS.userbuf", default)]
    userbuf: Option<String>,
    #[serde(rename = "TLS.sig")]
    sig: String,
}

/// Checks `usersig` for `sdkappid` and `identifier` against `key` at `now`
/// (unix seconds). The signature comparison is constant-time (ring).
pub fn verify(usersig: &str, sdkappid: u64, identifier: &str, key: &[u8], now: u64) -> Result<(), UserSigError> {
    let document = decode(usersig)?;
    if document.sdkappid != sdkappid {
        return Err(UserSigError::OtherApp);
    }
    if document.identifier != identifier {
        return Err(UserSigError::OtherIdentifier);
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(document.sig.as_bytes())
        .map_err(|_| UserSigError::Malformed)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, signed_text(&document).as_bytes(), &signature).map_err(|_| UserSigError::BadSignature)?;
    // Checked after the signature, so an expired answer never confirms a forged one.
    if now > document.time.saturating_add(document.expire) {
        return Err(UserSigError::Expired);
    }
    Ok(())
}

fn decode(usersig: &str) -> Result<Document, UserSigError> {
    if usersig.is_empty() || usersig.len() > MAX_USERSIG_CHARS {
        return Err(UserSigError::Malformed);
    }
    let standard: String = usersig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            other => other,
        })
        .collect();
    // Some ports strip the padding.
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(standard.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(standard.trim_end_matches('=')))
        .map_err(|_| UserSigError::Malformed)?;
    let json = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, MAX_DOCUMENT_BYTES)
        .map_err(|_| UserSigError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| UserSigError::Malformed)
}

/// The lines the HMAC covers, in TLSSigAPIv2's order.
fn signed_text(document: &Document) -> String {
    let mut text = format!(
        "TLS.identifier:{}\nTLS.sdkappid:{}\nTLS.time:{}\nTLS.expire:{}\n",
        document.identifier, document.sdkappid, document.time, document.expire
    );
    if let Some(userbuf) = &document.userbuf {
        text.push_str(&format!("TLS.userbuf:{userbuf}\n"));
    }
    text
}

fn number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Integer(u64),
        Text(String),
    }
    match Number::deserialize(deserializer)? {
        Number::Integer(n) => Ok(n),
        Number::Text(text) => text.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Makes a UserSig the way TLSSigAPIv2 does (for tests, tools and the fuzz target).
pub fn sign(sdkappid: u64, identifier: &str, key: &[u8], time: u64, expire: u64) -> String {
    let document =
        Document { identifier: identifier.to_owned(), sdkappid, time, expire, userbuf: None, sig: String::new() };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let sig =
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, signed_text(&document).as_bytes()));
    encode(&serde_json::json!({
        "TLS.ver": "2.0",
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdkappid,
        "TLS.expire": expire,
        "TLS.time": time,
        "TLS.sig": sig,
    }))
}

/// A document as a UserSig: zlib, base64, then `+/=` as `*-_`.
fn encode(document: &serde_json::Value) -> String {
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(document.to_string().as_bytes(), 6);
    base64::engine::general_purpose::STANDARD
        .encode(compressed)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    /// Made by Tencent's Python TLSSigAPIv2 (shared/research/tencent-im.md §4): identifier "0",
    /// time 1569910200, expire 15552000.
    const PYTHON_USERSIG: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwjDB4pTsxIKCzBQlK0MTAyiAyKRWFGQWpQLFTU1NjeCiJZm5YDEzS0tDAyOYaHFmOtBM54KsUqeUwGLLqPK8UndHryCL-Lx8-1RPy7Ty1AijMk9f30hLk0x-r3CvSFulWgAPYy*9";
    const MADE: u64 = 1_569_910_200;
    const EXPIRE: u64 = 15_552_000;

    #[test]
    fn a_usersig_made_by_tencents_python_port_verifies_until_it_expires() {
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_000, "0", KEY, MADE + 10), Ok(()));
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_000, "0", KEY, MADE + EXPIRE), Ok(()));
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_000, "0", KEY, MADE + EXPIRE + 1), Err(UserSigError::Expired));
    }

    #[test]
    fn the_signed_text_matches_the_published_vector() {
        let document = decode(PYTHON_USERSIG).unwrap();
        assert_eq!(document.sig, "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY);
        let sig =
            base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, signed_text(&document).as_bytes()));
        assert_eq!(sig, document.sig);
    }

    #[test]
    fn refusals_carry_tencents_codes() {
        let now = MADE + 10;
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_001, "0", KEY, now), Err(UserSigError::OtherApp));
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_000, "1", KEY, now), Err(UserSigError::OtherIdentifier));
        assert_eq!(verify(PYTHON_USERSIG, 1_400_000_000, "0", b"another key", now), Err(UserSigError::BadSignature));
        assert_eq!(verify(&PYTHON_USERSIG[..60], 1_400_000_000, "0", KEY, now), Err(UserSigError::Malformed));
        assert_eq!(verify("", 1_400_000_000, "0", KEY, now), Err(UserSigError::Malformed));
        assert_eq!(UserSigError::Expired.code(), 70001);
    }

    #[test]
    fn a_tampered_document_does_not_verify() {
        // The Python-made document with a longer life and its signature kept.
        let mut document = serde_json::json!({
            "TLS.ver": "2.0", "TLS.identifier": "0", "TLS.sdkappid": 1_400_000_000u64,
            "TLS.expire": EXPIRE * 100, "TLS.time": MADE, "TLS.sig": "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=",
        });
        let now = MADE + EXPIRE + 10;
        assert_eq!(verify(&encode(&document), 1_400_000_000, "0", KEY, now), Err(UserSigError::BadSignature));
        document["TLS.expire"] = EXPIRE.into();
        assert_eq!(verify(&encode(&document), 1_400_000_000, "0", KEY, now), Err(UserSigError::Expired));
    }

    #[test]
    fn sign_and_verify_agree() {
        let usersig = sign(1_400_000_000, "administrator", KEY, MADE, 86_400);
        assert_eq!(verify(&usersig, 1_400_000_000, "administrator", KEY, MADE + 1), Ok(()));
    }
}
