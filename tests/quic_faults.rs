//! QUIC and WebTransport subscribers on a bad network: every connection here
//! goes through a fault-injecting UDP relay (common/udp_proxy.rs) that drops,
//! reorders and truncates datagrams, and the subscriber must still get every
//! broadcast exactly once and in order. QUIC recovers what is lost and
//! discards what fails authentication; these tests prove the server's data
//! plane leaves that recovery to it intact (nothing skipped, repeated or
//! reordered above the stream). The proxy's counters show that the faults
//! actually happened; the seeds are chosen so that each kind of fault asserted
//! falls on one of the first few datagrams of its direction.

mod common;
#[path = "common/udp_proxy.rs"]
mod udp_proxy;

use bullhorn::client::WtStream;
use common::{HANG, QuicSubscriber, TestServer, metric, quic_client};
use serde_json::{Value, json};
use udp_proxy::{Faults, UdpProxy};

fn welcome() -> Value {
    json!({"type":"welcome","rooms":[{"room":"gifts","seq":0}],"heartbeat_ms":25000})
}

/// Broadcasts `{"i": i}` to `gifts` for i in 1..=count.
async fn broadcast_numbered(server: &TestServer, count: u64) {
    for i in 1..=count {
        let accepted = server.admin.broadcast("gifts", json!({"i": i})).await;
        assert_eq!(accepted["seq"], i, "{accepted}");
    }
}

/// Asserts that `msg` is broadcast number `i` of `broadcast_numbered`.
fn assert_broadcast(msg: &Value, i: u64) {
    assert_eq!(msg["type"], "broadcast", "{msg}");
    assert_eq!(msg["room"], "gifts", "{msg}");
    assert_eq!(msg["seq"], i, "{msg}");
    assert_eq!(msg["data"], json!({"i": i}), "{msg}");
}

/// Reads `count` broadcasts from a native subscriber, then pings: the pong
/// must be the very next frame, so nothing was repeated or added after them
/// (the server writes a connection's frames in order on its one stream).
async fn expect_numbered_quic(sub: &mut QuicSubscriber, count: u64) {
    for i in 1..=count {
        let msg = sub.next_json().await.unwrap_or_else(|| panic!("the stream ended before broadcast {i}"));
        assert_broadcast(&msg, i);
    }
    sub.send_raw(&bullhorn::protocol::quic::frame(br#"{"type":"ping"}"#)).await;
    assert_eq!(sub.next_json().await, Some(json!({"type":"pong"})), "nothing follows the broadcasts");
}

/// A WebTransport subscriber to `gifts` through `addr` (the proxy).
async fn wt_subscribe(endpoint: &quinn::Endpoint, addr: std::net::SocketAddr) -> WtStream {
    let rooms = ["gifts".to_owned()];
    let connect = WtStream::connect(endpoint, addr, "localhost", "demo", &rooms);
    tokio::time::timeout(HANG, connect).await.expect("hung").expect("webtransport session")
}

async fn wt_next_json(sub: &mut WtStream) -> Option<Value> {
    let frame = tokio::time::timeout(HANG, sub.next_frame()).await.expect("webtransport subscriber hung").ok()??;
    Some(serde_json::from_slice(&frame).expect("valid JSON"))
}

/// A server with room `gifts`, a proxy with `faults` before its QUIC port,
/// and a native subscriber through it, welcomed.
async fn quic_subscribed_through(faults: Faults) -> (TestServer, UdpProxy, QuicSubscriber) {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let proxy = UdpProxy::start(server.quic, faults).await;
    let endpoint = quic_client(&server.fingerprint, b"bullhorn/1");
    let mut sub = QuicSubscriber::connect(&endpoint, proxy.addr(), &["gifts"]).await;
    assert_eq!(sub.next_json().await, Some(welcome()));
    (server, proxy, sub)
}

async fn deliveries(server: &TestServer, transport: &str) -> Option<f64> {
    metric(&server.admin.metrics().await, &format!("bullhorn_deliveries_total{{transport=\"{transport}\"}}"))
}

/// Forty broadcasts, each received once, in order, and counted once.
async fn forty_delivered_once(server: &TestServer, sub: &mut QuicSubscriber) {
    broadcast_numbered(server, 40).await;
    expect_numbered_quic(sub, 40).await;
    assert_eq!(deliveries(server, "quic").await, Some(40.0), "each broadcast delivered once");
}

#[tokio::test]
async fn a_quic_subscriber_gets_every_broadcast_once_in_order_through_loss_and_reordering() {
    let (server, proxy, mut sub) = quic_subscribed_through(Faults {
        drop_per_mille: 100,
        reorder_per_mille: 100,
        seed: 5,
        both_directions: true,
        ..Faults::default()
    })
    .await;
    forty_delivered_once(&server, &mut sub).await;
    let stats = proxy.stats();
    assert!(stats.to_server.dropped > 0 && stats.to_client.dropped > 0, "loss both ways: {stats:?}");
    assert!(stats.total().reordered > 0, "{stats:?}");
    server.finish().await;
}

#[tokio::test]
async fn cut_datagrams_both_ways_lose_nothing_and_repeat_nothing() {
    let (server, proxy, mut sub) = quic_subscribed_through(Faults {
        drop_per_mille: 20,
        cut_per_mille: 150,
        seed: 2,
        both_directions: true,
        ..Faults::default()
    })
    .await;
    forty_delivered_once(&server, &mut sub).await;
    let stats = proxy.stats();
    assert!(stats.to_server.cut > 0 && stats.to_client.cut > 0, "cut both ways: {stats:?}");
    // A cut packet fails authentication and is discarded: the connection lives on.
    assert!(sub.conn.close_reason().is_none(), "{:?}", sub.conn.close_reason());
    server.finish().await;
}

#[tokio::test]
async fn a_webtransport_session_gets_every_broadcast_once_in_order_through_loss_and_reordering() {
    let server = TestServer::start().await;
    server.admin.create_room("gifts").await;
    let faults =
        Faults { drop_per_mille: 100, reorder_per_mille: 100, seed: 2, both_directions: true, ..Faults::default() };
    let proxy = UdpProxy::start(server.quic, faults).await;
    let endpoint = quic_client(&server.fingerprint, b"h3");
    let mut sub = wt_subscribe(&endpoint, proxy.addr()).await;
    assert_eq!(wt_next_json(&mut sub).await, Some(welcome()));
    broadcast_numbered(&server, 20).await;
    for i in 1..=20 {
        let msg = wt_next_json(&mut sub).await.unwrap_or_else(|| panic!("the stream ended before broadcast {i}"));
        assert_broadcast(&msg, i);
    }
    // Pings go on the client's own stream, the pong on the server's, after
    // everything written before it: nothing was repeated or added.
    sub.ping().await.unwrap();
    assert_eq!(wt_next_json(&mut sub).await, Some(json!({"type":"pong"})), "nothing follows the broadcasts");
    assert_eq!(deliveries(&server, "webtransport").await, Some(20.0), "each broadcast delivered once");
    let stats = proxy.stats();
    assert!(stats.to_server.dropped > 0 && stats.to_client.dropped > 0, "loss both ways: {stats:?}");
    assert!(stats.total().reordered > 0, "{stats:?}");
    server.finish().await;
}

#[tokio::test]
async fn a_handshake_through_heavy_loss_completes_and_then_delivers() {
    // 30% of each direction's first 16 datagrams lost, the client's first
    // Initial and the server's second datagram (its handshake flight or the
    // first data after it) among them (seed 8), so both sides retransmit.
    let (server, proxy, mut sub) = quic_subscribed_through(Faults {
        drop_per_mille: 300,
        seed: 8,
        both_directions: true,
        only_first: Some(16),
        ..Faults::default()
    })
    .await;
    let stats = proxy.stats();
    assert!(stats.to_server.dropped > 0 && stats.to_client.dropped > 0, "loss both ways: {stats:?}");
    broadcast_numbered(&server, 5).await;
    expect_numbered_quic(&mut sub, 5).await;
    server.finish().await;
}

/// A tail loss: the last delivery is lost and nothing follows it, so no later
/// packet reveals the gap. The node's probe timeout must resend it, stretched
/// by the ACK delay the node asks clients for (about 1 s: transport::quic).
#[tokio::test]
async fn a_lost_last_delivery_with_nothing_after_it_is_resent() {
    let (server, proxy, mut sub) = quic_subscribed_through(Faults::default()).await;
    broadcast_numbered(&server, 1).await;
    assert_broadcast(&sub.next_json().await.expect("broadcast 1"), 1);
    // Larger than any ACK-only packet: the datagram that carries broadcast 2.
    proxy.drop_next_to_client_of(100);
    let accepted = server.admin.broadcast("gifts", json!({"i": 2})).await;
    assert_eq!(accepted["seq"], 2, "{accepted}");
    assert_broadcast(&sub.next_json().await.expect("broadcast 2, resent"), 2);
    assert_eq!(proxy.stats().to_client.dropped, 1, "the delivery was lost once: {:?}", proxy.stats());
    sub.send_raw(&bullhorn::protocol::quic::frame(br#"{"type":"ping"}"#)).await;
    assert_eq!(sub.next_json().await, Some(json!({"type":"pong"})), "nothing repeated");
    server.finish().await;
}
