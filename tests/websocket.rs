//! WebSocket subscribers end to end: real sockets, a real client (contract §3, §4).

mod common;

use std::time::Duration;

use bullhorn::cli::ServeArgs;
use common::{TestServer, metric};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn refusals_before_the_upgrade_are_json() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let http = reqwest::Client::new();
    let cases = [
        ("/v1/apps/demo/ws?room=nope", 404, "room_not_found"),
        ("/v1/apps/nope/ws?room=gifts", 404, "app_not_found"),
        ("/v1/apps/demo/ws", 400, "invalid_request"),
        ("/v1/apps/demo/ws?room=bad%20id", 400, "invalid_request"),
        ("/v1/apps/demo/ws?room=gifts", 400, "invalid_request"), // no Upgrade headers
    ];
    for (path, status, code) in cases {
        let resp = http.get(format!("http://{}{path}", server.viewer)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    server.finish().await;
}

#[tokio::test]
async fn three_hundred_subscribers_get_fifty_broadcasts_once_in_order() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut subscribers = join_all((0..300).map(|_| server.subscribe(&["gifts"]))).await;
    for sub in &mut subscribers {
        let welcome = sub.next_json().await;
        assert_eq!(welcome, json!({"type":"welcome","rooms":[{"room":"gifts","seq":0}],"heartbeat_ms":25000}));
    }
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["online"], 300);

    let payload =
        |i: u64| json!({"text": format!("🎁 火箭 #{i} — «ünïcödé»"), "n": i, "nested": {"list": [1, "two", null]}});
    for i in 1..=50 {
        let answer = server.admin.broadcast("gifts", payload(i)).await;
        assert_eq!(answer["seq"], i);
        assert_eq!(answer["online"], 300);
    }
    let results = join_all(subscribers.iter_mut().map(|sub| async move {
        let mut seen = Vec::new();
        while seen.len() < 50 {
            let msg = sub.next_json().await;
            assert_eq!(msg["type"], "broadcast", "{msg}");
            assert_eq!(msg["room"], "gifts");
            assert!(msg["ts"].as_u64().unwrap() > 1_700_000_000_000);
            seen.push((msg["seq"].as_u64().unwrap(), msg["data"].clone()));
        }
        seen
    }))
    .await;
    for seen in results {
        for (i, (seq, data)) in seen.into_iter().enumerate() {
            let expected = i as u64 + 1;
            assert_eq!(seq, expected, "seq rises by 1");
            assert_eq!(data, payload(expected), "data intact");
        }
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_deliveries_total{transport=\"websocket\"}"), Some(15_000.0));
    assert_eq!(metric(&metrics, "bullhorn_connections{transport=\"websocket\"}"), Some(300.0));
    server.finish().await;
}

#[tokio::test]
async fn a_subscriber_in_two_rooms_gets_both_in_each_rooms_order() {
    let server = TestServer::start().await;
    server.admin.create_room("a").await;
    server.admin.create_room("b").await;
    server.admin.broadcast("b", json!("before")).await;
    let mut sub = server.subscribe(&["a", "b"]).await;
    assert_eq!(sub.next_json().await["rooms"], json!([{"room":"a","seq":0},{"room":"b","seq":1}]));
    for i in 0..10 {
        server.admin.broadcast(if i % 2 == 0 { "a" } else { "b" }, json!(i)).await;
    }
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..10 {
        let msg = sub.next_json().await;
        match msg["room"].as_str().unwrap() {
            "a" => a.push(msg["seq"].as_u64().unwrap()),
            _ => b.push(msg["seq"].as_u64().unwrap()),
        }
    }
    assert_eq!(a, [1, 2, 3, 4, 5]);
    assert_eq!(b, [2, 3, 4, 5, 6]);
    server.finish().await;
}

#[tokio::test]
async fn pings_are_answered_and_other_messages_ignored() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    sub.next_json().await;
    sub.send_text(r#"{"type":"hello","whatever":true}"#).await;
    sub.send_text("not even json").await;
    sub.send_text(r#"{"type":"ping"}"#).await;
    assert_eq!(sub.next_json().await, json!({"type":"pong"}));
    sub.ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    loop {
        match sub.next().await.unwrap() {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("expected pong, got {other:?}"),
        }
    }
    server.admin.broadcast("gifts", json!("still here")).await;
    assert_eq!(sub.next_json().await["data"], "still here");
    server.finish().await;
}

use futures_util::SinkExt as _;

#[tokio::test]
async fn a_frame_over_4_kib_closes_with_1009() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    let mut other = server.subscribe(&["gifts"]).await;
    sub.next_json().await;
    other.next_json().await;
    sub.send_text(&"x".repeat(4097)).await;
    let close = sub.next_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(u16::from(close.code), 1009);
    server.admin.broadcast("gifts", json!("others unaffected")).await;
    assert_eq!(other.next_json().await["data"], "others unaffected");
    server.finish().await;
}

#[tokio::test]
async fn deleting_a_room_sends_closing_then_4001() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    server.admin.create_room("other").await;
    let mut subs = join_all((0..5).map(|_| server.subscribe(&["gifts"]))).await;
    let mut bystander = server.subscribe(&["other"]).await;
    bystander.next_json().await;
    for sub in &mut subs {
        sub.next_json().await;
    }
    let (status, _) = server.admin.delete("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(status, 204);
    for sub in &mut subs {
        assert_eq!(sub.next_json().await, json!({"type":"closing","reason":"room_destroyed"}));
        let close = sub.next_close().await.expect("close frame");
        assert_eq!(u16::from(close.code), 4001);
    }
    let (status, _) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(status, 404);
    server.admin.broadcast("other", json!("unaffected")).await;
    assert_eq!(bystander.next_json().await["data"], "unaffected");
    let (_, list) = server.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1);
    server.finish().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_hold_up_the_others() {
    let args = ServeArgs {
        max_payload_bytes: Some(8 * 1024),
        queue_max_bytes: Some(512 * 1024),
        queue_max_messages: Some(64),
        slow_consumer_after_ms: Some(0),
        ..Default::default()
    };
    let server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    // A tiny receive buffer so the kernel cannot absorb the backlog for it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.viewer).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(server.ws_url("room=gifts"), stream).await.unwrap();
    let mut fast = join_all((0..5).map(|_| server.subscribe(&["gifts"]))).await;
    for sub in &mut fast {
        sub.next_json().await;
    }
    let text = "y".repeat(7 * 1024);
    // ~7 MiB: more than the kernel's send buffer (4 MiB here) and the queue hold for one socket.
    const COUNT: u64 = 1000;
    let readers = tokio::spawn(async move {
        join_all(fast.iter_mut().map(|sub| async move {
            for seq in 1..=COUNT {
                let msg = sub.next_json().await;
                assert_eq!(msg["seq"], seq, "fast subscribers get everything, in order: {msg}");
            }
        }))
        .await;
    });
    for _ in 0..COUNT {
        server.admin.broadcast("gifts", json!({"text": text})).await;
    }
    readers.await.unwrap();

    let metrics = server.admin.metrics().await;
    let dropped = metric(&metrics, "bullhorn_dropped_messages_total{reason=\"slow\"}").unwrap_or(0.0);
    assert!(dropped >= 1.0, "drops are counted:\n{metrics}");
    assert_eq!(metric(&metrics, "bullhorn_slow_consumer_disconnects_total"), Some(1.0));

    // Once it reads again, it is told why it is being closed, then closed with 4008.
    let mut closing = None;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), futures_util::StreamExt::next(&mut stalled)).await.unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "closing" {
                    closing = Some(v);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("stream ended without a close frame: {other:?}"),
        }
    };
    let closing = closing.expect("a closing message before the close");
    assert_eq!(closing["reason"], "slow_consumer");
    assert!(closing["reconnect_after_ms"].as_u64().is_some());
    assert_eq!(u16::from(close.code), 4008);
    server.finish().await;
}

#[tokio::test]
async fn draining_sends_closing_with_spread_delays_then_1001() {
    let args = ServeArgs { drain_window_ms: Some(10_000), ..Default::default() };
    let mut server = TestServer::start_with(args).await;
    server.admin.create_room("gifts").await;
    let mut subs = join_all((0..40).map(|_| server.subscribe(&["gifts"]))).await;
    for sub in &mut subs {
        sub.next_json().await;
    }
    server.begin_shutdown();
    let mut delays = Vec::new();
    for sub in &mut subs {
        let closing = sub.next_json().await;
        assert_eq!(closing["type"], "closing");
        assert_eq!(closing["reason"], "server_draining");
        let delay = closing["reconnect_after_ms"].as_u64().unwrap();
        assert!(delay <= 10_000);
        delays.push(delay);
        let close = sub.next_close().await.expect("close frame");
        assert_eq!(u16::from(close.code), 1001);
    }
    delays.sort_unstable();
    delays.dedup();
    assert!(delays.len() > 30, "delays are spread, not one value: {delays:?}");
    assert!(delays[0] < 5_000 && *delays.last().unwrap() > 5_000, "spread over the window: {delays:?}");
    server.finish().await;
}

/// Browsers open a fresh connection for a WebSocket, but a client may upgrade
/// a keep-alive connection that first fetched the page: that goes through the
/// HTTP router and must work the same.
#[tokio::test]
async fn an_upgrade_on_a_keep_alive_connection_works_too() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut tcp = tokio::net::TcpStream::connect(server.viewer).await.unwrap();
    let (head, body) = common::get_keeping_alive(&mut tcp, "/sdk/bullhorn.js").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("export function connect("));

    let (mut ws, response) = tokio_tungstenite::client_async(server.ws_url("room=gifts"), tcp).await.unwrap();
    assert_eq!(response.status(), 101);
    let welcome = futures_util::StreamExt::next(&mut ws).await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains(r#""type":"welcome""#));
    server.admin.broadcast("gifts", json!("over keep-alive")).await;
    let msg = futures_util::StreamExt::next(&mut ws).await.unwrap().unwrap();
    let msg: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(msg["data"], "over keep-alive");
    server.finish().await;
}

#[tokio::test]
async fn the_demo_page_and_sdk_are_served() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let page = reqwest::get(format!("http://{}/", server.viewer)).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-default-room="gifts""#), "the app's first room is the default");
    let sdk = reqwest::get(format!("http://{}/sdk/bullhorn.js", server.viewer)).await.unwrap();
    assert_eq!(sdk.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(sdk.text().await.unwrap().contains("export function connect("), "an ES module");
    let global = reqwest::get(format!("http://{}/sdk/bullhorn.global.js", server.viewer)).await.unwrap();
    assert_eq!(global.headers()["content-type"], "text/javascript; charset=utf-8");
    let global = global.text().await.unwrap();
    assert!(!global.contains("export ") && global.contains("globalThis.Bullhorn"), "a classic script");
    let types = reqwest::get(format!("http://{}/sdk/bullhorn.d.ts", server.viewer)).await.unwrap();
    assert!(types.text().await.unwrap().contains("export function connect(options: ConnectOptions): Connection;"));
    let console =
        reqwest::get(format!("http://{}/console", server.admin.base.trim_start_matches("http://"))).await.unwrap();
    assert_eq!(console.status(), 200);
    assert!(console.text().await.unwrap().contains("bullhorn console"), "the console is on the admin listener");
    let missing = reqwest::get(format!("http://{}/nope", server.viewer)).await.unwrap();
    assert_eq!(missing.status(), 404);
    server.finish().await;
}
