//! Shared test support: a real bullhorn server on port 0 with a temporary
//! data dir (in-process or as the real binary), an HTTP client for the admin
//! API, and a real WebSocket client (tokio-tungstenite) for subscribers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bullhorn::cli::ServeArgs;
use bullhorn::{Config, Server};
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod nats;
pub mod pusher;
pub mod reach;
pub mod receiver;
pub mod sse;

pub const KEY: &str = "test-admin-key-0123456789";

/// How long any single wait may take before the test is declared hung. It
/// guards against a hang; no assertion depends on it.
pub const HANG: Duration = Duration::from_secs(30);

/// Admin API access shared by in-process and child-process servers.
#[derive(Clone)]
pub struct Admin {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn new(addr: SocketAddr, key: &str) -> Admin {
        Admin { base: format!("http://{addr}"), key: key.to_owned(), http: reqwest::Client::new() }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_owned());
        }
        let resp = tokio::time::timeout(HANG, req.send()).await.expect("admin request hung").expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body), Some(&self.key.clone())).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None, Some(&self.key.clone())).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, None, Some(&self.key.clone())).await
    }

    pub async fn create_room(&self, room: &str) -> Value {
        let (status, body) = self.post("/v1/apps/demo/rooms", &json!({"room": room}).to_string()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn broadcast(&self, room: &str, data: Value) -> Value {
        let (status, body) =
            self.post(&format!("/v1/apps/demo/rooms/{room}/broadcast"), &json!({"data": data}).to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    pub async fn metrics(&self) -> String {
        let resp = self.http.get(format!("{}/metrics", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }
}

/// The value of one Prometheus sample line, by its exact name and labels.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A server running inside the test process.
pub struct TestServer {
    pub viewer: SocketAddr,
    pub quic: SocketAddr,
    pub fingerprint: String,
    pub admin: Admin,
    pub data_dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(ServeArgs::default()).await
    }

    /// Starts a server with `args` (addresses and data dir are filled in).
    pub async fn start_with(args: ServeArgs) -> TestServer {
        Self::start_with_file(args, "").await
    }

    /// Starts a server with `args` and a config file's text.
    pub async fn start_with_file(mut args: ServeArgs, config_file: &str) -> TestServer {
        let data_dir = tempfile::tempdir().unwrap();
        args.viewer_addr = args.viewer_addr.or(Some("127.0.0.1:0".parse().unwrap()));
        args.admin_addr = args.admin_addr.or(Some("127.0.0.1:0".parse().unwrap()));
        args.quic_addr = args.quic_addr.or(Some("127.0.0.1:0".parse().unwrap()));
        args.data_dir = Some(data_dir.path().to_owned());
        let config =
            Config::from_toml(&args, config_file, |name| (name == "BULLHORN_DEMO_ADMIN_KEY").then(|| KEY.to_owned()))
                .unwrap();
        let server = Server::bind(config).await.unwrap();
        let viewer = server.viewer_addr();
        let quic = server.quic_addr();
        let fingerprint = server.dev_cert_fingerprint().unwrap_or_default().to_owned();
        let admin = Admin::new(server.admin_addr(), KEY);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer { viewer, quic, fingerprint, admin, data_dir, stop: Some(stop), task }
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/v1/apps/demo/ws?{query}", self.viewer)
    }

    pub async fn subscribe(&self, rooms: &[&str]) -> Subscriber {
        let query: Vec<String> = rooms.iter().map(|r| format!("room={r}")).collect();
        Subscriber::connect(&self.ws_url(&query.join("&"))).await
    }

    /// Triggers the drain; `finish` waits for the server to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn finish(mut self) {
        self.begin_shutdown();
        tokio::time::timeout(HANG, &mut self.task).await.expect("server hung on shutdown").unwrap().unwrap();
    }
}

/// A real WebSocket subscriber.
pub struct Subscriber {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    pub async fn connect(url: &str) -> Subscriber {
        let (ws, resp) = tokio::time::timeout(HANG, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect hung")
            .expect("connect");
        assert_eq!(resp.status(), 101);
        Subscriber { ws }
    }

    /// The next message of any kind, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(HANG, self.ws.next()).await.expect("subscriber hung").and_then(|r| r.ok())
    }

    /// The next text message as JSON, skipping pings; panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match self.next().await {
                Some(Message::Text(text)) => {
                    return serde_json::from_str(&text).expect("valid JSON");
                }
                Some(Message::Ping(_)) | Some(Message::Pong(_)) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame; returns it.
    pub async fn next_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next().await {
                Some(Message::Close(frame)) => return frame,
                Some(_) => continue,
                None => return None,
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }
}

/// The real `bullhorn` binary as a child process.
pub struct ChildServer {
    pub child: tokio::process::Child,
    pub viewer: SocketAddr,
    pub quic: SocketAddr,
    pub admin: Admin,
}

impl ChildServer {
    pub async fn start(data_dir: &Path, extra: &[&str]) -> ChildServer {
        let mut child = Self::command(data_dir, extra).stdout(Stdio::piped()).spawn().expect("spawn bullhorn");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut viewer, mut admin, mut quic) = (None, None, None);
        while viewer.is_none() || admin.is_none() || quic.is_none() {
            let line = tokio::time::timeout(HANG, lines.next_line())
                .await
                .expect("server start hung")
                .unwrap()
                .expect("server exited early");
            let address = |rest: &str| rest.split_once("://").map(|(_, addr)| addr.parse().unwrap());
            if let Some(rest) = line.strip_prefix("bullhorn: viewer listening on ") {
                viewer = address(rest);
            }
            if let Some(rest) = line.strip_prefix("bullhorn: admin listening on ") {
                admin = address(rest);
            }
            if let Some(rest) = line.strip_prefix("bullhorn: quic listening on ") {
                quic = Some(rest.split(' ').next().unwrap().parse().unwrap());
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ChildServer { child, viewer: viewer.unwrap(), quic: quic.unwrap(), admin: Admin::new(admin.unwrap(), KEY) }
    }

    pub fn command(data_dir: &Path, extra: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bullhorn"));
        cmd.args(["serve", "--data-dir"]).arg(data_dir);
        if !extra.contains(&"--quic-addr") {
            cmd.args(["--quic-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--viewer-addr") {
            cmd.args(["--viewer-addr", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--admin-addr") {
            cmd.args(["--admin-addr", "127.0.0.1:0"]);
        }
        cmd.args(extra)
            .env("BULLHORN_DEMO_ADMIN_KEY", KEY)
            .env_remove("BULLHORN_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn signal(&self, signal: i32) {
        let status =
            std::process::Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(HANG, self.child.wait()).await.expect("server did not exit").unwrap()
    }
}

/// A quinn client endpoint that pins `fingerprint` and speaks `alpn`.
pub fn quic_client(fingerprint: &str, alpn: &[u8]) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(bullhorn::client::tls::pinned_quic_config(fingerprint, alpn));
    endpoint
}

/// A native subscriber: one bidirectional stream of length-prefixed JSON.
pub struct QuicSubscriber {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

impl QuicSubscriber {
    /// Connects and sends the hello for `rooms` of app `demo`.
    pub async fn connect(endpoint: &quinn::Endpoint, addr: SocketAddr, rooms: &[&str]) -> QuicSubscriber {
        Self::try_connect(endpoint, addr, rooms).await.expect("quic connect")
    }

    /// The same, or why the server refused the connection.
    pub async fn try_connect(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        rooms: &[&str],
    ) -> Result<QuicSubscriber, quinn::ConnectionError> {
        let hello = json!({"type": "hello", "app": "demo", "rooms": rooms}).to_string();
        Self::try_raw_hello(endpoint, addr, hello.as_bytes()).await
    }

    /// Connects and sends `hello` as the first frame, whatever it holds.
    pub async fn raw_hello(endpoint: &quinn::Endpoint, addr: SocketAddr, hello: &[u8]) -> QuicSubscriber {
        Self::try_raw_hello(endpoint, addr, hello).await.expect("quic connect")
    }

    async fn try_raw_hello(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        hello: &[u8],
    ) -> Result<QuicSubscriber, quinn::ConnectionError> {
        let conn = tokio::time::timeout(HANG, endpoint.connect(addr, "localhost").unwrap()).await.expect("hung")?;
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&bullhorn::protocol::quic::frame(hello)).await.unwrap();
        Ok(QuicSubscriber { conn, send, recv })
    }

    /// The next frame as JSON, or `None` when the stream ended.
    pub async fn next_json(&mut self) -> Option<Value> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(HANG, self.recv.read_exact(&mut len)).await.expect("quic subscriber hung") {
            Ok(()) => {}
            Err(_) => return None,
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        tokio::time::timeout(HANG, self.recv.read_exact(&mut body)).await.expect("hung").ok()?;
        Some(serde_json::from_slice(&body).expect("valid JSON"))
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }
}

/// `GET path` on a connection kept alive after it: the response's head and body
/// (by its content-length), so the caller can send the next request on it.
pub async fn get_keeping_alive(tcp: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.unwrap();
    (head, body)
}
