//! Live-room features end to end (contract §9), over real sockets: a
//! broadcast's `ttl_ms` (expired in a stalled queue and on resume) and its
//! reach (`GET …/broadcasts/{seq}`) against what real subscribers read.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::reach::{assert_accounted, publish, reach_when_complete, read_through_last};
use common::{Subscriber, TestServer, metric};
use serde_json::{Value, json};

/// A server whose queues hold 4 broadcasts and never give up on a slow subscriber.
async fn small_queue_server() -> TestServer {
    TestServer::start_with(common::reach::small_queue_args()).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_accounts_for_every_copy_and_delivered_is_what_subscribers_read() {
    let server = small_queue_server().await;
    server.admin.create_room("gifts").await;
    common::reach::every_copy_accounted(&[server.viewer], &server.admin).await;
    server.finish().await;
}
