//! The close sequence a shard's TCP connection goes through, the same for a
//! WebSocket subscriber (after its close frame) and an SSE stream (after its
//! `closing` event): the last bytes must leave by a deadline, then the
//! connection is half-closed and waits for the peer's close until a second
//! one. Deadlines are handed to the shard's queue once each. A Pusher
//! client told of a drain reconnects at once (4200), so its drain close
//! waits for its turn in the drain window while the connection goes on
//! writing: that is the only wait of another length.

use std::time::{Duration, Instant};

use super::socket::ShardSocket;
use super::ws::Life;
use crate::protocol::close::CloseReason;

/// How long the final frames may take to leave, and then the peer to close.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not closing.
    Open,
    /// Not closing yet: a drain close waits for its turn (the deadline);
    /// everything is written meanwhile.
    Waiting(CloseReason),
    /// A waiting close whose turn came: the queue is to be closed.
    Due(CloseReason),
    /// The last message is queued; its bytes must leave by the deadline.
    Flushing,
    /// Half-closed; waiting for the peer to close until the deadline.
    Lingering,
}

#[derive(Debug)]
pub struct CloseStage {
    stage: Stage,
    /// When the current stage must be over.
    deadline: Option<Instant>,
    /// `deadline` was set and not yet handed to the shard.
    deadline_is_new: bool,
}

impl Default for CloseStage {
    fn default() -> CloseStage {
        CloseStage { stage: Stage::Open, deadline: None, deadline_is_new: false }
    }
}

impl CloseStage {
    /// Not closing (a close waiting for its turn is not one yet).
    pub fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open | Stage::Waiting(_) | Stage::Due(_))
    }

    /// A drain close was asked and is waiting for its turn, or came due.
    pub fn is_waiting(&self) -> bool {
        matches!(self.stage, Stage::Waiting(_) | Stage::Due(_))
    }

    /// Half-closed: what the peer still sends is its last words.
    pub fn is_lingering(&self) -> bool {
        self.stage == Stage::Lingering
    }

    /// The last message was queued: it must leave by the deadline.
    pub fn begin(&mut self, now: Instant) {
        self.stage = Stage::Flushing;
        self.set_deadline(now + CLOSE_DEADLINE);
    }

    /// Lets the close for `reason` wait until `until`, writing meanwhile;
    /// then [`CloseStage::take_due`] hands it back.
    pub fn wait(&mut self, reason: CloseReason, until: Instant) {
        self.stage = Stage::Waiting(reason);
        self.set_deadline(until);
    }

    /// A waiting close whose turn came, once: the queue is to be closed now.
    pub fn take_due(&mut self) -> Option<CloseReason> {
        match self.stage {
            Stage::Due(reason) => {
                self.stage = Stage::Open;
                Some(reason)
            }
            _ => None,
        }
    }

    /// Nothing is left to write. While closing, half-closes once the last
    /// message has left and returns true (the connection waits for its
    /// peer); false when not closing.
    pub fn flushed(&mut self, socket: &mut impl ShardSocket, now: Instant) -> bool {
        match self.stage {
            Stage::Open | Stage::Waiting(_) | Stage::Due(_) => false,
            Stage::Flushing => {
                socket.shutdown();
                self.stage = Stage::Lingering;
                self.set_deadline(now + CLOSE_DEADLINE);
                true
            }
            Stage::Lingering => true,
        }
    }

    fn set_deadline(&mut self, at: Instant) {
        self.deadline = Some(at);
        self.deadline_is_new = true;
    }

    /// The deadline a handler just started, once: the shard queues it.
    pub fn new_deadline(&mut self) -> Option<Instant> {
        std::mem::take(&mut self.deadline_is_new).then_some(self.deadline).flatten()
    }

    /// A queued deadline came: over if the current stage ran out of time;
    /// a waiting close whose turn came is due (the shard wakes the
    /// connection, which takes it: [`CloseStage::take_due`]).
    pub fn on_deadline(&mut self, now: Instant) -> Life {
        match (self.stage, self.deadline) {
            (Stage::Waiting(reason), Some(deadline)) if now >= deadline => {
                self.stage = Stage::Due(reason);
                Life::Open
            }
            (Stage::Open | Stage::Waiting(_) | Stage::Due(_), _) => Life::Open,
            (_, Some(deadline)) if now >= deadline => Life::Over,
            _ => Life::Open,
        }
    }
}
