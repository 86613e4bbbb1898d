//! Pusher's viewer side (contract §12) against a real server: Pusher's own
//! JavaScript client (npm `pusher-js`, unmodified, installed by the test
//! command) in Node connects, subscribes, gets every event from both APIs
//! in order and once, is refused private channels and unknown rooms, pings,
//! and comes back after a drain; native WebSocket, QUIC and Pusher members
//! of one room get the same broadcasts; and the protocol's details, spoken
//! by hand over a real WebSocket: closes for an unknown key and an old
//! protocol, client events refused, unsubscribe, the room cap.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use bullhorn::cli::ServeArgs;
use common::{HANG, Subscriber, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const APP_ID: &str = "1234567";
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

fn config() -> String {
    format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{}\"\nmax_rooms = 3\n[app.pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n",
        common::KEY
    )
}

async fn start_with(args: ServeArgs) -> TestServer {
    TestServer::start_with_file(ServeArgs { broadcasts_per_room: Some(0), ..args }, &config()).await
}

async fn start() -> TestServer {
    start_with(ServeArgs::default()).await
}

/// tests/pusher/client.js: pusher-js in Node, one JSON line per thing it reports.
struct PusherJs {
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
    _child: Child,
}

impl PusherJs {
    async fn connect(viewer: SocketAddr, channels: &[&str], activity_ms: Option<u64>) -> PusherJs {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pusher/client.js"))
            .args([viewer.ip().to_string(), viewer.port().to_string(), KEY.to_owned(), channels.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(ms) = activity_ms {
            command.env("ACTIVITY_MS", ms.to_string());
        }
        let mut child = command.spawn().expect("node on the PATH (scripts/test installs it and pusher-js)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        PusherJs { lines, stdin, _child: child }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(HANG, self.lines.next_line())
            .await
            .expect("pusher-js hung")
            .unwrap()
            .expect("pusher-js ended (did scripts/test install tests/pusher/node_modules?)");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// The next line that is not a connection state or a pong.
    async fn next_report(&mut self) -> Value {
        loop {
            let line = self.next().await;
            if line.get("state").is_none() && line.get("pong").is_none() && line.get("connected").is_none() {
                return line;
            }
        }
    }

    /// Reads until a line satisfies `wanted`; returns it.
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self.next().await;
            if wanted(&line) {
                return line;
            }
        }
    }

    async fn command(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
}

/// Pusher's server library (PyPI `pusher`) through tests/pusher/server_lib.py.
async fn server_library(server: &TestServer, args: &[&str]) -> Value {
    let credentials = common::pusher::Credentials { app_id: APP_ID, key: KEY, secret: SECRET };
    common::pusher::server_library(server, &credentials, args).await
}

async fn broadcast(server: &TestServer, room: &str, body: Value) {
    let (status, answer) = server.admin.post(&format!("/v1/apps/demo/rooms/{room}/broadcast"), &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
}

fn event(channel: &str, event: &str, data: Value) -> Value {
    json!({"channel": channel, "event": event, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_gets_every_event_of_both_apis_in_order_once_and_is_refused_what_is_not_offered() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    server.admin.create_room("news").await;
    let mut client = PusherJs::connect(server.viewer, &["gifts", "news", "private-vip", "no-such-room"], None).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(client.next_report().await);
    }
    answers.sort_by_key(|a| a.to_string());
    let mut expected = vec![
        json!({"subscribed": "gifts"}),
        json!({"subscribed": "news"}),
        json!({"subscription_error": "no-such-room", "status": 404, "type": "UnknownChannel"}),
        json!({"subscription_error": "private-vip", "status": 403, "type": "AuthError"}),
    ];
    expected.sort_by_key(|a| a.to_string());
    assert_eq!(answers, expected);
    broadcast(&server, "gifts", json!({"data": {"n": 1}, "event": "gift"})).await;
    broadcast(&server, "gifts", json!({"data": {"n": 2}})).await;
    server_library(&server, &["trigger", "gifts", "gift", r#"{"n":3}"#]).await;
    server_library(&server, &["trigger", "news", "notice", "plain text, not JSON"]).await;
    let batch = json!([
        {"channel": "gifts", "name": "combo", "data": r#"{"n":4}"#},
        {"channel": "gifts", "name": "combo", "data": r#"{"n":5}"#},
    ]);
    server_library(&server, &["batch", &batch.to_string()]).await;
    broadcast(&server, "gifts", json!({"data": "last", "event": "marker"})).await;
    let mut got = Vec::new();
    loop {
        let report = client.next_report().await;
        let last = report == event("gifts", "marker", json!("last"));
        got.push(report);
        if last {
            break;
        }
    }
    let news: Vec<&Value> = got.iter().filter(|e| e["channel"] == "news").collect();
    assert_eq!(news, [&event("news", "notice", json!("plain text, not JSON"))], "a text is given back as it came");
    let gifts: Vec<Value> = got.into_iter().filter(|e| e["channel"] == "gifts").collect();
    assert_eq!(
        gifts,
        [
            event("gifts", "gift", json!({"n": 1})),
            event("gifts", "broadcast", json!({"n": 2})),
            event("gifts", "gift", json!({"n": 3})),
            event("gifts", "combo", json!({"n": 4})),
            event("gifts", "combo", json!({"n": 5})),
            event("gifts", "marker", json!("last")),
        ],
        "every event once, in order, with its name (\"broadcast\" without one)"
    );
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, r#"bullhorn_connections{transport="pusher"}"#), Some(1.0));
    assert_eq!(common::metric(&metrics, r#"bullhorn_deliveries_total{transport="pusher"}"#), Some(7.0));
    assert_eq!(common::metric(&metrics, "bullhorn_pusher_subscriptions_refused_total"), Some(2.0));
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["online"], 1, "a Pusher member counts in online");
    let channel = server_library(&server, &["channel", "gifts"]).await;
    assert_eq!(channel["subscription_count"], 1);
    client.command("unsubscribe gifts").await;
    client.until(|line| line.get("unsubscribed").is_some()).await;
    let mut online = 1;
    for _ in 0..200 {
        let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
        online = room["online"].as_u64().unwrap();
        if online == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(online, 0, "an unsubscribe leaves the room");
    client.command("quit").await;
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pusher_js_pings_and_gets_its_pong() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    let mut client = PusherJs::connect(server.viewer, &["gifts"], Some(300)).await;
    client.until(|line| line.get("subscribed").is_some()).await;
    client.until(|line| line.get("pong").is_some()).await;
    // Still subscribed after the ping: a broadcast arrives.
    broadcast(&server, "gifts", json!({"data": 1, "event": "after-ping"})).await;
    let got = client.until(|line| line.get("event").is_some()).await;
    assert_eq!(got, event("gifts", "after-ping", json!(1)));
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_websocket_quic_and_pusher_members_of_one_room_get_the_same_broadcasts_in_order() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    let mut native = server.subscribe(&["gifts"]).await;
    assert_eq!(native.next_json().await["type"], "welcome");
    let endpoint = common::quic_client(&server.fingerprint, b"bullhorn/1");
    let mut quic = common::QuicSubscriber::connect(&endpoint, server.quic, &["gifts"]).await;
    assert_eq!(quic.next_json().await.unwrap()["type"], "welcome");
    let mut pusher = PusherJs::connect(server.viewer, &["gifts"], None).await;
    pusher.until(|line| line.get("subscribed").is_some()).await;
    for n in 1..=20 {
        broadcast(&server, "gifts", json!({"data": {"n": n}, "event": "gift"})).await;
    }
    let (mut from_native, mut from_quic, mut from_pusher) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 1..=20 {
        from_native.push(native.next_json().await["data"]["n"].clone());
        from_quic.push(quic.next_json().await.unwrap()["data"]["n"].clone());
        from_pusher.push(pusher.next_report().await["data"]["n"].clone());
    }
    let expected: Vec<Value> = (1..=20).map(|n| json!(n)).collect();
    assert_eq!(from_native, expected);
    assert_eq!(from_quic, expected);
    assert_eq!(from_pusher, expected);
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_drain_pusher_js_reconnects_and_subscribes_again_on_the_next_node() {
    let args = ServeArgs { drain_window_ms: Some(1_500), drain_timeout_ms: Some(5_000), ..Default::default() };
    let mut first = start_with(args.clone()).await;
    first.admin.create_room("gifts").await;
    let viewer = first.viewer;
    let mut client = PusherJs::connect(viewer, &["gifts"], None).await;
    client.until(|line| line.get("subscribed").is_some()).await;
    first.begin_shutdown();
    // The next node takes the address once the first has let go of it.
    let mut second = None;
    for _ in 0..500 {
        if std::net::TcpListener::bind(viewer).is_ok() {
            second = Some(start_with(ServeArgs { viewer_addr: Some(viewer), ..args.clone() }).await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let second = second.expect("the first node let go of its address");
    second.admin.create_room("gifts").await;
    let error = client.until(|line| line.get("error").is_some()).await;
    assert_eq!(error["data"]["code"], 4200, "told to reconnect at once: {error}");
    client.until(|line| line.get("connected").is_some()).await;
    client.until(|line| line.get("subscribed").is_some()).await;
    broadcast(&second, "gifts", json!({"data": "back", "event": "gift"})).await;
    assert_eq!(client.next_report().await, event("gifts", "gift", json!("back")));
    first.finish().await;
    second.finish().await;
}

/// A Pusher connection spoken by hand: the protocol's details.
async fn raw(server: &TestServer, key: &str, protocol: u32) -> Subscriber {
    Subscriber::connect(&format!("ws://{}/app/{key}?protocol={protocol}&client=js&version=8.6.0", server.viewer)).await
}

fn data_of(message: &Value) -> Value {
    match &message["data"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::String(text.clone())),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_by_hand_closes_refuses_and_reuses_a_left_rooms_slot() {
    let server = start().await;
    for room in ["a", "b", "c"] {
        server.admin.create_room(room).await;
    }
    let mut unknown = raw(&server, "not-the-key", 7).await;
    let error = unknown.next_json().await;
    assert_eq!((error["event"].as_str(), error["data"]["code"].as_u64()), (Some("pusher:error"), Some(4001)));
    assert_eq!(unknown.next_close().await.map(|f| u16::from(f.code)), Some(4001), "an unknown key: stop");
    let mut old = raw(&server, KEY, 4).await;
    assert_eq!(old.next_json().await["data"]["code"], 4007);
    assert_eq!(old.next_close().await.map(|f| u16::from(f.code)), Some(4007), "protocol 4: stop");

    let mut viewer = raw(&server, KEY, 7).await;
    let established = viewer.next_json().await;
    assert_eq!(established["event"], "pusher:connection_established");
    let socket = data_of(&established);
    assert!(socket["socket_id"].as_str().unwrap().contains('.') && socket["activity_timeout"] == 120);
    for room in ["a", "b", "a"] {
        viewer.send_text(&json!({"event": "pusher:subscribe", "data": {"channel": room}}).to_string()).await;
    }
    for room in ["a", "b", "a"] {
        let ok = viewer.next_json().await;
        let answer = (ok["event"].as_str(), ok["channel"].as_str(), ok["data"].as_str());
        assert_eq!(answer, (Some("pusher_internal:subscription_succeeded"), Some(room), Some("{}")), "twice: the same");
    }
    viewer.send_text(r#"{"event":"client-typing","channel":"a","data":{}}"#).await;
    let refused = viewer.next_json().await;
    assert_eq!((refused["event"].as_str(), refused["data"]["code"].as_u64()), (Some("pusher:error"), Some(4301)));
    viewer.send_text(r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(viewer.next_json().await, json!({"event": "pusher:pong", "data": {}}));
    viewer.send_text("not json").await;
    assert_eq!(viewer.next_json().await["event"], "pusher:error", "nonsense is answered, not fatal");
    // Leave a, then take its slot with c: only c's broadcasts come, none of a's.
    viewer.send_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#).await;
    viewer.send_text(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"c\"}"}"#).await;
    assert_eq!(viewer.next_json().await["channel"], "c");
    broadcast(&server, "a", json!({"data": "for a"})).await;
    broadcast(&server, "c", json!({"data": "for c", "event": "gift"})).await;
    assert_eq!(viewer.next_json().await, json!({"event": "gift", "channel": "c", "data": "\"for c\""}));
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_connection_in_no_room_is_told_of_a_drain_too() {
    let args = ServeArgs { drain_window_ms: Some(500), drain_timeout_ms: Some(5_000), ..Default::default() };
    let mut server = start_with(args).await;
    let mut idle = raw(&server, KEY, 7).await;
    assert_eq!(idle.next_json().await["event"], "pusher:connection_established");
    server.begin_shutdown();
    let error = idle.next_json().await;
    assert_eq!((error["event"].as_str(), error["data"]["code"].as_u64()), (Some("pusher:error"), Some(4200)));
    assert_eq!(idle.next_close().await.map(|f| u16::from(f.code)), Some(4200), "reconnect at once, elsewhere");
    server.finish().await;
}
