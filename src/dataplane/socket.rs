//! The byte stream under a shard-owned connection: non-blocking calls only,
//! on a socket registered with the shard's mio poll (edge-triggered, so the
//! connection reads and writes until `WouldBlock`).
//!
//! Plain TCP is the socket itself; TLS drives rustls on the shard (it is
//! sans-I/O), and adds the records rustls made that the kernel has not taken.

use std::io::{self, IoSlice, Read as _, Write as _};

use mio::net::TcpStream;
use rustls::ServerConnection;

pub trait ShardSocket: Send + 'static {
    /// `Ok(0)`: the peer closed. `WouldBlock`: nothing now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// The bytes of `bufs` taken, from the front.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Taken bytes still to be written to the network.
    fn has_pending_output(&self) -> bool {
        false
    }
    /// Writes what [`ShardSocket::has_pending_output`] holds; `WouldBlock` when it cannot all go now.
    fn flush_pending(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Decrypted input is waiting: readable without a readiness event.
    fn has_pending_input(&self) -> bool {
        false
    }
    /// Says goodbye (TLS close_notify, as far as the socket takes it) and half-closes.
    fn shutdown(&mut self);
}

impl ShardSocket for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self, bufs)
    }

    fn shutdown(&mut self) {
        let _ = TcpStream::shutdown(self, std::net::Shutdown::Write);
    }
}

/// `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` rather than `writev`: the same
/// segments, without the file layer's dispatch a `writev` on a socket goes
/// through (`vfs_writev`, `fdget_pos`, `sock_write_iter`: a tenth of the
/// server's CPU per delivery in a profile of the 5/s fan-out). One slice, the
/// usual delivery, goes by `send`, which reaches the same `tcp_sendmsg` without
/// a `msghdr` and an iovec to copy in (docs/benchmarks.md §25).
fn send_vectored(tcp: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    const FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let sent = match bufs {
        // SAFETY: the pointer and length are those of a live slice, read by
        // the kernel for the duration of the call only.
        [one] => unsafe { libc::send(tcp.as_raw_fd(), one.as_ptr().cast(), one.len(), FLAGS) },
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (std
        // guarantees it); the header points at `bufs` for the duration of the
        // call only, and names no address, control data or flags for the
        // kernel to write.
        _ => unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            header.msg_iovlen = bufs.len() as _;
            libc::sendmsg(tcp.as_raw_fd(), &header, FLAGS)
        },
    };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// A TLS subscriber: the TCP socket and its rustls connection.
pub struct TlsShardSocket {
    tcp: TcpStream,
    /// Boxed: a rustls connection is large, and the slab holds this.
    tls: Box<ServerConnection>,
    plaintext_pending: bool,
}

impl TlsShardSocket {
    pub fn new(tcp: TcpStream, mut tls: ServerConnection) -> TlsShardSocket {
        // The handshake's reader may have decrypted more than it handed out.
        let plaintext_pending = tls.process_new_packets().is_ok_and(|state| state.plaintext_bytes_to_read() > 0);
        TlsShardSocket { tcp, tls: Box::new(tls), plaintext_pending }
    }

    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

impl ShardSocket for TlsShardSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => {
                    // A full buffer may have left more behind: look again before waiting.
                    self.plaintext_pending = n == buf.len() && n > 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.plaintext_pending = false;
            if self.tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(error) = self.tls.process_new_packets() {
                // rustls queued an alert saying why: send it if the socket takes it.
                let _ = self.write_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records already made go first; the writer's buffer is bounded by rustls.
        self.write_records()?;
        let taken = self.tls.writer().write_vectored(bufs)?;
        match self.write_records() {
            Ok(()) => Ok(taken),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(taken),
            Err(e) => Err(e),
        }
    }

    fn has_pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        self.write_records()
    }

    fn has_pending_input(&self) -> bool {
        self.plaintext_pending
    }

    fn shutdown(&mut self) {
        self.tls.send_close_notify();
        let _ = self.write_records();
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }
}

/// A viewer's socket as the shard holds it: plain or TLS.
pub enum AnySocket {
    Plain(TcpStream),
    Tls(TlsShardSocket),
}

impl AnySocket {
    /// The socket to register with the poll.
    pub fn source(&mut self) -> &mut TcpStream {
        match self {
            AnySocket::Plain(tcp) => tcp,
            AnySocket::Tls(tls) => &mut tls.tcp,
        }
    }
}

impl ShardSocket for AnySocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AnySocket::Plain(s) => ShardSocket::read(s, buf),
            AnySocket::Tls(s) => s.read(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            AnySocket::Plain(s) => ShardSocket::write_vectored(s, bufs),
            AnySocket::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn has_pending_output(&self) -> bool {
        matches!(self, AnySocket::Tls(s) if s.has_pending_output())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            AnySocket::Plain(_) => Ok(()),
            AnySocket::Tls(s) => s.flush_pending(),
        }
    }

    fn has_pending_input(&self) -> bool {
        matches!(self, AnySocket::Tls(s) if s.has_pending_input())
    }

    fn shutdown(&mut self) {
        match self {
            AnySocket::Plain(s) => ShardSocket::shutdown(s),
            AnySocket::Tls(s) => s.shutdown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair: the shard's non-blocking end and a blocking reader.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        writer.set_nonblocking(true).unwrap();
        (TcpStream::from_std(writer), reader)
    }

    #[test]
    fn one_slice_and_many_reach_the_peer_whole_and_in_order() {
        let (mut shard_end, mut peer) = pair();
        let one = ShardSocket::write_vectored(&mut shard_end, &[IoSlice::new(b"one frame")]).unwrap();
        let parts = [IoSlice::new(b"two "), IoSlice::new(b""), IoSlice::new(b"and three")];
        let many = ShardSocket::write_vectored(&mut shard_end, &parts).unwrap();
        assert_eq!((one, many), (9, 13));
        assert_eq!(ShardSocket::write_vectored(&mut shard_end, &[]).unwrap(), 0);
        let mut received = [0u8; 22];
        peer.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"one frametwo and three");
    }
}
