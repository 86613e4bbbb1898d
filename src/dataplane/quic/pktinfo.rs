//! Which of the host's addresses a datagram was sent to, and sending from
//! that address: the control messages (`IP_PKTINFO`, `IPV6_PKTINFO`) under a
//! QUIC socket bound to a wildcard address.
//!
//! On the default `0.0.0.0:4433`, a host with several addresses must answer
//! each client from the address the client sent to, or the client drops the
//! answer as coming from a stranger. So such sockets report each datagram's
//! destination, quinn-proto keeps it as the connection's local address, and
//! the batch ([`super::udp::Batch`]) sends every datagram from its
//! connection's (`src_ip`), as quinn's own socket layer does.
//!
//! Invariant: a [`Control`] handed to the kernel holds at most one message,
//! built by [`set_source`] or written by the kernel on receive.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd as _;

use socket2::SockAddr;

/// Room for one `IP_PKTINFO` or `IPV6_PKTINFO` control message, aligned as
/// `cmsghdr` must be.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Control([u8; CONTROL_BYTES]);

impl Control {
    pub const EMPTY: Control = Control([0; CONTROL_BYTES]);
}

/// `CMSG_SPACE(sizeof(struct in6_pktinfo))` is 40 on Linux: 64 has room.
const CONTROL_BYTES: usize = 64;

/// Reads one datagram into `buf`: its length, its sender, and the local
/// address it was sent to (where the socket reports it: bound to a wildcard
/// address, [`super::udp::bind_group`]).
pub fn receive_with_destination(
    socket: &mio::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iovec = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = Control::EMPTY;
    // SAFETY: `try_init` hands a zeroed address storage and its length for
    // the kernel to fill; the header points at it, `buf` and `control`, live
    // and as large as it says, for the duration of the call; the control
    // data read after it is what the kernel wrote (`msg_controllen`).
    let ((len, destination), from) = unsafe {
        SockAddr::try_init(|storage, storage_len| {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_name = storage.cast();
            header.msg_namelen = *storage_len;
            header.msg_iov = &raw mut iovec;
            header.msg_iovlen = 1;
            header.msg_control = control.0.as_mut_ptr().cast();
            header.msg_controllen = CONTROL_BYTES as _;
            let len = libc::recvmsg(socket.as_raw_fd(), &raw mut header, 0);
            if len < 0 {
                return Err(io::Error::last_os_error());
            }
            *storage_len = header.msg_namelen;
            Ok((len as usize, destination_of(&header)))
        })?
    };
    let from = from.as_socket().ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok((len, from, destination))
}

/// The destination address in a received message's control data, if any.
///
/// # Safety
/// `header` must describe a control buffer the kernel filled (`recvmsg`).
unsafe fn destination_of(header: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, and each data
    // read is of the type its level and type name, unaligned as it may be.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                    return Some(IpAddr::V4(Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes())));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => cmsg = libc::CMSG_NXTHDR(header, cmsg),
            }
        }
    }
    None
}

/// Points `header`'s control data at `control`, filled with the one message
/// that sends the datagram from `source`. `control` must stay where it is
/// until the header has been sent.
pub fn set_source(header: &mut libc::msghdr, control: &mut Control, source: IpAddr) {
    *control = Control::EMPTY;
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = CONTROL_BYTES as _;
    // SAFETY: the header's control data is `control`, CONTROL_BYTES long and
    // aligned for `cmsghdr`: room for either message at CMSG_FIRSTHDR.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(header);
        let data = libc::CMSG_DATA(cmsg);
        let size = match source {
            IpAddr::V4(ip) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data as *mut libc::in_pktinfo, info);
                std::mem::size_of::<libc::in_pktinfo>()
            }
            IpAddr::V6(ip) => {
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: ip.octets() }, ipi6_ifindex: 0 };
                std::ptr::write_unaligned(data as *mut libc::in6_pktinfo, info);
                std::mem::size_of::<libc::in6_pktinfo>()
            }
        };
        (*cmsg).cmsg_len = libc::CMSG_LEN(size as u32) as _;
        header.msg_controllen = libc::CMSG_SPACE(size as u32) as _;
    }
}
