//! The UDP socket under a QUIC endpoint, with buffers sized for a storm: for
//! the QUIC listener and for clients alike (the load harness binds its
//! endpoints here), so it sits beside the protocol, not inside the server's
//! transport.
//!
//! quinn binds with the kernel's default buffers (`net.core.rmem_default`,
//! 208 KiB on most systems). Thousands of clients reconnecting at once send
//! their Initials together, and what does not fit in the receive buffer is
//! dropped: each client then waits out its retransmission timer, doubling,
//! and many give up (docs/benchmarks.md §14). So the socket asks for
//! [`BUFFER_BYTES`] each way; the kernel grants up to `net.core.rmem_max` /
//! `wmem_max` (deploy/sysctl raises them), and what it granted is returned
//! so that the server can log it. Servers and the load harness's clients
//! both bind their endpoints here.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked for: a few seconds of a storm's Initials.
pub const BUFFER_BYTES: usize = 8 << 20;

/// The buffer sizes the kernel reports for a socket (Linux: double what it
/// grants, bookkeeping included).
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    pub receive: usize,
    pub send: usize,
}

/// A QUIC endpoint (a server when `server` is given) on a UDP socket bound to
/// `addr` with buffers as large as the kernel allows up to [`BUFFER_BYTES`].
pub fn endpoint(
    addr: SocketAddr,
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<(quinn::Endpoint, Buffers)> {
    let (socket, buffers) = bind(addr)?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("QUIC needs the tokio runtime"))?;
    Ok((quinn::Endpoint::new(config, server, socket, runtime)?, buffers))
}

fn bind(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, Buffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Refused sizes are not fatal: the kernel's own cap applies either way.
    let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(BUFFER_BYTES);
    socket.bind(&addr.into())?;
    let buffers = Buffers { receive: socket.recv_buffer_size()?, send: socket.send_buffer_size()? };
    Ok((socket.into(), buffers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `net.core` setting, or 0 where it cannot be read.
    fn net_core(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn asks_for_more_than_the_default_and_reports_what_it_got() {
        let (socket, Buffers { receive, send }) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(socket.local_addr().unwrap().port() != 0);
        // Any kernel grants at least its default, and rmem_max is never below it.
        let (default, max) = (net_core("rmem_default"), net_core("rmem_max"));
        assert!(receive >= default.min(BUFFER_BYTES), "receive buffer {receive} below the default {default}");
        if max > default {
            assert!(receive > default, "asked for {BUFFER_BYTES}, rmem_max {max}, got only {receive}");
        }
        assert!(send > 0);
    }
}
