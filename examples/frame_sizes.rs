//! Bytes on the wire per delivery, plain and `permessage-deflate`, for a
//! typical gift announcement (~300 bytes of JSON) and a 2 KiB leaderboard:
//! one frame is one delivery, so the frame's length is what each viewer costs;
//! and the CPU of compressing it, which is paid once per broadcast.
//! `cargo run --release --example frame_sizes` (docs/benchmarks.md §18).

use bullhorn::protocol::deflate::Compressor;
use bullhorn::protocol::frames::Frames;

fn main() {
    let gift = r#"{"type":"gift","gift_id":10042,"gift":"rocket","count":1,"combo":3,"from":{"uid":"u_83736251","name":"Ana","level":27,"avatar":"https://cdn.example.com/a/83736251.jpg"},"to":{"uid":"u_1122","name":"Bo"},"room":"live_8812","effect":"fullscreen","text":"Ana sent Bo a rocket x3"}"#;
    let entries: Vec<String> = (0..32)
        .map(|i| {
            let (uid, score) = (83_736_251 + i * 7919, 100_000 - i * 1234);
            format!(r#"{{"rank":{},"uid":"u_{uid}","name":"viewer{i}","score":{score},"badge":"gold"}}"#, i + 1)
        })
        .collect();
    let leaderboard = format!(r#"{{"type":"leaderboard","top":[{}]}}"#, entries.join(","));
    let mut compressor = Compressor::default();
    for (name, data) in [("gift", gift), ("leaderboard", leaderboard.as_str())] {
        let frames = Frames::encode("gifts", 42, 1_764_633_600_000, data).with_deflated(&mut compressor);
        let deflated = frames.websocket_deflated.as_ref().expect("compressed").len();
        let plain = frames.websocket.len();
        let rounds = 10_000;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(compressor.text_frame(std::hint::black_box(frames.json())));
        }
        let per_broadcast = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        println!(
            "{name}: data {} B, frame {plain} B plain, {deflated} B deflated: {:.2} of plain; \
             compressing it once costs {per_broadcast:.1} µs",
            data.len(),
            deflated as f64 / plain as f64
        );
    }
}
