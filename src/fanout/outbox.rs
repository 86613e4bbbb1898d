//! The writer's side of a subscriber's queue, the same for every transport:
//! take a batch, hand it to the socket, release its bytes, count its
//! broadcasts as deliveries once it is all written, and give the buffer back.

use std::collections::VecDeque;

use bytes::Bytes;
use metrics::Counter;

use super::Subscriber;
use crate::protocol::close::CloseReason;

/// The batch a connection task is writing.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Whole frames, front first; the transport writes from here.
    pub frames: VecDeque<Bytes>,
    /// Broadcasts among `frames`, counted as deliveries once `frames` is written.
    owed_deliveries: u64,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Takes everything queued (the outbox must be empty). Returns the close
    /// reason once the subscriber must close; a slow consumer's backlog is
    /// dropped right here, since it is not reading.
    pub fn refill(&mut self, subscriber: &Subscriber) -> Option<CloseReason> {
        debug_assert!(self.frames.is_empty());
        let taken = subscriber.take(&mut self.frames);
        self.owed_deliveries += taken.broadcasts as u64;
        if let Some(CloseReason::SlowConsumer { .. }) = taken.close {
            self.frames.clear();
            self.owed_deliveries = 0;
        }
        taken.close
    }

    /// Records that `bytes` left (the written frames already removed from
    /// `frames`); once the batch is done, counts its deliveries and gives the
    /// buffer back to the queue.
    pub fn sent(&mut self, subscriber: &Subscriber, bytes: usize, deliveries: &Counter) {
        subscriber.written(bytes);
        if self.frames.is_empty() {
            if self.owed_deliveries > 0 {
                deliveries.increment(std::mem::take(&mut self.owed_deliveries));
            }
            subscriber.give_back(&mut self.frames);
        }
    }
}
