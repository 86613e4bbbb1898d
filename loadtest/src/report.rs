//! The JSON report (contract §6) and its human table.

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub transport: String,
    pub subscribers_requested: usize,
    pub subscribers_connected: usize,
    pub connect_errors: usize,
    pub broadcasts: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub gaps: u64,
    pub lagged: u64,
    pub deliveries_per_sec: f64,
    pub latency_us: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_baseline_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_subscriber_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_subscriber_average_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_subscriber_after_broadcast_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    pub client_cpu_seconds: f64,
    pub workers: usize,
    pub payload_bytes: usize,
    pub duration_secs: f64,
    /// Delivery options of each broadcast (`fanout`), when any was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflate: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub idempotency_keys: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl Report {
    pub fn write(&self, path: Option<&Path>) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        if let Some(path) = path {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &json)?;
            std::fs::rename(&tmp, path)?;
        }
        println!("{json}");
        self.print_table();
        Ok(())
    }

    fn print_table(&self) {
        eprintln!("\n{} ({}), {} workers", self.scenario, self.transport, self.workers);
        eprintln!(
            "  subscribers      {} of {} ({} errors)",
            self.subscribers_connected, self.subscribers_requested, self.connect_errors
        );
        if self.broadcasts > 0 {
            eprintln!("  broadcasts       {}", self.broadcasts);
            eprintln!(
                "  deliveries       {} of {} expected, {} gaps, {} lagged",
                self.deliveries, self.expected_deliveries, self.gaps, self.lagged
            );
            eprintln!("  deliveries/s     {:.0}", self.deliveries_per_sec);
            let l = &self.latency_us;
            eprintln!("  latency µs       p50 {} p90 {} p99 {} p99.9 {} max {}", l.p50, l.p90, l.p99, l.p999, l.max);
        }
        if let Some(per) = self.server_rss_per_subscriber_bytes {
            eprintln!("  server RSS/sub   {per:.0} bytes (idle, marginal: second half over first half)");
        }
        if let Some(per) = self.server_rss_per_subscriber_after_broadcast_bytes {
            eprintln!("  server RSS/sub   {per:.0} bytes (marginal, after a broadcast)");
        }
        if let Some(per) = self.server_rss_per_subscriber_average_bytes {
            eprintln!("  server RSS/sub   {per:.0} bytes (average over all, fixed costs included)");
        }
        if let Some(cpu) = self.server_cpu_seconds {
            eprintln!("  server CPU       {cpu:.2} s");
        }
        eprintln!("  client CPU       {:.2} s (the load client shares this machine's cores)", self.client_cpu_seconds);
    }
}
