//! `GET /v1/apps/{app}/ws?room=…`: the checks before the upgrade, in the
//! order that spends least on a refusal (the handshake's rules are in
//! `protocol::handshake`).
//!
//! Every refusal happens before anything is spent on the connection: drain,
//! unknown app or room, malformed request, connection cap.

use std::net::IpAddr;

use crate::api_error::ApiError;
use crate::protocol::handshake;
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::session::{self, Membership};

/// What an admitted subscriber gets: its rooms, its connection slot and the
/// `Sec-WebSocket-Accept` value for the 101 answer.
pub(super) struct Admitted {
    pub memberships: Vec<Membership>,
    pub permit: ConnectionPermit,
    pub accept: String,
    /// The client offered `permessage-deflate` and this node accepts it: the 101's answer.
    pub deflate: Option<&'static str>,
}

/// Every check before the upgrade, in the order that spends the least on a
/// refusal.
/// `headers`: name (any case) and value, as sent.
pub(super) fn admit<'a>(
    shared: &Shared,
    app: &str,
    query: Option<&str>,
    headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    peer: IpAddr,
) -> Result<Admitted, ApiError> {
    let rooms = crate::protocol::rooms_in(query);
    let memberships = session::resolve(shared, app, rooms.iter().map(String::as_str))?;
    let accept = handshake::check(headers.clone()).map_err(|error| ApiError::invalid_request(error.to_string()))?;
    let deflate = handshake::offers_deflate(headers).filter(|_| shared.settings.ws_compression);
    let permit = session::acquire(shared, Transport::WebSocket, peer)?;
    Ok(Admitted { memberships, permit, accept, deflate })
}
