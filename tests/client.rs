//! `bullhorn::client` against a real server: the same API over both
//! transports, and reconnection after a drain.

mod common;

use std::time::Duration;

use bullhorn::cli::ServeArgs;
use bullhorn::client::{Event, Message, Subscription, Target};
use common::TestServer;
use serde_json::json;

async fn next_message(sub: &mut Subscription) -> Message {
    match tokio::time::timeout(common::HANG, sub.next()).await.expect("subscription hung") {
        Some(Event::Message(message)) => message,
        Some(other) => panic!("expected a message, got {other:?}"),
        None => panic!("subscription ended"),
    }
}

#[tokio::test]
async fn one_api_over_websocket_and_quic() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let targets = [
        Target::WebSocket { url: format!("ws://{}", server.viewer) },
        Target::Quic { addr: server.quic, server_name: "localhost".into(), fingerprint: server.fingerprint.clone() },
    ];
    let mut subs: Vec<Subscription> = targets.into_iter().map(|t| Subscription::new(t, "demo", &["gifts"])).collect();
    for sub in &mut subs {
        assert!(matches!(next_message(sub).await, Message::Welcome { .. }));
    }
    server.admin.broadcast("gifts", json!({"text": "hi"})).await;
    for sub in &mut subs {
        match next_message(sub).await {
            Message::Broadcast { room, seq, data, .. } => {
                assert_eq!((room.as_str(), seq, data), ("gifts", 1, json!({"text": "hi"})));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sub.last_seq("gifts"), Some(1));
    }
    server.finish().await;
}

#[tokio::test]
async fn an_unknown_room_ends_the_subscription_with_the_error() {
    let server = TestServer::start().await;
    let target =
        Target::Quic { addr: server.quic, server_name: "localhost".into(), fingerprint: server.fingerprint.clone() };
    let mut sub = Subscription::new(target, "demo", &["nope"]);
    match next_message(&mut sub).await {
        Message::Error { code, .. } => assert_eq!(code, "room_not_found"),
        other => panic!("{other:?}"),
    }
    assert_eq!(tokio::time::timeout(common::HANG, sub.next()).await.unwrap(), None);
    server.finish().await;
}

#[tokio::test]
async fn after_a_drain_it_waits_the_servers_delay_then_comes_back_resuming() {
    let args = ServeArgs { drain_window_ms: Some(300), ..Default::default() };
    let mut first = TestServer::start_with(args.clone()).await;
    first.admin.create_room("gifts").await;
    first.admin.broadcast("gifts", json!(1)).await;
    let mut sub = Subscription::new(Target::WebSocket { url: format!("ws://{}", first.viewer) }, "demo", &["gifts"]);
    assert!(matches!(next_message(&mut sub).await, Message::Welcome { .. }));
    first.begin_shutdown();
    let delay = match next_message(&mut sub).await {
        Message::Closing { reason, reconnect_after_ms } => {
            assert_eq!(reason, "server_draining");
            reconnect_after_ms.unwrap()
        }
        other => panic!("{other:?}"),
    };
    let viewer = first.viewer;
    first.finish().await;
    // A new node on the same address, as a restarted process would be.
    let second = TestServer::start_with(ServeArgs { viewer_addr: Some(viewer), ..args }).await;
    second.admin.create_room("gifts").await;
    match tokio::time::timeout(common::HANG, sub.next()).await.unwrap() {
        Some(Event::Reconnecting { after }) => assert_eq!(after, Duration::from_millis(delay), "the server's delay"),
        other => panic!("{other:?}"),
    }
    // It resumes after the seq it saw; the new node holds nothing, so the welcome starts it over.
    assert!(matches!(next_message(&mut sub).await, Message::Welcome { .. }));
    second.admin.broadcast("gifts", json!("again")).await;
    assert!(matches!(next_message(&mut sub).await, Message::Broadcast { data, .. } if data == json!("again")));
    second.finish().await;
}
