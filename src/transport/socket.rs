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

    /// Reads the connection's first bytes into `buf` (empty), which gets its
    /// memory only once they came: a client that connects and is slow to
    /// speak holds no buffer while it is silent. 0 at the end of the stream.
    fn read_first(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = std::io::Result<usize>> + Send;
}

/// The buffer a connection's request head is read into, and what it grows by.
pub const HEAD_CHUNK: usize = 1024;

impl ViewerStream for TcpStream {
    async fn read_first(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        loop {
            // tokio reports a socket readable as soon as it is registered,
            // before anything came: the read tells, and clears it if nothing did.
            self.readable().await?;
            let mut first = [0u8; HEAD_CHUNK]; // on the stack: never held across a wait
            match self.try_read(&mut first) {
                Ok(read) => {
                    buf.reserve_exact(HEAD_CHUNK);
                    buf.extend_from_slice(&first[..read]);
                    return Ok(read);
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }

    fn into_shard_socket(self) -> std::io::Result<AnySocket> {
        // tokio's std stream keeps the non-blocking mode mio needs.
        Ok(AnySocket::Plain(mio::net::TcpStream::from_std(self.into_std()?)))
    }
}

impl ViewerStream for TlsStream<TcpStream> {
    /// A TLS connection holds rustls's buffers anyway (and rustls may have
    /// the request decrypted already): read as any stream.
    async fn read_first(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.reserve_exact(HEAD_CHUNK);
        tokio::io::AsyncReadExt::read_buf(self, buf).await
    }

    fn into_shard_socket(self) -> std::io::Result<AnySocket> {
        let (tcp, tls) = self.into_inner();
        let tcp = mio::net::TcpStream::from_std(tcp.into_std()?);
        Ok(AnySocket::Tls(TlsShardSocket::new(tcp, tls)))
    }
}
