//! The viewer listener's accept loop.
//!
//! It only accepts: each connection gets a short handshake task that reads
//! the request head into a small buffer. A WebSocket subscribe request
//! (`GET /v1/apps/{app}/ws`) is answered right there (errors as JSON, or
//! 101) and the connection moves to a task of its own; anything else (the
//! demo page, the SDK) goes to hyper and the axum router with the bytes
//! already read in front. Subscribers thus never pay for an HTTP server's
//! per-connection buffers and task, which is most of what a connection would
//! otherwise cost (docs/benchmarks.md §3), and a reconnect storm costs one
//! small parse per connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

use super::prefixed::Prefixed;
use super::ws;
use crate::limits;
use crate::state::Shared;

/// The longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// The client's address, for the routes reached through hyper.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub IpAddr);

/// Accepts until the drain begins, at most `--accept-rate` connections a
/// second: beyond it the loop waits and a storm queues in the kernel's
/// backlog instead of starting more handshakes than the node can finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, router: Router) {
    let draining = shared.drain.started();
    tokio::pin!(draining);
    let accept_rate = limits::per_second(shared.settings.limits.accept_rate);
    loop {
        if let Some(wait) = accept_rate.as_ref().and_then(|bucket| bucket.try_take(Instant::now()).err()) {
            shared.metrics.accept_throttled.increment(1);
            tokio::time::sleep(wait).await;
            continue;
        }
        let accepted = tokio::select! {
            () = &mut draining => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream, peer.ip(), shared.clone(), router.clone()));
            }
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, peer: IpAddr, shared: Arc<Shared>, router: Router) {
    let mut buf = Vec::with_capacity(1024);
    let timeout = shared.settings.limits.handshake_timeout;
    let head_len = match tokio::time::timeout(timeout, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(Some(len))) => len,
        Ok(Ok(None)) => return ws::handshake::refuse_oversized(stream).await,
        Ok(Err(_)) => return, // gone
        Err(_) => {
            // Slowloris, or a client that connects and never speaks: the socket closes here.
            shared.metrics.rejected_handshake_timeout.increment(1);
            return;
        }
    };
    match ws::handshake::parse(&buf[..head_len]) {
        Some(request) => {
            let early_input = &buf[head_len..];
            ws::handshake::accept(stream, peer, request, early_input, shared).await;
        }
        None => {
            buf.shrink_to_fit();
            let io = TokioIo::new(Prefixed::new(Bytes::from(buf), stream));
            let service = TowerToHyperService::new(router.layer(axum::Extension(PeerAddr(peer))));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http connection ended with an error");
            }
        }
    }
}

/// Reads until the end of the request head; returns its length, or `None`
/// when it grows past [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        let searched_from = buf.len().saturating_sub(3);
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = buf[searched_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(searched_from + end + 4));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}
