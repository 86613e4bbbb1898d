//! A native QUIC subscriber (ALPN `bullhorn/1`): the client's stream, its
//! hello, admission, then the shared session loop ([`super::session`]).
//!
//! Refusals follow the contract: an `error` frame on the stream for a bad
//! hello, unknown app or room; an application close for a frame over 4 KiB
//! (1009) or no hello in time (1002). Close codes use the WebSocket numbers.

use std::net::IpAddr;
use std::sync::Arc;

use quinn::{Connection, RecvStream};

use super::HELLO_TIMEOUT;
use super::session::{QuicSession, refuse};
use super::streams::{FrameSource, Peer};
use crate::api_error::ApiError;
use crate::protocol::close::ws_code;
use crate::protocol::quic::{self, Decoder, parse_hello};
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::session::{self, Membership};

/// Takes a native connection through its hello.
pub(super) async fn handle(conn: Connection, shared: Arc<Shared>) {
    let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => return Peer::close(&conn, ws_code::PROTOCOL_ERROR, "no stream opened in time"),
    };
    let mut decoder = Decoder::default();
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, first_frame(&mut recv, &mut decoder)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return,
        Ok(Err(_)) => return Peer::close(&conn, ws_code::TOO_BIG, "frame too big"),
        Err(_) => return Peer::close(&conn, ws_code::PROTOCOL_ERROR, "no hello in time"),
    };
    match admit(&shared, &hello, conn.remote_address().ip()) {
        Ok((memberships, permit)) => {
            let deliveries = shared.metrics.quic_deliveries.clone();
            let session =
                QuicSession { peer: conn, send, recv, decoder, memberships, shared, deliveries, _permit: permit };
            tokio::spawn(session.run());
        }
        Err(error) => refuse(&conn, &mut send, error.code, &error.message).await,
    }
}

fn admit(shared: &Shared, hello: &[u8], peer: IpAddr) -> Result<(Vec<Membership>, ConnectionPermit), ApiError> {
    let hello = parse_hello(hello).map_err(ApiError::invalid_request)?;
    session::admit(shared, Transport::Quic, peer, &hello.app, hello.rooms.iter().map(String::as_str))
}

/// Reads until the first whole frame; `None` if the stream ended first.
async fn first_frame(recv: &mut RecvStream, decoder: &mut Decoder) -> Result<Option<Vec<u8>>, quic::FrameTooBig> {
    loop {
        let Ok(Some(chunk)) = FrameSource::read_chunk(recv).await else { return Ok(None) };
        let mut first = None;
        decoder.decode(&chunk, |frame| {
            first.get_or_insert_with(|| frame.to_vec());
        })?;
        if first.is_some() {
            return Ok(first);
        }
    }
}
