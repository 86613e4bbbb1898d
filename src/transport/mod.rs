//! Subscriber transports. The fan-out hands them frames; they own sockets.
//!
//! * [`accept`]: the viewer listener's accept loop and WebSocket fast path.
//! * [`capacity`]: the per-node connection cap and the open-connection count.
//! * [`turn`]: `--accept-rate`'s queue of handshakes, shared by TCP and QUIC.
//! * [`socket`]: a viewer stream leaving tokio for its data-plane shard, plain or TLS.
//! * [`peer`]: the client's address as the viewer listener's routes see it.
//! * [`ws`]: the WebSocket subscribe endpoint: upgrade, then the hand-over to a shard.
//! * [`sse`]: the Server-Sent Events endpoint: admission, the 200 head, the hand-over.
//! * [`pusher`]: the Pusher Channels endpoint (`/app/{key}`): its upgrade and refusals, the hand-over.
//! * [`viewer`]: the public HTTP router (demo page, browser SDK, WebSocket).

pub mod accept;
pub mod capacity;
pub mod peer;
pub mod prefixed;
pub mod pusher;
pub mod quic;
pub mod session;
pub mod socket;
pub mod sse;
pub mod turn;
pub mod viewer;
pub mod ws;
