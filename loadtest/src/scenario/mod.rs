//! The scenarios, each bounded in time and count: what they drive and what
//! they add to the report.

pub mod burst;
pub mod ceiling;
pub mod fanout;
pub mod idle;
pub mod storm;

use std::time::Duration;

use crate::Common;
use crate::proc_stats::cpu_seconds;
use crate::report::{Machine, Report};
use crate::workers::Received;

/// How long subscribers get to receive what is still in flight after the last broadcast.
pub const SETTLE: Duration = Duration::from_secs(3);

/// A report with what every scenario states about its setup.
pub fn new_report(scenario: &str, common: &Common, parameters: serde_json::Value) -> Report {
    Report {
        scenario: scenario.into(),
        parameters,
        machine: Machine::this(),
        transport: common.transport.clone(),
        subscribers_requested: common.subscribers,
        workers: common.workers,
        ..Default::default()
    }
}

/// The server's CPU seconds so far, when its pid was given.
pub fn server_cpu(common: &Common) -> Option<f64> {
    common.server_pid.and_then(|pid| cpu_seconds(&pid.to_string()))
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
