//! bullhorn.js in a mini program (contract §10): `wx.connectSocket`,
//! simulated in Node over a real WebSocket to the real server
//! (tests/mini_program/wx.mjs), with no `WebSocket` for the SDK to find. It
//! receives, is cut off, reconnects through the same API and resumes after
//! the last seq it saw: every broadcast once, in order.

mod common;

use std::process::Stdio;

use common::{HANG, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_sdk_over_wx_connect_socket_receives_reconnects_and_resumes() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    // The SDK as an ES module Node will load (.mjs), from the file the server serves.
    let dir = tempfile::tempdir().unwrap();
    let sdk = dir.path().join("bullhorn.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/web/bullhorn.js"), &sdk).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mini_program/wx.mjs");
    let mut node = tokio::process::Command::new("node")
        .args(["--experimental-websocket", "--no-warnings", script, sdk.to_str().unwrap()])
        .arg(format!("ws://{}", server.viewer))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node on the PATH");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line =
            tokio::time::timeout(HANG, lines.next_line()).await.expect("node hung").unwrap().expect("node ended");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    };
    // Until the SDK says it is open over the mini program socket.
    loop {
        let event = next().await;
        if event["state"] == "open" {
            assert_eq!(event["transport"], "wx", "{event}");
            break;
        }
    }
    for n in 1..=2 {
        server.admin.broadcast("gifts", json!({"n": n})).await;
    }
    assert_eq!(next().await, json!({"seq": 1, "data": {"n": 1}}));
    assert_eq!(next().await, json!({"seq": 2, "data": {"n": 2}}));
    assert_eq!(next().await, json!({"dropped": true}));
    // Sent while it is away or coming back: the resume after seq 2 brings them, once each.
    for n in 3..=4 {
        server.admin.broadcast("gifts", json!({"n": n})).await;
    }
    let mut seen = Vec::new();
    loop {
        let event = next().await;
        assert!(event.get("lagged").is_none(), "nothing missed: {event}");
        if event.get("seq").is_some() {
            seen.push(event["seq"].as_u64().unwrap());
        }
        if event["done"] == true {
            assert_eq!(event["sockets"], 2, "it came back through wx.connectSocket");
            break;
        }
    }
    assert_eq!(seen, [3, 4], "after the resume: the rest, in order, once each");
    assert!(node.wait().await.unwrap().success());
    server.finish().await;
}
