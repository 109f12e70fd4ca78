//! Blind call transfer (REFER, RFC 3515) through a real `tern up` with
//! SIPp peers: alice (a UAC playing g711a.pcap) calls bob; bob (a
//! registered UAS, `transfer_uas.xml`) answers, then REFERs alice to
//! carol and checks tern's 202, NOTIFY `SIP/2.0 100` (active), NOTIFY
//! `SIP/2.0 200` (terminated;reason=noresource) and BYE; carol (SIPp's
//! built-in uas with `-rtp_echo`, registered) is INVITEd and gets
//! alice's BYE. The slot's leg that faced bob ends up facing carol, and
//! its counters show alice's RTP reaching carol: bob sends no media, so
//! whatever comes back on that leg is carol echoing alice.
//!
//! Ports: SIP and SIPp agents 18900-18949, relay media 29300-29399,
//! instance `t-xfer-*`.

mod common;
use common::*;

use std::time::Duration;

#[test]
fn bob_refers_alice_to_carol_and_alices_media_reaches_carol() {
    let dir = sipp_workdir("sip-transfer");
    let instance = format!("t-xfer-{}", std::process::id());
    let sip = "127.0.0.1:18900";
    let mut tern = spawn_sip_node(sip, "29300-29399", &instance, &[]);

    let mut carol = uas_echo(18901, 18910, 1, &dir);
    register("carol", "127.0.0.1:18901", sip, 18902, &dir);
    let sf = scenario("transfer_uas.xml");
    let mut bob = sipp(
        &[
            "-sf",
            sf.to_str().unwrap_or_default(),
            "-i",
            "127.0.0.1",
            "-p",
            "18903",
            "-mp",
            "18920",
            "-m",
            "1",
            "-timeout",
            "40s",
        ],
        &dir,
    );
    register("bob", "127.0.0.1:18903", sip, 18904, &dir);

    let watch = SlotWatch::start(&instance);
    let alice = sipp_run(
        &[
            sip,
            "-sf",
            scenario("transfer_uac.xml").to_str().unwrap_or_default(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "18905",
            "-mp",
            "18930",
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
        ],
        &dir,
        Duration::from_secs(50),
    );
    let seen = watch.finish();
    let bob_ok = bob.wait_for(Duration::from_secs(15)).map(|s| s.success());
    let carol_ok = carol.wait_for(Duration::from_secs(15)).map(|s| s.success());
    let freed = wait_all_free(&instance, Duration::from_secs(10));
    tern.stop();
    unlink_table(&instance);
    if !(alice && bob_ok == Some(true) && carol_ok == Some(true)) {
        dump_sipp_errors(&dir);
    }
    assert!(
        alice,
        "alice: 200, media, BYE answered (by carol, through tern)"
    );
    assert_eq!(bob_ok, Some(true), "bob: 202, NOTIFY 100, NOTIFY 200, BYE");
    assert_eq!(carol_ok, Some(true), "carol: INVITEd, then alice's BYE");
    assert!(freed, "slot not freed");

    assert_eq!(seen.len(), 1, "one slot, re-anchored: {seen:?}");
    let slot = &seen[0];
    assert_eq!(
        slot.cfg.legs[1].peer,
        Some("127.0.0.1:18910".parse().unwrap()),
        "leg 1 faces carol's media"
    );
    let [from_alice, carol_leg] = slot.legs;
    assert!(
        from_alice.rx_packets > 200,
        "alice -> relay: {from_alice:?}"
    );
    assert!(carol_leg.tx_packets > 100, "relay -> carol: {carol_leg:?}");
    assert!(
        carol_leg.rx_packets > 100,
        "carol's echo of alice's RTP -> relay: {carol_leg:?}"
    );
    assert_eq!(carol_leg.drop_source, 0, "{carol_leg:?}");
}
