//! `GET /app/{key}?protocol=7`: a Pusher Channels client's WebSocket
//! (contract §12). The accept loop hands the request here; the upgrade is
//! checked as for the native endpoint, then:
//!
//! * draining, or over the connection caps: a JSON 503 before the upgrade,
//!   as for the native endpoint (a Pusher client retries it later);
//! * an unknown key or a protocol before 5: upgraded, told `pusher:error`
//!   and closed with 4001 or 4007, which Pusher clients read as "stop"
//!   (a plain 404 would have them retry for ever);
//! * else `pusher:connection_established` is queued and the connection
//!   moves to its shard with no room: its client subscribes from there
//!   (`dataplane::pusher`).

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::api_error::ApiError;
use crate::dataplane::close_stage::CLOSE_DEADLINE;
use crate::dataplane::{Adoption, Joined};
use crate::fanout::Subscriber;
use crate::protocol::handshake::{self, SubscribeRequest};
use crate::protocol::{Framing, pusher, ws};
use crate::state::Shared;
use crate::transport::capacity::Transport;
use crate::transport::session::{self, RETRY_AFTER_SECS};
use crate::transport::socket::ViewerStream;
use crate::transport::ws::handshake::refuse;

/// This process's part of every socket id (`salt.connection_id`): socket
/// ids stay unique across a restart, as clients and server libraries expect.
static SALT: LazyLock<u64> = LazyLock::new(|| rand::rng().random());

/// Answers a Pusher client's request on its raw socket (or TLS stream).
pub async fn accept<S: ViewerStream>(
    mut stream: S,
    peer: IpAddr,
    request: SubscribeRequest<'_>,
    early_input: &[u8],
    shared: Arc<Shared>,
) {
    let accept_key = match handshake::check(request.header_pairs()) {
        Ok(key) => key,
        Err(error) => return refuse(stream, &ApiError::invalid_request(error.to_string())).await,
    };
    if shared.drain.is_draining() {
        return refuse(stream, &ApiError::over_capacity(RETRY_AFTER_SECS)).await;
    }
    let answer =
        handshake::switching_protocols_for_pusher(&accept_key, handshake::pusher_subprotocol(request.header_pairs()));
    let protocol = form_urlencoded::parse(request.query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "protocol")
        .map(|(_, version)| version.into_owned());
    let Some(app) = shared.registry.app_by_pusher_key(request.app).cloned() else {
        let message = format!("no app has the key {:?}", request.app);
        return upgrade_and_close(stream, &answer, pusher::close::APP_NOT_FOUND, &message).await;
    };
    if !pusher::supported_protocol(protocol.as_deref()) {
        let message = "protocol versions 5 to 7 are served";
        return upgrade_and_close(stream, &answer, pusher::close::UNSUPPORTED_PROTOCOL, message).await;
    }
    let permit = match session::acquire(&shared, Transport::Pusher, peer) {
        Ok(permit) => permit,
        Err(error) => return refuse(stream, &error).await,
    };
    drop(request);
    if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let Some(socket) = session::shard_socket(stream) else { return };
    let id = shared.next_connection_id();
    let queue = shared.settings.queue;
    // Made by the shard, as a native subscriber is (`dataplane::Join`).
    let join = Box::new(move || {
        // No slot yet: one is added per channel subscribed (`Subscriber::assign_slot`).
        let subscriber = Arc::new(Subscriber::new(id, Framing::Pusher, [], queue));
        let established = pusher::connection_established(&pusher::socket_id(id, *SALT), pusher::ACTIVITY_TIMEOUT_SECS);
        subscriber.push_control(ws::text_frame(&established));
        Joined { subscriber, memberships: Vec::new(), welcome_seqs: Vec::new() }
    });
    let early_input = early_input.to_vec();
    shared.dataplane.adopt(Adoption { socket, early_input, id, join, permit, pusher: Some(app) });
}

/// Upgrades, says why in `pusher:error` and closes with `code`; then waits
/// (at most [`CLOSE_DEADLINE`]) for the client's end, so its close frame
/// does not arrive at a closed socket and reset what it has yet to read.
async fn upgrade_and_close(mut stream: impl AsyncRead + AsyncWrite + Unpin, answer: &[u8], code: u16, message: &str) {
    let mut bytes = answer.to_vec();
    bytes.extend_from_slice(&ws::text_frame(&pusher::error(Some(code), message)));
    bytes.extend_from_slice(&ws::close_frame(code, ""));
    if stream.write_all(&bytes).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 256];
    let _ =
        tokio::time::timeout(CLOSE_DEADLINE, async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} })
            .await;
}
