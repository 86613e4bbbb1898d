//! The viewer listener's accept loop.
//!
//! It only accepts: each connection gets a short handshake task that reads
//! the request head into a small buffer. A subscribe request (WebSocket,
//! `GET /v1/apps/{app}/ws`, SSE, `…/sse`, or a Pusher client's `/app/{key}`)
//! is answered right there (errors
//! as JSON, or 101 / 200) and the connection moves to its data-plane shard;
//! anything else (the demo page, the SDK) goes to hyper and the axum router
//! with the bytes already read in front, one request at a time: after each,
//! the connection comes back here for its next head, so a subscribe request
//! on a keep-alive connection that first served the page takes the same
//! path as on a fresh one. Subscribers thus never pay for an HTTP server's
//! per-connection buffers and task, which is most of what a connection would
//! otherwise cost (docs/benchmarks.md §3), and a reconnect storm costs one
//! small parse per connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::prefixed::Prefixed;
use super::socket::{HEAD_CHUNK, ViewerStream};
use super::turn::Turn;
use super::ws;
use crate::protocol::handshake::Endpoint;
use crate::state::Shared;
use crate::transport::peer::PeerAddr;

/// The longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// Accepts until the drain begins. Over `--accept-rate` (shared with QUIC),
/// a connection is still accepted at once but waits its turn before its
/// handshake starts: turns are handed out in order, `1/rate` apart, so a
/// reconnect storm queues here instead of starting more handshakes than the
/// node can finish. It queues here rather than in the kernel's listen
/// backlog because the kernel does not keep that queue: a connection whose
/// final ACK finds the backlog full is dropped after a few SYN-ACK retries,
/// and its client gets a reset (docs/benchmarks.md §13). Waiters hold a file
/// each, so only as many wait as the node has room for; past that the
/// backlog holds the rest. With `tls`, every connection is a TLS one.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, router: Router, tls: Option<TlsAcceptor>) {
    let draining = shared.drain.started();
    tokio::pin!(draining);
    let waiting = Arc::new(AtomicUsize::new(0));
    loop {
        let waiters = waiting.load(Ordering::Acquire);
        if waiters > 0 && waiters >= shared.connections.free() {
            tokio::select! {
                () = &mut draining => return,
                () = tokio::time::sleep(Duration::from_millis(10)) => continue,
            }
        }
        let accepted = tokio::select! {
            () = &mut draining => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let turn = Turn::take(&shared);
                let waiter = (!turn.is_now()).then(|| Waiter::new(&waiting));
                tokio::spawn(connection(turn, waiter, stream, peer.ip(), shared.clone(), router.clone(), tls.clone()));
            }
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One accepted connection, from its turn to its hand-over (or its end).
/// Come the turn or a drain, the request is read and answered (during a
/// drain: 503 with `Retry-After`).
///
/// This is the task every accepted connection is, so its size is what each
/// one costs while it waits for its turn or for a slow client's request, and
/// a storm of slow clients holds thousands at once (docs/benchmarks.md §22).
/// The large and rarer paths are boxed, paid only by the connections that
/// take them: TLS (rustls's connection inside the stream, ~8 KB), a page or
/// SDK request through hyper, and the answer to a subscribe request.
async fn connection(
    turn: Turn,
    waiter: Option<Waiter>,
    stream: TcpStream,
    peer: IpAddr,
    shared: Arc<Shared>,
    router: Router,
    tls: Option<TlsAcceptor>,
) {
    turn.come(&shared).await;
    drop(waiter);
    match tls {
        None => handle(stream, peer, shared, router, None).await,
        Some(acceptor) => Box::pin(handle_tls(acceptor, stream, peer, shared, router)).await,
    }
}

/// An accepted connection waiting for its turn; counted while it waits.
struct Waiter(Arc<AtomicUsize>);

impl Waiter {
    fn new(waiting: &Arc<AtomicUsize>) -> Waiter {
        waiting.fetch_add(1, Ordering::AcqRel);
        Waiter(waiting.clone())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TLS handshake, then the request as on plain TCP. One deadline covers
/// both: a client gets `--handshake-timeout-ms` to be heard, whatever it stalls.
async fn handle_tls(acceptor: TlsAcceptor, stream: TcpStream, peer: IpAddr, shared: Arc<Shared>, router: Router) {
    let deadline = tokio::time::Instant::now() + shared.settings.limits.handshake_timeout;
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => handle(tls, peer, shared, router, Some(deadline)).await,
        Ok(Err(error)) => {
            shared.metrics.rejected_tls_handshake.increment(1);
            tracing::debug!(%error, %peer, "TLS handshake failed");
        }
        Err(_) => shared.metrics.rejected_handshake_timeout.increment(1),
    }
}

async fn handle<S: ViewerStream>(
    mut stream: S,
    peer: IpAddr,
    shared: Arc<Shared>,
    router: Router,
    deadline: Option<tokio::time::Instant>,
) {
    let timeout = shared.settings.limits.handshake_timeout;
    // Allocated when the first bytes arrive (`read_head`).
    let mut buf = Vec::new();
    let mut deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + timeout);
    let mut served = false;
    loop {
        let head_len = match tokio::time::timeout_at(deadline, read_head(&mut stream, &mut buf)).await {
            Ok(Ok(Some(len))) => len,
            Ok(Ok(None)) => return ws::handshake::refuse_oversized(stream).await,
            Ok(Err(_)) => return, // gone
            Err(_) => {
                // Slowloris, or a client that connects and never speaks (an
                // idle keep-alive connection just ends): the socket closes here.
                if !served {
                    shared.metrics.rejected_handshake_timeout.increment(1);
                }
                return;
            }
        };
        match crate::protocol::handshake::parse(&buf[..head_len]) {
            Some(request) => {
                let early_input = &buf[head_len..];
                // Boxed: the answer's state lives only while it is written,
                // not in the task of every connection still being read.
                return match request.endpoint {
                    Endpoint::WebSocket => {
                        Box::pin(ws::handshake::accept(stream, peer, request, early_input, shared)).await
                    }
                    Endpoint::Sse => Box::pin(super::sse::accept(stream, peer, request, shared)).await,
                    Endpoint::Pusher => {
                        Box::pin(super::pusher::accept(stream, peer, request, early_input, shared)).await
                    }
                };
            }
            None => match Box::pin(serve_one(stream, std::mem::take(&mut buf), peer, &router)).await {
                Some((rest, next)) => {
                    (stream, buf, served) = (next, rest, true);
                    // A keep-alive connection gets as long for its next head as a new one for its first.
                    deadline = tokio::time::Instant::now() + timeout;
                }
                None => return,
            },
        }
    }
}

/// Serves one request through hyper (`head`: the bytes read so far) and
/// takes the connection back: the bytes read past that request, and the
/// stream. `None` once the connection is over.
async fn serve_one<S: ViewerStream>(stream: S, head: Vec<u8>, peer: IpAddr, router: &Router) -> Option<(Vec<u8>, S)> {
    let io = TokioIo::new(Prefixed::new(Bytes::from(head), stream));
    let service = TowerToHyperService::new(router.clone().layer(axum::Extension(PeerAddr(peer))));
    let connection = hyper::server::conn::http1::Builder::new().keep_alive(false).serve_connection(io, service);
    let parts = match connection.without_shutdown().await {
        Ok(parts) => parts,
        Err(error) => {
            tracing::debug!(%error, "http connection ended with an error");
            return None;
        }
    };
    let (unread, stream) = parts.io.into_inner().into_parts();
    let mut rest = Vec::with_capacity(HEAD_CHUNK);
    rest.extend_from_slice(&unread);
    rest.extend_from_slice(&parts.read_buf);
    Some((rest, stream))
}

/// Reads until the end of the request head (which may be in `buf` already);
/// returns its length, or `None` when it grows past [`MAX_HEAD`]. An empty
/// `buf` gets its memory only once the client has sent something: a storm of
/// clients that connect and are slow to speak holds no buffers.
async fn read_head<S: ViewerStream>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    if buf.capacity() == 0 && stream.read_first(buf).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut searched_from = 0;
    loop {
        if let Some(end) = buf[searched_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(searched_from + end + 4));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        searched_from = buf.len().saturating_sub(3);
        if buf.len() == buf.capacity() {
            buf.reserve(HEAD_CHUNK);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<F, A, B, C, D, E, G, H, R>(_: &F) -> usize
    where
        F: FnOnce(A, B, C, D, E, G, H) -> R,
    {
        std::mem::size_of::<R>()
    }

    #[test]
    fn an_accepted_connection_is_a_small_task_whatever_path_it_may_take() {
        // Unboxed, the TLS path alone made every connection's task ~10 KB;
        // boxed, it is 776 B in a debug build (smaller in a release one).
        let size = future_size(&connection);
        assert!(size <= 1024, "a connection's task is {size} B");
    }
}
