//! The harness against a real bullhorn server (in this process, on port 0)
//! with small N: every report field present and consistent, drops counted
//! when the server is made to drop, each scenario's own result checked.
//! The harness runs as its real binary, with its real worker processes.

use std::net::SocketAddr;
use std::process::Stdio;

use bullhorn::cli::ServeArgs;
use bullhorn::{Config, Server};
use serde_json::{Value, json};

/// The bullhorn tests' nats-server helper (JetStream on free ports).
#[path = "../../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;

const KEY: &str = "harness-test-key-0123456789";
/// How long a wait may take before the test is declared hung (nats.rs).
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

struct Node {
    viewer: SocketAddr,
    admin: SocketAddr,
    quic: SocketAddr,
    data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(args: ServeArgs) -> Node {
    start_with_file(args, "").await
}

/// The demo app with Pusher credentials: the key is the load client's default `--pusher-key`.
fn pusher_app() -> String {
    format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{KEY}\"\n[app.pusher]\napp_id = \"1\"\nkey = \"bench-pusher-key\"\nsecret = \"s\"\n"
    )
}

/// [`start`] with a config file's text.
async fn start_with_file(mut args: ServeArgs, file: &str) -> Node {
    let data = tempfile::tempdir().unwrap();
    args.viewer_addr = Some("127.0.0.1:0".parse().unwrap());
    args.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    args.quic_addr = Some("127.0.0.1:0".parse().unwrap());
    args.data_dir = Some(data.path().to_owned());
    let config =
        Config::from_toml(&args, file, |name| (name == "BULLHORN_DEMO_ADMIN_KEY").then(|| KEY.to_owned())).unwrap();
    let server = Server::bind(config).await.unwrap();
    let (viewer, admin, quic) = (server.viewer_addr(), server.admin_addr(), server.quic_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Node { viewer, admin, quic, data, _stop: stop }
}

/// Runs `bullhorn-loadtest <scenario> <args>` against `node`; returns its JSON report.
async fn run(node: &Node, scenario: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bullhorn-loadtest"))
        .arg(scenario)
        .args(["--url", &format!("ws://{}", node.viewer), "--admin", &format!("http://{}", node.admin)])
        .args(["--key", KEY, "--server-pid", &std::process::id().to_string()])
        .arg("--report")
        .arg(&report)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{scenario} failed: {stderr}");
    let written: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(written, printed, "the report file and stdout agree");
    assert!(stderr.contains(scenario), "the human table names the scenario: {stderr}");
    written
}

fn u(report: &Value, field: &str) -> u64 {
    report[field].as_u64().unwrap_or_else(|| panic!("{field} missing or not a count in {report}"))
}

/// Contract §6's fields, present and of the right kind, plus the machine and the parameters.
fn assert_contract_fields(report: &Value, subscribers: u64) {
    assert_eq!(report["transport"], "websocket");
    assert_eq!(u(report, "subscribers_requested"), subscribers);
    assert_eq!(u(report, "subscribers_connected"), subscribers);
    assert_eq!(u(report, "connect_errors"), 0);
    for field in ["broadcasts", "deliveries", "expected_deliveries", "gaps"] {
        u(report, field);
    }
    assert!(report["deliveries_per_sec"].as_f64().unwrap() > 0.0);
    for quantile in ["p50", "p90", "p99", "p999", "max"] {
        assert!(report["latency_us"][quantile].as_u64().unwrap() > 0, "latency {quantile}");
    }
    let l = &report["latency_us"];
    assert!(u(l, "p50") <= u(l, "p99") && u(l, "p99") <= u(l, "max"));
    assert!(u(report, "server_rss_bytes") > 0);
    assert!(report["server_rss_per_subscriber_bytes"].as_f64().is_some());
    assert!(u(&report["machine"], "cores") >= 1 && u(&report["machine"], "memory_bytes") > 0);
    assert!(report["machine"]["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(report["parameters"]["common"]["subscribers"], subscribers);
    assert!(report["parameters"]["common"].get("key").is_none(), "the admin key is not a parameter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_everything_and_reports_every_field() {
    let node = start(ServeArgs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("fanout.svg");
    let report = run(
        &node,
        "fanout",
        &[
            "--subscribers",
            "200",
            "--workers",
            "2",
            "--rate",
            "20",
            "--duration",
            "2",
            "--payload",
            "120",
            "--chart",
            chart.to_str().unwrap(),
        ],
    )
    .await;
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("deliveries per second") && svg.contains("latency by percentile"));
    assert_contract_fields(&report, 200);
    assert_eq!(u(&report, "broadcasts"), 40);
    assert_eq!(u(&report, "expected_deliveries"), 40 * 200);
    assert_eq!(u(&report, "deliveries"), u(&report, "expected_deliveries"), "nothing dropped, all delivered");
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
    assert_eq!(u(&report, "payload_bytes"), 120);
}

/// With every live-room feature on (ttl, a pin on every broadcast, occupancy
/// pushed every second), everything still arrives once, and the server's
/// reach of each broadcast adds up to what the subscribers received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_s_reach_is_what_the_subscribers_received() {
    let node = start(ServeArgs::default()).await;
    let args = ["--subscribers", "200", "--workers", "2", "--rate", "20", "--duration", "2", "--payload", "120"];
    let live = ["--ttl-ms", "60000", "--sticky", "--occupancy-interval-ms", "1000", "--check-reach"];
    let report = run(&node, "fanout", &[&args[..], &live[..]].concat()).await;
    assert_eq!(u(&report, "deliveries"), 40 * 200, "nothing dropped, all delivered");
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
    let reach = &report["reach"];
    assert_eq!((reach["broadcasts"].as_u64(), reach["targets"].as_u64()), (Some(40), Some(40 * 200)), "{reach}");
    assert_eq!(reach["delivered"].as_u64(), Some(40 * 200));
    assert_eq!(
        (&reach["complete"], &reach["accounted"], &reach["delivered_matches_received"]),
        (&json!(true), &json!(true), &json!(true))
    );
}

/// Subscribers that offer permessage-deflate get large broadcasts compressed
/// and read every one, in order, as plain subscribers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_subscribers_get_everything() {
    let node = start(ServeArgs::default()).await;
    let args =
        ["--subscribers", "100", "--workers", "2", "--rate", "20", "--duration", "2", "--payload", "2048", "--deflate"];
    let report = run(&node, "fanout", &args).await;
    assert_eq!(u(&report, "deliveries"), 40 * 100, "nothing dropped, all delivered");
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
    let metrics = reqwest::get(format!("http://{}/metrics", node.admin)).await.unwrap().text().await.unwrap();
    let compressed = metrics.lines().find(|l| l.starts_with("bullhorn_compressed_broadcasts_total"));
    assert_eq!(compressed.and_then(|l| l.split_whitespace().last()), Some("40"), "each compressed once");
}

/// `--payload-json`: broadcasts carry a real message, and the report says
/// what each delivery cost on the wire: less compressed than plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_messages_report_their_bytes_per_delivery() {
    let node = start(ServeArgs::default()).await;
    let gift = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/data/gift.json");
    let mut per_delivery = Vec::new();
    for deflate in [false, true] {
        let mut args = vec!["--subscribers", "50", "--workers", "1", "--rate", "20", "--duration", "1"];
        args.extend(["--payload-json", gift]);
        if deflate {
            args.push("--deflate");
        }
        let report = run(&node, "fanout", &args).await;
        assert_eq!(u(&report, "deliveries"), 20 * 50);
        per_delivery.push(u(&report, "broadcast_bytes_received") as f64 / u(&report, "deliveries") as f64);
    }
    // The gift's 277 bytes of JSON, the added send time, the broadcast's own fields and the frame header.
    assert!(per_delivery[0] > 350.0, "plain: {per_delivery:?}");
    assert!(per_delivery[1] < 0.8 * per_delivery[0], "compressed: {per_delivery:?}");
}

/// `--transport sse`: Server-Sent Events subscribers read every broadcast,
/// in order, and the server counts them under `transport="sse"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_subscribers_get_everything() {
    let node = start(ServeArgs::default()).await;
    let args = ["--transport", "sse", "--subscribers", "100", "--workers", "2", "--rate", "20", "--duration", "2"];
    let report = run(&node, "fanout", &args).await;
    assert_eq!(report["transport"], "sse");
    assert_eq!(u(&report, "subscribers_connected"), 100);
    assert_eq!(u(&report, "deliveries"), 40 * 100, "nothing dropped, all delivered");
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
    let metrics = reqwest::get(format!("http://{}/metrics", node.admin)).await.unwrap().text().await.unwrap();
    let sse = metrics.lines().find(|l| l.starts_with(r#"bullhorn_deliveries_total{transport="sse"}"#));
    assert_eq!(sse.and_then(|l| l.split_whitespace().last()), Some("4000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_subscribers_get_everything() {
    let node = start_with_file(ServeArgs::default(), &pusher_app()).await;
    let args = ["--transport", "pusher", "--subscribers", "100", "--workers", "2", "--rate", "20", "--duration", "2"];
    let report = run(&node, "fanout", &args).await;
    assert_eq!(report["transport"], "pusher");
    assert_eq!(u(&report, "subscribers_connected"), 100, "each one subscribed");
    assert_eq!(u(&report, "deliveries"), 40 * 100, "nothing dropped, all delivered");
    assert_eq!(u(&report, "lagged"), 0);
    let metrics = reqwest::get(format!("http://{}/metrics", node.admin)).await.unwrap().text().await.unwrap();
    let pusher = metrics.lines().find(|l| l.starts_with(r#"bullhorn_deliveries_total{transport="pusher"}"#));
    assert_eq!(pusher.and_then(|l| l.split_whitespace().last()), Some("4000"));
}

/// Readers that stall for a second behind a one-message queue: that second's
/// broadcasts (12 MB each at full pace) overflow what the kernel's socket
/// buffers hold (4 MB sent, 128 KiB received), so the server must drop, and
/// it says so before the reader reads on. Returns the report and the server's drops.
async fn stalled_readers(node: &Node, transport: &str) -> (Value, f64) {
    let args = [
        "--transport",
        transport,
        "--subscribers",
        "20",
        "--workers",
        "1",
        "--rate",
        "200",
        "--duration",
        "1",
        "--payload",
        "60000",
        "--stall-ms",
        "1000",
    ];
    let report = run(node, "fanout", &args).await;
    let metrics = reqwest::get(format!("http://{}/metrics", node.admin)).await.unwrap().text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"bullhorn_dropped_messages_total{reason="slow"} "#))
        .map_or(0.0, |v| v.parse().unwrap());
    (report, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_server_drops_the_report_counts_it_exactly() {
    let node = start(ServeArgs { queue_max_messages: Some(1), ..Default::default() }).await;
    let (report, dropped) = stalled_readers(&node, "websocket").await;
    assert!(dropped > 0.0, "the server was made to drop");
    assert_eq!(u(&report, "lagged"), dropped as u64, "every drop the server made, the harness counted");
    assert_eq!(u(&report, "deliveries") + u(&report, "lagged"), u(&report, "expected_deliveries"));
    assert_eq!(u(&report, "gaps"), 0, "every drop was announced by `lagged`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_subscriber_is_told_of_every_drop_by_a_bullhorn_lagged_event() {
    let node = start_with_file(ServeArgs { queue_max_messages: Some(1), ..Default::default() }, &pusher_app()).await;
    let (report, dropped) = stalled_readers(&node, "pusher").await;
    assert!(dropped > 0.0, "the server was made to drop");
    assert_eq!(u(&report, "lagged"), dropped as u64, "each drop counted in a bullhorn:lagged event");
    assert_eq!(u(&report, "deliveries") + u(&report, "lagged"), u(&report, "expected_deliveries"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_times_the_last_receiver_of_each_broadcast() {
    let node = start(ServeArgs::default()).await;
    let report =
        run(&node, "burst", &["--subscribers", "150", "--workers", "2", "--repeat", "3", "--interval-ms", "200"]).await;
    let burst = &report["burst"];
    assert_eq!((u(burst, "repeats"), u(burst, "online_min"), u(burst, "receivers_min")), (3, 150, 150));
    assert!(0 < u(burst, "p100_us_min") && u(burst, "p100_us_min") <= u(burst, "p100_us_max"));
    assert!(u(burst, "p100_us_max") >= u(&report["latency_us"], "p99"), "p100 bounds every delivery's latency");
    assert_eq!(u(&report, "deliveries"), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_the_servers_online_count_exact() {
    let node = start(ServeArgs::default()).await;
    let report = run(
        &node,
        "churn",
        &["--subscribers", "100", "--workers", "2", "--rate", "10", "--duration", "2", "--churn-per-sec", "40"],
    )
    .await;
    let churn = &report["churn"];
    assert!(u(churn, "churned") > 0);
    assert_eq!(u(churn, "open_at_end"), 100, "every replaced subscriber came back");
    assert_eq!(u(churn, "server_online_at_end"), 100);
    assert_eq!(churn["online_exact"], true);
    assert_eq!(u(&report, "gaps"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_compares_readers_with_and_without_non_readers() {
    let node = start(ServeArgs::default()).await;
    let report = run(
        &node,
        "slow",
        &["--subscribers", "100", "--workers", "2", "--rate", "10", "--duration", "2", "--non-reader-fraction", "0.1"],
    )
    .await;
    let slow = &report["slow"];
    assert_eq!(u(slow, "non_readers"), 10);
    assert!(u(&slow["all_fast_latency_us"], "p99") > 0);
    assert!(slow["p99_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(u(&report, "expected_deliveries"), 20 * 90, "what the 90 readers were owed");
    assert_eq!(u(&report, "deliveries"), u(&report, "expected_deliveries"), "readers missed nothing");
    assert_eq!(u(&report, "gaps"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_memory_per_subscriber() {
    let node = start(ServeArgs::default()).await;
    let report = run(&node, "idle", &["--subscribers", "200", "--workers", "2", "--hold", "0"]).await;
    assert_eq!(u(&report, "subscribers_connected"), 200);
    assert!(report["server_rss_per_subscriber_bytes"].as_f64().is_some());
    assert!(report["server_rss_per_subscriber_average_bytes"].as_f64().is_some());
    assert_eq!(u(&report, "deliveries"), 200, "the warm-up broadcast reached everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_reconnects_resumes_without_a_gap() {
    let node = start(ServeArgs::default()).await;
    let report = run(
        &node,
        "storm",
        &["--subscribers", "200", "--workers", "2", "--rate", "20", "--before", "1", "--after", "2"],
    )
    .await;
    let storm = &report["storm"];
    assert_eq!((u(storm, "reconnected"), u(storm, "reconnect_errors")), (200, 0));
    assert_eq!(u(storm, "server_online_after"), 200);
    assert_eq!(u(&report, "broadcasts"), 60);
    assert_eq!(u(&report, "gaps"), 0, "the resume left no gap");
    assert_eq!(u(&report, "lagged"), 0);
    assert_eq!(u(&report, "deliveries"), 60 * 200, "what was sent while they were away came back by resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_writes_one_frame_per_write_and_fanout_reports_its_ratio() {
    let node = start(ServeArgs::default()).await;
    let report = run(&node, "ceiling", &["--subscribers", "100", "--workers", "1", "--duration", "1"]).await;
    let ceiling = &report["ceiling"];
    assert_eq!(u(ceiling, "sockets"), 100);
    let (writes, frame) = (u(ceiling, "writes"), u(ceiling, "frame_bytes"));
    assert!(writes > 0 && ceiling["writes_per_sec"].as_f64().unwrap() > 0.0);
    // The envelope with a 13-digit ts and a 4-digit seq, 100 bytes of `data`, and a
    // WebSocket header of 4 bytes (a payload over 125 bytes has a 16-bit length).
    let envelope = r#"{"type":"broadcast","room":"loadtest","seq":1000,"ts":1764264000123,"data":}"#.len() as u64;
    assert_eq!(frame, 4 + envelope + 100, "the frame a 100-byte `data` broadcast puts on the wire");
    assert!(0 < u(ceiling, "bytes_read") && u(ceiling, "bytes_read") <= writes * frame);

    let report =
        run(&node, "fanout", &["--subscribers", "100", "--rate", "20", "--duration", "1", "--with-ceiling"]).await;
    let ratio = report["ceiling_ratio"].as_f64().unwrap();
    let expected =
        report["deliveries_per_sec"].as_f64().unwrap() / report["ceiling"]["writes_per_sec"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9 && ratio > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_ceiling_writes_whole_rounds_and_reports_their_time_and_cpu() {
    let node = start(ServeArgs::default()).await;
    let args = ["--subscribers", "50", "--workers", "1", "--duration", "1", "--interval-ms", "250"];
    let report = run(&node, "ceiling", &args).await;
    let ceiling = &report["ceiling"];
    let (writes, rounds) = (u(ceiling, "writes"), u(ceiling, "writes") / 50);
    assert_eq!(writes % 50, 0, "every round reaches every socket once: {writes}");
    assert!((4..=5).contains(&rounds), "one round each 250 ms for 1 s: {rounds}");
    assert_eq!(u(ceiling, "interval_ms"), 250);
    assert!(u(ceiling, "round_us_median") > 0);
    assert!(ceiling["cpu_per_write_us"].as_f64().unwrap() > 0.0);
    assert_eq!(u(ceiling, "bytes_read"), writes * u(ceiling, "frame_bytes"), "the sinks read every round whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_websocket_and_quic_subscribers_gets_everything() {
    let node = start(ServeArgs::default()).await;
    let fingerprint = node.data.path().join("dev-cert.sha256");
    let report = run(
        &node,
        "fanout",
        &[
            "--transport",
            "mix",
            "--quic-addr",
            &node.quic.to_string(),
            "--fingerprint-file",
            fingerprint.to_str().unwrap(),
            "--subscribers",
            "100",
            "--workers",
            "2",
            "--rate",
            "10",
            "--duration",
            "1",
        ],
    )
    .await;
    assert_eq!(report["transport"], "mix");
    assert_eq!(u(&report, "subscribers_connected"), 100);
    assert_eq!(u(&report, "deliveries"), u(&report, "expected_deliveries"));
    assert_eq!(u(&report, "deliveries"), 10 * 100);
    assert_eq!(u(&report, "gaps"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_subscribers_get_everything() {
    let node = start(ServeArgs::default()).await;
    let fingerprint = node.data.path().join("dev-cert.sha256");
    let quic = node.quic.to_string();
    let args =
        ["--transport", "webtransport", "--quic-addr", &quic, "--fingerprint-file", fingerprint.to_str().unwrap()];
    let load = ["--subscribers", "60", "--workers", "2", "--rate", "10", "--duration", "1"];
    let report = run(&node, "fanout", &[&args[..], &load[..]].concat()).await;
    assert_eq!(report["transport"], "webtransport");
    assert_eq!(u(&report, "subscribers_connected"), 60);
    assert_eq!(u(&report, "deliveries"), u(&report, "expected_deliveries"));
    assert_eq!(u(&report, "deliveries"), 10 * 60);
    assert_eq!(u(&report, "gaps"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_subscribers_move_to_the_next_node() {
    let draining = start(ServeArgs { drain_window_ms: Some(1000), ..Default::default() }).await;
    let staying = start(ServeArgs::default()).await;
    let http = reqwest::Client::new();
    let room_url = format!("http://{}/v1/apps/demo/rooms", draining.admin);
    let created = http.post(&room_url).bearer_auth(KEY).body(r#"{"room":"loadtest"}"#).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let harness = tokio::process::Command::new(env!("CARGO_BIN_EXE_bullhorn-loadtest"))
        .arg("storm")
        .args(["--drain", "--url", &format!("ws://{}", draining.viewer), "--url", &format!("ws://{}", staying.viewer)])
        .args(["--admin", &format!("http://{}", staying.admin), "--key", KEY])
        .args(["--subscribers", "100", "--workers", "2", "--rate", "10", "--before", "2", "--after", "3"])
        .arg("--report")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Half the subscribers land on the draining node (round-robin over the two URLs)...
    let online = |node: &Node| {
        let url = format!("http://{}/v1/apps/demo/rooms/loadtest", node.admin);
        let http = http.clone();
        async move {
            let room: Value = http.get(url).bearer_auth(KEY).send().await.unwrap().json().await.unwrap();
            room["online"].as_u64().unwrap_or(0)
        }
    };
    let mut waited = 0;
    while online(&draining).await < 50 {
        waited += 1;
        assert!(waited < 600, "the subscribers never reached the draining node");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ...then drains, as SIGTERM would make it.
    drop(draining);
    let output = harness.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let storm = &report["storm"];
    assert_eq!((u(storm, "reconnected"), u(storm, "reconnect_errors")), (50, 0), "{storm}");
    assert_eq!(u(storm, "server_online_after"), 100, "everyone is on the node that stayed");
    assert!(u(storm, "time_to_all_reconnected_ms") <= 10_000);
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_delivers_everything_with_subscribers_spread_over_nodes() {
    let nats = nats::NatsServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start(ServeArgs { cluster_nats: Some(nats.url()), ..Default::default() }).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    // Subscribers round-robin over the three nodes; broadcasts go through the first.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bullhorn-loadtest"));
    command.arg("fanout");
    for node in &nodes {
        command.args(["--url", &format!("ws://{}", node.viewer)]);
    }
    let output = command
        .args(["--admin", &format!("http://{}", nodes[0].admin), "--key", KEY])
        .args(["--server-pid", &std::process::id().to_string()])
        .args(["--subscribers", "300", "--workers", "2", "--rate", "20", "--duration", "2"])
        .arg("--report")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_contract_fields(&report, 300);
    assert_eq!(u(&report, "broadcasts"), 40);
    assert_eq!(u(&report, "expected_deliveries"), 40 * 300, "each 202 counted the members of all three nodes");
    assert_eq!(u(&report, "deliveries"), 40 * 300, "every member on every node got every broadcast");
    assert_eq!((u(&report, "gaps"), u(&report, "lagged")), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_samples_memory_and_files_and_sees_every_socket_closed() {
    let node = start(ServeArgs::default()).await;
    let report = run(
        &node,
        "soak",
        &[
            "--subscribers",
            "200",
            "--workers",
            "2",
            "--rate",
            "10",
            "--duration",
            "4",
            "--churn-per-sec",
            "20",
            "--non-reader-fraction",
            "0.1",
            "--sample-secs",
            "1",
            "--warmup-secs",
            "1",
        ],
    )
    .await;
    let soak = &report["soak"];
    assert!(soak["samples"].as_array().unwrap().len() >= 3, "{soak}");
    assert_eq!(u(soak, "non_readers"), 20);
    assert!(u(soak, "churned") > 0, "{soak}");
    assert!(u(soak, "rss_at_end_bytes") > 0 && u(soak, "rss_at_warmup_end_bytes") > 0);
    assert!(u(soak, "open_files_after") <= u(soak, "open_files_before"), "every subscriber socket was closed: {soak}");
    assert_eq!(u(&report, "broadcasts"), 40);
}
