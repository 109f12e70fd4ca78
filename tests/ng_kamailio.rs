//! Stock Kamailio with its `rtpengine` module pointed at tern's ng socket
//! (config: tests/kamailio/kamailio.cfg). SIPp's `uas -rtp_echo` registers
//! through Kamailio, SIPp's `uac_pcap` calls it; the media goes through
//! `tern relay`'s ports, and the slot is gone after BYE.

mod common;
use common::*;

use std::time::Duration;

#[test]
fn kamailio_rtpengine_module_drives_tern_for_a_sipp_call() {
    let instance = format!("ng-kam-{}", std::process::id());
    let dir = sipp_workdir("ng-kam");
    let ng = free_port();
    let ng_arg = format!("127.0.0.1:{ng}");
    let (tern, lines) = spawn_tern(
        &[
            "relay",
            "--ports",
            "23700-23799",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            &ng_arg,
            "--no-pin",
        ],
        &["tern ng", "tern relay"],
    );
    let ports = SippPorts::pick();
    let kam = start_kamailio(
        "kamailio.cfg",
        &dir.join("kamailio-run"),
        "127.0.0.1",
        ports.kam,
        ng,
        ports.reg,
    );

    let mut uas = sipp(
        &[
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &ports.uas.to_string(),
            "-mp",
            &ports.uas_media.to_string(),
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "60s",
        ],
        &dir,
    );
    register(
        "bob",
        &format!("127.0.0.1:{}", ports.uas),
        &format!("127.0.0.1:{}", ports.kam),
        ports.reg,
        &dir,
    );

    let watch = SlotWatch::start(&instance);
    let ok = sipp_run(
        &[
            &format!("127.0.0.1:{}", ports.kam),
            "-sn",
            "uac_pcap",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            &ports.uac.to_string(),
            "-mp",
            &ports.uac_media.to_string(),
            "-m",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(70),
    );
    let seen = watch.finish();
    assert!(ok, "the call through Kamailio failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );

    // One slot, programmed by Kamailio's offer and answer; media flowed
    // both ways through it.
    assert_eq!(seen.len(), 1, "expected one slot for one call: {seen:?}");
    let slot = &seen[0];
    let [caller, callee] = slot.legs;
    assert!(caller.rx_packets > 100, "caller -> tern: {caller:?}");
    assert!(callee.tx_packets > 100, "tern -> bob: {callee:?}");
    assert!(callee.rx_packets > 100, "bob's echo -> tern: {callee:?}");
    assert!(caller.tx_packets > 100, "tern -> caller: {caller:?}");
    let [c0, c1] = slot.cfg.legs;
    assert_eq!(
        c0.peer.map(|a| a.port()),
        Some(ports.uac_media),
        "caller's SDP port: {c0:?}"
    );
    assert_eq!(
        c1.peer.map(|a| a.port()),
        Some(ports.uas_media),
        "bob's SDP port: {c1:?}"
    );

    // BYE went through rtpengine_manage(): the slot is free again.
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    drop(kam);
    let out = lines.lock().unwrap().join("\n");
    drop(tern);
    let _ = std::fs::remove_dir_all(&dir);
    unlink_table(&instance);
    assert!(out.contains("tern relay"), "{out}");
}
