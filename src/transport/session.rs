//! What every subscriber transport does the same way: resolve the rooms a
//! subscriber names, join them with an exact welcome seq, and leave them.
//! Transports differ only in framing and sockets.

use std::sync::Arc;

use std::net::IpAddr;

use crate::api_error::ApiError;
use crate::dataplane::{Adoption, Joined};
use crate::fanout::Subscriber;
use crate::ids::RoomRequest;
use crate::presence::{Member, MemberKey};
use crate::protocol::Framing;
use crate::protocol::close::CloseReason;
use crate::protocol::messages;
use crate::room::Room;
use crate::state::Shared;
use crate::transport::capacity::{ConnectionPermit, Refusal, Transport};
use crate::transport::socket::ViewerStream;

/// How long an over-capacity or draining client is asked to wait.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Takes a connection slot for a subscriber from `peer`, counting a refusal by its reason.
pub fn acquire(shared: &Shared, transport: Transport, peer: IpAddr) -> Result<ConnectionPermit, ApiError> {
    shared.connections.try_acquire(transport, peer).map_err(|refusal| match refusal {
        Refusal::OverCapacity => {
            shared.metrics.rejected_over_capacity.increment(1);
            ApiError::over_capacity(RETRY_AFTER_SECS)
        }
        Refusal::PerIp => {
            shared.metrics.rejected_per_ip.increment(1);
            ApiError::over_capacity_for_address(RETRY_AFTER_SECS)
        }
    })
}

/// What admits a QUIC or WebTransport subscriber: its app and rooms, then a
/// connection slot (the rooms are checked first: a refusal spends no slot).
pub fn admit<'a>(
    shared: &Shared,
    transport: Transport,
    peer: IpAddr,
    app_id: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(Vec<Membership>, ConnectionPermit), ApiError> {
    let memberships = resolve(shared, app_id, names)?;
    let permit = acquire(shared, transport, peer)?;
    Ok((memberships, permit))
}

/// One room of a connection, in slot order: one allocation for all of them.
pub struct Membership {
    pub room: Arc<Room>,
    /// `room@seq`: the seq the subscriber asked to resume after.
    pub resume_after: Option<u64>,
    /// Set once joined.
    pub key: Option<MemberKey>,
}

/// Checks an app and the rooms a subscriber names (`room` or `room@seq`):
/// refusals come before anything is spent on the connection.
pub fn resolve<'a>(
    shared: &Shared,
    app_id: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Membership>, ApiError> {
    if shared.drain.is_draining() {
        return Err(ApiError::over_capacity(RETRY_AFTER_SECS));
    }
    let app = shared.registry.app(app_id).ok_or_else(|| ApiError::app_not_found(app_id))?;
    let mut requests: Vec<RoomRequest> = Vec::new();
    for name in names {
        let request = RoomRequest::parse(name)
            .ok_or_else(|| ApiError::invalid_request(format!("room {name:?} is not a room id or room@seq")))?;
        if requests.iter().any(|r| r.room == request.room) {
            return Err(ApiError::invalid_request(format!("room {:?} is named twice", request.room)));
        }
        requests.push(request);
    }
    if requests.is_empty() {
        return Err(ApiError::invalid_request("name at least one room"));
    }
    if requests.len() > app.max_rooms() {
        return Err(ApiError::invalid_request(format!("at most {} rooms per connection", app.max_rooms())));
    }
    let mut memberships = Vec::with_capacity(requests.len());
    for request in &requests {
        let room = app.room(&request.room).ok_or_else(|| ApiError::room_not_found(&request.room))?;
        memberships.push(Membership { room, resume_after: request.resume_after, key: None });
    }
    Ok(memberships)
}

/// A new subscriber with `framing` and connection id `id` (which picks the
/// presence shard), joined to every room of `memberships`; with each room's
/// welcome seq (where an SSE stream's id starts).
pub fn open_with_id(
    shared: &Shared,
    id: u64,
    framing: Framing,
    memberships: &mut [Membership],
) -> (Arc<Subscriber>, Vec<u64>) {
    let subscriber =
        Arc::new(Subscriber::new(id, framing, memberships.iter().map(|m| m.room.id().clone()), shared.settings.queue));
    let seqs = join(shared, &subscriber, memberships);
    (subscriber, seqs)
}

/// Hands a TCP subscriber (answered already: 101 or SSE's 200) to the shard
/// its connection id picks, which joins it to its rooms (`Join`: on the
/// shard's thread, for where its memory lies); `early_input` are bytes read
/// past its request. Its welcome seqs are taken at that join: what is
/// broadcast before it was never owed, what is broadcast after is.
pub fn hand_over<S: ViewerStream>(
    stream: S,
    early_input: Vec<u8>,
    framing: Framing,
    memberships: Vec<Membership>,
    shared: &Arc<Shared>,
    permit: ConnectionPermit,
) {
    let Some(socket) = shard_socket(stream) else { return };
    let id = shared.next_connection_id();
    let node = shared.clone();
    let join = Box::new(move || {
        // Moved into an allocation of the joining thread's own.
        let mut kept = Vec::with_capacity(memberships.len());
        kept.extend(memberships);
        let (subscriber, welcome_seqs) = open_with_id(&node, id, framing, &mut kept);
        Joined { subscriber, memberships: kept, welcome_seqs }
    });
    shared.dataplane.adopt(Adoption { socket, early_input, id, join, permit, pusher: None });
}

/// The stream's socket, out of tokio for a shard; `None` (logged) when the kernel refuses.
pub fn shard_socket<S: ViewerStream>(stream: S) -> Option<crate::dataplane::AnySocket> {
    stream
        .into_shard_socket()
        .map_err(|error| tracing::debug!(%error, "cannot take a subscriber's socket out of tokio"))
        .ok()
}

/// Joins every room (replaying what a resuming subscriber missed), then
/// queues `welcome` ahead of anything queued meanwhile. Each room's welcome
/// seq is the last one this subscriber will not get; every later broadcast is
/// owed to it, delivered or announced by a `lagged`. Returns those seqs.
pub fn join(shared: &Shared, subscriber: &Arc<Subscriber>, memberships: &mut [Membership]) -> Vec<u64> {
    let framing = subscriber.framing();
    let mut seqs = Vec::with_capacity(memberships.len());
    for (slot, membership) in memberships.iter_mut().enumerate() {
        let room = &membership.room;
        let member = Member { subscriber: subscriber.clone(), slot };
        match room.join(subscriber.id(), member, membership.resume_after) {
            Ok((key, seq)) => {
                membership.key = Some(key);
                seqs.push(seq);
            }
            Err(_) => {
                seqs.push(room.seq());
                subscriber.close(CloseReason::RoomDestroyed);
            }
        }
    }
    let welcome = messages::welcome(
        memberships.iter().zip(&seqs).map(|(m, seq)| (&**m.room.id(), *seq)),
        shared.settings.heartbeat.as_millis() as u64,
    );
    let welcome = match framing {
        // An SSE stream's id starts at the welcome seqs (`protocol::sse::welcome_event`).
        Framing::Sse => crate::protocol::sse::welcome_event(
            &welcome,
            memberships.iter().zip(&seqs).map(|(m, seq)| (&**m.room.id(), *seq)),
        ),
        _ => framing.frame(&welcome),
    };
    subscriber.push_control_front(welcome);
    if shared.drain.is_draining() {
        subscriber.close(CloseReason::ServerDraining { reconnect_after_ms: shared.drain.reconnect_after_ms() });
    }
    seqs
}

/// Leaves every room that was joined.
pub fn leave(memberships: &[Membership]) {
    for membership in memberships {
        if let Some(key) = membership.key {
            membership.room.leave(key);
        }
    }
}
