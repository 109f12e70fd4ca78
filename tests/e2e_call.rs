//! End to end, all in one process: SIPp `uas -rtp_echo` registered as bob,
//! SIPp `uac_pcap` playing g711a.pcap calls bob through `tern up`.

mod common;
use common::*;
use std::time::Duration;

/// SSRC of the RTP stream in /usr/share/sip-tester/g711a.pcap.
const CALLER_SSRC: u32 = 0xdee0_ee8f;

#[test]
fn sipp_call_through_tern_up_relays_media_with_rewritten_ssrc() {
    let instance = format!("e2e-call-{}", std::process::id());
    let dir = sipp_workdir("e2e-call");
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            "127.0.0.1:15060",
            "--ports",
            "31000-31099",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "127.0.0.1:22301",
        ],
        &["tern sip: listening"],
    );
    let cap = Capture::start("udp dst port 16000", &dir.join("bob.pcap"));
    let mut uas = uas_echo(15070, 16000, 1, &dir);
    register("bob", "127.0.0.1:15070", "127.0.0.1:15060", 15071, &dir);

    let watch = SlotWatch::start(&instance);
    let ok = uac_pcap_call("127.0.0.1:15060", "bob", 15080, 17000, &dir);
    let seen = watch.finish();
    assert!(ok, "the call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );

    assert_eq!(seen.len(), 1, "expected one slot for one call: {seen:?}");
    let slot = &seen[0];
    let [caller, callee] = slot.legs;
    // Leg 0 faces the caller, leg 1 faces bob. Media flowed both ways.
    assert!(caller.rx_packets > 100, "caller -> relay: {caller:?}");
    assert!(callee.tx_packets > 100, "relay -> bob: {callee:?}");
    assert!(callee.rx_packets > 100, "bob's echo -> relay: {callee:?}");
    assert!(caller.tx_packets > 100, "relay -> caller: {caller:?}");

    // On the wire, what reached bob carries the slot's SSRC for bob's leg.
    let out_ssrc = slot.cfg.legs[1].out_ssrc;
    assert!(slot.cfg.legs[1].rewrite_ssrc && out_ssrc != CALLER_SSRC);
    let ssrcs = cap.rtp_ssrcs(16000);
    assert!(
        ssrcs.len() > 100,
        "bob received {} RTP packets",
        ssrcs.len()
    );
    assert!(
        ssrcs.iter().all(|&s| s == out_ssrc),
        "SSRCs at bob: {:x?}",
        &ssrcs[..5]
    );

    // After BYE the slot is free again.
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}
