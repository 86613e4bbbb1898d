//! A WebSocket subscriber over TLS leaves tokio as its two parts: the TCP
//! socket and the rustls connection, which its shard drives by hand
//! (`crate::dataplane::socket::TlsShardSocket`), so nothing is buffered
//! while the connection idles.

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::dataplane::AnySocket;
use crate::dataplane::socket::TlsShardSocket;
use crate::transport::socket::ViewerStream;

impl ViewerStream for TlsStream<TcpStream> {
    fn into_shard_socket(self) -> std::io::Result<AnySocket> {
        let (tcp, tls) = self.into_inner();
        let tcp = mio::net::TcpStream::from_std(tcp.into_std()?);
        Ok(AnySocket::Tls(TlsShardSocket::new(tcp, tls)))
    }
}
