//! RFC 4028 session timers over real UDP with SIPp: a caller asks for
//! `Session-Expires: 90;refresher=uac` and never refreshes; the callee
//! (a SIPp UAS that does no timers) must see the header passed through,
//! the caller must be made the refresher in the 200, and once the
//! interval passes tern sends BYE to both and frees the slot.
//!
//! Ports: SIP 18450-18459 (tern 18450, SIPp agents above), SIPp media
//! 18460-18479, relay media 25200-25299. Takes about 95 s (90 s is the
//! shortest session interval RFC 4028 allows).

mod common;
use common::*;

use std::time::{Duration, Instant};

#[test]
fn an_unrefreshed_session_is_ended_by_tern_with_bye_to_both_sides() {
    let dir = sipp_workdir("st-expiry");
    let instance = format!("t-st-{}", std::process::id());
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            "127.0.0.1:18450",
            "--ports",
            "25200-25299",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            "off",
        ],
        &["tern sip: listening"],
    );
    let tern_sip = "127.0.0.1:18450";
    let mut uas = sipp(
        &[
            "-sf",
            &scenario("session_timer_uas.xml").display().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            "18451",
            "-mp",
            "18460",
            "-m",
            "1",
            "-timeout",
            "150s",
            "-timeout_error",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:18451", tern_sip, 18452, &dir);
    let t0 = Instant::now();
    let ok = sipp_run(
        &[
            tern_sip,
            "-sf",
            &scenario("session_timer_uac.xml").display().to_string(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "18453",
            "-mp",
            "18470",
            "-m",
            "1",
            "-timeout",
            "150s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(160),
    );
    let took = t0.elapsed();
    assert!(
        ok,
        "caller: 200 with Session-Expires, then tern's BYE expected"
    );
    assert_eq!(
        uas.wait_for(Duration::from_secs(15)).map(|s| s.success()),
        Some(true),
        "callee: Session-Expires passed through, then tern's BYE expected"
    );
    // The BYE came when the 90 s interval passed, not before.
    assert!(took >= Duration::from_secs(89), "BYE after {took:?}");
    assert!(took < Duration::from_secs(120), "BYE after {took:?}");
    assert!(
        wait_all_free(&instance, Duration::from_secs(10)),
        "slot not freed"
    );
    tern.stop();
    unlink_table(&instance);
}
