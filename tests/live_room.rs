//! Live-room features end to end (contract §9), over real sockets: a
//! broadcast's `ttl_ms` (expired in a stalled queue and on resume) and its
//! reach (`GET …/broadcasts/{seq}`) against what real subscribers read.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bullhorn::cli::ServeArgs;
use common::{Admin, Subscriber, TestServer, metric};
use futures_util::SinkExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Publishes `body` (with `data` and any §9 fields) to `gifts`; returns its seq.
async fn publish(admin: &Admin, body: Value) -> u64 {
    let (status, accepted) = admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body.to_string()).await;
    assert_eq!(status, 202, "{accepted}");
    accepted["seq"].as_u64().unwrap()
}

async fn reach(admin: &Admin, seq: u64) -> Value {
    let (status, reach) = admin.get(&format!("/v1/apps/demo/rooms/gifts/broadcasts/{seq}")).await;
    assert_eq!(status, 200, "{reach}");
    reach
}

/// Polls until broadcast `seq`'s reach is complete (every copy met its fate).
async fn reach_when_complete(admin: &Admin, seq: u64) -> Value {
    for _ in 0..2_000 {
        let reach = reach(admin, seq).await;
        if reach["complete"] == true {
            return reach;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the reach of {seq} never became complete: {}", reach(admin, seq).await);
}

fn assert_accounted(reach: &Value) {
    let n = |v: &Value| v.as_u64().unwrap();
    let dropped = &reach["dropped"];
    let fates = n(&reach["delivered"])
        + n(&dropped["slow"])
        + n(&dropped["conflated"])
        + n(&dropped["expired"])
        + n(&reach["disconnected"])
        + n(&reach["pending"]);
    assert_eq!(n(&reach["targets"]), fates, "targets = delivered + dropped + disconnected + pending: {reach}");
}

/// A server whose queues hold 4 broadcasts and never give up on a slow subscriber.
async fn small_queue_server() -> TestServer {
    let args = ServeArgs {
        queue_max_messages: Some(4),
        queue_max_bytes: Some(64 << 20),
        slow_consumer_after_ms: Some(3_600_000),
        ..Default::default()
    };
    TestServer::start_with(args).await
}

/// Reads until the broadcast with `data.last == true` (or, with
/// `through_seq`, one at or past that seq), counting each broadcast's seq in
/// `seen`; returns the `lagged` messages.
async fn read_through_last(sub: &mut Subscriber, seen: &mut HashMap<u64, u64>) -> Vec<Value> {
    read_through(sub, seen, u64::MAX).await
}

async fn read_through(sub: &mut Subscriber, seen: &mut HashMap<u64, u64>, through_seq: u64) -> Vec<Value> {
    let mut lagged = Vec::new();
    loop {
        let message = sub.next_json().await;
        match message["type"].as_str() {
            Some("broadcast") => {
                let seq = message["seq"].as_u64().unwrap();
                *seen.entry(seq).or_default() += 1;
                if message["data"]["last"] == true || seq >= through_seq {
                    return lagged;
                }
            }
            Some("lagged") => lagged.push(message),
            _ => panic!("unexpected {message}"),
        }
    }
}

fn missed(lagged: &[Value]) -> u64 {
    assert!(lagged.iter().all(|l| l["reason"] == "slow"), "{lagged:?}");
    lagged.iter().map(|l| l["missed"].as_u64().unwrap()).sum()
}

/// A subscriber whose socket takes little before it reads: a 4 kB receive
/// buffer, so a stall reaches its queue after a few broadcasts.
async fn subscribe_with_small_buffer(server: &TestServer) -> Subscriber {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.viewer).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, resp) = tokio_tungstenite::client_async(server.ws_url("room=gifts"), stream).await.unwrap();
    assert_eq!(resp.status(), 101);
    Subscriber { ws }
}

#[tokio::test]
async fn a_broadcast_past_its_ttl_in_a_stalled_queue_arrives_as_lagged_expired() {
    let server = small_queue_server().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    assert_eq!(sub.next_json().await["type"], "welcome");
    // The subscriber stops reading: large fillers fill its socket and then
    // its queue; the high-priority ones below displace queued fillers.
    let filler = json!({"data": {"filler": "x".repeat(60_000)}});
    let mut fillers = 0;
    while fillers < 200 {
        publish(&server.admin, filler.clone()).await;
        fillers += 1;
        let metrics = server.admin.metrics().await;
        if metric(&metrics, r#"bullhorn_dropped_by_priority_total{priority="normal"}"#).unwrap_or(0.0) > 0.0 {
            break;
        }
    }
    assert!(fillers < 200, "200 broadcasts of 60 kB never filled a subscriber that does not read");
    let short_lived = publish(&server.admin, json!({"data": "banner", "ttl_ms": 50, "priority": "high"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // its ttl passes while it waits in the queue
    publish(&server.admin, json!({"data": {"last": true}, "priority": "high"})).await;
    let mut seen = HashMap::new();
    let lagged = read_through_last(&mut sub, &mut seen).await;
    assert!(!seen.contains_key(&short_lived), "an expired broadcast is not sent");
    let expired: Vec<&Value> = lagged.iter().filter(|l| l["reason"] == "expired").collect();
    assert_eq!(expired.len(), 1, "{lagged:?}");
    assert_eq!(expired[0]["missed"], 1);
    let metrics = server.admin.metrics().await;
    assert_eq!(metric(&metrics, r#"bullhorn_dropped_messages_total{reason="expired"}"#), Some(1.0));
    let reach = reach_when_complete(&server.admin, short_lived).await;
    assert_eq!((reach["targets"].as_u64(), reach["dropped"]["expired"].as_u64()), (Some(1), Some(1)), "{reach}");
    assert_accounted(&reach);
    server.finish().await;
}

#[tokio::test]
async fn a_resume_after_the_ttl_does_not_replay_the_expired_broadcast() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    publish(&server.admin, json!({"data": 1})).await;
    publish(&server.admin, json!({"data": 2, "ttl_ms": 50})).await;
    publish(&server.admin, json!({"data": 3, "ttl_ms": 3_600_000})).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // seq 2's ttl passes
    let mut sub = Subscriber::connect(&server.ws_url("room=gifts@0")).await;
    assert_eq!(sub.next_json().await["rooms"][0]["seq"], 0);
    assert_eq!(sub.next_json().await, json!({"type":"lagged","room":"gifts","missed":1,"reason":"expired"}));
    let replayed = [sub.next_json().await, sub.next_json().await];
    let seqs: Vec<u64> = replayed.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 3], "seq 2 expired; the unexpired ones are replayed in order");
    publish(&server.admin, json!({"data": 4})).await;
    assert_eq!(sub.next_json().await["seq"], 4);
    server.finish().await;
}

#[tokio::test]
async fn a_ttl_out_of_range_is_refused() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    for ttl in [json!(0), json!(86_400_001), json!(-1), json!("5"), json!(1.5)] {
        let body = json!({"data": 1, "ttl_ms": ttl}).to_string();
        let (status, error) = server.admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body).await;
        assert_eq!(status, 400, "ttl_ms {ttl}: {error}");
        assert_eq!(error["error"]["code"], "invalid_request", "{error}");
    }
    assert_eq!(publish(&server.admin, json!({"data": 1, "ttl_ms": 86_400_000})).await, 1);
    server.finish().await;
}

#[tokio::test]
async fn an_unknown_or_malformed_seq_has_no_reach() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    publish(&server.admin, json!({"data": 1})).await;
    for seq in ["2", "0", "x", "-1"] {
        let (status, error) = server.admin.get(&format!("/v1/apps/demo/rooms/gifts/broadcasts/{seq}")).await;
        assert_eq!(status, 404, "{seq}: {error}");
        assert_eq!(error["error"]["code"], "broadcast_not_found", "{error}");
    }
    let (status, error) = server.admin.get("/v1/apps/demo/rooms/nope/broadcasts/1").await;
    assert_eq!((status.as_u16(), &error["error"]["code"]), (404, &json!("room_not_found")));
    let reach = reach_when_complete(&server.admin, 1).await;
    assert_eq!(reach["targets"], 0, "nobody was online: {reach}");
    assert!(reach["accepted_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{reach}");
    server.finish().await;
}

const READERS: usize = 170;
const LEAVERS: usize = 10;
const STALLED: usize = 20;
const BROADCASTS: u64 = 60;

/// 200 subscribers: 170 read everything, 10 leave mid-run (a close
/// handshake, reading what was sent before the server's close), 20 read
/// nothing until every broadcast is published. Every broadcast's reach
/// accounts for all its copies, and `delivered` is exactly what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_accounts_for_every_copy_and_delivered_is_what_subscribers_read() {
    let server = small_queue_server().await;
    server.admin.create_room("gifts").await;
    let mut subs = Vec::new();
    for n in 0..READERS + LEAVERS + STALLED {
        let mut sub = if n < READERS + LEAVERS {
            server.subscribe(&["gifts"]).await
        } else {
            subscribe_with_small_buffer(&server).await
        };
        assert_eq!(sub.next_json().await["type"], "welcome");
        subs.push(sub);
    }
    let stalled: Vec<Subscriber> = subs.split_off(READERS + LEAVERS);
    let leavers: Vec<Subscriber> = subs.split_off(READERS);
    let read_all: Vec<_> = (subs.into_iter())
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                let missed = missed(&read_through_last(&mut sub, &mut seen).await);
                assert_eq!(seen.len() as u64 + missed, BROADCASTS, "each seq once, or told it was missed");
                (seen, missed, sub)
            })
        })
        .collect();
    let leave: Vec<_> = (leavers.into_iter())
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                let mut missed = missed(&read_through(&mut sub, &mut seen, BROADCASTS / 2).await);
                sub.ws.send(Message::Close(None)).await.unwrap();
                // What the server wrote before its close arrives before it.
                while let Some(message) = sub.next().await {
                    let Message::Text(text) = message else { continue };
                    let message: Value = serde_json::from_str(&text).unwrap();
                    match message["type"].as_str() {
                        Some("broadcast") => *seen.entry(message["seq"].as_u64().unwrap()).or_default() += 1,
                        _ => missed += message["missed"].as_u64().unwrap(),
                    }
                }
                (seen, missed)
            })
        })
        .collect();
    let filler = "x".repeat(60_000);
    for n in 1..BROADCASTS {
        assert_eq!(publish(&server.admin, json!({"data": {"filler": filler}})).await, n);
    }
    // High, so it displaces a queued filler rather than being dropped itself.
    let last = json!({"data": {"last": true, "filler": filler}, "priority": "high"});
    assert_eq!(publish(&server.admin, last).await, BROADCASTS);

    let mut received: HashMap<u64, u64> = HashMap::new();
    let mut missed_by_all = 0;
    let mut add =
        |seen: HashMap<u64, u64>| seen.into_iter().for_each(|(seq, n)| *received.entry(seq).or_default() += n);
    let mut readers = Vec::new();
    for outcome in join_all(read_all).await {
        let (seen, missed, sub) = outcome.unwrap();
        add(seen);
        missed_by_all += missed;
        readers.push(sub);
    }
    for outcome in join_all(leave).await {
        let (seen, missed) = outcome.unwrap();
        add(seen);
        missed_by_all += missed;
    }
    // The stalled subscribers still hold the newest broadcast in their queues.
    let last = reach(&server.admin, BROADCASTS).await;
    assert_eq!(last["complete"], false, "queued for subscribers that do not read: {last}");
    assert!(last["pending"].as_u64().unwrap() > 0, "{last}");
    assert_accounted(&last);
    let mut missed_by_stalled = 0;
    for mut sub in stalled {
        missed_by_stalled += missed(&read_through_last(&mut sub, &mut received).await);
    }
    assert!(missed_by_stalled > 0, "a queue of 4 held 60 broadcasts of 60 kB for a subscriber that did not read");
    let mut slow = 0;
    for seq in 1..=BROADCASTS {
        let reach = reach_when_complete(&server.admin, seq).await;
        assert_accounted(&reach);
        assert_eq!(reach["delivered"].as_u64(), received.get(&seq).copied(), "seq {seq}: {reach}");
        assert_eq!(reach["pending"], 0);
        let targets = reach["targets"].as_u64().unwrap() as usize;
        assert!((READERS + STALLED..=READERS + LEAVERS + STALLED).contains(&targets), "{reach}");
        if seq <= BROADCASTS / 2 {
            assert_eq!(targets, READERS + LEAVERS + STALLED, "nobody had left yet: {reach}");
        }
        slow += reach["dropped"]["slow"].as_u64().unwrap();
    }
    assert_eq!(slow, missed_by_stalled + missed_by_all, "each slow drop is one a subscriber was told it missed");
    drop(readers);
    server.finish().await;
}
