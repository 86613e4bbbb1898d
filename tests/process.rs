//! The real binary: configuration errors, durability across kill -9, drain on SIGTERM.

mod common;

use common::{ChildServer, KEY, Subscriber};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn rooms_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &[]).await;
    for room in ["gifts", "scores", "news"] {
        server.admin.create_room(room).await;
    }
    server.admin.broadcast("gifts", json!(1)).await;
    server.signal(9);
    server.wait().await;

    let again = ChildServer::start(dir.path(), &[]).await;
    let (status, list) = again.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["rooms"].as_array().unwrap().iter().map(|r| r["room"].as_str().unwrap()).collect();
    assert_eq!(names, ["gifts", "news", "scores"]);
    for r in list["rooms"].as_array().unwrap() {
        assert_eq!(r["online"], 0, "no member survives a restart");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    again.signal(9);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--drain-window-ms", "3000"]).await;
    server.admin.create_room("gifts").await;
    for i in 1..=3 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    let url = format!("ws://{}/v1/apps/demo/ws?room=gifts", server.viewer);
    let mut subs = Vec::new();
    for _ in 0..10 {
        let mut sub = Subscriber::connect(&url).await;
        sub.next_json().await;
        subs.push(sub);
    }
    server.signal(15);
    for sub in &mut subs {
        let closing = sub.next_json().await;
        assert_eq!(closing["reason"], "server_draining");
        assert!(closing["reconnect_after_ms"].as_u64().unwrap() <= 3000);
        assert_eq!(u16::from(sub.next_close().await.unwrap().code), 1001);
    }
    let status = server.wait().await;
    assert!(status.success(), "exit status {status:?}");

    // The seq survives a clean restart.
    let mut again = ChildServer::start(dir.path(), &[]).await;
    let (_, room) = again.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["seq"], 3);
    again.signal(15);
    assert!(again.wait().await.success());
}

#[tokio::test]
async fn readyz_turns_503_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    // A long drain timeout and a subscriber that never reads keep the node draining.
    let server = ChildServer::start(dir.path(), &["--drain-timeout-ms", "20000"]).await;
    server.admin.create_room("gifts").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.viewer).await.unwrap();
    let url = format!("ws://{}/v1/apps/demo/ws?room=gifts", server.viewer);
    let (_stalled, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let (status, _) = server.admin.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    server.signal(15);
    let mut saw_503 = false;
    for _ in 0..200 {
        let (status, body) = server.admin.request(reqwest::Method::GET, "/readyz", None, None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(body["status"], "draining");
            saw_503 = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(saw_503, "/readyz never reported draining");
    let (status, _) = server.admin.request(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "still alive while draining");
}

#[tokio::test]
async fn invalid_configuration_names_the_field_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bullhorn.toml");
    std::fs::write(&config, "[fanout]\nqueue_max_mesages = 5\n").unwrap();
    let out = ChildServer::command(dir.path(), &["--config", config.to_str().unwrap()]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queue_max_mesages"), "{stderr}");

    std::fs::write(&config, "[[app]]\nid = \"acme\"\nadmin_key_env = \"ACME_KEY_UNSET\"\n").unwrap();
    let out = ChildServer::command(dir.path(), &["--config", config.to_str().unwrap()]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("app[0].admin_key_env"));
}

#[tokio::test]
async fn a_public_admin_listener_with_a_generated_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = ChildServer::command(dir.path(), &["--admin-addr", "0.0.0.0:0"])
        .env_remove("BULLHORN_DEMO_ADMIN_KEY")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BULLHORN_DEMO_ADMIN_KEY"), "{stderr}");
    // With a key from the environment the same address is fine.
    let mut ok = ChildServer::start(dir.path(), &["--admin-addr", "127.0.0.1:0"]).await;
    let (status, _) = ok.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(status, StatusCode::OK);
    ok.signal(15);
    assert!(ok.wait().await.success());
}

#[tokio::test]
async fn a_generated_key_is_stored_private_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ChildServer::command(dir.path(), &[]);
    cmd.env_remove("BULLHORN_DEMO_ADMIN_KEY").stderr(std::process::Stdio::piped());
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let key_file = dir.path().join("demo-admin-key");
    while !key_file.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    assert!(key.len() >= 32);
    assert_ne!(key, KEY);
    let _ = std::process::Command::new("kill").arg("-15").arg(child.id().unwrap().to_string()).status();
    let out = child.wait_with_output().await.unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("demo-admin-key"), "the location is printed: {all}");
    assert!(!all.contains(&key), "the key itself is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn sigterm_sends_closing_to_quic_subscribers_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(dir.path(), &["--drain-window-ms", "2000"]).await;
    server.admin.create_room("gifts").await;
    let fingerprint = std::fs::read_to_string(dir.path().join("dev-cert.sha256")).unwrap();
    let endpoint = common::quic_client(fingerprint.trim(), b"bullhorn/1");
    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut sub = common::QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
        assert_eq!(sub.next_json().await.unwrap()["type"], "welcome");
        subs.push(sub);
    }
    server.signal(15);
    for sub in &mut subs {
        let closing = sub.next_json().await.unwrap();
        assert_eq!(closing["reason"], "server_draining");
        assert!(closing["reconnect_after_ms"].as_u64().unwrap() <= 2000);
    }
    assert!(server.wait().await.success());
}
