//! Draining taken queue frames into vectored writes.
//!
//! Transport-neutral: the caller passes the non-blocking write call
//! (`TcpStream::try_write_vectored` for WebSocket). One call sends up to
//! [`MAX_IOVECS`] frames in one syscall, straight from the shared `Bytes`:
//! no copy into a per-connection buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf as _, Bytes};

/// Frames per `writev`; Linux accepts up to 1024, 64 keeps the stack array small.
pub const MAX_IOVECS: usize = 64;

/// Writes as much of the front of `out` as one call accepts, removes what was
/// completed and advances a partly written frame in place. Returns the bytes written.
pub fn write_some(
    out: &mut VecDeque<Bytes>,
    write: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let mut count = 0;
    for frame in out.iter().take(MAX_IOVECS) {
        slices[count] = IoSlice::new(frame);
        count += 1;
    }
    let written = write(&slices[..count])?;
    let mut left = written;
    while left > 0 {
        let front = out.front_mut().expect("wrote more than was queued");
        if left >= front.len() {
            left -= front.len();
            out.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_writes_resume_mid_frame() {
        let mut out: VecDeque<Bytes> =
            [Bytes::from_static(b"hello"), Bytes::from_static(b"pp"), Bytes::from_static(b"world")].into();
        assert_eq!(write_some(&mut out, |_| Ok(3)).unwrap(), 3);
        assert_eq!(&out[0][..], b"lo");
        let written = write_some(&mut out, |s| {
            assert_eq!(s.len(), 3);
            Ok(5)
        })
        .unwrap();
        assert_eq!(written, 5);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][..], b"orld");
    }

    proptest! {
        /// Whatever the kernel accepts per call, the bytes come out whole and in order.
        #[test]
        fn any_write_sizes_reproduce_the_stream(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 1..100),
            caps in proptest::collection::vec(1usize..200, 1..400),
        ) {
            let expected: Vec<u8> = frames.concat();
            let mut out: VecDeque<Bytes> = frames.iter().map(|f| Bytes::from(f.clone())).collect();
            let mut wire = Vec::new();
            let mut caps = caps.into_iter().cycle();
            while !out.is_empty() {
                let cap = caps.next().unwrap();
                write_some(&mut out, |slices| {
                    let mut left = cap;
                    for s in slices {
                        let n = left.min(s.len());
                        wire.extend_from_slice(&s[..n]);
                        left -= n;
                        if left == 0 { break; }
                    }
                    Ok(cap - left)
                }).unwrap();
            }
            prop_assert_eq!(wire, expected);
        }
    }
}
