//! `ceiling`: this machine's raw loopback write rate for the same frame and
//! the same number of sockets, one `write` per delivery, from one thread (as
//! a server pinned to one core would write), to sinks in the worker
//! processes. Every fan-out figure can then be read as a ratio against what
//! the machine itself allows; batching several frames per write is how a
//! server goes past 1.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::new_report;
use crate::CeilingArgs;
use crate::admin::payload;
use crate::report::{CeilingResult, Report};
use crate::{Common, workers};
use anyhow::Context as _;

pub async fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let mut report = new_report("ceiling", common, &args);
    report.payload_bytes = args.payload;
    let interval = args.interval_ms.map(Duration::from_millis);
    let result = measure(common, args.payload, Duration::from_secs(args.duration), interval, &mut report).await?;
    report.subscribers_connected = result.sockets;
    report.deliveries = result.writes;
    report.expected_deliveries = result.writes;
    report.deliveries_per_sec = result.writes_per_sec;
    report.duration_secs = args.duration as f64;
    report.ceiling = Some(result);
    super::finish(common, report, None)
}

/// A broadcast frame as a subscriber of this run receives it: the same
/// envelope (a current `ts`, a four-digit seq), the same `data` size.
fn frame(size: usize) -> bytes::Bytes {
    let data = payload(size).to_string();
    let ts_ms = crate::ws_client::now_us() / 1000;
    bullhorn::protocol::Frames::encode("loadtest", 1000, ts_ms, &data).websocket
}

/// Opens `common.subscribers` sockets from the workers to a local listener,
/// then writes one frame per `write` to each in turn for `duration`: back to
/// back, or in rounds every `interval`.
pub async fn measure(
    common: &Common,
    payload: usize,
    duration: Duration,
    interval: Option<Duration>,
    report: &mut Report,
) -> anyhow::Result<CeilingResult> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let target = listener.local_addr()?;
    let sockets = common.subscribers;
    // How many to accept: all asked for until the workers say how many
    // connected (a worker whose connects failed must not leave the acceptor
    // waiting for sockets that never come).
    let expected = Arc::new(AtomicUsize::new(sockets));
    let acceptor = std::thread::spawn({
        let expected = expected.clone();
        move || accept_until(&listener, &expected)
    });
    let mut plans = workers::plans(sockets, common.workers);
    plans.iter_mut().for_each(|plan| plan.raw = true);
    let mut workers = workers::spawn_to(common, &plans, Some(target)).await?;
    let mut connected = Report::default();
    let waited = workers::wait_connected(&mut workers, &mut connected).await;
    expected.store(if waited.is_ok() { connected.subscribers_connected } else { 0 }, Ordering::Release);
    waited?;
    let streams = tokio::task::spawn_blocking(move || acceptor.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the acceptor panicked"))?
        .context("accepting the ceiling's sockets")?;
    let frame = frame(payload);
    let frame_bytes = frame.len();
    let cpu = common.ceiling_cpu;
    let (loop_result, cpu_seconds) = tokio::task::spawn_blocking(move || {
        if let Some(cpu) = cpu {
            bullhorn::cpu::pin(cpu).with_context(|| format!("cannot pin the ceiling writer to CPU {cpu}"))?;
        }
        let cpu_before = thread_cpu_seconds();
        let result = match interval {
            None => write_loop(&streams, &frame, duration),
            Some(interval) => write_rounds(&streams, &frame, duration, interval),
        };
        anyhow::Ok((result, thread_cpu_seconds() - cpu_before))
    })
    .await??;
    let Written { writes, would_block, secs, round_us_median } = loop_result;
    let mut sinks = Report::default();
    workers::collect(&mut workers, &mut sinks).await?;
    report.client_cpu_seconds += sinks.client_cpu_seconds;
    Ok(CeilingResult {
        frame_bytes,
        sockets: connected.subscribers_connected,
        writes,
        would_block,
        writes_per_sec: writes as f64 / secs,
        bytes_read: sinks.deliveries,
        cpu_per_write_us: cpu_seconds * 1e6 / writes.max(1) as f64,
        interval_ms: interval.map(|i| i.as_millis() as u64),
        round_us_median,
    })
}

/// Accepts until `expected` sockets (which may fall while this runs) are in,
/// or nothing has arrived for [`ACCEPT_QUIET`].
fn accept_until(listener: &TcpListener, expected: &AtomicUsize) -> std::io::Result<Vec<TcpStream>> {
    listener.set_nonblocking(true)?;
    let mut streams = Vec::new();
    let mut last = Instant::now();
    while streams.len() < expected.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                streams.push(stream);
                last = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() > ACCEPT_QUIET {
                    return Err(std::io::Error::other(format!(
                        "{} of {} sockets arrived, then none for {ACCEPT_QUIET:?}",
                        streams.len(),
                        expected.load(Ordering::Acquire)
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(streams)
}

/// How long the acceptor waits for a socket before it gives up.
const ACCEPT_QUIET: Duration = Duration::from_secs(30);

/// What a write loop did.
struct Written {
    writes: u64,
    would_block: u64,
    /// Seconds spent writing (in rounds: the rounds only, not the pauses).
    secs: f64,
    round_us_median: Option<u64>,
}

/// CPU time of the calling thread, kernel included.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: clock_gettime writes one timespec into `now`.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// One frame to every socket each `interval`, until `duration`: what one
/// broadcast a round costs when nothing else is written between rounds.
fn write_rounds(streams: &[TcpStream], frame: &[u8], duration: Duration, interval: Duration) -> Written {
    let started = Instant::now();
    let (mut writes, mut would_block, mut busy) = (0u64, 0u64, Duration::ZERO);
    let mut rounds = Vec::new();
    let mut next = started;
    while started.elapsed() < duration {
        let round = Instant::now();
        for mut stream in streams {
            match write_whole(&mut stream, frame) {
                Ok(()) => writes += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => would_block += 1,
                Err(_) => {}
            }
        }
        let took = round.elapsed();
        busy += took;
        rounds.push(took.as_micros() as u64);
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    rounds.sort_unstable();
    let round_us_median = rounds.get(rounds.len() / 2).copied();
    Written { writes, would_block, secs: busy.as_secs_f64(), round_us_median }
}

/// Writes all of `frame`, waiting out a full buffer only once it has begun
/// (a frame is never left half-written).
fn write_whole(stream: &mut &TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let n = stream.write(frame)?;
    let mut rest = &frame[n..];
    while !rest.is_empty() {
        match stream.write(rest) {
            Ok(m) => rest = &rest[m..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One frame per `write`, round-robin over the sockets, until `duration`.
fn write_loop(streams: &[TcpStream], frame: &[u8], duration: Duration) -> Written {
    let started = Instant::now();
    let (mut writes, mut would_block) = (0u64, 0u64);
    while started.elapsed() < duration {
        for mut stream in streams {
            match stream.write(frame) {
                Ok(n) if n == frame.len() => writes += 1,
                Ok(n) => {
                    // Rare with small frames: finish this one so the stream stays whole.
                    let mut rest = &frame[n..];
                    while !rest.is_empty() {
                        match stream.write(rest) {
                            Ok(m) => rest = &rest[m..],
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                            Err(_) => break,
                        }
                    }
                    writes += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => would_block += 1,
                Err(_) => {}
            }
        }
    }
    Written { writes, would_block, secs: started.elapsed().as_secs_f64(), round_us_median: None }
}
