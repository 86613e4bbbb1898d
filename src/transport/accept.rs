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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

use super::prefixed::Prefixed;
use super::ws;
use crate::state::Shared;

/// The longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// A client must send its whole request head within this (slowloris).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts until the drain begins.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, router: Router) {
    let draining = shared.drain.started();
    tokio::pin!(draining);
    loop {
        let accepted = tokio::select! {
            () = &mut draining => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream, shared.clone(), router.clone()));
            }
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>, router: Router) {
    let mut buf = Vec::with_capacity(1024);
    let head_len = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(Some(len))) => len,
        Ok(Ok(None)) => return ws::handshake::refuse_oversized(stream).await,
        _ => return, // silent past the timeout, or gone
    };
    match ws::handshake::parse(&buf[..head_len]) {
        Some(request) => {
            let early_input = &buf[head_len..];
            ws::handshake::accept(stream, request, early_input, shared).await;
        }
        None => {
            buf.shrink_to_fit();
            let io = TokioIo::new(Prefixed::new(Bytes::from(buf), stream));
            let service = TowerToHyperService::new(router);
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
