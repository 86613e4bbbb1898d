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
    let (_, room) = server.admin.get("/v1/apps/demo/rooms/gifts").await;
    assert_eq!(room["seq"], 2, "refused broadcasts took no seq");
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

/// Writes one raw HTTP/1.1 request and reads one whole answer: its status line and body.
async fn raw_exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(common::HANG, stream.read(&mut buf)).await.expect("answer hung").unwrap();
        assert!(n > 0, "the connection closed after {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = answer.parse(&seen) {
            let length = answer.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).unwrap();
            let length: usize = std::str::from_utf8(length.value).unwrap().parse().unwrap();
            if seen.len() >= head + length {
                let status = format!("{}", answer.code.unwrap());
                return (status, String::from_utf8_lossy(&seen[head..head + length]).into_owned());
            }
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_on_a_connection_that_stays_open() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let addr = server.admin.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = json!({"data": "x".repeat(512 * 1024)}).to_string();
    let request = format!(
        "POST /v1/apps/demo/rooms/gifts/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = raw_exchange(&mut stream, request.as_bytes()).await;
    assert_eq!(status, "413", "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    // The whole body was read, so the same connection serves the next request.
    let (status, _) = raw_exchange(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "200");
    server.finish().await;
}
