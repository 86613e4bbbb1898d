//! TLS on the viewer listener (wss, https) and the admin listener, against
//! the real binary: certificates signed by test CAs, a wss subscriber that
//! receives broadcasts, and a SIGHUP that swaps every certificate without
//! dropping the connections already open; a reload that fails keeps the
//! certificate in use.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{ChildServer, HANG, QuicSubscriber, metric, quic_client};
use futures_util::StreamExt as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A certificate for `localhost` signed by this CA, as PEM files `stem.crt` and `stem.key` in `dir`.
    fn issue(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path, cert.der().clone())
    }

    /// A client that trusts only this CA.
    fn client(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// Replaces `to` with `from` the way an operator's tooling should: a rename, never a half-written file.
fn install(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

async fn tls_connect(client: &TlsConnector, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(HANG, client.connect(name, tcp)).await.expect("TLS handshake hung")
}

/// One HTTP/1.1 request over a fresh TLS connection; the status and the JSON body.
async fn https(client: &TlsConnector, addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut stream = tls_connect(client, addr).await.expect("https connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        common::KEY,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server may end without close_notify after `Connection: close`: what arrived is the answer.
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut answer)).await.expect("https answer hung");
    let answer = String::from_utf8(answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

async fn metrics(client: &TlsConnector, admin: SocketAddr) -> String {
    https(client, admin, "GET", "/metrics", None).await.1.as_str().unwrap().to_owned()
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss(client: &TlsConnector, viewer: SocketAddr) -> std::io::Result<Wss> {
    let stream = tls_connect(client, viewer).await?;
    let url = format!("wss://localhost:{}/v1/apps/demo/ws?room=gifts", viewer.port());
    let (ws, response) = tokio_tungstenite::client_async(url, stream).await.expect("wss upgrade");
    assert_eq!(response.status(), 101);
    Ok(ws)
}

async fn next_json(ws: &mut Wss) -> Value {
    loop {
        match tokio::time::timeout(HANG, ws.next()).await.expect("wss subscriber hung") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Polls the admin metrics until `series` reaches `value`.
async fn wait_for_metric(client: &TlsConnector, admin: SocketAddr, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + HANG;
    while metric(&metrics(client, admin).await, series) != Some(value) {
        assert!(tokio::time::Instant::now() < deadline, "{series} never reached {value}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn wss_and_https_serve_with_files_and_a_sighup_swaps_certificates_without_dropping_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (old_ca, new_ca, admin_ca) = (Ca::new("old"), Ca::new("new"), Ca::new("admin"));
    let (viewer_cert, viewer_key, _) = old_ca.issue(dir.path(), "viewer");
    let (admin_cert, admin_key, _) = admin_ca.issue(dir.path(), "admin");
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (viewer_cert_arg, viewer_key_arg) = (path(&viewer_cert), path(&viewer_key));
    let (admin_cert_arg, admin_key_arg) = (path(&admin_cert), path(&admin_key));
    let mut server = ChildServer::start(
        data.path(),
        &[
            "--viewer-tls",
            "--tls-cert",
            &viewer_cert_arg,
            "--tls-key",
            &viewer_key_arg,
            "--admin-tls-cert",
            &admin_cert_arg,
            "--admin-tls-key",
            &admin_key_arg,
        ],
    )
    .await;
    let (viewer, admin) = (server.viewer, server.admin_addr());
    let (old_client, new_client, admin_client) = (old_ca.client(), new_ca.client(), admin_ca.client());

    let (status, room) =
        https(&admin_client, admin, "POST", "/v1/apps/demo/rooms", Some(json!({"room": "gifts"}))).await;
    assert_eq!(status, 201, "{room}");
    // Plain HTTP to a TLS listener gets nowhere.
    assert!(reqwest::get(format!("http://{admin}/healthz")).await.is_err());

    let mut before = wss(&old_client, viewer).await.unwrap();
    assert_eq!(next_json(&mut before).await["type"], "welcome");
    // The demo page over https, then a WebSocket upgrade on the same kept-alive connection.
    let mut page = tls_connect(&old_client, viewer).await.unwrap();
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut reader = BufReader::new(page);
    let (mut status_line, mut length) = (String::new(), 0usize);
    reader.read_line(&mut status_line).await.unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut html = vec![0; length];
    reader.read_exact(&mut html).await.unwrap();
    assert!(String::from_utf8_lossy(&html).contains("<html"));
    let url = format!("wss://localhost:{}/v1/apps/demo/ws?room=gifts", viewer.port());
    let (mut upgraded, _) =
        tokio_tungstenite::client_async(url, reader.into_inner()).await.expect("upgrade after a page");
    assert_eq!(next_json(&mut upgraded).await["type"], "welcome");

    let first = json!({"data": {"gift": "rocket"}});
    let (status, _) = https(&admin_client, admin, "POST", "/v1/apps/demo/rooms/gifts/broadcast", Some(first)).await;
    assert_eq!(status, 202);
    for ws in [&mut before, &mut upgraded] {
        let message = next_json(ws).await;
        assert_eq!((message["type"].as_str(), message["data"]["gift"].as_str()), (Some("broadcast"), Some("rocket")));
    }

    // New certificates for both listeners, then SIGHUP.
    let (new_viewer_cert, new_viewer_key, new_leaf) = new_ca.issue(dir.path(), "viewer-next");
    install(&new_viewer_cert, &viewer_cert);
    install(&new_viewer_key, &viewer_key);
    server.signal(libc::SIGHUP);
    wait_for_metric(&admin_client, admin, r#"bullhorn_tls_reloads_total{result="ok"}"#, 2.0).await;

    // Those already connected stay connected and keep receiving.
    let second = json!({"data": {"gift": "castle"}});
    let (status, _) = https(&admin_client, admin, "POST", "/v1/apps/demo/rooms/gifts/broadcast", Some(second)).await;
    assert_eq!(status, 202);
    for ws in [&mut before, &mut upgraded] {
        assert_eq!(next_json(ws).await["data"]["gift"], "castle");
    }
    // New connections get the new certificate: the old CA no longer vouches for it.
    let mut after = wss(&new_client, viewer).await.unwrap();
    assert_eq!(next_json(&mut after).await["type"], "welcome");
    // (A fresh client: one that connected before could resume its session, which skips certificates.)
    let refused = tls_connect(&old_ca.client(), viewer).await.expect_err("the old certificate is gone");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
    // QUIC serves the same files, reloaded too.
    let fingerprint = bullhorn::protocol::quic::certificate_fingerprint(&new_leaf);
    let endpoint = quic_client(&fingerprint, bullhorn::protocol::quic::ALPN);
    let mut native = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(native.next_json().await.unwrap()["type"], "welcome");

    // A reload from a broken key file fails, is counted, and changes nothing.
    std::fs::write(&viewer_key, "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n").unwrap();
    server.signal(libc::SIGHUP);
    wait_for_metric(&admin_client, admin, r#"bullhorn_tls_reloads_total{result="error"}"#, 1.0).await;
    let mut still = wss(&new_client, viewer).await.unwrap();
    assert_eq!(next_json(&mut still).await["type"], "welcome");

    let text = metrics(&admin_client, admin).await;
    assert!(metric(&text, r#"bullhorn_rejected_connections_total{reason="tls_handshake"}"#) >= Some(1.0), "{text}");
    assert_eq!(metric(&text, r#"bullhorn_connections{transport="websocket"}"#), Some(4.0));
    server.signal(libc::SIGTERM);
    assert!(server.wait().await.success());
}

#[tokio::test]
async fn the_viewer_listener_refuses_to_start_tls_without_certificate_files() {
    let data = tempfile::tempdir().unwrap();
    let output = ChildServer::command(data.path(), &["--viewer-tls"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("viewer_tls (--viewer-tls)") && stderr.contains("tls_cert"), "{stderr}");
}

#[tokio::test]
async fn a_burst_of_large_broadcasts_reaches_a_wss_subscriber_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("burst");
    let (cert, key, _) = ca.issue(dir.path(), "viewer");
    let args = bullhorn::cli::ServeArgs {
        viewer_tls: true,
        tls_cert: Some(cert),
        tls_key: Some(key),
        broadcasts_per_room: Some(0),
        queue_max_bytes: Some(32 << 20),
        ..Default::default()
    };
    let server = common::TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let mut ws = wss(&ca.client(), server.viewer).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    // 12 MB sent before the subscriber reads a byte: more than the socket
    // buffers hold, so writes block with TLS records pending, and resume.
    let filler = "x".repeat(60_000);
    for n in 0..200 {
        server.admin.broadcast("gifts", json!({"n": n, "filler": filler})).await;
    }
    for n in 0..200 {
        let message = next_json(&mut ws).await;
        assert_eq!(message["data"]["n"], n);
        assert_eq!(message["data"]["filler"].as_str().map(str::len), Some(60_000));
    }
    server.finish().await;
}
