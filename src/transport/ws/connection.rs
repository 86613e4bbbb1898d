//! The hand-over of an upgraded WebSocket subscriber from the control plane
//! to the shard that will own it: join its rooms here (so the welcome seq is
//! exact and the welcome is queued first), then give the socket to the shard
//! whose presence shards it joined. Whatever is broadcast in between waits in
//! the subscriber's queue, and the shard writes it once it has the socket.

use std::sync::Arc;

use crate::dataplane::{Adoption, AnySocket};
use crate::protocol::Framing;
use crate::state::Shared;
use crate::transport::capacity::ConnectionPermit;
use crate::transport::session::{self, Membership};
use crate::transport::socket::ViewerStream;

/// Joins and hands `stream` (answered 101 already) to its shard; `early_input`
/// are bytes read past the upgrade request.
pub(super) fn hand_over<S: ViewerStream>(
    stream: S,
    early_input: Vec<u8>,
    mut memberships: Vec<Membership>,
    shared: &Arc<Shared>,
    permit: ConnectionPermit,
    deflate: bool,
) {
    let socket: AnySocket = match stream.into_shard_socket() {
        Ok(socket) => socket,
        Err(error) => return tracing::debug!(%error, "cannot take an upgraded socket out of tokio"),
    };
    let framing = if deflate { Framing::WebSocketDeflate } else { Framing::WebSocket };
    let subscriber = session::open(shared, framing, &mut memberships);
    shared.dataplane.adopt(Adoption { socket, early_input, subscriber, memberships, welcome_seqs: Vec::new(), permit });
}
