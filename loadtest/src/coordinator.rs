//! The coordinator: start workers, drive broadcasts, read the server's
//! memory, merge results into one report.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::proc_stats::{cpu_seconds, rss_bytes};
use crate::report::{Latency, Report};
use crate::worker::WorkerEvent;
use crate::ws_client::now_us;
use crate::{Common, DeliveryArgs, FanoutArgs, IdleArgs};

/// How long subscribers get to receive what is still in flight after the last broadcast.
const SETTLE: Duration = Duration::from_secs(3);

struct Worker {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
    app: String,
    room: String,
}

impl Admin {
    fn new(common: &Common) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: common.admin.trim_end_matches('/').to_owned(),
            key: common.key.clone(),
            app: common.app.clone(),
            room: common.room.clone(),
        }
    }

    async fn ensure_room(&self) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/v1/apps/{}/rooms", self.base, self.app))
            .bearer_auth(&self.key)
            .json(&json!({"room": self.room}))
            .send()
            .await
            .context("cannot reach the admin API")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() || body["error"]["code"] == "room_exists" {
            Ok(())
        } else {
            bail!("cannot create room {}: {status} {body}", self.room)
        }
    }

    /// Sends broadcast number `n`; returns the `online` count it was accepted with.
    async fn broadcast(&self, data: Value, n: u64, options: &DeliveryArgs) -> anyhow::Result<u64> {
        let mut body = json!({"data": data});
        if let Some(priority) = &options.priority {
            body["priority"] = json!(priority);
        }
        if let Some(conflate) = &options.conflate {
            body["conflate"] = json!(conflate.replace("{n}", &n.to_string()));
        }
        let mut request = self
            .http
            .post(format!("{}/v1/apps/{}/rooms/{}/broadcast", self.base, self.app, self.room))
            .bearer_auth(&self.key)
            .json(&body);
        if options.idempotency_keys {
            request = request.header("Idempotency-Key", format!("loadtest-{}-{n}", std::process::id()));
        }
        let resp = request.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status.as_u16() != 202 {
            bail!("broadcast refused: {status} {body}");
        }
        Ok(body["online"].as_u64().unwrap_or(0))
    }
}

/// Splits `total` subscribers over `workers` processes.
fn shares(total: usize, workers: usize) -> Vec<usize> {
    let workers = workers.max(1);
    (0..workers).map(|i| total / workers + usize::from(i < total % workers)).collect()
}

async fn spawn_workers(common: &Common, counts: &[usize]) -> anyhow::Result<Vec<Worker>> {
    let url = common.url.trim_end_matches('/');
    let host = url.strip_prefix("ws://").context("--url must start with ws://")?;
    let addr = tokio::net::lookup_host(host).await?.next().context("--url has no address")?;
    let path = format!("/v1/apps/{}/ws?room={}", common.app, common.room);
    let exe = std::env::current_exe()?;
    let quic = common.transport == "quic";
    let fingerprint = if quic {
        let text = std::fs::read_to_string(&common.fingerprint_file)
            .with_context(|| format!("cannot read {}", common.fingerprint_file.display()))?;
        Some(text.trim().to_owned())
    } else {
        None
    };
    let addr = if quic { common.quic_addr } else { addr };
    let mut out = Vec::with_capacity(counts.len());
    for &count in counts {
        let rate = (common.connect_rate / counts.len() as u64).max(1);
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(["worker", "--addr", &addr.to_string(), "--host", host, "--path", &path])
            .args(["--count", &count.to_string(), "--connect-rate", &rate.to_string()])
            .args(["--app", &common.app, "--room", &common.room]);
        if let Some(fingerprint) = &fingerprint {
            command.args(["--quic-fingerprint", fingerprint]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker")?;
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        out.push(Worker { _child: child, stdin, lines });
    }
    Ok(out)
}

async fn next_event(worker: &mut Worker) -> anyhow::Result<WorkerEvent> {
    let line = worker.lines.next_line().await?.context("a worker exited early")?;
    Ok(serde_json::from_str(&line)?)
}

/// Waits until every worker has tried all its connections.
async fn wait_connected(workers: &mut [Worker], report: &mut Report) -> anyhow::Result<()> {
    for worker in workers.iter_mut() {
        match next_event(worker).await? {
            WorkerEvent::Connected { connected, errors, first_error } => {
                report.subscribers_connected += connected;
                report.connect_errors += errors;
                if let Some(error) = first_error {
                    eprintln!("worker connect error (first of {errors}): {error}");
                }
            }
            other => bail!("unexpected worker event {other:?}"),
        }
    }
    Ok(())
}

/// Stops the workers and merges their counts into `report`.
async fn collect(workers: &mut [Worker], report: &mut Report) -> anyhow::Result<(u64, u64)> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut first, mut last) = (u64::MAX, 0);
    for worker in workers.iter_mut() {
        worker.stdin.write_all(b"stop\n").await?;
        worker.stdin.flush().await?;
    }
    for worker in workers.iter_mut() {
        match next_event(worker).await? {
            WorkerEvent::Done { deliveries, gaps, lagged, first_us, last_us, latency: values, cpu_seconds } => {
                report.deliveries += deliveries;
                report.gaps += gaps;
                report.lagged += lagged;
                report.client_cpu_seconds += cpu_seconds;
                first = first.min(first_us);
                last = last.max(last_us);
                for (value, count) in values {
                    latency.record_n(value, count)?;
                }
            }
            other => bail!("unexpected worker event {other:?}"),
        }
    }
    report.latency_us = Latency::from_histogram(&latency);
    Ok((first, last))
}

/// A report with what every scenario states about its setup.
fn new_report(scenario: &str, common: &Common) -> Report {
    Report {
        scenario: scenario.into(),
        transport: common.transport.clone(),
        subscribers_requested: common.subscribers,
        workers: common.workers,
        ..Default::default()
    }
}

/// `data` of exactly `size` bytes carrying the send time in µs.
fn payload(size: usize) -> Value {
    let stamp = now_us();
    let bare = format!(r#"{{"t":{stamp},"p":""}}"#).len();
    json!({"t": stamp, "p": "x".repeat(size.saturating_sub(bare))})
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    let mut report = Report {
        payload_bytes: args.payload,
        priority: args.delivery.priority.clone(),
        conflate: args.delivery.conflate.clone(),
        idempotency_keys: args.delivery.idempotency_keys,
        ..new_report("fanout", common)
    };
    let mut workers = spawn_workers(common, &shares(common.subscribers, common.workers)).await?;
    wait_connected(&mut workers, &mut report).await?;
    report.server_rss_bytes = common.server_pid.and_then(rss_bytes);
    let server_cpu_before = common.server_pid.and_then(|p| cpu_seconds(&p.to_string()));

    let started = Instant::now();
    let total = (args.rate * args.duration as f64).round() as u64;
    let expected = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (admin, expected, accepted, data, options) =
            (admin.clone(), expected.clone(), accepted.clone(), payload(args.payload), args.delivery.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match admin.broadcast(data, i, &options).await {
                Ok(online) => {
                    expected.fetch_add(online, Ordering::Relaxed);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => eprintln!("{error:#}"),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    report.duration_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;

    report.broadcasts = accepted.load(Ordering::Relaxed);
    report.expected_deliveries = expected.load(Ordering::Relaxed);
    let (first, last) = collect(&mut workers, &mut report).await?;
    if last > first {
        report.deliveries_per_sec = report.deliveries as f64 / ((last - first) as f64 / 1e6);
    }
    report.server_cpu_seconds = common.server_pid.and_then(|p| Some(cpu_seconds(&p.to_string())? - server_cpu_before?));
    report.client_cpu_seconds += cpu_seconds("self").unwrap_or(0.0);
    report.write(common.report.as_deref())
}

/// Memory per subscriber is measured as a slope: RSS with all subscribers
/// minus RSS with half of them, over the other half. That leaves out what the
/// server allocates once (thread arenas, slabs, metrics); the plain average
/// over all subscribers is reported beside it.
pub async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Admin::new(common);
    admin.ensure_room().await?;
    let mut report = new_report("idle", common);
    let pid = common.server_pid;
    let baseline = pid.and_then(rss_bytes);
    report.server_rss_baseline_bytes = baseline;
    let started = Instant::now();
    let counts = shares(common.subscribers, common.workers.max(2));
    let (first, second) = counts.split_at(counts.len() / 2);
    let mut workers = spawn_workers(common, first).await?;
    wait_connected(&mut workers, &mut report).await?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let half = (report.subscribers_connected, pid.and_then(rss_bytes));
    let mut rest = spawn_workers(common, second).await?;
    wait_connected(&mut rest, &mut report).await?;
    workers.append(&mut rest);
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let full = (report.subscribers_connected, pid.and_then(rss_bytes));
    report.server_rss_bytes = full.1;
    let slope = |a: (usize, Option<u64>), b: (usize, Option<u64>)| -> Option<f64> {
        let added = b.0.checked_sub(a.0).filter(|n| *n > 0)?;
        Some(b.1?.saturating_sub(a.1?) as f64 / added as f64)
    };
    report.server_rss_per_subscriber_bytes = slope(half, full);
    report.server_rss_per_subscriber_average_bytes = slope((0, baseline), full);
    // One broadcast warms every queue; memory after it is the steady idle state.
    report.expected_deliveries = admin.broadcast(payload(100), 0, &DeliveryArgs::default()).await?;
    report.broadcasts = 1;
    tokio::time::sleep(SETTLE).await;
    report.server_rss_per_subscriber_after_broadcast_bytes =
        slope(half, (full.0, pid.and_then(rss_bytes))).map(|after| after.max(0.0));
    collect(&mut workers, &mut report).await?;
    report.duration_secs = started.elapsed().as_secs_f64();
    report.client_cpu_seconds += cpu_seconds("self").unwrap_or(0.0);
    report.write(common.report.as_deref())
}
