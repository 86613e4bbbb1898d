//! Pusher's HTTP API request signature, as its server libraries make it: the
//! query carries `auth_key`, `auth_timestamp`, `auth_version` (`1.0`),
//! `body_md5` (hex MD5 of the body, when there is one) and `auth_signature`,
//! the hex HMAC-SHA256, keyed with the app's secret, of
//! `METHOD\nPATH\nQUERY`, where QUERY is every other parameter, keys
//! lower-cased, sorted, `key=value` joined by `&`, not escaped.
//!
//! Pure: the caller passes the clock. The signature is compared in constant
//! time (`ring::hmac::verify`); nothing about the secret reaches an error.

use md5::Digest as _;

use crate::registry::PusherIdentity;

/// How far `auth_timestamp` may be from the server's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// Why a request was not authenticated: the text is the 401's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing parameter: {0}")]
    Missing(&'static str),
    #[error("Unknown auth_key")]
    UnknownKey,
    #[error("Unsupported auth_version: 1.0 is the one")]
    Version,
    #[error("Timestamp expired: given timestamp is not within 600s of server time")]
    Timestamp,
    #[error("body_md5 does not match the body")]
    BodyMd5,
    #[error("Invalid signature: check the app's secret and the string you signed")]
    Signature,
}

/// The text that is signed.
pub fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|(key, _)| !key.eq_ignore_ascii_case("auth_signature"))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.as_str()))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(key, value)| format!("{key}={value}")).collect();
    format!("{method}\n{path}\n{}", query.join("&"))
}

/// The hex HMAC-SHA256 of `text` keyed with `secret` (what a client sends).
pub fn sign(secret: &str, text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

/// The hex MD5 of a body.
pub fn body_md5(body: &[u8]) -> String {
    hex(&md5::Md5::digest(body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a request to `app`'s HTTP API: `params` is its decoded query,
/// `now_secs` the server's clock.
pub fn verify(
    app: &PusherIdentity,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now_secs: u64,
) -> Result<(), AuthError> {
    let get = |name: &'static str| {
        params.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    };
    let key = get("auth_key").ok_or(AuthError::Missing("auth_key"))?;
    if key != app.key {
        return Err(AuthError::UnknownKey);
    }
    let timestamp = get("auth_timestamp").ok_or(AuthError::Missing("auth_timestamp"))?;
    let version = get("auth_version").ok_or(AuthError::Missing("auth_version"))?;
    let signature = get("auth_signature").ok_or(AuthError::Missing("auth_signature"))?;
    if version != "1.0" {
        return Err(AuthError::Version);
    }
    let timestamp: u64 = timestamp.parse().map_err(|_| AuthError::Timestamp)?;
    if timestamp.abs_diff(now_secs) > MAX_CLOCK_SKEW_SECS {
        return Err(AuthError::Timestamp);
    }
    if !body.is_empty() {
        let sent = get("body_md5").ok_or(AuthError::Missing("body_md5"))?;
        if !sent.eq_ignore_ascii_case(&body_md5(body)) {
            return Err(AuthError::BodyMd5);
        }
    }
    let signature = unhex(signature).ok_or(AuthError::Signature)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, app.secret.as_bytes());
    ring::hmac::verify(&key, string_to_sign(method, path, params).as_bytes(), &signature)
        .map_err(|_| AuthError::Signature)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn app() -> PusherIdentity {
        PusherIdentity { app_id: "3".into(), key: "278d425bdf160c739803".into(), secret: "7ad3773142a6692b25b8".into() }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Pusher's published example (its HTTP API reference and the gist its docs link).
    #[test]
    fn pushers_own_example_signs_the_same() {
        let query = params(&[
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1272044395"),
            ("auth_version", "1.0"),
            ("body_md5", "7b3d404f5cde4a0b9b8fb4789a0098cb"),
            ("name", "foo"),
        ]);
        let text = string_to_sign("POST", "/apps/3/channels/test_channel/events", &query);
        assert_eq!(
            text,
            "POST\n/apps/3/channels/test_channel/events\nauth_key=278d425bdf160c739803&auth_timestamp=1272044395&auth_version=1.0&body_md5=7b3d404f5cde4a0b9b8fb4789a0098cb&name=foo"
        );
        assert_eq!(sign(&app().secret, &text), "309fc4be20f04e53e011b00744642d3fe66c2c7c5686f35ed6cd2af6f202e445");
        assert_eq!(body_md5(b"asdf"), "912ec803b2ce49e4a541068d495ab570");
    }

    fn signed(method: &str, path: &str, body: &[u8], timestamp: u64) -> Vec<(String, String)> {
        let mut query = params(&[("auth_key", &app().key), ("auth_version", "1.0"), ("info", "subscription_count")]);
        query.push(("auth_timestamp".into(), timestamp.to_string()));
        if !body.is_empty() {
            query.push(("body_md5".into(), body_md5(body)));
        }
        let signature = sign(&app().secret, &string_to_sign(method, path, &query));
        query.push(("auth_signature".into(), signature));
        query
    }

    #[test]
    fn each_wrong_part_is_refused_for_its_reason() {
        let now = 1_764_633_600;
        let body = br#"{"name":"gift","channel":"gifts","data":"{}"}"#;
        let good = signed("POST", "/apps/3/events", body, now);
        assert_eq!(verify(&app(), "POST", "/apps/3/events", &good, body, now + 600), Ok(()));
        assert_eq!(verify(&app(), "POST", "/apps/3/events", &good, body, now + 601), Err(AuthError::Timestamp));
        assert_eq!(verify(&app(), "POST", "/apps/3/events", &good, b"{}", now), Err(AuthError::BodyMd5));
        assert_eq!(verify(&app(), "POST", "/apps/4/events", &good, body, now), Err(AuthError::Signature));
        assert_eq!(verify(&app(), "GET", "/apps/3/events", &good, body, now), Err(AuthError::Signature));
        let other = PusherIdentity { secret: "another".into(), ..app() };
        assert_eq!(verify(&other, "POST", "/apps/3/events", &good, body, now), Err(AuthError::Signature));
        let stranger = PusherIdentity { key: "k2".into(), ..app() };
        assert_eq!(verify(&stranger, "POST", "/apps/3/events", &good, body, now), Err(AuthError::UnknownKey));
        let unsigned: Vec<_> = good.iter().filter(|(k, _)| k != "auth_signature").cloned().collect();
        assert_eq!(
            verify(&app(), "POST", "/apps/3/events", &unsigned, body, now),
            Err(AuthError::Missing("auth_signature"))
        );
        let mut tampered = good.clone();
        tampered.iter_mut().find(|(k, _)| k == "info").unwrap().1 = "user_count".into();
        assert_eq!(verify(&app(), "POST", "/apps/3/events", &tampered, body, now), Err(AuthError::Signature));
    }

    proptest! {
        /// What a client signs verifies, in any parameter order; any other signature does not.
        #[test]
        fn signed_requests_verify_and_others_do_not(
            extra in proptest::collection::vec(("[a-z_]{1,12}", "[a-zA-Z0-9_.-]{0,12}"), 0..5),
            shuffle in any::<u64>(),
            flip in 0usize..64,
        ) {
            let now = 1_764_633_600;
            let mut query = signed("GET", "/apps/3/channels", b"", now);
            let signature = query.pop().unwrap();
            query.extend(extra.into_iter().filter(|(k, _)| !k.starts_with("auth_") && k != "body_md5"));
            let text = string_to_sign("GET", "/apps/3/channels", &query);
            let good = sign(&app().secret, &text);
            let _ = signature;
            let n = query.len();
            query.rotate_left((shuffle as usize) % n.max(1));
            let mut with = query.clone();
            with.push(("auth_signature".into(), good.clone()));
            prop_assert_eq!(verify(&app(), "GET", "/apps/3/channels", &with, b"", now), Ok(()));
            let mut bad = good.into_bytes();
            bad[flip] = if bad[flip] == b'0' { b'1' } else { b'0' };
            query.push(("auth_signature".into(), String::from_utf8(bad).unwrap()));
            prop_assert_eq!(verify(&app(), "GET", "/apps/3/channels", &query, b"", now), Err(AuthError::Signature));
        }
    }
}
