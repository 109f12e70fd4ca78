//! Stock Kamailio 5.6 and its `rtpengine` module put a SIPp call through
//! two of tern's interfaces (`tern relay --interface priv/127.0.0.2
//! --interface pub/127.0.0.3`; loopback aliases work on Linux `lo` without
//! configuration). The caller (SIPp `uac_pcap` on 127.0.0.2) is on the
//! private side, the callee (SIPp `uas -rtp_echo` on 127.0.0.3, registered
//! through Kamailio) on the public side. tests/kamailio/kamailio.cfg runs
//! with `-A 'OFFER_EXTRA="direction=priv direction=pub"'`: the initial
//! INVITE's offer is `rtpengine_manage("... direction=priv
//! direction=pub")` (sender = caller = priv, recipient = callee = pub); its
//! 200 OK's answer is `rtpengine_manage("...")` without `direction`, as the
//! module documents ("answers or subsequent offers can omit this option").
//! rtpengine (call.c: `__init_interface(receiver_media, &sp->direction[1])`,
//! `(sender_media, &sp->direction[0])`, for answers too: no swap) and tern
//! read `direction` on any message as [the sender's interface, the
//! recipient's] and keep each side's interface; the offer's list repeated
//! on the answer would move both legs over (the caller would be told
//! 127.0.0.3), so an answer that names them says `direction=pub
//! direction=priv` (the second call does).
//!
//! Checked: the INVITE reaching the callee says tern's pub address and a
//! port of leg 1, the 200 OK reaching the caller tern's priv address and a
//! port of leg 0; the slot's legs are on priv and pub; RTP flows both ways,
//! each side exchanging it only with tern's address on its own network
//! (the slot's counters, and tshark on `lo`). A second call, with `pub`
//! advertising 203.0.113.7 (a 1:1 NAT's public address) and the answer
//! naming `direction=pub direction=priv`, checks the SDP alone (such an
//! address carries no media on this host).
//!
//! Ports: SIP 18300-18309 and 18318-18319 (ng), SIPp media 18310-18317 on
//! 127.0.0.2 and 127.0.0.3, relay media 22700-22799, instances
//! `ng-kam-if-*`.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tern_shared::table::SlotTable;

const PRIV: &str = "127.0.0.2";
const PUB: &str = "127.0.0.3";

/// The ports of one call's agents.
struct Ports {
    kam: u16,
    uas: u16,
    reg: u16,
    uac: u16,
    probe: u16,
    ng: u16,
    /// The caller's media port (on 127.0.0.2).
    uac_media: u16,
    /// The callee's media port (on 127.0.0.3).
    uas_media: u16,
    relay: &'static str,
}

/// Whether kamailio (with its rtpengine module) and sipp are installed;
/// prints why not.
fn prerequisites() -> bool {
    let bin = kamailio_bin();
    if !bin.exists() && bin == Path::new("kamailio") {
        eprintln!("SKIP: kamailio is not installed (Debian package kamailio)");
        return false;
    }
    let have_module = ["/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/local/lib"]
        .iter()
        .any(|d| Path::new(d).join("kamailio/modules/rtpengine.so").exists());
    if !have_module {
        eprintln!("SKIP: Kamailio's rtpengine module is missing (Debian package kamailio)");
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

/// The SIP messages that SIPp logged (`-trace_msg`) as received, in order.
fn received(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter_map(|chunk| {
            let (head, msg) = chunk.split_once("\n\n")?;
            head.contains("message received").then(|| msg.to_string())
        })
        .collect()
}

/// The received message whose first line starts with `start` and whose
/// CSeq names `method`.
fn find_msg(log: &Path, start: &str, method: &str) -> String {
    let all = received(log);
    all.iter()
        .find(|m| {
            m.starts_with(start)
                && m.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("cseq:") && l.trim_end().ends_with(method)
                })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {start:?} ({method}) in {}: {all:#?}", log.display()))
}

/// The SDP lines of `msg` that start with `prefix` (`c=`, `m=`, `o=`).
fn sdp_lines(msg: &str, prefix: &str) -> Vec<String> {
    msg.lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The port of the first `m=audio` line.
fn audio_port(msg: &str) -> u16 {
    sdp_lines(msg, "m=audio")
        .first()
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in {msg}"))
}

/// Packets per (source, destination) `IP:port` in a pcap file.
fn flows(file: &Path) -> BTreeMap<(String, String), u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
        ])
        .output()
        .expect("tshark -r");
    let mut m = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if let [sip, sp, dip, dp] = f[..] {
            *m.entry((format!("{sip}:{sp}"), format!("{dip}:{dp}")))
                .or_insert(0) += 1;
        }
    }
    m
}

/// Removes a call's slot table and scratch directory on drop (after a
/// failed assertion too; declared before the processes, so it runs after
/// they are stopped).
struct Cleanup {
    instance: String,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        unlink_table(&self.instance);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one call through Kamailio left to check.
struct Call {
    /// The INVITE as the callee received it.
    invite: String,
    /// The 200 OK to the INVITE as the caller received it.
    ok: String,
    seen: Vec<SlotSeen>,
    /// The table's interfaces (bound address, advertised address).
    ifaces: Vec<(IpAddr, IpAddr)>,
    /// The local RTP ports of (leg 0, leg 1) of the call's slot.
    ports: (u16, u16),
    /// RTP on the relay's ports, per flow (only with `capture`).
    flows: BTreeMap<(String, String), u64>,
}

/// One call from SIPp on 127.0.0.2 (`uac`: its scenario arguments) to a
/// registered `uas -rtp_echo` on 127.0.0.3 through Kamailio and a `tern
/// relay` with `interfaces`. The offer carries `direction=priv
/// direction=pub`, the answer the flags `answer`; `capture`: tshark
/// records the relay's ports on `lo`.
fn call(
    name: &str,
    p: &Ports,
    interfaces: &[&str],
    answer: &str,
    uac: &[&str],
    capture: bool,
) -> Call {
    let instance = format!("ng-kam-if-{name}-{}", std::process::id());
    let dir = sipp_workdir(&format!("ng-kam-if-{name}"));
    let _cleanup = Cleanup {
        instance: instance.clone(),
        dir: dir.clone(),
    };
    let mut extra = vec![];
    for i in interfaces {
        extra.extend(["--interface", i]);
    }
    let (relay, lines) = spawn_relay(&instance, p.relay, p.ng, &extra);
    let kam = start_kamailio_listening(
        "kamailio.cfg",
        &dir.join("kamailio-run"),
        &[format!("udp:127.0.0.1:{}", p.kam)],
        &[
            format!("NG_SOCK=\"udp:127.0.0.1:{}\"", p.ng),
            "OFFER_EXTRA=\"direction=priv direction=pub\"".into(),
            format!("ANSWER_EXTRA=\"{answer}\""),
        ],
        "127.0.0.1",
        p.kam,
        p.probe,
    );
    let uas_log = dir.join("uas-messages.log");
    let uac_log = dir.join("uac-messages.log");
    let (uas_port, uas_media) = (p.uas.to_string(), p.uas_media.to_string());
    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            PUB,
            "-p",
            &uas_port,
            "-mp",
            &uas_media,
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
            "-trace_msg",
            "-message_file",
            uas_log.to_str().unwrap(),
        ],
        &dir,
    );
    register(
        "bob",
        &format!("{PUB}:{}", p.uas),
        &format!("127.0.0.1:{}", p.kam),
        p.reg,
        &dir,
    );

    let (lo, hi) = p.relay.split_once('-').unwrap();
    let cap = capture
        .then(|| Capture::start(&format!("udp portrange {lo}-{hi}"), &dir.join("relay.pcap")));
    let watch = SlotWatch::start(&instance);
    let (uac_port, uac_media) = (p.uac.to_string(), p.uac_media.to_string());
    let server = format!("127.0.0.1:{}", p.kam);
    let mut args = vec![server.as_str()];
    args.extend_from_slice(uac);
    args.extend_from_slice(&[
        "-s",
        "bob",
        "-i",
        PRIV,
        "-p",
        &uac_port,
        "-mp",
        &uac_media,
        "-m",
        "1",
        "-timeout",
        "60s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        uac_log.to_str().unwrap(),
    ]);
    let ok = sipp_run(&args, &dir, Duration::from_secs(70));
    let seen = watch.finish();
    let flows = cap.map(|c| flows(&c.finish())).unwrap_or_default();
    assert!(ok, "the call through Kamailio failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    let table = SlotTable::open(&instance).expect("slot table");
    let ifaces = table
        .interfaces()
        .iter()
        .map(|i| (i.ip, i.advertised))
        .collect();
    assert_eq!(seen.len(), 1, "expected one slot for one call: {seen:?}");
    let ports = (
        table.ports(seen[0].id, 0).rtp,
        table.ports(seen[0].id, 1).rtp,
    );
    // BYE went through rtpengine_manage(): the slot is free again.
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    let invite = find_msg(&uas_log, "INVITE ", "INVITE");
    let ok = find_msg(&uac_log, "SIP/2.0 200", "INVITE");
    drop(kam);
    drop(relay);
    let out = lines.lock().unwrap().join("\n");
    assert!(out.contains("tern relay"), "{out}");
    drop(table);
    Call {
        invite,
        ok,
        seen,
        ifaces,
        ports,
        flows,
    }
}

#[test]
fn kamailio_direction_puts_caller_on_priv_and_callee_on_pub() {
    if !prerequisites() {
        return;
    }
    let p = Ports {
        kam: 18300,
        uas: 18301,
        reg: 18302,
        uac: 18303,
        probe: 18304,
        ng: 18305,
        uac_media: 18310,
        uas_media: 18314,
        relay: "22700-22749",
    };
    let c = call(
        "media",
        &p,
        &["priv/127.0.0.2", "pub/127.0.0.3"],
        "",
        &["-sn", "uac_pcap"],
        true,
    );
    eprintln!(
        "INVITE at the callee: {:?} {:?} {:?}\n200 OK at the caller: {:?} {:?} {:?}",
        sdp_lines(&c.invite, "o="),
        sdp_lines(&c.invite, "c="),
        sdp_lines(&c.invite, "m="),
        sdp_lines(&c.ok, "o="),
        sdp_lines(&c.ok, "c="),
        sdp_lines(&c.ok, "m="),
    );

    // Each side's SDP says tern's address on its own network, and a port
    // of the leg facing it.
    let (p0, p1) = c.ports;
    let c_inv = sdp_lines(&c.invite, "c=");
    assert!(!c_inv.is_empty(), "{}", c.invite);
    assert!(c_inv.iter().all(|l| l == "c=IN IP4 127.0.0.3"), "{c_inv:?}");
    assert_eq!(audio_port(&c.invite), p1, "{}", c.invite);
    let c_ok = sdp_lines(&c.ok, "c=");
    assert!(!c_ok.is_empty(), "{}", c.ok);
    assert!(c_ok.iter().all(|l| l == "c=IN IP4 127.0.0.2"), "{c_ok:?}");
    assert_eq!(audio_port(&c.ok), p0, "{}", c.ok);
    for (msg, ip) in [(&c.invite, PUB), (&c.ok, PRIV)] {
        let o = sdp_lines(msg, "o=");
        assert!(
            o.len() == 1 && o[0].ends_with(&format!("IN IP4 {ip}")),
            "replace-origin: {o:?}"
        );
    }

    // Leg 0 (the caller's) is on priv, leg 1 (the callee's) on pub.
    let slot = &c.seen[0];
    let ip_of = |leg: usize| c.ifaces[usize::from(slot.cfg.legs[leg].iface)].0;
    assert_eq!(ip_of(0), PRIV.parse::<IpAddr>().unwrap(), "{slot:?}");
    assert_eq!(ip_of(1), PUB.parse::<IpAddr>().unwrap(), "{slot:?}");
    assert_eq!(
        slot.cfg.legs[0].peer,
        Some(format!("{PRIV}:{}", p.uac_media).parse().unwrap())
    );
    assert_eq!(
        slot.cfg.legs[1].peer,
        Some(format!("{PUB}:{}", p.uas_media).parse().unwrap())
    );

    // Media flowed both ways through the slot.
    let [caller, callee] = slot.legs;
    eprintln!("leg 0 (caller): {caller:?}\nleg 1 (callee): {callee:?}");
    assert!(caller.rx_packets > 100, "caller -> tern: {caller:?}");
    assert!(callee.tx_packets > 100, "tern -> callee: {callee:?}");
    assert!(callee.rx_packets > 100, "callee's echo -> tern: {callee:?}");
    assert!(caller.tx_packets > 100, "tern -> caller: {caller:?}");

    // On the wire: each side exchanged RTP with tern's address on its own
    // network only.
    eprintln!("RTP on the relay's ports: {:#?}", c.flows);
    let a = |ip: &str, port: u16| format!("{ip}:{port}");
    let expect = [
        (a(PRIV, p.uac_media), a(PRIV, p0)),
        (a(PRIV, p0), a(PRIV, p.uac_media)),
        (a(PUB, p1), a(PUB, p.uas_media)),
        (a(PUB, p.uas_media), a(PUB, p1)),
    ];
    for f in &expect {
        let n = c.flows.get(f).copied().unwrap_or(0);
        assert!(n > 100, "{f:?}: {n} packets; {:#?}", c.flows);
    }
    let stray: Vec<_> = c.flows.keys().filter(|f| !expect.contains(f)).collect();
    assert!(stray.is_empty(), "RTP off the expected paths: {stray:?}");
}

#[test]
fn kamailio_callee_sees_the_advertised_pub_address() {
    if !prerequisites() {
        return;
    }
    // The SIPp media ports of the first test with the addresses swapped,
    // so that both tests can run at once.
    let p = Ports {
        kam: 18306,
        uas: 18307,
        reg: 18308,
        uac: 18309,
        probe: 18318,
        ng: 18319,
        uac_media: 18314,
        uas_media: 18310,
        relay: "22750-22799",
    };
    let c = call(
        "adv",
        &p,
        &["priv/127.0.0.2", "pub/127.0.0.3!203.0.113.7"],
        // The answer's sender is the callee, on pub.
        "direction=pub direction=priv",
        // A pause of 1.5 s between ACK and BYE, for the slot watch.
        &["-sn", "uac", "-d", "1500"],
        false,
    );
    eprintln!(
        "INVITE at the callee: {:?}\n200 OK at the caller: {:?}",
        sdp_lines(&c.invite, "c="),
        sdp_lines(&c.ok, "c="),
    );
    let c_inv = sdp_lines(&c.invite, "c=");
    assert!(!c_inv.is_empty(), "{}", c.invite);
    assert!(
        c_inv.iter().all(|l| l == "c=IN IP4 203.0.113.7"),
        "{c_inv:?}"
    );
    assert_eq!(audio_port(&c.invite), c.ports.1, "{}", c.invite);
    let c_ok = sdp_lines(&c.ok, "c=");
    assert!(!c_ok.is_empty(), "{}", c.ok);
    assert!(c_ok.iter().all(|l| l == "c=IN IP4 127.0.0.2"), "{c_ok:?}");
    assert_eq!(audio_port(&c.ok), c.ports.0, "{}", c.ok);
    // pub is bound on 127.0.0.3 and advertises 203.0.113.7; leg 1 is on it.
    let slot = &c.seen[0];
    let pub_if = c.ifaces[usize::from(slot.cfg.legs[1].iface)];
    assert_eq!(
        pub_if,
        (
            PUB.parse::<IpAddr>().unwrap(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        )
    );
    let priv_if = c.ifaces[usize::from(slot.cfg.legs[0].iface)];
    assert_eq!(priv_if.0, PRIV.parse::<IpAddr>().unwrap());
}
