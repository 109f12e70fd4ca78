//! ICMP errors for the UDP transport (RFC 3261 §18.4: an ICMP error for
//! a request is a transport error, so the client transaction fails at
//! once and a trunk goes to its next gateway rather than waiting for
//! Timer B). With `IP_RECVERR`/`IPV6_RECVERR` on the socket, Linux
//! queues each ICMP error with the destination of the datagram that
//! caused it; [`take_errors`] reads that queue.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Most queued errors read per call (the queue is bounded by the
/// socket's receive buffer anyway).
const MAX_ERRORS: usize = 64;

/// Asks the kernel to queue ICMP errors on `sock` (best effort: false
/// when refused).
pub fn enable(sock: &impl AsRawFd, v6: bool) -> bool {
    let one: libc::c_int = 1;
    let (level, opt) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    // SAFETY: setsockopt reads `one` (a c_int, size given) and nothing
    // else; the fd is the socket's, open while `sock` is borrowed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// One queued ICMP error: the destination of the datagram it answered,
/// and its errno (`ECONNREFUSED` for port unreachable, `EHOSTUNREACH`,
/// `ENETUNREACH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub dest: SocketAddr,
    pub errno: i32,
}

/// Drains `sock`'s error queue (`MSG_ERRQUEUE`, non-blocking): the
/// errors whose destination could be read, oldest first.
pub fn take_errors(sock: &impl AsRawFd) -> Vec<IcmpError> {
    let mut out = Vec::new();
    for _ in 0..MAX_ERRORS {
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut data = [0u8; 64];
        let mut control = [0u8; 512];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        // SAFETY: every pointer in `msg` points at a live local buffer of
        // the length given, for the duration of the call.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break;
        }
        let Some(dest) = sockaddr(&name) else {
            continue;
        };
        let mut errno = 0;
        // SAFETY: the CMSG macros walk the control buffer the kernel
        // filled, within msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let (lvl, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                if (lvl == libc::IPPROTO_IP && ty == libc::IP_RECVERR)
                    || (lvl == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR)
                {
                    let ee = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                    errno = std::ptr::read_unaligned(ee).ee_errno as i32;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        out.push(IcmpError { dest, errno });
    }
    out
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { *(s as *const _ as *const libc::sockaddr_in) };
            let ip = u32::from_be(a.sin_addr.s_addr).into();
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { *(s as *const _ as *const libc::sockaddr_in6) };
            let ip = a.sin6_addr.s6_addr.into();
            Some(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), 0, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    #[test]
    fn a_datagram_to_a_closed_port_comes_back_as_its_destination() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(&s, false));
        // A port nothing listens on: bind one, note it, close it.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        s.send_to(b"OPTIONS", closed).unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < end {
            got = take_errors(&s);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            got,
            [IcmpError {
                dest: closed,
                errno: libc::ECONNREFUSED
            }]
        );
        assert!(take_errors(&s).is_empty(), "drained");
    }
}
