//! Reach (contract §9) against what real subscribers read: the helpers
//! and the 200-subscriber scenario that tests/live_room.rs runs on one node
//! and tests/cluster.rs on three.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::SinkExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Admin, Subscriber};

/// The server flags the scenario needs: queues of 4 broadcasts, never closed as slow ...
pub const SMALL_QUEUE_FLAGS: [&str; 6] =
    ["--queue-max-messages", "4", "--queue-max-bytes", "67108864", "--slow-consumer-after-ms", "3600000"];

/// ... and the same for a server in the test process.
pub fn small_queue_args() -> bullhorn::cli::ServeArgs {
    bullhorn::cli::ServeArgs {
        queue_max_messages: Some(4),
        queue_max_bytes: Some(64 << 20),
        slow_consumer_after_ms: Some(3_600_000),
        ..Default::default()
    }
}

/// Publishes `body` (with `data` and any §9 fields) to `gifts`; returns its seq.
pub async fn publish(admin: &Admin, body: Value) -> u64 {
    let (status, accepted) = admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body.to_string()).await;
    assert_eq!(status, 202, "{accepted}");
    accepted["seq"].as_u64().unwrap()
}

pub async fn reach(admin: &Admin, seq: u64) -> Value {
    let (status, reach) = admin.get(&format!("/v1/apps/demo/rooms/gifts/broadcasts/{seq}")).await;
    assert_eq!(status, 200, "{reach}");
    reach
}

/// Polls until broadcast `seq`'s reach is complete (every copy met its fate).
pub async fn reach_when_complete(admin: &Admin, seq: u64) -> Value {
    for _ in 0..2_000 {
        let reach = reach(admin, seq).await;
        if reach["complete"] == true {
            return reach;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the reach of {seq} never became complete: {}", reach(admin, seq).await);
}

pub fn assert_accounted(reach: &Value) {
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

/// Reads until the broadcast with `data.last == true` (or, with
/// `through_seq`, one at or past that seq), counting each broadcast's seq in
/// `seen`; returns the `lagged` messages.
pub async fn read_through_last(sub: &mut Subscriber, seen: &mut HashMap<u64, u64>) -> Vec<Value> {
    read_through(sub, seen, u64::MAX).await
}

pub async fn read_through(sub: &mut Subscriber, seen: &mut HashMap<u64, u64>, through_seq: u64) -> Vec<Value> {
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

pub fn missed(lagged: &[Value]) -> u64 {
    assert!(lagged.iter().all(|l| l["reason"] == "slow"), "{lagged:?}");
    lagged.iter().map(|l| l["missed"].as_u64().unwrap()).sum()
}

/// A subscriber whose socket takes little before it reads: a 4 kB receive
/// buffer, so a stall reaches its queue after a few broadcasts.
pub async fn subscribe_with_small_buffer(viewer: SocketAddr) -> Subscriber {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(viewer).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let url = format!("ws://{viewer}/v1/apps/demo/ws?room=gifts");
    let (ws, resp) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(resp.status(), 101);
    Subscriber { ws }
}

pub const READERS: usize = 170;
pub const LEAVERS: usize = 10;
pub const STALLED: usize = 20;
pub const BROADCASTS: u64 = 60;

/// 200 subscribers: 170 read everything, 10 leave mid-run (a close
/// handshake, reading what was sent before the server's close), 20 read
/// nothing until every broadcast is published. Every broadcast's reach
/// accounts for all its copies, and `delivered` is exactly what arrived.
///
/// Subscribers are spread over `viewers` (the nodes of a cluster, or one);
/// `admin` publishes and reads the reach. The servers' queues hold 4
/// broadcasts and never give up on a slow subscriber.
pub async fn every_copy_accounted(viewers: &[SocketAddr], admin: &Admin) {
    let mut subs = Vec::new();
    for n in 0..READERS + LEAVERS + STALLED {
        let viewer = viewers[n % viewers.len()];
        let mut sub = if n < READERS + LEAVERS {
            Subscriber::connect(&format!("ws://{viewer}/v1/apps/demo/ws?room=gifts")).await
        } else {
            subscribe_with_small_buffer(viewer).await
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
        assert_eq!(publish(admin, json!({"data": {"filler": filler}})).await, n);
    }
    // High, so it displaces a queued filler rather than being dropped itself.
    let last = json!({"data": {"last": true, "filler": filler}, "priority": "high"});
    assert_eq!(publish(admin, last).await, BROADCASTS);

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
    let last = reach(admin, BROADCASTS).await;
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
        let reach = reach_when_complete(admin, seq).await;
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
}
