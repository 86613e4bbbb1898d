//! Pusher's official server library (PyPI `pusher`, installed by the test
//! command) through tests/pusher/server_lib.py, against a test server's
//! admin listener.

use serde_json::Value;

use super::{HANG, TestServer};

/// The app's Pusher credentials as the library takes them.
pub struct Credentials<'a> {
    pub app_id: &'a str,
    pub key: &'a str,
    pub secret: &'a str,
}

/// Runs server_lib.py's `args` (`trigger`, `batch`, `channels`, `channel`) and returns its JSON answer.
pub async fn server_library(server: &TestServer, credentials: &Credentials<'_>, args: &[&str]) -> Value {
    let admin = server.admin.base.trim_start_matches("http://").to_owned();
    let (host, port) = admin.rsplit_once(':').unwrap();
    let run = tokio::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pusher/server_lib.py"))
        .args([host, port, credentials.app_id, credentials.key, credentials.secret])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(HANG, run).await.expect("server_lib.py hung").expect("python3 runs");
    assert!(
        output.status.success(),
        "server_lib.py {args:?} failed (scripts/test installs PyPI's pusher):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
