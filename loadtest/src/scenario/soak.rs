//! `soak`: churn, broadcasts and non-reading subscribers at a steady load for
//! a long time (30 minutes for the figure in docs/benchmarks.md), sampling the
//! server's memory and open files all along. A server that leaks shows it as
//! memory growing after warm-up, or as open files not back to where they
//! started once every subscriber has gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{SETTLE, ServerWatch, broadcast_at_rate, new_report};
use crate::SoakArgs;
use crate::admin::Admin;
use crate::proc_stats::{open_files, rss_bytes};
use crate::report::SoakResult;
use crate::workers;

/// How long the server gets to close every socket once the subscribers are gone.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

pub async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let fanout = &args.fanout;
    let common = &fanout.common;
    let pid = common.server_pid.context("soak samples the server: give --server-pid")?;
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    let mut report = new_report("soak", common, &args);
    report.payload_bytes = fanout.payload;
    let open_files_before = open_files(pid).context("cannot read the server's open files")?;
    let mut server = ServerWatch::start(common);

    let mut plans = workers::plans(common.subscribers, common.workers);
    let (per_worker_churn, mut non_readers) = (args.churn_per_sec / plans.len() as f64, 0);
    for plan in &mut plans {
        plan.churn_per_sec = per_worker_churn;
        plan.non_readers = (plan.count as f64 * args.non_reader_fraction).round() as usize;
        non_readers += plan.non_readers;
    }
    let mut workers = workers::spawn(common, &plans).await?;
    workers::wait_connected(&mut workers, &mut report).await?;
    server.connected(&mut report);

    let started = Instant::now();
    let total = (fanout.rate * fanout.duration as f64).round() as u64;
    let broadcasts =
        tokio::spawn(broadcast_at_rate(admin, fanout.rate, total, fanout.payload, fanout.delivery.clone()));
    let mut samples = Vec::new();
    let mut every = tokio::time::interval(Duration::from_secs(args.sample_secs.max(1)));
    while !broadcasts.is_finished() {
        every.tick().await;
        if let (Some(rss), Some(files)) = (rss_bytes(pid), open_files(pid)) {
            samples.push((started.elapsed().as_secs(), rss, files));
        }
    }
    let (accepted, expected) = broadcasts.await??;
    report.duration_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    report.broadcasts = accepted;
    report.expected_deliveries = expected;
    report.server_cpu_seconds = server.cpu_used();
    let rss_at_end = rss_bytes(pid).unwrap_or(0);

    let (_, churned) = workers::pause(&mut workers).await?;
    let received = workers::collect(&mut workers, &mut report).await?;
    drop(workers);
    // Every subscriber is gone: the server's open files go back to the baseline once it has read each close.
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut open_files_after = open_files(pid).unwrap_or(u64::MAX);
    while open_files_after > open_files_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        open_files_after = open_files(pid).unwrap_or(u64::MAX);
    }

    let after_warmup: Vec<u64> =
        samples.iter().filter(|(t, _, _)| *t >= args.warmup_secs).map(|(_, rss, _)| *rss).collect();
    let rss_at_warmup_end = after_warmup.first().copied().unwrap_or(rss_at_end);
    let peak = after_warmup.iter().copied().max().unwrap_or(rss_at_end);
    report.soak = Some(SoakResult {
        rss_at_warmup_end_bytes: rss_at_warmup_end,
        rss_at_end_bytes: rss_at_end,
        rss_growth_after_warmup: rss_at_end as f64 / rss_at_warmup_end.max(1) as f64 - 1.0,
        rss_peak_over_warmup: peak as f64 / rss_at_warmup_end.max(1) as f64,
        open_files_before,
        open_files_after,
        churned,
        non_readers,
        samples,
    });
    super::finish(common, report, Some(&received))
}
