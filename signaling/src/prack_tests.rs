//! PRACK (RFC 3262) through the B2BUA, on a virtual clock with the
//! harness of `core_tests`: 100rel end to end, terminated on either leg,
//! reliable retransmission and giving up, and PRACKs that match nothing.

use std::net::SocketAddr;
use std::time::Duration;

use tern_shared::table::SlotState;

use crate::core_tests::{
    a_request, addr, b_response, codes, invite, only, sdp, summary, with_body, ALICE, BOB, H,
};
use crate::msg::Msg;
use crate::sdp::parse_audio;

/// The address tern's test relay gives every slot leg.
const MEDIA_IP: &str = "203.0.113.7";

/// `text` with `headers` (each ending in CRLF) added after its first line.
fn with_headers(text: &str, headers: &str) -> String {
    match text.split_once("\r\n") {
        Some((first, rest)) => format!("{first}\r\n{headers}{rest}"),
        None => text.to_string(),
    }
}

/// bob's reliable provisional `code` to `inv` with `RSeq: rseq`.
fn b_reliable(inv: &Msg, code: u16, rseq: u32, body: Option<&str>) -> String {
    with_headers(
        &b_response(inv, code, "b1", body),
        &format!("Require: 100rel\r\nRSeq: {rseq}\r\n"),
    )
}

/// alice's PRACK in her early dialog (tern's tag `a_tag`).
fn a_prack(call_id: &str, cseq: u32, a_tag: &str, rack: &str) -> String {
    with_headers(
        &a_request(
            "PRACK",
            call_id,
            cseq,
            &format!(";tag={a_tag}"),
            &format!("z9hG4bKpr{cseq}"),
        ),
        &format!("RAck: {rack}\r\n"),
    )
}

/// The RSeq of a response we sent.
fn rseq(m: &Msg) -> u32 {
    m.header("RSeq").and_then(|v| v.parse().ok()).expect("RSeq")
}

/// Messages in `out` going to `to`.
fn to<'a>(out: &'a [(SocketAddr, Msg)], to: &str) -> Vec<&'a Msg> {
    out.iter()
        .filter(|(d, _)| *d == addr(to))
        .map(|(_, m)| m)
        .collect()
}

/// Asserts the SDP of `m` points at the relay (media anchored).
fn anchored(m: &Msg) {
    let a = parse_audio(m.body()).expect("SDP");
    let rtp = a.rtp.expect("RTP address");
    assert_eq!(rtp.ip().to_string(), MEDIA_IP);
    assert!((30000..30016).contains(&rtp.port()), "{rtp}");
}

/// alice's INVITE (with `extra` headers) up to bob's INVITE.
fn start(h: &mut H, call_id: &str, extra: &str) -> Msg {
    h.register_bob();
    let out = h.send(
        ALICE,
        &invite("bob", call_id, extra, &sdp("10.0.0.1", 40000, "")),
    );
    only(&out, "INVITE").1.clone()
}

#[test]
fn both_legs_do_100rel_each_with_its_own_rseq() {
    let mut h = H::new("prack-both", 16, "");
    let inv = start(&mut h, "pr-1", "Supported: 100rel\r\n");
    assert_eq!(inv.header("Supported"), Some("100rel"));
    assert_eq!(inv.header("Require"), None);

    // bob's reliable 183 with the answer: PRACKed on bob's leg, sent
    // reliably (our own RSeq) to alice with the answer anchored.
    let out = h.send(
        BOB,
        &b_reliable(&inv, 183, 77, Some(&sdp("10.0.0.2", 50000, ""))),
    );
    let (d, pr) = only(&out, "PRACK").clone();
    assert_eq!(d, addr(BOB));
    assert_eq!(pr.header("RAck"), Some("77 1 INVITE"));
    assert_eq!(pr.call_id, inv.call_id);
    assert_eq!(pr.to.tag(), Some("b1"));
    assert_eq!(pr.uri_text(), Some(format!("sip:bob@{BOB}").as_str()));
    let (d, p183) = only(&out, "183").clone();
    assert_eq!(d, addr(ALICE));
    assert_eq!(p183.header("Require"), Some("100rel"));
    let n = rseq(&p183);
    assert!((1..1 << 31).contains(&n) && n != 77);
    anchored(&p183);
    let a_tag = p183.to.tag().unwrap().to_string();
    let slot_peer = |h: &H| {
        let slot = (0..h.table.capacity())
            .find(|&i| h.table.state(i) == SlotState::Active)
            .unwrap();
        h.table.read_config(slot).unwrap().0.legs[1].peer
    };
    assert_eq!(slot_peer(&h), Some(addr("10.0.0.2:50000")));

    // bob retransmits it: nothing new either way.
    let out = h.send(
        BOB,
        &b_reliable(&inv, 183, 77, Some(&sdp("10.0.0.2", 50000, ""))),
    );
    assert!(out.is_empty(), "{:?}", summary(&out));
    // bob answers our PRACK: our PRACK is no longer retransmitted.
    assert!(h.send(BOB, &b_response(&pr, 200, "b1", None)).is_empty());

    // alice's PRACK: 200; its retransmission: the same 200.
    let out = h.send(ALICE, &a_prack("pr-1", 2, &a_tag, &format!("{n} 1 INVITE")));
    assert_eq!(summary(&out), [format!("{ALICE} 200")]);
    assert_eq!(out[0].1.cseq.method, "PRACK");
    let again = h.send(ALICE, &a_prack("pr-1", 2, &a_tag, &format!("{n} 1 INVITE")));
    assert_eq!(codes(&again), [200]);
    // Nothing is retransmitted to either side any more.
    let out = h.advance(Duration::from_secs(5));
    assert!(
        out.iter()
            .all(|(_, m)| m.code() != Some(183) && m.method() != Some("PRACK")),
        "{:?}",
        summary(&out)
    );

    // bob's 200 without SDP: alice got the answer reliably, so hers has
    // none either (RFC 6337 §3.1).
    let out = h.send(BOB, &b_response(&inv, 200, "b1", None));
    let ok = &only(&out, "200").1;
    assert!(ok.body().is_empty());
    assert_eq!(h.core.stats().prack_sent, 1);
    assert_eq!(h.core.stats().reliable_provisionals, 1);
    let out = h.send(
        ALICE,
        &a_request("ACK", "pr-1", 1, &format!(";tag={a_tag}"), "z9hG4bKack"),
    );
    only(&out, "ACK");
}

#[test]
fn reliable_provisional_doubles_from_t1_and_gives_up_after_64_t1() {
    let mut h = H::new("prack-rt", 16, "");
    let inv = start(&mut h, "pr-2", "Supported: 100rel\r\n");
    let out = h.send(
        BOB,
        &b_reliable(&inv, 183, 1, Some(&sdp("10.0.0.2", 50000, ""))),
    );
    let n = rseq(&only(&out, "183").1);
    let t0 = h.now;
    let pr = only(&out, "PRACK").1.clone();
    h.send(BOB, &b_response(&pr, 200, "b1", None));
    // Resends at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s: T1 doubling with
    // no T2 cap (RFC 3262 §3), each the same RSeq.
    let mut at = Vec::new();
    for _ in 0..40 {
        let out = h.advance(Duration::from_millis(250));
        for m in to(&out, ALICE) {
            if m.code() == Some(183) {
                assert_eq!(rseq(m), n);
                at.push((h.now - t0).as_millis());
            }
        }
        if h.now - t0 >= Duration::from_secs(10) {
            break;
        }
    }
    assert_eq!(at, [500, 1500, 3500, 7500]);
    assert_eq!(h.core.stats().reliable_abandoned, 0);
    let out = h.advance(Duration::from_millis(21_800));
    assert!(
        to(&out, ALICE).iter().any(|m| m.code() == Some(183)),
        "15.5 and 31.5 s resends"
    );
    assert!(!codes(&out).contains(&500));
    // At 64·T1 (32 s) without PRACK: 500 to alice, CANCEL to bob.
    let out = h.advance(Duration::from_millis(600));
    let (d, _) = only(&out, "500");
    assert_eq!(*d, addr(ALICE));
    assert_eq!(only(&out, "CANCEL").0, addr(BOB));
    assert_eq!(h.core.stats().reliable_abandoned, 1);
    assert_eq!(h.table.count(SlotState::Active), 0);
}

#[test]
fn caller_requires_100rel_and_callee_sends_unreliable_provisionals() {
    let mut h = H::new("prack-req", 16, "");
    let inv = start(&mut h, "pr-3", "Require: 100rel\r\n");
    // Offered, not required, onward: tern terminates it for alice.
    assert_eq!(inv.header("Supported"), Some("100rel"));
    assert_eq!(inv.header("Require"), None);

    // bob's plain 180: tern sends it to alice reliably (terminates 100rel
    // on alice's leg), and PRACKs nothing on bob's.
    let out = h.send(BOB, &b_response(&inv, 180, "b1", None));
    assert!(to(&out, BOB).is_empty(), "{:?}", summary(&out));
    let r180 = only(&out, "180").1.clone();
    assert_eq!(r180.header("Require"), Some("100rel"));
    let n = rseq(&r180);
    let a_tag = r180.to.tag().unwrap().to_string();
    // bob's plain 183 with SDP waits behind the unacknowledged 180.
    let out = h.send(
        BOB,
        &b_response(&inv, 183, "b1", Some(&sdp("10.0.0.2", 50000, ""))),
    );
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    // alice PRACKs the 180: 200, then the 183, reliably, next RSeq.
    let out = h.send(ALICE, &a_prack("pr-3", 2, &a_tag, &format!("{n} 1 INVITE")));
    assert_eq!(codes(&out), [200, 183]);
    let r183 = &out[1].1;
    assert_eq!(rseq(r183), n + 1);
    anchored(r183);
    // bob's 200 (with SDP) waits for alice's PRACK of the 183 (§3).
    let ok = b_response(&inv, 200, "b1", Some(&sdp("10.0.0.2", 50000, "")));
    let out = h.send(BOB, &ok);
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    // A PRACK of the 180 again, under a new CSeq, matches nothing now.
    let out = h.send(ALICE, &a_prack("pr-3", 3, &a_tag, &format!("{n} 1 INVITE")));
    assert_eq!(codes(&out), [481]);
    let out = h.send(
        ALICE,
        &a_prack("pr-3", 4, &a_tag, &format!("{} 1 INVITE", n + 1)),
    );
    assert_eq!(codes(&out), [200, 200]);
    let ok = &out[1].1;
    assert_eq!(ok.cseq.method, "INVITE");
    assert!(ok.body().is_empty(), "answer went in the reliable 183");
    assert_eq!(h.core.stats().prack_sent, 0);
    assert_eq!(h.core.stats().reliable_provisionals, 2);
}

#[test]
fn callee_does_100rel_for_a_caller_without_it() {
    let mut h = H::new("prack-callee", 16, "");
    let inv = start(&mut h, "pr-4", "");
    assert_eq!(inv.header("Supported"), None);
    assert_eq!(inv.header("Require"), None);
    let out = h.send(
        BOB,
        &b_reliable(&inv, 183, 9, Some(&sdp("10.0.0.2", 50000, ""))),
    );
    assert_eq!(only(&out, "PRACK").1.header("RAck"), Some("9 1 INVITE"));
    // alice gets a plain 183 (no RSeq, no Require), media anchored.
    let p183 = &only(&out, "183").1;
    assert_eq!(p183.header("RSeq"), None);
    assert_eq!(p183.header("Require"), None);
    anchored(p183);
    // RSeq 11 skips 10: out of order, dropped (§4); 10 is PRACKed.
    let out = h.send(BOB, &b_reliable(&inv, 180, 11, None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.send(BOB, &b_reliable(&inv, 180, 10, None));
    assert_eq!(only(&out, "PRACK").1.header("RAck"), Some("10 1 INVITE"));
    only(&out, "180");
    // bob's 200 without SDP: alice's 200 carries the early answer, since
    // she had it only unreliably.
    let out = h.send(BOB, &b_response(&inv, 200, "b1", None));
    let ok = &only(&out, "200").1;
    anchored(ok);
    assert_eq!(h.core.stats().prack_sent, 2);
    assert_eq!(h.core.stats().reliable_provisionals, 0);
}

#[test]
fn pracks_that_match_nothing_or_are_malformed() {
    let mut h = H::new("prack-bad", 16, "");
    // No dialog at all: 481.
    let out = h.send(ALICE, &a_prack("nope", 2, "x", "1 1 INVITE"));
    assert_eq!(codes(&out), [481]);
    let inv = start(&mut h, "pr-5", "Supported: 100rel\r\n");
    let out = h.send(BOB, &b_reliable(&inv, 180, 5, None));
    let r180 = only(&out, "180").1.clone();
    let n = rseq(&r180);
    let a_tag = r180.to.tag().unwrap().to_string();
    // Wrong RSeq, wrong CSeq, wrong method: 481.
    for (i, rack) in [
        format!("{} 1 INVITE", n + 1),
        format!("{n} 2 INVITE"),
        format!("{n} 1 UPDATE"),
    ]
    .iter()
    .enumerate()
    {
        let out = h.send(ALICE, &a_prack("pr-5", 10 + i as u32, &a_tag, rack));
        assert_eq!(codes(&out), [481], "{rack}");
    }
    // Malformed or missing RAck: 400.
    let out = h.send(ALICE, &a_prack("pr-5", 20, &a_tag, "x 1 INVITE"));
    assert_eq!(codes(&out), [400]);
    let bare = a_request("PRACK", "pr-5", 21, &format!(";tag={a_tag}"), "z9hG4bKbare");
    assert_eq!(codes(&h.send(ALICE, &bare)), [400]);
    // An offer in a PRACK is refused: 488.
    let offer = with_body(
        &a_prack("pr-5", 22, &a_tag, &format!("{n} 1 INVITE")),
        &sdp("10.0.0.1", 40002, ""),
    );
    let out = h.send(ALICE, &offer);
    assert_eq!(codes(&out), [488]);
    // The 180 is still unacknowledged: the right PRACK gets 200.
    let out = h.send(
        ALICE,
        &a_prack("pr-5", 23, &a_tag, &format!("{n} 1 INVITE")),
    );
    assert_eq!(codes(&out), [200]);
    // A PRACK from bob (we send him no reliable provisionals): 481.
    let pr = with_headers(
        &crate::core_tests::b_request("PRACK", &inv, "b1", 2),
        "RAck: 1 1 INVITE\r\n",
    );
    assert_eq!(codes(&h.send(BOB, &pr)), [481]);
}

#[test]
fn invite_retransmission_repeats_and_cancel_ends_the_reliable_provisional() {
    let mut h = H::new("prack-cancel", 16, "");
    let inv = start(&mut h, "pr-6", "Supported: 100rel\r\n");
    let out = h.send(BOB, &b_reliable(&inv, 180, 3, None));
    let n = rseq(&only(&out, "180").1);
    // alice retransmits her INVITE: the same reliable 180 again.
    let again = invite(
        "bob",
        "pr-6",
        "Supported: 100rel\r\n",
        &sdp("10.0.0.1", 40000, ""),
    );
    let out = h.send(ALICE, &again);
    assert_eq!(rseq(&only(&out, "180").1), n);
    // She cancels: 200 for the CANCEL, 487 for the INVITE, CANCEL to
    // bob, and the 180 is no longer retransmitted.
    let cancel = a_request("CANCEL", "pr-6", 1, "", "z9hG4bKinv-pr-6");
    let out = h.send(ALICE, &cancel);
    assert!(codes(&out).contains(&487), "{:?}", summary(&out));
    let out = h.advance(Duration::from_secs(10));
    assert!(
        to(&out, ALICE).iter().all(|m| m.code() != Some(180)),
        "{:?}",
        summary(&out)
    );
}

#[test]
fn each_fork_has_its_own_rseq_space() {
    let mut h = H::new("prack-fork", 16, "");
    const BOB2: &str = "127.0.0.1:5071";
    for (from, cid) in [(BOB, "reg-1"), (BOB2, "reg-2")] {
        let reg = format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bKreg-{cid}\r\n\
             From: <sip:bob@127.0.0.1:5060>;tag=r1\r\n\
             To: <sip:bob@127.0.0.1:5060>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:bob@{from}>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(codes(&h.send(from, &reg)), [200]);
    }
    let out = h.send(
        ALICE,
        &invite(
            "bob",
            "pr-7",
            "Supported: 100rel\r\n",
            &sdp("10.0.0.1", 40000, ""),
        ),
    );
    let i1 = to(&out, BOB)[0].clone();
    let i2 = to(&out, BOB2)[0].clone();
    assert_eq!(i1.header("Supported"), Some("100rel"));
    assert_eq!(i2.header("Supported"), Some("100rel"));

    // Both forks number their reliable provisionals from 1: each is
    // PRACKed in its own dialog.
    let out = h.send(
        BOB,
        &b_reliable(&i1, 183, 1, Some(&sdp("10.0.0.2", 50000, ""))),
    );
    let pr1 = to(&out, BOB);
    assert_eq!(pr1.len(), 1);
    assert_eq!(pr1[0].header("RAck"), Some("1 1 INVITE"));
    assert_eq!(pr1[0].call_id, i1.call_id);
    let p183 = only(&out, "183").1.clone();
    let n = rseq(&p183);
    let a_tag = p183.to.tag().unwrap().to_string();
    let r180 = b_reliable(&i2, 180, 1, None).replace(";tag=b1", ";tag=b2");
    let out = h.send(BOB2, &r180);
    let pr2 = to(&out, BOB2);
    assert_eq!(pr2.len(), 1, "{:?}", summary(&out));
    assert_eq!(pr2[0].method(), Some("PRACK"));
    assert_eq!(pr2[0].header("RAck"), Some("1 1 INVITE"));
    assert_eq!(pr2[0].call_id, i2.call_id);
    assert_eq!(pr2[0].to.tag(), Some("b2"));
    // Toward alice one RSeq space: the 180 waits for her PRACK of the 183.
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    let out = h.send(ALICE, &a_prack("pr-7", 2, &a_tag, &format!("{n} 1 INVITE")));
    assert_eq!(codes(&out), [200, 180]);
    assert_eq!(rseq(&out[1].1), n + 1);
}
