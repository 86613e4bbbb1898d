//! Question: what does one broadcast cost per delivery, before any socket?
//!
//! One broadcast with a 100-byte `data` to 10k and 100k in-process subscribers
//! (half WebSocket, half QUIC framing), through the real path: sequencer,
//! encode once, lanes, presence shards, bounded queues. Time is per delivery
//! (criterion's elements). Subscriber queues are emptied between iterations,
//! outside the timed part, as connection tasks would.
//!
//! Each size runs twice in one process: with the delivery features off (no
//! resume window, no priority, conflate or idempotency key) and on (a
//! 64-message window, `high`, a conflate key, a fresh idempotency key each
//! time), so their ratio comes from one run on one machine. `live_ratio`
//! does the same for the live-room features (a ttl and a pin on every
//! broadcast, occupancy on) against off.
//!
//! It also counts allocations per delivery with a counting global allocator
//! (goal: no payload copy and under 0.05 allocations per delivery) and prints
//! them; `tests/allocations.rs` asserts the same bound.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/rig.rs"]
mod rig;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

fn fanout(c: &mut Criterion) {
    let data = rig::payload_100();
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    for (subscribers, features) in [
        (10_000usize, rig::Features::Off),
        (10_000, rig::Features::On),
        (100_000, rig::Features::On),
        (100_000, rig::Features::Off),
    ] {
        let name = match features {
            rig::Features::Off => "publish",
            rig::Features::On => "publish_features_on",
            rig::Features::Live => "publish_live_room_on",
        };
        let mut rig = rig::Rig::with(subscribers, 2, features);
        rig.publish(&data); // warm the queues' capacity
        rig.drain_queues();

        const ROUNDS: u64 = 20;
        let mut allocs = 0;
        for _ in 0..ROUNDS {
            let before = counting_alloc::allocations();
            rig.publish(&data);
            allocs += counting_alloc::allocations() - before;
            rig.drain_queues();
        }
        println!(
            "fanout/{name}/{subscribers}: {:.5} allocations per delivery ({allocs} in {ROUNDS} broadcasts)",
            allocs as f64 / (ROUNDS as f64 * subscribers as f64)
        );

        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(BenchmarkId::new(name, subscribers), &subscribers, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rig.publish(&data);
                    total += start.elapsed();
                    rig.drain_queues();
                }
                total
            })
        });
    }
    group.finish();
}

/// The on/off ratio from broadcasts interleaved in one loop (both rooms
/// alive at once, the order alternating), so a noisy neighbour or a memory
/// layout that changed between criterion's groups cannot pass for a cost.
fn features_ratio(_: &mut Criterion) {
    // Off against off: what the interleaved comparison itself reads as a cost
    // (the second room's memory, its place in the loop), to read the others by.
    ratio("same_ratio", rig::Features::Off);
    ratio("features_ratio", rig::Features::On);
    ratio("live_ratio", rig::Features::Live);
}

/// `features` against `Off`, interleaved (see [`features_ratio`]).
fn ratio(name: &str, features: rig::Features) {
    let data = rig::payload_100();
    for subscribers in [10_000usize, 100_000] {
        let mut rigs = [rig::Rig::with(subscribers, 2, rig::Features::Off), rig::Rig::with(subscribers, 2, features)];
        let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for round in 0..200 {
            for turn in 0..2 {
                let which = (round + turn) % 2;
                let start = Instant::now();
                rigs[which].publish(&data);
                times[which].push(start.elapsed());
                rigs[which].drain_queues();
            }
        }
        let median = |t: &mut Vec<Duration>| {
            t.sort();
            t[t.len() / 2].as_nanos() as f64 / subscribers as f64
        };
        let (off, on) = (median(&mut times[0]), median(&mut times[1]));
        println!(
            "fanout/{name}/{subscribers}: off {off:.1} ns, on {on:.1} ns per delivery (median of 200 interleaved): on/off = {:.3}",
            on / off
        );
    }
}

criterion_group!(benches, fanout, features_ratio);
criterion_main!(benches);
