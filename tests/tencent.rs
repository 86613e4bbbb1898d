//! Tencent Cloud IM–style calls (contract §8) against a real server: UserSigs
//! made by Tencent's own TLSSigAPIv2 (PyPI, run by the test command), every
//! group call and its documented answers, and an unmodified Tencent REST
//! client library driving a room that real WebSocket subscribers are in.

mod common;

use bullhorn::cli::ServeArgs;
use bullhorn::tencent::usersig;
use common::{Subscriber, TestServer};
use serde_json::{Value, json};

const SDKAPPID: u64 = 1_400_000_001;
const USERSIG_KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const OTHER_SDKAPPID: u64 = 1_400_000_002;
const OTHER_KEY: &str = "0f0e0d0c0b0a09080706050403020100ffeeddccbbaa99887766554433221100";

/// Two apps that answer Tencent-style calls; `live` has two admin accounts.
fn config_file() -> String {
    format!(
        r#"
[[app]]
id = "live"
admin_key = "live-admin-key-0123456789"
sdkappid = {SDKAPPID}
usersig_key = "{USERSIG_KEY}"
admin_identifiers = ["administrator", "ops"]

[[app]]
id = "other"
admin_key = "other-admin-key-0123456789"
sdkappid = {OTHER_SDKAPPID}
usersig_key = "{OTHER_KEY}"
"#
    )
}

async fn start() -> TestServer {
    let args = ServeArgs { broadcasts_per_room: Some(0), ..Default::default() };
    TestServer::start_with_file(args, &config_file()).await
}

/// tests/tencent/tim.py: Tencent's Python code from PyPI. Asynchronous: the
/// client calls the server running on this test's runtime.
async fn python(args: &[&str]) -> String {
    let run = tokio::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tencent/tim.py"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(common::HANG, run).await.expect("tim.py hung").expect("python3 runs");
    assert!(
        output.status.success(),
        "tim.py {args:?} failed (scripts/test installs tls-sig-api-v2 and tencentcloud-sdk-python-im):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A UserSig made by Tencent's official TLSSigAPIv2 (PyPI tls-sig-api-v2).
async fn official_usersig(sdkappid: u64, key: &str, identifier: &str, expire: u64, made_at: Option<u64>) -> String {
    let (sdkappid, expire) = (sdkappid.to_string(), expire.to_string());
    let made_at = made_at.map(|t| t.to_string());
    let mut args = vec!["usersig", &sdkappid, key, identifier, &expire];
    args.extend(made_at.as_deref());
    python(&args).await
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// One call as a backend makes it; HTTP 200 is part of the contract, so it is checked here.
async fn call(server: &TestServer, command: &str, query: &str, body: Value) -> Value {
    let url = format!("{}/v4/group_open_http_svc/{command}?{query}", server.admin.base);
    let response = server.admin.http.post(url).body(body.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{command} answers HTTP 200 whatever happens");
    let answer: Value = response.json().await.unwrap();
    let ok = answer["ErrorCode"] == 0;
    assert_eq!(answer["ActionStatus"], if ok { "OK" } else { "FAIL" }, "{answer}");
    assert!(answer["ErrorInfo"].is_string(), "{answer}");
    answer
}

/// The query of a call as `identifier` of app `sdkappid`, signed by bullhorn's own signer
/// (which the first test checks against Tencent's).
fn query_for(sdkappid: u64, key: &str, identifier: &str) -> String {
    let sig = usersig::sign(sdkappid, identifier, key.as_bytes(), now(), 3600);
    format!("sdkappid={sdkappid}&identifier={identifier}&usersig={sig}&random=4021&contenttype=json")
}

fn admin_query() -> String {
    query_for(SDKAPPID, USERSIG_KEY, "administrator")
}

async fn code(server: &TestServer, command: &str, query: &str, body: Value) -> u64 {
    call(server, command, query, body).await["ErrorCode"].as_u64().unwrap()
}

#[tokio::test]
async fn usersigs_from_tencents_own_tlssigapiv2_are_accepted_and_bad_ones_get_tencents_codes() {
    let server = start().await;
    let list = json!({});
    let query = |sdkappid: u64, identifier: &str, sig: &str| {
        format!("sdkappid={sdkappid}&identifier={identifier}&usersig={sig}&random=7&contenttype=json")
    };
    let official = official_usersig(SDKAPPID, USERSIG_KEY, "administrator", 86_400, None).await;
    assert_eq!(
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &official), list.clone()).await,
        0
    );
    // The second admin account, and Tencent's `*` sent percent-encoded as some clients do.
    let ops = official_usersig(SDKAPPID, USERSIG_KEY, "ops", 86_400, None).await.replace('*', "%2A");
    assert_eq!(code(&server, "get_appid_group_list", &query(SDKAPPID, "ops", &ops), list.clone()).await, 0);

    let expired = official_usersig(SDKAPPID, USERSIG_KEY, "administrator", 60, Some(now() - 3600)).await;
    assert_eq!(
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &expired), list.clone()).await,
        70001
    );
    // Tampered: a character of the compressed document changed.
    let middle = official.len() / 2;
    let flipped = if &official[middle..=middle] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &official[..middle], &official[middle + 1..]);
    let tampered_code =
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &tampered), list.clone()).await;
    assert!([70003, 70009].contains(&tampered_code), "tampered: {tampered_code}");
    // Made for another app (with that app's own key), presented to this one.
    let other_app = official_usersig(OTHER_SDKAPPID, OTHER_KEY, "administrator", 86_400, None).await;
    assert_eq!(
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &other_app), list.clone()).await,
        70014
    );
    // This app's id, signed with another key.
    let wrong_key = official_usersig(SDKAPPID, OTHER_KEY, "administrator", 86_400, None).await;
    assert_eq!(
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &wrong_key), list.clone()).await,
        70009
    );
    // Another account's UserSig; a valid UserSig of an account that is not an admin.
    assert_eq!(
        code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &ops), list.clone()).await,
        70013
    );
    let viewer = official_usersig(SDKAPPID, USERSIG_KEY, "viewer42", 86_400, None).await;
    assert_eq!(code(&server, "get_appid_group_list", &query(SDKAPPID, "viewer42", &viewer), list.clone()).await, 60010);
    // No app, an unknown app, no signature.
    assert_eq!(code(&server, "get_appid_group_list", "identifier=administrator", list.clone()).await, 60012);
    assert_eq!(
        code(&server, "get_appid_group_list", &query(1_400_009_999, "administrator", &official), list.clone()).await,
        60006
    );
    assert_eq!(code(&server, "get_appid_group_list", &format!("sdkappid={SDKAPPID}"), list.clone()).await, 60004);

    // bullhorn's signer (used by the other tests) makes what Tencent's verifies the same way.
    let ours = usersig::sign(SDKAPPID, "administrator", USERSIG_KEY.as_bytes(), now(), 600);
    assert_eq!(code(&server, "get_appid_group_list", &query(SDKAPPID, "administrator", &ours), list).await, 0);
    let metrics = server.admin.metrics().await;
    assert!(
        metrics.contains(r#"bullhorn_tencent_calls_total{command="get_appid_group_list",code="70001"} 1"#),
        "{metrics}"
    );
    server.finish().await;
}

#[tokio::test]
async fn every_group_call_answers_as_tencent_documents_it() {
    let server = start().await;
    let q = admin_query();
    // create_group: BChatRoom only, no members, a generated id when none is given.
    let created =
        call(&server, "create_group", &q, json!({"Type": "BChatRoom", "Name": "Gifts", "GroupId": "gifts"})).await;
    assert_eq!(created["GroupId"], "gifts");
    let generated =
        call(&server, "create_group", &q, json!({"Owner_Account": "administrator", "Type": "BChatRoom", "Name": "x"}))
            .await;
    let generated_id = generated["GroupId"].as_str().unwrap().to_owned();
    assert!(bullhorn::ids::is_valid_id(&generated_id), "{generated_id}");
    assert_eq!(code(&server, "create_group", &q, json!({"Type": "AVChatRoom", "Name": "x"})).await, 10004);
    assert_eq!(code(&server, "create_group", &q, json!({"Name": "x"})).await, 10004);
    let with_members = json!({"Type": "BChatRoom", "Name": "x", "MemberList": [{"Member_Account": "bob"}]});
    assert_eq!(code(&server, "create_group", &q, with_members).await, 10007);
    assert_eq!(code(&server, "create_group", &q, json!({"Type": "BChatRoom", "GroupId": "gifts"})).await, 10025);
    assert_eq!(
        code(&server, "create_group", &q, json!({"Type": "BChatRoom", "GroupId": "@TGS#2J4SZEAEL"})).await,
        10015
    );
    for n in 3..=5 {
        call(&server, "create_group", &q, json!({"Type": "BChatRoom", "GroupId": format!("room{n}")})).await;
    }
    assert_eq!(code(&server, "create_group", &q, json!({"Type": "BChatRoom", "GroupId": "room6"})).await, 10006);
    // The native API sees the same rooms, with the name given.
    let (_, room) = server
        .admin
        .http
        .get(format!("{}/v1/apps/live/rooms/gifts", server.admin.base))
        .bearer_auth("live-admin-key-0123456789")
        .send()
        .await
        .map(|r| ((), r))
        .unwrap();
    assert_eq!(room.json::<Value>().await.unwrap()["name"], "Gifts");

    // get_appid_group_list: every room, paged with Limit and Next.
    let all = call(&server, "get_appid_group_list", &q, json!({})).await;
    assert_eq!(all["TotalCount"], 5);
    assert_eq!(all["GroupIdList"].as_array().unwrap().len(), 5);
    assert_eq!(all["Next"], 0);
    let first =
        call(&server, "get_appid_group_list", &q, json!({"Limit": 2, "Next": 0, "GroupType": "BChatRoom"})).await;
    assert_eq!(first["GroupIdList"].as_array().unwrap().len(), 2);
    let rest = call(&server, "get_appid_group_list", &q, json!({"Limit": 10, "Next": first["Next"]})).await;
    assert_eq!(rest["GroupIdList"].as_array().unwrap().len(), 3);
    assert_eq!(rest["Next"], 0);
    assert_eq!(call(&server, "get_appid_group_list", &q, json!({"GroupType": "Public"})).await["TotalCount"], 0);

    // send_group_msg reaches the room's members; MsgSeq is the room's seq.
    let url = format!("ws://{}/v1/apps/live/ws?room=gifts", server.viewer);
    let mut member = Subscriber::connect(&url).await;
    assert_eq!(member.next_json().await["type"], "welcome");
    assert_eq!(call(&server, "get_online_member_num", &q, json!({"GroupId": "gifts"})).await["OnlineMemberNum"], 1);
    let message = json!({"GroupId": "gifts", "Random": 8_912_345, "MsgPriority": "High", "MsgBody": [
        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}},
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{\"gift\":\"rocket\"}", "Desc": "notification", "Ext": "url"}}
    ]});
    let sent = call(&server, "send_group_msg", &q, message.clone()).await;
    assert_eq!(sent["MsgSeq"], 1);
    assert!(sent["MsgTime"].as_u64().unwrap().abs_diff(now()) < 600, "{sent}");
    let got = member.next_json().await;
    assert_eq!((got["type"].as_str(), got["seq"].as_u64()), (Some("broadcast"), Some(1)));
    assert_eq!(got["data"]["MsgBody"], message["MsgBody"]);
    assert_eq!(got["data"]["From_Account"], "administrator");
    // The same Random again within 5 minutes is the same message: same MsgSeq, nothing sent.
    assert_eq!(call(&server, "send_group_msg", &q, message.clone()).await["MsgSeq"], 1);
    let next =
        json!({"GroupId": "gifts", "Random": 1, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "2"}}]});
    assert_eq!(call(&server, "send_group_msg", &q, next).await["MsgSeq"], 2);
    assert_eq!(member.next_json().await["seq"], 2, "the repeat was not delivered");

    let no_random = json!({"GroupId": "gifts", "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}}]});
    assert_eq!(code(&server, "send_group_msg", &q, no_random).await, 10004);
    let targeted = json!({"GroupId": "gifts", "Random": 3, "To_Account": ["bob"], "MsgBody": message["MsgBody"]});
    assert_eq!(code(&server, "send_group_msg", &q, targeted).await, 10007);
    let huge = json!({"GroupId": "gifts", "Random": 4, "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x".repeat(70_000)}}]});
    assert_eq!(code(&server, "send_group_msg", &q, huge).await, 80002);
    // `data` wraps CloudCustomData in one object: 64 levels in all is the most a viewer is sent.
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
    let deep = json!({"GroupId": "gifts", "Random": 6, "MsgBody": message["MsgBody"], "CloudCustomData": nested(64)});
    assert_eq!(code(&server, "send_group_msg", &q, deep).await, 10004, "65 levels deep");
    let fits = json!({"GroupId": "gifts", "Random": 7, "MsgBody": message["MsgBody"], "CloudCustomData": nested(63)});
    assert_eq!(code(&server, "send_group_msg", &q, fits).await, 0, "64 levels deep");
    assert_eq!(member.next_json().await["seq"], 3, "and delivered; the refused one took no seq");
    let nowhere = json!({"GroupId": "nowhere", "Random": 5, "MsgBody": message["MsgBody"]});
    assert_eq!(code(&server, "send_group_msg", &q, nowhere).await, 10010);

    // destroy_group closes the room's members; then the group is gone.
    assert_eq!(code(&server, "destroy_group", &q, json!({"GroupId": "gifts"})).await, 0);
    assert!(member.next_close().await.is_some());
    assert_eq!(code(&server, "destroy_group", &q, json!({"GroupId": "gifts"})).await, 10010);
    assert_eq!(code(&server, "get_online_member_num", &q, json!({"GroupId": "gifts"})).await, 10010);

    // Malformed requests get the public error codes, still HTTP 200.
    let bad_json = server
        .admin
        .http
        .post(format!("{}/v4/group_open_http_svc/create_group?{q}", server.admin.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 200);
    assert_eq!(bad_json.json::<Value>().await.unwrap()["ErrorCode"], 60003);
    assert_eq!(code(&server, "send_group_system_notification", &q, json!({})).await, 60009);
    // Another app's admin cannot touch this app's rooms: its calls land in its own app.
    let other = query_for(OTHER_SDKAPPID, OTHER_KEY, "administrator");
    assert_eq!(call(&server, "get_appid_group_list", &other, json!({})).await["TotalCount"], 0);
    assert_eq!(code(&server, "destroy_group", &other, json!({"GroupId": "room3"})).await, 10010);
    server.finish().await;
}

#[tokio::test]
async fn an_unmodified_tencent_rest_client_library_creates_a_room_sends_and_counts() {
    let server = start().await;
    let (base, sdkappid) = (server.admin.base.clone(), SDKAPPID.to_string());
    let client = async |action: &str, arg: &str| -> Value {
        let mut args = vec!["client", &base, &sdkappid, USERSIG_KEY, action, "lobby"];
        if !arg.is_empty() {
            args.push(arg);
        }
        let answer: Value = serde_json::from_str(&python(&args).await).unwrap();
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["body"]["ActionStatus"], "OK", "{answer}");
        answer["body"].clone()
    };
    assert_eq!(client("create", "Lobby").await["GroupId"], "lobby");
    let url = format!("ws://{}/v1/apps/live/ws?room=lobby", server.viewer);
    let (mut first, mut second) = (Subscriber::connect(&url).await, Subscriber::connect(&url).await);
    for member in [&mut first, &mut second] {
        assert_eq!(member.next_json().await["type"], "welcome");
    }
    assert_eq!(client("send", "a rocket from Alice").await["MsgSeq"], 1);
    for member in [&mut first, &mut second] {
        let got = member.next_json().await;
        assert_eq!(got["data"]["MsgBody"][0]["MsgContent"]["Text"], "a rocket from Alice");
    }
    assert_eq!(client("online", "").await["OnlineMemberNum"], 2);
    server.finish().await;
}
