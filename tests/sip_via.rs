//! Responses over UDP follow the top Via of their request (RFC 3261
//! §18.2.2, RFC 3581 §4), end to end with `tern up`: without `rport`, to
//! the source IP at the sent-by port (here a second socket's); with
//! `rport`, back to the source port; with `maddr`, to that address.
//!
//! Ports: SIP 15810, test sockets 15811-15813 (15813 on 127.0.0.2),
//! relay 32100-32199, instance `t-via-PID`; no ng, no HTTP.

mod common;
use common::*;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

const TERN_SIP: &str = "127.0.0.1:15810";

/// An OPTIONS whose top Via is `via`.
fn options(via: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:ping@{TERN_SIP} SIP/2.0\r\n\
         Via: {via};branch=z9hG4bKvia{n}\r\n\
         From: <sip:t@127.0.0.1>;tag=v{n}\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: via-{n}-{}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id()
    )
}

fn bind(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Sends OPTIONS number `n` from `from` (bounded: 3 sends, 1 s apart) and
/// returns the index in `socks` of the socket its 200 arrived on; every
/// socket is polled, so a response to the wrong one is seen too.
fn which_gets_200(from: &UdpSocket, via: &str, n: u32, socks: &[&UdpSocket]) -> Option<usize> {
    let msg = options(via, n);
    let cseq = format!("CSeq: {n} OPTIONS");
    let mut buf = [0u8; 65535];
    for _ in 0..3 {
        from.send_to(msg.as_bytes(), TERN_SIP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            for (i, s) in socks.iter().enumerate() {
                if let Ok((len, _)) = s.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..len]);
                    if text.starts_with("SIP/2.0 200") && text.contains(&cseq) {
                        return Some(i);
                    }
                }
            }
        }
    }
    None
}

#[test]
fn udp_responses_follow_the_via() {
    let instance = format!("t-via-{}", std::process::id());
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            TERN_SIP,
            "--ports",
            "32100-32199",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            "off",
        ],
        &["tern sip: listening"],
    );
    let first = bind("127.0.0.1:15811");
    let second = bind("127.0.0.1:15812");
    let third = bind("127.0.0.2:15813");
    let all = [&first, &second, &third];

    // No rport: the source IP at the sent-by port, i.e. the second socket.
    let via = "SIP/2.0/UDP 127.0.0.1:15812";
    assert_eq!(which_gets_200(&first, via, 1, &all), Some(1), "{via}");
    // rport: back to where the request came from.
    let via = "SIP/2.0/UDP 127.0.0.1:15812;rport";
    assert_eq!(which_gets_200(&first, via, 2, &all), Some(0), "{via}");
    // A host name in sent-by: received is the source IP, the port is
    // sent-by's.
    let via = "SIP/2.0/UDP ua.example.invalid:15812";
    assert_eq!(which_gets_200(&first, via, 3, &all), Some(1), "{via}");
    // maddr: that address, at the sent-by port.
    let via = "SIP/2.0/UDP 127.0.0.1:15813;maddr=127.0.0.2";
    assert_eq!(which_gets_200(&first, via, 4, &all), Some(2), "{via}");

    tern.stop();
    unlink_table(&instance);
}
