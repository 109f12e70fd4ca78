//! Responses over UDP follow the top Via of their request (RFC 3261
//! §18.2.2, RFC 3581 §4), end to end with `tern up`: without `rport`, to
//! the source IP at the sent-by port (here a second socket's); with
//! `rport`, back to the source port; `maddr` is ignored (a reflection
//! vector).
//!
//! A request the B2BUA relays that is larger than 1300 bytes goes over
//! TCP (RFC 3261 §18.1.1), and over UDP after all when the callee does not
//! take TCP.
//!
//! Ports: SIP 15810 and 15820, test sockets 15811-15813 (15813 on
//! 127.0.0.2) and 15821-15823, relay 32100-32199 and 32200-32299,
//! instances `t-via-PID` and `t-via-big-PID`; no ng, no HTTP.

mod common;
use common::*;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
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
    let mut tern = spawn_sip_node(TERN_SIP, "32100-32199", &instance, &[]);
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
    // maddr is not followed: a datagram cannot aim responses elsewhere.
    let via = "SIP/2.0/UDP 127.0.0.1:15812;maddr=127.0.0.2";
    assert_eq!(which_gets_200(&first, via, 4, &all), Some(1), "{via}");

    tern.stop();
    unlink_table(&instance);
}

/// A REGISTER of `user` at `contact`, sent from `contact`'s socket.
fn register_at(sock: &UdpSocket, tern: &str, user: &str, contact: &str) {
    let msg = format!(
        "REGISTER sip:{tern} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {contact};rport;branch=z9hG4bKreg{user}\r\n\
         From: <sip:{user}@127.0.0.1>;tag=r{user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: reg-{user}-{}@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{contact}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id()
    );
    let mut buf = [0u8; 65535];
    for _ in 0..3 {
        sock.send_to(msg.as_bytes(), tern).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
    }
    panic!("{user} not registered");
}

/// An INVITE to `user` from the caller socket `me` whose SDP offer is
/// padded past 1300 bytes.
fn big_invite(tern: &str, me: &str, user: &str) -> String {
    let mut body = String::from(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16499 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    );
    for i in 0..20 {
        body.push_str(&format!("a=x-pad{i}:{}\r\n", "p".repeat(60)));
    }
    format!(
        "INVITE sip:{user}@{tern} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};rport;branch=z9hG4bKbig{user}\r\n\
         From: <sip:caller@127.0.0.1>;tag=c{user}\r\n\
         To: <sip:{user}@{tern}>\r\n\
         Call-ID: big-{user}-{}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{me}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        std::process::id(),
        body.len()
    )
}

/// A 486 answering the request `req` (its Via, From, To, Call-ID, CSeq).
fn busy(req: &str) -> String {
    let mut r = String::from("SIP/2.0 486 Busy Here\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        match name {
            "To" => r.push_str(&format!("{line};tag=busy\r\n")),
            "Via" | "From" | "Call-ID" | "CSeq" => r.push_str(&format!("{line}\r\n")),
            _ => {}
        }
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

/// Waits (bounded: 5 s) for a 486 to the call to `user` on the caller's
/// socket.
fn caller_gets_486(caller: &UdpSocket, user: &str) -> bool {
    let call_id = format!("Call-ID: big-{user}-");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65535];
    while Instant::now() < deadline {
        if let Ok((n, _)) = caller.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]);
            if t.starts_with("SIP/2.0 486") && t.contains(&call_id) {
                return true;
            }
        }
    }
    false
}

#[test]
fn large_requests_go_over_tcp_or_fall_back_to_udp() {
    const TERN: &str = "127.0.0.1:15820";
    let instance = format!("t-via-big-{}", std::process::id());
    let mut tern = spawn_sip_node(TERN, "32200-32299", &instance, &[]);
    // bob takes UDP and TCP on 15821; carol only UDP on 15822.
    let bob_udp = bind("127.0.0.1:15821");
    let bob_tcp = TcpListener::bind("127.0.0.1:15821").expect("bind bob TCP");
    bob_tcp.set_nonblocking(true).unwrap();
    let carol = bind("127.0.0.1:15822");
    let caller = bind("127.0.0.1:15823");
    register_at(&bob_udp, TERN, "bob", "127.0.0.1:15821");
    register_at(&carol, TERN, "carol", "127.0.0.1:15822");

    // To bob: the INVITE arrives on a TCP connection, Via TCP.
    let inv = big_invite(TERN, "127.0.0.1:15823", "bob");
    assert!(inv.len() > 1300);
    caller.send_to(inv.as_bytes(), TERN).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut conn = None;
    while Instant::now() < deadline && !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        if conn.is_none() {
            if let Ok((c, _)) = bob_tcp.accept() {
                c.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                conn = Some(c);
            }
        }
        if let Some(c) = conn.as_mut() {
            let mut buf = [0u8; 8192];
            if let Ok(n) = c.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("INVITE sip:bob@"), "over TCP: {text:?}");
    assert!(text.contains("Via: SIP/2.0/TCP "), "{text}");
    // Bob is busy, on the same connection: the caller hears it.
    let busy_bob = busy(&text);
    if let Some(c) = conn.as_mut() {
        std::io::Write::write_all(c, busy_bob.as_bytes()).unwrap();
    }
    assert!(caller_gets_486(&caller, "bob"), "486 from bob relayed");

    // To carol: the TCP connect is refused, the INVITE comes over UDP.
    let inv = big_invite(TERN, "127.0.0.1:15823", "carol");
    caller.send_to(inv.as_bytes(), TERN).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65535];
    let mut over_udp = None;
    while Instant::now() < deadline && over_udp.is_none() {
        if let Ok((n, _)) = carol.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.starts_with("INVITE sip:carol@") {
                over_udp = Some(t);
            }
        }
    }
    let text = over_udp.expect("INVITE to carol over UDP");
    assert!(text.len() > 1300);
    assert!(text.contains("Via: SIP/2.0/UDP "), "{text}");
    carol.send_to(busy(&text).as_bytes(), TERN).unwrap();
    assert!(caller_gets_486(&caller, "carol"), "486 from carol relayed");
    assert!(wait_all_free(&instance, Duration::from_secs(5)));

    drop(conn);
    tern.stop();
    unlink_table(&instance);
}
