//! The JSON report (contract §6) and its human table.

use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// Every parameter of the run, as given or defaulted.
    pub parameters: Value,
    pub machine: Machine,
    pub transport: String,
    pub subscribers_requested: usize,
    pub subscribers_connected: usize,
    pub connect_errors: usize,
    /// Seconds from starting the workers until every subscriber was welcomed (or failed).
    pub ramp_secs: f64,
    /// Subscribers welcomed per second over the ramp.
    pub connects_per_sec: f64,
    pub broadcasts: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub gaps: u64,
    pub lagged: u64,
    pub deliveries_per_sec: f64,
    /// Bytes of the broadcasts the subscribers received: WebSocket frames
    /// with their headers (as compressed as they came), the messages of
    /// the other transports; divided by `deliveries`, the bytes each
    /// delivery cost before TCP/IP and TLS.
    pub broadcast_bytes_received: u64,
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
    /// `idle`: the room's `online` from the admin API with everyone connected
    /// (in a cluster, summed over the nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_online: Option<u64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<CeilingResult>,
    /// `fanout --with-ceiling`: deliveries per second over the ceiling's writes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_ratio: Option<f64>,
    /// `fanout --check-reach`: the server's reach of every broadcast against what was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<ReachCheck>,
}

/// The admin API's reach (contract §9) summed over the run's broadcasts.
#[derive(Debug, Default, Serialize)]
pub struct ReachCheck {
    pub broadcasts: u64,
    pub targets: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub disconnected: u64,
    pub pending: u64,
    /// Every broadcast's reach was complete.
    pub complete: bool,
    /// `targets = delivered + dropped + disconnected + pending` for every broadcast.
    pub accounted: bool,
    /// The sum of `delivered` is what the subscribers received.
    pub delivered_matches_received: bool,
}

/// `ceiling`: raw writes of one frame each, round-robin over the sockets.
#[derive(Debug, Default, Serialize)]
pub struct CeilingResult {
    pub frame_bytes: usize,
    pub sockets: usize,
    pub writes: u64,
    /// Writes skipped because a socket's buffer was full.
    pub would_block: u64,
    pub writes_per_sec: f64,
    pub bytes_read: u64,
    /// CPU the writer thread used per write, kernel included (µs).
    pub cpu_per_write_us: f64,
    /// With `--interval-ms`: the pause between rounds, and how long one
    /// round (a frame to every socket) took to write, median over the rounds.
    pub interval_ms: Option<u64>,
    pub round_us_median: Option<u64>,
}

/// `storm`: every subscriber dropped and reconnected at once, resuming.
#[derive(Debug, Default, Serialize)]
pub struct StormResult {
    pub reconnected: usize,
    pub reconnect_errors: usize,
    /// From the drop until the last subscriber was connected again.
    pub time_to_all_reconnected_ms: u64,
    /// Subscribers online at the server after the storm.
    pub server_online_after: u64,
    /// What the first failed reconnect said, to tell a refusal from a timeout.
    pub first_reconnect_error: Option<String>,
}

/// Where the run happened: the harness shares this machine with the server.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    /// CPUs online in the machine.
    pub cores: usize,
    /// CPUs this harness may run on (fewer when pinned with taskset).
    pub cores_allowed: usize,
    pub memory_bytes: u64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            text.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        Machine {
            // SAFETY: sysconf only reads a system value.
            cores: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1).max(1),
            cores_allowed: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: memory_kib.unwrap_or(0) * 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// `burst`: how long until the last subscriber has each broadcast.
#[derive(Debug, Default, Serialize)]
pub struct BurstResult {
    pub repeats: u64,
    /// Subscribers online when each broadcast was accepted (the fewest).
    pub online_min: u64,
    /// Subscribers that received each broadcast (the fewest).
    pub receivers_min: u64,
    /// Time from the request until the last receiver had it, over the repeats.
    pub p100_us_min: u64,
    pub p100_us_median: u64,
    pub p100_us_max: u64,
}

/// `slow`: the readers' latency with some subscribers not reading, against all reading.
#[derive(Debug, Default, Serialize)]
pub struct SlowResult {
    pub non_readers: usize,
    pub all_fast_latency_us: Latency,
    /// p99 with non-readers over p99 without (goal: at most 1.5).
    pub p99_ratio: f64,
}

/// `soak`: the server's memory and open files over a long steady run.
#[derive(Debug, Default, Serialize)]
pub struct SoakResult {
    /// `[seconds since start, RSS bytes, open files]`, every `sample_secs`.
    pub samples: Vec<(u64, u64, u64)>,
    pub rss_at_warmup_end_bytes: u64,
    pub rss_at_end_bytes: u64,
    /// Growth from the end of warm-up to the end of the run (goal: under 5%).
    pub rss_growth_after_warmup: f64,
    /// The largest RSS after warm-up over the RSS at its end.
    pub rss_peak_over_warmup: f64,
    pub open_files_before: u64,
    pub open_files_after: u64,
    pub churned: u64,
    pub non_readers: usize,
}

/// `churn`: subscribers replaced during the run, and whether `online` stayed exact.
#[derive(Debug, Default, Serialize)]
pub struct ChurnResult {
    pub churn_per_sec: f64,
    pub churned: u64,
    pub open_at_end: usize,
    pub server_online_at_end: u64,
    pub online_exact: bool,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
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
        eprintln!("  ramp             {:.1} s, {:.0} connects/s", self.ramp_secs, self.connects_per_sec);
        if self.broadcasts > 0 {
            eprintln!("  broadcasts       {}", self.broadcasts);
            eprintln!(
                "  deliveries       {} of {} expected, {} gaps, {} lagged",
                self.deliveries, self.expected_deliveries, self.gaps, self.lagged
            );
            eprintln!("  deliveries/s     {:.0}", self.deliveries_per_sec);
            if self.deliveries > 0 {
                eprintln!("  bytes/delivery   {:.1}", self.broadcast_bytes_received as f64 / self.deliveries as f64);
            }
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
        if let Some(b) = &self.burst {
            eprintln!(
                "  burst p100 µs    min {} median {} max {} over {} broadcasts ({} of {} received each, at least)",
                b.p100_us_min, b.p100_us_median, b.p100_us_max, b.repeats, b.receivers_min, b.online_min
            );
        }
        if let Some(s) = &self.slow {
            eprintln!(
                "  slow             {} non-readers; readers' p99 {} µs vs {} µs all fast: {:.2}×",
                s.non_readers, self.latency_us.p99, s.all_fast_latency_us.p99, s.p99_ratio
            );
        }
        if let Some(c) = &self.churn {
            eprintln!(
                "  churn            {} replaced at {}/s; open {} vs server online {}: {}",
                c.churned,
                c.churn_per_sec,
                c.open_at_end,
                c.server_online_at_end,
                if c.online_exact { "exact" } else { "DIFFERENT" }
            );
        }
        if let Some(st) = &self.storm {
            eprintln!(
                "  storm            {} back in {} ms, {} errors, server online after {}; gaps across the resume: {}",
                st.reconnected, st.time_to_all_reconnected_ms, st.reconnect_errors, st.server_online_after, self.gaps
            );
            if let Some(error) = &st.first_reconnect_error {
                eprintln!("  first reconnect error: {error}");
            }
        }
        if let Some(c) = &self.ceiling {
            eprintln!(
                "  ceiling          {:.0} writes/s of {} bytes over {} sockets ({} would-block), {:.2} µs CPU per write",
                c.writes_per_sec, c.frame_bytes, c.sockets, c.would_block, c.cpu_per_write_us
            );
            if let (Some(interval), Some(round)) = (c.interval_ms, c.round_us_median) {
                eprintln!("  ceiling rounds   one every {interval} ms, each written in {round} µs (median)");
            }
        }
        if let Some(ratio) = self.ceiling_ratio {
            eprintln!("  vs ceiling       {ratio:.2}× the machine's one-write-per-delivery rate");
        }
        if let Some(r) = &self.reach {
            let verdict = |ok: bool| if ok { "yes" } else { "NO" };
            eprintln!(
                "  reach            {} broadcasts: targets {} = delivered {} + dropped {} + disconnected {} + pending {}; \
                 accounted {}, complete {}, delivered = received {}",
                r.broadcasts,
                r.targets,
                r.delivered,
                r.dropped,
                r.disconnected,
                r.pending,
                verdict(r.accounted),
                verdict(r.complete),
                verdict(r.delivered_matches_received)
            );
        }
        if let Some(cpu) = self.server_cpu_seconds {
            eprintln!("  server CPU       {cpu:.2} s");
        }
        eprintln!("  client CPU       {:.2} s (the load client shares this machine's cores)", self.client_cpu_seconds);
    }
}
