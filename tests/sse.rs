//! Server-Sent Events (contract §10) against a real server over real
//! sockets: the stream, its ids, `Last-Event-ID`, refusals, heartbeats,
//! drain, slow consumers and the keep-alive path.

mod common;

use std::time::Duration;

use bullhorn::cli::ServeArgs;
use common::sse::{self, SseStream};
use common::{TestServer, metric};
use serde_json::json;

async fn open(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> SseStream {
    sse::open(server.viewer, &format!("/v1/apps/demo/sse?{query}"), headers).await
}

#[tokio::test]
async fn a_stream_gets_every_message_as_an_event_with_its_resume_id() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    server.admin.broadcast("gifts", json!("before")).await;
    let mut stream = open(&server, "room=gifts", &[]).await;
    assert_eq!(stream.status(), 200, "{}", stream.head);
    let head = stream.head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream\r\n"), "{head}");
    assert!(head.contains("access-control-allow-origin: *\r\n"), "{head}");
    let welcome = stream.next_event().await;
    assert_eq!((welcome.kind.as_str(), welcome.id.as_str()), ("welcome", "gifts@1"));
    assert_eq!(welcome.json()["rooms"], json!([{"room": "gifts", "seq": 1}]));
    for n in 0..3 {
        server.admin.broadcast("gifts", json!({"text": format!("gift {n}"), "lines": "a\nb"})).await;
    }
    for n in 0..3u64 {
        let event = stream.next_event().await;
        assert_eq!(event.kind, "broadcast");
        assert!(!event.data.contains('\n'), "one data line: {:?}", event.data);
        let msg = event.json();
        assert_eq!((msg["type"].as_str(), msg["seq"].as_u64()), (Some("broadcast"), Some(n + 2)));
        assert_eq!(msg["data"]["text"], format!("gift {n}"));
        assert_eq!(event.id, format!("gifts@{}", n + 2));
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_deliveries_total{transport="sse"}"#), Some(3.0), "{metrics}");
    assert_eq!(metric(&metrics, r#"bullhorn_connections{transport="sse"}"#), Some(1.0));
    drop(stream);
    server.finish().await;
}

#[tokio::test]
async fn a_stream_of_several_rooms_names_every_room_in_each_id() {
    let server = TestServer::start().await;
    for room in ["a", "b", "c"] {
        server.admin.create_room(room).await;
    }
    server.admin.broadcast("b", json!(1)).await;
    let mut stream = open(&server, "room=a&room=b&room=c", &[]).await;
    assert_eq!(stream.next_event().await.id, "a@0,b@1,c@0");
    let mut expected = [0u64, 1, 0];
    for (i, room) in ["a", "c", "a", "b", "b", "a"].into_iter().enumerate() {
        server.admin.broadcast(room, json!(i)).await;
        expected[(room.as_bytes()[0] - b'a') as usize] += 1;
        let event = stream.next_event().await;
        assert_eq!(event.json()["room"], room);
        assert_eq!(event.id, format!("a@{},b@{},c@{}", expected[0], expected[1], expected[2]));
    }
    server.finish().await;
}

#[tokio::test]
async fn last_event_id_resumes_exactly_and_wins_over_the_query() {
    let server = TestServer::start().await;
    server.admin.create_room("a").await;
    server.admin.create_room("b").await;
    for n in 1..=4 {
        server.admin.broadcast("a", json!(n)).await;
        server.admin.broadcast("b", json!(n)).await;
    }
    // The query says a@1; the header says a@3 and b@2: the header wins, room by room.
    let mut stream = open(&server, "room=a@1&room=b", &[("Last-Event-ID", "a@3,b@2,gone@9")]).await;
    assert_eq!(stream.status(), 200, "{}", stream.head);
    let welcome = stream.next_event().await;
    assert_eq!(welcome.kind, "welcome");
    let mut got = Vec::new();
    for _ in 0..3 {
        let msg = stream.next_event().await.json();
        got.push((msg["room"].as_str().unwrap().to_owned(), msg["seq"].as_u64().unwrap()));
    }
    got.sort();
    assert_eq!(got, [("a".into(), 4), ("b".into(), 3), ("b".into(), 4)]);
    server.finish().await;
}

#[tokio::test]
async fn refusals_come_before_the_stream_as_json() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    for (query, headers, status, code) in [
        ("room=nope", &[][..], 404, "room_not_found"),
        ("", &[][..], 400, "invalid_request"),
        ("room=gifts", &[("Last-Event-ID", "gifts@x")][..], 400, "invalid_request"),
    ] {
        let mut stream = open(&server, query, headers).await;
        assert_eq!(stream.status(), status, "{query}: {}", stream.head);
        assert!(stream.head.to_ascii_lowercase().contains("content-type: application/json"));
        assert_eq!(stream.body().await["error"]["code"], code, "{query}");
    }
    let mut stream = sse::open(server.viewer, "/v1/apps/nope/sse?room=gifts", &[]).await;
    assert_eq!((stream.status(), stream.body().await["error"]["code"].clone()), (404, json!("app_not_found")));
    server.finish().await;
}

#[tokio::test]
async fn heartbeats_are_comments() {
    let args = ServeArgs { heartbeat_ms: Some(100), ..Default::default() };
    let server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let mut stream = open(&server, "room=gifts", &[]).await;
    stream.next_event().await;
    // Comments are skipped by the parser; a broadcast after a few heartbeats shows them counted.
    while stream.comments < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.admin.broadcast("gifts", json!("tick")).await;
        assert_eq!(stream.next_event().await.kind, "broadcast");
    }
    server.finish().await;
}

#[tokio::test]
async fn draining_sends_closing_with_a_retry_then_ends_the_stream() {
    let args = ServeArgs { drain_window_ms: Some(2_000), ..Default::default() };
    let mut server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let mut stream = open(&server, "room=gifts", &[]).await;
    stream.next_event().await;
    server.begin_shutdown();
    let closing = stream.next_event().await;
    assert_eq!((closing.kind.as_str(), closing.json()["reason"].as_str()), ("closing", Some("server_draining")));
    assert_eq!(closing.retry, closing.json()["reconnect_after_ms"].as_u64(), "EventSource waits as asked");
    assert!(stream.next().await.is_none(), "then the stream ends");
    server.finish().await;
}

#[tokio::test]
async fn a_stream_that_never_reads_is_a_slow_consumer() {
    let args = ServeArgs {
        max_payload_bytes: Some(8 * 1024),
        queue_max_bytes: Some(256 * 1024),
        queue_max_messages: Some(64),
        slow_consumer_after_ms: Some(0),
        ..Default::default()
    };
    let server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.viewer).await.unwrap();
    let mut stalled = sse::open_on(tcp, "/v1/apps/demo/sse?room=gifts", &[]).await;
    let text = "y".repeat(7 * 1024);
    for _ in 0..1000 {
        server.admin.broadcast("gifts", json!({ "text": text })).await;
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_slow_consumer_disconnects_total"), Some(1.0), "{metrics}");
    let mut closing = None;
    while let Some(event) = stalled.next().await {
        if event.kind == "closing" {
            closing = Some(event.json());
        }
    }
    assert_eq!(closing.expect("told before the end")["reason"], "slow_consumer");
    server.finish().await;
}

/// A browser may send its `EventSource` request on a keep-alive connection
/// that first fetched the page: it takes the same path as on a fresh one.
#[tokio::test]
async fn a_stream_on_a_keep_alive_connection_works_too() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut tcp = tokio::net::TcpStream::connect(server.viewer).await.unwrap();
    let (head, _) = common::get_keeping_alive(&mut tcp, "/sdk/bullhorn.d.ts").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut stream = sse::open_on(tcp, "/v1/apps/demo/sse?room=gifts", &[]).await;
    assert_eq!(stream.status(), 200, "{}", stream.head);
    assert_eq!(stream.next_event().await.kind, "welcome");
    server.admin.broadcast("gifts", json!("over keep-alive")).await;
    assert_eq!(stream.next_event().await.json()["data"], "over keep-alive");
    server.finish().await;
}
