//! A raw Server-Sent Events client over a real socket: the request as a
//! browser's `EventSource` sends it, the response head, then events parsed
//! as the HTML standard says (`event:`, `data:`, `id:`, `retry:`, comments).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One event as an `EventSource` dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub data: String,
    /// The stream's last event id after this event.
    pub id: String,
    pub retry: Option<u64>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

pub struct SseStream {
    pub tcp: TcpStream,
    pub head: String,
    buf: Vec<u8>,
    last_id: String,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

/// `GET path` with `headers`; returns the status line's head and the stream.
pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    open_on(tcp, path, headers).await
}

/// [`open`] on a connection of the caller's (a keep-alive one, say).
pub async fn open_on(mut tcp: TcpStream, path: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    buf.drain(..end);
    SseStream { tcp, head, buf, last_id: String::new(), comments: 0 }
}

impl SseStream {
    pub fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// The body of a refusal (the server closes after it).
    pub async fn body(&mut self) -> Value {
        let mut rest = std::mem::take(&mut self.buf);
        tokio::time::timeout(Duration::from_secs(10), self.tcp.read_to_end(&mut rest)).await.unwrap().unwrap();
        serde_json::from_slice(&rest).unwrap()
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Event> {
        let (mut kind, mut data, mut retry) = (String::new(), None::<String>, None);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if let Some(data) = data.take() {
                    let kind = if kind.is_empty() { "message".into() } else { std::mem::take(&mut kind) };
                    return Some(Event { kind, data, id: self.last_id.clone(), retry });
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').map_or((line.as_str(), ""), |(f, v)| (f, v));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => kind = value,
                "data" => {
                    data = Some(match data {
                        Some(before) => before + "\n" + &value,
                        None => value,
                    })
                }
                "id" => self.last_id = value,
                "retry" => retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// The next event that is not `occupancy`, within 10 s.
    pub async fn next_event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.next()).await.expect("an event in time").expect("open")
    }

    async fn line(&mut self) -> Option<String> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                self.buf.drain(..=end);
                return Some(line);
            }
            let n = tokio::time::timeout(Duration::from_secs(30), self.tcp.read(&mut chunk)).await.unwrap().ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
