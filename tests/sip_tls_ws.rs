//! SIP over TLS, WebSocket and secure WebSocket through `tern up`
//! (RFC 3261 §26, RFC 7118): a TLS client registers with digest and
//! calls a SIPp UAS registered over UDP, media anchored in the relay; a
//! WS-registered user is reached over its own connection and gets 480
//! once it is gone; hostile streams (WS frame floods, oversize frames,
//! garbage TLS, half-open connections) are closed and counted while a
//! good connection goes on.
//!
//! Ports: SIP 18100-18129 (UDP/TCP, TLS, WS, WSS, ng, HTTP), SIPp
//! 18110-18111 with media 18610, relay 21300-21389 (below the kernel's
//! ephemeral range).

mod common;
use common::sipclient::*;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USERS: &str = "[[users]]\nname = \"alice\"\npassword = \"wonderland\"\n\n[[users]]\nname = \"bob\"\npassword = \"builder\"\n";

struct Node {
    _tern: Proc,
    sip: SocketAddr,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    http: String,
    cert_der: Vec<u8>,
    _dir: PathBuf,
}

/// `tern up` with TLS/WS/WSS at `base`+1..+3 and a certificate the test
/// made (so the client can trust exactly it).
fn node(name: &str, base: u16, ports: &str) -> Node {
    let dir = sipp_workdir(name);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let a = |p: u16| -> SocketAddr { ([127, 0, 0, 1], p).into() };
    let (sip, tls, ws, wss) = (a(base), a(base + 1), a(base + 2), a(base + 3));
    let cfg = dir.join("tern.toml");
    let text = format!(
        "[sip]\ntls = \"{tls}\"\nws = \"{ws}\"\nwss = \"{wss}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\ntcp_max_per_source = 50\n\n{USERS}",
        cert.display(),
        key.display()
    );
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let instance = format!("{name}-{}", std::process::id());
    let (sip_s, ng, http) = (
        sip.to_string(),
        a(base + 4).to_string(),
        a(base + 5).to_string(),
    );
    let (p, lines) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip_s,
            "--ports",
            ports,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng,
            "--http",
            &http,
            "--config",
            cfg.to_str().unwrap(),
        ],
        &["tern sip: listening", "tern http: listening"],
    );
    let ready = lines.lock().unwrap().join("\n");
    assert!(
        ready.contains(&format!("tls:{tls}"))
            && ready.contains(&format!("ws:{ws}"))
            && ready.contains(&format!("wss:{wss}")),
        "ready line names the stream listeners: {ready}"
    );
    Node {
        _tern: p,
        sip,
        tls,
        ws,
        wss,
        http,
        cert_der: ck.cert.der().to_vec(),
        _dir: dir,
    }
}

fn metrics(http: &str) -> String {
    http_get(http, "/metrics")
}

const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 18620 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

#[test]
fn tls_client_registers_with_digest_and_calls_a_sipp_uas_over_udp() {
    let n = node("sip-tls-call", 18100, "21300-21329");
    let dir = sipp_workdir("sip-tls-call-uas");
    let mut uas = uas_echo(18110, 18610, 1, &dir);
    // bob: the SIPp UAS, registered over UDP with digest by this test.
    let mut udp = Link::udp(n.sip);
    assert_eq!(
        register_digest(
            &mut udp,
            &n.sip.to_string(),
            "bob",
            "builder",
            Some("sip:bob@127.0.0.1:18110")
        ),
        Some(200)
    );
    // alice over TLS: REGISTER with digest, then INVITE bob (407, again).
    let mut tls = Link::tls(n.tls, &n.cert_der).expect("TLS handshake with tern");
    let reg = n.sip.to_string();
    assert_eq!(
        register_digest(&mut tls, &reg, "alice", "wonderland", None),
        Some(200)
    );
    let uri = format!("sip:bob@{}", n.sip);
    let inv = request(
        &tls,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "tls-call-1",
        1,
        "",
        SDP,
    );
    tls.send(&inv);
    let r = tls
        .final_response("INVITE", Duration::from_secs(5))
        .expect("a final answer");
    assert_eq!(status(&r), Some(407), "{r}");
    tls.send(&ack_for(&tls, &uri, &r, 1));
    let auth = authorize(&r, "INVITE", &uri, "alice", "wonderland");
    let inv = request(
        &tls,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "tls-call-1",
        2,
        &format!("{auth}\r\n"),
        SDP,
    );
    tls.send(&inv);
    let ok = tls
        .final_response("INVITE", Duration::from_secs(10))
        .expect("200 to the INVITE");
    assert_eq!(status(&ok), Some(200), "{ok}");
    // The answer anchors media in the relay (21300-21329), not at bob's 18610.
    let sdp = body(&ok);
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio in the answer");
    assert!((21300..21330).contains(&port), "{sdp}");
    tls.send(&ack_for(&tls, &uri, &ok, 2));
    // Media: RTP to the relay comes back through SIPp's echo.
    let rtp = UdpSocket::bind("127.0.0.1:18620").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut echoed = 0;
    for seq in 0u16..100 {
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(&[0xffu8; 160]);
        rtp.send_to(&pkt, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 1500];
        if rtp.recv_from(&mut buf).is_ok() {
            echoed += 1;
        }
    }
    assert!(echoed > 50, "RTP echoed through the relay: {echoed} of 100");
    // /calls names each leg's transport, profile, ICE and DTLS.
    std::thread::sleep(Duration::from_millis(700));
    let calls = http_get(&n.http, "/calls");
    let v: serde_json::Value =
        serde_json::from_str(calls.split("\r\n\r\n").nth(1).unwrap_or("")).expect(&calls);
    let legs = &v["calls"][0]["legs"];
    assert_eq!(legs[0]["transport"], "tls", "{calls}");
    assert_eq!(legs[1]["transport"], "udp", "{calls}");
    assert_eq!(legs[0]["profile"], "RTP/AVP", "{calls}");
    assert_eq!(
        (legs[0]["ice"].as_str(), legs[0]["dtls"].as_str()),
        (Some("off"), Some("off")),
        "{calls}"
    );
    // BYE over TLS ends it.
    let to = header(&ok, "To").unwrap();
    let bye = request(&tls, "BYE", &uri, "alice", "bob", "tls-call-1", 3, "", "")
        .replace("To: <sip:bob@127.0.0.1>", &format!("To: {to}"));
    tls.send(&bye);
    let r = tls
        .final_response("BYE", Duration::from_secs(5))
        .expect("200 to BYE");
    assert_eq!(status(&r), Some(200), "{r}");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "SIPp UAS"
    );
    std::thread::sleep(Duration::from_millis(700));
    let m = metrics(&n.http);
    assert!(
        metric(&m, "tern_sip_connections_accepted_total{transport=\"tls\"}") >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, "tern_sip_stream_messages_total{transport=\"tls\"}") >= 5.0,
        "{m}"
    );
}

/// An ACK for the final response `r` to CSeq `cseq` (non-2xx: same
/// branch as the INVITE; 2xx: a new transaction, as RFC 3261 §13.2.2.4).
fn ack_for(link: &Link, uri: &str, r: &str, cseq: u32) -> String {
    let to = header(r, "To").unwrap();
    let call_id = header(r, "Call-ID").unwrap();
    let mut ack = request(link, "ACK", uri, "alice", "bob", &call_id, cseq, "", "")
        .replace("To: <sip:bob@127.0.0.1>", &format!("To: {to}"));
    if status(r).is_some_and(|c| c >= 300) {
        ack = ack.replace(
            &format!("{call_id}{cseq}ACK"),
            &format!("{call_id}{cseq}INVITE"),
        );
    }
    ack
}

#[test]
fn a_ws_user_is_reached_over_its_connection_and_gets_480_once_it_is_gone() {
    let n = node("sip-ws-flow", 18120, "21330-21359");
    let reg = n.sip.to_string();
    let mut ws = Link::ws(n.ws).expect("WS handshake");
    assert_eq!(
        register_digest(&mut ws, &reg, "bob", "builder", None),
        Some(200)
    );
    // A caller over UDP (alice, authenticated) INVITEs bob: the INVITE
    // arrives on bob's WebSocket; bob answers 486.
    let mut udp = Link::udp(n.sip);
    let uri = format!("sip:bob@{}", n.sip);
    let inv = request(
        &udp,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "ws-flow-1",
        1,
        "",
        SDP,
    );
    udp.send(&inv);
    let r = udp
        .final_response("INVITE", Duration::from_secs(5))
        .unwrap();
    udp.send(&ack_for(&udp, &uri, &r, 1));
    let auth = authorize(&r, "INVITE", &uri, "alice", "wonderland");
    udp.send(&request(
        &udp,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "ws-flow-1",
        2,
        &format!("{auth}\r\n"),
        SDP,
    ));
    let got = ws
        .recv(Duration::from_secs(5))
        .expect("the INVITE over the WebSocket");
    assert!(got.starts_with("INVITE "), "{got}");
    let via = header(&got, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/WS "), "our Via names WS: {via}");
    let mut busy = String::from("SIP/2.0 486 Busy Here\r\n");
    for l in got.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "call-id", "cseq"].contains(&name.as_str()) {
            busy.push_str(l);
            busy.push_str("\r\n");
        } else if name == "to" {
            busy.push_str(&format!("{l};tag=bobws\r\n"));
        }
    }
    busy.push_str("Content-Length: 0\r\n\r\n");
    ws.send(&busy);
    let r = udp
        .final_response("INVITE", Duration::from_secs(5))
        .expect("the caller's answer");
    assert_eq!(status(&r), Some(486), "{r}");
    udp.send(&ack_for(&udp, &uri, &r, 2));
    // bob's browser goes away: the next INVITE gets 480 at once.
    drop(ws);
    std::thread::sleep(Duration::from_millis(300));
    let auth3 = authorize(
        &r_challenge(&mut udp, &uri, "ws-flow-2"),
        "INVITE",
        &uri,
        "alice",
        "wonderland",
    );
    udp.send(&request(
        &udp,
        "INVITE",
        &uri,
        "alice",
        "bob",
        "ws-flow-2",
        2,
        &format!("{auth3}\r\n"),
        SDP,
    ));
    let r = udp
        .final_response("INVITE", Duration::from_secs(5))
        .expect("480");
    assert_eq!(status(&r), Some(480), "{r}");
    // The snapshot behind /metrics is at most 500 ms old.
    std::thread::sleep(Duration::from_millis(700));
    let m = metrics(&n.http);
    assert!(metric(&m, "tern_sip_flow_down_total") >= 1.0, "{m}");
    assert!(
        metric(&m, "tern_sip_connections{transport=\"ws\"}") == 0.0,
        "{m}"
    );
}

/// Sends an unauthenticated INVITE in `call_id` and returns its 407.
fn r_challenge(udp: &mut Link, uri: &str, call_id: &str) -> String {
    udp.send(&request(
        udp, "INVITE", uri, "alice", "bob", call_id, 1, "", SDP,
    ));
    let r = udp
        .final_response("INVITE", Duration::from_secs(5))
        .unwrap();
    assert_eq!(status(&r), Some(407), "{r}");
    udp.send(&ack_for(udp, uri, &r, 1));
    r
}

#[test]
fn hostile_streams_are_closed_and_counted_while_good_ones_go_on() {
    let n = node("sip-hostile", 18140, "21360-21389");
    let reg = n.sip.to_string();
    // A good WSS user, registered before the attacks.
    let mut good = Link::wss(n.wss, &n.cert_der).expect("WSS handshake");
    assert_eq!(
        register_digest(&mut good, &reg, "alice", "wonderland", None),
        Some(200)
    );

    // 1. A WS frame flood: pings as fast as we can.
    let mut flood = Link::ws(n.ws).unwrap();
    if let Link::Ws(ws) = &mut flood {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut sent = 0;
        while Instant::now() < deadline && sent < 5000 {
            if ws.send(tungstenite::Message::Ping(Vec::new())).is_err() {
                break;
            }
            sent += 1;
        }
    }
    // 2. An oversize frame (over tcp_max_message, 64 KiB).
    let mut big = Link::ws(n.ws).unwrap();
    if let Link::Ws(ws) = &mut big {
        let _ = ws.send(tungstenite::Message::Text("x".repeat(100_000)));
    }
    // 3. Garbage instead of a TLS ClientHello, on the TLS and WSS ports.
    for port in [n.tls, n.wss] {
        let mut s = TcpStream::connect(port).unwrap();
        s.write_all(b"\x16\x03\x01\x00\x10this is no hello at all\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 256];
        let mut closed = false;
        for _ in 0..10 {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        assert!(closed, "garbage TLS on {port} is closed");
    }
    // 4. Half-open: connect and say nothing, on WS and TLS.
    let half: Vec<TcpStream> = [n.ws, n.tls]
        .iter()
        .map(|a| TcpStream::connect(a).unwrap())
        .collect();
    // 5. A WS handshake without the sip subprotocol: HTTP 400.
    let mut s = TcpStream::connect(n.ws).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // The good connection still works (a re-REGISTER), and the half-open
    // ones are closed by the 10 s handshake bound.
    assert_eq!(
        register_digest(&mut good, &reg, "alice", "wonderland", None),
        Some(200)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut m = metrics(&n.http);
    while Instant::now() < deadline
        && metric(
            &m,
            "tern_sip_connections_refused_total{reason=\"handshake_timeout\"}",
        ) < 2.0
    {
        std::thread::sleep(Duration::from_millis(500));
        m = metrics(&n.http);
    }
    drop(half);
    let by = |r: &str| {
        metric(
            &m,
            &format!("tern_sip_connections_refused_total{{reason=\"{r}\"}}"),
        )
    };
    assert!(by("ws_flood") >= 1.0, "flood closed and counted:\n{m}");
    assert!(
        by("oversize") >= 1.0,
        "oversize frame closed and counted:\n{m}"
    );
    assert!(by("tls") >= 2.0, "garbage TLS closed and counted:\n{m}");
    assert!(
        by("handshake_timeout") >= 2.0,
        "half-open closed and counted:\n{m}"
    );
    assert!(by("ws_handshake") >= 1.0, "no sip subprotocol:\n{m}");
    // And the good one is still there.
    assert_eq!(
        register_digest(&mut good, &reg, "alice", "wonderland", None),
        Some(200)
    );
    assert_eq!(
        metric(&m, "tern_sip_connections{transport=\"wss\"}"),
        1.0,
        "{m}"
    );

    // 6. Connections per source: 60 more from 127.0.0.1 against a bound
    // of 50 (the good one counts): the rest are refused and counted.
    let many: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(n.ws).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    let m = metrics(&n.http);
    let refused = metric(
        &m,
        "tern_sip_connections_refused_total{reason=\"per_source\"}",
    );
    assert!(
        refused >= 10.0,
        "per-source bound: {refused} refused of {}\n{m}",
        many.len()
    );
    drop(many);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        register_digest(&mut good, &reg, "alice", "wonderland", None),
        Some(200)
    );
}
