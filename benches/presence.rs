//! Question: how many joins and leaves per second does one room take from two
//! threads at once (two threads: this machine's cores)?
//!
//! Each thread repeatedly joins a member and leaves again on the same room;
//! with one shard per thread they never share a lock, with one shard in all
//! they always do, so the two runs show what sharding buys.

#[path = "support/rig.rs"]
mod rig;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bullhorn::fanout::{QueueLimits, Subscriber};
use bullhorn::presence::Member;
use bullhorn::protocol::Framing;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const THREADS: usize = 2;

fn join_leave(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    for shards in [1usize, 2] {
        let rig = rig::Rig::new(0, shards);
        let room = rig.room.clone();
        group.throughput(Throughput::Elements(THREADS as u64 * 2));
        group.bench_with_input(
            BenchmarkId::new("join_leave_2_threads", format!("{shards}_shards")),
            &shards,
            |b, _| {
                b.iter_custom(|iters| {
                    let barrier = Arc::new(Barrier::new(THREADS));
                    let threads: Vec<_> = (0..THREADS as u64)
                        .map(|thread| {
                            let room = room.clone();
                            let barrier = barrier.clone();
                            std::thread::spawn(move || {
                                let sub = Arc::new(Subscriber::new(
                                    thread,
                                    Framing::WebSocket,
                                    [room.id().clone()],
                                    QueueLimits::default(),
                                ));
                                barrier.wait();
                                let start = Instant::now();
                                for _ in 0..iters {
                                    let (key, _) =
                                        room.join(thread, Member { subscriber: sub.clone(), slot: 0 }, None).unwrap();
                                    room.leave(key);
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    threads.into_iter().map(|t| t.join().unwrap()).max().unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, join_leave);
criterion_main!(benches);
