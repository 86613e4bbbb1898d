//! The hot path allocates (almost) nothing per delivery: a counting global
//! allocator around one broadcast to 10k in-process subscribers.

#[path = "../benches/support/counting_alloc.rs"]
mod counting_alloc;
#[path = "../benches/support/rig.rs"]
mod rig;

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

#[test]
fn under_five_hundredths_of_an_allocation_per_delivery() {
    allocations_per_delivery(rig::Rig::with(10_000, 2, rig::Features::Off));
}

#[test]
fn resume_priorities_conflation_and_idempotency_add_no_allocation_per_delivery() {
    allocations_per_delivery(rig::Rig::with(10_000, 2, rig::Features::On));
}

fn allocations_per_delivery(mut rig: rig::Rig) {
    let subscribers = rig.subscribers.len();
    let data = rig::payload_100();
    rig.publish(&data);
    assert_eq!(rig.drain_queues(), subscribers, "every subscriber got the warm-up broadcast");
    let mut counted = 0;
    const ROUNDS: usize = 10;
    for _ in 0..ROUNDS {
        let before = counting_alloc::allocations();
        rig.publish(&data);
        counted += counting_alloc::allocations() - before;
        assert_eq!(rig.drain_queues(), subscribers);
    }
    let per_delivery = counted as f64 / (ROUNDS * subscribers) as f64;
    assert!(per_delivery < 0.05, "{per_delivery} allocations per delivery ({counted} in {ROUNDS} broadcasts)");
}

#[test]
fn every_subscriber_shares_one_frame_per_framing() {
    let rig = rig::Rig::new(100, 2);
    rig.publish(&rig::payload_100());
    let mut out = std::collections::VecDeque::<bullhorn::fanout::Entry>::new();
    let mut pointers = std::collections::HashSet::new();
    for sub in &rig.subscribers {
        sub.take(&mut out);
        pointers.insert(out[0].bytes(sub.framing()).as_ptr());
        out.clear();
    }
    assert_eq!(pointers.len(), 2, "one WebSocket frame and one QUIC frame, shared by all: no payload copy");
}

/// One broadcast to `rig`; every subscriber's frame is checked by `check`,
/// and the frames' addresses are gathered per framing.
fn frames_per_framing(
    rig: &rig::Rig,
    check: impl Fn(bullhorn::protocol::Framing, &[u8]),
) -> std::collections::HashMap<bullhorn::protocol::Framing, std::collections::HashSet<*const u8>> {
    rig.publish(&rig::payload_100());
    let mut out = std::collections::VecDeque::<bullhorn::fanout::Entry>::new();
    let mut pointers = std::collections::HashMap::new();
    for sub in &rig.subscribers {
        sub.take(&mut out);
        let frame = out[0].bytes(sub.framing());
        check(sub.framing(), frame);
        pointers.entry(sub.framing()).or_insert_with(std::collections::HashSet::new).insert(frame.as_ptr());
        out.clear();
    }
    pointers
}

#[test]
fn every_deflate_subscriber_shares_one_compressed_frame() {
    let pointers = frames_per_framing(&rig::Rig::with_compression(300, 2), |framing, frame| {
        if framing == bullhorn::protocol::Framing::WebSocketDeflate {
            assert_eq!(frame[0] & bullhorn::protocol::ws::RSV1, bullhorn::protocol::ws::RSV1, "compressed");
        }
    });
    assert_eq!(pointers.len(), 3, "three framings");
    assert!(pointers.values().all(|frames| frames.len() == 1), "one frame per framing, shared by all: {pointers:?}");
}

#[test]
fn compression_adds_no_allocation_per_delivery() {
    allocations_per_delivery(rig::Rig::with_compression(9_000, 2));
}

#[test]
fn every_sse_subscriber_shares_one_event() {
    let pointers = frames_per_framing(&rig::Rig::with_sse(300, 2), |framing, frame| {
        if framing == bullhorn::protocol::Framing::Sse {
            assert!(frame.starts_with(b"event: broadcast\ndata: {"), "an SSE event");
        }
    });
    assert_eq!(pointers.len(), 3, "three framings");
    assert!(pointers.values().all(|frames| frames.len() == 1), "one frame per framing, shared by all: {pointers:?}");
}

#[test]
fn sse_adds_no_allocation_per_delivery() {
    allocations_per_delivery(rig::Rig::with_sse(9_000, 2));
}
