//! PRACK (RFC 3262) over real UDP with SIPp, 100rel in both directions:
//!
//! - both legs do 100rel: the caller PRACKs tern's reliable 183, tern
//!   PRACKs the callee's (each leg its own RSeq);
//! - only the caller does (it requires 100rel; the callee sends a plain
//!   183): tern sends the 183 to the caller reliably itself;
//! - only the callee does: tern PRACKs it and the caller gets a plain
//!   183, and the answer again in the 200.
//!
//! Every SDP the parties see points at the relay (m= port 294xx-296xx, checked
//! in the scenarios), every call completes (SIPp exit 0), tern's PRACK
//! counters move, and the slot is freed.
//!
//! Ports: SIP 18660-18669, 18680-18689, 18700-18709 (tern on the first
//! of each, SIPp agents above), SIPp media 18670-18679, 18690-18699,
//! 18710-18719, HTTP 18667/18687/18707, relay media 29400-29699 (one
//! hundred per test).

mod common;
use common::*;

use std::time::Duration;

/// One call: tern on `base`, callee `uas_sf` on base+1 (registered as
/// bob), caller `uac_sf` (with `uac_keys`, `-key` pairs) on base+3,
/// relay ports `ports`. Returns tern's /metrics after the call.
fn call(
    name: &str,
    base: u16,
    ports: &str,
    uas_sf: &str,
    uac_sf: &str,
    uac_keys: &[&str],
) -> String {
    let dir = sipp_workdir(name);
    let instance = format!("t-{name}-{}", std::process::id());
    let sip = format!("127.0.0.1:{base}");
    let http = format!("127.0.0.1:{}", base + 7);
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            &sip,
            "--ports",
            ports,
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            &http,
        ],
        &["tern sip: listening"],
    );
    let (uas_port, uas_media) = ((base + 1).to_string(), (base + 10).to_string());
    let mut uas = sipp(
        &[
            "-sf",
            &scenario(uas_sf).display().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port,
            "-mp",
            &uas_media,
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
        &dir,
    );
    register(
        "bob",
        &format!("127.0.0.1:{uas_port}"),
        &sip,
        base + 2,
        &dir,
    );
    let (uac_port, uac_media) = ((base + 3).to_string(), (base + 14).to_string());
    let uac_sc = scenario(uac_sf).display().to_string();
    let mut args = vec![
        sip.as_str(),
        "-sf",
        &uac_sc,
        "-s",
        "bob",
        "-i",
        "127.0.0.1",
        "-p",
        &uac_port,
        "-mp",
        &uac_media,
        "-m",
        "1",
        "-timeout",
        "30s",
        "-timeout_error",
    ];
    for kv in uac_keys.chunks(2) {
        args.extend(["-key", kv[0], kv[1]]);
    }
    let ok = sipp_run(&args, &dir, Duration::from_secs(40));
    let uas_ok = uas.wait_for(Duration::from_secs(15)).map(|s| s.success());
    if uas_ok != Some(true) {
        uas.stop();
        dump_sipp_errors(&dir);
    }
    let freed = wait_all_free(&instance, Duration::from_secs(10));
    let m = http_get(&http, "/metrics");
    tern.stop();
    unlink_table(&instance);
    assert!(ok, "{name}: the caller's call failed");
    assert_eq!(uas_ok, Some(true), "{name}: the callee's call failed");
    assert!(freed, "{name}: slot not freed");
    m
}

#[test]
fn both_legs_do_100rel() {
    let m = call(
        "prack-both",
        18660,
        "29400-29499",
        "prack_uas.xml",
        "prack_uac.xml",
        &["rel", "Supported"],
    );
    assert_eq!(metric(&m, "tern_sip_prack_sent_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "tern_sip_reliable_provisionals_total"), 1.0);
    assert_eq!(metric(&m, "tern_sip_reliable_abandoned_total"), 0.0);
}

#[test]
fn only_the_caller_does_100rel_and_tern_sends_the_183_reliably() {
    let m = call(
        "prack-caller",
        18680,
        "29500-29599",
        "early_media_uas.xml",
        "prack_uac.xml",
        &["rel", "Require"],
    );
    assert_eq!(metric(&m, "tern_sip_prack_sent_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "tern_sip_reliable_provisionals_total"), 1.0);
}

#[test]
fn only_the_callee_does_100rel_and_tern_pracks_it() {
    let m = call(
        "prack-callee",
        18700,
        "29600-29699",
        "prack_uas.xml",
        "prack_plain_uac.xml",
        &[],
    );
    assert_eq!(metric(&m, "tern_sip_prack_sent_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "tern_sip_reliable_provisionals_total"), 0.0);
}
