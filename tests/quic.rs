//! QUIC subscribers end to end (contract §5), with a real quinn client that
//! pins the server's development certificate by its fingerprint file.

mod common;

use common::{QuicSubscriber, TestServer, metric, quic_client};
use futures_util::future::join_all;
use serde_json::json;

#[tokio::test]
async fn fifty_quic_and_fifty_websocket_subscribers_get_the_same_thirty_broadcasts() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut quic = join_all((0..50).map(|_| QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]))).await;
    let mut ws = join_all((0..50).map(|_| server.subscribe(&["gifts"]))).await;
    for sub in &mut quic {
        assert_eq!(
            sub.next_json().await.unwrap(),
            json!({"type":"welcome","rooms":[{"room":"gifts","seq":0}],"heartbeat_ms":25000})
        );
    }
    for sub in &mut ws {
        sub.next_json().await;
    }
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["online"], 100);
    for i in 1..=30 {
        server.admin.broadcast("gifts", json!({"text": format!("礼物 {i}"), "i": i})).await;
    }
    let quic_seen = join_all(quic.iter_mut().map(|sub| async move {
        let mut seen = Vec::new();
        for _ in 0..30 {
            seen.push(sub.next_json().await.unwrap());
        }
        seen
    }))
    .await;
    let ws_seen = join_all(ws.iter_mut().map(|sub| async move {
        let mut seen = Vec::new();
        for _ in 0..30 {
            seen.push(sub.next_json().await);
        }
        seen
    }))
    .await;
    for seen in quic_seen.iter().chain(&ws_seen) {
        for (i, msg) in seen.iter().enumerate() {
            assert_eq!(msg["seq"], i as u64 + 1);
            assert_eq!(msg["data"]["i"], i as u64 + 1);
        }
        // Same bytes on every transport: identical messages, ts included.
        assert_eq!(seen, &quic_seen[0]);
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_deliveries_total{transport=\"quic\"}"), Some(1500.0));
    assert_eq!(metric(&metrics, "bullhorn_connections{transport=\"quic\"}"), Some(50.0));
    server.finish().await;
}

#[tokio::test]
async fn unknown_rooms_apps_and_bad_hellos_get_an_error_frame() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, server.quic, &["nope"]).await;
    let error = sub.next_json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "room_not_found");
    assert!(error["message"].as_str().unwrap().contains("nope"));

    let mut bad_app =
        QuicSubscriber::raw_hello(&endpoint, server.quic, br#"{"type":"hello","app":"nope","rooms":["gifts"]}"#).await;
    assert_eq!(bad_app.next_json().await.unwrap()["code"], "app_not_found");
    let mut bad_json = QuicSubscriber::raw_hello(&endpoint, server.quic, b"{not json").await;
    assert_eq!(bad_json.next_json().await.unwrap()["code"], "invalid_request");
    let mut not_hello = QuicSubscriber::raw_hello(&endpoint, server.quic, br#"{"type":"ping"}"#).await;
    assert_eq!(not_hello.next_json().await.unwrap()["code"], "invalid_request");
    server.finish().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut bad = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    let mut good = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    bad.next_json().await.unwrap();
    good.next_json().await.unwrap();
    bad.send_raw(&5000u32.to_be_bytes()).await;
    let reason = tokio::time::timeout(common::HANG, bad.conn.closed()).await.unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(close.error_code, quinn::VarInt::from_u32(1009)),
        other => panic!("expected an application close, got {other:?}"),
    }
    server.admin.broadcast("gifts", json!("still served")).await;
    assert_eq!(good.next_json().await.unwrap()["data"], "still served");
    good.send_raw(&bullhorn::protocol::quic::frame(br#"{"type":"ping"}"#)).await;
    assert_eq!(good.next_json().await.unwrap(), json!({"type":"pong"}));
    server.finish().await;
}

#[tokio::test]
async fn the_fingerprint_file_matches_the_certificate_served_and_alpn_is_enforced() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let file = std::fs::read_to_string(server.data_dir.path().join("dev-cert.sha256")).unwrap();
    assert_eq!(file.trim(), server.fingerprint);
    assert_eq!(file.trim().len(), 64);
    // The pinned client only connects when the served certificate hashes to the file's value.
    let endpoint = quic_client(file.trim(), b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(sub.next_json().await.unwrap()["type"], "welcome");
    let wrong_pin = quic_client(&"0".repeat(64), b"bullhorn/1");
    assert!(wrong_pin.connect(server.quic, "localhost").unwrap().await.is_err());
    let wrong_alpn = quic_client(&server.fingerprint, b"h2");
    assert!(wrong_alpn.connect(server.quic, "localhost").unwrap().await.is_err(), "a wrong ALPN is refused");
    server.finish().await;
}

#[tokio::test]
async fn draining_sends_closing_to_quic_subscribers_too() {
    let mut server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut subs = join_all((0..10).map(|_| QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]))).await;
    for sub in &mut subs {
        sub.next_json().await.unwrap();
    }
    server.begin_shutdown();
    for sub in &mut subs {
        let closing = sub.next_json().await.unwrap();
        assert_eq!(closing["type"], "closing");
        assert_eq!(closing["reason"], "server_draining");
        assert!(closing["reconnect_after_ms"].as_u64().unwrap() <= 10_000);
        assert!(sub.next_json().await.is_none(), "the stream ends after closing");
    }
    server.finish().await;
}

/// A node on the default wildcard address of a host with several addresses:
/// a client that dialled any of them is answered from that one, or its QUIC
/// stack drops every answer as a stranger's (127.0.0.2 is this host's, but
/// the kernel would answer 127.0.0.1 from 127.0.0.1).
#[tokio::test]
async fn a_node_on_the_wildcard_address_answers_from_the_address_each_client_dialled() {
    let args = bullhorn::cli::ServeArgs { quic_addr: Some("0.0.0.0:0".parse().unwrap()), ..Default::default() };
    let server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut subscribers = Vec::new();
    for ip in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let addr = std::net::SocketAddr::from((ip, server.quic.port()));
        let mut sub = QuicSubscriber::connect(&endpoint, addr, &["gifts"]).await;
        assert_eq!(sub.next_json().await.unwrap()["type"], "welcome", "dialled {addr}");
        subscribers.push(sub);
    }
    server.admin.broadcast("gifts", json!({"gift": "rocket"})).await;
    for sub in &mut subscribers {
        assert_eq!(sub.next_json().await.unwrap()["data"], json!({"gift": "rocket"}));
    }
    server.finish().await;
}

/// The node asks clients that support it (quinn's do) to acknowledge several
/// deliveries at once (the ACK frequency extension): without it, a client
/// acknowledges at least every second packet.
#[tokio::test]
async fn a_quinn_client_is_asked_for_one_ack_per_several_deliveries() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(sub.next_json().await.unwrap()["type"], "welcome");
    assert_eq!(sub.conn.stats().frame_rx.ack_frequency, 1, "the node sent one ACK_FREQUENCY frame");
    let acks_before = sub.conn.stats().frame_tx.acks;
    // One at a time, so that each delivery is a packet of its own.
    const DELIVERIES: u64 = 40;
    for i in 1..=DELIVERIES {
        server.admin.broadcast("gifts", json!({"i": i})).await;
        assert_eq!(sub.next_json().await.unwrap()["data"]["i"], i);
    }
    let acks = sub.conn.stats().frame_tx.acks - acks_before;
    assert!(acks <= DELIVERIES / 3, "{acks} ACKs for {DELIVERIES} packets (one per five asked)");
    server.finish().await;
}
