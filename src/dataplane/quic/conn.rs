//! One QUIC connection on a shard: quinn-proto's connection and the
//! subscriber protocol above it, as an explicit state machine driven by the
//! shard's loop (application events, queue wakes, deadlines) and by nothing
//! else. It never touches a socket: what it writes into its streams leaves
//! through the shard's batch when the shard drives it ([`super::QuicPort`]).
//!
//! Stages: handshaking → the hello (native `bullhorn/1`: the client's
//! bidirectional stream) or the CONNECT request (WebTransport over HTTP/3,
//! [`crate::protocol::webtransport`]), with [`HELLO_TIMEOUT`] → subscribed
//! (the shared queue, written with `write_chunks` of the shared frames; the
//! client's pings answered on the same stream) → finishing (the stream's
//! FIN, [`CLOSE_DEADLINE`] to be acknowledged) → the application close (for
//! WebTransport first the close capsule, then [`CLOSE_DEADLINE`] for the
//! browser to close) → over, until quinn-proto has drained. The subscriber
//! leaves its rooms and frees its connection slot at the application close.
//!
//! Refusals follow the contract (§5): an `error` frame on the subscriber's
//! stream, then a normal close; a client frame over 4 KiB closes with 1009,
//! no hello in time with 1002; a wrong WebTransport path is answered 404.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_proto::{Connection, Dir, Event, StreamEvent, StreamId, VarInt, WriteError};

use crate::fanout::Subscriber;
use crate::fanout::outbox::Outbox;
use crate::protocol::Framing;
use crate::protocol::close::{CloseReason, ws_code};
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::quic::{self, Decoder, parse_hello};
use crate::protocol::webtransport::{self as wt, RequestReader, UniKind, UniPrefix};
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::session::{self, Membership};

/// How long a client has, once connected, to send its hello or request.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last frames may take to be acknowledged, and a WebTransport
/// peer to close after our capsule.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(2);
/// The most read from a client stream at once.
const READ_CHUNK: usize = 4096;

/// `{"type":"pong"}` as one QUIC frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\0\0\0\x0f{\"type\":\"pong\"}";

/// What the handlers of a shard's QUIC connections share, handed in.
pub struct Cx<'a> {
    pub shared: &'a Shared,
    /// This shard's index and the number of shards: a subscriber admitted
    /// here joins this presence shard.
    pub shard: usize,
    pub shards: usize,
    pub now: Instant,
}

/// A subscriber admitted on this connection.
struct Session {
    subscriber: Arc<Subscriber>,
    memberships: Vec<Membership>,
    out: Outbox,
    /// `closing` is queued: once the outbox is written, the stream finishes.
    closing: Option<CloseReason>,
    transport: Transport,
    _permit: ConnectionPermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        session::leave(&self.memberships);
    }
}

/// A WebTransport connection's HTTP/3 state beside the stages.
#[derive(Default)]
struct Web {
    /// The CONNECT stream; its id is the session id.
    connect: Option<StreamId>,
    request: RequestReader,
    /// The session was accepted (200): a close is a capsule.
    accepted: bool,
    /// The browser's unidirectional streams still being identified.
    prefixes: Vec<(StreamId, UniPrefix)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Not yet connected: the ALPN is not known.
    Unknown,
    Native,
    WebTransport,
}

enum Stage {
    Handshaking,
    /// Waiting for the hello or the CONNECT request, until the deadline.
    Opening,
    Subscribed(Session),
    /// The subscriber stream is finished; waiting for its acknowledgement.
    Finishing {
        _held: Option<Session>,
        code: u16,
        reason: &'static str,
    },
    /// WebTransport: the capsule is sent; waiting for the browser to close.
    Capsuled {
        code: u16,
    },
    /// Closed or lost; waiting for quinn-proto to drain.
    Over,
}

pub struct QuicConn {
    pub conn: Connection,
    /// The waker the subscriber queue parks (marks this connection dirty).
    pub waker: Waker,
    /// Received datagrams this pass (the shard drives it once after them).
    pub touched: bool,
    /// Has packets waiting for the socket's buffer (on the shard's unsent list).
    pub unsent: bool,
    protocol: Protocol,
    stage: Stage,
    web: Web,
    /// Native: the client's bidirectional stream (hello, then pings; frames
    /// go back on it). WebTransport: the stream the frames go on.
    send: Option<StreamId>,
    /// Where pings come from: the native stream, or the browser's 0x54 stream.
    pings: Option<StreamId>,
    decoder: Decoder,
    /// When the opening, finishing or capsuled stage must be over.
    deadline: Option<Instant>,
}

impl QuicConn {
    pub fn new(conn: Connection, waker: Waker) -> QuicConn {
        QuicConn {
            conn,
            waker,
            touched: false,
            unsent: false,
            protocol: Protocol::Unknown,
            stage: Stage::Handshaking,
            web: Web::default(),
            send: None,
            pings: None,
            decoder: Decoder::default(),
            deadline: None,
        }
    }

    /// Cache hints for the write pass, two connections ahead of the one it
    /// writes: the lines holding quinn-proto's pointers, and the queue.
    pub fn prefetch_roots(&self) {
        self.conn.prefetch_roots();
        if let Stage::Subscribed(session) = &self.stage {
            session.subscriber.prefetch();
        }
    }

    /// Cache hints one connection ahead: what those pointers point at (the
    /// keys, the congestion controller, the stream the frames go on).
    pub fn prefetch_state(&self) {
        self.conn.prefetch_state(self.send);
    }

    /// The next time the shard must look at this connection.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        super::timers::earliest(self.conn.poll_timeout(), self.deadline)
    }

    /// A deadline may have passed: quinn-proto's, and the stage's own.
    pub fn on_timeout(&mut self, cx: &Cx<'_>) {
        if self.conn.poll_timeout().is_some_and(|at| at <= cx.now) {
            self.conn.handle_timeout(cx.now);
        }
        if self.deadline.is_none_or(|at| at > cx.now) {
            return;
        }
        self.deadline = None;
        match &self.stage {
            Stage::Opening => {
                let reason = match self.protocol {
                    Protocol::WebTransport => "no request in time",
                    _ => "no hello in time",
                };
                self.close_connection(cx, ws_code::PROTOCOL_ERROR, reason);
            }
            Stage::Finishing { .. } => self.after_finish(cx),
            Stage::Capsuled { code } => {
                let code = *code;
                self.close_connection(cx, code, "");
            }
            // Closing while the peer reads nothing: its backlog is abandoned.
            Stage::Subscribed(session) => {
                if let Some(reason) = session.subscriber.closing() {
                    if let Some(send) = self.send {
                        let _ = self.conn.send_stream(send).reset(VarInt::from_u32(0));
                    }
                    self.close_connection(cx, reason.ws_close_code(), reason.as_str());
                }
            }
            Stage::Handshaking | Stage::Over => {}
        }
    }

    /// Handles every application event quinn-proto has.
    pub fn on_events(&mut self, cx: &Cx<'_>) {
        while let Some(event) = self.conn.poll() {
            match event {
                Event::Connected => self.on_connected(cx),
                Event::ConnectionLost { .. } => self.stage = Stage::Over,
                Event::Stream(StreamEvent::Opened { dir }) => {
                    while let Some(id) = self.conn.streams().accept(dir) {
                        self.on_opened(id, dir);
                        self.on_readable(cx, id);
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => self.on_readable(cx, id),
                Event::Stream(StreamEvent::Writable { id }) if Some(id) == self.send => self.on_woken(cx),
                Event::Stream(StreamEvent::Finished { id }) if Some(id) == self.send => {
                    if matches!(self.stage, Stage::Finishing { .. }) {
                        self.after_finish(cx);
                    }
                }
                Event::Stream(StreamEvent::Stopped { id, .. }) if Some(id) == self.send => {
                    // The peer no longer reads what we send: nothing left to do.
                    self.close_connection(cx, ws_code::NORMAL, "stream stopped");
                }
                Event::HandshakeDataReady | Event::Stream(_) | Event::DatagramReceived | Event::DatagramsUnblocked => {}
            }
        }
    }

    fn on_connected(&mut self, cx: &Cx<'_>) {
        let alpn = self
            .conn
            .crypto_session()
            .handshake_data()
            .and_then(|data| data.downcast::<quinn_proto::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        self.protocol = match alpn.as_deref() {
            Some(quic::WEBTRANSPORT_ALPN) => Protocol::WebTransport,
            _ => Protocol::Native,
        };
        if self.protocol == Protocol::WebTransport
            && let Some(control) = self.conn.streams().open(Dir::Uni)
        {
            // A fresh stream takes this much at once: the initial windows are larger.
            let _ = self.conn.send_stream(control).write_chunks(&mut [wt::control_stream()]);
        }
        self.stage = Stage::Opening;
        self.deadline = Some(cx.now + HELLO_TIMEOUT);
    }

    fn on_opened(&mut self, id: StreamId, dir: Dir) {
        match (self.protocol, dir) {
            (Protocol::Native, Dir::Bi) if self.send.is_none() => {
                self.send = Some(id);
                self.pings = Some(id);
            }
            (Protocol::WebTransport, Dir::Bi) if self.web.connect.is_none() => self.web.connect = Some(id),
            (Protocol::WebTransport, Dir::Uni) => self.web.prefixes.push((id, UniPrefix::default())),
            // Streams of no use to a subscriber are read and discarded.
            _ => {}
        }
    }

    /// Reads everything a client stream has and acts on it.
    fn on_readable(&mut self, cx: &Cx<'_>, id: StreamId) {
        let mut input = Vec::new();
        let end = read_all(&mut self.conn, id, &mut input);
        if let Some(at) = self.web.prefixes.iter().position(|(stream, _)| *stream == id) {
            self.on_uni_prefix(cx, at, &input, end);
        } else if Some(id) == self.pings {
            self.on_pings(cx, &input);
        } else if Some(id) == self.web.connect {
            self.on_connect_stream(cx, &input, end);
        }
    }

    /// Bytes of a browser stream whose type is not known yet.
    fn on_uni_prefix(&mut self, cx: &Cx<'_>, at: usize, input: &[u8], end: ReadEnd) {
        let Some((kind, offset)) = self.web.prefixes[at].1.push(input) else {
            if end == ReadEnd::Ended {
                // Ended before its type was known: nothing more will come.
                self.web.prefixes.swap_remove(at);
            }
            return;
        };
        let (id, _) = self.web.prefixes.swap_remove(at);
        let session = self.web.connect.map(|connect| VarInt::from(connect).into_inner());
        if let UniKind::WebTransport { session: named } = kind
            && Some(named) == session
            && self.pings.is_none()
        {
            self.pings = Some(id);
            self.on_pings(cx, &input[offset..]);
        }
    }

    /// Client frames: the hello first (native), then pings.
    fn on_pings(&mut self, cx: &Cx<'_>, input: &[u8]) {
        let mut hello = None;
        let mut pings = 0;
        let waiting_hello = self.protocol == Protocol::Native && matches!(self.stage, Stage::Opening);
        let decoded = self.decoder.decode(input, |frame| {
            if waiting_hello && hello.is_none() {
                hello = Some(frame.to_vec());
            } else if messages::parse_client(frame) == ClientMessage::Ping {
                pings += 1;
            }
        });
        if decoded.is_err() {
            return self.close_connection(cx, ws_code::TOO_BIG, "frame too big");
        }
        if let Some(hello) = hello {
            let peer = self.conn.remote_address().ip();
            let admitted = parse_hello(&hello).map_err(crate::api_error::ApiError::invalid_request).and_then(|hello| {
                session::admit(cx.shared, Transport::Quic, peer, &hello.app, hello.rooms.iter().map(String::as_str))
            });
            self.admitted(cx, admitted, Transport::Quic);
        }
        // One pong answers what this read brought, unless many frames wait
        // unread already (`push_reply`): pinging cannot grow the queue.
        if let Stage::Subscribed(session) = &self.stage
            && pings > 0
        {
            session.subscriber.push_reply(Bytes::from_static(PONG_FRAME));
        }
    }

    /// The CONNECT stream: the request, then (ignored) capsules until the
    /// browser ends it, which ends the session.
    fn on_connect_stream(&mut self, cx: &Cx<'_>, input: &[u8], end: ReadEnd) {
        if matches!(self.stage, Stage::Opening) {
            match self.web.request.push(input) {
                Ok(Some(url)) => self.on_request(cx, &url),
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "webtransport request refused");
                    return self.close_connection(cx, ws_code::PROTOCOL_ERROR, "bad request");
                }
            }
        }
        if end != ReadEnd::Open && !matches!(self.stage, Stage::Capsuled { .. } | Stage::Finishing { .. }) {
            self.close_connection(cx, ws_code::NORMAL, "session ended");
        }
    }

    fn on_request(&mut self, cx: &Cx<'_>, url: &url::Url) {
        let connect = self.web.connect.expect("a request comes on the CONNECT stream");
        let Some(app) = crate::protocol::subscribe_app(url.path(), "wt") else {
            let _ = self.conn.send_stream(connect).write_chunks(&mut [wt::connect_response(404)]);
            self.send = Some(connect);
            return self.begin_finish(cx, ws_code::NORMAL, "not found");
        };
        let _ = self.conn.send_stream(connect).write_chunks(&mut [wt::connect_response(200)]);
        self.web.accepted = true;
        let Some(send) = self.conn.streams().open(Dir::Uni) else {
            return self.close_connection(cx, ws_code::PROTOCOL_ERROR, "no stream");
        };
        let header = wt::uni_stream_header(VarInt::from(connect).into_inner());
        let _ = self.conn.send_stream(send).write_chunks(&mut [header]);
        self.send = Some(send);
        let rooms = crate::protocol::rooms_in(url.query());
        let peer = self.conn.remote_address().ip();
        let admitted = session::admit(cx.shared, Transport::WebTransport, peer, app, rooms.iter().map(String::as_str));
        self.admitted(cx, admitted, Transport::WebTransport);
    }

    /// Opens the session, or refuses it with an `error` frame.
    fn admitted(
        &mut self,
        cx: &Cx<'_>,
        admitted: Result<(Vec<Membership>, ConnectionPermit), crate::api_error::ApiError>,
        transport: Transport,
    ) {
        self.deadline = None;
        match admitted {
            Ok((mut memberships, permit)) => {
                let id = cx.shared.next_connection_id_on(cx.shard, cx.shards);
                let (subscriber, _) = session::open_with_id(cx.shared, id, Framing::Quic, &mut memberships);
                self.stage = Stage::Subscribed(Session {
                    out: Outbox::new(&subscriber),
                    subscriber,
                    memberships,
                    closing: None,
                    transport,
                    _permit: permit,
                });
                self.on_woken(cx);
            }
            Err(error) => {
                let frame = quic::frame(&quic::error_message(error.code, &error.message));
                if let Some(send) = self.send {
                    let _ = self.conn.send_stream(send).write_chunks(&mut [frame]);
                }
                self.begin_finish(cx, ws_code::NORMAL, error.code);
            }
        }
    }

    /// The queue was pushed to or closed, or the stream has room again:
    /// write what can go, then park the queue's waker.
    pub fn on_woken(&mut self, cx: &Cx<'_>) {
        let QuicConn { conn, waker, stage, send, .. } = self;
        let Stage::Subscribed(session) = stage else { return };
        let Some(send) = *send else { return };
        let deliveries = match session.transport {
            Transport::WebTransport => &cx.shared.metrics.webtransport_deliveries,
            _ => &cx.shared.metrics.quic_deliveries,
        };
        loop {
            if session.out.is_empty()
                && session.closing.is_none()
                && let Some(reason) = session.out.refill(&session.subscriber)
            {
                // A stream is ordered: `closing` can follow the backlog at once.
                session.out.push_frame(quic::frame(&messages::closing(reason)));
                session.closing = Some(reason);
            }
            if session.out.is_empty() {
                if let Some(reason) = session.closing {
                    return self.begin_finish(cx, reason.ws_close_code(), reason.as_str());
                }
                match session.subscriber.poll_woken(&mut Context::from_waker(waker)) {
                    Poll::Ready(()) => continue,
                    Poll::Pending => return,
                }
            }
            let expired = session.out.expire(&session.subscriber, cx.now);
            if expired > 0 {
                cx.shared.metrics.dropped_expired.increment(expired);
            }
            let mut stream = conn.send_stream(send);
            match session.out.write_chunks(|chunks| stream.write_chunks(chunks).map(|written| written.bytes)) {
                Ok(bytes) => session.out.sent(&session.subscriber, bytes, deliveries),
                Err(WriteError::Blocked) => {
                    // Writable comes when the peer reads. Meanwhile a close
                    // (slow consumer, drain, room deleted) must still be
                    // seen: park the waker, and give a closing subscriber
                    // that cannot take its last frames a deadline.
                    while session.subscriber.poll_woken(&mut Context::from_waker(waker)).is_ready() {}
                    if session.subscriber.closing().is_some() && self.deadline.is_none() {
                        self.deadline = Some(cx.now + CLOSE_DEADLINE);
                    }
                    return;
                }
                Err(_) => return self.close_connection(cx, ws_code::NORMAL, "stream stopped"),
            }
        }
    }

    /// Finishes the subscriber's stream; the close follows its acknowledgement.
    fn begin_finish(&mut self, cx: &Cx<'_>, code: u16, reason: &'static str) {
        if let Some(send) = self.send {
            let _ = self.conn.send_stream(send).finish();
        }
        let held = match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Subscribed(session) => Some(session),
            _ => None,
        };
        self.stage = Stage::Finishing { _held: held, code, reason };
        self.deadline = Some(cx.now + CLOSE_DEADLINE);
    }

    /// The last frames were acknowledged, or had their time.
    fn after_finish(&mut self, cx: &Cx<'_>) {
        let Stage::Finishing { code, reason, .. } = self.stage else { return };
        self.close_connection(cx, code, reason);
    }

    /// Ends the session: leaves the rooms, frees the slot, and closes with
    /// `code` (WebSocket numbers, contract §5). An accepted WebTransport
    /// session is closed with its capsule first; the browser then closes.
    fn close_connection(&mut self, cx: &Cx<'_>, code: u16, reason: &str) {
        let capsule_first = self.protocol == Protocol::WebTransport
            && self.web.accepted
            && !matches!(self.stage, Stage::Capsuled { .. } | Stage::Over);
        if capsule_first && let Some(connect) = self.web.connect {
            let capsule = wt::close_capsule(u32::from(code), reason);
            let length = capsule.len();
            let mut stream = self.conn.send_stream(connect);
            // Flow control may leave no room for it: then the connection
            // close alone carries the code (a cut capsule would be malformed).
            if stream.write_chunks(&mut [capsule]).is_ok_and(|written| written.bytes == length) {
                let _ = stream.finish();
                self.stage = Stage::Capsuled { code };
                self.deadline = Some(cx.now + CLOSE_DEADLINE);
                return;
            }
        }
        self.conn.close(cx.now, self.application_code(code), Bytes::copy_from_slice(reason.as_bytes()));
        self.stage = Stage::Over;
        self.deadline = None;
    }

    /// At the node's stop: closes at once with 1001.
    pub fn stop(&mut self, now: Instant) {
        if !matches!(self.stage, Stage::Over) {
            let code = self.application_code(ws_code::GOING_AWAY);
            self.conn.close(now, code, Bytes::from_static(b"server stopped"));
            self.stage = Stage::Over;
        }
    }

    /// The QUIC application close code for `code` (WebSocket numbers): as is,
    /// or for an accepted WebTransport session in HTTP/3's WebTransport range.
    fn application_code(&self, code: u16) -> VarInt {
        let mapped = match self.protocol {
            Protocol::WebTransport if self.web.accepted => wt::connection_close_code(u32::from(code)),
            _ => u64::from(code),
        };
        VarInt::from_u64(mapped).unwrap_or(VarInt::from_u32(u32::from(code)))
    }
}

/// How a read left a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    Open,
    /// The peer finished or reset it.
    Ended,
}

/// Appends everything stream `id` has now to `into`.
fn read_all(conn: &mut Connection, id: StreamId, into: &mut Vec<u8>) -> ReadEnd {
    let mut stream = conn.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else { return ReadEnd::Ended };
    let end = loop {
        match chunks.next(READ_CHUNK) {
            Ok(Some(chunk)) => into.extend_from_slice(&chunk.bytes),
            Ok(None) => break ReadEnd::Ended,
            Err(quinn_proto::ReadError::Blocked) => break ReadEnd::Open,
            Err(quinn_proto::ReadError::Reset(_)) => break ReadEnd::Ended,
        }
    };
    let _ = chunks.finalize();
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG_FRAME, &quic::frame(messages::PONG)[..]);
    }
}
