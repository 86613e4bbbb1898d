//! A worker process: opens its share of subscribers at a paced rate, tells
//! the coordinator once they are connected, counts what arrives, and reports
//! on `stop` (JSON lines on stdout and stdin).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;

use crate::ws_client::{self, Stats};

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub host: String,
    #[arg(long)]
    pub path: String,
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub connect_rate: u64,
    /// Subscribe over QUIC to `--addr`, pinning this certificate fingerprint.
    #[arg(long)]
    pub quic_fingerprint: Option<String>,
    #[arg(long, default_value = "demo")]
    pub app: String,
    #[arg(long, default_value = "loadtest")]
    pub room: String,
}

/// QUIC connections per client endpoint (each endpoint is one UDP socket and one driver task).
const QUIC_PER_ENDPOINT: usize = 4096;

/// One line from a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Connected {
        connected: usize,
        errors: usize,
        first_error: Option<String>,
    },
    Done {
        deliveries: u64,
        gaps: u64,
        lagged: u64,
        first_us: u64,
        last_us: u64,
        latency: Vec<(u64, u64)>,
        cpu_seconds: f64,
    },
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, work(args))
}

async fn work(args: WorkerArgs) -> anyhow::Result<()> {
    let stats = Rc::new(RefCell::new(Stats::new()));
    let outcome = Rc::new(RefCell::new((0usize, 0usize, None::<String>)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / args.connect_rate.max(1) as f64));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let endpoints = match &args.quic_fingerprint {
        Some(fingerprint) => (0..args.count.div_ceil(QUIC_PER_ENDPOINT).max(1))
            .map(|_| {
                let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address"))?;
                endpoint
                    .set_default_client_config(bullhorn::client::tls::pinned_quic_config(fingerprint, b"bullhorn/1"));
                Ok(endpoint)
            })
            .collect::<std::io::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    for i in 0..args.count {
        pace.tick().await;
        let (args, stats, outcome, done) = (args.clone(), stats.clone(), outcome.clone(), done_tx.clone());
        if let Some(endpoint) = endpoints.get(i / QUIC_PER_ENDPOINT).cloned() {
            tokio::task::spawn_local(async move {
                let rooms = [args.room.clone()];
                match bullhorn::client::QuicStream::connect(&endpoint, args.addr, "localhost", &args.app, &rooms).await
                {
                    Ok(stream) => {
                        outcome.borrow_mut().0 += 1;
                        let _ = done.send(());
                        ws_client::receive_quic(stream, stats).await;
                    }
                    Err(error) => {
                        let mut o = outcome.borrow_mut();
                        o.1 += 1;
                        o.2.get_or_insert_with(|| error.to_string());
                        let _ = done.send(());
                    }
                }
            });
            continue;
        }
        tokio::task::spawn_local(async move {
            match ws_client::connect(args.addr, &args.host, &args.path).await {
                Ok((stream, leftover)) => {
                    outcome.borrow_mut().0 += 1;
                    let _ = done.send(());
                    ws_client::receive(stream, leftover, stats).await;
                }
                Err(error) => {
                    let mut o = outcome.borrow_mut();
                    o.1 += 1;
                    o.2.get_or_insert_with(|| error.to_string());
                    let _ = done.send(());
                }
            }
        });
    }
    for _ in 0..args.count {
        done_rx.recv().await;
    }
    let (connected, errors, first_error) = outcome.borrow().clone();
    emit(&WorkerEvent::Connected { connected, errors, first_error });

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stop" {
            break;
        }
    }
    let stats = stats.borrow();
    emit(&WorkerEvent::Done {
        deliveries: stats.deliveries,
        gaps: stats.gaps,
        lagged: stats.lagged,
        first_us: stats.first_us,
        last_us: stats.last_us,
        latency: stats.latency.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect(),
        cpu_seconds: crate::proc_stats::cpu_seconds("self").unwrap_or(0.0),
    });
    std::process::exit(0);
}

fn emit(event: &WorkerEvent) {
    println!("{}", serde_json::to_string(event).expect("serializable"));
}
