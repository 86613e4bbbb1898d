//! `GET /v1/apps/{app}/sse?room=…`: Server-Sent Events (contract §10). The
//! accept loop hands the request here; admission is WebSocket's (rooms,
//! `room@seq`, drain, connection caps), with `Last-Event-ID` resuming over
//! the query; refusals are JSON responses before the stream; an admitted
//! stream gets the 200 head and moves to its shard (`dataplane::sse`).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;

use crate::api_error::ApiError;
use crate::protocol::Framing;
use crate::protocol::handshake::SubscribeRequest;
use crate::protocol::sse;
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Transport};
use crate::transport::session::{self, Membership};
use crate::transport::socket::ViewerStream;
use crate::transport::ws::handshake::refuse;

/// Answers an SSE request on its raw socket (or TLS stream).
pub async fn accept<S: ViewerStream>(mut stream: S, peer: IpAddr, request: SubscribeRequest<'_>, shared: Arc<Shared>) {
    let admitted = admit(&shared, request.app, request.query, request.header("last-event-id"), peer);
    drop(request);
    match admitted {
        Ok((memberships, permit)) => {
            if stream.write_all(sse::OK_HEAD).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            session::hand_over(stream, Vec::new(), Framing::Sse, memberships, &shared, permit);
        }
        Err(error) => refuse(stream, &error).await,
    }
}

/// The query's rooms, each resumed from `Last-Event-ID` where the header
/// names it (rooms only the header names are not subscribed), then
/// WebSocket's checks.
fn admit(
    shared: &Shared,
    app: &str,
    query: Option<&str>,
    last_event_id: Option<&[u8]>,
    peer: IpAddr,
) -> Result<(Vec<Membership>, ConnectionPermit), ApiError> {
    let mut rooms = crate::protocol::rooms_in(query);
    if let Some(value) = last_event_id {
        let resumed = sse::parse_last_event_id(value).map_err(|error| ApiError::invalid_request(error.to_string()))?;
        for entry in &mut rooms {
            let name = entry.split_once('@').map_or(entry.as_str(), |(room, _)| room);
            if let Some((room, seq)) = resumed.iter().find(|(room, _)| *room == name) {
                *entry = format!("{room}@{seq}");
            }
        }
    }
    session::admit(shared, Transport::Sse, peer, app, rooms.iter().map(String::as_str))
}
