//! Two tern relays in one Kamailio rtpengine set: relay A holds at most
//! one call (`--max-sessions 1`), relay B is unlimited. A carries weight
//! 256 and B weight 1, so Kamailio (whose node choice is the Call-ID's
//! byte sum & 0xff modulo the weight sum) always asks A first. The first
//! SIPp call is anchored on A; A answers the second call's offer `result:
//! load limit`, and Kamailio moves it to B, whose slot then carries the
//! second caller's media port.
//!
//! Ports: SIP 18200-18205, SIPp media 18206-18217, ng 18218 (A) and
//! 18219 (B), relay media 21700-21739 (A) and 21740-21799 (B), all below
//! the kernel's ephemeral range.

mod common;
use common::*;

use std::net::UdpSocket;
use std::time::Duration;

use tern_ng::bencode::{bstr, decode_dict, encode, Dict, Value};

const KAM: u16 = 18200;
const UAS: u16 = 18201;
const REG: u16 = 18202;
const UAC1: u16 = 18203;
const UAC2: u16 = 18204;
const PROBE: u16 = 18205;
const UAS_MEDIA: u16 = 18206;
const UAC1_MEDIA: u16 = 18210;
const UAC2_MEDIA: u16 = 18214;
const NG_A: u16 = 18218;
const NG_B: u16 = 18219;

/// One ng command to 127.0.0.1:`port`; the reply dictionary.
fn ng(port: u16, cmd: &str) -> Value {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut msg = b"lb1 ".to_vec();
    msg.extend(encode(&Dict::new().with("command", bstr(cmd)).into_value()));
    sock.send_to(&msg, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = sock.recv(&mut buf).expect("ng reply");
    let body = buf[..n].strip_prefix(b"lb1 ").expect("cookie");
    Value::Dict(decode_dict(body).unwrap())
}

fn stat(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.as_dict()?.get(p.as_bytes())?;
    }
    cur.as_u64()
}

fn uac(port: u16, media: u16) -> Vec<String> {
    [
        format!("127.0.0.1:{KAM}"),
        "-sn".into(),
        "uac_pcap".into(),
        "-s".into(),
        "bob".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-mp".into(),
        media.to_string(),
        "-m".into(),
        "1".into(),
        "-timeout".into(),
        "60s".into(),
        "-timeout_error".into(),
    ]
    .into()
}

#[test]
fn kamailio_moves_to_the_second_relay_on_load_limit() {
    let pid = std::process::id();
    let (ia, ib) = (format!("ng-lb-a-{pid}"), format!("ng-lb-b-{pid}"));
    let dir = sipp_workdir("ng-lb");
    let (relay_a, lines_a) = spawn_relay(&ia, "21700-21739", NG_A, &["--max-sessions", "1"]);
    let (relay_b, lines_b) = spawn_relay(&ib, "21740-21799", NG_B, &[]);
    let kam = start_kamailio_listening(
        "kamailio.cfg",
        &dir.join("kamailio-run"),
        &[format!("udp:127.0.0.1:{KAM}")],
        &[format!(
            "NG_SOCK=\"udp:127.0.0.1:{NG_A}=256 udp:127.0.0.1:{NG_B}=1\""
        )],
        "127.0.0.1",
        KAM,
        PROBE,
    );
    let mut uas = uas_echo(UAS, UAS_MEDIA, 2, &dir);
    register(
        "bob",
        &format!("127.0.0.1:{UAS}"),
        &format!("127.0.0.1:{KAM}"),
        REG,
        &dir,
    );

    let (wa, wb) = (SlotWatch::start(&ia), SlotWatch::start(&ib));
    let a1 = uac(UAC1, UAC1_MEDIA);
    let mut first = sipp(&a1.iter().map(String::as_str).collect::<Vec<_>>(), &dir);
    // The second call starts while the first is up (uac_pcap plays for
    // several seconds).
    std::thread::sleep(Duration::from_secs(2));
    let a2 = uac(UAC2, UAC2_MEDIA);
    let ok2 = sipp_run(
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
        &dir,
        Duration::from_secs(70),
    );
    let ok1 = first
        .wait_for(Duration::from_secs(70))
        .is_some_and(|s| s.success());
    let (seen_a, seen_b) = (wa.finish(), wb.finish());
    let stats_a = ng(NG_A, "statistics");
    let stats_b = ng(NG_B, "statistics");
    assert!(ok1, "first call failed");
    assert!(ok2, "second call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );

    // One call on each relay: the first caller's media on A, the
    // second's on B.
    assert_eq!(seen_a.len(), 1, "relay A: {seen_a:?}");
    assert_eq!(seen_b.len(), 1, "relay B: {seen_b:?}");
    let caller_port = |s: &SlotSeen| s.cfg.legs[0].peer.map(|a| a.port());
    assert_eq!(caller_port(&seen_a[0]), Some(UAC1_MEDIA), "{seen_a:?}");
    assert_eq!(caller_port(&seen_b[0]), Some(UAC2_MEDIA), "{seen_b:?}");
    assert!(seen_b[0].legs[0].rx_packets > 50, "{seen_b:?}");
    // A refused exactly one offer with `load limit`; B refused none.
    let ctl = ["statistics", "controlstatistics", "loadlimited"];
    assert_eq!(stat(&stats_a, &ctl), Some(1), "{stats_a:?}");
    assert_eq!(stat(&stats_b, &ctl), Some(0), "{stats_b:?}");
    let managed = ["statistics", "totalstatistics", "managedsessions"];
    assert_eq!(stat(&stats_a, &managed), Some(1));
    assert_eq!(stat(&stats_b, &managed), Some(1));

    assert!(
        wait_all_free(&ia, Duration::from_secs(5)),
        "A not freed after BYE"
    );
    assert!(
        wait_all_free(&ib, Duration::from_secs(5)),
        "B not freed after BYE"
    );
    drop(kam);
    let out = format!(
        "{}\n{}",
        lines_a.lock().unwrap().join("\n"),
        lines_b.lock().unwrap().join("\n")
    );
    drop((relay_a, relay_b));
    let _ = std::fs::remove_dir_all(&dir);
    unlink_table(&ia);
    unlink_table(&ib);
    assert!(out.contains("tern relay"), "{out}");
}
