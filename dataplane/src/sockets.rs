//! UDP sockets of relay legs and conversions between `SocketAddr` and the
//! kernel's `sockaddr_in`/`sockaddr_in6`, without allocation.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a nonblocking UDP socket with `SO_REUSEADDR` on `ip:port`. An IPv6
/// address also accepts IPv4 (dual stack; `IPV6_V6ONLY` off).
///
/// Errors: the socket, option and bind syscalls' errors (e.g.
/// `AddrInUse`).
pub fn bind_udp(ip: IpAddr, port: u16) -> io::Result<Socket> {
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if ip.is_ipv6() {
        // Best effort: some systems forbid dual-stack sockets.
        let _ = s.set_only_v6(false);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Storage for either socket address family, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RawAddr {
    /// IPv4 form.
    pub v4: libc::sockaddr_in,
    /// IPv6 form.
    pub v6: libc::sockaddr_in6,
}

impl RawAddr {
    /// All zero.
    pub fn zeroed() -> RawAddr {
        // SAFETY: all-zero is a valid sockaddr_in6 (and sockaddr_in).
        unsafe { std::mem::zeroed() }
    }
}

/// Writes `dest` into `out` in the form a socket of family `v6_socket`
/// expects (an IPv4 destination becomes IPv4-mapped on an IPv6 socket) and
/// returns its length; `None` if an IPv4 socket cannot reach `dest`.
#[inline]
pub fn write_sockaddr(dest: SocketAddr, v6_socket: bool, out: &mut RawAddr) -> Option<u32> {
    let v6 = |a: &SocketAddrV6| libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: a.port().to_be(),
        sin6_flowinfo: a.flowinfo(),
        sin6_addr: libc::in6_addr {
            s6_addr: a.ip().octets(),
        },
        sin6_scope_id: a.scope_id(),
    };
    match (dest, v6_socket) {
        (SocketAddr::V4(a), false) => {
            out.v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            Some(std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        (SocketAddr::V4(a), true) => {
            let m = SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0);
            out.v6 = v6(&m);
            Some(std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
        (SocketAddr::V6(a), true) => {
            out.v6 = v6(&a);
            Some(std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
        (SocketAddr::V6(a), false) => {
            let v4 = a.ip().to_ipv4_mapped()?;
            write_sockaddr(SocketAddr::new(IpAddr::V4(v4), a.port()), false, out)
        }
    }
}

/// Parses the source address the kernel wrote (a `sockaddr_in` or
/// `sockaddr_in6`, possibly unaligned). `None` for other families or a
/// short buffer.
#[inline]
pub fn read_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let fam = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    if i32::from(fam) == libc::AF_INET && name.len() >= std::mem::size_of::<libc::sockaddr_in>() {
        // SAFETY: length checked; read_unaligned copes with any alignment.
        let a = unsafe { name.as_ptr().cast::<libc::sockaddr_in>().read_unaligned() };
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
            u16::from_be(a.sin_port),
        )))
    } else if i32::from(fam) == libc::AF_INET6
        && name.len() >= std::mem::size_of::<libc::sockaddr_in6>()
    {
        // SAFETY: as above.
        let a = unsafe { name.as_ptr().cast::<libc::sockaddr_in6>().read_unaligned() };
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(a.sin6_addr.s6_addr),
            u16::from_be(a.sin6_port),
            a.sin6_flowinfo,
            a.sin6_scope_id,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &RawAddr, len: u32) -> Vec<u8> {
        // SAFETY: RawAddr is plain old data of at least `len` bytes.
        unsafe { std::slice::from_raw_parts((r as *const RawAddr).cast::<u8>(), len as usize) }
            .to_vec()
    }

    #[test]
    fn sockaddr_round_trips() {
        let mut r = RawAddr::zeroed();
        for (a, v6) in [
            ("10.1.2.3:4000", false),
            ("[2001:db8::1]:5", true),
            ("[::ffff:10.0.0.1]:7", false),
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let len = write_sockaddr(a, v6, &mut r).unwrap();
            let back = read_sockaddr(&bytes(&r, len)).unwrap();
            assert_eq!(crate::leg::normalize(back), crate::leg::normalize(a));
        }
        let a: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let len = write_sockaddr(a, true, &mut r).unwrap();
        assert_eq!(len, 28);
        assert_eq!(
            read_sockaddr(&bytes(&r, len)),
            Some("[::ffff:10.1.2.3]:4000".parse().unwrap())
        );
        assert_eq!(
            write_sockaddr("[2001:db8::1]:5".parse().unwrap(), false, &mut r),
            None
        );
        assert_eq!(read_sockaddr(&[1, 0, 0]), None);
        assert_eq!(read_sockaddr(&[]), None);
    }

    #[test]
    fn binds_and_reports_ports_in_use() {
        let s = bind_udp("127.0.0.1".parse().unwrap(), 0).unwrap();
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        // A socket without SO_REUSEADDR holding the port makes ours fail.
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = std.local_addr().unwrap().port();
        assert!(bind_udp("127.0.0.1".parse().unwrap(), busy).is_err());
        assert_ne!(port, 0);
    }
}
