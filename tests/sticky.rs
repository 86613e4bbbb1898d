//! A room's pinned message end to end (contract §9, `"sticky": true`): a
//! new viewer on WebSocket, QUIC and WebTransport gets its `welcome`, then
//! the pinned message, then live broadcasts; unpinning or the pin's ttl
//! ends it; a drain and restart keeps it.

mod common;

use std::time::Duration;

use bullhorn::client::WtStream;
use common::{Admin, ChildServer, HANG, QuicSubscriber, Subscriber, TestServer, quic_client};
use serde_json::{Value, json};

async fn publish(admin: &Admin, body: Value) -> u64 {
    let (status, accepted) = admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body.to_string()).await;
    assert_eq!(status, 202, "{accepted}");
    accepted["seq"].as_u64().unwrap()
}

async fn sticky_seq(admin: &Admin) -> Value {
    let (status, room) = admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(status, 200);
    room["sticky_seq"].clone()
}

/// One viewer on any transport, read message by message.
enum Viewer {
    WebSocket(Box<Subscriber>),
    Quic(QuicSubscriber),
    WebTransport(Box<WtStream>),
}

impl Viewer {
    async fn all(server: &TestServer, query: &str, rooms: &[&str]) -> Vec<Viewer> {
        let rooms_owned: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
        let wt = quic_client(&server.fingerprint, b"h3");
        let wt = WtStream::connect(&wt, server.quic, "localhost", "demo", &rooms_owned);
        let wt = tokio::time::timeout(HANG, wt).await.expect("hung").expect("webtransport session");
        let quic = quic_client(&server.fingerprint, b"bullhorn/1");
        vec![
            Viewer::WebSocket(Box::new(Subscriber::connect(&server.ws_url(query)).await)),
            Viewer::Quic(QuicSubscriber::connect(&quic, server.quic, rooms).await),
            Viewer::WebTransport(Box::new(wt)),
        ]
    }

    async fn next(&mut self) -> Value {
        match self {
            Viewer::WebSocket(sub) => sub.next_json().await,
            Viewer::Quic(sub) => sub.next_json().await.expect("the stream is open"),
            Viewer::WebTransport(sub) => {
                let frame = tokio::time::timeout(HANG, sub.next_frame()).await.expect("hung").unwrap().unwrap();
                serde_json::from_slice(&frame).unwrap()
            }
        }
    }
}

#[tokio::test]
async fn a_new_viewer_on_every_transport_gets_welcome_then_the_pin_then_live_broadcasts() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    assert_eq!(sticky_seq(&server.admin).await, Value::Null);
    publish(&server.admin, json!({"data": 1})).await;
    let pinned = publish(&server.admin, json!({"data": {"top": "Ana"}, "sticky": true})).await;
    publish(&server.admin, json!({"data": 3})).await;
    assert_eq!(sticky_seq(&server.admin).await, pinned);

    let mut viewers = Viewer::all(&server, "room=gifts", &["gifts"]).await;
    for viewer in &mut viewers {
        let welcome = viewer.next().await;
        assert_eq!((welcome["type"].as_str(), welcome["rooms"][0]["seq"].as_u64()), (Some("welcome"), Some(3)));
        let sticky = viewer.next().await;
        assert_eq!(sticky["type"], "sticky", "{sticky}");
        assert_eq!((sticky["room"].as_str(), sticky["seq"].as_u64()), (Some("gifts"), Some(pinned)));
        assert_eq!(sticky["data"], json!({"top": "Ana"}));
        assert!(sticky["ts"].as_u64().is_some(), "{sticky}");
    }
    publish(&server.admin, json!({"data": 4})).await;
    for viewer in &mut viewers {
        let live = viewer.next().await;
        assert_eq!((live["type"].as_str(), live["seq"].as_u64()), (Some("broadcast"), Some(4)), "{live}");
    }

    // A resuming viewer gets it too, before what the resume replays.
    let mut resumed = Subscriber::connect(&server.ws_url("room=gifts@1")).await;
    assert_eq!(resumed.next_json().await["rooms"][0]["seq"], 1);
    assert_eq!(resumed.next_json().await["type"], "sticky");
    for seq in 2..=4 {
        assert_eq!(resumed.next_json().await["seq"], seq);
    }

    // A newer pin replaces it.
    let newer = publish(&server.admin, json!({"data": {"top": "Bo"}, "sticky": true})).await;
    assert_eq!(sticky_seq(&server.admin).await, newer);
    let mut late = server.subscribe(&["gifts"]).await;
    late.next_json().await;
    let sticky = late.next_json().await;
    assert_eq!((sticky["seq"].as_u64(), &sticky["data"]), (Some(newer), &json!({"top": "Bo"})));
    server.finish().await;
}

/// New viewers on every transport get their welcome, then the next live broadcast.
async fn expect_no_pin(server: &TestServer) {
    let mut viewers = Viewer::all(server, "room=gifts", &["gifts"]).await;
    for viewer in &mut viewers {
        assert_eq!(viewer.next().await["type"], "welcome");
    }
    let next = publish(&server.admin, json!({"data": "live"})).await;
    for viewer in &mut viewers {
        let live = viewer.next().await;
        assert_eq!((live["type"].as_str(), live["seq"].as_u64()), (Some("broadcast"), Some(next)), "{live}");
    }
}

#[tokio::test]
async fn after_unpinning_or_its_ttl_a_new_viewer_gets_no_pin() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let (status, error) = server.admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!((status.as_u16(), &error["error"]["code"]), (404, &json!("sticky_not_found")));
    let (status, error) = server.admin.delete("/v1/apps/demo/rooms/nope/sticky").await;
    assert_eq!((status.as_u16(), &error["error"]["code"]), (404, &json!("room_not_found")));

    publish(&server.admin, json!({"data": "pinned", "sticky": true})).await;
    let (status, _) = server.admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!(status, 204);
    assert_eq!(sticky_seq(&server.admin).await, Value::Null);
    let (status, _) = server.admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!(status, 404, "nothing left to unpin");
    expect_no_pin(&server).await;

    publish(&server.admin, json!({"data": "short", "sticky": true, "ttl_ms": 50})).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // its ttl passes
    assert_eq!(sticky_seq(&server.admin).await, Value::Null);
    expect_no_pin(&server).await;
    let (status, _) = server.admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!(status, 404, "an expired pin is gone");
    server.finish().await;
}

#[tokio::test]
async fn a_drain_and_restart_keeps_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ChildServer::start(dir.path(), &[]).await;
    first.admin.create_room("gifts").await;
    let pinned = publish(&first.admin, json!({"data": {"top": "Ana"}, "sticky": true, "ttl_ms": 3_600_000})).await;
    first.signal(15); // SIGTERM: drain, then the registry is written
    assert!(first.wait().await.success());

    let second = ChildServer::start(dir.path(), &[]).await;
    let mut viewer = Subscriber::connect(&format!("ws://{}/v1/apps/demo/ws?room=gifts", second.viewer)).await;
    assert_eq!(viewer.next_json().await["rooms"][0]["seq"], pinned);
    let sticky = viewer.next_json().await;
    assert_eq!((sticky["type"].as_str(), sticky["seq"].as_u64()), (Some("sticky"), Some(pinned)), "{sticky}");
    assert_eq!(sticky["data"], json!({"top": "Ana"}));
    let (status, _) = second.admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!(status, 204);
}
