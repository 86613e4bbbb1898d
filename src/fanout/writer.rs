//! Draining taken queue entries into vectored writes.
//!
//! Transport-neutral: the caller passes the non-blocking write call
//! (`write_vectored` on a shard's socket for WebSocket, a QUIC stream's
//! `write_chunks`). One call sends up to [`MAX_IOVECS`] frames, straight
//! from the shared `Bytes`: no copy into a per-connection buffer. A frame the
//! kernel took only part of stays at the front with its written bytes
//! counted in `front_written`, so an entry is whole until its last byte left.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;

use super::Entry;
use crate::protocol::Framing;

/// Frames per `writev`; Linux accepts up to 1024, 64 keeps the stack array small.
pub const MAX_IOVECS: usize = 64;

/// Entries a QUIC write fits in a small array: what a delivery has.
const FEW_CHUNKS: usize = 4;

/// The front of a batch being written: its entries, how much of the first
/// has left, and the framing whose bytes they are written in.
pub struct Front<'a> {
    pub entries: &'a mut VecDeque<Entry>,
    pub front_written: &'a mut usize,
    pub framing: Framing,
}

impl Front<'_> {
    /// Writes as much of the front as one call accepts; `done` sees each
    /// entry whose last byte left. Returns the bytes written.
    pub fn write_some(
        &mut self,
        done: impl FnMut(Entry),
        write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (i, entry) in self.entries.iter().take(MAX_IOVECS).enumerate() {
            let bytes = entry.bytes(self.framing);
            slices[i] = IoSlice::new(if i == 0 { &bytes[*self.front_written..] } else { bytes });
            count += 1;
        }
        let written = write(&slices[..count])?;
        self.consume(written, done);
        Ok(written)
    }

    /// As [`Front::write_some`] for a writer that takes `Bytes` (a QUIC
    /// stream keeps them until acknowledged): a refcount each, no copy.
    pub fn write_chunks<E>(
        &mut self,
        done: impl FnMut(Entry),
        write: impl FnOnce(&mut [Bytes]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        // A delivery is one chunk or two: filling and dropping 64 `Bytes` for
        // it cost more than the copy into the stream (docs/benchmarks.md §25).
        if self.entries.len() <= FEW_CHUNKS {
            self.write_chunks_from::<FEW_CHUNKS, E>(done, write)
        } else {
            self.write_chunks_from::<MAX_IOVECS, E>(done, write)
        }
    }

    /// [`Front::write_chunks`] of at most `N` entries, from an array of `N`.
    fn write_chunks_from<const N: usize, E>(
        &mut self,
        done: impl FnMut(Entry),
        write: impl FnOnce(&mut [Bytes]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let mut chunks: [Bytes; N] = std::array::from_fn(|_| Bytes::new());
        let mut count = 0;
        for (chunk, entry) in chunks.iter_mut().zip(self.entries.iter()) {
            let bytes = entry.bytes(self.framing);
            *chunk = if count == 0 { bytes.slice(*self.front_written..) } else { bytes.clone() };
            count += 1;
        }
        let written = write(&mut chunks[..count])?;
        self.consume(written, done);
        Ok(written)
    }

    /// Removes what `written` bytes completed; advances within a partly written front.
    fn consume(&mut self, written: usize, mut done: impl FnMut(Entry)) {
        let mut left = written;
        while left > 0 {
            let front = self.entries.front().expect("wrote more than was queued");
            let rest = front.bytes(self.framing).len() - *self.front_written;
            if left < rest {
                *self.front_written += left;
                return;
            }
            left -= rest;
            *self.front_written = 0;
            done(self.entries.pop_front().expect("front"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(frames: &[&'static [u8]]) -> VecDeque<Entry> {
        frames.iter().map(|f| Entry::Frame(Bytes::from_static(f))).collect()
    }

    #[test]
    fn partial_writes_resume_mid_frame() {
        let mut out = entries(&[b"hello", b"pp", b"world"]);
        let mut offset = 0;
        let mut front = Front { entries: &mut out, front_written: &mut offset, framing: Framing::WebSocket };
        let mut done = 0;
        assert_eq!(front.write_some(|_| done += 1, |_| Ok(3)).unwrap(), 3);
        let written = front
            .write_some(
                |_| done += 1,
                |s| {
                    assert_eq!((s.len(), &s[0][..]), (3, &b"lo"[..]));
                    Ok(5)
                },
            )
            .unwrap();
        assert_eq!((written, done), (5, 2));
        assert_eq!((out.len(), offset), (1, 1), "'w' of world has left");
    }

    proptest! {
        /// Whatever the kernel accepts per call, the bytes come out whole and
        /// in order, and every entry is done exactly once, after its last byte.
        #[test]
        fn any_write_sizes_reproduce_the_stream(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 1..100),
            caps in proptest::collection::vec(1usize..200, 1..400),
            chunked in any::<bool>(),
        ) {
            let expected: Vec<u8> = frames.concat();
            let mut out: VecDeque<Entry> = frames.iter().map(|f| Entry::Frame(Bytes::from(f.clone()))).collect();
            let mut offset = 0;
            let mut front = Front { entries: &mut out, front_written: &mut offset, framing: Framing::Quic };
            let (mut wire, mut done) = (Vec::new(), 0);
            let mut caps = caps.into_iter().cycle();
            while !front.entries.is_empty() {
                let cap = caps.next().unwrap();
                let mut take = |parts: Vec<&[u8]>| {
                    let mut left = cap;
                    for part in parts {
                        let n = left.min(part.len());
                        wire.extend_from_slice(&part[..n]);
                        left -= n;
                        if left == 0 { break; }
                    }
                    cap - left
                };
                if chunked {
                    front.write_chunks(|_| done += 1, |c| Ok::<_, ()>(take(c.iter().map(|b| &b[..]).collect()))).unwrap();
                } else {
                    front.write_some(|_| done += 1, |s| Ok(take(s.iter().map(|b| &b[..]).collect()))).unwrap();
                }
            }
            prop_assert_eq!(wire, expected);
            prop_assert_eq!(done, frames.len());
        }
    }
}
