//! The cluster over NATS (contract §7) with real processes: nats-server with
//! JetStream (one server, or three routed into one NATS cluster) and the real
//! `bullhorn` binary as several nodes, with real WebSocket subscribers.
//!
//! Waits for cluster-wide state (a room reaching every node, counts summed,
//! NATS back) poll until it holds, bounded by `HANG` against a hang; no
//! assertion depends on how long anything took.

mod common;

use std::time::Duration;

use common::nats::NatsServer;
use common::{Admin, ChildServer, HANG, Subscriber, metric};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A cluster node: the real binary joined to `nats`.
async fn node(dir: &tempfile::TempDir, nats: &str) -> ChildServer {
    ChildServer::start(dir.path(), &["--cluster-nats", nats]).await
}

async fn nodes(count: usize, nats: &[String]) -> (Vec<ChildServer>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // Each node prefers its own NATS server, then the others.
        let mut urls = nats.to_vec();
        urls.rotate_left(i % nats.len());
        nodes.push(node(dir, &urls.join(",")).await);
    }
    (nodes, dirs)
}

/// Polls `check` until it returns true; panics after `HANG`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + HANG;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn room(admin: &Admin, room: &str) -> (StatusCode, Value) {
    admin.get(&format!("/v1/apps/demo/rooms/{room}")).await
}

async fn wait_for_room_everywhere(nodes: &[ChildServer], name: &str) {
    for node in nodes {
        eventually("the room reaches every node", || async { room(&node.admin, name).await.0 == StatusCode::OK }).await;
    }
}

/// Waits until every node counts every node as live (their presence reports arrived).
async fn wait_for_each_other(nodes: &[ChildServer]) {
    for node in nodes {
        eventually("every node sees every node", || async {
            metric(&node.admin.metrics().await, "bullhorn_cluster_nodes") == Some(nodes.len() as f64)
        })
        .await;
    }
}

async fn online(admin: &Admin, name: &str) -> u64 {
    room(admin, name).await.1["online"].as_u64().unwrap_or(u64::MAX)
}

async fn subscribe(node: &ChildServer, room: &str) -> Subscriber {
    let mut subscriber = Subscriber::connect(&format!("ws://{}/v1/apps/demo/ws?room={room}", node.viewer)).await;
    assert_eq!(subscriber.next_json().await["type"], "welcome");
    subscriber
}

/// The next message of `kind`, skipping heartbeats and pongs.
async fn next_of(subscriber: &mut Subscriber, kind: &str) -> Value {
    loop {
        let message = subscriber.next_json().await;
        if message["type"] == kind {
            return message;
        }
        assert!(["ping", "pong"].contains(&message["type"].as_str().unwrap()), "expected {kind}, got {message}");
    }
}

async fn broadcast(admin: &Admin, room: &str, data: Value) -> (StatusCode, Value) {
    admin.post(&format!("/v1/apps/demo/rooms/{room}/broadcast"), &json!({"data": data}).to_string()).await
}

async fn ready(admin: &Admin) -> StatusCode {
    admin.request(reqwest::Method::GET, "/readyz", None, None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_every_node_get_each_broadcast_once_in_order_through_a_nats_cluster() {
    let nats = NatsServer::start_cluster().await;
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let (nodes, _dirs) = nodes(3, &urls).await;
    wait_for_each_other(&nodes).await;
    // The 201 comes once every live node serves the room: members may join anywhere at once.
    nodes[0].admin.create_room("gifts").await;

    let mut members = Vec::new();
    for node in &nodes {
        for _ in 0..3 {
            members.push(subscribe(node, "gifts").await);
        }
    }
    for node in &nodes {
        eventually("online sums every node", || async { online(&node.admin, "gifts").await == 9 }).await;
    }

    // Accepted by any node: the 202s number them 1..=30 cluster-wide.
    const COUNT: u64 = 30;
    for n in 1..=COUNT {
        let (status, body) = broadcast(&nodes[n as usize % 3].admin, "gifts", json!({"n": n})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["seq"], n, "one seq sequence for the room across nodes");
        assert_eq!(body["online"], 9);
    }
    for member in &mut members {
        for n in 1..=COUNT {
            let message = next_of(member, "broadcast").await;
            assert_eq!((message["seq"].as_u64(), message["data"]["n"].as_u64()), (Some(n), Some(n)), "{message}");
        }
    }

    // A retry with the same Idempotency-Key, on another node, answers the first seq and sends nothing.
    let path = "/v1/apps/demo/rooms/gifts/broadcast";
    let send = |admin: Admin| async move {
        admin
            .http
            .post(format!("{}{path}", admin.base))
            .bearer_auth(&admin.key)
            .header("idempotency-key", "gift-31")
            .json(&json!({"data": {"n": 31}}))
            .send()
            .await
            .unwrap()
    };
    let first = send(nodes[0].admin.clone()).await;
    let retry = send(nodes[2].admin.clone()).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let (first, retry): (Value, Value) = (first.json().await.unwrap(), retry.json().await.unwrap());
    assert_eq!(first["seq"], 31);
    assert_eq!(retry["seq"], 31);
    broadcast(&nodes[1].admin, "gifts", json!({"n": 32})).await;
    for member in &mut members {
        assert_eq!(next_of(member, "broadcast").await["seq"], 31);
        assert_eq!(next_of(member, "broadcast").await["seq"], 32, "the retry was not delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_across_nodes_respect_the_cap_and_deletes_reach_every_node() {
    let nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(3, &[nats.url()]).await;

    let creates = (0..15).map(|i| {
        let admin = nodes[i % 3].admin.clone();
        async move { admin.post("/v1/apps/demo/rooms", &json!({"room": format!("r{i}")}).to_string()).await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let created: Vec<&Value> =
        answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).map(|(_, body)| body).collect();
    assert_eq!(created.len(), 5, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::CREATED) {
        assert_eq!((*status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("room_limit")), "{body}");
    }
    let mut names: Vec<String> = created.iter().map(|room| room["room"].as_str().unwrap().to_owned()).collect();
    names.sort();
    for node in &nodes {
        eventually("every node lists the same five rooms", || async {
            let (_, list) = node.admin.get("/v1/apps/demo/rooms").await;
            let mut listed: Vec<String> =
                list["rooms"].as_array().unwrap().iter().map(|r| r["room"].as_str().unwrap().to_owned()).collect();
            listed.sort();
            listed == names
        })
        .await;
    }

    // A delete on one node closes the room's members on another.
    let doomed = &names[0];
    let mut member = subscribe(&nodes[0], doomed).await;
    let (status, body) = nodes[2].admin.delete(&format!("/v1/apps/demo/rooms/{doomed}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let closing = next_of(&mut member, "closing").await;
    assert_eq!(closing["reason"], "room_destroyed");
    eventually("the deleted room is gone everywhere", || async {
        room(&nodes[1].admin, doomed).await.0 == StatusCode::NOT_FOUND
    })
    .await;

    // The freed slot goes to exactly one of several nodes creating the same room at once.
    let same = (0..3).map(|i| {
        let admin = nodes[i].admin.clone();
        async move { admin.post("/v1/apps/demo/rooms", &json!({"room": "late"}).to_string()).await.0 }
    });
    let mut statuses = futures_util::future::join_all(same).await;
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT, StatusCode::CONFLICT]);
    let (status, body) = nodes[1].admin.post("/v1/apps/demo/rooms", &json!({"room": "one-more"}).to_string()).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("room_limit")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_takes_only_its_own_members_and_count_with_it() {
    let nats = NatsServer::start().await;
    let (mut nodes, _dirs) = nodes(3, &[nats.url()]).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let (mut survivors, mut on_the_killed_node) = (Vec::new(), Vec::new());
    for (node, count) in nodes.iter().zip([2, 3, 4]) {
        for _ in 0..count {
            let member = subscribe(node, "gifts").await;
            if count == 4 { on_the_killed_node.push(member) } else { survivors.push(member) }
        }
    }
    eventually("online counts all nine", || async { online(&nodes[0].admin, "gifts").await == 9 }).await;

    nodes[2].child.start_kill().unwrap();
    nodes[2].wait().await;
    eventually("the killed node's four stop counting", || async { online(&nodes[0].admin, "gifts").await == 5 }).await;
    eventually("on every live node", || async { online(&nodes[1].admin, "gifts").await == 5 }).await;

    let (status, body) = broadcast(&nodes[1].admin, "gifts", json!("still here")).await;
    assert_eq!((status, &body["online"]), (StatusCode::ACCEPTED, &json!(5)));
    for member in &mut survivors {
        assert_eq!(next_of(member, "broadcast").await["data"], "still here");
    }
    for member in &mut on_the_killed_node {
        assert!(member.next().await.is_none_or(|m| m.is_close()), "its connections are gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_nats_restart_and_lose_no_accepted_broadcast() {
    let mut nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(2, &[nats.url()]).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let mut members = vec![subscribe(&nodes[0], "gifts").await, subscribe(&nodes[1], "gifts").await];
    assert_eq!(broadcast(&nodes[0].admin, "gifts", json!(1)).await.1["seq"], 1);
    for member in &mut members {
        assert_eq!(next_of(member, "broadcast").await["seq"], 1);
    }

    nats.stop().await;
    for node in &nodes {
        eventually("readyz turns 503", || async { ready(&node.admin).await == StatusCode::SERVICE_UNAVAILABLE }).await;
        let (status, body) = broadcast(&node.admin, "gifts", json!("lost?")).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("cluster_unavailable")));
        let (status, body) = node.admin.post("/v1/apps/demo/rooms", &json!({"room": "other"}).to_string()).await;
        assert_eq!((status, &body["error"]["code"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("cluster_unavailable")));
        let (status, _) = node.admin.delete("/v1/apps/demo/rooms/gifts").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    // Connected members are still served meanwhile.
    for member in &mut members {
        member.send_text(r#"{"type":"ping"}"#).await;
        assert_eq!(next_of(member, "pong").await["type"], "pong");
    }

    nats.restart().await;
    for node in &nodes {
        eventually("readyz is back to 200", || async { ready(&node.admin).await == StatusCode::OK }).await;
    }
    // Every 202 after the outage reaches both nodes' members, numbered on from before it.
    for (n, node) in (2..=5).zip(nodes.iter().cycle()) {
        let (status, body) = broadcast(&node.admin, "gifts", json!(n)).await;
        assert_eq!((status, &body["seq"]), (StatusCode::ACCEPTED, &json!(n)), "{body}");
    }
    for member in &mut members {
        for n in 2..=5 {
            let message = next_of(member, "broadcast").await;
            assert_eq!((&message["seq"], &message["data"]), (&json!(n), &json!(n)));
        }
    }
    assert_eq!(room(&nodes[1].admin, "gifts").await.1["seq"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_missing_from_the_stream_reaches_members_as_lagged_before_the_next_in_order() {
    let nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(2, &[nats.url()]).await;
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    let mut members = vec![subscribe(&nodes[0], "gifts").await, subscribe(&nodes[1], "gifts").await];
    // Something other than a node publishes to the room's stream: it takes seq 1, and no node can deliver it.
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let ack = jetstream.publish("bullhorn.bc.demo.gifts", "not a broadcast".into()).await.unwrap();
    assert_eq!(ack.await.unwrap().sequence, 1);
    let (status, body) = broadcast(&nodes[1].admin, "gifts", json!("after the hole")).await;
    assert_eq!((status, &body["seq"]), (StatusCode::ACCEPTED, &json!(2)));
    for member in &mut members {
        let lagged = next_of(member, "lagged").await;
        assert_eq!((&lagged["missed"], &lagged["reason"]), (&json!(1), &json!("expired")), "{lagged}");
        let next = next_of(member, "broadcast").await;
        assert_eq!((&next["seq"], &next["data"]), (&json!(2), &json!("after the hole")));
    }
    let metrics = nodes[0].admin.metrics().await;
    assert_eq!(metric(&metrics, "bullhorn_cluster_missed_broadcasts_total"), Some(1.0));
}

/// Contract §11 across a cluster: every node holds the same QUIC reset key,
/// so a node that takes over a dead node's address resets that node's
/// clients at their next packet, and they reconnect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_reset_key_so_any_node_resets_a_dead_nodes_quic_clients() {
    let nats = NatsServer::start().await;
    let (mut nodes, dirs) = nodes(2, &[nats.url()]).await;
    let key = |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("quic-reset-key")).unwrap();
    assert_eq!(key(&dirs[0]), key(&dirs[1]), "one key for the cluster");
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let fingerprint = std::fs::read_to_string(dirs[0].path().join("dev-cert.sha256")).unwrap();
    let endpoint = common::quic_client(fingerprint.trim(), b"bullhorn/1");
    let mut sub = common::QuicSubscriber::connect(&endpoint, nodes[0].quic, &["gifts"]).await;
    assert_eq!(sub.next_json().await.unwrap()["type"], "welcome");

    let quic = nodes[0].quic.to_string();
    nodes[0].signal(9);
    nodes[0].wait().await;
    // A new node, with a data dir of its own, on the dead node's QUIC address.
    let fresh = tempfile::tempdir().unwrap();
    let _heir = ChildServer::start(fresh.path(), &["--cluster-nats", &nats.url(), "--quic-addr", &quic]).await;
    assert_eq!(key(&fresh), key(&dirs[1]), "a joining node adopts the cluster's key");
    sub.send_raw(&bullhorn::protocol::quic::frame(br#"{"type":"ping"}"#)).await;
    let closed = tokio::time::timeout(HANG, sub.conn.closed()).await.expect("never reset");
    assert_eq!(closed, quinn::ConnectionError::Reset);
}

/// Room events across 3 nodes: whichever nodes see a transition, one tells
/// it (the one that moves the room's state in the KV bucket); a node killed
/// with the last members on it leaves the `room.vacated` to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_room_event_is_told_once_by_the_cluster_even_when_a_node_dies_with_members() {
    use common::receiver::{Receiver, events_config, occupied, vacated};
    let nats = NatsServer::start().await;
    let (receiver, url) = Receiver::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("bullhorn.toml");
    // Longer than a presence report's way to the other nodes, so they agree the room is empty.
    std::fs::write(&config, events_config(&url, 3_000)).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        let args = ["--cluster-nats", &nats.url(), "--config", config.to_str().unwrap()];
        nodes.push(ChildServer::start(dir.path(), &args).await);
    }
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;

    let mut on_first = subscribe(&nodes[0], "gifts").await;
    assert_eq!(receiver.until(1).await, [occupied(1)]);
    // Flapping faster than the debounce, from node to node: never empty for long enough.
    for node in nodes.iter().cycle().skip(1).take(6) {
        drop(on_first);
        on_first = subscribe(node, "gifts").await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.events(), [occupied(1)], "flapping told nothing new");
    let on_second = subscribe(&nodes[1], "gifts").await;
    let on_third = subscribe(&nodes[2], "gifts").await;
    for node in &nodes {
        eventually("every node counts 3", || async { online(&node.admin, "gifts").await == 3 }).await;
    }
    drop((on_first, on_second));
    for node in &nodes[..2] {
        eventually("the others count 1", || async { online(&node.admin, "gifts").await == 1 }).await;
    }
    assert_eq!(receiver.events(), [occupied(1)], "every node saw the room occupied; one told it");

    // The last member's node dies: the others stop counting it, wait out the debounce, and one tells.
    nodes[2].signal(9);
    nodes[2].wait().await;
    drop(on_third);
    assert_eq!(receiver.until(2).await, [occupied(1), vacated()]);
    // Another node's look after the first one's claim finds the state there already.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.events(), [occupied(1), vacated()], "once each");

    let again = subscribe(&nodes[1], "gifts").await;
    assert_eq!(receiver.until(3).await, [occupied(1), vacated(), occupied(1)]);
    drop(again);
    assert_eq!(receiver.until(4).await.len(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.events(), [occupied(1), vacated(), occupied(1), vacated()], "alternating, once each");
}

/// A broadcast's reach summed over 3 nodes: every node's subscribers are
/// targets, `delivered` is what they all read, and the sum is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_is_summed_over_every_node() {
    let nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(3, &[nats.url()]).await;
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let mut subscribers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..(i + 1) * 4 {
            subscribers.push(subscribe(node, "gifts").await);
        }
    }
    for node in &nodes {
        eventually("every node counts 24", || async { online(&node.admin, "gifts").await == 24 }).await;
    }
    for n in 1..=5 {
        assert_eq!(broadcast(&nodes[n % 3].admin, "gifts", json!(n)).await.0, StatusCode::ACCEPTED);
    }
    for subscriber in &mut subscribers {
        for seq in 1..=5 {
            assert_eq!(next_of(subscriber, "broadcast").await["seq"], seq);
        }
    }
    for seq in 1..=5 {
        for node in &nodes {
            let reach = common::reach::reach_when_complete(&node.admin, seq).await;
            assert_eq!((reach["targets"].as_u64(), reach["delivered"].as_u64()), (Some(24), Some(24)), "{reach}");
            assert_eq!(reach["pending"], 0);
        }
    }
    let (status, error) = nodes[1].admin.get("/v1/apps/demo/rooms/gifts/broadcasts/6").await;
    assert_eq!((status, &error["error"]["code"]), (StatusCode::NOT_FOUND, &json!("broadcast_not_found")));
}

/// A pin travels with its broadcast to every node; an unpin on any node, and
/// a change of the room's name or occupancy interval, reach every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_unpins_and_room_changes_reach_every_node() {
    let nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(3, &[nats.url()]).await;
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let body = json!({"data": {"top": "Ana"}, "sticky": true}).to_string();
    let (status, accepted) = nodes[0].admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pinned = accepted["seq"].clone();
    for node in &nodes {
        eventually("the pin reaches the node", || async { room(&node.admin, "gifts").await.1["sticky_seq"] == pinned })
            .await;
        let mut viewer = subscribe(node, "gifts").await;
        let sticky = viewer.next_json().await;
        assert_eq!((&sticky["type"], &sticky["seq"]), (&json!("sticky"), &pinned), "{sticky}");
    }
    // A node that starts after the pin knows it too.
    let later_dir = tempfile::tempdir().unwrap();
    let later = node(&later_dir, &nats.url()).await;
    wait_for_room_everywhere(std::slice::from_ref(&later), "gifts").await;
    assert_eq!(room(&later.admin, "gifts").await.1["sticky_seq"], pinned);
    let mut viewer = subscribe(&later, "gifts").await;
    let sticky = viewer.next_json().await;
    assert_eq!((&sticky["type"], &sticky["data"]), (&json!("sticky"), &json!({"top": "Ana"})), "{sticky}");
    drop(viewer);

    let (status, _) = nodes[1].admin.delete("/v1/apps/demo/rooms/gifts/sticky").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for node in nodes.iter().chain([&later]) {
        eventually("the unpin reaches the node", || async {
            room(&node.admin, "gifts").await.1["sticky_seq"].is_null()
        })
        .await;
    }
    let last_dir = tempfile::tempdir().unwrap();
    let last = node(&last_dir, &nats.url()).await;
    wait_for_room_everywhere(std::slice::from_ref(&last), "gifts").await;
    assert_eq!(room(&last.admin, "gifts").await.1["sticky_seq"], Value::Null, "no pin for new nodes after an unpin");
    drop((later, last));
    let mut viewers = Vec::new();
    for node in &nodes {
        viewers.push(subscribe(node, "gifts").await);
    }
    let (_, live) = broadcast(&nodes[2].admin, "gifts", json!("live")).await;
    for viewer in &mut viewers {
        let next = viewer.next_json().await;
        assert_eq!((&next["type"], &next["seq"]), (&json!("broadcast"), &live["seq"]), "no pin any more: {next}");
    }
    // Each node learns the others' counts from their presence reports; the first
    // occupancy after the change is sent at once, so it carries the total only
    // once every node knows it.
    for node in &nodes {
        eventually("every node counts the three viewers", || async { online(&node.admin, "gifts").await == 3 }).await;
    }

    let change = json!({"name": "Gifts 🎁", "occupancy_interval_ms": 1000}).to_string();
    let (status, changed) = nodes[2]
        .admin
        .request(reqwest::Method::PATCH, "/v1/apps/demo/rooms/gifts", Some(&change), Some(common::KEY))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    for node in &nodes {
        eventually("the change reaches the node", || async {
            let (_, room) = room(&node.admin, "gifts").await;
            room["name"] == "Gifts 🎁" && room["occupancy_interval_ms"] == 1000
        })
        .await;
    }
    for viewer in &mut viewers {
        let occupancy = next_of(viewer, "occupancy").await;
        assert_eq!(occupancy["online"], 3, "the cluster-wide count: {occupancy}");
    }
}

/// The 200-subscriber reach scenario of tests/live_room.rs over 3 nodes: 170
/// readers, 10 leaving mid-run and 20 stalled, spread over the nodes; every
/// broadcast's reach, summed by the node asked, accounts for every copy, and
/// `delivered` is exactly what the subscribers read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_accounts_for_every_copy_across_three_nodes() {
    let nats = NatsServer::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (url, mut nodes) = (nats.url(), Vec::new());
    for dir in &dirs {
        let mut args = vec!["--cluster-nats", url.as_str()];
        args.extend(common::reach::SMALL_QUEUE_FLAGS);
        nodes.push(ChildServer::start(dir.path(), &args).await);
    }
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    wait_for_room_everywhere(&nodes, "gifts").await;
    let viewers: Vec<_> = nodes.iter().map(|node| node.viewer).collect();
    common::reach::every_copy_accounted(&viewers, &nodes[1].admin).await;
}

/// A broadcast's Pusher `event` (contract §12) travels with it: a member on
/// another node than the one that accepted it gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcasts_event_reaches_members_on_every_node() {
    let nats = NatsServer::start().await;
    let (nodes, _dirs) = nodes(2, &[nats.url()]).await;
    wait_for_each_other(&nodes).await;
    nodes[0].admin.create_room("gifts").await;
    let mut member = subscribe(&nodes[1], "gifts").await;
    eventually("the member counts", || async { online(&nodes[0].admin, "gifts").await == 1 }).await;
    let body = json!({"data": {"gift": "rocket"}, "event": "gift"}).to_string();
    let (status, answer) = nodes[0].admin.post("/v1/apps/demo/rooms/gifts/broadcast", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let message = next_of(&mut member, "broadcast").await;
    assert_eq!((message["event"].as_str(), message["data"]["gift"].as_str()), (Some("gift"), Some("rocket")));
}
