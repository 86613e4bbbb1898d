//! Interop with a second, independent QUIC implementation: aioquic (Python),
//! installed by `scripts/test`. It pins the certificate, says hello, and must
//! read the welcome and a broadcast exactly as quinn clients do.

mod common;

use std::process::Stdio;

use common::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[tokio::test]
async fn an_aioquic_client_gets_welcome_and_a_broadcast() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aioquic_subscriber.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--port", &server.quic.port().to_string(), "--fingerprint", &server.fingerprint])
        .args(["--room", "gifts", "--count", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (scripts/test installs aioquic)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| -> Value {
        let line = tokio::time::timeout(common::HANG, lines.next_line()).await.expect("aioquic hung").unwrap();
        serde_json::from_str(&line.expect("aioquic client exited early (is aioquic installed?)")).unwrap()
    };
    assert_eq!(
        next(&mut lines).await,
        json!({"type":"welcome","rooms":[{"room":"gifts","seq":0}],"heartbeat_ms":25000})
    );
    server.admin.broadcast("gifts", json!({"text": "from quinn to aioquic ✓"})).await;
    let broadcast = next(&mut lines).await;
    assert_eq!(broadcast["type"], "broadcast");
    assert_eq!(broadcast["seq"], 1);
    assert_eq!(broadcast["data"]["text"], "from quinn to aioquic ✓");
    assert!(tokio::time::timeout(common::HANG, child.wait()).await.unwrap().unwrap().success());
    server.finish().await;
}
