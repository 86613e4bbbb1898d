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

use super::{SETTLE, ServerWatch, broadcast_at_rate, new_report};
use crate::StormArgs;
use crate::admin::Admin;
use crate::workers;

pub async fn storm(args: StormArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let admin = Arc::new(Admin::new(common));
    admin.ensure_room().await?;
    let mut report = new_report("storm", common, &args);
    report.payload_bytes = args.payload;
    let mut plans = workers::plans(common.subscribers, common.workers);
    plans.iter_mut().for_each(|plan| plan.follow_closing = args.drain);
    let mut server = ServerWatch::start(common);
    let mut workers = workers::spawn(common, &plans).await?;
    workers::wait_connected(&mut workers, &mut report).await?;
    server.connected(&mut report);

    // Broadcasts at a steady rate from start to end, through the storm.
    let total = ((args.before + args.after) as f64 * args.rate).round() as u64;
    let broadcaster =
        tokio::spawn(broadcast_at_rate(admin.clone(), args.rate, total, args.payload, Default::default()));
    tokio::time::sleep(Duration::from_secs(args.before)).await;
    let mut storm = if args.drain {
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
    let (accepted, expected) = broadcaster.await??;
    tokio::time::sleep(SETTLE).await;
    let online = admin.online().await?;
    report.broadcasts = accepted;
    report.server_cpu_seconds = server.cpu_used();
    let received = workers::collect(&mut workers, &mut report).await?;
    // Every subscriber is owed every broadcast: those sent while it was away come back by resume.
    // (After a drain to another node, what is owed is that node's: the sum of its `online`.)
    report.expected_deliveries = if args.drain { expected } else { accepted * report.subscribers_connected as u64 };
    storm.server_online_after = online;
    report.storm = Some(storm);
    super::finish(common, report, Some(&received))
}
