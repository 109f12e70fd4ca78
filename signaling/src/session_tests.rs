//! Session timers (RFC 4028) and INFO (RFC 6086) through the B2BUA, on a
//! virtual clock with the harness of `core_tests`.

use std::time::Duration;

use tern_shared::table::SlotState;

use crate::core_tests::{
    a_request, addr, b_request, b_response, codes, confirmed_call, invite, only, sdp, summary,
    with_body, ALICE, BOB, H,
};
use crate::msg::Msg;

/// `text` with `headers` (each ending in CRLF) added after its first line.
fn with_headers(text: &str, headers: &str) -> String {
    match text.split_once("\r\n") {
        Some((first, rest)) => format!("{first}\r\n{headers}{rest}"),
        None => text.to_string(),
    }
}

/// `req` with a body of type `ct` in place of its empty one.
fn with_typed_body(req: &str, ct: &str, body: &str) -> String {
    req.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// BYEs in `out`, by destination.
fn byes(out: &[(std::net::SocketAddr, Msg)]) -> Vec<std::net::SocketAddr> {
    out.iter()
        .filter(|(_, m)| m.method() == Some("BYE"))
        .map(|(d, _)| *d)
        .collect()
}

const SE_UAC: &str = "Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n";

/// A call up with `Session-Expires: 120;refresher=uac` from alice; bob's
/// 200 carries `bob_se` (`""`: bob does no timers). Returns the INVITE
/// bob got and the To tag alice got.
fn timed_call(h: &mut H, call_id: &str, bob_se: &str) -> (Msg, String) {
    h.register_bob();
    let out = h.send(
        ALICE,
        &invite("bob", call_id, SE_UAC, &sdp("10.0.0.1", 40000, "")),
    );
    let inv = only(&out, "INVITE").1.clone();
    assert_eq!(inv.header("Session-Expires"), Some("120;refresher=uac"));
    assert_eq!(inv.header("Min-SE"), Some("90"));
    assert_eq!(inv.header("Supported"), Some("timer"));
    let ok = with_headers(
        &b_response(&inv, 200, "b9", Some(&sdp("10.0.0.2", 50000, ""))),
        bob_se,
    );
    let out = h.send(BOB, &ok);
    let (d, ok) = only(&out, "200");
    assert_eq!(*d, addr(ALICE));
    assert_eq!(ok.header("Session-Expires"), Some("120;refresher=uac"));
    assert_eq!(ok.header("Require"), Some("timer"));
    let a_tag = ok.to.tag().unwrap().to_string();
    let out = h.send(
        ALICE,
        &a_request("ACK", call_id, 1, &format!(";tag={a_tag}"), "z9hG4bKack"),
    );
    only(&out, "ACK");
    (inv, a_tag)
}

#[test]
fn a_refreshed_session_stays_up_and_expires_one_interval_after_the_refresh() {
    let mut h = H::new("st-refresh", 16, "");
    let bob_se = "Session-Expires: 120;refresher=uac\r\nRequire: timer\r\n";
    let (_, a_tag) = timed_call(&mut h, "st-1", bob_se);
    assert!(byes(&h.advance(Duration::from_secs(60))).is_empty());

    // alice refreshes at 60 s (SE/2) with a re-INVITE.
    let refresh = with_headers(
        &with_body(
            &a_request("INVITE", "st-1", 2, &format!(";tag={a_tag}"), "z9hG4bKre"),
            &sdp("10.0.0.1", 40000, ""),
        ),
        SE_UAC,
    );
    let out = h.send(ALICE, &refresh);
    let rinv = only(&out, "INVITE").1.clone();
    assert_eq!(rinv.header("Session-Expires"), Some("120;refresher=uac"));
    let out = h.send(
        BOB,
        &with_headers(
            &b_response(&rinv, 200, "b9", Some(&sdp("10.0.0.2", 50000, ""))),
            bob_se,
        ),
    );
    let ok = &only(&out, "200").1;
    assert_eq!(ok.header("Session-Expires"), Some("120;refresher=uac"));
    h.send(
        ALICE,
        &a_request("ACK", "st-1", 2, &format!(";tag={a_tag}"), "z9hG4bKack2"),
    );

    // At 130 s the call is up: the refresh restarted the interval.
    let out = h.advance(Duration::from_secs(70));
    assert!(byes(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(h.table.count(SlotState::Active), 1);
    assert_eq!(h.core.stats().session_timer_expired, 0);
    // Unrefreshed since, it ends 120 s after the refresh (at 180 s).
    let out = h.advance(Duration::from_secs(49));
    assert!(byes(&out).is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_secs(2));
    let mut to = byes(&out);
    to.sort();
    // (each retransmitted meanwhile: no answers in this test)
    to.dedup();
    assert_eq!(to, [addr(BOB), addr(ALICE)]);
    assert_eq!(h.core.stats().session_timer_expired, 1);
}

#[test]
fn an_unrefreshed_session_is_ended_at_expiry_on_both_legs() {
    let mut h = H::new("st-expire", 16, "");
    // bob does no timers: tern's 200 makes alice the refresher (§8.1).
    let (inv, a_tag) = timed_call(&mut h, "st-2", "");
    assert_eq!(h.table.count(SlotState::Active), 1);
    let out = h.advance(Duration::from_secs(119));
    assert!(byes(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(h.core.active_calls(), 1);

    let out = h.advance(Duration::from_secs(2));
    let bye_a = out
        .iter()
        .find(|(d, m)| *d == addr(ALICE) && m.method() == Some("BYE"))
        .map(|(_, m)| m.clone())
        .expect("BYE to alice");
    let bye_b = out
        .iter()
        .find(|(d, m)| *d == addr(BOB) && m.method() == Some("BYE"))
        .map(|(_, m)| m.clone())
        .expect("BYE to bob");
    assert_eq!(bye_a.call_id, "st-2");
    assert_eq!(bye_a.from.tag(), Some(a_tag.as_str()));
    assert_eq!(bye_b.call_id, inv.call_id);
    assert_eq!(bye_b.to.tag(), Some("b9"));
    assert_eq!(h.table.count(SlotState::Active), 0, "slot released");
    assert_eq!(h.core.stats().session_timer_expired, 1);

    // Both answer: the call is over.
    h.send(ALICE, &b_response(&bye_a, 200, "", None));
    h.send(BOB, &b_response(&bye_b, 200, "", None));
    assert_eq!(h.core.active_calls(), 0);
    assert_eq!(h.core.b2bua().live_calls().count(), 0);
}

#[test]
fn a_call_without_session_timers_is_never_ended_by_one() {
    let mut h = H::new("st-none", 16, "");
    let (_, _) = confirmed_call(&mut h, "st-3");
    let out = h.advance(Duration::from_secs(3600));
    assert!(byes(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(h.table.count(SlotState::Active), 1);
}

#[test]
fn a_session_interval_below_min_se_is_422() {
    let mut h = H::new("st-422", 16, "");
    h.register_bob();
    let out = h.send(
        ALICE,
        &invite("bob", "st-4", "x: 30\r\n", &sdp("10.0.0.1", 40000, "")),
    );
    assert_eq!(codes(&out), [422]);
    assert_eq!(out[0].1.header("Min-SE"), Some("90"));
    assert!(!out.iter().any(|(_, m)| m.method() == Some("INVITE")));
    assert_eq!(h.table.count(SlotState::Active), 0);
    assert_eq!(h.core.stats().session_interval_too_small, 1);
    // Malformed: 400. At the minimum: accepted.
    let out = h.send(
        ALICE,
        &invite(
            "bob",
            "st-5",
            "Session-Expires: soon\r\n",
            &sdp("10.0.0.1", 40000, ""),
        ),
    );
    assert_eq!(codes(&out), [400]);
    let out = h.send(
        ALICE,
        &invite(
            "bob",
            "st-6",
            "Session-Expires: 90\r\nRequire: timer\r\n",
            &sdp("10.0.0.1", 40000, ""),
        ),
    );
    assert_eq!(codes(&out), [100]);
    assert_eq!(only(&out, "INVITE").1.header("Session-Expires"), Some("90"));
}

#[test]
fn a_callee_422_reaches_the_caller_with_its_min_se() {
    let mut h = H::new("st-422b", 16, "");
    h.register_bob();
    let out = h.send(
        ALICE,
        &invite("bob", "st-7", SE_UAC, &sdp("10.0.0.1", 40000, "")),
    );
    let inv = only(&out, "INVITE").1.clone();
    let out = h.send(
        BOB,
        &with_headers(&b_response(&inv, 422, "b9", None), "Min-SE: 600\r\n"),
    );
    let (d, r) = only(&out, "422");
    assert_eq!(*d, addr(ALICE));
    assert_eq!(r.header("Min-SE"), Some("600"));
}

const DTMF: &str = "Signal=5\r\nDuration=160\r\n";

#[test]
fn info_is_relayed_both_ways_with_its_body_and_response() {
    let mut h = H::new("info", 16, "");
    let (inv, a_tag) = confirmed_call(&mut h, "in-1");
    let info = with_typed_body(
        &a_request("INFO", "in-1", 2, &format!(";tag={a_tag}"), "z9hG4bKi1"),
        "application/dtmf-relay",
        DTMF,
    );
    let out = h.send(ALICE, &info);
    let (d, binfo) = only(&out, "INFO").clone();
    assert_eq!(d, addr(BOB));
    assert_eq!(binfo.call_id, inv.call_id);
    assert_eq!(binfo.to.tag(), Some("b9"));
    assert_eq!(binfo.header("Content-Type"), Some("application/dtmf-relay"));
    assert_eq!(binfo.body(), DTMF.as_bytes());
    // Retransmitted before bob answers: absorbed, not relayed again.
    assert!(h.send(ALICE, &info).is_empty());
    let out = h.send(BOB, &b_response(&binfo, 200, "b9", None));
    let (d, ok) = only(&out, "200");
    assert_eq!(*d, addr(ALICE));
    assert_eq!(ok.cseq.method, "INFO");
    assert_eq!(ok.cseq.num, 2);
    assert_eq!(ok.call_id, "in-1");
    // A retransmission now gets the 200 again.
    assert_eq!(codes(&h.send(ALICE, &info)), [200]);
    assert_eq!(h.core.stats().info_relayed, 1);

    // bob → alice, application/dtmf; alice refuses it with 415.
    let info = with_typed_body(&b_request("INFO", &inv, "b9", 7), "application/dtmf", "7");
    let out = h.send(BOB, &info);
    let (d, ainfo) = only(&out, "INFO").clone();
    assert_eq!(d, addr(ALICE));
    assert_eq!(ainfo.call_id, "in-1");
    assert_eq!(ainfo.body(), b"7");
    let out = h.send(ALICE, &b_response(&ainfo, 415, "", None));
    let (d, r) = only(&out, "415");
    assert_eq!(*d, addr(BOB));
    assert_eq!(r.cseq.num, 7);
}

#[test]
fn info_unanswered_gets_408_and_allow_names_info() {
    let mut h = H::new("info-408", 16, "");
    let (_, a_tag) = confirmed_call(&mut h, "in-2");
    let info = with_typed_body(
        &a_request("INFO", "in-2", 2, &format!(";tag={a_tag}"), "z9hG4bKi2"),
        "application/dtmf-relay",
        DTMF,
    );
    only(&h.send(ALICE, &info), "INFO");
    let out = h.advance(Duration::from_secs(40));
    let (d, _) = only(&out, "408");
    assert_eq!(*d, addr(ALICE));
    // Outside a dialog: 481.
    let stray = with_typed_body(
        &a_request("INFO", "nope", 2, ";tag=zz", "z9hG4bKi3"),
        "application/dtmf",
        "1",
    );
    assert_eq!(codes(&h.send(ALICE, &stray)), [481]);
    let opts = a_request("OPTIONS", "o-1", 1, "", "z9hG4bKo");
    let out = h.send(ALICE, &opts);
    assert!(out[0].1.header("Allow").unwrap_or("").contains("INFO"));
}
