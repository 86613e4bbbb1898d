//! A shard's UDP socket: one of a `SO_REUSEPORT` group bound to the QUIC
//! port (the kernel hashes each client's 4-tuple to one socket of the group,
//! so a connection's packets all reach one shard), and the batch its
//! datagrams leave in, one `sendmmsg` for up to [`BATCH`] of them.
//!
//! The batch owns its buffers: quinn-proto's `poll_transmit` writes each
//! datagram straight into the next free one, so nothing is copied between
//! the connection and the kernel.
//!
//! On a wildcard address the sockets report each datagram's destination, and
//! the batch sends each datagram from its connection's address
//! ([`super::pktinfo`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::pktinfo::{Control, set_source};
use crate::udp::BUFFER_BYTES;

/// Datagrams per `sendmmsg`.
pub const BATCH: usize = 64;
/// The largest datagram quinn-proto writes (its MTU ceiling with discovery off is lower).
pub const MAX_DATAGRAM: usize = 1500;

/// Binds `count` sockets (at least one) to `addr` as one `SO_REUSEPORT`
/// group, with storm-sized buffers ([`crate::udp`]). Port 0 picks a port for
/// the first and binds the rest to it.
///
/// `SO_REUSEPORT` would also let a second process of the same user join the
/// group and take part of its clients. So a named port is first bound plainly,
/// which fails while any socket holds it (ours included, once bound: the
/// second process fails the same way), and released for the group.
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    if addr.port() != 0 {
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let mut sockets = Vec::new();
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        // Refused sizes are not fatal: the kernel's own cap applies either way.
        let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        forbid_fragmentation(&socket, addr.is_ipv6())?;
        if addr.ip().is_unspecified() {
            report_destinations(&socket, addr.is_ipv6())?;
        }
        socket.bind(&addr.into())?;
        addr = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// Sets Don't Fragment on everything the socket sends, as RFC 9000 §14 asks
/// and as quinn's own socket layer does: `IP_PMTUDISC_PROBE` sets DF and
/// sends up to the interface's MTU whatever the kernel's path-MTU guess. A
/// datagram too large for a path is then dropped there, never fragmented
/// (path MTU discovery is off, so ours stay at quinn-proto's 1,200 bytes and
/// would be refragmented only on a path below the minimum QUIC asks). It also
/// spares Linux the keyed hash it computes for an IP ID only fragments need.
fn forbid_fragmentation(socket: &Socket, ipv6: bool) -> io::Result<()> {
    set_int_option(socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)?;
    if ipv6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)?;
        // `__ip6_append_data` fragments under PROBE unless this is set too.
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
    }
    Ok(())
}

/// Each datagram read comes with the local address it was sent to
/// ([`super::pktinfo::receive_with_destination`]).
fn report_destinations(socket: &Socket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

fn set_int_option(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a live c_int, its size passed with it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Datagrams waiting to leave, in order.
pub struct Batch {
    buffers: Vec<Vec<u8>>,
    destinations: Vec<SockAddr>,
    /// The local address each datagram leaves from; `None`: the kernel's choice.
    sources: Vec<Option<IpAddr>>,
    controls: Vec<Control>,
    /// Filled slots, from the front.
    len: usize,
    /// Slots already sent from the front (a partial `sendmmsg`).
    sent: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            buffers: (0..BATCH).map(|_| Vec::with_capacity(MAX_DATAGRAM)).collect(),
            destinations: (0..BATCH).map(|_| SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)))).collect(),
            sources: vec![None; BATCH],
            controls: vec![Control::EMPTY; BATCH],
            len: 0,
            sent: 0,
        }
    }
}

impl Batch {
    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.len == self.sent
    }

    /// The next free buffer, emptied; [`Batch::commit`] keeps what was written to it.
    pub fn next_buffer(&mut self) -> &mut Vec<u8> {
        let buffer = &mut self.buffers[self.len];
        buffer.clear();
        buffer
    }

    /// Keeps the datagram just written to [`Batch::next_buffer`], `size` bytes
    /// to `to`, from `from` (quinn-proto's `src_ip`).
    pub fn commit(&mut self, to: SocketAddr, from: Option<IpAddr>, size: usize) {
        debug_assert!(size <= self.buffers[self.len].len());
        self.buffers[self.len].truncate(size);
        self.destinations[self.len] = to.into();
        self.sources[self.len] = from;
        self.len += 1;
    }

    /// Copies a datagram in (the endpoint's own answers: resets, refusals).
    pub fn push(&mut self, to: SocketAddr, from: Option<IpAddr>, datagram: &[u8]) {
        let buffer = self.next_buffer();
        buffer.extend_from_slice(datagram);
        self.commit(to, from, datagram.len());
    }

    /// Sends what waits. `Ok` once all left; `WouldBlock` leaves the rest for
    /// the socket's next WRITABLE. Datagrams the kernel refuses for any other
    /// reason (a peer's unreachable address) are dropped, as a network would:
    /// QUIC recovers them or gives up on that peer.
    pub fn flush(&mut self, socket: &mio::net::UdpSocket) -> io::Result<()> {
        while !self.is_empty() {
            let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let count = self.len - self.sent;
            // One borrow of the controls for the whole loop: the headers keep
            // pointers into it until the call.
            let controls = &mut self.controls[..];
            for i in 0..count {
                let slot = self.sent + i;
                iovecs[i] = libc::iovec {
                    iov_base: self.buffers[slot].as_ptr() as *mut libc::c_void,
                    iov_len: self.buffers[slot].len(),
                };
                let header = &mut headers[i].msg_hdr;
                header.msg_name = self.destinations[slot].as_ptr() as *mut libc::c_void;
                header.msg_namelen = self.destinations[slot].len();
                header.msg_iov = &mut iovecs[i];
                header.msg_iovlen = 1;
                if let Some(source) = self.sources[slot] {
                    set_source(header, &mut controls[slot], source);
                }
            }
            // SAFETY: every header points at a live buffer, address and control
            // data of this batch, which outlive the call; the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if sent < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => return Err(error),
                    io::ErrorKind::Interrupted => continue,
                    // The source is no longer this host's (an address removed
                    // since the connection began): once more, from the
                    // kernel's choice, as quinn's socket layer does.
                    _ if self.sources[self.sent].take().is_some() => {
                        tracing::debug!(%error, "a QUIC datagram's source was refused; sent without it");
                    }
                    // The first datagram was refused: drop it and go on.
                    _ => self.sent += 1,
                }
            } else {
                self.sent += sent as usize;
            }
        }
        self.len = 0;
        self.sent = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::quic::pktinfo::receive_with_destination;

    #[test]
    fn a_port_held_by_a_group_cannot_be_joined_by_another_group() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = group[0].local_addr().unwrap();
        let second = bind_group(taken, 2).expect_err("a second node on the same port");
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        drop(group);
        assert_eq!(bind_group(taken, 2).unwrap().len(), 2, "free again once the first is gone");
    }

    fn int_option(socket: &std::net::UdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let (mut value, mut len) = (-1 as libc::c_int, std::mem::size_of::<libc::c_int>() as libc::socklen_t);
        // SAFETY: the kernel writes at most `len` bytes into `value`.
        let result =
            unsafe { libc::getsockopt(socket.as_raw_fd(), level, name, (&raw mut value).cast(), &raw mut len) };
        assert_eq!(result, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    #[test]
    fn every_socket_of_a_group_sends_with_dont_fragment() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        for socket in &group {
            assert_eq!(int_option(socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), libc::IP_PMTUDISC_PROBE);
        }
        // IPv6 where the machine has a loopback for it.
        if let Ok(group) = bind_group("[::1]:0".parse().unwrap(), 1) {
            let socket = &group[0];
            assert_eq!(int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER), libc::IPV6_PMTUDISC_PROBE);
            assert_eq!(int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG), 1);
        }
    }

    /// Reads one datagram from a non-blocking shard socket, waiting for it.
    fn receive(socket: &mio::net::UdpSocket) -> (Vec<u8>, SocketAddr, Option<IpAddr>) {
        let mut buf = [0u8; 64];
        for _ in 0..2000 {
            match receive_with_destination(socket, &mut buf) {
                Ok((len, from, to)) => return (buf[..len].to_vec(), from, to),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("recvmsg: {e}"),
            }
        }
        panic!("no datagram came");
    }

    /// A client sends to `to` (one of the host's addresses) on a wildcard
    /// group; the answer must come back from `to`, not the kernel's choice.
    fn answers_from_the_address_written_to(group_addr: &str, to: SocketAddr) {
        let group = bind_group(group_addr.parse().unwrap(), 1).unwrap();
        let port = group[0].local_addr().unwrap().port();
        let server = mio::net::UdpSocket::from_std(group.into_iter().next().unwrap());
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SocketAddr::new(to.ip(), port);
        client.send_to(b"hello", to).unwrap();
        let (datagram, from, destination) = receive(&server);
        assert_eq!((&datagram[..], from.port()), (&b"hello"[..], client.local_addr().unwrap().port()));
        let destination = destination.expect("a wildcard socket reports the destination");
        let same_ip = match destination {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4) == Some(to.ip()),
            v4 => v4 == to.ip(),
        };
        assert!(same_ip, "destination {destination}, sent to {to}");
        let mut batch = Batch::default();
        batch.push(from, Some(destination), b"answer");
        batch.flush(&server).unwrap();
        let mut buf = [0u8; 16];
        let (len, answered_from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], answered_from), (&b"answer"[..], to), "the answer comes from where the client wrote");
    }

    #[test]
    fn a_wildcard_socket_answers_from_the_address_the_client_wrote_to() {
        // 127.0.0.2 is this host's too, but not the address the kernel would pick to answer 127.0.0.1.
        answers_from_the_address_written_to("0.0.0.0:0", "127.0.0.2:0".parse().unwrap());
        // A dual-stack IPv6 socket (where IPv6 is there and not v6-only) sees the IPv4 client mapped.
        let dual_stack = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0");
        if dual_stack && std::net::UdpSocket::bind("[::]:0").is_ok() {
            answers_from_the_address_written_to("[::]:0", "127.0.0.3:0".parse().unwrap());
        }
    }

    #[test]
    fn a_source_the_host_no_longer_has_is_dropped_not_the_datagram() {
        let group = bind_group("0.0.0.0:0".parse().unwrap(), 1).unwrap();
        let server = mio::net::UdpSocket::from_std(group.into_iter().next().unwrap());
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap(); // a hang bound, not a timing
        let mut batch = Batch::default();
        // 192.0.2.1 (TEST-NET-1) is no address of this host: the kernel refuses it as a source.
        batch.push(client.local_addr().unwrap(), Some("192.0.2.1".parse().unwrap()), b"still");
        batch.flush(&server).unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = client.recv_from(&mut buf).expect("the datagram is sent without its source");
        assert_eq!((&buf[..len], from.ip()), (&b"still"[..], IpAddr::from([127, 0, 0, 1])), "from the kernel's choice");
        assert!(batch.is_empty());
    }

    #[test]
    fn a_group_shares_one_port_and_a_batch_reaches_every_destination() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert!(group.iter().all(|s| s.local_addr().unwrap().port() == port), "one port for the group");
        let sender = mio::net::UdpSocket::from_std(group.into_iter().next().unwrap());
        let receivers: Vec<_> = (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let mut batch = Batch::default();
        for round in 0..BATCH + 6 {
            if batch.is_full() {
                batch.flush(&sender).unwrap();
            }
            let to = receivers[round % 3].local_addr().unwrap();
            let buffer = batch.next_buffer();
            buffer.extend_from_slice(&(round as u32).to_be_bytes());
            buffer.extend_from_slice(b"junk past the size");
            batch.commit(to, None, 4);
        }
        batch.flush(&sender).unwrap();
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for (i, receiver) in receivers.iter().enumerate() {
            let expected: Vec<usize> = (0..BATCH + 6).filter(|round| round % 3 == i).collect();
            receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            for _ in &expected {
                let n = receiver.recv(&mut buf).unwrap();
                assert_eq!(n, 4, "only the committed size leaves");
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize);
            }
            assert_eq!(got, expected, "in order, to the right peer");
        }
    }
}
