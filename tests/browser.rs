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
//! - two browsers, alice calls carol, both through tern.
//!
//! Each starts `tern up` with `--sip` (UDP and TCP) and a config file of
//! `[sip] ws`, `wss` and `[[users]]`. Skips, saying so, without Chromium,
//! node, tests/browser/node_modules (`npm ci --prefix tests/browser`) or
//! sipp.
//!
//! Ports (each test its own block of 30 from 33100): SIP base, WS base+1,
//! WSS base+2, SIPp uas base+3 (media base+4..base+7: RTP, RTCP, video),
//! SIPp register base+8, relay
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
        relay: format!("{}-{}", base + 10, base + 29),
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
    uas
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
