//! The client's address as the viewer listener's HTTP routes see it: the
//! accept loop puts it in each connection's requests (an axum extension), and
//! the upgrade route reads it for the per-address limit.

use std::net::IpAddr;

/// The client's address, for the routes reached through hyper.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub IpAddr);
