//! The UDP socket under a QUIC endpoint, with buffers sized for a storm.
//!
//! quinn binds with the kernel's default buffers (`net.core.rmem_default`,
//! 208 KiB on most systems). Thousands of clients reconnecting at once send
//! their Initials together, and what does not fit in the receive buffer is
//! dropped: each client then waits out its retransmission timer, doubling,
//! and many give up (docs/benchmarks.md §14). So the socket asks for
//! [`BUFFER_BYTES`] each way; the kernel grants up to `net.core.rmem_max` /
//! `wmem_max` (deploy/sysctl raises them), and what it granted is returned
//! so that the server can log it.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked for: a few seconds of a storm's Initials.
pub const BUFFER_BYTES: usize = 8 << 20;

/// A bound UDP socket with buffers as large as the kernel allows up to
/// [`BUFFER_BYTES`], and the (receive, send) sizes the kernel reports.
pub fn bind(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Refused sizes are not fatal: the kernel's own cap applies either way.
    let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(BUFFER_BYTES);
    socket.bind(&addr.into())?;
    let granted = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
    Ok((socket.into(), granted.0, granted.1))
}

/// A client endpoint (no server role) on such a socket.
pub fn client_endpoint(addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let (socket, _, _) = bind(addr)?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_more_than_the_default_and_reports_what_it_got() {
        let (socket, receive, send) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(socket.local_addr().unwrap().port() != 0);
        // Linux reports double what it grants (bookkeeping included); any
        // kernel grants at least its default, and rmem_max is never below it.
        let default = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(0);
        assert!(receive >= default.min(BUFFER_BYTES), "receive buffer {receive} below the default {default}");
        if max > default {
            assert!(receive > default, "asked for {BUFFER_BYTES}, rmem_max {max}, got only {receive}");
        }
        assert!(send > 0);
    }
}
