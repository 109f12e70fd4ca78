//! Parallel forking through a real `tern up`: bob registered from two
//! SIPp phones; alice's call rings both, one answers, the other (still
//! ringing) gets CANCEL and answers it 487; the slot is freed at the end.
//!
//! Ports: SIP and SIPp agents 18550-18599, relay media 25500-25599,
//! instance `t-fork-*`.

mod common;
use common::*;

use std::time::Duration;

#[test]
fn one_phone_answers_the_other_ringing_gets_cancel() {
    let dir = sipp_workdir("sip-fork");
    let instance = format!("t-fork-{}", std::process::id());
    let sip = "127.0.0.1:18550";
    let mut tern = spawn_sip_node(sip, "25500-25599", &instance, &[]);

    // Phone 1 answers at once (SIPp's built-in uas, echoing media).
    let mut answers = uas_echo(18551, 18560, 1, &dir);
    register("bob", "127.0.0.1:18551", sip, 18552, &dir);
    // Phone 2 rings and waits for the CANCEL.
    let sf = scenario("cancel_uas.xml");
    let mut rings = sipp(
        &[
            "-sf",
            sf.to_str().unwrap_or_default(),
            "-i",
            "127.0.0.1",
            "-p",
            "18553",
            "-m",
            "1",
            "-timeout",
            "30s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:18553", sip, 18554, &dir);

    let call = sipp_run(
        &[
            sip,
            "-sf",
            scenario("fork_uac.xml").to_str().unwrap_or_default(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "18555",
            "-mp",
            "18570",
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(40),
    );
    let answered = answers
        .wait_for(Duration::from_secs(15))
        .map(|s| s.success());
    let cancelled = rings.wait_for(Duration::from_secs(15)).map(|s| s.success());
    let freed = wait_all_free(&instance, Duration::from_secs(10));
    tern.stop();
    unlink_table(&instance);
    if !(call && answered == Some(true) && cancelled == Some(true)) {
        dump_sipp_errors(&dir);
    }
    assert!(call, "caller: 180(s), 200, BYE answered");
    assert_eq!(answered, Some(true), "answering phone: a whole call");
    assert_eq!(
        cancelled,
        Some(true),
        "ringing phone: CANCEL, then ACK of its 487"
    );
    assert!(freed, "slot not freed");
}
