//! A real browser against `tern up`'s SIP over WebSocket (RFC 7118,
//! subprotocol `sip`) and over WSS: Chromium driven by playwright-core,
//! JsSIP in the page (tests/browser/, validated against stock Kamailio by
//! tests/browser_kamailio.rs).
//!
//! - a browser registers over WS with digest credentials and calls bob,
//!   SIPp's `uas -rtp_echo` registered over UDP: it hears its own audio
//!   back through the relay (DTLS-SRTP on the browser's leg, plain RTP on
//!   SIPp's);
//! - the same over WSS, with the self-signed certificate `tern up` makes
//!   when none is configured (Chromium runs with
//!   --ignore-certificate-errors);
//! - two browsers, alice calls carol, both through tern;
//! - a browser calls bob (SIPp echo answering re-INVITEs), holds and
//!   resumes by re-INVITE, then restarts ICE by re-INVITE: media flows
//!   again after each, tern answers the restart with new ICE credentials,
//!   and tern's `/calls` shows the WebRTC leg and the plain one while held.
//!
//! Each starts `tern up` with `--sip` (UDP and TCP) and a config file of
//! `[sip] ws`, `wss` and `[[users]]`. Skips, saying so, without Chromium,
//! node, tests/browser/node_modules (`npm ci --prefix tests/browser`) or
//! sipp.
//!
//! Ports (each test its own block of 30 from 33100): SIP base, WS base+1,
//! WSS base+2, SIPp uas base+3 (media base+4..base+7: RTP, RTCP, video),
//! SIPp register base+8, HTTP API base+9 (where a test has it), relay
//! base+10..base+29; instance `t-browser-PID-N`.

mod common;
use common::browser::*;
use common::*;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Ports {
    sip: u16,
    ws: u16,
    wss: u16,
    uas: u16,
    uas_media: u16,
    reg: u16,
    http: u16,
    relay: String,
}

fn ports(block: u16) -> Ports {
    let base = 33100 + 30 * block;
    Ports {
        sip: base,
        ws: base + 1,
        wss: base + 2,
        uas: base + 3,
        uas_media: base + 4,
        reg: base + 8,
        http: base + 9,
        // Below the kernel's ephemeral range (32768-), so no outgoing
        // socket of Chromium or SIPp can hold a relay port.
        relay: format!("{}-{}", 21200 + 20 * block, 21219 + 20 * block),
    }
}

fn prerequisites() -> bool {
    if !browser_prerequisites() {
        return false;
    }
    let sipp = Command::new("sipp")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !sipp {
        eprintln!("SKIP: sipp is not installed (Debian package sip-tester)");
    }
    sipp
}

/// The config file: WS and WSS listeners on loopback, three users.
fn config(dir: &Path, p: &Ports) -> PathBuf {
    let path = dir.join("tern.toml");
    std::fs::write(
        &path,
        format!(
            "[sip]\nrealm = \"tern\"\nws = \"127.0.0.1:{}\"\nwss = \"127.0.0.1:{}\"\n\n\
             [[users]]\nname = \"alice\"\npassword = \"alicepw\"\n\n\
             [[users]]\nname = \"bob\"\npassword = \"bobpw\"\n\n\
             [[users]]\nname = \"carol\"\npassword = \"carolpw\"\n",
            p.ws, p.wss
        ),
    )
    .unwrap();
    path
}

/// Waits (bounded: 10 s) until 127.0.0.1:`port` accepts TCP connections.
fn wait_listening(port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `tern up` with the config of block `block`: (tern, ports, scratch dir,
/// instance).
fn start(block: u16, name: &str) -> (Proc, Ports, PathBuf, String) {
    let p = ports(block);
    let dir = sipp_workdir(&format!("browser-{name}"));
    let cfg = config(&dir, &p);
    let instance = format!("t-browser-{}-{block}", std::process::id());
    let sip = format!("127.0.0.1:{}", p.sip);
    let tern = spawn_sip_node(
        &sip,
        &p.relay,
        &instance,
        &["--config", cfg.to_str().unwrap()],
    );
    wait_listening(p.ws);
    wait_listening(p.wss);
    (tern, p, dir, instance)
}

/// bob: SIPp's `uas -rtp_echo`, registered over UDP with digest credentials.
fn start_bob(p: &Ports, dir: &Path) -> Proc {
    let uas = uas_echo(p.uas, p.uas_media, 1, dir);
    register_bob(p, dir);
    uas
}

/// bob answering re-INVITEs: SIPp with tests/sipp/hold_uas.xml (PCMA, any
/// number of re-INVITEs or UPDATEs, then BYE) and `-rtp_echo`, registered
/// over UDP.
fn start_bob_reinvites(p: &Ports, dir: &Path) -> Proc {
    let sc = scenario("hold_uas.xml");
    let (port, media) = (p.uas.to_string(), p.uas_media.to_string());
    let uas = sipp(
        &[
            "-sf",
            sc.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media,
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "90s",
        ],
        dir,
    );
    register_bob(p, dir);
    uas
}

/// bob's REGISTER over UDP with digest credentials, contact the uas.
fn register_bob(p: &Ports, dir: &Path) {
    let (contact, reg, sip) = (
        format!("127.0.0.1:{}", p.uas),
        p.reg.to_string(),
        format!("127.0.0.1:{}", p.sip),
    );
    let sc = scenario("register.xml");
    let ok = sipp_run(
        &[
            &sip,
            "-sf",
            sc.to_str().unwrap(),
            "-s",
            "bob",
            "-au",
            "bob",
            "-ap",
            "bobpw",
            "-key",
            "contact",
            &contact,
            "-i",
            "127.0.0.1",
            "-p",
            &reg,
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
        ],
        dir,
        Duration::from_secs(20),
    );
    assert!(ok, "bob's REGISTER over UDP failed");
}

/// The browser, alice, calls bob (SIPp echo) over `ws_url`.
fn browser_calls_sipp(block: u16, name: &str, wss: bool) {
    if !prerequisites() {
        return;
    }
    let (tern, p, dir, instance) = start(block, name);
    let _bob = start_bob(&p, &dir);
    let url = if wss {
        format!("wss://127.0.0.1:{}", p.wss)
    } else {
        format!("ws://127.0.0.1:{}", p.ws)
    };
    let r = drive(
        &[
            "call",
            "--ws",
            &url,
            "--user",
            "alice",
            "--password",
            "alicepw",
            "--domain",
            "127.0.0.1",
            "--target",
            "bob",
            "--seconds",
            "5",
        ],
        Duration::from_secs(90),
    );
    let got = packets_received(&r, "a");
    eprintln!("browser over {url} received {got} packets of bob's echo");
    assert!(
        r["ok"].as_bool() == Some(true),
        "drive.mjs failed: {}",
        r["error"]
    );
    assert!(got > 100, "too little media: {got} packets in 5 s");
    drop(tern);
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn browser_over_ws_registers_with_digest_and_calls_sipp() {
    browser_calls_sipp(0, "ws", false);
}

#[test]
fn browser_over_wss_registers_with_digest_and_calls_sipp() {
    browser_calls_sipp(1, "wss", true);
}

#[test]
fn two_browsers_call_each_other_through_tern() {
    if !prerequisites() {
        return;
    }
    let (tern, p, dir, instance) = start(2, "pair");
    let url = format!("ws://127.0.0.1:{}", p.ws);
    let r = drive(
        &[
            "pair",
            "--ws",
            &url,
            "--user",
            "alice",
            "--password",
            "alicepw",
            "--user2",
            "carol",
            "--password2",
            "carolpw",
            "--domain",
            "127.0.0.1",
            "--seconds",
            "5",
        ],
        Duration::from_secs(90),
    );
    let (a, b) = (packets_received(&r, "a"), packets_received(&r, "b"));
    eprintln!("through tern: alice received {a} packets, carol {b}");
    assert!(
        r["ok"].as_bool() == Some(true),
        "drive.mjs failed: {}",
        r["error"]
    );
    assert!(
        a > 100 && b > 100,
        "too little media: a {a}, b {b} packets in 5 s"
    );
    drop(tern);
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The browser calls bob (SIPp echo that answers re-INVITEs) over WS;
/// once media flows it holds (re-INVITE a=sendonly), resumes (sendrecv)
/// and restarts ICE (re-INVITE with a new ice-ufrag/pwd), each answered
/// 200 through tern, and media must flow again after the resume and after
/// the restart (packetsReceived up by more than 100 in 3 s). tern must
/// answer the restart with new credentials of its own. While the call is
/// held, tern's `/calls` shows leg 0 as the browser's (WS, DTLS-SRTP,
/// ICE-lite nominated) and leg 1 as bob's (UDP, RTP/AVP).
#[test]
fn browser_holds_resumes_and_restarts_ice_through_tern() {
    if !prerequisites() {
        return;
    }
    let p = ports(3);
    let dir = sipp_workdir("browser-hold");
    let cfg = config(&dir, &p);
    let instance = format!("t-browser-{}-3", std::process::id());
    let (sip, http) = (
        format!("127.0.0.1:{}", p.sip),
        format!("127.0.0.1:{}", p.http),
    );
    let (tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip,
            "--ports",
            &p.relay,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            &http,
            "--config",
            cfg.to_str().unwrap(),
        ],
        &["tern sip: listening"],
    );
    wait_listening(p.ws);
    wait_listening(p.http);
    let mut bob = start_bob_reinvites(&p, &dir);
    let url = format!("ws://127.0.0.1:{}", p.ws);
    let calls = format!("http://{http}/calls");
    let r = drive(
        &[
            "call",
            "--ws",
            &url,
            "--user",
            "alice",
            "--password",
            "alicepw",
            "--domain",
            "127.0.0.1",
            "--target",
            "bob",
            "--seconds",
            "5",
            "--hold-resume",
            "--ice-restart",
            "--hold-seconds",
            "2",
            "--step-seconds",
            "3",
            "--step-packets",
            "100",
            "--fetch",
            &calls,
        ],
        Duration::from_secs(100),
    );
    let st = &r["steps"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    eprintln!(
        "packets: start {}, at hold {}, end of hold {} (+{}), at resume {}, 3 s later {} (+{}), \
         at ICE restart {}, 3 s later {} (+{}); local ufrag {} -> {}, tern's {} -> {}",
        n(&st["start"]["packetsReceived"]),
        n(&st["hold"]["at"]["packetsReceived"]),
        n(&st["hold"]["end"]["packetsReceived"]),
        st["hold"]["gained"],
        n(&st["resume"]["at"]["packetsReceived"]),
        n(&st["resume"]["after"]["packetsReceived"]),
        st["resume"]["gained"],
        n(&st["iceRestart"]["connected"]["packetsReceived"]),
        n(&st["iceRestart"]["after"]["packetsReceived"]),
        st["iceRestart"]["gained"],
        st["iceRestart"]["before"]["localUfrag"],
        st["iceRestart"]["at"]["localUfrag"],
        st["iceRestart"]["before"]["remoteUfrag"],
        st["iceRestart"]["at"]["remoteUfrag"],
    );
    assert!(
        r["ok"].as_bool() == Some(true),
        "drive.mjs failed: {}",
        r["error"]
    );
    // Hold: answered, tern's answer recvonly to the browser's sendonly,
    // the call still up and the same ICE credentials (no restart).
    let hold = &st["hold"]["at"];
    assert_eq!(hold["call"], "confirmed", "{hold}");
    assert_eq!(hold["onHold"]["local"], true, "{hold}");
    assert_eq!(
        hold["remoteDirection"], "recvonly",
        "tern's answer to hold: {hold}"
    );
    assert_eq!(
        hold["remoteUfrag"], st["start"]["remoteUfrag"],
        "hold restarted ICE: {hold}"
    );
    assert_eq!(st["hold"]["end"]["call"], "confirmed");
    // Resume and ICE restart: media again.
    let resumed = n(&st["resume"]["gained"]);
    assert!(
        resumed > 100,
        "after resume only {resumed} more packets in 3 s"
    );
    assert_eq!(st["resume"]["at"]["remoteDirection"], "sendrecv");
    let restarted = n(&st["iceRestart"]["gained"]);
    assert!(
        restarted > 100,
        "after the ICE restart only {restarted} more packets in 3 s"
    );
    let ir = &st["iceRestart"];
    for side in ["localUfrag", "remoteUfrag"] {
        assert!(
            ir["before"][side].is_string() && ir["at"][side].is_string(),
            "{side}: {ir}"
        );
        assert_ne!(
            ir["before"][side], ir["at"][side],
            "{side} unchanged by the ICE restart"
        );
    }
    assert_eq!(st["end"]["call"], "confirmed");
    assert_eq!(st["end"]["errors"], 0);
    // tern's view of the held call: the browser's WebRTC leg and bob's
    // plain one; nothing relayed to the browser while it holds (bob's
    // echo of its silence is dropped by direction).
    let call = |v: &serde_json::Value| v["calls"][0].clone();
    let (held, held_end) = (
        call(&st["hold"]["fetched"]),
        call(&st["hold"]["fetchedEnd"]),
    );
    eprintln!("GET /calls while held: {held}");
    let (l0, l1) = (&held["legs"][0], &held["legs"][1]);
    assert_eq!(l0["transport"], "ws", "{l0}");
    assert_eq!(l0["profile"], "UDP/TLS/RTP/SAVPF", "{l0}");
    assert_eq!(l0["dtls"], "connected", "{l0}");
    assert_eq!(l0["ice"], "lite, nominated", "{l0}");
    assert_eq!(l1["transport"], "udp", "{l1}");
    assert_eq!(l1["profile"], "RTP/AVP", "{l1}");
    let (sent, dropped) = (
        n(&held_end["legs"][0]["tx_packets"]).saturating_sub(n(&l0["tx_packets"])),
        n(&held_end["legs"][1]["drops"]["direction"]).saturating_sub(n(&l1["drops"]["direction"])),
    );
    eprintln!("while held: {sent} packets to the browser, {dropped} of bob's dropped by direction");
    assert!(sent < 10, "tern sent {sent} packets to the held browser");
    assert!(
        dropped > 50,
        "only {dropped} of bob's packets dropped while held"
    );
    // After the restart tern's leg is latched to the browser's new pair.
    let restarted = call(&st["iceRestart"]["fetched"]);
    let l0 = &restarted["legs"][0];
    let pair = st["iceRestart"]["after"]["pair"]
        .as_str()
        .unwrap_or_default();
    let browser_end = pair.split(" -> ").next().unwrap_or_default();
    eprintln!(
        "selected pair {} before the restart, {pair} after; tern's leg 0 peer {}",
        st["iceRestart"]["before"]["pair"], l0["peer"]
    );
    assert_eq!(
        l0["peer"], browser_end,
        "tern's leg 0 after the ICE restart: {l0}"
    );
    assert_eq!(l0["ice"], "lite, nominated", "{l0}");
    assert_eq!(l0["dtls"], "connected", "{l0}");
    // bob saw the re-INVITEs and the BYE through to its end.
    assert_eq!(
        bob.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "bob (hold_uas.xml) did not finish its scenario"
    );
    drop(tern);
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}
