//! Occupancy pushed to viewers (contract §9, `occupancy_interval_ms`) over
//! real sockets, and `PATCH …/rooms/{room}`.

mod common;

use std::time::{Duration, Instant};

use common::{Subscriber, TestServer};
use futures_util::future::join_all;
use serde_json::{Value, json};

/// A viewer and the occupancy counts it was told, in order.
struct Viewer {
    sub: Subscriber,
    counts: Vec<u64>,
    since: Instant,
}

impl Viewer {
    async fn join(server: &TestServer) -> Viewer {
        let since = Instant::now();
        let mut sub = server.subscribe(&["gifts"]).await;
        assert_eq!(sub.next_json().await["type"], "welcome");
        Viewer { sub, counts: Vec::new(), since }
    }

    /// Reads until it is told `online`; every message on the way must be an occupancy.
    async fn until_told(&mut self, online: u64) {
        while self.counts.last() != Some(&online) {
            let message = self.sub.next_json().await;
            assert_eq!(
                (message["type"].as_str(), message["room"].as_str()),
                (Some("occupancy"), Some("gifts")),
                "{message}"
            );
            assert_eq!(message.as_object().unwrap().len(), 3, "type, room, online and nothing else: {message}");
            self.counts.push(message["online"].as_u64().unwrap());
        }
    }

    /// What a viewer may have been sent at most: one a second since it joined, and the first.
    fn assert_within_rate(&self) {
        let most = self.since.elapsed().as_secs_f64() / 1.0 + 1.0;
        assert!(
            self.counts.len() as f64 <= most,
            "{} occupancy messages in {:?}",
            self.counts.len(),
            self.since.elapsed()
        );
        assert!(self.counts.windows(2).all(|w| w[0] != w[1]), "none while the count is unchanged: {:?}", self.counts);
    }
}

async fn create_room_with_interval(server: &TestServer, interval_ms: u64) -> Value {
    let body = json!({"room": "gifts", "occupancy_interval_ms": interval_ms}).to_string();
    let (status, room) = server.admin.post("/v1/apps/demo/rooms", &body).await;
    assert_eq!(status, 201, "{room}");
    room
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_see_the_count_change_at_most_once_a_second_and_never_unchanged() {
    let server = TestServer::start().await;
    let room = create_room_with_interval(&server, 1_000).await;
    assert_eq!(room["occupancy_interval_ms"], 1_000);
    let mut viewers = join_all((0..50).map(|_| Viewer::join(&server))).await;
    join_all(viewers.iter_mut().map(|v| v.until_told(50))).await;

    // Ten others join: everyone is told 60; then they leave: 50 again.
    let others = join_all((0..10).map(|_| Viewer::join(&server))).await;
    join_all(viewers.iter_mut().map(|v| v.until_told(60))).await;
    drop(others);
    join_all(viewers.iter_mut().map(|v| v.until_told(50))).await;

    // Unchanged for a while: nothing is sent; the next message is a broadcast.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let seq = server.admin.broadcast("gifts", json!("after the quiet")).await["seq"].as_u64().unwrap();
    for viewer in &mut viewers {
        let next = viewer.sub.next_json().await;
        assert_eq!((next["type"].as_str(), next["seq"].as_u64()), (Some("broadcast"), Some(seq)), "{next}");
        viewer.assert_within_rate();
    }
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["online"], 50, "the count viewers are told is the admin API's");
    server.finish().await;
}

#[tokio::test]
async fn a_room_without_an_interval_sends_no_occupancy() {
    let server = TestServer::start().await;
    let room = server.admin.create_room("gifts").await;
    assert_eq!(room["occupancy_interval_ms"], 0, "off by default");
    let mut first = Viewer::join(&server).await;
    let _second = Viewer::join(&server).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seq = server.admin.broadcast("gifts", json!(1)).await["seq"].as_u64().unwrap();
    let next = first.sub.next_json().await;
    assert_eq!((next["type"].as_str(), next["seq"].as_u64()), (Some("broadcast"), Some(seq)), "{next}");
    server.finish().await;
}

#[tokio::test]
async fn patch_changes_the_name_and_the_interval() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let patch = |body: Value| {
        let admin = &server.admin;
        async move {
            admin
                .request(reqwest::Method::PATCH, "/v1/apps/demo/rooms/gifts", Some(&body.to_string()), Some(&admin.key))
                .await
        }
    };
    for bad in [
        json!({"occupancy_interval_ms": 500}),
        json!({"occupancy_interval_ms": 60_001}),
        json!({"occupancy_interval_ms": null}),
        json!({"name": null}),
        json!({"name": "n".repeat(257)}),
        json!({"seq": 4}),
        json!([1]),
    ] {
        let (status, error) = patch(bad.clone()).await;
        assert_eq!((status.as_u16(), &error["error"]["code"]), (400, &json!("invalid_request")), "{bad}: {error}");
    }
    let (status, error) = patch(json!({"members": ["a"]})).await;
    assert_eq!((status.as_u16(), &error["error"]["code"]), (400, &json!("invites_not_allowed")));
    let (status, error) = server
        .admin
        .request(reqwest::Method::PATCH, "/v1/apps/demo/rooms/nope", Some(r#"{"name":"x"}"#), Some(&server.admin.key))
        .await;
    assert_eq!((status.as_u16(), &error["error"]["code"]), (404, &json!("room_not_found")));

    let mut viewer = Viewer::join(&server).await;
    let (status, room) = patch(json!({"name": "Gifts 🎁", "occupancy_interval_ms": 1_000})).await;
    assert_eq!(status, 200, "{room}");
    assert_eq!((room["name"].as_str(), room["occupancy_interval_ms"].as_u64()), (Some("Gifts 🎁"), Some(1_000)));
    viewer.until_told(1).await; // turned on: members already there are told too
    let (_, room) = patch(json!({})).await;
    assert_eq!((room["name"].as_str(), room["occupancy_interval_ms"].as_u64()), (Some("Gifts 🎁"), Some(1_000)));
    let (_, room) = patch(json!({"occupancy_interval_ms": 0})).await;
    assert_eq!(room["occupancy_interval_ms"], 0);
    let _joined_after = Viewer::join(&server).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seq = server.admin.broadcast("gifts", json!(1)).await["seq"].as_u64().unwrap();
    let next = viewer.sub.next_json().await;
    assert_eq!((next["type"].as_str(), next["seq"].as_u64()), (Some("broadcast"), Some(seq)), "off: {next}");
    server.finish().await;
}
