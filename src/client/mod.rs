//! `bullhorn::client`: subscribe to bullhorn rooms from Rust, over WebSocket,
//! QUIC or WebTransport, with one API (feature `client`).
//!
//! [`Subscription`] connects, says hello, and yields [`Event`]s: the
//! contract's messages, gaps it detected, and its own reconnects. When the
//! connection ends it reconnects by itself with full-jitter exponential
//! backoff, or after the server's `reconnect_after_ms` when the server said
//! one, and resumes every room after the last seq it saw (`room@seq`), so
//! whatever it missed is either replayed or announced.
//!
//! ```no_run
//! # async fn run() -> Result<(), bullhorn::client::ClientError> {
//! use bullhorn::client::{Event, Subscription, Target};
//! let target = Target::WebSocket { url: "ws://127.0.0.1:8080".into() };
//! let mut sub = Subscription::new(target, "demo", &["gifts"]);
//! while let Some(event) = sub.next().await {
//!     if let Event::Message(message) = event {
//!         println!("{message:?}");
//!     }
//! }
//! # Ok(()) }
//! ```

mod frames;
mod quic;
pub mod tls;
mod webtransport;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng as _;
use serde::Deserialize;

pub use quic::QuicStream;
pub use webtransport::{WtStream, subscribe_url as webtransport_url};
pub use ws::WsStream;

/// The largest server frame a client accepts: a 64 KiB `data` and its envelope, with room to spare.
pub const MAX_SERVER_FRAME: usize = 1 << 20;

/// A message from the server (contract §3 and §5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Welcome {
        rooms: Vec<RoomSeq>,
        heartbeat_ms: u64,
    },
    Broadcast {
        room: String,
        seq: u64,
        ts: u64,
        data: serde_json::Value,
    },
    Lagged {
        room: String,
        missed: u64,
        reason: String,
    },
    /// The room's pinned message (contract §9), right after `welcome`; its
    /// seq is the pinned broadcast's and says nothing about the stream's gaps.
    Sticky {
        room: String,
        seq: u64,
        ts: u64,
        data: serde_json::Value,
    },
    /// The room's online count (contract §9); latest wins, no seq.
    Occupancy {
        room: String,
        online: u64,
    },
    Pong,
    Closing {
        reason: String,
        #[serde(default)]
        reconnect_after_ms: Option<u64>,
    },
    Error {
        code: String,
        message: String,
    },
}

/// A room and its seq, as in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RoomSeq {
    pub room: String,
    pub seq: u64,
}

impl Message {
    /// Parses one server message.
    pub fn parse(json: &[u8]) -> Result<Message, ClientError> {
        serde_json::from_slice(json).map_err(|e| ClientError::Protocol(format!("unexpected message: {e}")))
    }
}

/// Why a connection attempt or a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("QUIC connection failed: {0}")]
    Quic(#[from] quinn::ConnectionError),
    #[error("i/o: {0}")]
    Io(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Where to subscribe.
#[derive(Debug, Clone)]
pub enum Target {
    /// The viewer listener, `ws://host:port`.
    WebSocket { url: String },
    /// The QUIC listener; `fingerprint` pins the server's certificate
    /// (`dev-cert.sha256`), `server_name` is its TLS name (`localhost` for
    /// the development certificate).
    Quic { addr: SocketAddr, server_name: String, fingerprint: String },
    /// The QUIC listener, as a browser reaches it (WebTransport over HTTP/3);
    /// the same fields as [`Target::Quic`].
    WebTransport { addr: SocketAddr, server_name: String, fingerprint: String },
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message from the server.
    Message(Message),
    /// Broadcasts of `room` the client saw skipped without a `lagged` for them.
    Gap { room: String, missed: u64 },
    /// The connection ended; the next attempt starts after `after`.
    Reconnecting { after: Duration },
}

enum Stream {
    WebSocket(WsStream),
    Quic(QuicStream),
    WebTransport(Box<WtStream>),
}

impl Stream {
    async fn next(&mut self) -> Result<Option<Message>, ClientError> {
        match self {
            Stream::WebSocket(s) => s.next().await,
            Stream::Quic(s) => s.next().await,
            Stream::WebTransport(s) => s.next().await,
        }
    }

    async fn ping(&mut self) -> Result<(), ClientError> {
        match self {
            Stream::WebSocket(s) => s.ping().await,
            Stream::Quic(s) => s.ping().await,
            Stream::WebTransport(s) => s.ping().await,
        }
    }
}

/// After this long without a word from the server the client pings (contract
/// §11). A restarted node answers the ping of a connection it no longer
/// knows with a stateless reset, so this bounds how long a client stays on a
/// dead connection when the node comes back; it costs one small message each
/// way per quiet interval.
pub const PING_AFTER_SILENCE: Duration = Duration::from_secs(10);
/// After this long without a word, pings included, the connection is taken
/// for dead and replaced (the contract allows at most 35 s).
pub const GIVE_UP_AFTER_SILENCE: Duration = Duration::from_secs(30);

/// A subscription that survives disconnects (see the module docs).
pub struct Subscription {
    target: Target,
    app: String,
    rooms: Vec<String>,
    last_seq: HashMap<String, u64>,
    stream: Option<Stream>,
    endpoint: Option<quinn::Endpoint>,
    attempt: u32,
    server_delay: Option<Duration>,
    gave_up: bool,
    /// When the server was last heard from, and when we last pinged it.
    last_heard: tokio::time::Instant,
    last_ping: tokio::time::Instant,
    /// Backoff bounds: the first retry waits up to `min_backoff`, doubling up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Silence rules: ping after `ping_after` without a word from the server
    /// (and again each `ping_after` while it stays silent), reconnect after
    /// `give_up_after` ([`PING_AFTER_SILENCE`], [`GIVE_UP_AFTER_SILENCE`]).
    pub ping_after: Duration,
    pub give_up_after: Duration,
}

impl Subscription {
    /// A subscription to `rooms` of `app`; nothing connects until [`Subscription::next`].
    pub fn new(target: Target, app: &str, rooms: &[&str]) -> Subscription {
        Subscription {
            target,
            app: app.to_owned(),
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            last_seq: HashMap::new(),
            stream: None,
            endpoint: None,
            attempt: 0,
            server_delay: None,
            gave_up: false,
            last_heard: tokio::time::Instant::now(),
            last_ping: tokio::time::Instant::now(),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            ping_after: PING_AFTER_SILENCE,
            give_up_after: GIVE_UP_AFTER_SILENCE,
        }
    }

    /// The last seq seen per room.
    pub fn last_seq(&self, room: &str) -> Option<u64> {
        self.last_seq.get(room).copied()
    }

    /// The next event. `None` only once the room is gone (`room_destroyed`)
    /// or the server refused the subscription with an `error`. Pongs answer
    /// the subscription's own pings and are not yielded.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if self.gave_up {
                return None;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.connect().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.last_heard = tokio::time::Instant::now();
                        self.last_ping = self.last_heard;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "subscription connect failed");
                        return Some(self.schedule_retry().await);
                    }
                }
                continue;
            };
            let ping_at = self.last_heard.max(self.last_ping) + self.ping_after;
            let give_up_at = self.last_heard + self.give_up_after;
            // Reads are cancel-safe on every transport: a timer that wins loses no frame.
            let read = tokio::select! {
                read = stream.next() => read,
                () = tokio::time::sleep_until(ping_at.min(give_up_at)) => {
                    if tokio::time::Instant::now() >= give_up_at {
                        tracing::debug!(silent = ?self.give_up_after, "the server went silent; reconnecting");
                        self.stream = None;
                        return Some(self.schedule_retry().await);
                    }
                    self.last_ping = tokio::time::Instant::now();
                    match tokio::time::timeout_at(give_up_at, stream.ping()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) | Err(_) => Err(ClientError::Io("the ping could not be sent".into())),
                    }
                }
            };
            match read {
                Ok(Some(message)) => {
                    self.last_heard = tokio::time::Instant::now();
                    if message == Message::Pong {
                        continue;
                    }
                    return Some(self.observe(message));
                }
                Ok(None) | Err(_) => {
                    self.stream = None;
                    return Some(self.schedule_retry().await);
                }
            }
        }
    }

    /// Records what a message tells about seqs, reconnect delays and the end.
    fn observe(&mut self, message: Message) -> Event {
        match &message {
            Message::Welcome { rooms, .. } => {
                self.attempt = 0;
                // The server's word wins: it is the seq we asked to resume
                // after, or an earlier one when the room's seqs restarted.
                for RoomSeq { room, seq } in rooms {
                    self.last_seq.insert(room.clone(), *seq);
                }
            }
            Message::Broadcast { room, seq, .. } => {
                let last = self.last_seq.insert(room.clone(), *seq);
                if let Some(last) = last
                    && *seq > last + 1
                {
                    return Event::Gap { room: room.clone(), missed: seq - last - 1 };
                }
            }
            Message::Closing { reason, reconnect_after_ms } => {
                self.server_delay = reconnect_after_ms.map(Duration::from_millis);
                if reason == "room_destroyed" {
                    self.gave_up = true;
                }
            }
            Message::Error { .. } => self.gave_up = true,
            // Announced drops are not gaps: the next seq follows them.
            Message::Lagged { room, missed, .. } => {
                if let Some(last) = self.last_seq.get_mut(room) {
                    *last += missed;
                }
            }
            Message::Pong | Message::Sticky { .. } | Message::Occupancy { .. } => {}
        }
        Event::Message(message)
    }

    async fn connect(&mut self) -> Result<Stream, ClientError> {
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .map(|room| match self.last_seq.get(room) {
                Some(seq) => format!("{room}@{seq}"),
                None => room.clone(),
            })
            .collect();
        match &self.target {
            Target::WebSocket { url } => Ok(Stream::WebSocket(WsStream::connect(url, &self.app, &rooms).await?)),
            Target::Quic { addr, server_name, fingerprint } => {
                let alpn = crate::protocol::quic::ALPN;
                let endpoint = quic_endpoint(&mut self.endpoint, *addr, fingerprint, alpn)?;
                Ok(Stream::Quic(QuicStream::connect(endpoint, *addr, server_name, &self.app, &rooms).await?))
            }
            Target::WebTransport { addr, server_name, fingerprint } => {
                let alpn = crate::protocol::quic::WEBTRANSPORT_ALPN;
                let endpoint = quic_endpoint(&mut self.endpoint, *addr, fingerprint, alpn)?;
                Ok(Stream::WebTransport(Box::new(
                    WtStream::connect(endpoint, *addr, server_name, &self.app, &rooms).await?,
                )))
            }
        }
    }

    /// Waits before the next attempt: the server's delay when it gave one,
    /// else full jitter over an exponentially growing cap.
    async fn schedule_retry(&mut self) -> Event {
        let after =
            self.server_delay.take().unwrap_or_else(|| full_jitter(self.attempt, self.min_backoff, self.max_backoff));
        self.attempt = self.attempt.saturating_add(1);
        tokio::time::sleep(after).await;
        Event::Reconnecting { after }
    }
}

/// The QUIC endpoint in `slot`, made at the first connect and kept for reconnects.
fn quic_endpoint<'a>(
    slot: &'a mut Option<quinn::Endpoint>,
    addr: SocketAddr,
    fingerprint: &str,
    alpn: &[u8],
) -> Result<&'a quinn::Endpoint, ClientError> {
    if slot.is_none() {
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(tls::pinned_quic_config(fingerprint, alpn));
        *slot = Some(endpoint);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// A delay drawn uniformly from `[0, min(max, base · 2^attempt)]`.
pub fn full_jitter(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(max);
    Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_contract_message() {
        let cases = [
            (r#"{"type":"welcome","rooms":[{"room":"g","seq":4}],"heartbeat_ms":25000}"#, "Welcome"),
            (r#"{"type":"broadcast","room":"g","seq":5,"ts":1,"data":{"a":1}}"#, "Broadcast"),
            (r#"{"type":"lagged","room":"g","missed":2,"reason":"slow"}"#, "Lagged"),
            (r#"{"type":"pong"}"#, "Pong"),
            (r#"{"type":"sticky","room":"g","seq":3,"ts":1,"data":{"top":"Ana"}}"#, "Sticky"),
            (r#"{"type":"occupancy","room":"g","online":12345}"#, "Occupancy"),
            (r#"{"type":"closing","reason":"server_draining","reconnect_after_ms":5}"#, "Closing"),
            (r#"{"type":"closing","reason":"room_destroyed"}"#, "Closing"),
            (r#"{"type":"error","code":"room_not_found","message":"m"}"#, "Error"),
        ];
        for (json, kind) in cases {
            let message = Message::parse(json.as_bytes()).unwrap();
            assert!(format!("{message:?}").starts_with(kind), "{json}");
        }
        assert!(Message::parse(br#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn gaps_are_detected_and_welcome_sets_the_start() {
        let mut sub = Subscription::new(Target::WebSocket { url: "ws://x".into() }, "demo", &["g"]);
        sub.observe(Message::parse(br#"{"type":"welcome","rooms":[{"room":"g","seq":4}],"heartbeat_ms":1}"#).unwrap());
        let next = |seq: u64| Message::Broadcast { room: "g".into(), seq, ts: 0, data: serde_json::Value::Null };
        assert!(matches!(sub.observe(next(5)), Event::Message(_)));
        assert_eq!(sub.observe(next(8)), Event::Gap { room: "g".into(), missed: 2 });
        assert_eq!(sub.last_seq("g"), Some(8));
        let lagged = Message::Lagged { room: "g".into(), missed: 3, reason: "slow".into() };
        sub.observe(lagged);
        assert!(matches!(sub.observe(next(12)), Event::Message(_)), "announced drops are not a gap");
        // A restarted room: the server's welcome seq replaces ours.
        sub.observe(Message::parse(br#"{"type":"welcome","rooms":[{"room":"g","seq":1}],"heartbeat_ms":1}"#).unwrap());
        assert_eq!(sub.last_seq("g"), Some(1));
    }

    #[test]
    fn the_silence_rules_keep_the_contracts_bounds() {
        // Contract §11: a silent connection is left within 35 s, and a client
        // pings often enough to draw a restarted node's reset well within 15 s.
        assert!(GIVE_UP_AFTER_SILENCE <= Duration::from_secs(35));
        assert!(PING_AFTER_SILENCE < Duration::from_secs(15));
        assert!(PING_AFTER_SILENCE < GIVE_UP_AFTER_SILENCE / 2, "at least two pings before giving up");
    }

    #[test]
    fn full_jitter_stays_under_a_growing_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..30 {
            let cap = (base * 2u32.pow(attempt.min(10))).min(max);
            for _ in 0..50 {
                assert!(full_jitter(attempt, base, max) <= cap);
            }
        }
    }
}
