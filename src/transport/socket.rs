//! The byte stream under a WebSocket subscriber, as its connection loop
//! drives it: readiness polls and non-blocking reads and writes, so an idle
//! connection holds no buffer and a write goes straight from the shared
//! frames.
//!
//! Plain TCP is the socket itself; TLS (`crate::tls::socket`) adds the
//! records rustls has accepted but the kernel has not yet taken.

use std::future::Future;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub trait Socket: Send + Sync + 'static {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// `Ok(0)`: the peer closed. `WouldBlock`: nothing now, wait for readiness.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// The bytes of `bufs` taken, from the front.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Taken bytes still to be written to the network.
    fn has_pending_output(&self) -> bool {
        false
    }
    /// Writes what [`Socket::has_pending_output`] holds; `WouldBlock` when it cannot all go now.
    fn flush_pending(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Says goodbye (TLS close_notify) and half-closes.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send;
}

impl Socket for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(self).await;
    }
}

/// A stream the viewer listener accepted (after TLS, if on): it serves HTTP
/// through hyper, and a WebSocket subscriber through [`Socket`].
pub trait ViewerStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Socket: Socket;
    fn into_socket(self) -> Self::Socket;
}

impl ViewerStream for TcpStream {
    type Socket = TcpStream;

    fn into_socket(self) -> TcpStream {
        self
    }
}
