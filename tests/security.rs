//! Admin keys never reach the logs: the real binary at trace level, admin
//! calls with the right key and with a wrong one, then everything the
//! process wrote is searched for both.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Admin, ChildServer, HANG, KEY};
use reqwest::StatusCode;
use serde_json::json;

const WRONG_KEY: &str = "not-the-key-but-also-secret-42";

#[tokio::test]
async fn admin_keys_are_never_logged_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
    let data = dir.path().join("data");
    let mut child = ChildServer::command(&data, &[])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + HANG;
    let admin = loop {
        let printed = std::fs::read_to_string(&out).unwrap();
        if let Some(addr) = printed.lines().find_map(|l| l.strip_prefix("bullhorn: admin listening on http://")) {
            break Admin::new(addr.parse().unwrap(), KEY);
        }
        assert!(tokio::time::Instant::now() < deadline, "the server did not start: {printed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    admin.create_room("gifts").await;
    admin.broadcast("gifts", json!({"text": "hello"})).await;
    for path in ["/v1/apps/demo/rooms", "/v1/apps/nope/rooms"] {
        let (status, _) = admin.request(reqwest::Method::GET, path, None, Some(WRONG_KEY)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = admin
        .request(reqwest::Method::POST, "/v1/apps/demo/rooms", Some(&json!({"room": "x"}).to_string()), Some(WRONG_KEY))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    std::process::Command::new("kill").arg(child.id().unwrap().to_string()).status().unwrap();
    tokio::time::timeout(HANG, child.wait()).await.expect("no exit after SIGTERM").unwrap();
    let logs = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "the process logged at a low level: the test sees logs");
    for secret in [KEY, WRONG_KEY] {
        assert!(
            !logs.contains(secret),
            "a key reached the logs:\n{}",
            logs.lines().find(|l| l.contains(secret)).unwrap()
        );
    }
}
