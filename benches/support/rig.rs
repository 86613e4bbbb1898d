//! An in-process room with N subscribers and no sockets: what the fan-out
//! costs before any transport is involved.

#![allow(dead_code)] // shared by benches and tests that each use part of it

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bullhorn::fanout::{ConflateKey, Delivery, Entry, Priority, QueueLimits, Subscriber};
use bullhorn::metrics::Metrics;
use bullhorn::presence::Member;
use bullhorn::protocol::Framing;
use bullhorn::room::resume::ResumeLimits;
use bullhorn::room::{Extras, Room, RoomConfig, RoomSpec};

/// Whether the delivery features of contract §2–3 are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Features {
    /// No resume window, default priority, no conflate key, no idempotency key.
    Off,
    /// A 64-message resume window, `high` priority, a conflate key and a fresh
    /// idempotency key on every broadcast.
    On,
    /// The live-room features (contract §9) on every broadcast, the rest as
    /// `Off`: a `ttl_ms` (a minute: nothing expires) and a pin (every
    /// broadcast replaces the sticky message), in a room with occupancy on.
    /// Reach is counted in every mode: it cannot be turned off.
    Live,
}

pub struct Rig {
    pub room: Arc<Room>,
    pub subscribers: Vec<Arc<Subscriber>>,
    features: Features,
    published: AtomicU64,
    out: VecDeque<Entry>,
}

impl Rig {
    pub fn new(subscribers: usize, shards: usize) -> Rig {
        Rig::with(subscribers, shards, Features::Off)
    }

    pub fn with(subscribers: usize, shards: usize, features: Features) -> Rig {
        Rig::built(subscribers, shards, features, None)
    }

    /// A third of the subscribers on each of WebSocket, QUIC and WebSocket
    /// with `permessage-deflate`; every broadcast is also compressed.
    pub fn with_compression(subscribers: usize, shards: usize) -> Rig {
        Rig::built(subscribers, shards, Features::Off, Some(Framing::WebSocketDeflate))
    }

    /// A third of the subscribers on each of WebSocket, QUIC and Server-Sent Events.
    pub fn with_sse(subscribers: usize, shards: usize) -> Rig {
        Rig::built(subscribers, shards, Features::Off, Some(Framing::Sse))
    }

    /// `third`: the framing of every third subscriber, if not WebSocket's or QUIC's.
    fn built(subscribers: usize, shards: usize, features: Features, third: Option<Framing>) -> Rig {
        let compression = third == Some(Framing::WebSocketDeflate);
        let spec = RoomSpec {
            app: Arc::from("bench"),
            id: Arc::from("gifts"),
            name: "gifts".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            seq: 0,
            sticky: None,
            occupancy_interval_ms: if features == Features::Live { 1_000 } else { 0 },
            occupied: false,
        };
        let resume = match features {
            Features::Off | Features::Live => ResumeLimits { messages: 0, ..ResumeLimits::default() },
            Features::On => ResumeLimits::default(),
        };
        let room = Arc::new(Room::new(
            spec,
            RoomConfig {
                shards,
                resume,
                broadcasts_per_sec: 0,
                lanes: Default::default(),
                compress_min_bytes: compression.then_some(0),
            },
            Metrics::new(),
        ));
        let subscribers: Vec<Arc<Subscriber>> = (0..subscribers as u64)
            .map(|id| {
                let framing = match (third, id % 3) {
                    (Some(third), 2) => third,
                    _ if id % 2 == 0 => Framing::WebSocket,
                    _ => Framing::Quic,
                };
                let sub = Arc::new(Subscriber::new(id, framing, [room.id().clone()], QueueLimits::default()));
                room.join(id, Member { subscriber: sub.clone(), slot: 0 }, None).expect("open room");
                sub
            })
            .collect();
        Rig { room, subscribers, features, published: AtomicU64::new(0), out: VecDeque::new() }
    }

    /// One broadcast through the whole fan-out (sequencer, lanes, shards, queues).
    pub fn publish(&self, data: &str) {
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        match self.features {
            Features::Off => {
                self.room.publish(data, Delivery::default(), None);
            }
            Features::On => {
                let delivery = Delivery { priority: Priority::High, conflate: ConflateKey::of("score") };
                self.room.publish(data, delivery, Some(&format!("key-{n}")));
            }
            Features::Live => {
                let extras = Extras { ttl: Some(Duration::from_secs(60)), sticky: true, ..Extras::default() };
                self.room.publish_with(data, Delivery::default(), extras, None);
            }
        }
    }

    /// What the connection tasks would do: take every queue and "write" it.
    pub fn drain_queues(&mut self) -> usize {
        let mut frames = 0;
        for sub in &self.subscribers {
            sub.take(&mut self.out);
            let bytes: usize = self.out.iter().map(|entry| entry.bytes(sub.framing()).len()).sum();
            frames += self.out.len();
            self.out.clear();
            sub.written(bytes);
            sub.give_back(&mut self.out);
        }
        frames
    }
}

/// A 100-byte `data` value.
pub fn payload_100() -> String {
    let text = "x".repeat(100 - r#"{"text":""}"#.len());
    format!(r#"{{"text":"{text}"}}"#)
}
