//! The coordinator's side of the worker processes: start them with a plan
//! each, wait until they have connected, pause them, stop them and merge
//! what they received into the report.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::Common;
use crate::report::{Latency, Report, StormResult};
use crate::worker::WorkerEvent;

pub struct Worker {
    spawned_at: std::time::Instant,
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// What one worker process is to do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub count: usize,
    pub first_index: usize,
    pub non_readers: usize,
    pub per_seq: bool,
    pub churn_per_sec: f64,
    /// Readers stop reading this long after their first broadcast (`--stall-ms`).
    pub stall_ms: u64,
    /// Plain TCP sinks (`ceiling`).
    pub raw: bool,
    /// Follow a draining node's `closing` to the next address (`storm --drain`).
    pub follow_closing: bool,
}

/// Splits `total` subscribers over `workers` processes.
pub fn plans(total: usize, workers: usize) -> Vec<Plan> {
    let workers = workers.max(1);
    let mut first_index = 0;
    (0..workers)
        .map(|i| {
            let count = total / workers + usize::from(i < total % workers);
            let plan = Plan { count, first_index, ..Plan::default() };
            first_index += count;
            plan
        })
        .collect()
}

/// `127.0.0.1,127.0.0.2` or `127.0.0.1-127.0.0.8` (IPv4 ranges), or nothing.
pub fn parse_source_ips(spec: Option<&str>) -> anyhow::Result<Vec<IpAddr>> {
    let Some(spec) = spec else { return Ok(Vec::new()) };
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((from, to)) = part.split_once('-') {
            let (from, to): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
                (from.parse().context("bad range start")?, to.parse().context("bad range end")?);
            let (from, to) = (u32::from(from), u32::from(to));
            if to < from || to - from > 65_535 {
                bail!("source range {part:?} is empty or too large");
            }
            ips.extend((from..=to).map(|n| IpAddr::from(std::net::Ipv4Addr::from(n))));
        } else {
            ips.push(part.parse().with_context(|| format!("bad source address {part:?}"))?);
        }
    }
    Ok(ips)
}

pub async fn spawn(common: &Common, plans: &[Plan]) -> anyhow::Result<Vec<Worker>> {
    spawn_to(common, plans, None).await
}

/// As [`spawn`], to `target` instead of the server when given (`ceiling`).
pub async fn spawn_to(common: &Common, plans: &[Plan], target: Option<SocketAddr>) -> anyhow::Result<Vec<Worker>> {
    // `mix`: even-numbered workers subscribe over WebSocket, odd ones over QUIC.
    let quic_for = |worker: usize| match common.transport.as_str() {
        _ if target.is_some() => false,
        "quic" | "webtransport" => true,
        "mix" => worker % 2 == 1,
        _ => false,
    };
    let first_url = common.urls.first().context("give at least one --url")?.trim_end_matches('/');
    let host = first_url.strip_prefix("ws://").context("--url must start with ws://")?.to_owned();
    let mut ws_addrs = Vec::new();
    for url in &common.urls {
        let host = url.trim_end_matches('/').strip_prefix("ws://").context("--url must start with ws://")?;
        ws_addrs.push(tokio::net::lookup_host(host).await?.next().context("--url has no address")?);
    }
    let ws_addrs = target.map_or(ws_addrs, |target| vec![target]);
    let endpoint = if common.transport == "sse" { "sse" } else { "ws" };
    let path = match common.transport.as_str() {
        "pusher" => format!("/app/{}?protocol=7&client=bullhorn-loadtest", common.pusher_key),
        _ => format!("/v1/apps/{}/{endpoint}?room={}", common.app, common.room),
    };
    let fingerprint = if (0..plans.len()).any(quic_for) {
        let text = std::fs::read_to_string(&common.fingerprint_file)
            .with_context(|| format!("cannot read {}", common.fingerprint_file.display()))?;
        Some(text.trim().to_owned())
    } else {
        None
    };
    let sources = parse_source_ips(common.source_ips.as_deref())?;
    let exe = std::env::current_exe()?;
    let mut out = Vec::with_capacity(plans.len());
    for (index, plan) in plans.iter().enumerate() {
        let quic = quic_for(index);
        let addrs = if quic { &common.quic_addrs } else { &ws_addrs };
        let rate = (common.connect_rate / plans.len() as u64).max(1);
        // `--worker-cpus`: pin the workers (taskset), e.g. away from a pinned server.
        let mut command = match &common.worker_cpus {
            Some(cpus) => {
                let mut command = tokio::process::Command::new("taskset");
                command.args(["-c", cpus]).arg(&exe);
                command
            }
            None => tokio::process::Command::new(&exe),
        };
        command.arg("worker");
        for addr in addrs {
            command.args(["--addr", &addr.to_string()]);
        }
        for ip in &sources {
            command.args(["--source-ip", &ip.to_string()]);
        }
        command
            .args(["--host", &host, "--path", &path])
            .args(["--count", &plan.count.to_string(), "--connect-rate", &rate.to_string()])
            .args(["--app", &common.app, "--room", &common.room])
            .args(["--first-index", &plan.first_index.to_string()])
            .args(["--non-readers", &plan.non_readers.to_string()])
            .args(["--churn-per-sec", &plan.churn_per_sec.to_string()])
            .args(["--stall-ms", &plan.stall_ms.to_string()])
            .args(["--seed", &common.seed.to_string()]);
        if plan.per_seq {
            command.arg("--per-seq");
        }
        if plan.raw {
            command.arg("--raw");
        }
        if plan.follow_closing {
            command.arg("--follow-closing");
        }
        if common.deflate {
            command.arg("--deflate");
        }
        if common.transport == "sse" {
            command.arg("--sse");
        }
        if common.transport == "pusher" {
            command.arg("--pusher");
        }
        if let Some(fingerprint) = fingerprint.as_ref().filter(|_| quic) {
            command.args(["--quic-fingerprint", fingerprint]);
            if common.transport == "webtransport" {
                command.arg("--webtransport");
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a worker")?;
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        out.push(Worker { spawned_at: std::time::Instant::now(), _child: child, stdin, lines });
    }
    Ok(out)
}

async fn next_event(worker: &mut Worker) -> anyhow::Result<WorkerEvent> {
    let line = worker.lines.next_line().await?.context("a worker exited early")?;
    Ok(serde_json::from_str(&line)?)
}

async fn send(workers: &mut [Worker], command: &str) -> anyhow::Result<()> {
    for worker in workers.iter_mut() {
        worker.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        worker.stdin.flush().await?;
    }
    Ok(())
}

/// Waits until every worker has tried all its connections.
pub async fn wait_connected(workers: &mut [Worker], report: &mut Report) -> anyhow::Result<()> {
    let spinner = crate::progress::spinner("connecting");
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
    spinner.finish_and_clear();
    let first_spawned = workers.iter().map(|w| w.spawned_at).min();
    report.ramp_secs += first_spawned.map_or(0.0, |at| at.elapsed().as_secs_f64());
    if report.ramp_secs > 0.0 {
        report.connects_per_sec = report.subscribers_connected as f64 / report.ramp_secs;
    }
    Ok(())
}

/// Stops churn; returns the subscribers open and the replacements made.
pub async fn pause(workers: &mut [Worker]) -> anyhow::Result<(usize, u64)> {
    send(workers, "pause").await?;
    let (mut open, mut churned) = (0, 0);
    for worker in workers.iter_mut() {
        match next_event(worker).await? {
            WorkerEvent::Paused { open: o, churned: c } => {
                open += o;
                churned += c;
            }
            other => bail!("unexpected worker event {other:?}"),
        }
    }
    Ok((open, churned))
}

/// Drops and reconnects every reader at once, in every worker at once;
/// returns the readers back, the failures, and the slowest worker's time
/// (the server's `online` is left for the caller).
pub async fn storm(workers: &mut [Worker]) -> anyhow::Result<StormResult> {
    moved(workers, "storm").await
}

/// Waits until every subscriber a draining node sent away is connected to the
/// next node; returns those back, those lost, and the slowest worker's time.
pub async fn drain_wait(workers: &mut [Worker]) -> anyhow::Result<StormResult> {
    moved(workers, "drain-wait").await
}

async fn moved(workers: &mut [Worker], command: &str) -> anyhow::Result<StormResult> {
    send(workers, command).await?;
    let mut storm = StormResult::default();
    for worker in workers.iter_mut() {
        match next_event(worker).await? {
            WorkerEvent::Stormed { reconnected, errors, millis, first_error } => {
                storm.reconnected += reconnected;
                storm.reconnect_errors += errors;
                storm.time_to_all_reconnected_ms = storm.time_to_all_reconnected_ms.max(millis);
                storm.first_reconnect_error = storm.first_reconnect_error.or(first_error);
            }
            other => bail!("unexpected worker event {other:?}"),
        }
    }
    Ok(storm)
}

/// What the workers received, merged.
pub struct Received {
    /// First and last delivery, µs since the epoch.
    pub first_us: u64,
    pub last_us: u64,
    pub latency: Histogram<u64>,
    /// (seq, receivers, slowest µs), with per-seq plans.
    pub per_seq: Vec<(u64, u64, u64)>,
    /// (second since the epoch, deliveries in it), summed over workers.
    pub timeline: Vec<(u64, u64)>,
}

/// Stops the workers and merges their counts into `report`.
pub async fn collect(workers: &mut [Worker], report: &mut Report) -> anyhow::Result<Received> {
    let mut received = Received {
        first_us: u64::MAX,
        last_us: 0,
        latency: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        per_seq: Vec::new(),
        timeline: Vec::new(),
    };
    let mut timeline = std::collections::BTreeMap::<u64, u64>::new();
    send(workers, "stop").await?;
    let mut per_seq = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for worker in workers.iter_mut() {
        match next_event(worker).await? {
            WorkerEvent::Done {
                deliveries,
                broadcast_bytes,
                gaps,
                lagged,
                first_us,
                last_us,
                latency,
                per_seq: seqs,
                timeline: seconds,
                cpu_seconds,
            } => {
                for (second, n) in seconds {
                    *timeline.entry(second).or_default() += n;
                }
                report.deliveries += deliveries;
                report.broadcast_bytes_received += broadcast_bytes;
                report.gaps += gaps;
                report.lagged += lagged;
                report.client_cpu_seconds += cpu_seconds;
                received.first_us = received.first_us.min(first_us);
                received.last_us = received.last_us.max(last_us);
                for (value, count) in latency {
                    received.latency.record_n(value, count)?;
                }
                for (seq, receivers, slowest) in seqs {
                    let entry = per_seq.entry(seq).or_default();
                    entry.0 += receivers;
                    entry.1 = entry.1.max(slowest);
                }
            }
            other => bail!("unexpected worker event {other:?}"),
        }
    }
    received.per_seq = per_seq.into_iter().map(|(seq, (n, max))| (seq, n, max)).collect();
    received.timeline = timeline.into_iter().collect();
    report.latency_us = Latency::from_histogram(&received.latency);
    if received.last_us > received.first_us {
        report.deliveries_per_sec = report.deliveries as f64 / ((received.last_us - received.first_us) as f64 / 1e6);
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_from_lists_and_ranges() {
        let ips = parse_source_ips(Some("127.0.0.1-127.0.0.3,127.0.1.9")).unwrap();
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.9"]);
        assert!(parse_source_ips(Some("127.0.0.3-127.0.0.1")).is_err());
        assert!(parse_source_ips(None).unwrap().is_empty());
    }

    #[test]
    fn plans_cover_every_subscriber_once() {
        let p = plans(10, 3);
        assert_eq!(p.iter().map(|p| p.count).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!(p.iter().map(|p| p.first_index).collect::<Vec<_>>(), [0, 4, 7]);
    }
}
