//! Parallel forking (b2bua/fork.rs) on the virtual clock: bob registered
//! from two phones, alice's INVITE rings both.

use std::net::SocketAddr;
use std::time::Duration;

use tern_shared::table::{SlotState, SlotTable};

use crate::core_tests::{
    addr, b_request, b_response, codes, invite, only, sdp, summary, ALICE, BOB, H,
};
use crate::msg::Msg;

/// Bob's second phone.
const BOB2: &str = "127.0.0.1:5071";

fn register_from(h: &mut H, from: &str, call_id: &str) {
    let text = format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKreg-{call_id}\r\n\
         From: <sip:bob@127.0.0.1:5060>;tag=r1\r\n\
         To: <sip:bob@127.0.0.1:5060>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:bob@{from}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let out = h.send(from, &text);
    assert_eq!(codes(&out), [200], "{:?}", summary(&out));
}

fn slot_of(t: &SlotTable) -> Option<u32> {
    (0..t.capacity()).find(|&i| t.state(i) == SlotState::Active)
}

/// What went to `dest`.
fn to(out: &[(SocketAddr, Msg)], dest: &str) -> Vec<(SocketAddr, Msg)> {
    out.iter()
        .filter(|(d, _)| *d == addr(dest))
        .cloned()
        .collect()
}

/// Registers both phones, sends alice's INVITE; returns the INVITE each
/// phone got (BOB's, BOB2's).
fn forked(h: &mut H, call_id: &str) -> (Msg, Msg) {
    register_from(h, BOB, "reg-1");
    register_from(h, BOB2, "reg-2");
    let out = h.send(
        ALICE,
        &invite("bob", call_id, "", &sdp("10.0.0.1", 40000, "")),
    );
    assert_eq!(codes(&to(&out, ALICE)), [100], "{:?}", summary(&out));
    let i1 = only(&to(&out, BOB), "INVITE").1.clone();
    let i2 = only(&to(&out, BOB2), "INVITE").1.clone();
    assert_ne!(i1.call_id, i2.call_id, "one outgoing dialog per fork");
    assert_ne!(i1.top_via().branch(), i2.top_via().branch());
    assert_eq!(i1.uri_text(), Some("sip:bob@127.0.0.1:5070"));
    assert_eq!(i2.uri_text(), Some("sip:bob@127.0.0.1:5071"));
    assert_eq!(i1.body(), i2.body(), "both forks get the same offer");
    (i1, i2)
}

#[test]
fn first_2xx_wins_and_the_other_fork_is_cancelled() {
    let mut h = H::new("fork-win", 16, "");
    let (i1, i2) = forked(&mut h, "fk-1");

    // Fork 1 rings: 180 relayed.
    let out = h.send(BOB, &b_response(&i1, 180, "f1", None));
    assert_eq!(codes(&to(&out, ALICE)), [180]);

    // Fork 2 answers: 200 (SDP → leg 0) to alice, CANCEL to fork 1.
    let out = h.send(
        BOB2,
        &b_response(&i2, 200, "f2", Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let ok = only(&to(&out, ALICE), "200").1.clone();
    assert!(ok.has_sdp());
    let cancel = only(&to(&out, BOB), "CANCEL").1.clone();
    assert_eq!(cancel.call_id, i1.call_id);
    assert_eq!(cancel.top_via().branch(), i1.top_via().branch());
    assert!(to(&out, BOB2).is_empty(), "{:?}", summary(&out));
    let slot = slot_of(&h.table).unwrap();
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52000")));

    // Fork 1 answers the CANCEL and its INVITE 487: ACKed, absorbed.
    let out = h.send(BOB, &b_response(&cancel, 200, "f1", None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.send(BOB, &b_response(&i1, 487, "f1", None));
    let ack = only(&out, "ACK");
    assert_eq!(ack.0, addr(BOB));
    assert_eq!(ack.1.top_via().branch(), i1.top_via().branch());
    assert_eq!(out.len(), 1, "{:?}", summary(&out));

    // Alice ACKs: the ACK goes to the winner only.
    let a_tag = ok.to.tag().unwrap().to_string();
    let out = h.send(
        ALICE,
        &crate::core_tests::a_request("ACK", "fk-1", 1, &format!(";tag={a_tag}"), "z9hG4bKak"),
    );
    let ack = only(&out, "ACK");
    assert_eq!(ack.0, addr(BOB2));
    assert_eq!(ack.1.call_id, i2.call_id);

    // The winner hangs up: BYE relayed to alice, the call ends.
    let out = h.send(BOB2, &b_request("BYE", &i2, "f2", 2));
    assert!(only(&to(&out, ALICE), "BYE").1.call_id == "fk-1");
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52000")));
}

#[test]
fn late_2xx_from_another_fork_gets_ack_and_bye() {
    let mut h = H::new("fork-late", 16, "");
    let (i1, i2) = forked(&mut h, "fk-2");
    let out = h.send(
        BOB2,
        &b_response(&i2, 200, "f2", Some(&sdp("10.0.0.3", 52000, ""))),
    );
    only(&to(&out, ALICE), "200");
    // Fork 1 sent nothing yet: its CANCEL waits for a provisional.
    assert!(to(&out, BOB).is_empty(), "{:?}", summary(&out));

    // Fork 1 answers anyway (crossing): ACK then BYE in its own dialog.
    let out = h.send(
        BOB,
        &b_response(&i1, 200, "f1", Some(&sdp("10.0.0.2", 50000, ""))),
    );
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    let ack = only(&out, "ACK").1.clone();
    let bye = only(&out, "BYE").1.clone();
    for m in [&ack, &bye] {
        assert_eq!(m.call_id, i1.call_id);
        assert_eq!(m.to.tag(), Some("f1"));
        assert_eq!(m.uri_text(), Some("sip:bob@127.0.0.1:5070"));
    }
    // The winner's media stays.
    let slot = slot_of(&h.table).unwrap();
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52000")));
    // The 2xx repeated: the ACK again, no second BYE.
    let out = h.send(
        BOB,
        &b_response(&i1, 200, "f1", Some(&sdp("10.0.0.2", 50000, ""))),
    );
    assert_eq!(summary(&out), [format!("{BOB} ACK")]);
    // Its BYE answered: retransmissions stop, the call stays up.
    let out = h.send(BOB, &b_response(&bye, 200, "f1", None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_secs(5));
    assert!(
        !out.iter()
            .any(|(d, m)| *d == addr(BOB) && m.method() == Some("BYE")),
        "{:?}",
        summary(&out)
    );
    assert_eq!(slot_of(&h.table), Some(slot));
}

#[test]
fn early_media_comes_from_whichever_fork_sends_it() {
    let mut h = H::new("fork-early", 16, "");
    let (i1, i2) = forked(&mut h, "fk-3");
    let slot = slot_of(&h.table).unwrap();

    let out = h.send(
        BOB,
        &b_response(&i1, 183, "f1", Some(&sdp("10.0.0.2", 50000, ""))),
    );
    let p = only(&to(&out, ALICE), "183").1.clone();
    assert!(p.has_sdp());
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.2:50000")));

    // The other fork's 183 takes over the callee leg.
    let out = h.send(
        BOB2,
        &b_response(&i2, 183, "f2", Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let p2 = only(&to(&out, ALICE), "183").1.clone();
    assert!(p2.has_sdp());
    assert_eq!(p.to.tag(), p2.to.tag(), "one dialog toward the caller");
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52000")));

    // Fork 1 answers after all: its SDP is the callee leg's.
    let out = h.send(
        BOB,
        &b_response(&i1, 200, "f1", Some(&sdp("10.0.0.2", 50000, ""))),
    );
    only(&to(&out, ALICE), "200");
    let cancel = only(&to(&out, BOB2), "CANCEL").1.clone();
    assert_eq!(cancel.call_id, i2.call_id);
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.2:50000")));
}

#[test]
fn every_fork_busy_gives_the_caller_486() {
    let mut h = H::new("fork-busy", 16, "");
    let (i1, i2) = forked(&mut h, "fk-4");
    let out = h.send(BOB, &b_response(&i1, 486, "f1", None));
    assert_eq!(summary(&out), [format!("{BOB} ACK")], "held, not relayed");
    let out = h.send(BOB2, &b_response(&i2, 486, "f2", None));
    only(&to(&out, BOB2), "ACK");
    assert_eq!(codes(&to(&out, ALICE)), [486]);
    assert_eq!(slot_of(&h.table), None, "slot released");
}

#[test]
fn best_final_prefers_6xx_and_a_silent_fork_is_408() {
    let mut h = H::new("fork-best", 16, "");
    let (i1, _i2) = forked(&mut h, "fk-5");
    let out = h.send(BOB, &b_response(&i1, 603, "f1", None));
    assert!(to(&out, ALICE).is_empty());
    // Fork 2 never answers: timer B (64·T1) ends it; 603 wins.
    let out = h.advance(Duration::from_secs(40));
    // (retransmitted: alice never ACKs here)
    let mut c = codes(&to(&out, ALICE));
    c.dedup();
    assert_eq!(c, [603], "{:?}", summary(&out));
}

#[test]
fn caller_cancel_reaches_every_fork() {
    let mut h = H::new("fork-cancel", 16, "");
    let (i1, i2) = forked(&mut h, "fk-6");
    h.send(BOB, &b_response(&i1, 180, "f1", None));
    h.send(BOB2, &b_response(&i2, 180, "f2", None));
    let cancel = format!(
        "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKinv-fk-6\r\n\
         From: Alice <sip:alice@{ALICE}>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1:5060>\r\n\
         Call-ID: fk-6\r\n\
         CSeq: 1 CANCEL\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let out = h.send(ALICE, &cancel);
    let mut c = codes(&to(&out, ALICE));
    c.sort_unstable();
    assert_eq!(c, [200, 487]);
    assert_eq!(only(&to(&out, BOB), "CANCEL").1.call_id, i1.call_id);
    assert_eq!(only(&to(&out, BOB2), "CANCEL").1.call_id, i2.call_id);
}

#[test]
fn reinvite_after_a_forked_answer_goes_to_the_winner() {
    use crate::core_tests::{a_request, with_body};
    let mut h = H::new("fork-reinv", 16, "");
    let (_i1, i2) = forked(&mut h, "fk-7");
    let out = h.send(
        BOB2,
        &b_response(&i2, 200, "f2", Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let a_tag = only(&to(&out, ALICE), "200")
        .1
        .to
        .tag()
        .unwrap()
        .to_string();
    let tag = format!(";tag={a_tag}");
    h.send(ALICE, &a_request("ACK", "fk-7", 1, &tag, "z9hG4bKak"));
    let hold = with_body(
        &a_request("INVITE", "fk-7", 2, &tag, "z9hG4bKhold"),
        &sdp("10.0.0.1", 40000, "a=sendonly\r\n"),
    );
    let out = h.send(ALICE, &hold);
    let (d, rinv) = only(&out, "INVITE").clone();
    assert_eq!(d, addr(BOB2));
    assert_eq!(rinv.call_id, i2.call_id);
    // The winner refuses it: relayed to alice, not taken for a fork's end.
    let out = h.send(BOB2, &b_response(&rinv, 488, "f2", None));
    only(&to(&out, BOB2), "ACK");
    assert_eq!(codes(&to(&out, ALICE)), [488], "{:?}", summary(&out));
    assert!(slot_of(&h.table).is_some(), "the call stays up");
}

#[test]
fn a_busy_fork_is_held_while_another_answers() {
    let mut h = H::new("fork-held", 16, "");
    let (i1, i2) = forked(&mut h, "fk-8");
    let out = h.send(BOB, &b_response(&i1, 486, "f1", None));
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    let out = h.send(BOB2, &b_response(&i2, 180, "f2", None));
    assert_eq!(codes(&to(&out, ALICE)), [180]);
    let out = h.send(
        BOB2,
        &b_response(&i2, 200, "f2", Some(&sdp("10.0.0.3", 52000, ""))),
    );
    only(&to(&out, ALICE), "200");
    assert!(to(&out, BOB).is_empty(), "no CANCEL for a finished fork");
    // Fork 1's 486 again: ACKed again, nothing else.
    let out = h.send(BOB, &b_response(&i1, 486, "f1", None));
    assert_eq!(summary(&out), [format!("{BOB} ACK")]);
}

#[test]
fn timer_c_cancels_every_ringing_fork() {
    let mut h = H::new("fork-timerc", 16, "");
    let (i1, i2) = forked(&mut h, "fk-9");
    h.send(BOB, &b_response(&i1, 180, "f1", None));
    h.send(BOB2, &b_response(&i2, 180, "f2", None));
    let out = h.advance(Duration::from_secs(181));
    let mut c = codes(&to(&out, ALICE));
    c.dedup();
    assert_eq!(c, [408], "{:?}", summary(&out));
    assert!(to(&out, BOB)
        .iter()
        .any(|(_, m)| m.method() == Some("CANCEL")));
    assert!(to(&out, BOB2)
        .iter()
        .any(|(_, m)| m.method() == Some("CANCEL")));
    assert_eq!(slot_of(&h.table), None, "slot released");
}
