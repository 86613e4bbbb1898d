//! `storm`: broadcasts flow; then every subscriber drops and reconnects at
//! the same moment, resuming after its last seq, while broadcasts keep
//! flowing. Reports how long until all were back, the errors, and the gaps
//! the resume left (goal: none).
//!
//! With `--drain`, the storm is a node's drain instead: SIGTERM to
//! `--server-pid` (or a drain someone else starts), and its subscribers wait
//! the delays it gives and move to the next `--url`, resuming. Send the
//! broadcasts (`--admin`) through a node that stays.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{SETTLE, new_report, server_cpu};
use crate::StormArgs;
use crate::admin::{Admin, payload};
use crate::report::StormResult;
use crate::workers;

pub async fn storm(args: StormArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    let parameters = json!({
        "common": common.parameters(), "rate": args.rate, "payload": args.payload,
        "before": args.before, "after": args.after, "drain": args.drain,
    });
    let mut report = new_report("storm", common, parameters);
    report.payload_bytes = args.payload;
    let mut plans = workers::plans(common.subscribers, common.workers);
    plans.iter_mut().for_each(|plan| plan.follow_closing = args.drain);
    let mut workers = workers::spawn(common, &plans).await?;
    workers::wait_connected(&mut workers, &mut report).await?;
    let cpu_before = server_cpu(common);

    // Broadcasts at a steady rate from start to end, through the storm.
    let total = ((args.before + args.after) as f64 * args.rate).round() as u64;
    let broadcaster = {
        let (admin, rate, size) = (admin.clone(), args.rate, args.payload);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let (mut accepted, mut expected) = (0u64, 0u64);
            for n in 0..total {
                tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate)).await;
                match admin.broadcast(payload(size), n, &Default::default()).await {
                    Ok(ok) => {
                        accepted += 1;
                        expected += ok.online;
                    }
                    Err(error) => eprintln!("{error:#}"),
                }
            }
            (accepted, expected)
        })
    };
    tokio::time::sleep(Duration::from_secs(args.before)).await;
    let (reconnected, errors, millis) = if args.drain {
        if let Some(pid) = common.server_pid {
            // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
                anyhow::bail!("cannot signal the server: {}", std::io::Error::last_os_error());
            }
        }
        workers::drain_wait(&mut workers).await?
    } else {
        workers::storm(&mut workers).await?
    };
    let (accepted, expected) = broadcaster.await?;
    tokio::time::sleep(SETTLE).await;
    let online = admin.online().await?;
    report.broadcasts = accepted;
    report.server_cpu_seconds = server_cpu(common).zip(cpu_before).map(|(after, before)| after - before);
    let received = workers::collect(&mut workers, &mut report).await?;
    // Every subscriber is owed every broadcast: those sent while it was away come back by resume.
    // (After a drain to another node, what is owed is that node's: the sum of its `online`.)
    report.expected_deliveries = if args.drain { expected } else { accepted * report.subscribers_connected as u64 };
    report.storm = Some(StormResult {
        reconnected,
        reconnect_errors: errors,
        time_to_all_reconnected_ms: millis,
        server_online_after: online,
    });
    super::finish(common, report, Some(&received))
}
