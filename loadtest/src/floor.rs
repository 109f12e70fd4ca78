//! The floor: the least a userspace relay can do on this kernel. One UDP
//! socket; `recvmmsg` a batch, then `sendmmsg` the same buffers, unchanged,
//! to one fixed address. No parsing, no lookup, no copy.
//!
//! The generator targets it by sending every call's packets to the floor's
//! socket (no ng setup) and receiving them all on one receiver socket.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sys::{self, BATCH, RX_BUF};

/// A running floor forwarder thread.
pub struct Floor {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicI32>,
    thread: Option<JoinHandle<u64>>,
}

impl Floor {
    /// Binds on `ip:0` and forwards everything to `to`, on a thread pinned
    /// to `cpu` when given.
    pub fn start(bind: SocketAddr, to: SocketAddrV4, cpu: Option<usize>) -> io::Result<Floor> {
        let sock = UdpSocket::bind(bind)?;
        sys::set_bufs(&sock, 8 << 20);
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicI32::new(0));
        let (s, t) = (stop.clone(), tid.clone());
        let thread = std::thread::Builder::new()
            .name("tern-floor".into())
            .spawn(move || {
                if let Some(c) = cpu {
                    if let Err(e) = sys::pin_to(c) {
                        eprintln!("tern load: floor: cannot pin to CPU {c}: {e}");
                    }
                }
                t.store(sys::gettid(), Ordering::Release);
                forward(&sock, to, &s)
            })?;
        while tid.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        Ok(Floor {
            addr,
            stop,
            tid,
            thread: Some(thread),
        })
    }

    /// CPU time of the forwarder thread so far.
    pub fn cpu_ns(&self) -> Option<u64> {
        sys::thread_cpu_ns(std::process::id(), self.tid.load(Ordering::Acquire))
    }

    /// Stops the thread; returns how many datagrams it forwarded.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn forward(sock: &UdpSocket, to: SocketAddrV4, stop: &AtomicBool) -> u64 {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; RX_BUF]; BATCH];
    let mut dest = sys::sockaddr_v4(to);
    // SAFETY: all-zero iovec/mmsghdr are valid values.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut rx: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut tx: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for i in 0..BATCH {
        iovs[i].iov_base = bufs[i].as_mut_ptr() as *mut libc::c_void;
        iovs[i].iov_len = RX_BUF;
        rx[i].msg_hdr.msg_iov = &mut iovs[i];
        rx[i].msg_hdr.msg_iovlen = 1;
        tx[i].msg_hdr.msg_iov = &mut iovs[i];
        tx[i].msg_hdr.msg_iovlen = 1;
        tx[i].msg_hdr.msg_name = &mut dest as *mut libc::sockaddr_in as *mut libc::c_void;
        tx[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    let mut forwarded = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for iov in iovs.iter_mut() {
            iov.iov_len = RX_BUF;
        }
        // SAFETY: rx headers point at iovs/bufs that live for the loop.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                rx.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue; // timeout (stop check) or EINTR
        }
        let n = n as usize;
        for i in 0..n {
            iovs[i].iov_len = rx[i].msg_len as usize;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: tx headers point at iovs/bufs/dest that live for the loop.
            let r = unsafe { libc::sendmmsg(fd, tx[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r <= 0 {
                done += 1; // drop one (e.g. ECONNREFUSED) and go on
            } else {
                done += r as usize;
            }
        }
        forwarded += n as u64;
    }
    drop(bufs);
    forwarded
}
