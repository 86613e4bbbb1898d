//! Pusher's HTTP API (contract §12) against a real server: Pusher's official
//! server library (PyPI `pusher`, run by the test command) triggers single
//! and batch events that real WebSocket subscribers receive with their
//! `event`, lists channels and reads `subscription_count`; requests signed
//! wrong, stale or with a body that is not the one signed are refused.

mod common;

use bullhorn::cli::ServeArgs;
use bullhorn::pusher::signature;
use common::TestServer;
use serde_json::{Value, json};

const APP_ID: &str = "1234567";
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

async fn start() -> TestServer {
    let file = format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{}\"\n[app.pusher]\napp_id = \"{APP_ID}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n",
        common::KEY
    );
    TestServer::start_with_file(ServeArgs { broadcasts_per_room: Some(0), ..Default::default() }, &file).await
}

/// tests/pusher/server_lib.py, with this server's address and the app's credentials.
async fn library(server: &TestServer, secret: &str, args: &[&str]) -> Value {
    let credentials = common::pusher::Credentials { app_id: APP_ID, key: KEY, secret };
    common::pusher::server_library(server, &credentials, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushers_server_library_triggers_what_subscribers_receive_with_its_event() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    server.admin.create_room("news").await;
    let mut viewer = server.subscribe(&["gifts", "news"]).await;
    viewer.next_json().await;
    let answer = library(&server, SECRET, &["trigger", "gifts,not-a-room", "gift", r#"{"gift":"rocket"}"#]).await;
    assert_eq!(answer, json!({}), "Pusher's answer to an event");
    let msg = viewer.next_json().await;
    assert_eq!((msg["room"].as_str(), msg["event"].as_str()), (Some("gifts"), Some("gift")));
    assert_eq!(msg["data"], json!({"gift": "rocket"}), "data that is JSON is broadcast as that JSON");
    library(&server, SECRET, &["trigger", "news", "notice", "plain text, not JSON"]).await;
    let msg = viewer.next_json().await;
    assert_eq!((msg["room"].as_str(), msg["data"].as_str()), (Some("news"), Some("plain text, not JSON")));
    let batch = json!([
        {"channel": "gifts", "name": "gift", "data": "1"},
        {"channel": "news", "name": "notice", "data": "2"},
        {"channel": "gifts", "name": "combo", "data": "3"},
    ]);
    assert_eq!(library(&server, SECRET, &["batch", &batch.to_string()]).await, json!({}));
    // In order within each room (rooms are not ordered among themselves).
    let mut got = Vec::new();
    for _ in 0..3 {
        let msg = viewer.next_json().await;
        got.push((
            msg["room"].as_str().unwrap().to_owned(),
            msg["event"].as_str().unwrap().to_owned(),
            msg["data"].clone(),
        ));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [("gifts", "gift", json!(1)), ("gifts", "combo", json!(3)), ("news", "notice", json!(2))];
    assert_eq!(got, expected.map(|(r, e, d)| (r.to_owned(), e.to_owned(), d)));
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, "bullhorn_pusher_unknown_channels_total"), Some(1.0));
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushers_server_library_lists_occupied_channels_and_their_subscription_count() {
    let server = start().await;
    for room in ["gifts", "games", "news"] {
        server.admin.create_room(room).await;
    }
    let mut viewers = Vec::new();
    for rooms in [&["gifts"][..], &["gifts", "games"], &["gifts"]] {
        let mut viewer = server.subscribe(rooms).await;
        viewer.next_json().await;
        viewers.push(viewer);
    }
    let all = library(&server, SECRET, &["channels"]).await;
    assert_eq!(all, json!({"channels": {"gifts": {"subscription_count": 3}, "games": {"subscription_count": 1}}}));
    let prefixed = library(&server, SECRET, &["channels", "ga"]).await;
    assert_eq!(prefixed, json!({"channels": {"games": {"subscription_count": 1}}}));
    assert_eq!(
        library(&server, SECRET, &["channel", "gifts"]).await,
        json!({"occupied": true, "subscription_count": 3})
    );
    assert_eq!(
        library(&server, SECRET, &["channel", "news"]).await,
        json!({"occupied": false, "subscription_count": 0})
    );
    let refused = library(&server, "not-the-secret", &["channels"]).await;
    assert_eq!(refused["error"], "PusherBadAuth", "the library read the 401 as Pusher's: {refused}");
    server.finish().await;
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A request signed as Pusher's libraries sign it, then spoiled one way.
async fn post_events(server: &TestServer, body: &str, timestamp: u64, md5_of: &str, secret: &str) -> (u16, String) {
    let path = format!("/apps/{APP_ID}/events");
    let mut query = vec![
        ("auth_key".to_owned(), KEY.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("body_md5".to_owned(), signature::body_md5(md5_of.as_bytes())),
    ];
    let signed = signature::sign(secret, &signature::string_to_sign("POST", &path, &query));
    query.push(("auth_signature".to_owned(), signed));
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.admin.base))
        .query(&query)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_bad_signature_a_stale_timestamp_or_another_body_is_refused() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    let mut viewer = server.subscribe(&["gifts"]).await;
    viewer.next_json().await;
    let body = r#"{"name":"gift","channel":"gifts","data":"{}"}"#;
    for (timestamp, md5_of, secret, reason) in [
        (now(), body, "wrong", "Invalid signature"),
        (now() - 601, body, SECRET, "Timestamp expired"),
        (now() + 601, body, SECRET, "Timestamp expired"),
        (now(), r#"{"name":"gift","channel":"gifts","data":"other"}"#, SECRET, "body_md5"),
    ] {
        let (status, text) = post_events(&server, body, timestamp, md5_of, secret).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains(reason), "{text}");
    }
    let metrics = server.admin.metrics().await;
    assert_eq!(common::metric(&metrics, "bullhorn_pusher_auth_rejected_total"), Some(4.0));
    // The same request signed right goes through, and is the first broadcast the viewer sees.
    let (status, text) = post_events(&server, body, now(), body, SECRET).await;
    assert_eq!((status, text.trim()), (200, "{}"));
    assert_eq!(viewer.next_json().await["seq"], 1, "none of the refused ones was broadcast");
    let unknown = reqwest::get(format!("{}/apps/999/channels", server.admin.base)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    server.finish().await;
}

/// The native API takes a Pusher `event` too: carried in the `broadcast`
/// message after `ts`; a name Pusher would not take is refused.
#[tokio::test]
async fn a_native_broadcast_may_carry_an_event() {
    let server = start().await;
    server.admin.create_room("gifts").await;
    let mut viewer = server.subscribe(&["gifts"]).await;
    viewer.next_json().await;
    let path = "/v1/apps/demo/rooms/gifts/broadcast";
    let (status, _) = server.admin.post(path, r#"{"data":{"n":1},"event":"gift"}"#).await;
    assert_eq!(status, 202);
    let raw = viewer.next().await.unwrap();
    let text = raw.to_text().unwrap();
    assert!(text.contains(r#","ts":"#) && text.contains(r#","event":"gift","data":{"n":1}}"#), "{text}");
    for bad in [r#""pusher:subscribe""#, r#""a\"b""#, r#""""#, "1", "null"] {
        let (status, body) = server.admin.post(path, &format!(r#"{{"data":1,"event":{bad}}}"#)).await;
        assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}");
    }
    server.finish().await;
}
