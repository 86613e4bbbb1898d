//! `fanout`, and the two scenarios built on it: `slow` (some subscribers
//! stop reading: do the others notice?) and `churn` (subscribers come and go
//! during the run: does the server's `online` stay exact?).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{SETTLE, ServerWatch, broadcast_at_rate, new_report, wait_online};
use crate::admin::Admin;
use crate::report::{ChurnResult, ReachCheck, Report, SlowResult};
use crate::workers::{self, Plan};
use crate::{ChurnArgs, Common, FanoutArgs, SlowArgs};

/// One fan-out phase with the given worker plans; fills `report`.
async fn phase(
    common: &Common,
    args: &FanoutArgs,
    plans: &[Plan],
    report: &mut Report,
) -> anyhow::Result<Vec<workers::Worker>> {
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    if let Some(ms) = args.delivery.occupancy_interval_ms {
        admin.set_occupancy_interval(ms).await?;
    }
    let mut server = ServerWatch::start(common);
    let plans: Vec<Plan> = plans.iter().map(|plan| Plan { stall_ms: args.stall_ms, ..plan.clone() }).collect();
    let mut workers = workers::spawn(common, &plans).await?;
    workers::wait_connected(&mut workers, report).await?;
    server.connected(report);
    // A cluster sums `online` from reports each node sends every second: let it
    // catch up, so each 202's `online` (the deliveries owed) counts everyone.
    wait_online(&admin, report.subscribers_connected as u64).await?;
    let started = Instant::now();
    let total = (args.rate * args.duration as f64).round() as u64;
    let (accepted, expected) = broadcast_at_rate(admin, args.rate, total, args.payload, args.delivery.clone()).await?;
    report.duration_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    report.broadcasts = accepted;
    report.expected_deliveries = expected;
    report.server_cpu_seconds = server.cpu_used();
    Ok(workers)
}

/// A report for a scenario built on `fanout`, with `parameters` its arguments.
fn fanout_report(args: &FanoutArgs, scenario: &str, parameters: &impl Serialize) -> Report {
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
    let mut report = fanout_report(&args, "fanout", &args);
    let mut workers = phase(common, &args, &workers::plans(common.subscribers, common.workers), &mut report).await?;
    let received = workers::collect(&mut workers, &mut report).await?;
    drop(workers);
    if args.delivery.check_reach {
        report.reach = Some(check_reach(&Admin::new(common), report.broadcasts, report.deliveries).await?);
    }
    if args.with_ceiling {
        let ceiling = super::ceiling::measure(common, args.payload, Duration::from_secs(5), None, &mut report).await?;
        report.ceiling_ratio = Some(report.deliveries_per_sec / ceiling.writes_per_sec);
        report.ceiling = Some(ceiling);
    }
    super::finish(common, report, Some(&received))
}

/// Reads the reach of the run's `broadcasts` (the room's last ones) once each
/// is complete (or after 10 s of waiting) and adds them up against what the
/// subscribers received.
async fn check_reach(admin: &Admin, broadcasts: u64, received: u64) -> anyhow::Result<ReachCheck> {
    let last = admin.room().await?["seq"].as_u64().unwrap_or(0);
    let mut check = ReachCheck { complete: true, accounted: true, ..ReachCheck::default() };
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    for seq in last.saturating_sub(broadcasts) + 1..=last {
        let mut reach = admin.reach(seq).await?;
        while reach["complete"] != true && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reach = admin.reach(seq).await?;
        }
        let dropped =
            n(&reach["dropped"]["slow"]) + n(&reach["dropped"]["conflated"]) + n(&reach["dropped"]["expired"]);
        let (targets, delivered) = (n(&reach["targets"]), n(&reach["delivered"]));
        let (disconnected, pending) = (n(&reach["disconnected"]), n(&reach["pending"]));
        check.accounted &= targets == delivered + dropped + disconnected + pending;
        check.complete &= reach["complete"] == true;
        check.broadcasts += 1;
        check.targets += targets;
        check.delivered += delivered;
        check.dropped += dropped;
        check.disconnected += disconnected;
        check.pending += pending;
    }
    check.delivered_matches_received = check.delivered == received;
    Ok(check)
}

/// Runs the same fan-out twice on one server: all subscribers reading, then
/// with a fraction that never reads. Reports the second, with the first's
/// latency and the p99 ratio (the readers' deliveries only).
pub async fn slow(args: SlowArgs) -> anyhow::Result<()> {
    let fanout = &args.fanout;
    let common = &fanout.common;
    let mut fast = fanout_report(fanout, "slow", &args);
    let mut workers = phase(common, fanout, &workers::plans(common.subscribers, common.workers), &mut fast).await?;
    workers::collect(&mut workers, &mut fast).await?;
    drop(workers);

    let mut plans = workers::plans(common.subscribers, common.workers);
    let mut non_readers = 0;
    for plan in &mut plans {
        plan.non_readers = (plan.count as f64 * args.non_reader_fraction).round() as usize;
        non_readers += plan.non_readers;
    }
    let mut report = fanout_report(fanout, "slow", &args);
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
    let mut report = fanout_report(fanout, "churn", &args);
    let mut workers = phase(common, fanout, &plans, &mut report).await?;
    let (open, churned) = workers::pause(&mut workers).await?;
    // The server sees a close when it reads the FIN: give it a moment, bounded.
    let online = wait_online(&Admin::new(common), open as u64).await?;
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
