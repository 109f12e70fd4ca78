//! What the dataplane's loopback tests share: peer sockets, addresses on
//! loopback, a bounded receive and a bounded wait.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A peer socket on loopback; receives wait at most 300 ms.
pub fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// `127.0.0.1:port`.
pub fn at(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// One datagram's bytes, or `None` at the socket's timeout.
pub fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut b = [0u8; 2048];
    s.recv_from(&mut b).ok().map(|(n, _)| b[..n].to_vec())
}

/// Polls `f` every 5 ms for at most `ms` ms.
pub fn wait_until(ms: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}
