//! The scenarios, each bounded in time and count: what they drive and what
//! they add to the report.

pub mod burst;
pub mod ceiling;
pub mod fanout;
pub mod idle;
pub mod soak;
pub mod storm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admin::{Admin, payload};
use crate::proc_stats::{cpu_seconds, rss_bytes};
use crate::report::{Machine, Report};
use crate::workers::Received;
use crate::{Common, DeliveryArgs};

/// How long subscribers get to receive what is still in flight after the last broadcast.
pub const SETTLE: Duration = Duration::from_secs(3);

/// A report with what every scenario states about its setup; `parameters`
/// are the scenario's arguments, as given or defaulted.
pub fn new_report(scenario: &str, common: &Common, parameters: &impl Serialize) -> Report {
    Report {
        scenario: scenario.into(),
        parameters: serde_json::to_value(parameters).expect("arguments serialize"),
        machine: Machine::this(),
        transport: common.transport.clone(),
        subscribers_requested: common.subscribers,
        workers: common.workers,
        ..Default::default()
    }
}

/// The server's memory and CPU around a run, read from /proc when
/// `--server-pid` was given.
pub struct ServerWatch {
    pid: Option<u32>,
    rss_before: Option<u64>,
    cpu_from: Option<f64>,
}

impl ServerWatch {
    /// Before any subscriber connects: the baseline memory.
    pub fn start(common: &Common) -> ServerWatch {
        let pid = common.server_pid;
        ServerWatch { pid, rss_before: pid.and_then(rss_bytes), cpu_from: None }
    }

    /// Once the subscribers are connected: memory now and per subscriber
    /// (fixed costs included); CPU is counted from here.
    pub fn connected(&mut self, report: &mut Report) {
        report.server_rss_baseline_bytes = self.rss_before;
        report.server_rss_bytes = self.pid.and_then(rss_bytes);
        let connected = report.subscribers_connected;
        report.server_rss_per_subscriber_bytes = match (self.rss_before, report.server_rss_bytes) {
            (Some(before), Some(now)) if connected > 0 => Some(now.saturating_sub(before) as f64 / connected as f64),
            _ => None,
        };
        self.cpu_from = self.cpu();
    }

    /// The server's CPU seconds since [`ServerWatch::connected`].
    pub fn cpu_used(&self) -> Option<f64> {
        Some(self.cpu()? - self.cpu_from?)
    }

    fn cpu(&self) -> Option<f64> {
        self.pid.and_then(|pid| cpu_seconds(&pid.to_string()))
    }
}

/// Sends `total` broadcasts of `size` bytes at `rate` per second, on
/// schedule (at most 64 requests in flight); returns how many were accepted
/// and the sum of their `online` counts (the deliveries owed).
pub async fn broadcast_at_rate(
    admin: Arc<Admin>,
    rate: f64,
    total: u64,
    size: usize,
    options: DeliveryArgs,
) -> anyhow::Result<(u64, u64)> {
    let template = options.payload_json.as_deref().map(crate::admin::read_template).transpose()?;
    let started = Instant::now();
    let (expected, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let bar = crate::progress::bar(total, "broadcasts");
    for i in 0..total {
        bar.inc(1);
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (admin, expected, accepted, options) = (admin.clone(), expected.clone(), accepted.clone(), options.clone());
        let data = template.as_ref().map_or_else(|| payload(size), crate::admin::templated);
        tasks.spawn(async move {
            let _permit = permit;
            match admin.broadcast(data, i, &options).await {
                Ok(ok) => {
                    expected.fetch_add(ok.online, Ordering::Relaxed);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => eprintln!("{error:#}"),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    Ok((accepted.load(Ordering::Relaxed), expected.load(Ordering::Relaxed)))
}

/// Ends a run: adds this process's CPU time, draws the chart when asked,
/// writes the report.
pub fn finish(common: &Common, mut report: Report, received: Option<&Received>) -> anyhow::Result<()> {
    report.client_cpu_seconds += cpu_seconds("self").unwrap_or(0.0);
    if let (Some(path), Some(received)) = (&common.chart, received) {
        let title = format!("{} · {} {} subscribers", report.scenario, report.subscribers_connected, report.transport);
        crate::chart::write(path, &title, &received.timeline, &received.latency)?;
    }
    report.write(common.report.as_deref())
}

/// Polls the room's `online` until it is `wanted`, for at most 5 s; returns the last count.
pub async fn wait_online(admin: &Admin, wanted: u64) -> anyhow::Result<u64> {
    let mut online = admin.online().await?;
    for _ in 0..50 {
        if online == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        online = admin.online().await?;
    }
    Ok(online)
}
