//! Receiving a datagram with the kernel's arrival time (`SO_TIMESTAMPNS`,
//! socket(7)), so that a reply's latency ends when it reached the
//! generator's socket, not when the generator got round to reading it: on
//! a busy machine that wait is the generator's, not the SUT's.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Asks the kernel to stamp every datagram `s` receives; `false` when it
/// refuses (then [`recv`] returns no stamps).
pub fn enable_timestamps(s: &UdpSocket) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int we own.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// CLOCK_REALTIME in ns, the clock of `SO_TIMESTAMPNS`.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One non-blocking `recvmsg` on `s` into `buf`: the length, the source
/// (IPv4 only; `None` for another family) and the kernel's arrival time
/// (CLOCK_REALTIME ns) when stamped. `WouldBlock` when nothing waits.
pub fn recv(s: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>, Option<u64>)> {
    // SAFETY: all-zero sockaddr_in and msghdr are valid values.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut ctrl = [0u64; 8]; // 64 bytes, aligned for cmsghdr
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = &mut addr as *mut libc::sockaddr_in as *mut libc::c_void;
    h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    h.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: every pointer in `h` points at memory owned here that
    // outlives the call.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut h, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let src = (addr.sin_family == libc::AF_INET as libc::sa_family_t).then(|| {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        ))
    });
    let mut stamp = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // within `msg_controllen`; the timespec is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&h);
        // Bounded: the control buffer holds at most a few headers.
        for _ in 0..8 {
            if c.is_null() {
                break;
            }
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&h, c);
        }
    }
    Ok((n as usize, src, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_arrival_in_realtime() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_timestamps(&b));
        let mut buf = [0u8; 64];
        assert_eq!(
            recv(&b, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // The kernel turns arrival stamping on a moment later (a static
        // key flipped from a work queue); until then it stamps at read.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let t0 = realtime_ns();
        a.send_to(b"hello", b.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (n, src, stamp) = recv(&b, &mut buf).unwrap();
        let t1 = realtime_ns();
        assert_eq!(
            (&buf[..n], src),
            (&b"hello"[..], Some(a.local_addr().unwrap()))
        );
        let s = stamp.expect("stamped");
        // Arrived before we read it, which was 20 ms later.
        assert!(t0 <= s + 1_000_000 && s + 10_000_000 <= t1, "{t0} {s} {t1}");
    }
}
