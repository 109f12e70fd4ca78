//! Thin wrappers over the system calls the generator uses: batched UDP I/O
//! (`sendmmsg`/`recvmmsg`), CPU pinning, the monotonic clock and per-thread
//! CPU time from `/proc/PID/task/*/schedstat`.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// Messages per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;
/// Receive buffer per message.
pub const RX_BUF: usize = 2048;

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for
    // cpu < CPU_SETSIZE, which we check.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpu out of range",
            ));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Nanoseconds on CPU of one thread (`/proc/PID/task/TID/schedstat`,
/// first field).
pub fn thread_cpu_ns(pid: u32, tid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds on CPU of all threads of `pid` alive now (from each
/// thread's schedstat; threads that exited earlier are not counted, which
/// is fine for a relay whose workers live as long as it does).
pub fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let e = e?;
        if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// System-wide busy CPU time in ns: user + system + irq + softirq summed
/// over all CPUs (the `cpu` line of `/proc/stat`, in clock ticks).
pub fn system_busy_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    busy_ns_of(s.lines().next()?, clock_ticks())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 if unknown).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// user + system + irq + softirq of a `/proc/stat` `cpu` line
/// (`cpu user nice system idle iowait irq softirq ...`), in ns.
fn busy_ns_of(line: &str, hz: u64) -> Option<u64> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.take(7).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [user, _nice, system, _idle, _iowait, irq, softirq] = v[..] else {
        return None;
    };
    Some((user + system + irq + softirq) * (1_000_000_000 / hz.max(1)))
}

/// Asks for `bytes` of socket buffer in both directions (forced when
/// permitted, else capped by the sysctl limits).
pub fn set_bufs(sock: &UdpSocket, bytes: i32) {
    let fd = sock.as_raw_fd();
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        // SAFETY: setsockopt reads an int we own.
        unsafe {
            let p = &bytes as *const i32 as *const libc::c_void;
            let n = std::mem::size_of::<i32>() as libc::socklen_t;
            if libc::setsockopt(fd, libc::SOL_SOCKET, force, p, n) != 0 {
                libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, n);
            }
        }
    }
}

pub fn sockaddr_v4(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

pub fn v4(a: SocketAddr) -> io::Result<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{a}: the generator speaks IPv4 only"),
        )),
    }
}

/// A batch of outgoing datagrams, each with its own destination, sent with
/// one `sendmmsg`.
pub struct TxBatch {
    bufs: Vec<[u8; RX_BUF]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    pub len: usize,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TxBatch {
    pub fn new() -> TxBatch {
        TxBatch {
            bufs: vec![[0; RX_BUF]; BATCH],
            lens: vec![0; BATCH],
            // SAFETY: all-zero sockaddr_in/iovec/mmsghdr are valid values.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// The next free slot: its buffer to fill; call [`TxBatch::commit`].
    pub fn next_buf(&mut self) -> &mut [u8; RX_BUF] {
        &mut self.bufs[self.len]
    }

    pub fn commit(&mut self, len: usize, to: &libc::sockaddr_in) {
        self.lens[self.len] = len;
        self.addrs[self.len] = *to;
        self.len += 1;
    }

    /// Sends everything queued on `sock`; returns how many went out (the
    /// rest are dropped: the caller counts them as not sent).
    pub fn flush(&mut self, sock: &UdpSocket) -> usize {
        let n = self.len;
        if n == 0 {
            return 0;
        }
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let (mut sent, mut done) = (0, 0);
        while done < n {
            // SAFETY: hdrs[sent..n] point into buffers owned by self that
            // outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as u32,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // EAGAIN: give up on the rest. ECONNREFUSED (an ICMP error
                // of an earlier datagram), ENOBUFS: that one is not sent.
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                done += 1;
                continue;
            }
            sent += r as usize;
            done += r as usize;
        }
        self.len = 0;
        sent
    }
}

/// Receive buffers for one `recvmmsg`.
pub struct RxBatch {
    bufs: Vec<[u8; RX_BUF]>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: vec![[0; RX_BUF]; BATCH],
            // SAFETY: all-zero sockaddr_in/iovec/mmsghdr are valid values.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// One `recvmmsg` with `flags` (e.g. `MSG_DONTWAIT` or
    /// `MSG_WAITFORONE`); returns how many datagrams arrived (0 when none).
    pub fn recv(&mut self, fd: i32, flags: i32) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: RX_BUF,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: the headers point into buffers owned by self.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    /// The UDP source port of datagram `i` of the last receive.
    pub fn src_port(&self, i: usize) -> u16 {
        u16::from_be(self.addrs[i].sin_port)
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.hdrs[i].msg_len as usize]
    }

    /// Datagram `i`, mutable, with its length (the floor forwards it).
    pub fn len_of(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }

    pub fn buf(&self, i: usize) -> &[u8; RX_BUF] {
        &self.bufs[i]
    }
}

/// Waits until one of `fds` is readable or `timeout_ns` pass (`ppoll`:
/// ns resolution). Readiness is not returned: callers read until
/// `WouldBlock` anyway; an error (e.g. `EINTR`) is an early return.
pub fn wait_readable(fds: &[i32], timeout_ns: u64) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `p` and `ts` are valid for the call; no signal mask.
    unsafe {
        libc::ppoll(
            p.as_mut_ptr(),
            p.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_user_system_irq_softirq() {
        let l = "cpu  100 5 20 9000 3 1 2 0 0 0";
        assert_eq!(busy_ns_of(l, 100), Some(123 * 10_000_000));
        assert_eq!(busy_ns_of("cpu0 1 2 3 4 5 6 7", 100), None);
        assert_eq!(busy_ns_of("cpu 1 2", 100), None);
        assert!(system_busy_ns().is_some());
    }
}
