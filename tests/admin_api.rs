//! The admin REST API against a real server over real sockets (contract §2).

mod common;

use common::{Admin, KEY, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn every_v1_route_needs_the_apps_key() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let routes = [
        (Method::GET, "/v1/apps/demo/rooms", None),
        (Method::POST, "/v1/apps/demo/rooms", Some(r#"{"room":"x"}"#)),
        (Method::GET, "/v1/apps/demo/rooms/gifts", None),
        (Method::DELETE, "/v1/apps/demo/rooms/gifts", None),
        (Method::POST, "/v1/apps/demo/rooms/gifts/broadcast", Some(r#"{"data":1}"#)),
        // Unknown app: the same 401, so app ids cannot be probed.
        (Method::GET, "/v1/apps/nope/rooms", None),
    ];
    for (method, path, body) in routes {
        for key in [None, Some("wrong-key"), Some("")] {
            let (status, body) = server.admin.request(method.clone(), path, body, key).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {key:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    let (status, _) = server.admin.request(Method::GET, "/v1/apps/nope/rooms", None, Some(KEY)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a key of another app is not valid for an unknown one");
    let (status, _) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(status, StatusCode::OK, "the room was not touched by the refused requests");
    server.finish().await;
}

#[tokio::test]
async fn twelve_concurrent_creates_give_exactly_five_rooms() {
    let server = TestServer::start().await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let admin: Admin = server.admin.clone();
            tokio::spawn(async move {
                admin.post("/v1/apps/demo/rooms", &json!({"room": format!("room{i}")}).to_string()).await
            })
        })
        .collect();
    let (mut created, mut limited) = (0, 0);
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "room_limit");
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, limited), (5, 7));
    let (_, list) = server.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 5);
    assert_eq!(list["limit"], 5);
    server.finish().await;
}

#[tokio::test]
async fn room_objects_and_errors_follow_the_contract() {
    let server = TestServer::start().await;
    let (status, room) =
        server.admin.post("/v1/apps/demo/rooms", r#"{"room":"gifts","name":"Gift announcements"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(room["room"], "gifts");
    assert_eq!(room["name"], "Gift announcements");
    assert_eq!(room["online"], 0);
    assert_eq!(room["seq"], 0);
    assert!(room["created_at"].as_str().unwrap().ends_with('Z'));

    let cases = [
        (r#"{"room":"gifts"}"#, StatusCode::CONFLICT, "room_exists"),
        (r#"{"room":"bad id!"}"#, StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"room":"x","colour":"red"}"#, StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"room":"#, StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"["room"]"#, StatusCode::BAD_REQUEST, "invalid_request"),
        (r#"{"room":"x","members":["alice"]}"#, StatusCode::BAD_REQUEST, "invites_not_allowed"),
        (r#"{"room":"x","MemberList":[{"Member_Account":"bob"}]}"#, StatusCode::BAD_REQUEST, "invites_not_allowed"),
        (r#"{"room":"x","invite":["carol"]}"#, StatusCode::BAD_REQUEST, "invites_not_allowed"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = server.admin.post("/v1/apps/demo/rooms", body).await;
        assert_eq!((got, answer["error"]["code"].as_str().unwrap()), (status, code), "{body}");
    }
    let (_, list) = server.admin.get("/v1/apps/demo/rooms").await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1, "no refused create added a room");

    let (status, body) = server.admin.get("/v1/apps/demo/rooms/nope").await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "room_not_found"));
    let (status, body) = server.admin.delete("/v1/apps/demo/rooms/nope").await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "room_not_found"));
    let (status, body) = server.admin.post("/v1/apps/demo/rooms/nope/broadcast", r#"{"data":1}"#).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "room_not_found"));
    server.finish().await;
}

#[tokio::test]
async fn broadcast_validation() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let path = "/v1/apps/demo/rooms/gifts/broadcast";

    let (status, body) =
        server.admin.post(path, r#"{"data":{"text":"hi"},"priority":"high","conflate":"score"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"room":"gifts","seq":1,"online":0}));

    let big = json!({"data": "x".repeat(64 * 1024)}).to_string();
    let (status, body) = server.admin.post(path, &big).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let huge = json!({"data": "x".repeat(1024 * 1024)}).to_string();
    let (status, body) = server.admin.post(path, &huge).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    let fits = json!({"data": "x".repeat(64 * 1024 - 2)}).to_string();
    assert_eq!(server.admin.post(path, &fits).await.0, StatusCode::ACCEPTED, "exactly at the limit is accepted");

    for bad in [
        r#"{}"#,
        r#"{"data":1,"extra":2}"#,
        r#"{"data":1,"priority":"urgent"}"#,
        "not json",
        r#"{"data":1,"conflate":""}"#,
    ] {
        let (status, body) = server.admin.post(path, bad).await;
        assert_eq!(
            (status, body["error"]["code"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
    // What a viewer's JSON parser may not take: deeper than 64 levels, whatever the size.
    let nested = |levels: usize| format!(r#"{{"data":{}{}}}"#, "[".repeat(levels), "]".repeat(levels));
    let (status, body) = server.admin.post(path, &nested(65)).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let (status, body) = server.admin.post(path, &nested(20_000)).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_request"));
    assert_eq!(server.admin.post(path, &nested(64)).await.0, StatusCode::ACCEPTED, "64 levels are delivered");
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["seq"], 3, "refused broadcasts took no seq");
    server.finish().await;
}

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let server = TestServer::start().await;
    let (status, _) = server.admin.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.admin.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    server.admin.create_room("gifts").await;
    server.admin.broadcast("gifts", json!(1)).await;
    let text = server.admin.metrics().await;
    for name in [
        "bullhorn_room_online{app=\"demo\",room=\"gifts\"}",
        "bullhorn_broadcasts_total{app=\"demo\",room=\"gifts\"}",
        "bullhorn_fanout_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert_eq!(common::metric(&text, "bullhorn_broadcasts_total{app=\"demo\",room=\"gifts\"}"), Some(1.0));
    let (status, body) = server.admin.request(Method::GET, "/nope", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (StatusCode::NOT_FOUND, "not_found"));
    server.finish().await;
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_on_a_connection_that_stays_open() {
    use axum::body::Body;
    use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    // One connection by hand (hyper's own client), so the test sees whether it survives the refusal.
    let stream = tokio::net::TcpStream::connect(server.admin.base.trim_start_matches("http://")).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let body = json!({"data": "x".repeat(512 * 1024)}).to_string();
    let oversized = hyper::Request::post("/v1/apps/demo/rooms/gifts/broadcast")
        .header(HOST, "x")
        .header(AUTHORIZATION, format!("Bearer {KEY}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let answer = sender.send_request(oversized).await.unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer = axum::body::to_bytes(Body::new(answer.into_body()), usize::MAX).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    // The whole body was read, so the same connection serves the next request.
    sender.ready().await.expect("the connection stayed open");
    let health = hyper::Request::get("/healthz").header(HOST, "x").body(Body::empty()).unwrap();
    assert_eq!(sender.send_request(health).await.unwrap().status(), StatusCode::OK);
    server.finish().await;
}
