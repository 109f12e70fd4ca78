//! Call transfer (b2bua/transfer.rs) on the virtual clock: REFER with
//! NOTIFY sipfrag (RFC 3515), blind and attended (Replaces, RFC 3891),
//! with the harness of `core_tests`: alice calls bob, bob transfers her
//! to carol.

use std::net::SocketAddr;
use std::time::Duration;

use tern_shared::table::{SlotState, SlotTable};

use crate::b2bua::REFERRER_BYE_AFTER;
use crate::core_tests::{
    a_request, addr, b_request, b_response, codes, confirmed_call, only, sdp, summary, ALICE, BOB,
    H, TERN,
};
use crate::msg::Msg;
use crate::refer::{parse_event, parse_subscription_state, sipfrag_status, SubState};
use crate::sdp::parse_audio;

const CAROL: &str = "127.0.0.1:5090";

fn register(h: &mut H, user: &str, from: &str) {
    let text = format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bKreg-{user}\r\n\
         From: <sip:{user}@127.0.0.1:5060>;tag=r1\r\n\
         To: <sip:{user}@127.0.0.1:5060>\r\n\
         Call-ID: reg-{user}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{from}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let out = h.send(from, &text);
    assert_eq!(codes(&out), [200], "{:?}", summary(&out));
}

/// `text` with `headers` (each ending in CRLF) after its first line.
fn with_headers(text: &str, headers: &str) -> String {
    match text.split_once("\r\n") {
        Some((first, rest)) => format!("{first}\r\n{headers}{rest}"),
        None => text.to_string(),
    }
}

/// Bob's REFER in his dialog with tern (`inv`: the INVITE he got).
fn refer(inv: &Msg, cseq: u32, refer_to: &str) -> String {
    with_headers(
        &b_request("REFER", inv, "b9", cseq),
        &format!("Refer-To: {refer_to}\r\nReferred-By: <sip:bob@{BOB}>\r\n"),
    )
}

/// A response from carol to `req` (her Contact, her tag `c7`).
fn c_response(req: &Msg, code: u16, body: Option<&str>) -> String {
    b_response(req, code, "c7", body).replace(
        &format!("Contact: <sip:bob@{BOB}>"),
        &format!("Contact: <sip:carol@{CAROL}>"),
    )
}

/// What went to `dest`.
fn to(out: &[(SocketAddr, Msg)], dest: &str) -> Vec<Msg> {
    out.iter()
        .filter(|(d, _)| *d == addr(dest))
        .map(|(_, m)| m.clone())
        .collect()
}

/// The one `what` (method or code) among `out`, sent to `dest`.
fn one_to(out: &[(SocketAddr, Msg)], what: &str, dest: &str) -> Msg {
    let (d, m) = only(out, what);
    assert_eq!(*d, addr(dest), "{what} went to {d}: {:?}", summary(out));
    m.clone()
}

/// Checks a NOTIFY of ours: Event refer, the sipfrag status `code`,
/// active (provisional) or terminated;reason=noresource (final).
fn check_notify(n: &Msg, code: u16) {
    assert_eq!(
        parse_event(n.header("Event").unwrap()).unwrap().package,
        "refer"
    );
    let ss = parse_subscription_state(n.header("Subscription-State").unwrap()).unwrap();
    if code < 200 {
        assert_eq!(ss.state, SubState::Active);
    } else {
        assert_eq!(ss.state, SubState::Terminated);
        assert_eq!(ss.reason.as_deref(), Some("noresource"));
    }
    assert!(n
        .header("Content-Type")
        .is_some_and(|c| c.starts_with("message/sipfrag")));
    assert_eq!(sipfrag_status(n.body()), Some(code));
}

fn slots(t: &SlotTable, state: SlotState) -> Vec<u32> {
    (0..t.capacity()).filter(|&i| t.state(i) == state).collect()
}

/// alice–bob up, carol registered; bob REFERs alice to carol. Returns
/// bob's INVITE, alice's To tag and the INVITE carol got.
fn blind_refer(h: &mut H, call_id: &str) -> (Msg, String, Msg) {
    let (inv, a_tag) = confirmed_call(h, call_id);
    register(h, "carol", CAROL);
    let out = h.send(BOB, &refer(&inv, 2, "<sip:carol@127.0.0.1:5060>"));
    let accepted = one_to(&out, "202", BOB);
    assert_eq!(accepted.to.tag(), inv.from.tag());
    let n = one_to(&out, "NOTIFY", BOB);
    check_notify(&n, 100);
    assert_eq!(n.call_id, inv.call_id);
    let c_inv = one_to(&out, "INVITE", CAROL);
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    assert!(c_inv.from.uri.contains("alice"), "{:?}", c_inv.from);
    assert_eq!(
        c_inv.header("Referred-By"),
        Some(format!("<sip:bob@{BOB}>").as_str())
    );
    // Carol is offered the slot leg that faced bob.
    let to_bob = parse_audio(inv.body()).unwrap().rtp;
    assert_eq!(parse_audio(c_inv.body()).unwrap().rtp, to_bob);
    let out = h.send(BOB, &b_response(&n, 200, "b9", None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    (inv, a_tag, c_inv)
}

#[test]
fn blind_transfer_reanchors_the_slot_notifies_and_byes_the_referrer() {
    let mut h = H::new("xfer-blind", 16, "");
    let (inv, a_tag, c_inv) = blind_refer(&mut h, "xf-1");
    let slot = slots(&h.table, SlotState::Active)[0];

    let out = h.send(CAROL, &c_response(&c_inv, 180, None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let ack = one_to(&out, "ACK", CAROL);
    assert_eq!(ack.to.tag(), Some("c7"));
    let n = one_to(&out, "NOTIFY", BOB);
    check_notify(&n, 200);
    assert!(
        to(&out, ALICE).is_empty(),
        "no re-INVITE to alice: {:?}",
        summary(&out)
    );
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52000")));
    assert_eq!(cfg.legs[0].peer, Some(addr("10.0.0.1:40000")));
    // A retransmitted 2xx gets the ACK again.
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    one_to(&out, "ACK", CAROL);
    h.send(BOB, &b_response(&n, 200, "b9", None));

    // Bob does not hang up: tern's BYE after REFERRER_BYE_AFTER.
    let out = h.advance(REFERRER_BYE_AFTER - Duration::from_millis(10));
    assert!(to(&out, BOB).is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_millis(20));
    let bye = one_to(&out, "BYE", BOB);
    assert_eq!(bye.call_id, inv.call_id);
    let out = h.send(BOB, &b_response(&bye, 200, "b9", None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    assert_eq!(h.core.active_calls(), 1);

    // alice and carol talk; alice's BYE reaches carol and frees the slot.
    let out = h.send(
        ALICE,
        &a_request("BYE", "xf-1", 2, &format!(";tag={a_tag}"), "z9hG4bKab"),
    );
    let cbye = one_to(&out, "BYE", CAROL);
    assert_eq!(cbye.call_id, c_inv.call_id);
    assert_eq!(cbye.to.tag(), Some("c7"));
    assert!(to(&out, BOB).is_empty());
    h.send(CAROL, &c_response(&cbye, 200, None));
    assert_eq!(h.core.active_calls(), 0);
    assert_eq!(h.table.state(slot), SlotState::Draining);
    assert_eq!(
        (h.core.stats().transfers, h.core.stats().transfers_failed),
        (1, 0)
    );
}

#[test]
fn carols_bye_ends_the_transferred_call_and_the_referrer_may_hang_up_first() {
    let mut h = H::new("xfer-cbye", 16, "");
    let (inv, _, c_inv) = blind_refer(&mut h, "xf-2");
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let n = one_to(&out, "NOTIFY", BOB);
    h.send(BOB, &b_response(&n, 200, "b9", None));
    // Bob hangs up himself: 200, and no BYE from tern later.
    let out = h.send(BOB, &b_request("BYE", &inv, "b9", 3));
    assert_eq!(codes(&out), [200]);
    assert_eq!(out[0].0, addr(BOB));
    let out = h.advance(REFERRER_BYE_AFTER * 2);
    assert!(to(&out, BOB).is_empty(), "{:?}", summary(&out));
    // Carol's BYE (her dialog: From her tag, To ours) reaches alice.
    let bye = format!(
        "BYE sip:tern@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL};branch=z9hG4bKcb\r\nFrom: {};tag=c7\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        c_inv.header("To").unwrap(),
        c_inv.header("From").unwrap(),
        c_inv.call_id
    );
    let out = h.send(CAROL, &bye);
    one_to(&out, "200", CAROL);
    let abye = one_to(&out, "BYE", ALICE);
    assert_eq!(abye.call_id, "xf-2");
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn a_failed_transfer_is_notified_and_the_call_goes_on() {
    let mut h = H::new("xfer-fail", 16, "");
    let (inv, a_tag, c_inv) = blind_refer(&mut h, "xf-3");
    let slot = slots(&h.table, SlotState::Active)[0];
    let out = h.send(CAROL, &c_response(&c_inv, 486, None));
    let ack = one_to(&out, "ACK", CAROL);
    assert_eq!(ack.cseq.num, c_inv.cseq.num);
    let n = one_to(&out, "NOTIFY", BOB);
    check_notify(&n, 486);
    h.send(BOB, &b_response(&n, 200, "b9", None));
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.2:50000")));
    // No BYE to bob: alice's BYE still reaches him.
    assert!(to(&h.advance(REFERRER_BYE_AFTER * 2), BOB).is_empty());
    let out = h.send(
        ALICE,
        &a_request("BYE", "xf-3", 2, &format!(";tag={a_tag}"), "z9hG4bKab"),
    );
    let bye = one_to(&out, "BYE", BOB);
    assert_eq!(bye.call_id, inv.call_id);
    // Nothing to carol.
    assert!(to(&out, CAROL).is_empty());
    assert_eq!(
        (h.core.stats().transfers, h.core.stats().transfers_failed),
        (1, 1)
    );
}

#[test]
fn the_referrer_hanging_up_before_the_target_answers_keeps_the_call() {
    let mut h = H::new("xfer-early", 16, "");
    let (inv, _, c_inv) = blind_refer(&mut h, "xf-4");
    let out = h.send(BOB, &b_request("BYE", &inv, "b9", 3));
    assert_eq!(codes(&out), [200]);
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    one_to(&out, "ACK", CAROL);
    assert!(
        to(&out, BOB).is_empty(),
        "no NOTIFY to a referrer gone: {:?}",
        summary(&out)
    );
    assert_eq!(h.core.active_calls(), 1);
    assert!(to(&h.advance(REFERRER_BYE_AFTER * 2), BOB).is_empty());
}

#[test]
fn malformed_or_unroutable_refers_are_refused() {
    let mut h = H::new("xfer-bad", 16, "");
    let (inv, _) = confirmed_call(&mut h, "xf-5");
    let no_refer_to = b_request("REFER", &inv, "b9", 2);
    for (text, code) in [
        (no_refer_to.clone(), 400),
        (refer(&inv, 3, "<carol>"), 400),
        (
            refer(&inv, 4, "<sip:carol@127.0.0.1?Replaces=x%3Bto-tag%3D1>"),
            400,
        ),
        (
            refer(&inv, 5, "<sip:carol@127.0.0.1:5060?Replaces=a%zz>"),
            400,
        ),
        // carol is not registered; a Replaces naming no dialog of ours.
        (refer(&inv, 6, "<sip:carol@127.0.0.1:5060>"), 404),
        (
            refer(
                &inv,
                7,
                "<sip:carol@127.0.0.1:5060?Replaces=nope%3Bto-tag%3D1%3Bfrom-tag%3D2>",
            ),
            404,
        ),
    ] {
        let out = h.send(BOB, &text);
        assert_eq!(codes(&out), [code], "{text}");
    }
    // Outside any dialog.
    let stray = refer(&inv, 8, "<sip:carol@127.0.0.1:5060>").replace("Call-ID: ", "Call-ID: x");
    assert_eq!(codes(&h.send(BOB, &stray)), [481]);
    assert!(h.core.stats().malformed_requests >= 4);
    assert_eq!(h.core.active_calls(), 1);
}

#[test]
fn attended_transfer_joins_the_two_calls() {
    let mut h = H::new("xfer-att", 16, "");
    let (inv1, a_tag) = confirmed_call(&mut h, "xa-1");
    register(&mut h, "carol", CAROL);
    // Bob's consultation call to carol.
    let body = sdp("10.0.0.2", 50002, "");
    let consult = format!(
        "INVITE sip:carol@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKc2\r\nFrom: <sip:bob@127.0.0.1:5060>;tag=bc1\r\nTo: <sip:carol@127.0.0.1:5060>\r\nCall-ID: consult-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{BOB}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let out = h.send(BOB, &consult);
    let c_inv = one_to(&out, "INVITE", CAROL);
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    let ok = one_to(&out, "200", BOB);
    let t_tag = ok.to.tag().unwrap().to_string();
    let ack = format!(
        "ACK sip:tern@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKc2a\r\nFrom: <sip:bob@127.0.0.1:5060>;tag=bc1\r\nTo: <sip:carol@127.0.0.1:5060>;tag={t_tag}\r\nCall-ID: consult-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    one_to(&h.send(BOB, &ack), "ACK", CAROL);
    assert_eq!(slots(&h.table, SlotState::Active).len(), 2);
    let slot1 = h
        .core
        .b2bua()
        .live_calls()
        .find(|c| c.call_id() == "xa-1")
        .unwrap()
        .slot()
        .unwrap();

    // REFER in the first call, naming bob's dialog of the consultation.
    let rt = format!(
        "<sip:carol@127.0.0.1:5060?Replaces=consult-1%3Bto-tag%3D{t_tag}%3Bfrom-tag%3Dbc1>"
    );
    let out = h.send(BOB, &refer(&inv1, 2, &rt));
    one_to(&out, "202", BOB);
    check_notify(&one_to(&out, "NOTIFY", BOB), 100);
    // A re-INVITE in tern's dialog with carol, offering alice's media on
    // the leg that faced bob in the first call.
    let re = one_to(&out, "INVITE", CAROL);
    assert_eq!(re.call_id, c_inv.call_id);
    assert_eq!(re.to.tag(), Some("c7"));
    assert!(re.cseq.num > c_inv.cseq.num);
    assert_eq!(
        parse_audio(re.body()).unwrap().rtp,
        parse_audio(inv1.body()).unwrap().rtp
    );
    let out = h.send(
        CAROL,
        &c_response(&re, 200, Some(&sdp("10.0.0.3", 52004, ""))),
    );
    one_to(&out, "ACK", CAROL);
    let bobs: Vec<Msg> = to(&out, BOB);
    let bye2 = bobs
        .iter()
        .find(|m| m.method() == Some("BYE"))
        .expect("BYE of the consultation");
    assert_eq!(bye2.call_id, "consult-1");
    let n = bobs
        .iter()
        .find(|m| m.method() == Some("NOTIFY"))
        .expect("final NOTIFY");
    check_notify(n, 200);
    assert_eq!(n.call_id, inv1.call_id);
    h.send(BOB, &b_response(bye2, 200, "b9", None));
    let (cfg, _) = h.table.read_config(slot1).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.3:52004")));
    assert_eq!(slots(&h.table, SlotState::Active), [slot1]);
    // Then the first call's dialog with bob.
    let out = h.advance(REFERRER_BYE_AFTER + Duration::from_millis(10));
    assert_eq!(one_to(&out, "BYE", BOB).call_id, inv1.call_id);

    // alice's BYE reaches carol in her old dialog, after the re-INVITE.
    let out = h.send(
        ALICE,
        &a_request("BYE", "xa-1", 2, &format!(";tag={a_tag}"), "z9hG4bKab"),
    );
    let cbye = one_to(&out, "BYE", CAROL);
    assert_eq!(cbye.call_id, c_inv.call_id);
    assert!(cbye.cseq.num > re.cseq.num);
    h.send(CAROL, &c_response(&cbye, 200, None));
    assert_eq!(h.core.active_calls(), 0);
}

const DAVE: &str = "127.0.0.1:5095";

/// Dave's INVITE for bob with `Replaces: replaces` (RFC 3891).
fn replacing_invite(call_id: &str, cseq: u32, replaces: &str) -> String {
    let body = sdp("10.0.0.4", 54000, "");
    format!(
        "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {DAVE};branch=z9hG4bKd{cseq}\r\nFrom: <sip:dave@127.0.0.1:5060>;tag=d1\r\nTo: <sip:bob@127.0.0.1:5060>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:dave@{DAVE}>\r\nReplaces: {replaces}\r\nRequire: replaces\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn an_invite_with_replaces_takes_the_dialogs_place() {
    let mut h = H::new("xfer-repl", 16, "");
    let (inv, a_tag) = confirmed_call(&mut h, "xr-1");
    let slot = slots(&h.table, SlotState::Active)[0];
    let ours = inv.from.tag().unwrap().to_string();
    // No such dialog; early-only on a confirmed one; malformed.
    let out = h.send(
        DAVE,
        &replacing_invite("d-0", 1, "nope;to-tag=1;from-tag=2"),
    );
    assert_eq!(codes(&out), [481]);
    let rep = format!("{};to-tag={ours};from-tag=b9", inv.call_id);
    let out = h.send(
        DAVE,
        &replacing_invite("d-1", 1, &format!("{rep};early-only")),
    );
    assert_eq!(codes(&out), [486]);
    let out = h.send(DAVE, &replacing_invite("d-2", 1, "x;to-tag=1"));
    assert_eq!(codes(&out), [400]);

    let text = replacing_invite("d-3", 1, &rep);
    let out = h.send(DAVE, &text);
    let ok = one_to(&out, "200", DAVE);
    // Dave gets alice's media on the leg that faced bob.
    assert_eq!(
        parse_audio(ok.body()).unwrap().rtp,
        parse_audio(inv.body()).unwrap().rtp
    );
    let bye = one_to(&out, "BYE", BOB);
    assert_eq!(bye.call_id, inv.call_id);
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.4:54000")));
    // A retransmitted INVITE gets the same 200; the ACK stops it.
    let again = one_to(&h.send(DAVE, &text), "200", DAVE);
    assert_eq!(again.to.tag(), ok.to.tag());
    assert!(h.send(BOB, &b_response(&bye, 200, "b9", None)).is_empty());
    let d_tag = ok.to.tag().unwrap().to_string();
    let ack = format!(
        "ACK sip:tern@{TERN} SIP/2.0\r\nVia: SIP/2.0/UDP {DAVE};branch=z9hG4bKda\r\nFrom: <sip:dave@127.0.0.1:5060>;tag=d1\r\nTo: <sip:bob@127.0.0.1:5060>;tag={d_tag}\r\nCall-ID: d-3\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(h.send(DAVE, &ack).is_empty());
    let out = h.advance(Duration::from_secs(5));
    assert!(
        to(&out, DAVE).is_empty(),
        "2xx resent after its ACK: {:?}",
        summary(&out)
    );
    // alice's BYE now reaches dave, in his dialog.
    let out = h.send(
        ALICE,
        &a_request("BYE", "xr-1", 2, &format!(";tag={a_tag}"), "z9hG4bKab"),
    );
    let dbye = one_to(&out, "BYE", DAVE);
    assert_eq!(dbye.call_id, "d-3");
    assert_eq!(dbye.to.tag(), Some("d1"));
    assert_eq!(dbye.from.tag(), Some(d_tag.as_str()));
    assert!(to(&out, BOB).is_empty());
}

#[test]
fn the_caller_may_transfer_too_and_a_refer_is_handled_once() {
    let mut h = H::new("xfer-caller", 16, "");
    let (inv, a_tag) = confirmed_call(&mut h, "xf-7");
    register(&mut h, "carol", CAROL);
    let slot = slots(&h.table, SlotState::Active)[0];
    // alice REFERs bob to carol in her dialog.
    let text = with_headers(
        &a_request("REFER", "xf-7", 2, &format!(";tag={a_tag}"), "z9hG4bKar"),
        "Refer-To: <sip:carol@127.0.0.1:5060>\r\n",
    );
    let out = h.send(ALICE, &text);
    one_to(&out, "202", ALICE);
    check_notify(&one_to(&out, "NOTIFY", ALICE), 100);
    let c_inv = one_to(&out, "INVITE", CAROL);
    // Carol gets bob's media, on the leg that faced alice.
    assert_eq!(
        parse_audio(c_inv.body()).unwrap().rtp.map(|a| a.port()),
        Some(h.table.ports(slot, 0).rtp)
    );
    assert!(c_inv.from.uri.contains("bob"), "{:?}", c_inv.from);
    // The same REFER again: the same 202, nothing else.
    let out = h.send(ALICE, &text);
    assert_eq!(codes(&out), [202], "{:?}", summary(&out));
    // Another REFER while this one runs: 491.
    let other = text.replace("CSeq: 2 REFER", "CSeq: 3 REFER");
    assert_eq!(codes(&h.send(ALICE, &other)), [491]);

    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    one_to(&out, "ACK", CAROL);
    check_notify(&one_to(&out, "NOTIFY", ALICE), 200);
    assert!(to(&out, BOB).is_empty(), "{:?}", summary(&out));
    let (cfg, _) = h.table.read_config(slot).unwrap();
    assert_eq!(cfg.legs[0].peer, Some(addr("10.0.0.3:52000")));
    assert_eq!(cfg.legs[1].peer, Some(addr("10.0.0.2:50000")));
    // bob's BYE reaches carol.
    let out = h.send(BOB, &b_request("BYE", &inv, "b9", 2));
    let cbye = one_to(&out, "BYE", CAROL);
    assert_eq!(cbye.call_id, c_inv.call_id);
    assert!(to(&out, ALICE).is_empty(), "{:?}", summary(&out));
}

#[test]
fn the_call_ending_while_the_target_rings_cancels_it_and_silence_is_408() {
    let mut h = H::new("xfer-abort", 16, "");
    let (_, a_tag, c_inv) = blind_refer(&mut h, "xf-8");
    h.send(CAROL, &c_response(&c_inv, 180, None));
    // alice hangs up: BYE to bob, CANCEL to carol.
    let out = h.send(
        ALICE,
        &a_request("BYE", "xf-8", 2, &format!(";tag={a_tag}"), "z9hG4bKab"),
    );
    one_to(&out, "BYE", BOB);
    let cancel = one_to(&out, "CANCEL", CAROL);
    assert_eq!(cancel.call_id, c_inv.call_id);
    assert_eq!(cancel.cseq.num, c_inv.cseq.num);
    assert_eq!(cancel.top_via().branch(), c_inv.top_via().branch());
    assert_eq!(cancel.to.tag(), None);
    // A late 2xx gets ACK and BYE.
    let out = h.send(
        CAROL,
        &c_response(&c_inv, 200, Some(&sdp("10.0.0.3", 52000, ""))),
    );
    one_to(&out, "ACK", CAROL);
    one_to(&out, "BYE", CAROL);

    // Another call whose target never answers: NOTIFY 408 after timer B.
    let mut h = H::new("xfer-silent", 16, "");
    let (_, _, _) = blind_refer(&mut h, "xf-9");
    let out = h.advance(Duration::from_secs(33));
    let n: Vec<Msg> = to(&out, BOB)
        .into_iter()
        .filter(|m| m.method() == Some("NOTIFY"))
        .collect();
    assert!(!n.is_empty(), "{:?}", summary(&out));
    check_notify(&n[0], 408);
    assert_eq!(h.core.active_calls(), 1);
    assert_eq!(h.core.stats().transfers_failed, 1);
}
