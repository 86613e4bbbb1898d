//! Subscriber transports. The fan-out hands them frames; they own sockets.
//!
//! * [`capacity`]: the per-node connection cap and the open-connection count.
//! * [`ws`]: the WebSocket subscribe endpoint: upgrade, then one task per connection.
//! * [`viewer`]: the public HTTP router (demo page, browser SDK, WebSocket).

pub mod capacity;
pub mod viewer;
pub mod ws;
