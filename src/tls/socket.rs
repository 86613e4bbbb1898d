//! A WebSocket subscriber over TLS: rustls driven by hand on the raw socket,
//! so the connection loop stays the one plain TCP uses (readiness, then
//! non-blocking calls) and nothing is buffered while the connection idles.
//!
//! What TLS costs per delivery is what it must: rustls encrypts each write
//! into records of its own (a copy and an allocation per write, not per
//! frame, since writes are vectored). The frames themselves stay shared.

use std::io::{self, IoSlice, Read as _, Write as _};
use std::task::{Context, Poll};

use rustls::ServerConnection;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::transport::socket::{Socket, ViewerStream};

pub struct TlsSocket {
    tcp: TcpStream,
    /// Boxed: a rustls connection is large, and the connection future holds this.
    tls: Box<ServerConnection>,
    /// Decrypted bytes are waiting in `tls`: readable without the socket.
    plaintext_pending: bool,
}

impl TlsSocket {
    pub fn new(tcp: TcpStream, mut tls: ServerConnection) -> TlsSocket {
        // The handshake's reader may have decrypted more than it handed out.
        let plaintext_pending = tls.process_new_packets().is_ok_and(|state| state.plaintext_bytes_to_read() > 0);
        TlsSocket { tcp, tls: Box::new(tls), plaintext_pending }
    }

    fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut Nonblocking(&self.tcp))?;
        }
        Ok(())
    }
}

impl Socket for TlsSocket {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plaintext_pending {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
            if self.tls.read_tls(&mut Nonblocking(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(error) = self.tls.process_new_packets() {
                // rustls queued an alert saying why: send it if the socket takes it.
                let _ = self.write_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // Answers rustls owes the peer (key updates) go with the next write.
        }
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
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

    async fn shutdown(&mut self) {
        self.tls.send_close_notify();
        loop {
            match self.write_records() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.tcp.writable().await.is_err() {
                        return;
                    }
                }
                Ok(()) => break,
                Err(_) => return,
            }
        }
        Socket::shutdown(&mut self.tcp).await;
    }
}

impl ViewerStream for TlsStream<TcpStream> {
    type Socket = TlsSocket;

    fn into_socket(self) -> TlsSocket {
        let (tcp, tls) = self.into_inner();
        TlsSocket::new(tcp, tls)
    }
}

/// The socket's non-blocking calls as `std::io`, for rustls.
struct Nonblocking<'a>(&'a TcpStream);

impl io::Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
