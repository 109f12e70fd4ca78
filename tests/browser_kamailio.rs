//! Validates the real-browser harness (tests/browser: Chromium driven by
//! playwright-core, JsSIP in the page) against a SIP-over-WebSocket peer
//! known to work, stock Kamailio with its websocket module
//! (tests/kamailio/kamailio-ws.cfg): two pages of one Chromium register
//! over WS as alice and bob, alice calls bob, bob answers, and each page's
//! RTCPeerConnection counts the other's audio (DTLS-SRTP, browser to
//! browser over loopback; Kamailio proxies the signaling only).
//!
//! Skips, saying so, without Chromium, node, tests/browser/node_modules
//! (`npm ci --prefix tests/browser`), kamailio or its websocket module.
//!
//! Ports: Kamailio UDP 33000 (readiness probe only), WS 33001; probe 33002.

mod common;
use common::browser::*;
use common::*;

use std::path::Path;
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
            "pair", "--ws", &ws, "--user", "alice", "--user2", "bob", "--domain", "127.0.0.1",
            "--seconds", "5",
        ],
        Duration::from_secs(90),
    );
    let (a, b) = (packets_received(&r, "a"), packets_received(&r, "b"));
    eprintln!("browser a received {a} packets, browser b {b}");
    assert!(r["ok"].as_bool() == Some(true), "drive.mjs failed: {}", r["error"]);
    assert!(a > 100 && b > 100, "too little media: a {a}, b {b} packets in 5 s");
    let _ = std::fs::remove_dir_all(&run);
}
