//! `permessage-deflate` over real sockets (contract §10): a client that
//! offers it gets the extension, compressed frames for large broadcasts and
//! plain ones for small, and the same JSON as a client without it; what it
//! sends compressed is understood. Our own raw client reads the frames bit by
//! bit; Python's `websockets` (installed by scripts/test) is the independent one.

mod common;

use std::time::Duration;

use bullhorn::cli::ServeArgs;
use bullhorn::protocol::deflate::{Compressor, inflate};
use bullhorn::protocol::ws::{RSV1, client_frame, opcode};
use common::{HANG, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket client on a raw socket that offers `permessage-deflate`.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The 101's `Sec-WebSocket-Extensions`, if any.
    extensions: Option<String>,
}

/// One server frame: whether RSV1 was set, its opcode and payload as sent.
struct Frame {
    compressed: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// The message's JSON, inflated when it came compressed.
    fn json(&self) -> Value {
        let text = if self.compressed { inflate(&self.payload, 1 << 20).unwrap() } else { self.payload.clone() };
        serde_json::from_slice(&text).unwrap()
    }
}

impl RawClient {
    async fn connect(server: &TestServer, offer: &str) -> RawClient {
        let mut stream = TcpStream::connect(server.viewer).await.unwrap();
        let request = format!(
            "GET /v1/apps/demo/ws?room=gifts HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = RawClient { stream, buf: Vec::new(), extensions: None };
        let end = loop {
            if let Some(end) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            client.fill().await;
        };
        let head = String::from_utf8(client.buf.drain(..end).collect()).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client.extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions").then(|| value.trim().to_owned())
        });
        client
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(HANG, self.stream.read(&mut chunk)).await.expect("hung").unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            if self.buf.len() >= 2 {
                let (len, header) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => {
                        (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10)
                    }
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if header > 0 && self.buf.len() >= header + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    assert_eq!(b0 & 0x80, 0x80, "final frames");
                    return Frame { compressed: b0 & RSV1 != 0, opcode: b0 & 0x0F, payload };
                }
            }
            self.fill().await;
        }
    }

    /// The next text message, skipping pings.
    async fn next_text(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await;
            if frame.opcode == opcode::TEXT {
                return frame;
            }
        }
    }

    async fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }
}

async fn publish(server: &TestServer, data: Value) -> u64 {
    server.admin.broadcast("gifts", data).await["seq"].as_u64().unwrap()
}

/// A gift announcement of about `size` bytes of JSON.
fn gift(size: usize) -> Value {
    json!({"type": "gift", "from": "Ana", "gift": "rocket", "combo": 3, "note": "🚀".repeat(size / 4)})
}

#[tokio::test]
async fn a_deflate_client_gets_compressed_large_frames_plain_small_ones_and_the_same_json() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut deflate = RawClient::connect(&server, "permessage-deflate; client_max_window_bits").await;
    assert_eq!(
        deflate.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut plain = server.subscribe(&["gifts"]).await;
    assert_eq!(deflate.next_text().await.json()["type"], "welcome");
    assert_eq!(plain.next_json().await["type"], "welcome");

    let small = publish(&server, json!({"n": 1})).await;
    let large = publish(&server, gift(2048)).await;
    let frame = deflate.next_text().await;
    assert!(!frame.compressed, "under 256 bytes: plain");
    assert_eq!(frame.json(), plain.next_json().await);
    assert_eq!(frame.json()["seq"], small);
    let frame = deflate.next_text().await;
    assert!(frame.compressed, "2 KiB: compressed");
    assert!(frame.payload.len() < 1024, "a repetitive gift shrinks: {} bytes", frame.payload.len());
    let expected = plain.next_json().await;
    assert_eq!(frame.json(), expected, "the same JSON as the plain client's");
    assert_eq!(expected["seq"], large);

    // What the client sends compressed is read: a compressed ping is answered.
    let ping = Compressor::default().text_frame(br#"{"type":"ping"}"#);
    let payload = &ping[2..];
    let mut frame = client_frame(true, opcode::TEXT, payload, [9, 8, 7, 6]);
    frame[0] |= RSV1;
    deflate.send(&frame).await;
    assert_eq!(deflate.next_text().await.json(), json!({"type": "pong"}));
    server.finish().await;
}

#[tokio::test]
async fn offers_it_declines_and_compression_off_leave_the_v1_frames() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut declined = RawClient::connect(&server, "permessage-deflate; server_max_window_bits=10").await;
    assert_eq!(declined.extensions, None, "a window smaller than the compressor's is declined");
    declined.next_text().await;
    publish(&server, gift(2048)).await;
    let frame = declined.next_text().await;
    assert!(!frame.compressed);
    // A compressed frame from a client that did not negotiate it is a protocol error.
    let mut bad = client_frame(true, opcode::TEXT, b"x", [1; 4]);
    bad[0] |= RSV1;
    declined.send(&bad).await;
    let close = declined.next_frame().await;
    assert_eq!((close.opcode, u16::from_be_bytes([close.payload[0], close.payload[1]])), (opcode::CLOSE, 1002));
    server.finish().await;

    let server = TestServer::start_with(ServeArgs { ws_compression: Some("off".into()), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let mut off = RawClient::connect(&server, "permessage-deflate").await;
    assert_eq!(off.extensions, None, "--ws-compression off");
    off.next_text().await;
    publish(&server, gift(2048)).await;
    assert!(!off.next_text().await.compressed);
    server.finish().await;
}

/// Python's `websockets`, which negotiates permessage-deflate by default.
const PYTHON_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main():
    async with connect(sys.argv[1]) as ws:
        print(json.dumps({"extensions": ws.response.headers.get("Sec-WebSocket-Extensions")}), flush=True)
        for _ in range(int(sys.argv[2])):
            print(await ws.recv(), flush=True)

asyncio.run(main())
"#;

#[tokio::test]
async fn pythons_websockets_negotiates_it_and_reads_every_message_once_in_order() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut python = tokio::process::Command::new("python3")
        .args(["-c", PYTHON_CLIENT, &server.ws_url("room=gifts"), "5"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = tokio::io::BufReader::new(python.stdout.take().unwrap());
    let mut line = String::new();
    let mut next = async || {
        line.clear();
        tokio::time::timeout(HANG, tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line))
            .await
            .unwrap()
            .unwrap();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("not JSON: {line:?} (is websockets installed?)"))
    };
    let hello = next().await;
    assert!(hello["extensions"].as_str().is_some_and(|e| e.starts_with("permessage-deflate")), "{hello}");
    assert_eq!(next().await["type"], "welcome");
    while server.admin.get("/v1/apps/demo/rooms/gifts").await.1["online"] != 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut plain = server.subscribe(&["gifts"]).await;
    plain.next_json().await;
    for data in [gift(2048), json!({"n": 2}), gift(300), gift(4096)] {
        publish(&server, data).await;
    }
    for _ in 0..4 {
        assert_eq!(next().await, plain.next_json().await, "the same JSON, in order, once each");
    }
    assert!(python.wait().await.unwrap().success());
    server.finish().await;
}
