//! The fan-out pipeline: from one accepted broadcast to a refcounted frame in
//! every subscriber's queue.
//!
//! * [`broadcast`]: a broadcast encoded once per framing (`Bytes` to share).
//! * [`lane`]: per-shard ordered hand-off, so shards fan out in parallel while
//!   each shard still delivers a room's broadcasts in `seq` order.
//! * [`reach`]: per-shard counts of what became of each broadcast's copies.
//! * [`queue`]: the bounded per-subscriber queue and its named overflow outcomes.
//! * [`tag`]: what the queue knows of each entry: priority, room, conflate key.
//! * [`outbox`]: the writer's side of a queue, shared by the transports.
//! * [`writer`]: draining a batch into vectored socket writes.
//! * [`stream_ids`]: the same for an SSE stream of several rooms, with its own `id:` line.

pub mod broadcast;
pub mod lane;
pub mod outbox;
pub mod queue;
pub mod reach;
pub mod stream_ids;
pub mod tag;
pub mod writer;

pub use broadcast::{Broadcast, Entry, Frames};
pub use queue::{Drops, PushOutcome, QueueLimits, Subscriber};
pub use tag::{ConflateKey, Delivery, Priority};
