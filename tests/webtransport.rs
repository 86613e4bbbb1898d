//! WebTransport subscribers end to end, with a real HTTP/3 WebTransport
//! client (web-transport-quinn, as `bullhorn::client` uses it) pinning the
//! server's development certificate. The browser's side is in browser.rs.

mod common;

use std::time::Duration;

use bullhorn::client::{Message, WtStream, webtransport_url};
use common::{HANG, QuicSubscriber, TestServer, metric, quic_client};
use futures_util::future::join_all;
use serde_json::{Value, json};

/// A WebTransport subscriber to `rooms` of app `demo`.
async fn subscribe(endpoint: &quinn::Endpoint, server: &TestServer, rooms: &[&str]) -> WtStream {
    subscribe_app(endpoint, server, "demo", rooms).await
}

async fn subscribe_app(endpoint: &quinn::Endpoint, server: &TestServer, app: &str, rooms: &[&str]) -> WtStream {
    let rooms: Vec<String> = rooms.iter().map(|r| (*r).to_owned()).collect();
    let connect = WtStream::connect(endpoint, server.quic, "localhost", app, &rooms);
    tokio::time::timeout(HANG, connect).await.expect("hung").expect("webtransport session")
}

async fn next_json(sub: &mut WtStream) -> Option<Value> {
    let frame = tokio::time::timeout(HANG, sub.next_frame()).await.expect("webtransport subscriber hung").ok()??;
    Some(serde_json::from_slice(&frame).expect("valid JSON"))
}

#[tokio::test]
async fn webtransport_quic_and_websocket_subscribers_get_the_same_bytes() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let wt_endpoint = quic_client(&server.fingerprint, b"h3");
    let quic_endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut wt = join_all((0..20).map(|_| subscribe(&wt_endpoint, &server, &["gifts"]))).await;
    let mut quic = join_all((0..20).map(|_| QuicSubscriber::connect(&quic_endpoint, server.quic, &["gifts"]))).await;
    let mut ws = join_all((0..20).map(|_| server.subscribe(&["gifts"]))).await;
    let welcome = json!({"type":"welcome","rooms":[{"room":"gifts","seq":0}],"heartbeat_ms":25000});
    for sub in &mut wt {
        assert_eq!(next_json(sub).await.unwrap(), welcome);
    }
    for sub in &mut quic {
        assert_eq!(sub.next_json().await.unwrap(), welcome);
    }
    for sub in &mut ws {
        assert_eq!(sub.next_json().await, welcome);
    }
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["online"], 60);
    for i in 1..=20 {
        server.admin.broadcast("gifts", json!({"text": format!("礼物 {i}"), "i": i})).await;
    }
    let wt_seen = join_all(wt.iter_mut().map(|sub| async move {
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(next_json(sub).await.unwrap());
        }
        seen
    }))
    .await;
    let quic_first = {
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(quic[0].next_json().await.unwrap());
        }
        seen
    };
    let ws_first = {
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(ws[0].next_json().await);
        }
        seen
    };
    for seen in &wt_seen {
        for (i, msg) in seen.iter().enumerate() {
            assert_eq!(msg["seq"], i as u64 + 1);
            assert_eq!(msg["data"]["i"], i as u64 + 1);
        }
        // The same bytes on every transport, ts included.
        assert_eq!(seen, &quic_first);
        assert_eq!(seen, &ws_first);
    }
    // Pings go on the client's own stream; the pong follows on the server's.
    wt[0].ping().await.unwrap();
    assert_eq!(next_json(&mut wt[0]).await.unwrap(), json!({"type":"pong"}));
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_deliveries_total{transport=\"webtransport\"}"), Some(400.0));
    assert_eq!(metric(&metrics, "bullhorn_connections{transport=\"webtransport\"}"), Some(20.0));
    assert_eq!(metric(&metrics, "bullhorn_connections{transport=\"quic\"}"), Some(20.0));
    // Closed sessions leave their rooms.
    for sub in &wt {
        sub.session().close(1000, b"bye");
    }
    let mut online = 60;
    for _ in 0..200 {
        online = server.admin.get("/v1/apps/demo/rooms/gifts").await.1["online"].as_u64().unwrap();
        if online == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(online, 40);
    server.finish().await;
}

#[tokio::test]
async fn refusals_arrive_as_error_frames_and_other_paths_are_not_found() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"h3");
    let cases: [(&str, &[&str], &str); 4] = [
        ("demo", &["nope"], "room_not_found"),
        ("nope", &["gifts"], "app_not_found"),
        ("demo", &[], "invalid_request"),
        ("demo", &["gifts", "gifts"], "invalid_request"),
    ];
    for (app, rooms, code) in cases {
        let mut sub = subscribe_app(&endpoint, &server, app, rooms).await;
        let error = next_json(&mut sub).await.unwrap();
        assert_eq!(error["type"], "error", "{app} {rooms:?}");
        assert_eq!(error["code"], code, "{app} {rooms:?}");
        assert_eq!(next_json(&mut sub).await, None, "the stream ends after the error");
    }
    // Not the subscribe path: the CONNECT request is answered 404.
    let conn = endpoint.connect(server.quic, "localhost").unwrap().await.unwrap();
    let url = url::Url::parse(&format!("https://localhost:{}/v1/apps/demo/ws?room=gifts", server.quic.port())).unwrap();
    let refused = tokio::time::timeout(HANG, web_transport_quinn::Session::connect(conn, url)).await.expect("hung");
    let error = refused.expect_err("a wrong path is refused").to_string();
    assert!(error.contains("404"), "{error}");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_connections{transport=\"webtransport\"}"), Some(0.0));
    server.finish().await;
}

#[tokio::test]
async fn resume_replays_what_was_missed_and_a_deleted_room_says_closing() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    for i in 1..=5 {
        server.admin.broadcast("gifts", json!({"i": i})).await;
    }
    let endpoint = quic_client(&server.fingerprint, b"h3");
    let mut sub = subscribe(&endpoint, &server, &["gifts@2"]).await;
    assert_eq!(next_json(&mut sub).await.unwrap()["rooms"][0]["seq"], 2);
    for seq in 3..=5 {
        assert_eq!(next_json(&mut sub).await.unwrap()["seq"], seq);
    }
    server.admin.delete("/v1/apps/demo/rooms/gifts").await;
    let closing = next_json(&mut sub).await.unwrap();
    assert_eq!(closing, json!({"type":"closing","reason":"room_destroyed"}));
    assert_eq!(next_json(&mut sub).await, None);
    // The client's own reconnecting subscription speaks WebTransport too.
    server.admin.create_room("gifts").await;
    let target = bullhorn::client::Target::WebTransport {
        addr: server.quic,
        server_name: "localhost".into(),
        fingerprint: server.fingerprint.clone(),
    };
    let mut subscription = bullhorn::client::Subscription::new(target, "demo", &["gifts"]);
    let welcome = tokio::time::timeout(HANG, subscription.next()).await.unwrap();
    assert!(matches!(welcome, Some(bullhorn::client::Event::Message(Message::Welcome { .. }))), "{welcome:?}");
    server.admin.broadcast("gifts", json!({"hello": "wt"})).await;
    let broadcast = tokio::time::timeout(HANG, subscription.next()).await.unwrap();
    assert!(matches!(broadcast, Some(bullhorn::client::Event::Message(Message::Broadcast { seq: 1, .. }))));
    assert_eq!(webtransport_url("h", 1, "a", &["r@1".into()]).unwrap().as_str(), "https://h:1/v1/apps/a/wt?room=r%401");
    server.finish().await;
}

#[tokio::test]
async fn a_drain_says_closing_with_a_delay_and_an_oversized_frame_closes_only_its_session() {
    let mut server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"h3");
    let mut flooder = subscribe(&endpoint, &server, &["gifts"]).await;
    let mut others = join_all((0..5).map(|_| subscribe(&endpoint, &server, &["gifts"]))).await;
    assert_eq!(next_json(&mut flooder).await.unwrap()["type"], "welcome");
    for sub in &mut others {
        assert_eq!(next_json(sub).await.unwrap()["type"], "welcome");
    }
    // A frame over 4 KiB on the ping stream: that session is closed with 1009.
    let mut pings = flooder.session().open_uni().await.unwrap();
    pings.write_all(&5000u32.to_be_bytes()).await.unwrap();
    let closed = tokio::time::timeout(HANG, flooder.session().closed()).await.expect("hung");
    assert!(closed.to_string().contains("1009"), "{closed}");
    server.admin.broadcast("gifts", json!({"still": "here"})).await;
    for sub in &mut others {
        assert_eq!(next_json(sub).await.unwrap()["data"], json!({"still": "here"}));
    }
    server.begin_shutdown();
    for sub in &mut others {
        let closing = next_json(sub).await.unwrap();
        assert_eq!(closing["reason"], "server_draining");
        assert!(closing["reconnect_after_ms"].is_u64(), "{closing}");
        assert_eq!(next_json(sub).await, None);
    }
    server.finish().await;
}
