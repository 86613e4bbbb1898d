//! Draining taken queue entries into vectored writes.
//!
//! Transport-neutral: the caller passes the non-blocking write call
//! (`TcpStream::try_write_vectored` for WebSocket). One call sends up to
//! [`MAX_IOVECS`] frames in one syscall, straight from the shared `Bytes`:
//! no copy into a per-connection buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Buf as _;

use super::queue::{Entry, EntryKind};

/// Frames per `writev`; Linux accepts up to 1024, 64 keeps the stack array small.
pub const MAX_IOVECS: usize = 64;

/// What one write put on the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Broadcast bytes written (to release from the queue's byte bound).
    pub broadcast_bytes: usize,
    /// Broadcast frames completed: deliveries.
    pub deliveries: u64,
}

/// Writes as much of the front of `out` as one call accepts, removes what was
/// completed and advances a partly written frame in place.
pub fn write_some(
    out: &mut VecDeque<Entry>,
    write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<Progress> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let mut count = 0;
    for entry in out.iter().take(MAX_IOVECS) {
        slices[count] = IoSlice::new(&entry.frame);
        count += 1;
    }
    let mut written = write(&slices[..count])?;
    let mut progress = Progress::default();
    while written > 0 {
        let front = out.front_mut().expect("wrote more than was queued");
        let take = written.min(front.frame.len());
        written -= take;
        if front.kind == EntryKind::Broadcast {
            progress.broadcast_bytes += take;
        }
        if take == front.frame.len() {
            if front.kind == EntryKind::Broadcast {
                progress.deliveries += 1;
            }
            out.pop_front();
        } else {
            front.frame.advance(take);
        }
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn entry(data: &'static [u8], kind: EntryKind) -> Entry {
        Entry { frame: Bytes::from_static(data), kind }
    }

    #[test]
    fn partial_writes_resume_mid_frame() {
        let mut out: VecDeque<Entry> = [
            entry(b"hello", EntryKind::Broadcast),
            entry(b"pp", EntryKind::Control),
            entry(b"world", EntryKind::Broadcast),
        ]
        .into();
        let p = write_some(&mut out, |_| Ok(3)).unwrap();
        assert_eq!(p, Progress { broadcast_bytes: 3, deliveries: 0 });
        assert_eq!(&out[0].frame[..], b"lo");
        let p = write_some(&mut out, |s| {
            assert_eq!(s.len(), 3);
            Ok(5)
        })
        .unwrap();
        assert_eq!(p, Progress { broadcast_bytes: 3, deliveries: 1 });
        assert_eq!(&out[0].frame[..], b"orld");
    }

    proptest! {
        /// Whatever the kernel accepts per call, the bytes come out whole and in order.
        #[test]
        fn any_write_sizes_reproduce_the_stream(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 1..100),
            caps in proptest::collection::vec(1usize..200, 1..400),
        ) {
            let expected: Vec<u8> = frames.concat();
            let mut out: VecDeque<Entry> = frames.iter().map(|f| Entry { frame: Bytes::from(f.clone()), kind: EntryKind::Broadcast }).collect();
            let mut wire = Vec::new();
            let mut deliveries = 0;
            let mut caps = caps.into_iter().cycle();
            while !out.is_empty() {
                let cap = caps.next().unwrap();
                let p = write_some(&mut out, |slices| {
                    let mut left = cap;
                    for s in slices {
                        let n = left.min(s.len());
                        wire.extend_from_slice(&s[..n]);
                        left -= n;
                        if left == 0 { break; }
                    }
                    Ok(cap - left)
                }).unwrap();
                deliveries += p.deliveries;
            }
            prop_assert_eq!(wire, expected);
            prop_assert_eq!(deliveries, frames.len() as u64);
        }
    }
}
