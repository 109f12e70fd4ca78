//! Graceful shutdown of `tern up`: on SIGTERM new INVITEs get 503 with
//! Retry-After, calls up run to their BYE, and the process exits 0 once
//! none is left, or when the drain time is over, or at a second SIGTERM.
//!
//! Ports: SIP 15570-15578, relay 27200-27499, ng 22343-22345, SIPp media
//! 16440-16499.

mod common;
use common::*;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tern_shared::table::{SlotState, SlotTable};

/// One call set up through a `tern up`: bob a SIPp UAS, alice a SIPp UAC
/// holding the call `hold_ms` before its BYE.
struct Setup {
    tern: Proc,
    uas: Proc,
    uac: Proc,
    instance: String,
    dir: PathBuf,
    sip: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.uac.kill_hard();
        self.uas.kill_hard();
        self.tern.kill_hard();
        unlink_table(&self.instance);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `base`: tern's SIP port; base+1 bob, base+2 the clients. `n`: 0..3,
/// picks the relay ports, ng port and media ports.
fn setup(name: &str, base: u16, n: u16, drain: &str, hold_ms: u32) -> Setup {
    let instance = format!("t-h4-{name}-{}", std::process::id());
    let dir = sipp_workdir(&format!("t-h4-{name}"));
    let sip = format!("127.0.0.1:{base}");
    let ports = format!("{}-{}", 27200 + 100 * n, 27299 + 100 * n);
    let ng = format!("127.0.0.1:{}", 22343 + n);
    let (tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip,
            "--ports",
            &ports,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng,
            "--http",
            "off",
            "--drain",
            drain,
        ],
        &["tern sip: listening"],
    );
    let (bob, client) = ((base + 1).to_string(), (base + 2).to_string());
    let (bob_media, alice_media) = ((16440 + 20 * n).to_string(), (16450 + 20 * n).to_string());
    let uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &bob,
            "-mp",
            &bob_media,
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register("bob", &format!("127.0.0.1:{bob}"), &sip, base + 2, &dir);
    let hold = hold_ms.to_string();
    let uac = sipp(
        &[
            &sip,
            "-sn",
            "uac",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            &client,
            "-mp",
            &alice_media,
            "-d",
            &hold,
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
    );
    let s = Setup {
        tern,
        uas,
        uac,
        instance,
        dir,
        sip,
    };
    assert!(
        wait_active(&s.instance, Duration::from_secs(10)),
        "the call did not come up"
    );
    // Let the ACK through before anything else happens.
    std::thread::sleep(Duration::from_millis(300));
    s
}

/// Waits (bounded) until a slot of `instance` is active (a call answered).
fn wait_active(instance: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(t) = SlotTable::open(instance) {
            if t.count(SlotState::Active) > 0 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Sends a new INVITE from a fresh socket; returns the final response
/// (status code, whole text) within 3 s.
fn new_invite(to: &str) -> Option<(u16, String)> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    let me = s.local_addr().ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 16499 RTP/AVP 0\r\n";
    let msg = format!(
        "INVITE sip:bob@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKdrain{port}\r\n\
         From: <sip:carol@127.0.0.1>;tag=c{port}\r\n\
         To: <sip:bob@{to}>\r\n\
         Call-ID: drain-{port}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:carol@{me}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        port = me.port()
    );
    s.send_to(msg.as_bytes(), to).ok()?;
    let mut buf = [0u8; 65535];
    for _ in 0..10 {
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let code: u16 = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        if code >= 200 {
            return Some((code, text));
        }
    }
    None
}

#[test]
fn sigterm_refuses_new_calls_and_waits_for_the_call_up() {
    let mut s = setup("drain-ok", 15570, 0, "20", 4000);
    let t0 = Instant::now();
    s.tern.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let (code, text) = new_invite(&s.sip).expect("no answer to a new INVITE while draining");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("\r\nRetry-After: "), "{text}");
    // Still up while the call is.
    assert!(s.tern.wait_for(Duration::from_millis(500)).is_none());
    // The call ends with its BYE answered 200: the UAC succeeds.
    let uac = s.uac.wait_for(Duration::from_secs(20));
    assert_eq!(uac.map(|st| st.success()), Some(true), "the call up failed");
    let ended = Instant::now();
    let st = s.tern.wait_for(Duration::from_secs(5));
    assert_eq!(
        st.map(|st| st.success()),
        Some(true),
        "tern did not exit 0 after the last call: {st:?}"
    );
    eprintln!(
        "drain: exit {:?} after SIGTERM, {:?} after the call ended",
        t0.elapsed(),
        ended.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "drain ran to its bound"
    );
    assert_eq!(
        s.uas
            .wait_for(Duration::from_secs(10))
            .map(|st| st.success()),
        Some(true),
        "uas failed"
    );
}

#[test]
fn drain_time_bounds_the_wait() {
    let mut s = setup("drain-bound", 15573, 1, "2", 60_000);
    let t0 = Instant::now();
    s.tern.signal(libc::SIGTERM);
    let st = s.tern.wait_for(Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(st.map(|st| st.success()), Some(true), "exit: {st:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "exited after {took:?} with a 2 s drain"
    );
}

#[test]
fn second_sigterm_stops_at_once() {
    let mut s = setup("drain-twice", 15576, 2, "30", 60_000);
    s.tern.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.tern.wait_for(Duration::from_millis(200)).is_none(),
        "exited with a call up"
    );
    let t0 = Instant::now();
    s.tern.signal(libc::SIGTERM);
    let st = s.tern.wait_for(Duration::from_secs(5));
    assert_eq!(st.map(|st| st.success()), Some(true), "exit: {st:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}
