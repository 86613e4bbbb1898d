//! The stream the viewer listener accepted (after TLS, if on): it serves
//! HTTP through hyper, and a WebSocket subscriber leaves tokio's reactor as
//! the non-blocking socket its data-plane shard drives
//! (`crate::dataplane::socket`).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::dataplane::AnySocket;

pub trait ViewerStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket, deregistered from tokio, for a shard to own.
    fn into_shard_socket(self) -> std::io::Result<AnySocket>;
}

impl ViewerStream for TcpStream {
    fn into_shard_socket(self) -> std::io::Result<AnySocket> {
        // tokio's std stream keeps the non-blocking mode mio needs.
        Ok(AnySocket::Plain(mio::net::TcpStream::from_std(self.into_std()?)))
    }
}
