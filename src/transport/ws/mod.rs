//! WebSocket subscribers (contract §4).
//!
//! The accept loop reads every request head on the viewer listener; a
//! subscribe request is checked (`upgrade`), answered on the raw socket
//! (`handshake`) and handed to its shard (`session::hand_over`), which writes the
//! shared pre-encoded frames as they are.

pub mod handshake;
mod upgrade;
