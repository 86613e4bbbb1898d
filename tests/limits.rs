//! The flood limits against a real server and real sockets: the node's
//! connection cap (WebSocket and QUIC), the per-address cap, the handshake
//! timeout (slowloris), the accept rate's queue, the rooms one connection may
//! name, and the admin API's rate limits per room and per app.

mod common;

use std::net::SocketAddr;

use bullhorn::cli::ServeArgs;
use common::{HANG, QuicSubscriber, Subscriber, TestServer, metric, quic_client};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A WebSocket upgrade request for `query`, written by hand; returns the whole answer (the server closes after a refusal).
async fn refused_upgrade(viewer: SocketAddr, query: &str) -> String {
    let mut stream = TcpStream::connect(viewer).await.unwrap();
    let request = format!(
        "GET /v1/apps/demo/ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(HANG, stream.read_to_string(&mut answer)).await.expect("answer hung").unwrap();
    answer
}

/// Asserts that the server refused the QUIC handshake (CONNECTION_REFUSED, before any TLS work).
fn assert_refused(attempt: Result<QuicSubscriber, quinn::ConnectionError>, why: &str) {
    match attempt {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(close.error_code, quinn::TransportErrorCode::CONNECTION_REFUSED, "{why}");
        }
        other => panic!("{why}: expected CONNECTION_REFUSED, got {:?}", other.map(|_| "a connection")),
    }
}

async fn welcomed(server: &TestServer) -> Subscriber {
    let mut subscriber = server.subscribe(&["gifts"]).await;
    assert_eq!(subscriber.next_json().await["type"], "welcome");
    subscriber
}

#[tokio::test]
async fn the_node_refuses_past_its_connection_limit_before_the_upgrade() {
    let server = TestServer::start_with(ServeArgs { max_connections: Some(2), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let (_a, _b) = (welcomed(&server).await, welcomed(&server).await);
    let answer = refused_upgrade(server.viewer, "room=gifts").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    assert!(answer.contains(r#""code":"over_capacity""#), "{answer}");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_rejected_connections_total{reason="over_capacity"}"#), Some(1.0));
    server.finish().await;
}

#[tokio::test]
async fn one_address_gets_only_its_share_and_its_slots_back_on_close() {
    let args = ServeArgs { max_connections_per_ip: Some(2), ..Default::default() };
    let server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let (first, _second) = (welcomed(&server).await, welcomed(&server).await);
    let answer = refused_upgrade(server.viewer, "room=gifts").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections from your address"), "{answer}");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_rejected_connections_total{reason="per_ip"}"#), Some(1.0));
    assert_eq!(metric(&metrics, r#"bullhorn_rejected_connections_total{reason="over_capacity"}"#), Some(0.0));

    drop(first);
    // The server frees the slot when it reads the close: a new connection gets in once it has.
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (ws, _) = match tokio_tungstenite::connect_async(server.ws_url("room=gifts")).await {
            Ok(connected) => connected,
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(error) => panic!("the slot never came back: {error}"),
        };
        let mut third = Subscriber { ws };
        assert_eq!(third.next_json().await["type"], "welcome");
        break;
    }
    server.finish().await;
}

#[tokio::test]
async fn a_slowloris_client_is_dropped_at_the_handshake_timeout_while_others_connect() {
    let server = TestServer::start_with(ServeArgs { handshake_timeout_ms: Some(300), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let mut slow = TcpStream::connect(server.viewer).await.unwrap();
    slow.write_all(b"GET /v1/apps/demo/ws?room=gifts HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut normal = welcomed(&server).await;
    // The slow client trickles a header line now and then; the server still closes it.
    let mut closed = false;
    for _ in 0..100 {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(std::time::Duration::from_millis(100), slow.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("the server answered a request it never finished receiving"),
            Err(_) => {
                let _ = slow.write_all(b"X-Slow: 1\r\n").await;
            }
        }
    }
    assert!(closed, "the slow client is still connected");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_rejected_connections_total{reason="handshake_timeout"}"#), Some(1.0));
    server.admin.broadcast("gifts", json!("still served")).await;
    assert_eq!(normal.next_json().await["data"], "still served");
    server.finish().await;
}

#[tokio::test]
async fn connections_over_the_accept_rate_wait_their_turn_and_a_drain_answers_the_waiting_at_once() {
    // One connection a second: the first goes straight in, the others get turns 1, 2, 3, ... s away.
    let mut server = TestServer::start_with(ServeArgs { accept_rate: Some(1), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let _first = welcomed(&server).await;
    let _second = welcomed(&server).await; // it may have waited for its turn, then was served: not refused, not reset
    let throttled = || async { metric(&server.admin.metrics().await, "bullhorn_accept_throttled_total").unwrap() };
    let waited_until = |count: f64, what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + HANG;
        while throttled().await < count {
            assert!(tokio::time::Instant::now() < deadline, "{what} never took a turn");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };

    // Sixty more: the last one's turn is a minute away, twice the hang guard.
    const WAITING: usize = 60;
    let before = throttled().await;
    let viewer = server.viewer;
    let waiting: Vec<_> =
        (0..WAITING).map(|_| tokio::spawn(async move { refused_upgrade(viewer, "room=gifts").await })).collect();
    waited_until(before + WAITING as f64, "every WebSocket connection").await;
    // A QUIC handshake takes its turn from the same queue: behind all sixty.
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let quic = tokio::spawn(async move { QuicSubscriber::try_connect(&endpoint, server.quic, &["gifts"]).await });
    waited_until(before + WAITING as f64 + 1.0, "the QUIC connection").await;

    server.begin_shutdown();
    for answer in waiting {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "a waiting client is told to come back, not dropped: {answer}");
    }
    assert_refused(quic.await.unwrap(), "a waiting QUIC client is refused at the drain");
}

#[tokio::test]
async fn broadcasts_over_a_rooms_rate_get_429_with_retry_after() {
    let server = TestServer::start_with(ServeArgs { broadcasts_per_room: Some(1), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    server.admin.create_room("other").await;
    let send = |room: &'static str| {
        let admin = server.admin.clone();
        async move {
            admin
                .http
                .post(format!("{}/v1/apps/demo/rooms/{room}/broadcast", admin.base))
                .bearer_auth(&admin.key)
                .json(&json!({"data": 1}))
                .send()
                .await
                .unwrap()
        }
    };
    // One a second with a burst of one: of several sent back to back, one is refused.
    let mut refused = None;
    for _ in 0..20 {
        let response = send("gifts").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let refused = refused.expect("no 429 in 20 broadcasts at once");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The limit is per room: another room is not held back.
    assert_eq!(send("other").await.status(), StatusCode::ACCEPTED);
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_rate_limited_total{limit="broadcast"}"#), Some(1.0));
    server.finish().await;
}

#[tokio::test]
async fn an_apps_admin_requests_are_rate_limited_and_strangers_cannot_spend_them() {
    let server = TestServer::start_with(ServeArgs { admin_requests_per_app: Some(5), ..Default::default() }).await;
    // Wrong keys are answered 401 and take nothing from the app's budget.
    for _ in 0..50 {
        let (status, _) = server.admin.request(reqwest::Method::GET, "/v1/apps/demo/rooms", None, Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = server.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(status, StatusCode::OK, "the app's own first request passes");
    let mut limited = false;
    for _ in 0..50 {
        let (status, body) = server.admin.get("/v1/apps/demo/rooms").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    assert!(limited, "no 429 in 50 requests at once against 5 a second");
    let metrics = server.admin.metrics().await;
    assert!(metric(&metrics, r#"bullhorn_rate_limited_total{limit="admin"}"#).unwrap() >= 1.0);
    server.finish().await;
}

#[tokio::test]
async fn quic_is_refused_at_the_connection_limit_too_and_gets_in_once_a_slot_frees() {
    let server = TestServer::start_with(ServeArgs { max_connections: Some(2), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let _ws = welcomed(&server).await;
    let mut quic = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(quic.next_json().await.unwrap()["type"], "welcome");

    assert_refused(QuicSubscriber::try_connect(&endpoint, server.quic, &["gifts"]).await, "the node is full");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_rejected_connections_total{reason="over_capacity"}"#), Some(1.0));

    quic.conn.close(0u32.into(), b"bye");
    // The slot is back once the server has seen the close.
    let deadline = tokio::time::Instant::now() + HANG;
    let mut again = loop {
        match QuicSubscriber::try_connect(&endpoint, server.quic, &["gifts"]).await {
            Ok(again) => break again,
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "the slot never came back: {error}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(again.next_json().await.unwrap()["type"], "welcome");
    server.finish().await;
}

#[tokio::test]
async fn one_connection_names_at_most_the_apps_room_cap_and_each_room_once() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let six = (1..=6).map(|n| format!("room=r{n}")).collect::<Vec<_>>().join("&");
    let answer = refused_upgrade(server.viewer, &six).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"invalid_request""#) && answer.contains("at most 5 rooms"), "{answer}");
    let answer = refused_upgrade(server.viewer, "room=gifts&room=gifts@3").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("named twice"), "{answer}");
    // The listener goes on serving after the refusals.
    let _fine = welcomed(&server).await;
    server.finish().await;
}
