//! The connection state machine against a scripted socket: any split of the
//! client's bytes, any short write (at any byte, or none), and a close at any
//! point, checked against what a client must see on the wire.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::fanout::{Broadcast, Delivery, Drops, Frames, QueueLimits, Subscriber};
use crate::protocol::Framing;
use crate::protocol::close::CloseReason;

/// A socket whose reads return the scripted chunks (then would block, or
/// end once `peer_closed`) and whose writes take at most the next cap
/// (0: would block).
#[derive(Default)]
struct Scripted {
    input: VecDeque<Vec<u8>>,
    peer_closed: bool,
    caps: VecDeque<usize>,
    wire: Vec<u8>,
    shut: bool,
}

impl ShardSocket for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.front_mut() {
            Some(chunk) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk.drain(..n);
                if chunk.is_empty() {
                    self.input.pop_front();
                }
                Ok(n)
            }
            None if self.peer_closed => Ok(0),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        assert!(!self.shut, "wrote after the half-close");
        let cap = self.caps.pop_front().unwrap_or(usize::MAX);
        if cap == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut left = cap;
        for buf in bufs {
            let n = left.min(buf.len());
            self.wire.extend_from_slice(&buf[..n]);
            left -= n;
            if left == 0 {
                break;
            }
        }
        Ok(cap - left)
    }

    fn shutdown(&mut self) {
        self.shut = true;
    }
}

fn conn(socket: Scripted) -> (WsConn<Scripted>, Arc<Subscriber>) {
    let subscriber = Arc::new(Subscriber::new(7, Framing::WebSocket, [Arc::from("r")], QueueLimits::default()));
    subscriber.push_control_front(ws::text_frame(br#"{"type":"welcome"}"#));
    let conn = WsConn::new(socket, subscriber.clone(), Vec::new(), None);
    (conn, subscriber)
}

fn broadcast(subscriber: &Subscriber, seq: u64) {
    let frames = Frames::encode("r", seq, 0, &seq.to_string());
    let broadcast = Arc::new(Broadcast::new(&Arc::from("r"), seq, Delivery::default(), frames, 1));
    subscriber.push_broadcast(0, &broadcast, &mut Drops::default());
}

/// Server frames on the wire: (opcode, payload).
fn frames_on(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        let opcode = wire[0] & 0x0f;
        let (len, header) = match wire[1] {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        frames.push((opcode, wire[header..header + len].to_vec()));
        wire = &wire[header + len..];
    }
    frames
}

fn kind(payload: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
    match value["type"].as_str().unwrap() {
        "broadcast" => format!("broadcast {}", value["seq"]),
        other => other.to_owned(),
    }
}

/// Runs the handlers the way a shard would until nothing moves.
fn drive(conn: &mut WsConn<Scripted>, steps: usize) -> Life {
    let mut cx = Context::from_waker(Waker::noop());
    let mut buf = [0u8; 64];
    let shard = ShardContext {
        idle_timeout: Duration::from_secs(60),
        deliveries: Counter::noop(),
        sse_deliveries: Counter::noop(),
        pusher_deliveries: Counter::noop(),
        drain_window: Duration::from_secs(10),
        pusher_close_spread: Duration::from_secs(4),
        draining: Default::default(),
        pusher_refused: Counter::noop(),
        expired: Counter::noop(),
    };
    for _ in 0..steps {
        let now = Instant::now();
        if conn.on_readable(&mut buf, &shard, now) == Life::Over || conn.on_woken(&mut cx, &shard, now) == Life::Over {
            return Life::Over;
        }
    }
    Life::Open
}

proptest! {
    /// Whatever the kernel takes per write and however the client's pings
    /// are split, the client sees the welcome, every broadcast once and in
    /// order, and one pong per ping, whole frames only.
    #[test]
    fn any_split_of_reads_and_writes_delivers_every_frame_whole_and_in_order(
        broadcasts in 1u64..40,
        pings in 0usize..6,
        splits in proptest::collection::vec(1usize..30, 1..20),
        caps in proptest::collection::vec(0usize..90, 0..200),
    ) {
        let mut client = Vec::new();
        for i in 0..pings {
            client.extend(ws::client_frame(true, ws::opcode::TEXT, br#"{"type":"ping"}"#, [i as u8, 1, 2, 3]));
        }
        let mut input = VecDeque::new();
        let mut splits = splits.into_iter().cycle();
        while !client.is_empty() {
            let n = splits.next().unwrap().min(client.len());
            input.push_back(client.drain(..n).collect());
        }
        let (mut conn, subscriber) = conn(Scripted { input, caps: caps.into(), ..Default::default() });
        for seq in 1..=broadcasts {
            broadcast(&subscriber, seq);
            drive(&mut conn, 2);
        }
        prop_assert_eq!(drive(&mut conn, 400), Life::Open);
        let kinds: Vec<String> = frames_on(&conn.socket_mut().wire).iter().map(|(_, p)| kind(p)).collect();
        prop_assert_eq!(&kinds[0], "welcome");
        let seqs: Vec<String> = kinds.iter().filter(|k| k.starts_with("broadcast")).cloned().collect();
        let expected: Vec<String> = (1..=broadcasts).map(|seq| format!("broadcast {seq}")).collect();
        prop_assert_eq!(seqs, expected);
        prop_assert_eq!(kinds.iter().filter(|k| *k == "pong").count(), pings);
    }

    /// A close requested at any point: the backlog, then `closing`, then the
    /// close frame, then the half-close; the peer's close ends it.
    #[test]
    fn a_close_at_any_point_ends_with_closing_then_the_close_frame(
        before in 0u64..20,
        caps in proptest::collection::vec(0usize..60, 0..100),
    ) {
        let (mut conn, subscriber) = conn(Scripted { caps: caps.into(), ..Default::default() });
        for seq in 1..=before {
            broadcast(&subscriber, seq);
        }
        drive(&mut conn, 1);
        subscriber.close(CloseReason::ServerDraining { reconnect_after_ms: 5 });
        prop_assert_eq!(drive(&mut conn, 300), Life::Open, "lingers for the peer");
        prop_assert!(conn.socket_mut().shut, "half-closed after the close frame");
        let frames = frames_on(&conn.socket_mut().wire);
        let (close_opcode, close_payload) = frames.last().unwrap().clone();
        prop_assert_eq!(close_opcode, ws::opcode::CLOSE);
        prop_assert_eq!(u16::from_be_bytes([close_payload[0], close_payload[1]]), ws_code::GOING_AWAY);
        let (_, closing) = &frames[frames.len() - 2];
        prop_assert_eq!(kind(closing), "closing");
        let broadcasts = frames.iter().filter(|(op, p)| *op == ws::opcode::TEXT && kind(p).starts_with("broadcast")).count();
        prop_assert_eq!(broadcasts as u64, before, "the backlog leaves before the goodbye");
        conn.socket_mut().peer_closed = true;
        prop_assert_eq!(drive(&mut conn, 1), Life::Over);
    }
}

#[test]
fn a_frame_too_big_is_answered_with_1009_and_the_deadline_ends_a_stuck_close() {
    let big = ws::client_frame(true, ws::opcode::TEXT, &[b'x'; 5000], [1, 2, 3, 4]);
    let (mut conn, _subscriber) = conn(Scripted { input: [big].into(), caps: [0; 1000].into(), ..Default::default() });
    assert_eq!(drive(&mut conn, 3), Life::Open, "the close frame waits for a writable socket");
    let deadline = conn.new_deadline().expect("a close sets its deadline");
    assert_eq!(conn.new_deadline(), None, "handed to the shard once");
    assert_eq!(conn.on_deadline(deadline - Duration::from_millis(1)), Life::Open);
    assert_eq!(conn.on_deadline(deadline), Life::Over, "the last frames did not leave in time");
    conn.socket_mut().caps.clear();
    let (mut conn, _subscriber) = conn_with_big_input();
    drive(&mut conn, 3);
    let frames = frames_on(&conn.socket_mut().wire);
    let (opcode, payload) = frames.last().unwrap();
    assert_eq!((*opcode, u16::from_be_bytes([payload[0], payload[1]])), (ws::opcode::CLOSE, ws_code::TOO_BIG));
}

fn conn_with_big_input() -> (WsConn<Scripted>, Arc<Subscriber>) {
    let big = ws::client_frame(true, ws::opcode::TEXT, &[b'x'; 5000], [1, 2, 3, 4]);
    conn(Scripted { input: [big].into(), ..Default::default() })
}

#[test]
fn the_static_pong_frame_is_the_encoded_pong() {
    assert_eq!(PONG_FRAME, &ws::text_frame(messages::PONG)[..]);
    let _ = Bytes::from_static(PONG_FRAME);
}
