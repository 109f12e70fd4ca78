//! A flood of OPTIONS from one source (127.0.0.2, 5,000/s for 10 s)
//! against `tern up` with `[sip] rate_limit = 200`, `rate_burst = 400`,
//! while 50 SIPp calls from another source (127.0.0.1) go through: every
//! call succeeds, the flooder gets answers for at most about
//! `rate × time + burst` of its requests, and
//! `tern_sip_rate_limited_total` counts the rest. Over TCP the excess is
//! answered 503 with `Retry-After`, and a `deny`-listed source gets
//! nothing (`tern_sip_denied_total`).

mod common;
use common::*;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIP: &str = "127.0.0.1:18400";
const RATE: f64 = 200.0;
const BURST: f64 = 400.0;
const FLOOD: Duration = Duration::from_secs(10);
/// The flood's rate, requests/s.
const FLOOD_RATE: u64 = 5_000;
/// Legitimate calls placed during the flood.
const CALLS: &str = "50";

struct Flood {
    sent: u64,
    answered: u64,
    secs: f64,
}

/// Sends OPTIONS from 127.0.0.2 at [`FLOOD_RATE`] for [`FLOOD`] (a
/// bounded loop: every 2 ms tick sends what the elapsed time is due, so a
/// late tick catches up) and counts the responses, until 1 s after the
/// last send.
fn flood() -> Flood {
    let sock = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let local = sock.local_addr().unwrap();
    let rx = sock.try_clone().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = rx.recv_from(&mut buf) {
                    if buf[..n].starts_with(b"SIP/2.0 ") {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let t0 = Instant::now();
    let mut sent = 0u64;
    let total = FLOOD_RATE * FLOOD.as_secs();
    let ticks = FLOOD.as_millis() as u64 / 2;
    for tick in 0..ticks {
        let due = (FLOOD_RATE * t0.elapsed().as_millis() as u64 / 1000).min(total);
        let mut tries = 0;
        while sent < due && tries < FLOOD_RATE {
            tries += 1;
            let m = format!(
                "OPTIONS sip:{SIP} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bKflood{sent}\r\n\
                 From: <sip:flood@127.0.0.2>;tag=f{sent}\r\n\
                 To: <sip:{SIP}>\r\n\
                 Call-ID: flood-{sent}\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            if sock.send_to(m.as_bytes(), SIP).is_ok() {
                sent += 1;
            }
        }
        let next = t0 + Duration::from_millis((tick + 1) * 2);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    Flood {
        sent,
        answered: answered.load(Ordering::Relaxed),
        secs,
    }
}

#[test]
fn a_flood_from_one_source_is_limited_and_calls_from_another_succeed() {
    let instance = format!("sip-flood-{}", std::process::id());
    let dir = sipp_workdir("sip-flood");
    let cfg = dir.join("tern.toml");
    std::fs::write(&cfg, "[sip]\nrate_limit = 200\nrate_burst = 400\n").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let ng = format!("127.0.0.1:{}", free_port());
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            SIP,
            "--ports",
            "30600-30899",
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
        &["tern sip: listening"],
    );
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "18410",
            "-mp",
            "18420",
            "-rtp_echo",
            "-timeout",
            "90s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:18410", SIP, 18411, &dir);

    let flooder = std::thread::spawn(flood);
    // Let the flood empty the flooder's bucket before the calls start.
    std::thread::sleep(Duration::from_millis(500));
    let ok = sipp_run(
        &[
            SIP,
            "-sn",
            "uac_pcap",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "18412",
            "-mp",
            "18440",
            "-l",
            CALLS,
            "-m",
            CALLS,
            "-r",
            "10",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    let f = flooder.join().expect("flooder");
    // The snapshot behind /metrics is refreshed every 500 ms.
    std::thread::sleep(Duration::from_millis(1200));
    let m = http_get(&http, "/metrics");
    uas.stop();
    tern.stop();
    unlink_table(&instance);
    if !ok {
        dump_sipp_errors(&dir);
    }
    let limited = metric(&m, "tern_sip_rate_limited_total");
    let allowed = RATE * f.secs + BURST;
    let excess = f.sent as f64 - allowed;
    eprintln!(
        "flood: sent {} in {:.2} s ({:.0}/s), answered {}, allowed {allowed:.0}, limited {limited}",
        f.sent,
        f.secs,
        f.sent as f64 / f.secs,
        f.answered
    );
    assert!(ok, "a legitimate call failed during the flood");
    assert!(
        f.sent as f64 >= FLOOD_RATE as f64 * FLOOD.as_secs_f64() * 0.9,
        "flood too slow: {} sent",
        f.sent
    );
    assert!(
        f.answered * 2 < f.sent,
        "most of the flood was served: {} of {}",
        f.answered,
        f.sent
    );
    assert!(
        (f.answered as f64) <= allowed * 1.2,
        "flooder answered {} > 1.2 × {allowed:.0}",
        f.answered
    );
    assert!(
        limited >= 0.8 * excess,
        "rate-limited {limited} < 80% of the excess {excess:.0}\n{m}"
    );
    assert_eq!(metric(&m, "tern_sip_denied_total"), 0.0);
}

/// A TCP connection from `from` (a loopback address other than
/// 127.0.0.1) to `to`.
fn tcp_from(from: &str, to: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = from.parse().unwrap();
    let to: std::net::SocketAddr = to.parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

fn options_to(sip: &str, via: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:{sip} SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch=z9hG4bKo{n}\r\n\
         From: <sip:probe@127.0.0.2>;tag=o{n}\r\n\
         To: <sip:{sip}>\r\n\
         Call-ID: opt-{n}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn over_tcp_the_excess_gets_503_and_a_denied_source_nothing() {
    const SIP2: &str = "127.0.0.1:18401";
    let instance = format!("sip-flood-tcp-{}", std::process::id());
    let dir = sipp_workdir("sip-flood-tcp");
    let cfg = dir.join("tern.toml");
    std::fs::write(
        &cfg,
        "[sip]\nrate_limit = 1\nrate_burst = 5\ndeny = [\"127.0.0.3\"]\n",
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let ng = format!("127.0.0.1:{}", free_port());
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            SIP2,
            "--ports",
            "25380-25399",
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
        &["tern sip: listening"],
    );
    // 20 OPTIONS at once over TCP from 127.0.0.2: the burst (5) gets 200,
    // the rest 503 with Retry-After.
    let mut s = tcp_from("127.0.0.2:0", SIP2);
    let via = format!("TCP {}", s.local_addr().unwrap());
    let all: String = (0..20).map(|n| options_to(SIP2, &via, n)).collect();
    s.write_all(all.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut chunk = [0u8; 16_384];
    while Instant::now() < deadline {
        match std::io::Read::read(&mut s, &mut chunk) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(_) => {}
        }
        let text = String::from_utf8_lossy(&got);
        if text.matches("SIP/2.0 ").count() >= 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let ok = text.matches("SIP/2.0 200").count();
    let busy = text.matches("SIP/2.0 503").count();
    // A UDP OPTIONS from the denied 127.0.0.3 is not answered.
    let denied = UdpSocket::bind("127.0.0.3:0").unwrap();
    let via = format!("UDP {}", denied.local_addr().unwrap());
    denied
        .send_to(options_to(SIP2, &via, 99).as_bytes(), SIP2)
        .unwrap();
    denied
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let answered_denied = denied.recv_from(&mut buf).is_ok();
    std::thread::sleep(Duration::from_millis(1200));
    let m = http_get(&http, "/metrics");
    tern.stop();
    unlink_table(&instance);
    assert_eq!((ok, busy), (5, 15), "{text}");
    assert_eq!(text.matches("Retry-After: 1\r\n").count(), 15, "{text}");
    assert!(!answered_denied, "a denied source was answered");
    assert_eq!(metric(&m, "tern_sip_rate_limited_total"), 15.0, "{m}");
    assert_eq!(metric(&m, "tern_sip_denied_total"), 1.0, "{m}");
}
