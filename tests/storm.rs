//! A 50,000-connection reconnect storm against nodes with an accept-rate
//! limit: everyone drops at once and comes back, resuming, and the storm
//! queues at the limit instead of collapsing the nodes.
//!
//! One process holds at most ~19,900 connections here (the 20,000-file cap),
//! so the 50,000 are spread over three nodes of the real binary, clustered
//! over a real nats-server, and driven by the real load harness
//! (`bullhorn-loadtest storm`, three worker processes).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::nats::NatsServer;
use common::{ChildServer, HANG, KEY, metric};
use serde_json::Value;

const SUBSCRIBERS: u64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50k_reconnect_storm_against_accept_rate_limited_nodes_ends_with_everyone_back() {
    let harness = Path::new(env!("CARGO_BIN_EXE_bullhorn")).with_file_name("bullhorn-loadtest");
    assert!(harness.exists(), "{} is missing: build the workspace (scripts/test does)", harness.display());
    let nats = NatsServer::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(
            ChildServer::start(
                dir.path(),
                &["--cluster-nats", &nats.url(), "--accept-rate", "2000", "--max-connections-per-ip", "0"],
            )
            .await,
        );
    }
    for node in &nodes {
        let deadline = tokio::time::Instant::now() + HANG;
        while metric(&node.admin.metrics().await, "bullhorn_cluster_nodes") != Some(3.0) {
            assert!(tokio::time::Instant::now() < deadline, "the nodes never saw each other");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let report_dir = tempfile::tempdir().unwrap();
    let report_path = report_dir.path().join("storm.json");
    let mut command = tokio::process::Command::new(&harness);
    command.arg("storm");
    for node in &nodes {
        command.args(["--url", &format!("ws://{}", node.viewer)]);
    }
    let output = command
        .args(["--admin", &nodes[0].admin.base, "--key", KEY])
        .args(["--subscribers", &SUBSCRIBERS.to_string(), "--workers", "3", "--connect-rate", "5000"])
        .args(["--source-ips", "127.0.0.1-127.0.0.16", "--rate", "5", "--before", "2", "--after", "3"])
        .arg("--report")
        .arg(&report_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the harness failed: {said}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let count = |value: &Value, field: &str| value[field].as_u64().unwrap_or_else(|| panic!("{field} in {value}"));
    assert_eq!(count(&report, "subscribers_connected"), SUBSCRIBERS, "{report}\nthe harness said: {said}");
    let storm = &report["storm"];
    assert_eq!((count(storm, "reconnected"), count(storm, "reconnect_errors")), (SUBSCRIBERS, 0), "{storm}");
    assert_eq!(count(storm, "server_online_after"), SUBSCRIBERS, "everyone is back, counted cluster-wide");
    assert_eq!((count(&report, "gaps"), count(&report, "lagged")), (0, 0), "resumed without losing a broadcast");

    let mut throttled = 0.0;
    for node in &nodes {
        let (status, _) = node.admin.request(reqwest::Method::GET, "/healthz", None, None).await;
        assert_eq!(status, reqwest::StatusCode::OK, "a node died in the storm");
        throttled += metric(&node.admin.metrics().await, "bullhorn_accept_throttled_total").unwrap();
    }
    assert!(throttled > 0.0, "the storm never reached the accept-rate limit, so this tested nothing");
}
