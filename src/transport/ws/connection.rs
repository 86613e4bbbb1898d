//! One WebSocket subscriber: join its rooms, then a single task that reads
//! the little a subscriber sends and writes what the fan-out queued.
//!
//! Reading and writing share one task and one `select!`, and neither waits on
//! the other: a full socket only stops the writer branch, while pings keep
//! being read. Reads go through a stack buffer in a plain function, so an idle
//! connection holds no read buffer; writes are vectored straight from the
//! shared frames (`fanout::writer`).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::fanout::Subscriber;
use crate::fanout::queue::{Entry, EntryKind};
use crate::fanout::writer::write_some;
use crate::presence::{Member, MemberKey};
use crate::protocol::Framing;
use crate::protocol::close::{CloseReason, ws_code};
use crate::protocol::messages::{self, ClientMessage, LagReason};
use crate::protocol::ws::{self, ClientEvent, Decoder};
use crate::room::Room;
use crate::state::Shared;
use crate::transport::capacity::ConnectionPermit;

use super::upgrade::Subscription;

/// `{"type":"pong"}` as one text frame, shared by every connection.
static PONG_FRAME: &[u8] = b"\x81\x0f{\"type\":\"pong\"}";

/// How long the final frames may take to leave, and the peer to close after.
const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

pub(super) struct WsConnection {
    stream: TcpStream,
    /// Bytes the HTTP server read past the upgrade request.
    early_input: Bytes,
    rooms: Vec<Arc<Room>>,
    resume: Vec<Option<u64>>,
    shared: Arc<Shared>,
    _permit: ConnectionPermit,
}

/// What a read asked for.
enum ReadOutcome {
    Data,
    WouldBlock,
    /// The peer closed or failed: nothing more can be said to it.
    Gone,
    /// Answer with a close frame with this code, then end.
    Close(u16),
}

impl WsConnection {
    pub(super) fn new(
        stream: TcpStream,
        early_input: Bytes,
        subscription: Subscription,
        shared: Arc<Shared>,
        permit: ConnectionPermit,
    ) -> WsConnection {
        let Subscription { rooms, resume } = subscription;
        WsConnection { stream, early_input, rooms, resume, shared, _permit: permit }
    }

    pub(super) async fn run(mut self) {
        let _ = self.stream.set_nodelay(true);
        let id = self.shared.next_connection_id();
        let span = tracing::debug_span!("ws", id);
        async move {
            let subscriber = Arc::new(Subscriber::new(
                id,
                Framing::WebSocket,
                self.rooms.iter().map(|r| r.id().clone()).collect(),
                self.shared.settings.queue,
            ));
            let keys = self.join(&subscriber);
            self.serve(&subscriber).await;
            for (room, key) in self.rooms.iter().zip(keys) {
                if let Some(key) = key {
                    room.leave(key);
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Joins every room, then queues `welcome` ahead of anything that arrived
    /// meanwhile. Each room's welcome seq is the last one this subscriber will
    /// not get; every later broadcast is owed to it.
    fn join(&self, subscriber: &Arc<Subscriber>) -> Vec<Option<MemberKey>> {
        let mut keys = Vec::with_capacity(self.rooms.len());
        let mut seqs = Vec::with_capacity(self.rooms.len());
        let mut expired = Vec::new();
        for (slot, room) in self.rooms.iter().enumerate() {
            match room.join(subscriber.id(), Member { subscriber: subscriber.clone(), slot }) {
                Ok((key, seq)) => {
                    keys.push(Some(key));
                    seqs.push(seq);
                    // Nothing is held for replay yet: what a resuming subscriber
                    // missed is announced as expired, never skipped silently.
                    if let Some(after) = self.resume[slot].filter(|after| *after < seq) {
                        expired.push(Framing::WebSocket.frame(&messages::lagged(
                            room.id(),
                            seq - after,
                            LagReason::Expired,
                        )));
                    }
                }
                Err(_) => {
                    keys.push(None);
                    seqs.push(room.seq());
                    subscriber.close(CloseReason::RoomDestroyed);
                }
            }
        }
        for frame in expired.into_iter().rev() {
            subscriber.push_control_front(frame);
        }
        let welcome = messages::welcome(
            self.rooms.iter().zip(&seqs).map(|(room, seq)| (&**room.id(), *seq)),
            self.shared.settings.heartbeat.as_millis() as u64,
        );
        subscriber.push_control_front(ws::text_frame(&welcome));
        if self.shared.drain.is_draining() {
            subscriber
                .close(CloseReason::ServerDraining { reconnect_after_ms: self.shared.drain.reconnect_after_ms() });
        }
        keys
    }

    /// The connection's life after joining: returns when it is over.
    async fn serve(&mut self, subscriber: &Subscriber) {
        let settings = &self.shared.settings;
        let deliveries = &self.shared.metrics.ws_deliveries;
        let mut out: VecDeque<Entry> = VecDeque::new();
        let mut decoder = Decoder::new();
        let mut last_heard = Instant::now();
        let mut next_ping = last_heard + settings.heartbeat;
        // Set once the last frame (a close) is queued: the deadline to flush it.
        let mut closing_by: Option<Instant> = None;

        if !self.early_input.is_empty() {
            let mut input = std::mem::take(&mut self.early_input).to_vec();
            if let Some(code) = handle_input(&mut decoder, &mut input, subscriber) {
                closing_by = Some(close_with(&mut out, code));
            }
        }
        loop {
            if out.is_empty() && closing_by.is_none() {
                let taken = subscriber.take(&mut out);
                if let Some(reason) = taken.close {
                    if matches!(reason, CloseReason::SlowConsumer { .. }) {
                        out.clear(); // it is not reading: say goodbye, skip the backlog
                    }
                    if out.is_empty() {
                        out.push_back(control(ws::text_frame(&messages::closing(reason))));
                        closing_by = Some(close_with(&mut out, reason.ws_close_code()));
                    }
                }
            }
            if !out.is_empty() {
                match write_some(&mut out, |slices| self.stream.try_write_vectored(slices)) {
                    Ok(progress) => {
                        subscriber.written(progress.broadcast_bytes);
                        if progress.deliveries > 0 {
                            deliveries.increment(progress.deliveries);
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            } else if closing_by.is_some() {
                return self.linger().await;
            }
            let wake_at = closing_by.unwrap_or(next_ping);
            tokio::select! {
                biased;
                ready = self.stream.readable() => {
                    if ready.is_err() {
                        return;
                    }
                    match read(&self.stream, &mut decoder, subscriber) {
                        ReadOutcome::Data => last_heard = Instant::now(),
                        ReadOutcome::WouldBlock => {}
                        ReadOutcome::Gone => return,
                        ReadOutcome::Close(code) => {
                            if closing_by.is_none() {
                                closing_by = Some(close_with(&mut out, code));
                            }
                        }
                    }
                }
                _ = self.stream.writable(), if !out.is_empty() => {}
                () = subscriber.notified(), if out.is_empty() && closing_by.is_none() => {}
                () = tokio::time::sleep_until(wake_at) => {
                    if closing_by.is_some() || last_heard.elapsed() >= settings.idle_timeout {
                        return; // could not flush in time, or the peer went silent
                    }
                    subscriber.push_control(Bytes::from_static(ws::PING_FRAME));
                    next_ping = Instant::now() + settings.heartbeat;
                }
            }
        }
    }

    /// After the close frame: half-close and wait briefly for the peer to close,
    /// so unread input does not turn our close into a reset that loses the
    /// frames just sent.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
            loop {
                if self.stream.readable().await.is_err() {
                    return;
                }
                if let ReadOutcome::Gone = discard(&self.stream) {
                    return;
                }
            }
        })
        .await;
    }
}

fn control(frame: Bytes) -> Entry {
    Entry { frame, kind: EntryKind::Control }
}

/// Queues the close frame after whatever is in flight; returns the flush deadline.
fn close_with(out: &mut VecDeque<Entry>, code: u16) -> Instant {
    let reason = match code {
        ws_code::TOO_BIG => "frame too big",
        ws_code::PROTOCOL_ERROR => "protocol error",
        ws_code::INVALID_PAYLOAD => "invalid utf-8",
        ws_code::GOING_AWAY => "server_draining",
        ws_code::ROOM_DESTROYED => "room_destroyed",
        ws_code::SLOW_CONSUMER => "slow_consumer",
        _ => "",
    };
    out.push_back(control(ws::close_frame(code, reason)));
    Instant::now() + CLOSE_DEADLINE
}

/// One non-blocking read into a stack buffer (never held across an await).
fn read(stream: &TcpStream, decoder: &mut Decoder, subscriber: &Subscriber) -> ReadOutcome {
    let mut buf = [0u8; 4096];
    match stream.try_read(&mut buf) {
        Ok(0) => ReadOutcome::Gone,
        Ok(n) => match handle_input(decoder, &mut buf[..n], subscriber) {
            None => ReadOutcome::Data,
            Some(code) => ReadOutcome::Close(code),
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
        Err(_) => ReadOutcome::Gone,
    }
}

fn discard(stream: &TcpStream) -> ReadOutcome {
    let mut buf = [0u8; 1024];
    match stream.try_read(&mut buf) {
        Ok(0) => ReadOutcome::Gone,
        Ok(_) => ReadOutcome::Data,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
        Err(_) => ReadOutcome::Gone,
    }
}

/// Decodes client bytes; returns the close code to answer with, if any.
fn handle_input(decoder: &mut Decoder, input: &mut [u8], subscriber: &Subscriber) -> Option<u16> {
    let mut close = None;
    let decoded = decoder.decode(input, |event| match event {
        ClientEvent::Text(text) => {
            if messages::parse_client(text) == ClientMessage::Ping {
                subscriber.push_control(Bytes::from_static(PONG_FRAME));
            }
        }
        ClientEvent::Ping(payload) => subscriber.push_control(ws::frame(ws::opcode::PONG, payload)),
        ClientEvent::Binary(_) | ClientEvent::Pong => {}
        ClientEvent::Close(_) => close = close.or(Some(ws_code::NORMAL)),
    });
    match decoded {
        Ok(()) => close,
        Err(error) => {
            tracing::debug!(%error, "closing on bad client input");
            Some(error.close_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_frame_is_the_encoded_pong() {
        assert_eq!(PONG_FRAME, &ws::text_frame(messages::PONG)[..]);
    }
}
