//! The stream the viewer listener accepted (after TLS, if on): it serves
//! HTTP through hyper, and a WebSocket subscriber leaves tokio's reactor as
//! the non-blocking socket its data-plane shard drives
//! (`crate::dataplane::socket`). Over TLS it leaves as its two parts, the TCP
//! socket and the rustls connection, which the shard drives by hand, so
//! nothing is buffered while the connection idles.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::dataplane::AnySocket;
use crate::dataplane::socket::TlsShardSocket;

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

impl ViewerStream for TlsStream<TcpStream> {
    fn into_shard_socket(self) -> std::io::Result<AnySocket> {
        let (tcp, tls) = self.into_inner();
        let tcp = mio::net::TcpStream::from_std(tcp.into_std()?);
        Ok(AnySocket::Tls(TlsShardSocket::new(tcp, tls)))
    }
}
