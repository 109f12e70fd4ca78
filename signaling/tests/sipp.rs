//! End to end over real UDP with SIPp (Debian package `sip-tester`):
//! `run()` serves on 127.0.0.1, a SIPp UAS registers as bob
//! (tests/sipp/uas_register.xml + uas_answer.xml), and the built-in SIPp UAC
//! calls bob through tern. Skipped (with a note) when `sipp` is missing.
//!
//! Every spawned process is stopped by PID, every loop is bounded. Set
//! `TERN_KEEP_SIPP_LOGS=1` to keep SIPp's message logs (in the temp dir).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotState, SlotTable, TableParams};
use tern_signaling::digest::{expected_response, md5_hex, Credentials};
use tern_signaling::{load_users_toml, run, ShmRelay, SipConfig};

fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Two free UDP ports `p`, `p + 2` (SIPp's -mp uses p and p+2 for echo).
fn free_media_port() -> u16 {
    for _ in 0..200 {
        let p = free_udp_port() & !1;
        if p > 60000 {
            continue;
        }
        if (0..4).all(|k| UdpSocket::bind(("127.0.0.1", p + k)).is_ok()) {
            return p;
        }
    }
    panic!("no free media port range");
}

/// Kills a child by its PID handle and reaps it.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Asks tern's registrar for `user`'s bindings (REGISTER without Contact,
/// RFC 3261 §10.2.3) until one is listed; answers a 401 with `password`.
fn wait_registered(tern: SocketAddr, user: &str, password: &str, limit: Duration) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("query socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = sock.local_addr().expect("local addr");
    let end = Instant::now() + limit;
    let mut n = 0u32;
    let mut auth = String::new();
    while Instant::now() < end {
        n += 1;
        let q = format!(
            "REGISTER sip:{tern} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKq{n}\r\nFrom: <sip:{user}@{tern}>;tag=q\r\nTo: <sip:{user}@{tern}>\r\nCall-ID: query-{user}\r\nCSeq: {n} REGISTER\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(q.as_bytes(), tern);
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            let r = String::from_utf8_lossy(&buf[..len]).to_string();
            if r.starts_with("SIP/2.0 200") && r.contains("\r\nContact:") {
                return true;
            }
            if r.starts_with("SIP/2.0 401") {
                auth = authorization(&r, tern, user, password);
                continue;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// An Authorization header answering the challenge in response `r`.
fn authorization(r: &str, tern: SocketAddr, user: &str, password: &str) -> String {
    let nonce = r
        .split("nonce=\"")
        .nth(1)
        .and_then(|x| x.split('"').next())
        .unwrap_or_default();
    let mut c = Credentials {
        username: user.into(),
        realm: "tern".into(),
        nonce: nonce.into(),
        uri: format!("sip:{tern}"),
        cnonce: Some("abcdef".into()),
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        ..Default::default()
    };
    c.response = expected_response(&md5_hex(&format!("{user}:tern:{password}")), "REGISTER", &c);
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"tern\", nonce=\"{nonce}\", uri=\"{}\", response=\"{}\", algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000001\r\n",
        c.uri, c.response
    )
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let start = s.len().saturating_sub(3000);
    s.get(start..).unwrap_or("").to_string()
}

#[test]
fn sipp_uac_calls_registered_sipp_uas_through_tern() {
    sipp_call("open", false);
}

#[test]
fn sipp_call_with_digest_authentication() {
    sipp_call("auth", true);
}

/// One call from a SIPp UAC to a SIPp UAS registered as bob. With `auth`,
/// tern has users alice and bob: the UAS answers the 401 of its REGISTER
/// and the UAC (tests/sipp/uac_auth.xml) the 407 of its INVITE.
fn sipp_call(name: &str, auth: bool) {
    if !sipp_available() {
        eprintln!("sipp not installed (Debian: sip-tester): test skipped");
        return;
    }
    let scen = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp"));
    let work = std::env::temp_dir().join(format!("tern-sipp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");

    let inst = format!("test-sig-sipp-{name}-{}", std::process::id());
    let table = Arc::new(
        SlotTable::create_or_attach(
            &inst,
            TableParams {
                port_lo: if auth { 32100 } else { 32000 },
                port_hi: if auth { 32163 } else { 32063 },
                workers: 1,
                media_ip: "127.0.0.1".parse().expect("ip"),
            },
        )
        .expect("slot table"),
    );

    let tern: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    let users = if auth {
        "[[users]]\nname = \"alice\"\npassword = \"alicepw\"\n[[users]]\nname = \"bob\"\npassword = \"bobpw\"\n"
    } else {
        ""
    };
    let config = SipConfig {
        listen: tern,
        users: load_users_toml(users).expect("users"),
        ..SipConfig::default()
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let server = {
        let (relay, shutdown) = (ShmRelay::new(table.clone()), shutdown.clone());
        thread::spawn(move || run(config, Box::new(relay), shutdown))
    };

    let uas_port = free_udp_port();
    let uas_media = free_media_port();
    let uas = Command::new("sipp")
        .current_dir(&work)
        .args(["-sf"])
        .arg(scen.join("uas_register.xml"))
        .arg("-oocsf")
        .arg(scen.join("uas_answer.xml"))
        .args(["-s", "bob", "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-au", "bob", "-ap", "bobpw"])
        .args(["-p", &uas_port.to_string(), "-mp", &uas_media.to_string()])
        .args(["-trace_err", "-trace_msg"])
        .arg("-error_file")
        .arg(work.join("uas_err.log"))
        .arg("-message_file")
        .arg(work.join("uas_msg.log"))
        .arg(tern.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp UAS");
    let mut uas = Reaped(uas);

    let registered = wait_registered(tern, "bob", "bobpw", Duration::from_secs(15));
    if !registered {
        let _ = uas.0.kill();
    }
    assert!(
        registered,
        "bob never registered; UAS messages:\n{}\nerrors:\n{}",
        tail(&work.join("uas_msg.log")),
        tail(&work.join("uas_err.log"))
    );

    let uac_port = free_udp_port();
    let uac_media = free_media_port();
    let mut uac = Command::new("sipp");
    if auth {
        uac.arg("-sf")
            .arg(scen.join("uac_auth.xml"))
            .args(["-au", "alice", "-ap", "alicepw"]);
    } else {
        uac.args(["-sn", "uac"]);
    }
    let uac = uac
        .current_dir(&work)
        .args(["-s", "bob", "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-p", &uac_port.to_string(), "-mp", &uac_media.to_string()])
        .args(["-timeout", "20s", "-timeout_error"])
        .args(["-trace_err", "-trace_msg"])
        .arg("-error_file")
        .arg(work.join("uac_err.log"))
        .arg("-message_file")
        .arg(work.join("uac_msg.log"))
        .arg(tern.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp UAC");
    let mut uac = Reaped(uac);
    let status = wait_exit(&mut uac.0, Duration::from_secs(30));

    // The call used one slot, which is released (Draining: no dataplane
    // here to free it).
    let draining = table.count(SlotState::Draining);
    let active = table.count(SlotState::Active);

    shutdown.store(true, Ordering::Relaxed);
    let served = server.join().expect("server thread");
    drop(uas);
    drop(uac);
    let _ = table.unlink();

    assert!(
        status.is_some_and(|s| s.success()),
        "sipp UAC: {status:?}\nUAC messages:\n{}\nUAC errors:\n{}\nUAS messages:\n{}\nUAS errors:\n{}",
        tail(&work.join("uac_msg.log")),
        tail(&work.join("uac_err.log")),
        tail(&work.join("uas_msg.log")),
        tail(&work.join("uas_err.log"))
    );
    assert!(served.is_ok(), "run(): {served:?}");
    assert_eq!((active, draining), (0, 1), "slot states after the call");
    if std::env::var_os("TERN_KEEP_SIPP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
}
