//! SIP over TCP through `tern up` (RFC 3261 §18): raw-socket framing
//! checks on the shared UDP/TCP port, and a SIPp call over TCP (`-t t1`)
//! with media anchored in the relay.
//!
//! Ports: SIP 15560-15569 (15569: a TCP contact nobody listens on),
//! relay 27000-27199, ng 22341-22342 and 22346, SIPp media 16400-16439.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

fn tern_up(sip: &str, ports: &str, ng: &str, instance: &str) -> Proc {
    tern_up_with(sip, ports, ng, instance, &[])
}

fn tern_up_with(sip: &str, ports: &str, ng: &str, instance: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "up",
        "--sip",
        sip,
        "--ports",
        ports,
        "--workers",
        "1",
        "--instance",
        instance,
        "--ng",
        ng,
        "--http",
        "off",
    ];
    args.extend_from_slice(extra);
    let (p, _) = spawn_tern(&args, &["tern sip: listening"]);
    p
}

fn options(branch: &str, extra: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:15560 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:9;rport;branch=z9hG4bK{branch}\r\n\
         From: <sip:probe@127.0.0.1>;tag={branch}\r\n\
         To: <sip:127.0.0.1:15560>\r\n\
         Call-ID: tcp-{branch}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// Reads from `s` until `n` whole responses (framed by Content-Length)
/// arrived, the peer closed, or 3 s passed. Returns the status codes and
/// whether the peer closed.
fn read_responses(s: &mut TcpStream, n: usize) -> (Vec<u16>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut codes = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 4096];
    while codes.len() < n && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        // Frame what arrived (bounded by the buffer's length).
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            let code = head
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            codes.push(code);
            buf.drain(..end + 4 + len);
        }
    }
    (codes, closed)
}

/// Whether the peer closes `s` within 3 s (reading and discarding).
fn closes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn tcp_framing_on_the_sip_port() {
    let instance = format!("t-h4-tcp-raw-{}", std::process::id());
    let mut tern = tern_up(
        "127.0.0.1:15560",
        "27000-27099",
        "127.0.0.1:22341",
        &instance,
    );
    let to = "127.0.0.1:15560";

    // UDP still works on the same port.
    assert_eq!(
        sip_exchange(options("udp1", "").replace("/TCP", "/UDP").as_bytes(), to),
        Some(200)
    );

    // Two pipelined OPTIONS in one write: two 200s, in order.
    let mut s = TcpStream::connect(to).unwrap();
    let two = options("p1", "") + &options("p2", "");
    s.write_all(two.as_bytes()).unwrap();
    let (codes, closed) = read_responses(&mut s, 2);
    assert_eq!(codes, [200, 200]);
    assert!(!closed);

    // One message in two writes, 300 ms apart: one 200.
    let one = options("split", "");
    let (a, b) = one.split_at(one.len() / 2);
    s.write_all(a.as_bytes()).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b.as_bytes()).unwrap();
    let (codes, _) = read_responses(&mut s, 1);
    assert_eq!(codes, [200]);

    // A CRLFCRLF keep-alive is answered with one CRLF (RFC 5626 §3.5.1).
    s.write_all(b"\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    // And the connection still serves requests.
    s.write_all(options("after-ping", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 1).0, [200]);
    drop(s);

    // A 100 KiB header: the connection is closed (bounded buffer).
    let mut s = TcpStream::connect(to).unwrap();
    let big = options("big", &format!("X-Big: {}\r\n", "a".repeat(100 * 1024)));
    // The server may close before all is written; a write error is fine.
    let _ = s.write_all(big.as_bytes());
    assert!(
        closes(&mut s),
        "over-long message did not close the connection"
    );

    // No Content-Length on a stream: 400, then the connection closes.
    let mut s = TcpStream::connect(to).unwrap();
    let bare = options("nolen", "").replace("Content-Length: 0\r\n", "");
    s.write_all(bare.as_bytes()).unwrap();
    let (codes, _) = read_responses(&mut s, 1);
    assert_eq!(codes, [400]);
    assert!(
        closes(&mut s),
        "unframed message did not close the connection"
    );

    // Half-close by the client: the server closes its side too.
    let mut s = TcpStream::connect(to).unwrap();
    s.write_all(options("half", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 1).0, [200]);
    s.shutdown(Shutdown::Write).unwrap();
    assert!(closes(&mut s));

    // Garbage (pseudo-random bytes with empty lines in between): whatever
    // is answered, the server survives it.
    let mut s = TcpStream::connect(to).unwrap();
    let mut seed = 0x9e37_79b9u32;
    let junk: Vec<u8> = (0..8192)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if i % 700 < 4 {
                b"\r\n\r\n"[i % 700]
            } else {
                (seed & 0xff) as u8
            }
        })
        .collect();
    let _ = s.write_all(&junk);
    let _ = closes(&mut s);

    // A TCP contact nobody listens on: the INVITE's connect is refused
    // and the caller gets 408 at once, not after Timer B (32 s).
    let reg = "REGISTER sip:127.0.0.1:15560 SIP/2.0\r\n\
               Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKdeadreg\r\n\
               From: <sip:dead@127.0.0.1>;tag=d1\r\n\
               To: <sip:dead@127.0.0.1>\r\n\
               Call-ID: dead-reg\r\n\
               CSeq: 1 REGISTER\r\n\
               Contact: <sip:dead@127.0.0.1:15569;transport=tcp>\r\n\
               Max-Forwards: 70\r\n\
               Content-Length: 0\r\n\r\n";
    assert_eq!(sip_exchange(reg.as_bytes(), to), Some(200));
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16439 RTP/AVP 0\r\n";
    let inv = format!(
        "INVITE sip:dead@127.0.0.1:15560 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKdeadinv\r\n\
         From: <sip:carol@127.0.0.1>;tag=c1\r\n\
         To: <sip:dead@127.0.0.1>\r\n\
         Call-ID: dead-inv\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:carol@127.0.0.1:9>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let t0 = Instant::now();
    assert_eq!(sip_exchange(inv.as_bytes(), to), Some(408));
    assert!(t0.elapsed() < Duration::from_secs(3));

    // The server is still up, over both transports.
    let mut s = TcpStream::connect(to).unwrap();
    s.write_all(options("last", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 1).0, [200]);
    assert_eq!(
        sip_exchange(options("udp2", "").replace("/TCP", "/UDP").as_bytes(), to),
        Some(200)
    );
    drop(s);
    let st = tern.stop();
    assert_eq!(st.map(|s| s.success()), Some(true), "tern exit: {st:?}");
    unlink_table(&instance);
}

#[test]
fn sipp_call_over_tcp_with_media() {
    let instance = format!("t-h4-tcp-call-{}", std::process::id());
    let dir = sipp_workdir("t-h4-tcp-call");
    let mut tern = tern_up(
        "127.0.0.1:15565",
        "27100-27199",
        "127.0.0.1:22342",
        &instance,
    );
    // Bob: a SIPp UAS listening on TCP, echoing RTP.
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            "15566",
            "-mp",
            "16400",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    // Registered over TCP, with a TCP contact.
    let sc = scenario("register.xml");
    let ok = sipp_run(
        &[
            "127.0.0.1:15565",
            "-sf",
            sc.to_str().unwrap(),
            "-t",
            "t1",
            "-s",
            "bob",
            "-key",
            "contact",
            "127.0.0.1:15566;transport=tcp",
            "-i",
            "127.0.0.1",
            "-p",
            "15567",
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(20),
    );
    assert!(ok, "REGISTER over TCP failed");

    let watch = SlotWatch::start(&instance);
    let ok = sipp_run(
        &[
            "127.0.0.1:15565",
            "-sn",
            "uac_pcap",
            "-t",
            "t1",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15568",
            "-mp",
            "16420",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    let seen = watch.finish();
    assert!(ok, "the TCP call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    assert_eq!(seen.len(), 1, "expected one slot for one call: {seen:?}");
    let [caller, callee] = seen[0].legs;
    assert!(caller.rx_packets > 100, "caller -> relay: {caller:?}");
    assert!(callee.tx_packets > 100, "relay -> bob: {callee:?}");
    assert!(callee.rx_packets > 100, "bob's echo -> relay: {callee:?}");
    assert!(caller.tx_packets > 100, "relay -> caller: {caller:?}");
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    let st = tern.stop();
    assert_eq!(st.map(|s| s.success()), Some(true), "tern exit: {st:?}");
    let _ = std::fs::remove_dir_all(&dir);
    unlink_table(&instance);
}

#[test]
fn tcp_connections_are_bounded_and_idle_ones_closed() {
    let instance = format!("t-h4-tcp-bounds-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("t-h4-tcp-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tern.toml");
    std::fs::write(
        &cfg,
        "[sip]\ntcp_max_connections = 2\ntcp_idle_secs = 1\ndrain_secs = 5\n",
    )
    .unwrap();
    let mut tern = tern_up_with(
        "127.0.0.1:15561",
        "27050-27099",
        "127.0.0.1:22346",
        &instance,
        &["--config", cfg.to_str().unwrap()],
    );
    let to = "127.0.0.1:15561";
    let mut a = TcpStream::connect(to).unwrap();
    let mut b = TcpStream::connect(to).unwrap();
    a.write_all(options("ca", "").as_bytes()).unwrap();
    b.write_all(options("cb", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut a, 1).0, [200]);
    assert_eq!(read_responses(&mut b, 1).0, [200]);
    // A third connection is over the bound: closed at once.
    let mut c = TcpStream::connect(to).unwrap();
    let _ = c.write_all(options("cc", "").as_bytes());
    let (codes, closed) = read_responses(&mut c, 1);
    assert!(codes.is_empty() && closed, "third connection: {codes:?}");
    // Keep `a` busy with keep-alives; `b` stays silent and is closed
    // after about 1 s.
    let t0 = Instant::now();
    let mut pong = [0u8; 2];
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        a.write_all(b"\r\n\r\n").unwrap();
        a.read_exact(&mut pong).unwrap();
    }
    assert!(closes(&mut b), "idle connection not closed");
    let idle_closed = t0.elapsed();
    assert!(
        idle_closed < Duration::from_secs(5),
        "idle close took {idle_closed:?}"
    );
    // `a` is still served; and a slot is free again for a new one.
    a.write_all(options("ca2", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut a, 1).0, [200]);
    let mut d = TcpStream::connect(to).unwrap();
    d.write_all(options("cd", "").as_bytes()).unwrap();
    assert_eq!(read_responses(&mut d, 1).0, [200]);
    drop((a, b, c, d));
    let st = tern.stop();
    assert_eq!(st.map(|s| s.success()), Some(true), "tern exit: {st:?}");
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}
