//! A load subscriber over Server-Sent Events (`--transport sse`): the
//! request, the 200 head, then each event's `data:` line handed on as one
//! message, with a byte scan for the blank line that ends an event (no
//! parse beyond it, as the WebSocket client does). Comments (heartbeats)
//! are skipped.

use std::net::{IpAddr, SocketAddr};

use bullhorn::client::ClientError;
use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::ws_client::{FrameStream, open_socket, step};

pub struct SseStream {
    stream: TcpStream,
    buf: BytesMut,
}

/// Connects and reads the response head; a refusal is an error with its status line.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>, host: &str, path: &str) -> std::io::Result<SseStream> {
    let mut stream = open_socket(addr, source).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(step("sending the request"))?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await.map_err(step("reading the answer"))? == 0 {
            return Err(std::io::Error::other("closed before the answer"));
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 200") {
                let line = String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r').unwrap_or(0)]);
                return Err(std::io::Error::other(format!("stream refused: {line}")));
            }
            buf.advance(end + 4);
            return Ok(SseStream { stream, buf });
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("response head too long"));
        }
    }
}

impl SseStream {
    /// The next event's data, or `None` at the end of the stream.
    async fn next_data(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event = self.buf.split_to(end + 2).freeze();
                let data = event.split(|&b| b == b'\n').find_map(|line| line.strip_prefix(b"data: "));
                if let Some(data) = data {
                    return Ok(Some(event.slice_ref(data)));
                }
                continue; // a heartbeat
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(error) => return Err(ClientError::Io(error.to_string())),
            }
        }
    }
}

impl FrameStream for SseStream {
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Bytes>, ClientError>> {
        self.next_data()
    }
}
