//! Subscriber transports. The fan-out hands them frames; they own sockets.
//!
//! * [`accept`]: the viewer listener's accept loop and WebSocket fast path.
//! * [`capacity`]: the per-node connection cap and the open-connection count.
//! * [`turn`]: `--accept-rate`'s queue of handshakes, shared by TCP and QUIC.
//! * [`socket`]: the byte stream under a WebSocket subscriber, plain or TLS.
//! * [`ws`]: the WebSocket subscribe endpoint: upgrade, then one task per connection.
//! * [`viewer`]: the public HTTP router (demo page, browser SDK, WebSocket).

pub mod accept;
pub mod capacity;
pub mod prefixed;
pub mod quic;
pub mod session;
pub mod socket;
pub mod turn;
pub mod viewer;
pub mod ws;
