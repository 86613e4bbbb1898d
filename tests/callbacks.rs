//! Per-app callbacks against a real HTTP callback server on a real socket:
//! the before-broadcast callback allows, rejects, drops, rewrites (in
//! bullhorn's answer shape and in Tencent's) and times out, fail-open and
//! fail-closed; an after-broadcast callback server that is down loses nothing
//! that fits the queue, counts what does not, and gets the rest in order once
//! it is up.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use bullhorn::cli::ServeArgs;
use common::{HANG, Subscriber, TestServer, metric};
use serde_json::{Value, json};

const TOKEN: &str = "callback-token";

/// What the callback server received: each request's query and body.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(HashMap<String, String>, Value)>>,
}

impl Recorder {
    fn bodies(&self, event: &str) -> Vec<Value> {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|(_, body)| body["event"] == event).map(|(_, body)| body.clone()).collect()
    }
}

/// Answers the before-broadcast callback by the broadcast's `data.case`.
async fn hook(
    State(recorder): State<Arc<Recorder>>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    recorder.requests.lock().unwrap().push((query, body.clone()));
    if body["event"] == "after_broadcast" {
        return Json(json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}));
    }
    Json(match body["data"]["case"].as_str().unwrap_or("") {
        "reject" => json!({"action": "reject", "message": "no ads here"}),
        "drop" => json!({"action": "drop"}),
        "rewrite" => json!({"action": "replace", "data": {"case": "rewritten"}}),
        "tencent_reject" => json!({"ActionStatus": "OK", "ErrorCode": 1, "ErrorInfo": "blocked word"}),
        "tencent_drop" => json!({"ActionStatus": "OK", "ErrorCode": 2, "ErrorInfo": ""}),
        "tencent_rewrite" => json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "MsgBody": [
            {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{\"case\":\"rewritten by tencent shape\"}"}}
        ]}),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json!({"action": "allow"})
        }
        _ => json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}),
    })
}

async fn callback_server(listener: tokio::net::TcpListener) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(recorder.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    recorder
}

fn app(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[app]]\nid = \"{id}\"\nadmin_key = \"{id}-admin-key-0123456789\"\n[app.callbacks]\nurl = \"{url}\"\n{extra}\n"
    )
}

async fn native(server: &TestServer, app: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/apps/{app}{path}", server.admin.base);
    let response = server
        .admin
        .http
        .post(url)
        .bearer_auth(format!("{app}-admin-key-0123456789"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn broadcast(server: &TestServer, app: &str, case: &str) -> (u16, Value) {
    native(server, app, "/rooms/gifts/broadcast", json!({"data": {"case": case}})).await
}

async fn member(server: &TestServer, app: &str) -> Subscriber {
    let mut subscriber = Subscriber::connect(&format!("ws://{}/v1/apps/{app}/ws?room=gifts", server.viewer)).await;
    assert_eq!(subscriber.next_json().await["type"], "welcome");
    subscriber
}

#[tokio::test]
async fn the_before_broadcast_callback_allows_rejects_drops_rewrites_and_fails_open_or_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let recorder = callback_server(listener).await;
    let file = app("open", &url, &format!("timeout_ms = 300\ntoken = \"{TOKEN}\"\nafter_broadcast = false"))
        + &app("closed", &url, "timeout_ms = 300\non_failure = \"closed\"\nafter_broadcast = false");
    let server = TestServer::start_with_file(ServeArgs::default(), &file).await;
    for app in ["open", "closed"] {
        assert_eq!(native(&server, app, "/rooms", json!({"room": "gifts"})).await.0, 201);
    }
    let mut open = member(&server, "open").await;

    assert_eq!(broadcast(&server, "open", "allow").await.0, 202);
    let (status, refused) = broadcast(&server, "open", "reject").await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("rejected_by_callback")));
    assert_eq!(refused["error"]["message"], "no ads here");
    let (status, dropped) = broadcast(&server, "open", "drop").await;
    assert_eq!((status, &dropped["dropped"], &dropped["seq"]), (202, &json!(true), &json!(1)), "{dropped}");
    assert_eq!(broadcast(&server, "open", "rewrite").await.0, 202);
    assert_eq!(broadcast(&server, "open", "tencent_reject").await.0, 403);
    assert_eq!(broadcast(&server, "open", "tencent_drop").await.1["dropped"], true);
    assert_eq!(broadcast(&server, "open", "tencent_rewrite").await.0, 202);
    // The callback takes 3 s, the timeout is 300 ms: fail-open sends it anyway.
    assert_eq!(broadcast(&server, "open", "slow").await.0, 202);

    // The members got exactly the allowed ones, rewritten where asked, in seq order.
    let mut received = Vec::new();
    for _ in 0..4 {
        let message = open.next_json().await;
        received.push((message["seq"].as_u64().unwrap(), message["data"]["case"].as_str().unwrap().to_owned()));
    }
    let expected = [(1, "allow"), (2, "rewritten"), (3, "rewritten by tencent shape"), (4, "slow")];
    assert_eq!(received, expected.map(|(seq, case)| (seq, case.to_owned())));

    // Fail-closed: a callback that does not answer in time refuses the broadcast.
    let (status, unavailable) = broadcast(&server, "closed", "slow").await;
    assert_eq!((status, unavailable["error"]["code"].as_str()), (503, Some("callback_unavailable")));
    assert_eq!(broadcast(&server, "closed", "allow").await.0, 202);

    // Each request carried both shapes, and Tencent's signature when a token is set.
    let requests = recorder.requests.lock().unwrap().clone();
    let (query, body) = requests.iter().find(|(_, body)| body["app"] == "open").unwrap();
    assert_eq!(query["CallbackCommand"], "Group.CallbackBeforeSendMsg");
    assert_eq!(query["SdkAppid"], "open");
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{TOKEN}{}", query["RequestTime"]).as_bytes());
    let sign: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(query["Sign"], sign);
    assert_eq!((body["GroupId"].as_str(), body["Type"].as_str()), (Some("gifts"), Some("BChatRoom")));
    assert_eq!(body["MsgBody"][0]["MsgType"], "TIMCustomElem");
    assert!(requests.iter().filter(|(_, body)| body["app"] == "closed").all(|(query, _)| !query.contains_key("Sign")));

    let metrics = server.admin.metrics().await;
    let count = |result: &str| {
        metric(&metrics, &format!(r#"bullhorn_callbacks_total{{app="open",kind="before",result="{result}"}}"#))
    };
    assert_eq!((count("ok"), count("failed_open")), (Some(7.0), Some(1.0)), "{metrics}");
    server.finish().await;
}

#[tokio::test]
async fn an_after_broadcast_callback_that_is_down_loses_nothing_that_fits_and_counts_the_rest() {
    // A port with nothing behind it yet: the callback server is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let file =
        app("mirror", &format!("http://{address}/hook"), "timeout_ms = 300\nbefore_broadcast = false\nafter_queue = 5");
    let server = TestServer::start_with_file(ServeArgs::default(), &file).await;
    assert_eq!(native(&server, "mirror", "/rooms", json!({"room": "gifts"})).await.0, 201);
    let mut member = member(&server, "mirror").await;
    for n in 0..12 {
        let (status, _) = native(&server, "mirror", "/rooms/gifts/broadcast", json!({"data": {"n": n}})).await;
        assert_eq!(status, 202, "the broadcast itself never waits for the after-broadcast callback");
    }
    for n in 0..12 {
        assert_eq!(member.next_json().await["data"]["n"], n, "members are served while the callback is down");
    }
    let metrics = server.admin.metrics().await;
    let overflow = metric(&metrics, r#"bullhorn_callback_queue_overflow_total{app="mirror"}"#).unwrap_or(0.0) as usize;
    // At most the queue (5) and the one being retried are held; the rest is counted.
    assert!((6..=7).contains(&(12 - overflow)), "overflow {overflow}\n{metrics}");

    // The server comes up: everything that was held arrives, once each, in order.
    let recorder = callback_server(tokio::net::TcpListener::bind(address).await.unwrap()).await;
    let deadline = tokio::time::Instant::now() + HANG;
    while recorder.bodies("after_broadcast").len() < 12 - overflow {
        assert!(tokio::time::Instant::now() < deadline, "held events never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seqs: Vec<u64> = recorder.bodies("after_broadcast").iter().map(|body| body["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=(12 - overflow) as u64).collect::<Vec<_>>());
    let first = &recorder.bodies("after_broadcast")[0];
    assert_eq!(
        (first["CallbackCommand"].as_str(), first["MsgSeq"].as_u64()),
        (Some("Group.CallbackAfterSendMsg"), Some(1))
    );
    assert_eq!(first["data"]["n"], 0);
    server.finish().await;
}
