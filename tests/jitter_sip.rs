//! The B2BUA's jitter-buffer setting (`[media]` in the config file) reaches
//! both legs of a SIP call's slot, and media still flows both ways through
//! the buffers: SIPp `uac_pcap` → `tern up` → SIPp `uas -rtp_echo`.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn media_table_buffers_both_legs_of_a_sip_call() {
    let instance = format!("t-jb-sip-{}", std::process::id());
    let dir = sipp_workdir("jitter-sip");
    let cfg = dir.join("tern.toml");
    std::fs::write(
        &cfg,
        "[media]\njitter_buffer = true\njitter_target_ms = 40\njitter_max_ms = 100\n",
    )
    .unwrap();
    let (_tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            "127.0.0.1:15490",
            "--ports",
            "31700-31799",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            "off",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &["tern sip: listening"],
    );
    let mut uas = uas_echo(15491, 16200, 1, &dir);
    register("bob", "127.0.0.1:15491", "127.0.0.1:15490", 15492, &dir);

    let watch = SlotWatch::start(&instance);
    let ok = uac_pcap_call("127.0.0.1:15490", "bob", 15493, 17200, &dir);
    let seen = watch.finish();
    assert!(ok, "the call failed");
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "uas failed"
    );
    assert_eq!(seen.len(), 1, "one slot for one call: {seen:?}");
    let slot = &seen[0];
    for (i, leg) in slot.cfg.legs.iter().enumerate() {
        assert!(leg.jitter.enabled, "leg {i} unbuffered: {leg:?}");
        assert_eq!(
            (leg.jitter.target_ms, leg.jitter.max_ms),
            (40, 100),
            "leg {i}"
        );
    }
    let [caller, callee] = slot.legs;
    assert!(caller.rx_packets > 100, "caller -> relay: {caller:?}");
    assert!(
        callee.tx_packets > 100,
        "relay -> bob through the buffer: {callee:?}"
    );
    assert!(callee.rx_packets > 100, "bob's echo -> relay: {callee:?}");
    assert!(
        caller.tx_packets > 100,
        "relay -> caller through the buffer: {caller:?}"
    );
    assert!(
        wait_all_free(&instance, Duration::from_secs(5)),
        "slot not freed after BYE"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(_tern);
    unlink_table(&instance);
}
