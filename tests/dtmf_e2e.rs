//! RFC 4733 DTMF end to end: SIPp's `uac_pcap` scenario playing
//! `dtmf_2833_1.pcap` (event 1, its end packet sent three times) through
//! `tern up` to a SIPp `uas` yields exactly one digit `1`, seen through
//! `/calls/{call-id}` and through `tern ctl dtmf`.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const HTTP: &str = "127.0.0.1:18081";
const SIP: &str = "127.0.0.1:15475";

fn get_json(path: &str) -> (u16, Value) {
    let (status, body) =
        tern_observe::ctl::get(HTTP, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (status, v)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn sipp_dtmf_1_is_seen_once_via_http_and_ctl() {
    let instance = format!("t-h3-dtmf-{}", std::process::id());
    let dir = sipp_workdir("t-h3-dtmf");
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            SIP,
            "--ports",
            "26100-26199",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "127.0.0.1:22332",
            "--http",
            HTTP,
        ],
        &["tern sip: listening", "tern http: listening"],
    );
    // No -rtp_echo: an echoed event would be a second key press on leg 1.
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            "15476",
            "-mp",
            "16320",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:15476", SIP, 15477, &dir);

    // The DTMF, then 5 s of silence before BYE (the call must be live to
    // be asked about).
    let sc = scenario("uac_dtmf.xml");
    let mut uac = sipp(
        &[
            SIP,
            "-sf",
            sc.to_str().unwrap(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "15478",
            "-mp",
            "16330",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let call_id = loop {
        assert!(Instant::now() < deadline, "no call appeared in /calls");
        let (_, calls) = get_json("/calls");
        if let Some(id) = calls["calls"][0]["call_id"].as_str() {
            break id.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let path = format!("/calls/{}", encode(&call_id));

    // Wait until the event shows, then a little longer so that the end
    // packet's retransmissions (sent within 50 ms) have surely arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, c) = get_json(&path);
        assert_eq!(status, 200, "{c}");
        if c["dtmf"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no DTMF event: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let (status, c) = get_json(&path);
    assert_eq!(status, 200, "{c}");
    let events = c["dtmf"].as_array().expect("dtmf array");
    assert_eq!(events.len(), 1, "exactly one key press: {c}");
    let e = &events[0];
    assert_eq!(e["digit"], "1", "{e}");
    assert_eq!(e["event"], 1, "{e}");
    assert_eq!(e["leg"], 0, "received from the caller: {e}");
    // The pcap's end packets carry duration 2240 (280 ms at 8000 Hz).
    let ms = e["duration_ms"].as_f64().unwrap_or(0.0);
    assert!((200.0..=400.0).contains(&ms), "duration {ms} ms: {e}");

    let out = Command::new(tern_bin())
        .args(["ctl", "--http", HTTP, "dtmf", &call_id])
        .output()
        .expect("tern ctl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line per event: {stdout:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"1"), "{stdout:?}");
    assert_eq!(fields.get(2), Some(&"ms"), "{stdout:?}");

    assert_eq!(
        uac.wait_for(Duration::from_secs(30)).map(|s| s.success()),
        Some(true),
        "uac failed"
    );
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}
