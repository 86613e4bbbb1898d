//! `fanout`, and the two scenarios built on it: `slow` (some subscribers
//! stop reading: do the others notice?) and `churn` (subscribers come and go
//! during the run: does the server's `online` stay exact?).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{SETTLE, new_report, server_cpu};
use crate::admin::{Admin, payload};
use crate::proc_stats::rss_bytes;
use crate::report::{ChurnResult, Report, SlowResult};
use crate::workers::{self, Plan};
use crate::{ChurnArgs, Common, FanoutArgs, SlowArgs};

/// Sends `rate × duration` broadcasts on schedule (at most 64 in flight);
/// returns how many were accepted and the sum of their `online` counts.
async fn drive(admin: &Arc<Admin>, args: &FanoutArgs) -> anyhow::Result<(u64, u64, f64)> {
    let started = Instant::now();
    let total = (args.rate * args.duration as f64).round() as u64;
    let (expected, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let bar = crate::progress::bar(total, "broadcasts");
    for i in 0..total {
        bar.inc(1);
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / args.rate)).into()).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (admin, expected, accepted, options) =
            (admin.clone(), expected.clone(), accepted.clone(), args.delivery.clone());
        let data = payload(args.payload);
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
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    Ok((accepted.load(Ordering::Relaxed), expected.load(Ordering::Relaxed), elapsed))
}

/// Server memory added per connected subscriber (fixed costs included).
pub fn per_subscriber(before: Option<u64>, after: Option<u64>, subscribers: usize) -> Option<f64> {
    (subscribers > 0).then_some(())?;
    Some(after?.saturating_sub(before?) as f64 / subscribers as f64)
}

fn parameters(args: &FanoutArgs) -> serde_json::Value {
    json!({
        "common": args.common.parameters(),
        "rate": args.rate, "payload": args.payload, "duration": args.duration,
        "priority": args.delivery.priority, "conflate": args.delivery.conflate,
        "idempotency_keys": args.delivery.idempotency_keys,
    })
}

/// One fan-out phase with the given worker plans; fills `report`.
async fn phase(
    common: &Common,
    args: &FanoutArgs,
    plans: &[Plan],
    report: &mut Report,
) -> anyhow::Result<Vec<workers::Worker>> {
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    let baseline = common.server_pid.and_then(rss_bytes);
    let mut workers = workers::spawn(common, plans).await?;
    workers::wait_connected(&mut workers, report).await?;
    report.server_rss_bytes = common.server_pid.and_then(rss_bytes);
    report.server_rss_baseline_bytes = baseline;
    report.server_rss_per_subscriber_bytes =
        per_subscriber(baseline, report.server_rss_bytes, report.subscribers_connected);
    let cpu_before = server_cpu(common);
    let (accepted, expected, elapsed) = drive(&admin, args).await?;
    report.broadcasts = accepted;
    report.expected_deliveries = expected;
    report.duration_secs = elapsed;
    report.server_cpu_seconds = server_cpu(common).zip(cpu_before).map(|(after, before)| after - before);
    Ok(workers)
}

fn fanout_report(args: &FanoutArgs, scenario: &str, extra: serde_json::Value) -> Report {
    let mut parameters = parameters(args);
    parameters["scenario"] = extra;
    Report {
        payload_bytes: args.payload,
        priority: args.delivery.priority.clone(),
        conflate: args.delivery.conflate.clone(),
        idempotency_keys: args.delivery.idempotency_keys,
        ..new_report(scenario, &args.common, parameters)
    }
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let mut report = fanout_report(&args, "fanout", json!({}));
    let mut workers = phase(common, &args, &workers::plans(common.subscribers, common.workers), &mut report).await?;
    let received = workers::collect(&mut workers, &mut report).await?;
    drop(workers);
    if args.with_ceiling {
        let ceiling = super::ceiling::measure(common, args.payload, Duration::from_secs(5), &mut report).await?;
        report.ceiling_ratio = Some(report.deliveries_per_sec / ceiling.writes_per_sec);
        report.ceiling = Some(ceiling);
    }
    super::finish(common, report, Some(&received))
}

/// Runs the same fan-out twice on one server: all subscribers reading, then
/// with a fraction that never reads. Reports the second, with the first's
/// latency and the p99 ratio (the readers' deliveries only).
pub async fn slow(args: SlowArgs) -> anyhow::Result<()> {
    let fanout = &args.fanout;
    let common = &fanout.common;
    let mut fast = fanout_report(fanout, "slow", json!({}));
    let mut workers = phase(common, fanout, &workers::plans(common.subscribers, common.workers), &mut fast).await?;
    workers::collect(&mut workers, &mut fast).await?;
    drop(workers);

    let mut plans = workers::plans(common.subscribers, common.workers);
    let mut non_readers = 0;
    for plan in &mut plans {
        plan.non_readers = (plan.count as f64 * args.non_reader_fraction).round() as usize;
        non_readers += plan.non_readers;
    }
    let mut report = fanout_report(fanout, "slow", json!({"non_reader_fraction": args.non_reader_fraction}));
    let mut workers = phase(common, fanout, &plans, &mut report).await?;
    let received = workers::collect(&mut workers, &mut report).await?;
    // Only readers can receive: what was owed to them.
    report.expected_deliveries = report.broadcasts * (report.subscribers_connected - non_readers) as u64;
    let p99_ratio = report.latency_us.p99 as f64 / fast.latency_us.p99.max(1) as f64;
    report.slow = Some(SlowResult { non_readers, all_fast_latency_us: fast.latency_us, p99_ratio });
    super::finish(common, report, Some(&received))
}

/// A fan-out while workers close and replace subscribers at a rate; then
/// compares the subscribers open with the server's `online` count.
pub async fn churn(args: ChurnArgs) -> anyhow::Result<()> {
    let fanout = &args.fanout;
    let common = &fanout.common;
    let mut plans = workers::plans(common.subscribers, common.workers);
    let per_worker = args.churn_per_sec / plans.len() as f64;
    for plan in &mut plans {
        plan.churn_per_sec = per_worker;
    }
    let mut report = fanout_report(fanout, "churn", json!({"churn_per_sec": args.churn_per_sec}));
    let mut workers = phase(common, fanout, &plans, &mut report).await?;
    let (open, churned) = workers::pause(&mut workers).await?;
    // The server sees a close when it reads the FIN: give it a moment, bounded.
    let admin = Admin::new(common);
    let mut online = admin.online().await?;
    for _ in 0..50 {
        if online == open as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        online = admin.online().await?;
    }
    let received = workers::collect(&mut workers, &mut report).await?;
    report.churn = Some(ChurnResult {
        churn_per_sec: args.churn_per_sec,
        churned,
        open_at_end: open,
        server_online_at_end: online,
        online_exact: online == open as u64,
    });
    super::finish(common, report, Some(&received))
}
