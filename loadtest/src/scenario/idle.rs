//! `idle`: ramp to N subscribers, hold, and report the server's memory per
//! subscriber.

use std::time::{Duration, Instant};

use super::{SETTLE, new_report};
use crate::IdleArgs;
use crate::admin::{Admin, payload};
use crate::proc_stats::rss_bytes;
use crate::workers;

/// Memory per subscriber is measured as a slope: RSS with all subscribers
/// minus RSS with half of them, over the other half. That leaves out what the
/// server allocates once (thread arenas, slabs, metrics); the plain average
/// over all subscribers is reported beside it.
pub async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Admin::new(common);
    admin.ensure_room().await?;
    let mut report = new_report("idle", common, &args);
    let pid = common.server_pid;
    let baseline = pid.and_then(rss_bytes);
    report.server_rss_baseline_bytes = baseline;
    let started = Instant::now();
    let plans = workers::plans(common.subscribers, common.workers.max(2));
    let (first, second) = plans.split_at(plans.len() / 2);
    let mut workers = workers::spawn(common, first).await?;
    workers::wait_connected(&mut workers, &mut report).await?;
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let half = (report.subscribers_connected, pid.and_then(rss_bytes));
    let mut rest = workers::spawn(common, second).await?;
    workers::wait_connected(&mut rest, &mut report).await?;
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
    report.server_online = Some(super::wait_online(&admin, report.subscribers_connected as u64).await?);
    // One broadcast warms every queue; memory after it is the steady idle state.
    report.expected_deliveries = admin.broadcast(payload(100), 0, &Default::default()).await?.online;
    report.broadcasts = 1;
    tokio::time::sleep(SETTLE).await;
    report.server_rss_per_subscriber_after_broadcast_bytes =
        slope(half, (full.0, pid.and_then(rss_bytes))).map(|after| after.max(0.0));
    let received = workers::collect(&mut workers, &mut report).await?;
    report.duration_secs = started.elapsed().as_secs_f64();
    super::finish(common, report, Some(&received))
}
