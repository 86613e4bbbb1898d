//! `burst`: one broadcast to every subscriber, and the time until the last
//! one has it (p100), repeated. Broadcasts are spaced so they do not overlap.

use std::time::Duration;

use super::{SETTLE, ServerWatch, new_report};
use crate::BurstArgs;
use crate::admin::{Admin, payload};
use crate::report::BurstResult;
use crate::workers;

pub async fn burst(args: BurstArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Admin::new(common);
    admin.ensure_room().await?;
    let mut report = new_report("burst", common, &args);
    report.payload_bytes = args.payload;
    let mut plans = workers::plans(common.subscribers, common.workers);
    plans.iter_mut().for_each(|plan| plan.per_seq = true);
    let mut server = ServerWatch::start(common);
    let mut workers = workers::spawn(common, &plans).await?;
    workers::wait_connected(&mut workers, &mut report).await?;
    server.connected(&mut report);
    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(args.repeat, "bursts");
    for n in 0..args.repeat {
        bar.inc(1);
        accepted.push(admin.broadcast(payload(args.payload), n, &Default::default()).await?);
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    bar.finish_and_clear();
    report.duration_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    report.server_cpu_seconds = server.cpu_used();
    report.broadcasts = accepted.len() as u64;
    report.expected_deliveries = accepted.iter().map(|a| a.online).sum();
    let received = workers::collect(&mut workers, &mut report).await?;
    let mut p100: Vec<u64> = Vec::new();
    let mut receivers_min = u64::MAX;
    for a in &accepted {
        let (receivers, slowest) =
            received.per_seq.iter().find(|(seq, ..)| *seq == a.seq).map_or((0, 0), |(_, n, max)| (*n, *max));
        receivers_min = receivers_min.min(receivers);
        p100.push(slowest);
    }
    p100.sort_unstable();
    report.burst = Some(BurstResult {
        repeats: accepted.len() as u64,
        online_min: accepted.iter().map(|a| a.online).min().unwrap_or(0),
        receivers_min: if accepted.is_empty() { 0 } else { receivers_min },
        p100_us_min: p100.first().copied().unwrap_or(0),
        p100_us_median: p100.get(p100.len() / 2).copied().unwrap_or(0),
        p100_us_max: p100.last().copied().unwrap_or(0),
    });
    super::finish(common, report, Some(&received))
}
