//! Validates the real-browser harness (tests/browser: Chromium driven by
//! playwright-core, JsSIP in the page) against a SIP-over-WebSocket peer
//! known to work, stock Kamailio with its websocket module
//! (tests/kamailio/kamailio-ws.cfg): two pages of one Chromium register
//! over WS as alice and bob, alice calls bob, bob answers, and each page's
//! RTCPeerConnection counts the other's audio (DTLS-SRTP, browser to
//! browser over loopback; Kamailio proxies the signaling only).
//!
//! The same harness in `call` mode: a browser over WS calls SIPp's `uas
//! -rtp_echo` (registered over UDP) through Kamailio, whose rtpengine
//! module has a relay terminate ICE and DTLS-SRTP toward the browser and
//! speak plain RTP toward SIPp (`-A WITH_MEDIA`): rtpengine itself, the
//! known-good relay, and tern relay.
//!
//! Skips, saying so, without Chromium, node, tests/browser/node_modules
//! (`npm ci --prefix tests/browser`), kamailio or its websocket module
//! (and sipp, rtpengine for the `call` tests).
//!
//! Ports: browser pair: Kamailio UDP 33000 (readiness probe only), WS
//! 33001, probe 33002. Through rtpengine: Kamailio UDP 33010, WS 33011,
//! probe 33012, SIPp uas 33013 (media 33014-33017), SIPp register 33018, ng
//! 33020, relay 21600-21619. Through tern: the same +40 (relay
//! 21640-21659), instance `t-bk-PID`.

mod common;
use common::browser::*;
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KAM_UDP: u16 = 33000;
const KAM_WS: u16 = 33001;
const PROBE: u16 = 33002;

fn kamailio_ws_prerequisites() -> bool {
    let bin = kamailio_bin();
    if !bin.exists() && bin == Path::new("kamailio") {
        eprintln!("SKIP: kamailio is not installed (Debian package kamailio)");
        return false;
    }
    let have_ws = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("kamailio/modules/websocket.so").exists());
    if !have_ws {
        eprintln!("SKIP: Kamailio's websocket module is missing (Debian package kamailio-websocket-modules)");
        return false;
    }
    true
}

#[test]
fn browsers_call_each_other_through_kamailio_ws() {
    if !browser_prerequisites() || !kamailio_ws_prerequisites() {
        return;
    }
    let run = std::env::temp_dir().join(format!("tern-bk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let _kam = start_kamailio_listening(
        "kamailio-ws.cfg",
        &run,
        &[
            format!("udp:127.0.0.1:{KAM_UDP}"),
            format!("tcp:127.0.0.1:{KAM_WS}"),
        ],
        &[],
        "127.0.0.1",
        KAM_UDP,
        PROBE,
    );
    let ws = format!("ws://127.0.0.1:{KAM_WS}");
    let r = drive(
        &[
            "pair",
            "--ws",
            &ws,
            "--user",
            "alice",
            "--user2",
            "bob",
            "--domain",
            "127.0.0.1",
            "--seconds",
            "5",
        ],
        Duration::from_secs(90),
    );
    let (a, b) = (packets_received(&r, "a"), packets_received(&r, "b"));
    eprintln!("browser a received {a} packets, browser b {b}");
    assert!(
        r["ok"].as_bool() == Some(true),
        "drive.mjs failed: {}",
        r["error"]
    );
    assert!(
        a > 100 && b > 100,
        "too little media: a {a}, b {b} packets in 5 s"
    );
    let _ = std::fs::remove_dir_all(&run);
}

fn have(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A browser over WS calls SIPp's echo through Kamailio and the relay on
/// ng 127.0.0.1:`base+10`; ports from `base` (see the module's list).
/// `relay(ng, lo, hi)` starts the relay and returns what keeps it running.
fn browser_calls_sipp_echo(base: u16, relay: &dyn Fn(u16, u16, u16) -> Box<dyn std::any::Any>) {
    if !browser_prerequisites() || !kamailio_ws_prerequisites() {
        return;
    }
    if !have("sipp", "-v") {
        eprintln!("SKIP: sipp is not installed (Debian package sip-tester)");
        return;
    }
    let (kam_udp, kam_ws, probe, uas, uas_media, reg, ng) = (
        base,
        base + 1,
        base + 2,
        base + 3,
        base + 4,
        base + 8,
        base + 10,
    );
    let dir = sipp_workdir(&format!("bk-{base}"));
    // Relay ports below the kernel's ephemeral range (32768-), so no
    // outgoing socket of Chromium or SIPp can hold one: 21600-21619 for
    // the block at 33010, 21640-21659 for the one at 33050.
    let lo = 21600 + (base - 33010);
    let _relay = relay(ng, lo, lo + 19);
    let _kam = start_kamailio_listening(
        "kamailio-ws.cfg",
        &dir.join("kamailio"),
        &[
            format!("udp:127.0.0.1:{kam_udp}"),
            format!("tcp:127.0.0.1:{kam_ws}"),
        ],
        &[
            "WITH_MEDIA".into(),
            format!("NG_SOCK=\"udp:127.0.0.1:{ng}\""),
        ],
        "127.0.0.1",
        kam_udp,
        probe,
    );
    let mut bob = uas_echo(uas, uas_media, 1, &dir);
    register(
        "bob",
        &format!("127.0.0.1:{uas}"),
        &format!("127.0.0.1:{kam_udp}"),
        reg,
        &dir,
    );
    let ws = format!("ws://127.0.0.1:{kam_ws}");
    let r = drive(
        &[
            "call",
            "--ws",
            &ws,
            "--user",
            "alice",
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
    eprintln!(
        "browser received {got} packets of SIPp's echo ({})",
        r["pages"]["a"]["codec"]
    );
    assert!(
        r["ok"].as_bool() == Some(true),
        "drive.mjs failed: {}",
        r["error"]
    );
    assert!(got > 100, "too little media: {got} packets in 5 s");
    // The BYE reached SIPp: its one call ended well (bounded: 10 s).
    assert_eq!(
        bob.wait_for(Duration::from_secs(10)).map(|s| s.success()),
        Some(true),
        "SIPp's uas did not end its call cleanly"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn browser_calls_sipp_echo_through_kamailio_ws_and_rtpengine() {
    if !have_rtpengine() {
        return;
    }
    browser_calls_sipp_echo(33010, &|ng, lo, hi| {
        Box::new(Rtpengine::start_on(ng, &["127.0.0.1"], lo, hi, &[]))
    });
}

/// The same call with tern relay in rtpengine's place. The offer's
/// `ICE=remove DTLS=off` concern the SDP to SIPp only (rtpengine's
/// semantics), so tern's answer to the browser carries its ICE-lite
/// credentials and host candidate, fingerprint, `a=setup:active`,
/// `a=rtcp-mux` and the offer's `a=mid`.
#[test]
fn browser_calls_sipp_echo_through_kamailio_ws_and_tern_relay() {
    /// Removes the relay's slot table however the test ends.
    struct Table(String);
    impl Drop for Table {
        fn drop(&mut self) {
            unlink_table(&self.0);
        }
    }
    let table = Table(format!("t-bk-{}", std::process::id()));
    browser_calls_sipp_echo(33050, &|ng, lo, hi| {
        Box::new(spawn_relay(&table.0, &format!("{lo}-{hi}"), ng, &[]).0)
    });
}
