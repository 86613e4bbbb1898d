//! The files in `deploy/` are true to the server: the alert rules and the
//! dashboard parse and name only metrics a running node exports, the systemd
//! unit passes `systemd-analyze verify`, the sysctl keys exist, and the
//! Dockerfile builds a non-root image exposing the contract's ports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{TestServer, metric};
use serde_json::{Value, json};

fn deploy_path(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn deploy(path: &str) -> String {
    std::fs::read_to_string(deploy_path(path)).unwrap()
}

/// Runs a checker; panics with its output unless it succeeds.
fn check(program: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is missing ({e}): scripts/test installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// YAML as JSON, through Python's yaml (installed with the test command's Python tools).
fn yaml(path: &str) -> Value {
    yaml_documents(path).as_array().unwrap()[0].clone()
}

/// Every document of a multi-document YAML file, as a JSON array.
fn yaml_documents(path: &str) -> Value {
    let full = deploy_path(path);
    let out = std::process::Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
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
    // The demo app with callbacks (to nowhere: fail-open), so the callback metrics are exported too.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let file = format!(
        "[[app]]\nid = \"demo\"\nadmin_key = \"{}\"\n[app.callbacks]\nurl = \"http://{down}/\"\ntimeout_ms = 200\n",
        common::KEY
    );
    let server = TestServer::start_with_file(bullhorn::cli::ServeArgs::default(), &file).await;
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

#[test]
fn promtool_accepts_the_rules_and_the_compose_prometheus_config() {
    check("promtool", &["check".as_ref(), "rules".as_ref(), deploy_path("prometheus/alerts.yml").as_os_str()]);
    // The config names the rules where compose mounts them; point it at the file here.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let rules = deploy_path("prometheus/alerts.yml");
    std::fs::write(
        &config,
        deploy("compose/prometheus.yml").replace("/etc/prometheus/alerts.yml", rules.to_str().unwrap()),
    )
    .unwrap();
    check("promtool", &["check".as_ref(), "config".as_ref(), config.as_os_str()]);
}

#[test]
fn nginx_accepts_the_viewer_balancer() {
    let dir = tempfile::tempdir().unwrap();
    // nginx resolves upstream names at load: the compose service names stand for loopback here.
    let site =
        (1..=3).fold(deploy("nginx/bullhorn.conf"), |conf, n| conf.replace(&format!("bullhorn{n}:"), "127.0.0.1:"));
    let main = format!(
        "error_log stderr;\npid {pid};\nevents {{}}\nhttp {{\n{site}\n}}\n",
        pid = dir.path().join("nginx.pid").display()
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, main).unwrap();
    check(
        "nginx",
        &["-t".as_ref(), "-q".as_ref(), "-p".as_ref(), dir.path().as_os_str(), "-c".as_ref(), conf.as_os_str()],
    );
    let site = deploy("nginx/bullhorn.conf");
    for directive in ["proxy_set_header Upgrade $http_upgrade;", "proxy_buffering off;", "proxy_http_version 1.1;"] {
        assert!(site.contains(directive), "{directive}");
    }
}

#[test]
fn kubernetes_manifests_validate_and_drain_before_they_go() {
    let files = ["deployment.yaml", "services.yaml", "disruption.yaml", "autoscaling.yaml"];
    let kustomization = yaml("kubernetes/kustomization.yaml");
    assert_eq!(kustomization["resources"], json!(files), "kustomization lists every manifest");
    let mut args: Vec<std::ffi::OsString> = ["-k", "1.31", "--strict", "--quiet"].map(Into::into).to_vec();
    args.extend(files.iter().map(|f| deploy_path(&format!("kubernetes/{f}")).into_os_string()));
    check("kubernetes-validate", &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());

    let deployment = yaml("kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["lifecycle"]["preStop"].is_object(), "a preStop hook");
    let env = |name: &str| {
        container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone())
    };
    assert!(env("BULLHORN_CLUSTER_NATS").unwrap().as_str().unwrap().starts_with("nats://"));
    let drain_ms: u64 = ["BULLHORN_DRAIN_WINDOW_MS", "BULLHORN_DRAIN_TIMEOUT_MS"]
        .iter()
        .map(|name| env(name).unwrap().as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    let pre_stop_ms = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap() * 1000;
    let grace_ms = pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
    assert!(grace_ms > pre_stop_ms + drain_ms, "the drain fits in the grace period");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    let ports: BTreeSet<(u64, String)> = yaml_documents("kubernetes/services.yaml")
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|service| service["spec"]["ports"].as_array().unwrap().clone())
        .map(|port| (port["port"].as_u64().unwrap(), port["protocol"].as_str().unwrap().to_owned()))
        .collect();
    for wanted in [(80, "TCP"), (4433, "UDP"), (8081, "TCP")] {
        assert!(ports.contains(&(wanted.0, wanted.1.to_owned())), "a Service for {wanted:?}");
    }
    assert_eq!(yaml("kubernetes/disruption.yaml")["spec"]["maxUnavailable"], 1);
    let hpa = yaml("kubernetes/autoscaling.yaml");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert_eq!(hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "bullhorn_connections");
}

#[test]
fn compose_runs_three_nodes_on_a_nats_cluster_with_monitoring() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    let nats: Vec<&String> = services.keys().filter(|name| name.starts_with("nats")).collect();
    let nodes: Vec<&String> = services.keys().filter(|name| name.starts_with("bullhorn")).collect();
    assert_eq!((nats.len(), nodes.len()), (3, 3));
    for name in &nats {
        let command = services[name.as_str()]["command"].as_array().unwrap();
        assert!(command.contains(&json!("-js")), "{name} runs JetStream");
        let routes = command.iter().position(|a| a == "--routes").map(|i| command[i + 1].as_str().unwrap()).unwrap();
        assert_eq!(routes.split(',').count(), 2, "{name} routes to the other two");
    }
    let nats_urls: Vec<String> = nats.iter().map(|name| format!("nats://{name}:4222")).collect();
    for name in &nodes {
        let node = &services[name.as_str()];
        assert_eq!(node["environment"]["BULLHORN_CLUSTER_NATS"], nats_urls.join(","));
        assert_eq!(node["build"]["dockerfile"], "deploy/Dockerfile");
        assert_eq!(node["ulimits"]["nofile"]["hard"], 1048576);
    }
    // Prometheus scrapes every node's admin listener and loads our rules.
    let prometheus = yaml("compose/prometheus.yml");
    let targets = &prometheus["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(targets, &json!(nodes.iter().map(|n| format!("{n}:8081")).collect::<Vec<_>>()));
    // Every file compose mounts from here exists.
    for service in services.values() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(relative) = source.strip_prefix("./") {
                assert!(deploy_path(relative).exists(), "compose mounts {source}, which is missing");
            }
        }
    }
    let grafana_mounts = services["grafana"]["volumes"].to_string();
    assert!(grafana_mounts.contains("./grafana/bullhorn-dashboard.json"));
    let nginx = deploy("nginx/bullhorn.conf");
    assert!(nodes.iter().all(|n| nginx.contains(&format!("server {n}:8080"))), "nginx balances every node");
}
