//! Subscribe to a room and print what arrives, over WebSocket, QUIC or WebTransport.
//!
//! ```sh
//! cargo run --example subscribe -- ws://127.0.0.1:8080 demo gifts
//! cargo run --example subscribe -- quic://127.0.0.1:4433 demo gifts           # pins data/dev-cert.sha256
//! cargo run --example subscribe -- webtransport://127.0.0.1:4433 demo gifts   # as a browser would
//! ```

use bullhorn::client::{Event, Message, Subscription, Target};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, app) =
        (args.first().map_or("ws://127.0.0.1:8080", String::as_str), args.get(1).map_or("demo", String::as_str));
    let rooms: Vec<&str> = if args.len() > 2 { args[2..].iter().map(String::as_str).collect() } else { vec!["gifts"] };
    let fingerprint = || std::fs::read_to_string("data/dev-cert.sha256");
    let target = if let Some(addr) = url.strip_prefix("quic://") {
        Target::Quic { addr: addr.parse()?, server_name: "localhost".into(), fingerprint: fingerprint()? }
    } else if let Some(addr) = url.strip_prefix("webtransport://") {
        Target::WebTransport { addr: addr.parse()?, server_name: "localhost".into(), fingerprint: fingerprint()? }
    } else {
        Target::WebSocket { url: url.to_owned() }
    };
    let mut subscription = Subscription::new(target, app, &rooms);
    while let Some(event) = subscription.next().await {
        match event {
            Event::Message(Message::Broadcast { room, seq, data, .. }) => println!("{room} #{seq}: {data}"),
            Event::Message(other) => println!("{other:?}"),
            Event::Gap { room, missed } => println!("{room}: {missed} missed"),
            Event::Reconnecting { after } => println!("reconnecting in {after:?}"),
        }
    }
    Ok(())
}
