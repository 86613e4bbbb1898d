//! Admin keys never reach the logs: the real binary at trace level, admin
//! calls with the right key and with a wrong one, Tencent-style calls with a
//! UserSig, a broadcast through a failing signed callback, then everything
//! the process wrote is searched for every secret.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Admin, ChildServer, HANG, KEY};
use reqwest::StatusCode;
use serde_json::json;

const WRONG_KEY: &str = "not-the-key-but-also-secret-42";
const USERSIG_KEY: &str = "usersig-secret-key-7f3a9c";
const CALLBACK_TOKEN: &str = "callback-token-secret-51d2";

#[tokio::test]
async fn admin_keys_are_never_logged_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout.log"), dir.path().join("stderr.log"));
    let data = dir.path().join("data");
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = dir.path().join("bullhorn.toml");
    std::fs::write(
        &config,
        format!(
            "[[app]]\nid = \"demo\"\nadmin_key = \"{KEY}\"\nsdkappid = 1400000001\nusersig_key = \"{USERSIG_KEY}\"\n\
             [app.callbacks]\nurl = \"http://{down}/hook\"\ntimeout_ms = 200\ntoken = \"{CALLBACK_TOKEN}\"\n"
        ),
    )
    .unwrap();
    let mut child = ChildServer::command(&data, &["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + HANG;
    let admin = loop {
        let printed = std::fs::read_to_string(&out).unwrap();
        if let Some(addr) = printed.lines().find_map(|l| l.strip_prefix("bullhorn: admin listening on http://")) {
            break Admin::new(addr.parse().unwrap(), KEY);
        }
        assert!(tokio::time::Instant::now() < deadline, "the server did not start: {printed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    admin.create_room("gifts").await;
    admin.broadcast("gifts", json!({"text": "hello"})).await;
    for path in ["/v1/apps/demo/rooms", "/v1/apps/nope/rooms"] {
        let (status, _) = admin.request(reqwest::Method::GET, path, None, Some(WRONG_KEY)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = admin
        .request(reqwest::Method::POST, "/v1/apps/demo/rooms", Some(&json!({"room": "x"}).to_string()), Some(WRONG_KEY))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let usersig = bullhorn::tencent::usersig::sign(1_400_000_001, "administrator", USERSIG_KEY.as_bytes(), now, 600);
    for sig in [
        usersig.as_str(),
        "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwjDB4pTsxIKCzBQlK0MTAyiAyKRWFGQWpQLFTU1NjeCiJZm5YDEzS0tDAyOYaHFmOtBM54KsUqeUwGLLqPK8UndHryCL-Lx8-1RPy7Ty1AijMk9f30hLk0x-r3CvSFulWgAPYy*9",
    ] {
        let url = format!(
            "{}/v4/group_open_http_svc/get_appid_group_list?sdkappid=1400000001&identifier=administrator&usersig={sig}&random=1&contenttype=json",
            admin.base
        );
        let answer: serde_json::Value = admin.http.post(url).body("{}").send().await.unwrap().json().await.unwrap();
        assert!(answer["ErrorCode"].is_u64(), "{answer}");
    }

    std::process::Command::new("kill").arg(child.id().unwrap().to_string()).status().unwrap();
    tokio::time::timeout(HANG, child.wait()).await.expect("no exit after SIGTERM").unwrap();
    let logs = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "the process logged at a low level: the test sees logs");
    assert!(logs.contains("before-broadcast callback failed"), "the failing callback was logged (without its token)");
    for secret in [KEY, WRONG_KEY, USERSIG_KEY, CALLBACK_TOKEN, usersig.as_str()] {
        assert!(
            !logs.contains(secret),
            "a key reached the logs:\n{}",
            logs.lines().find(|l| l.contains(secret)).unwrap()
        );
    }
}
