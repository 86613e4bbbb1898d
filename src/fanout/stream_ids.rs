//! The `id:` line of an SSE stream of several rooms, and writing a batch
//! with it (docs/architecture.md, "Server-Sent Events").
//!
//! A broadcast's shared event ends with `id: <its room>@<its seq>`; a stream
//! of several rooms must name every room's last seq instead, so each of its
//! broadcasts leaves as two slices: the shared event up to its id line, and
//! a line of this stream's own, formatted into [`StreamIds`]'s buffer (no
//! allocation once the buffer has grown, no copy of the payload).
//!
//! Invariant: the seqs advance only when an entry's last byte has left, so
//! the line of an entry the kernel took in part is formatted again the same
//! at the next call, and the bytes that come out are one well-formed stream.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use super::Entry;
use super::writer::MAX_IOVECS;
use crate::protocol::{Framing, sse};

/// Entries per write: each broadcast takes two slices.
const ENTRIES_PER_WRITE: usize = MAX_IOVECS / 2;

/// The last seq delivered of every room of a stream, in the stream's order.
#[derive(Debug)]
pub struct StreamIds {
    rooms: Vec<(Arc<str>, u64)>,
    /// The id lines of the entries of one write, back to back.
    lines: Vec<u8>,
    /// The seqs as they stand after each entry of one write.
    scratch: Vec<u64>,
    /// Of the front entry, the bytes of its shared event already reported
    /// as written: the queue counts the shared events' bytes, not the wire's.
    front_reported: usize,
}

impl StreamIds {
    /// Starts at the welcome seqs (the id the welcome event carried).
    pub fn new(rooms: impl IntoIterator<Item = (Arc<str>, u64)>) -> StreamIds {
        StreamIds { rooms: rooms.into_iter().collect(), lines: Vec::new(), scratch: Vec::new(), front_reported: 0 }
    }

    fn slot(&self, room: &Arc<str>) -> Option<usize> {
        self.rooms.iter().position(|(r, _)| Arc::ptr_eq(r, room) || **r == **room)
    }

    /// The id line after the scratch seqs, then the blank line.
    fn write_line(&mut self) {
        let (rooms, lines) = (&self.rooms, &mut self.lines);
        sse::write_id_line(lines, rooms.iter().zip(&self.scratch).map(|((room, _), seq)| (&**room, *seq)));
        lines.push(b'\n');
    }

    /// Writes as much of `entries` as one call takes, `front_written` bytes
    /// of the first having left already; `done` sees each entry whose last
    /// byte left. Returns how many of the queued events' bytes that was (what
    /// the queue counts; never more than the entries hold).
    pub fn write_some(
        &mut self,
        entries: &mut VecDeque<Entry>,
        front_written: &mut usize,
        mut done: impl FnMut(Entry),
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        // First the lines, each after the seqs of the entries before it; then
        // the slices over the settled buffer.
        self.scratch.clear();
        self.scratch.extend(self.rooms.iter().map(|(_, seq)| *seq));
        self.lines.clear();
        let mut lines = [(0usize, 0usize); ENTRIES_PER_WRITE];
        // Each broadcast's room slot, found once for both loops.
        let mut slots = [None; ENTRIES_PER_WRITE];
        let taken = entries.len().min(ENTRIES_PER_WRITE);
        for (i, entry) in entries.iter().take(taken).enumerate() {
            if let Some(broadcast) = entry.broadcast()
                && let Some(slot) = self.slot(&broadcast.room)
            {
                slots[i] = Some((slot, broadcast.seq));
                self.scratch[slot] = broadcast.seq;
                let start = self.lines.len();
                self.write_line();
                lines[i] = (start, self.lines.len());
            }
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut lens = [0usize; ENTRIES_PER_WRITE];
        let mut used = 0;
        let mut skip = *front_written;
        for (i, entry) in entries.iter().take(taken).enumerate() {
            let (start, end) = lines[i];
            let bytes = entry.bytes(Framing::Sse);
            let parts: [&[u8]; 2] = match entry.broadcast() {
                Some(broadcast) if end > start => {
                    [sse::without_id(bytes, &broadcast.room, broadcast.seq), &self.lines[start..end]]
                }
                _ => [bytes, &[]],
            };
            lens[i] = parts[0].len() + parts[1].len();
            for part in parts {
                let cut = skip.min(part.len());
                skip -= cut;
                if part.len() > cut {
                    slices[used] = IoSlice::new(&part[cut..]);
                    used += 1;
                }
            }
        }
        let mut left = write(&slices[..used])?;
        let mut reported = 0;
        let mut i = 0;
        while left > 0 {
            let rest = lens[i] - *front_written;
            let queued = entries[0].bytes(Framing::Sse).len();
            if left < rest {
                *front_written += left;
                let progress = (*front_written).min(queued);
                reported += progress.saturating_sub(self.front_reported);
                self.front_reported = self.front_reported.max(progress);
                break;
            }
            left -= rest;
            *front_written = 0;
            reported += queued - self.front_reported;
            self.front_reported = 0;
            let entry = entries.pop_front().expect("wrote more than was queued");
            if let Some((slot, seq)) = slots[i] {
                self.rooms[slot].1 = seq;
            }
            done(entry);
            i += 1;
        }
        Ok(reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{Broadcast, Delivery, Frames};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn broadcast(room: &Arc<str>, seq: u64) -> Entry {
        let frames = Frames::encode(room, seq, 1, "1");
        Entry::Broadcast(Arc::new(Broadcast::new(room, seq, Delivery::default(), frames, 1)))
    }

    /// The ids an `EventSource` would hold after each event of `stream`.
    fn ids_of(stream: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(stream).unwrap();
        text.split("\n\n")
            .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("id: ")))
            .map(String::from)
            .collect()
    }

    proptest! {
        /// Whatever the kernel takes per call, the stream is every entry once,
        /// in order, each broadcast with the id of every room after it.
        #[test]
        fn any_write_sizes_give_every_room_in_every_id(
            picks in proptest::collection::vec(0usize..3, 1..80),
            caps in proptest::collection::vec(1usize..300, 1..400),
        ) {
            let rooms: [Arc<str>; 3] = [Arc::from("a"), Arc::from("bb"), Arc::from("c")];
            let mut seqs = [0u64, 10, 100];
            let mut ids = StreamIds::new(rooms.iter().cloned().zip(seqs));
            let (mut entries, mut expected) = (VecDeque::new(), Vec::new());
            for (n, pick) in picks.iter().enumerate() {
                if n % 7 == 3 {
                    entries.push_back(Entry::Frame(Bytes::from_static(b":\n\n")));
                    continue;
                }
                seqs[*pick] += 1;
                entries.push_back(broadcast(&rooms[*pick], seqs[*pick]));
                expected.push(format!("a@{},bb@{},c@{}", seqs[0], seqs[1], seqs[2]));
            }
            let total = entries.len();
            let queued: usize = entries.iter().map(|e| e.bytes(Framing::Sse).len()).sum();
            let (mut wire, mut done, mut front, mut reported) = (Vec::new(), 0, 0, 0);
            let mut caps = caps.into_iter().cycle();
            while !entries.is_empty() {
                let cap = caps.next().unwrap();
                reported += ids.write_some(&mut entries, &mut front, |_| done += 1, |slices| {
                    let mut left = cap;
                    for slice in slices {
                        let n = left.min(slice.len());
                        wire.extend_from_slice(&slice[..n]);
                        left -= n;
                    }
                    Ok(cap - left)
                }).unwrap();
            }
            prop_assert_eq!(done, total);
            prop_assert_eq!(reported, queued, "the queue's count comes back to zero");
            prop_assert_eq!(ids_of(&wire), expected);
        }
    }
}
