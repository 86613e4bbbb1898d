//! The files in `deploy/` are true to the server: the alert rules and the
//! dashboard parse and name only metrics a running node exports, the systemd
//! unit passes `systemd-analyze verify`, the sysctl keys exist, and the
//! Dockerfile builds a non-root image exposing the contract's ports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{TestServer, metric};
use serde_json::{Value, json};

fn deploy(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)).unwrap()
}

/// YAML as JSON, through Python's yaml (installed with the test command's Python tools).
fn yaml(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path);
    let out = std::process::Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(out.status.success(), "{path} is not YAML: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `bullhorn_…` metric name in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("bullhorn_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn alert_rules_are_complete() {
    let rules = yaml("prometheus/alerts.yml");
    let rules = rules["groups"][0]["rules"].as_array().unwrap();
    assert!(rules.len() >= 5);
    for rule in rules {
        for field in ["alert", "expr", "for"] {
            assert!(rule[field].is_string(), "{field} in {rule}");
        }
        assert!(["page", "warn"].contains(&rule["labels"]["severity"].as_str().unwrap()), "{rule}");
        assert!(rule["annotations"]["summary"].is_string(), "{rule}");
    }
}

#[test]
fn the_dashboard_has_a_query_in_every_panel() {
    let dashboard: Value = serde_json::from_str(&deploy("grafana/bullhorn-dashboard.json")).unwrap();
    assert_eq!(dashboard["uid"], "bullhorn");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("bullhorn_")))
        );
    }
}

#[tokio::test]
async fn alerts_and_dashboard_name_only_metrics_a_node_exports() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let mut sub = server.subscribe(&["gifts"]).await;
    sub.next_json().await;
    server.admin.broadcast("gifts", json!(1)).await;
    sub.next_json().await;
    let exported = server.admin.metrics().await;
    assert_eq!(metric(&exported, r#"bullhorn_connections{transport="websocket"}"#), Some(1.0));
    let exported = metric_names(&exported);
    let wanted: BTreeSet<String> = metric_names(&deploy("prometheus/alerts.yml"))
        .union(&metric_names(&deploy("grafana/bullhorn-dashboard.json")))
        .cloned()
        .collect();
    assert!(wanted.len() >= 10, "{wanted:?}");
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(missing.is_empty(), "named in deploy/ but not exported: {missing:?}");
    server.finish().await;
}

#[test]
fn the_systemd_unit_verifies() {
    if std::process::Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed: the unit is checked for its settings only");
    } else {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("bullhorn.service");
        std::fs::write(
            &unit,
            deploy("systemd/bullhorn.service").replace("/usr/local/bin/bullhorn", env!("CARGO_BIN_EXE_bullhorn")),
        )
        .unwrap();
        let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    }
    let unit = deploy("systemd/bullhorn.service");
    for line in ["LimitNOFILE=1048576", "KillSignal=SIGTERM", "StateDirectory=bullhorn", "NoNewPrivileges=yes"] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
}

#[test]
fn every_sysctl_key_exists() {
    let conf = deploy("sysctl/99-bullhorn.conf");
    let mut keys = 0;
    for line in conf.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key = value: {line}"));
        let (key, value) = (key.trim(), value.trim());
        assert!(!value.is_empty(), "{line}");
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        assert!(path.exists(), "{key} is not a kernel setting here ({})", path.display());
        keys += 1;
    }
    assert!(keys >= 8);
}

#[test]
fn the_image_runs_as_non_root_with_the_contract_ports() {
    let dockerfile = deploy("Dockerfile");
    let stages = dockerfile.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "a build stage and a small runtime stage");
    let user = dockerfile.lines().rev().find_map(|l| l.strip_prefix("USER ")).expect("a USER line");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "runs as {user}");
    assert!(dockerfile.contains("EXPOSE 8080/tcp 4433/udp 8081/tcp"));
    assert!(dockerfile.contains("STOPSIGNAL SIGTERM"));
    // Every BULLHORN_* variable it sets is one the binary reads.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_bullhorn")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in dockerfile.split(|c: char| !(c.is_ascii_uppercase() || c == '_')).filter(|w| w.starts_with("BULLHORN_"))
    {
        assert!(help.contains(var) || var == "BULLHORN_DEMO_ADMIN_KEY", "{var} is not a bullhorn setting");
    }
}
