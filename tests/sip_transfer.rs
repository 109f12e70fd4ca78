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
//! Attended transfer: bob is a test UA (`common::sipclient`) with two
//! calls through tern, alice's and a consultation call to carol (a SIPp
//! UAS that answers re-INVITEs, `hold_uas.xml`, echoing media); bob's
//! REFER with `Refer-To: <sip:carol?Replaces=...>` naming his dialog of
//! the consultation makes tern join alice and carol on alice's slot.
//!
//! Ports: SIP and SIPp agents 18900-18949 (blind) and 18950-18999
//! (attended), relay media 29300-29399 and 29700-29799, instances
//! `t-xfer-*` and `t-xfera-*`.

mod common;
use common::sipclient::{body, cseq_method, header, request, status, Link};
use common::*;

use std::time::{Duration, Instant};

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
    eprintln!(
        "blind transfer: alice -> relay {} RTP, relay -> carol {}, carol's echo -> relay {}",
        from_alice.rx_packets, carol_leg.tx_packets, carol_leg.rx_packets
    );
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

/// A response of bob's to `req`: its Via, From, To (with `tag` when it
/// has none), Call-ID and CSeq, and `sdp` as body when given.
fn respond(req: &str, code: u16, tag: &str, sdp: Option<&str>) -> String {
    let vias: String = req
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let to = header(req, "To").unwrap_or_default();
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag={tag}")
    };
    let (ct, b) = match sdp {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "SIP/2.0 {code} OK\r\n{vias}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:bob@127.0.0.1>\r\n{ct}Content-Length: {}\r\n\r\n{b}",
        header(req, "From").unwrap_or_default(),
        header(req, "Call-ID").unwrap_or_default(),
        header(req, "CSeq").unwrap_or_default(),
        b.len()
    )
}

/// The next request (not a response) bob gets within `limit`, answering
/// nothing.
fn next_request(bob: &mut Link, limit: Duration) -> Option<String> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let m = bob.recv(end.saturating_duration_since(Instant::now()))?;
        if status(&m).is_none() {
            return Some(m);
        }
    }
    None
}

fn tag_of(v: &str) -> String {
    v.split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap_or(t).to_string())
        .unwrap_or_default()
}

const BOB_SDP: &str = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 18990 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";

#[test]
fn attended_transfer_joins_alice_and_carol_and_alices_media_reaches_carol() {
    let dir = sipp_workdir("sip-transfer-att");
    let instance = format!("t-xfera-{}", std::process::id());
    let sip = "127.0.0.1:18950";
    let mut tern = spawn_sip_node(sip, "29700-29799", &instance, &[]);
    let sf = scenario("hold_uas.xml");
    let mut carol = sipp(
        &[
            "-sf",
            sf.to_str().unwrap_or_default(),
            "-i",
            "127.0.0.1",
            "-p",
            "18951",
            "-mp",
            "18960",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "40s",
        ],
        &dir,
    );
    register("carol", "127.0.0.1:18951", sip, 18952, &dir);
    let mut bob = Link::udp(sip.parse().unwrap());
    let reg = request(
        &bob,
        "REGISTER",
        &format!("sip:{sip}"),
        "bob",
        "bob",
        "reg-bob-att",
        1,
        "Expires: 600\r\n",
        "",
    );
    bob.send(&reg);
    assert_eq!(
        bob.final_response("REGISTER", Duration::from_secs(5))
            .as_deref()
            .and_then(status),
        Some(200)
    );

    let watch = SlotWatch::start(&instance);
    let uac = scenario("transfer_uac.xml");
    let mut alice = sipp(
        &[
            sip,
            "-sf",
            uac.to_str().unwrap_or_default(),
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            "18953",
            "-mp",
            "18970",
            "-m",
            "1",
            "-timeout",
            "40s",
            "-timeout_error",
        ],
        &dir,
    );

    // Bob answers alice (no media of his own).
    let inv = next_request(&mut bob, Duration::from_secs(10)).expect("alice's INVITE");
    assert!(inv.starts_with("INVITE "), "{inv}");
    bob.send(&respond(&inv, 200, "bobA", Some(BOB_SDP)));
    let ack = next_request(&mut bob, Duration::from_secs(5)).expect("ACK");
    assert!(ack.starts_with("ACK "), "{ack}");

    // Bob's consultation call to carol.
    let consult = format!("consult-{}", std::process::id());
    let c_inv = request(
        &bob,
        "INVITE",
        &format!("sip:carol@{sip}"),
        "bob",
        "carol",
        &consult,
        1,
        "",
        BOB_SDP,
    );
    bob.send(&c_inv);
    let ok = bob
        .final_response("INVITE", Duration::from_secs(10))
        .expect("carol's 200");
    assert_eq!(status(&ok), Some(200), "{ok}");
    let t_tag = tag_of(&header(&ok, "To").unwrap_or_default());
    let c_ack = request(
        &bob,
        "ACK",
        &format!("sip:carol@{sip}"),
        "bob",
        "carol",
        &consult,
        1,
        "",
        "",
    )
    .replace(
        "To: <sip:carol@127.0.0.1>",
        &format!("To: <sip:carol@127.0.0.1>;tag={t_tag}"),
    );
    bob.send(&c_ack);
    std::thread::sleep(Duration::from_millis(500));

    // REFER in alice's call, naming the consultation dialog.
    let (t, host) = bob.via();
    let refer = format!(
        "REFER sip:tern@{sip} SIP/2.0\r\nVia: SIP/2.0/{t} {host};branch=z9hG4bKrefer;rport\r\nFrom: {};tag=bobA\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 REFER\r\nContact: <sip:bob@{host}>\r\nRefer-To: <sip:carol@127.0.0.1?Replaces={consult}%3Bto-tag%3D{t_tag}%3Bfrom-tag%3Dbobtag>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&inv, "To").unwrap_or_default(),
        header(&inv, "From").unwrap_or_default(),
        header(&inv, "Call-ID").unwrap_or_default(),
    );
    bob.send(&refer);
    let alice_call = header(&inv, "Call-ID").unwrap_or_default();
    let (mut accepted, mut frags, mut byes) = (false, Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && byes.len() < 2 {
        let Some(m) = bob.recv(Duration::from_millis(500)) else {
            continue;
        };
        match (status(&m), cseq_method(&m).as_str()) {
            (Some(202), "REFER") => accepted = true,
            (Some(_), _) => {}
            (None, "NOTIFY") => {
                frags.push(body(&m).lines().next().unwrap_or("").to_string());
                bob.send(&respond(&m, 200, "bobA", None));
            }
            (None, "BYE") => {
                byes.push(header(&m, "Call-ID").unwrap_or_default());
                bob.send(&respond(&m, 200, "bobA", None));
            }
            (None, _) => {}
        }
    }
    let alice_ok = alice.wait_for(Duration::from_secs(30)).map(|s| s.success());
    let seen = watch.finish();
    let carol_ok = carol.wait_for(Duration::from_secs(15)).map(|s| s.success());
    let freed = wait_all_free(&instance, Duration::from_secs(10));
    tern.stop();
    unlink_table(&instance);
    if !(alice_ok == Some(true) && carol_ok == Some(true)) {
        dump_sipp_errors(&dir);
    }
    assert!(accepted, "no 202 for the REFER");
    assert!(
        frags.first().is_some_and(|f| f.starts_with("SIP/2.0 100")),
        "{frags:?}"
    );
    assert!(
        frags.last().is_some_and(|f| f.starts_with("SIP/2.0 200")),
        "{frags:?}"
    );
    assert!(
        byes.contains(&consult) && byes.contains(&alice_call),
        "BYE of both of bob's dialogs: {byes:?}"
    );
    assert_eq!(
        alice_ok,
        Some(true),
        "alice: 200, media, BYE answered (by carol)"
    );
    assert_eq!(
        carol_ok,
        Some(true),
        "carol: INVITE, re-INVITE, alice's BYE"
    );
    assert!(freed, "slots not freed");
    let slot = seen
        .iter()
        .find(|s| {
            s.cfg.legs[1].peer == Some("127.0.0.1:18960".parse().unwrap())
                && s.legs[0].rx_packets > 0
        })
        .unwrap_or_else(|| panic!("no slot of alice's facing carol: {seen:?}"));
    let [from_alice, carol_leg] = slot.legs;
    eprintln!(
        "attended transfer: alice -> relay {} RTP, relay -> carol {}, carol's echo -> relay {}",
        from_alice.rx_packets, carol_leg.tx_packets, carol_leg.rx_packets
    );
    assert!(
        from_alice.rx_packets > 200,
        "alice -> relay: {from_alice:?}"
    );
    assert!(
        carol_leg.rx_packets > 100,
        "carol's echo of alice's RTP -> relay: {carol_leg:?}"
    );
}
