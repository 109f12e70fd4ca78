//! `run()` over a real UDP socket, without SIPp: a request is answered, the
//! shutdown flag is noticed quickly, unsafe configurations are refused.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotTable, TableParams};
use tern_signaling::{run, Server, ShmRelay, SipConfig, SipError};

fn table(name: &str) -> Arc<SlotTable> {
    Arc::new(
        SlotTable::create_or_attach(
            &format!("test-sig-{name}-{}", std::process::id()),
            TableParams {
                port_lo: 33000,
                port_hi: 33015,
                workers: 1,
                media_ip: "127.0.0.1".parse().expect("ip"),
            },
        )
        .expect("table"),
    )
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn answers_options_and_stops_on_shutdown() {
    let t = table("server");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (relay, shutdown) = (ShmRelay::new(t.clone()), shutdown.clone());
        let cfg = SipConfig {
            listen,
            ..SipConfig::default()
        };
        thread::spawn(move || run(cfg, Box::new(relay), shutdown))
    };
    let sock = UdpSocket::bind("127.0.0.1:0").expect("client");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let mut answer = None;
    // The server thread may not have bound yet: retry, bounded.
    for i in 0..50 {
        let req = format!(
            "OPTIONS sip:{listen} SIP/2.0\r\nv: SIP/2.0/UDP {me};branch=z9hG4bKo{i};rport\r\nf: <sip:t@{me}>;tag=1\r\nt: <sip:{listen}>\r\ni: opt-{i}\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
        );
        sock.send_to(req.as_bytes(), listen).expect("send");
        let mut buf = [0u8; 4096];
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            answer = Some((from, String::from_utf8_lossy(&buf[..n]).to_string()));
            break;
        }
    }
    let (from, text) = answer.expect("an answer to OPTIONS");
    assert_eq!(from, listen);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains(&format!("rport={}", me.port())), "{text}");
    // Garbage and keep-alives do not stop it.
    sock.send_to(b"\r\n\r\n", listen).expect("send");
    sock.send_to(&[0xff; 300], listen).expect("send");

    let asked = Instant::now();
    shutdown.store(true, Ordering::Relaxed);
    let res = server.join().expect("join");
    assert!(res.is_ok(), "{res:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(600),
        "{:?}",
        asked.elapsed()
    );
    let _ = t.unlink();
}

#[test]
fn bind_then_serve_reports_the_port() {
    let t = table("bind");
    let cfg = SipConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..SipConfig::default()
    };
    let server = Server::bind(cfg).expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    // Bound before serving: a datagram sent now is not lost.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("client");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let req = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKb1\r\nFrom: <sip:t@{me}>;tag=1\r\nTo: <sip:{addr}>\r\nCall-ID: b1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), addr).expect("send");
    let shutdown = Arc::new(AtomicBool::new(false));
    let th = {
        let (relay, shutdown) = (ShmRelay::new(t.clone()), shutdown.clone());
        thread::spawn(move || server.serve(Box::new(relay), shutdown))
    };
    let mut buf = [0u8; 2048];
    let got = sock
        .recv_from(&mut buf)
        .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string());
    shutdown.store(true, Ordering::Relaxed);
    assert!(th.join().expect("join").is_ok());
    let _ = t.unlink();
    assert!(got.expect("answer").starts_with("SIP/2.0 200 OK"));
}

#[test]
fn refuses_open_registrar_on_public_address() {
    let t = table("refuse");
    let cfg = SipConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        ..SipConfig::default()
    };
    let res = run(
        cfg,
        Box::new(ShmRelay::new(t.clone())),
        Arc::new(AtomicBool::new(false)),
    );
    match res {
        Err(SipError::Config(e)) => assert!(
            e.to_string()
                .contains("refusing to run an open registrar on 0.0.0.0:0"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    let _ = t.unlink();
}
