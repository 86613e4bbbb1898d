//! WebSocket subscribers (contract §4).
//!
//! The HTTP part (routing, errors before the upgrade, the handshake answer)
//! goes through axum; after the upgrade the raw `TcpStream` is taken back so
//! the connection writes the shared pre-encoded frames as they are.

mod connection;
pub mod handshake;
mod upgrade;

pub use upgrade::subscribe;
