//! Delivery semantics end to end (contract §2–3), over real sockets: resume
//! with `room@seq`, priorities and conflation under real backpressure (a
//! subscriber that stops reading), and `Idempotency-Key`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bullhorn::cli::ServeArgs;
use common::{Admin, QuicSubscriber, Subscriber, TestServer, metric, quic_client};
use futures_util::future::join_all;
use serde_json::{Value, json};

/// Broadcasts to `room` with extra body fields and headers; returns status, body and headers.
async fn post_broadcast(
    admin: &Admin,
    room: &str,
    body: Value,
    idempotency_key: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = admin
        .http
        .post(format!("{}/v1/apps/demo/rooms/{room}/broadcast", admin.base))
        .bearer_auth(&admin.key)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = idempotency_key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, resp.json().await.unwrap(), headers)
}

/// Publishes to `gifts` back to back while `running` is set, so a resume races live broadcasts.
fn keep_publishing(admin: Admin, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while running.load(Ordering::Relaxed) {
            admin.broadcast("gifts", json!("live")).await;
            tokio::task::yield_now().await;
        }
    })
}

/// Either transport's subscriber, read message by message.
trait Messages {
    async fn message(&mut self) -> Value;
}

impl Messages for Subscriber {
    async fn message(&mut self) -> Value {
        self.next_json().await
    }
}

impl Messages for QuicSubscriber {
    async fn message(&mut self) -> Value {
        self.next_json().await.expect("the stream is open")
    }
}

/// Reads one resumed stream: after a welcome at `after`, every seq from
/// `after + 1` on, once, in order, with no `lagged`, through `until`.
async fn expect_seamless(sub: &mut impl Messages, after: u64, until: u64) {
    let welcome = sub.message().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["rooms"][0]["seq"], after, "the welcome names the resume point");
    let mut expected = after + 1;
    while expected <= until {
        let message = sub.message().await;
        assert_eq!(message["type"], "broadcast", "no lagged, nothing else: {message}");
        assert_eq!(message["seq"], expected, "none twice, none missing");
        expected += 1;
    }
}

// Several threads, so the join and a publish really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_websocket_subscriber_gets_exactly_what_it_missed_then_live_ones() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let running = Arc::new(AtomicBool::new(false));
    for _ in 0..20 {
        let mut first = server.subscribe(&["gifts"]).await;
        let welcome = first.next_json().await;
        let seen = welcome["rooms"][0]["seq"].as_u64().unwrap();
        drop(first);
        // Disconnected for 20 broadcasts.
        for _ in 0..20 {
            server.admin.broadcast("gifts", json!("missed")).await;
        }
        // Broadcasts keep flowing while it resumes.
        running.store(true, Ordering::Relaxed);
        let publisher = keep_publishing(server.admin.clone(), running.clone());
        let mut resumed = Subscriber::connect(&server.ws_url(&format!("room=gifts@{seen}"))).await;
        expect_seamless(&mut resumed, seen, seen + 30).await;
        running.store(false, Ordering::Relaxed);
        publisher.await.unwrap();
    }
    let metrics = server.admin.metrics().await;
    assert!(metric(&metrics, "bullhorn_resume_replayed_total").unwrap() >= 400.0, "20 rounds of at least 20");
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_messages_total{reason="expired"}"#).unwrap_or(0.0), 0.0);
    server.finish().await;
}

// Several threads, so the join and a publish really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_quic_subscriber_gets_exactly_what_it_missed_then_live_ones() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let running = Arc::new(AtomicBool::new(false));
    for _ in 0..10 {
        let seen = server.admin.get("/v1/apps/demo/rooms/gifts").await.1["seq"].as_u64().unwrap();
        for _ in 0..20 {
            server.admin.broadcast("gifts", json!("missed")).await;
        }
        running.store(true, Ordering::Relaxed);
        let publisher = keep_publishing(server.admin.clone(), running.clone());
        let room = format!("gifts@{seen}");
        let mut resumed = QuicSubscriber::connect(&endpoint, server.quic, &[&room]).await;
        expect_seamless(&mut resumed, seen, seen + 30).await;
        running.store(false, Ordering::Relaxed);
        publisher.await.unwrap();
    }
    server.finish().await;
}

#[tokio::test]
async fn resuming_beyond_the_window_is_one_lagged_expired_with_the_right_count() {
    let server = TestServer::start_with(ServeArgs { resume_messages: Some(5), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    for i in 1..=20 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    let mut sub = Subscriber::connect(&server.ws_url("room=gifts@2")).await;
    assert_eq!(sub.next_json().await["rooms"][0]["seq"], 2);
    assert_eq!(sub.next_json().await, json!({"type":"lagged","room":"gifts","missed":13,"reason":"expired"}));
    for seq in 16..=20 {
        let message = sub.next_json().await;
        assert_eq!((message["seq"].as_u64(), message["data"].as_u64()), (Some(seq), Some(seq)));
    }
    server.admin.broadcast("gifts", json!(21)).await;
    assert_eq!(sub.next_json().await["seq"], 21);
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_messages_total{reason="expired"}"#), Some(13.0));
    server.finish().await;
}

#[tokio::test]
async fn resume_turned_off_announces_everything_missed_as_expired() {
    let server = TestServer::start_with(ServeArgs { resume_messages: Some(0), ..Default::default() }).await;
    server.admin.create_room("gifts").await;
    for i in 1..=4 {
        server.admin.broadcast("gifts", json!(i)).await;
    }
    let mut sub = Subscriber::connect(&server.ws_url("room=gifts@1")).await;
    assert_eq!(sub.next_json().await["rooms"][0]["seq"], 1);
    assert_eq!(sub.next_json().await, json!({"type":"lagged","room":"gifts","missed":3,"reason":"expired"}));
    server.finish().await;
}

/// A server whose subscriber queues hold 32 broadcasts (the byte bound set
/// out of the way) and never give up on a slow one.
async fn backpressure_server() -> TestServer {
    let args = ServeArgs {
        queue_max_messages: Some(32),
        queue_max_bytes: Some(64 << 20),
        slow_consumer_after_ms: Some(3_600_000),
        ..Default::default()
    };
    TestServer::start_with(args).await
}

/// Publishes large `low` broadcasts until the server drops some for `sub`
/// (the kernel's socket buffers are full and its queue is at its bound);
/// returns how many were published.
async fn fill_until_dropping(server: &TestServer) -> u64 {
    let filler = json!({"data": {"filler": "x".repeat(60_000)}, "priority": "low"});
    for published in 1..=5_000u64 {
        let (status, _, _) = post_broadcast(&server.admin, "gifts", filler.clone(), None).await;
        assert_eq!(status, 202);
        if published % 8 == 0 {
            let metrics = server.admin.metrics().await;
            if metric(&metrics, r#"bullhorn_dropped_by_priority_total{priority="low"}"#).unwrap_or(0.0) > 0.0 {
                return published;
            }
        }
    }
    panic!("5000 broadcasts of 60 kB never filled a subscriber that does not read");
}

/// Reads until a broadcast with `data.last == true`; returns the broadcasts and the `lagged` messages.
async fn read_through_last(sub: &mut impl Messages) -> (Vec<Value>, Vec<Value>) {
    let (mut broadcasts, mut lagged) = (Vec::new(), Vec::new());
    loop {
        let message = sub.message().await;
        match message["type"].as_str() {
            Some("broadcast") => {
                let last = message["data"]["last"] == true;
                broadcasts.push(message);
                if last {
                    return (broadcasts, lagged);
                }
            }
            Some("lagged") => lagged.push(message),
            _ => panic!("unexpected {message}"),
        }
    }
}

fn assert_in_order_and_accounted(broadcasts: &[Value], lagged: &[Value], published: u64) {
    let seqs: Vec<u64> = broadcasts.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs increase: {seqs:?}");
    let missed: u64 = lagged.iter().map(|l| l["missed"].as_u64().unwrap()).sum();
    assert_eq!(broadcasts.len() as u64 + missed, published, "delivered + lagged = published");
}

#[tokio::test]
async fn under_backpressure_low_goes_first_and_every_high_arrives() {
    let server = backpressure_server().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    sub.next_json().await; // welcome; then it stops reading
    let fillers = fill_until_dropping(&server).await;
    let cycle = ["high", "normal", "low"];
    for i in 0..30 {
        let body = json!({"data": {"mix": i}, "priority": cycle[i % 3]});
        post_broadcast(&server.admin, "gifts", body, None).await;
    }
    post_broadcast(&server.admin, "gifts", json!({"data": {"last": true}, "priority": "high"}), None).await;
    let (broadcasts, lagged) = read_through_last(&mut sub).await;
    assert_in_order_and_accounted(&broadcasts, &lagged, fillers + 31);
    let mix: Vec<u64> = broadcasts.iter().filter_map(|b| b["data"]["mix"].as_u64()).collect();
    let of = |p: usize| mix.iter().filter(|i| **i as usize % 3 == p).count();
    assert_eq!(of(0), 10, "every high arrived: {mix:?}");
    assert_eq!(of(1), 10, "normal ones displaced queued low ones: {mix:?}");
    assert_eq!(of(2), 0, "low ones went first: {mix:?}");
    assert!(lagged.iter().all(|l| l["reason"] == "slow"));
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_by_priority_total{priority="high"}"#).unwrap_or(0.0), 0.0);
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_by_priority_total{priority="normal"}"#).unwrap_or(0.0), 0.0);
    server.finish().await;
}

/// QUIC's own backpressure (the client's stream flow control, then the
/// shard's outbox) fills the same bounded queue: the overflow is dropped and
/// announced with `lagged`, never lost silently, and high priority survives.
#[tokio::test]
async fn a_quic_subscriber_that_stops_reading_is_told_what_it_missed() {
    let server = backpressure_server().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(sub.next_json().await.unwrap()["type"], "welcome"); // then it stops reading
    let fillers = fill_until_dropping(&server).await;
    post_broadcast(&server.admin, "gifts", json!({"data": {"last": true}, "priority": "high"}), None).await;
    let (broadcasts, lagged) = read_through_last(&mut sub).await;
    assert_in_order_and_accounted(&broadcasts, &lagged, fillers + 1);
    assert!(!lagged.is_empty() && lagged.iter().all(|l| l["reason"] == "slow"), "{lagged:?}");
    assert!(broadcasts.len() as u64 > 32, "the stream's window carried more than the queue holds");
    server.finish().await;
}

/// A QUIC subscriber whose stream is blocked (it reads nothing) still sees
/// its queue close: deleting the room ends the connection and frees its slot.
#[tokio::test]
async fn a_quic_subscriber_that_reads_nothing_is_closed_when_its_room_goes() {
    let server = backpressure_server().await;
    server.admin.create_room("gifts").await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(sub.next_json().await.unwrap()["type"], "welcome"); // then it stops reading
    fill_until_dropping(&server).await;
    let (status, _) = server.admin.delete("/v1/apps/demo/rooms/gifts").await;
    assert!(status.is_success(), "{status}");
    let closed = tokio::time::timeout(common::HANG, sub.conn.closed()).await.expect("the connection was never closed");
    assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed}");
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_connections{transport="quic"}"#), Some(0.0), "its slot is free");
    server.finish().await;
}

#[tokio::test]
async fn conflation_delivers_the_latest_value_and_says_what_it_replaced() {
    let server = backpressure_server().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    sub.next_json().await;
    let fillers = fill_until_dropping(&server).await;
    for score in 1..=10 {
        let body = json!({"data": {"score": score, "last": score == 10}, "conflate": "score"});
        post_broadcast(&server.admin, "gifts", body, None).await;
    }
    let (broadcasts, lagged) = read_through_last(&mut sub).await;
    assert_in_order_and_accounted(&broadcasts, &lagged, fillers + 10);
    let scores: Vec<u64> = broadcasts.iter().filter_map(|b| b["data"]["score"].as_u64()).collect();
    assert_eq!(scores, [10], "latest value wins");
    let conflated: u64 =
        lagged.iter().filter(|l| l["reason"] == "conflated").map(|l| l["missed"].as_u64().unwrap()).sum();
    assert_eq!(conflated, 9);
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_messages_total{reason="conflated"}"#), Some(9.0));
    server.finish().await;
}

#[tokio::test]
async fn the_same_idempotency_key_five_times_at_once_is_one_seq_and_one_delivery() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    sub.next_json().await;
    let answers =
        join_all((0..5).map(|_| post_broadcast(&server.admin, "gifts", json!({"data": "gift"}), Some("order-7731"))))
            .await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 202);
        assert_eq!(body["seq"], 1, "one seq for every retry: {body}");
    }
    let replayed = answers.iter().filter(|(_, _, h)| h.get("idempotent-replayed").is_some()).count();
    assert_eq!(replayed, 4, "all but the first are marked as repeats");
    // Another key is another broadcast; the next message proves nothing was sent twice.
    let (_, second, _) = post_broadcast(&server.admin, "gifts", json!({"data": "next"}), Some("order-7732")).await;
    assert_eq!(second["seq"], 2);
    assert_eq!((sub.next_json().await["seq"].as_u64(), sub.next_json().await["seq"].as_u64()), (Some(1), Some(2)));
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_idempotent_duplicates_total"), Some(4.0));
    for bad in ["", &"k".repeat(256), "with space"] {
        let (status, body, _) = post_broadcast(&server.admin, "gifts", json!({"data": 1}), Some(bad)).await;
        assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_request")), "{bad:?}");
    }
    server.finish().await;
}
