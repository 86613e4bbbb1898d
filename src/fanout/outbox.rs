//! The writer's side of a subscriber's queue, the same for every transport:
//! take a batch, drop what expired before it could be written, hand the
//! rest to the socket, count each broadcast the socket took in its reach and
//! the batch's broadcasts as deliveries once it is all written, and give the
//! buffer back.
//!
//! `ttl_ms` is checked here, where a frame is about to be written, and only
//! once the batch's earliest deadline has passed: no timer per message, and
//! no scan of a batch that holds no broadcast with a ttl.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use metrics::Counter;

use super::reach::Fate;
use super::stream_ids::StreamIds;
use super::writer::Front;
use super::{Entry, Subscriber};
use crate::protocol::Framing;
use crate::protocol::close::CloseReason;
use crate::protocol::messages::LagReason;

/// The batch a connection is writing.
#[derive(Debug)]
pub struct Outbox {
    /// Whole entries, front first; the transport writes from here.
    frames: VecDeque<Entry>,
    /// Bytes of the front entry already written.
    front_written: usize,
    /// Broadcasts among `frames`, counted as deliveries once `frames` is written.
    owed_deliveries: u64,
    /// The earliest `ttl_ms` deadline among the broadcasts in `frames`.
    soonest_expiry: Option<Instant>,
    /// The subscriber's id: which shard's reach counters its writes count in.
    subscriber: u64,
    framing: Framing,
}

impl Outbox {
    pub fn new(subscriber: &Subscriber) -> Outbox {
        Outbox {
            frames: VecDeque::new(),
            front_written: 0,
            owed_deliveries: 0,
            soonest_expiry: None,
            subscriber: subscriber.id(),
            framing: subscriber.framing(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame of the connection's own after the batch (a closing message).
    pub fn push_frame(&mut self, frame: Bytes) {
        self.frames.push_back(Entry::Frame(frame));
    }

    /// Takes everything queued (the outbox must be empty). Returns the close
    /// reason once the subscriber must close; a slow consumer's backlog is
    /// dropped right here, since it is not reading.
    pub fn refill(&mut self, subscriber: &Subscriber) -> Option<CloseReason> {
        debug_assert!(self.frames.is_empty());
        let taken = subscriber.take(&mut self.frames);
        self.owed_deliveries += taken.broadcasts as u64;
        self.soonest_expiry = taken.soonest_expiry;
        if let Some(CloseReason::SlowConsumer { .. }) = taken.close {
            for broadcast in self.frames.drain(..).filter_map(|e| e.broadcast().cloned()) {
                broadcast.reach.count(self.subscriber, Fate::Slow);
            }
            self.owed_deliveries = 0;
            self.soonest_expiry = None;
        }
        taken.close
    }

    /// Replaces every broadcast whose ttl has passed, and that has not begun
    /// to leave, with a `lagged` (`expired`) where it stood (one for a run of
    /// them in a room). Returns how many expired.
    pub fn expire(&mut self, subscriber: &Subscriber, now: Instant) -> u64 {
        if self.soonest_expiry.is_none_or(|soonest| now < soonest) {
            return 0;
        }
        self.soonest_expiry = None;
        let (mut expired, mut removed, mut added) = (0u64, 0usize, 0usize);
        // The lagged this scan last wrote: its index, room and count.
        let mut run: Option<(usize, Arc<str>, u64)> = None;
        let mut i = usize::from(self.front_written > 0);
        while i < self.frames.len() {
            let Some(broadcast) = self.frames[i].broadcast().cloned() else {
                run = None;
                i += 1;
                continue;
            };
            if !broadcast.expired(now) {
                if let Some(at) = broadcast.expires_at {
                    self.soonest_expiry = Some(self.soonest_expiry.map_or(at, |soonest| soonest.min(at)));
                }
                run = None;
                i += 1;
                continue;
            }
            broadcast.reach.count(self.subscriber, Fate::Expired);
            expired += 1;
            removed += broadcast.frames.get(self.framing).len();
            match &mut run {
                Some((at, room, missed)) if *at + 1 == i && **room == *broadcast.room => {
                    *missed += 1;
                    let lagged = subscriber.lagged_frame(room, *missed, LagReason::Expired);
                    removed += self.frames[*at].bytes(self.framing).len();
                    added += lagged.len();
                    self.frames[*at] = Entry::Frame(lagged);
                    self.frames.remove(i);
                }
                _ => {
                    let lagged = subscriber.lagged_frame(&broadcast.room, 1, LagReason::Expired);
                    added += lagged.len();
                    self.frames[i] = Entry::Frame(lagged);
                    run = Some((i, Arc::clone(&broadcast.room), 1));
                    i += 1;
                }
            }
        }
        self.owed_deliveries -= expired;
        subscriber.rewritten(removed, added);
        expired
    }

    /// Writes what one vectored call takes (`TcpStream::write_vectored` or
    /// TLS over it); each broadcast whose last byte left counts as delivered
    /// in its reach. Returns the bytes written.
    pub fn write(&mut self, write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>) -> io::Result<usize> {
        let subscriber = self.subscriber;
        let mut front =
            Front { entries: &mut self.frames, front_written: &mut self.front_written, framing: self.framing };
        front.write_some(|entry| delivered(&entry, subscriber), write)
    }

    /// [`Outbox::write`] for an SSE stream of several rooms: each broadcast
    /// leaves with the stream's own `id:` line (`StreamIds`). Returns the
    /// bytes of queued events that left, as [`Outbox::sent`] takes them.
    pub fn write_with_ids(
        &mut self,
        ids: &mut StreamIds,
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let subscriber = self.subscriber;
        ids.write_some(&mut self.frames, &mut self.front_written, |entry| delivered(&entry, subscriber), write)
    }

    /// [`Outbox::write`] for a writer of `Bytes` chunks (a QUIC stream).
    pub fn write_chunks<E>(&mut self, write: impl FnOnce(&mut [Bytes]) -> Result<usize, E>) -> Result<usize, E> {
        let subscriber = self.subscriber;
        let mut front =
            Front { entries: &mut self.frames, front_written: &mut self.front_written, framing: self.framing };
        front.write_chunks(|entry| delivered(&entry, subscriber), write)
    }

    /// Records that `bytes` left (the written entries already removed);
    /// once the batch is done, counts its deliveries and gives the buffer
    /// back to the queue.
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

fn delivered(entry: &Entry, subscriber: u64) {
    if let Some(broadcast) = entry.broadcast() {
        broadcast.reach.count(subscriber, Fate::Delivered);
    }
}

impl Drop for Outbox {
    /// The connection ended with these never written.
    fn drop(&mut self) {
        for broadcast in self.frames.iter().filter_map(Entry::broadcast) {
            broadcast.reach.count(self.subscriber, Fate::Disconnected);
        }
    }
}
