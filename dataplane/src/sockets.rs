//! UDP sockets of relay legs and conversions between `SocketAddr` and the
//! kernel's `sockaddr_in`/`sockaddr_in6`, without allocation.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a nonblocking UDP socket on `ip:port`. An IPv6 address also
/// accepts IPv4 (dual stack; `IPV6_V6ONLY` off). No `SO_REUSEADDR`: for
/// UDP it would let a second socket that also sets it share the port (and
/// its packets), so a relay port is exclusively the relay's.
///
/// With `drop_all`, the [`drop_all`] filter is attached before the bind,
/// so the socket never queues a datagram until [`pass_all`] is called:
/// the state of a free slot's sockets.
///
/// Errors: the socket, option and bind syscalls' errors (e.g.
/// `AddrInUse` when another socket on the host holds the port).
pub fn bind_udp(ip: IpAddr, port: u16, drop_all: bool) -> io::Result<Socket> {
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if ip.is_ipv6() {
        // Best effort: some systems forbid dual-stack sockets.
        let _ = s.set_only_v6(false);
    }
    s.set_nonblocking(true)?;
    set_media_tos(&s, ip, tern_shared::MEDIA_TOS);
    if drop_all {
        self::drop_all(&s)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

/// Marks what `s` sends with TOS byte `tos` (`IP_TOS`; on IPv6 also
/// `IPV6_TCLASS`, and `IP_TOS` for the IPv4 traffic of a dual-stack
/// socket). Best effort: media still flows unmarked where the host
/// refuses.
pub fn set_media_tos(s: &Socket, ip: IpAddr, tos: u8) {
    if ip.is_ipv6() {
        let _ = s.set_tclass_v6(u32::from(tos));
    }
    let _ = s.set_tos(u32::from(tos));
}

/// Attaches a one-instruction classic BPF filter (`ret #0`: keep zero
/// bytes) to `s`, so the kernel drops every datagram for it before it is
/// queued: a bound port whose slot is free costs no buffer memory, and
/// nothing addressed to it waits for the next call.
///
/// Errors: `setsockopt(SO_ATTACH_FILTER)`'s.
pub fn drop_all(s: &Socket) -> io::Result<()> {
    const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    s.attach_filter(&[libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    }])
}

/// Removes the filter of [`drop_all`]: `s` queues datagrams again.
///
/// Errors: `setsockopt(SO_DETACH_FILTER)`'s.
pub fn pass_all(s: &Socket) -> io::Result<()> {
    s.detach_filter()
}

/// Discards up to `max` datagrams queued on nonblocking `s` (zero-length
/// reads: UDP drops the rest of a datagram that does not fit) and returns
/// how many there were. Stops at the first `EAGAIN` or other error.
pub fn discard_queued(s: &Socket, max: usize) -> usize {
    let mut n = 0;
    while n < max {
        // SAFETY: a zero-length read into no buffer; the fd is valid for
        // the life of `s`.
        let r = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(s),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if r < 0 {
            break;
        }
        n += 1;
    }
    n
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
    fn media_sockets_are_marked_ef() {
        let s = bind_udp(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, false).unwrap();
        assert_eq!(s.tos().unwrap(), u32::from(tern_shared::MEDIA_TOS));
        if let Ok(s6) = bind_udp(IpAddr::V6(Ipv6Addr::LOCALHOST), 0, false) {
            assert_eq!(s6.tclass_v6().unwrap(), u32::from(tern_shared::MEDIA_TOS));
        }
    }

    #[test]
    fn binds_and_reports_ports_in_use() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let s = bind_udp(lo, 0, false).unwrap();
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        assert_ne!(port, 0);
        // A plain socket holding the port makes ours fail.
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = std.local_addr().unwrap().port();
        assert!(bind_udp(lo, busy, false).is_err());
        // So does one that sets SO_REUSEADDR: ours does not, so the two
        // cannot share the port.
        let reuse = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        reuse.set_reuse_address(true).unwrap();
        reuse.bind(&SocketAddr::new(lo, 0).into()).unwrap();
        let taken = reuse.local_addr().unwrap().as_socket().unwrap().port();
        assert!(bind_udp(lo, taken, true).is_err());
        // And ours keeps another relay off its port.
        assert!(bind_udp(lo, port, false).is_err());
    }

    #[test]
    fn drop_all_filter_queues_nothing_until_passed() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let s = bind_udp(lo, 0, true).unwrap();
        let at = s.local_addr().unwrap().as_socket().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            tx.send_to(b"early", at).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(discard_queued(&s, 100), 0, "the filter dropped them");
        pass_all(&s).unwrap();
        for _ in 0..3 {
            tx.send_to(b"late", at).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(discard_queued(&s, 2), 2, "bounded by max");
        assert_eq!(discard_queued(&s, 100), 1);
        // Filtered again: queued ones stay until discarded, new ones drop.
        tx.send_to(b"queued", at).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop_all(&s).unwrap();
        tx.send_to(b"dropped", at).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(discard_queued(&s, 100), 1);
    }
}
