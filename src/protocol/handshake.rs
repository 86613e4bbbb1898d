//! The RFC 6455 opening handshake as the subscribe endpoint speaks it
//! (contract §4): recognising `GET /v1/apps/{app}/ws[?…]` (and the SSE
//! endpoint, `/sse`, which the accept loop serves beside it) in a request head,
//! the headers an upgrade must carry, the `Sec-WebSocket-Accept` key and the
//! 101 answer. Pure: bytes and string slices in, typed outcomes out, no HTTP
//! framework types, so the raw-socket fast path and the HTTP router's route
//! apply the same rules and the parser can be fuzzed on its own.

use base64::Engine as _;

/// Headers parsed from one request head.
const MAX_HEADERS: usize = 32;

/// Which subscribe endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/apps/{app}/ws`: a WebSocket upgrade.
    WebSocket,
    /// `/v1/apps/{app}/sse`: Server-Sent Events (`protocol::sse`).
    Sse,
    /// `/app/{key}`: a Pusher Channels client's WebSocket (`protocol::pusher`);
    /// `app` is then the Pusher key.
    Pusher,
}

/// A request for a subscribe endpoint, borrowed from its head (nothing is
/// copied per header).
#[derive(Debug)]
pub struct SubscribeRequest<'a> {
    pub endpoint: Endpoint,
    pub app: &'a str,
    pub query: Option<&'a str>,
    /// Every header as sent: name (any case) and value.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> SubscribeRequest<'a> {
    /// The headers as [`check`] takes them.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone + '_ {
        self.headers.iter().copied()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// `Some` when `head` is `GET /v1/apps/{app}/ws[?…]`, `…/sse[?…]` or Pusher's
/// `/app/{key}[?…]`; anything else (other paths, other methods, heads
/// httparse rejects) is for the HTTP router.
pub fn parse(head: &[u8]) -> Option<SubscribeRequest<'_>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    if !request.parse(head).ok()?.is_complete() || request.method? != "GET" {
        return None;
    }
    let target = request.path?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let (endpoint, app) = if let Some(app) = super::subscribe_app(path, "ws") {
        (Endpoint::WebSocket, app)
    } else if let Some(app) = super::subscribe_app(path, "sse") {
        (Endpoint::Sse, app)
    } else {
        let key = path.strip_prefix("/app/").filter(|key| !key.is_empty() && !key.contains('/'))?;
        (Endpoint::Pusher, key)
    };
    let headers = request.headers.iter().map(|h| (h.name, h.value)).collect();
    Some(SubscribeRequest { endpoint, app, query, headers })
}

/// Why a request cannot be upgraded; the text is the `invalid_request` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("this endpoint speaks WebSocket: send Upgrade: websocket")]
    NotAnUpgrade,
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    Key,
}

/// Checks what an upgrade must carry (`headers`: name, any case, and value,
/// as sent) and returns the `Sec-WebSocket-Accept` value for the 101.
pub fn check<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone) -> Result<String, HandshakeError> {
    let values =
        |name: &'static str| headers.clone().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let has_token = |name: &'static str, token: &str| {
        values(name)
            .any(|v| std::str::from_utf8(v).is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(HandshakeError::NotAnUpgrade);
    }
    if values("sec-websocket-version").next() != Some(b"13".as_slice()) {
        return Err(HandshakeError::Version);
    }
    let key = values("sec-websocket-key").next().ok_or(HandshakeError::Key)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| HandshakeError::Key)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::Key);
    }
    Ok(accept_key(key))
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + RFC 6455 GUID)).
pub fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The 101 answer's head; with `deflate` (an answer of `deflate::answer_offer`), it accepts `permessage-deflate`.
pub fn switching_protocols(accept: &str, deflate: Option<&str>) -> Vec<u8> {
    switching_protocols_with(accept, "sec-websocket-extensions", deflate)
}

/// The 101 head, with one more header when `value` is given.
fn switching_protocols_with(accept: &str, header: &str, value: Option<&str>) -> Vec<u8> {
    let extra = value.map_or_else(String::new, |value| format!("{header}: {value}\r\n"));
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The 101 answer to a Pusher client, echoing the `pusher-channels-protocol-N`
/// subprotocol it asked for, if it asked (Swift 9+ does; a client that
/// offers subprotocols and gets none back fails the handshake).
pub fn switching_protocols_for_pusher(accept: &str, subprotocol: Option<&str>) -> Vec<u8> {
    switching_protocols_with(accept, "sec-websocket-protocol", subprotocol)
}

/// The Pusher subprotocol a client offers (`Sec-WebSocket-Protocol`), the first one named.
pub fn pusher_subprotocol<'a>(mut headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Option<&'a str> {
    headers
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())?
        .split(',')
        .map(str::trim)
        .find(|p| p.starts_with("pusher-channels-protocol-") && p[25..].bytes().all(|b| b.is_ascii_digit()))
}

/// How to answer the client's `permessage-deflate` offer, if this server accepts one.
pub fn offers_deflate<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Option<&'static str> {
    super::deflate::answer_offer(
        headers.filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions")).map(|(_, value)| value),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a str, &'a [u8])> + Clone {
        headers.iter().map(|(n, v)| (*n, v.as_bytes()))
    }

    const GOOD: [(&str, &str); 4] = [
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(check(pairs(&GOOD)).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn each_missing_or_wrong_header_is_named() {
        let without = |skip: &str| GOOD.iter().filter(|(n, _)| *n != skip).copied().collect::<Vec<_>>();
        assert_eq!(check(pairs(&without("Upgrade"))), Err(HandshakeError::NotAnUpgrade));
        assert_eq!(check(pairs(&without("Connection"))), Err(HandshakeError::NotAnUpgrade));
        assert_eq!(check(pairs(&without("Sec-WebSocket-Version"))), Err(HandshakeError::Version));
        assert_eq!(check(pairs(&without("Sec-WebSocket-Key"))), Err(HandshakeError::Key));
        let mut short = GOOD;
        short[3] = ("sec-websocket-key", "c2hvcnQ=");
        assert_eq!(check(pairs(&short)), Err(HandshakeError::Key));
        let mut old = GOOD;
        old[2] = ("SEC-WEBSOCKET-VERSION", "8");
        assert_eq!(check(pairs(&old)), Err(HandshakeError::Version));
    }

    #[test]
    fn a_pusher_subprotocol_is_echoed() {
        let offered = [("Sec-WebSocket-Protocol", "chat, pusher-channels-protocol-7")];
        assert_eq!(pusher_subprotocol(pairs(&offered)), Some("pusher-channels-protocol-7"));
        assert_eq!(pusher_subprotocol(pairs(&[("sec-websocket-protocol", "pusher-channels-protocol-7;x")])), None);
        assert_eq!(pusher_subprotocol(pairs(&GOOD)), None);
        let answer =
            String::from_utf8(switching_protocols_for_pusher("k", Some("pusher-channels-protocol-7"))).unwrap();
        assert!(
            answer.contains("sec-websocket-protocol: pusher-channels-protocol-7\r\n") && answer.ends_with("\r\n\r\n")
        );
    }

    #[test]
    fn recognises_only_the_subscribe_endpoint() {
        let ws =
            parse(b"GET /v1/apps/demo/ws?room=a&room=b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_eq!((ws.endpoint, ws.app), (Endpoint::WebSocket, "demo"));
        assert_eq!(ws.query, Some("room=a&room=b"));
        let sse = parse(b"GET /v1/apps/demo/sse?room=a HTTP/1.1\r\nLast-Event-ID: a@3\r\n\r\n").unwrap();
        assert_eq!((sse.endpoint, sse.app, sse.header("last-event-id")), (Endpoint::Sse, "demo", Some(&b"a@3"[..])));
        let pusher = parse(b"GET /app/a1b2c3?protocol=7&client=js&version=8.4.0 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            (pusher.endpoint, pusher.app, pusher.query),
            (Endpoint::Pusher, "a1b2c3", Some("protocol=7&client=js&version=8.4.0"))
        );
        let upgrade = ws.header_pairs().find(|(name, _)| name.eq_ignore_ascii_case("upgrade"));
        assert_eq!(upgrade, Some(("Upgrade", &b"websocket"[..])));
        for other in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /sdk/bullhorn.js HTTP/1.1\r\n\r\n",
            b"POST /v1/apps/demo/ws HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/ws/x HTTP/1.1\r\n\r\n",
            b"GET /v1/apps/demo/ssews HTTP/1.1\r\n\r\n",
            b"GET /v1/apps//ws HTTP/1.1\r\n\r\n",
            b"GET /app/ HTTP/1.1\r\n\r\n",
            b"GET /app/key/x HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
