//! What we send into a call's dialogs, shared by the flows: our Via and
//! Contact, responses to the caller's INVITE, ACKs, BYEs and CANCELs.

use std::net::SocketAddr;
use std::time::Instant;

use super::call::Call;
use super::dialog::Side;
use crate::build::OutMsg;
use rand::rngs::StdRng;
use rand::Rng;

use crate::method::ALLOW;
use crate::retransmit::RtKey;
use crate::session_timer::{Refresher, SessionExpires};
use crate::tu::Tu;

/// Random lowercase hex of `n` bytes from `rng`.
pub(super) fn rand_hex(rng: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

/// A fresh RFC 3261 branch (`z9hG4bK` magic cookie, §8.1.1.7).
pub(super) fn new_branch(rng: &mut StdRng) -> String {
    format!("z9hG4bK{}", rand_hex(rng, 8))
}

/// Our Contact header value.
pub(super) fn our_contact(tu: &Tu<'_>) -> String {
    format!("<sip:tern@{}>", tu.local)
}

/// Our Via header value with `branch`.
pub(super) fn our_via(tu: &Tu<'_>, branch: &str) -> String {
    format!("SIP/2.0/UDP {};branch={branch};rport", tu.local)
}

/// A new request of ours in dialog `side` (RFC 3261 §12.2.1.1): takes
/// that dialog's next local CSeq and returns it with where to send the
/// request and the request itself (branch `branch`).
pub(super) fn new_in_dialog(
    tu: &Tu<'_>,
    call: &mut Call,
    side: Side,
    method: rsip::Method,
    branch: &str,
) -> (u32, SocketAddr, OutMsg) {
    let via = our_via(tu, branch);
    let d = call.dialog_mut(side);
    let cseq = d.next_cseq();
    (
        cseq,
        d.peer,
        d.request(method, cseq, via, &tu.cfg.user_agent),
    )
}
/// A response to the caller's INVITE: our To tag (above 100), Contact
/// and Record-Route echoed for 18x/2xx, Allow and the session-timer
/// headers for finals, and `sdp` as its body.
pub(super) fn caller_response(
    tu: &Tu<'_>,
    call: &Call,
    code: u16,
    reason: Option<&str>,
    sdp: Option<Vec<u8>>,
) -> OutMsg {
    let peer = call.caller().peer;
    let tag = (code > 100).then_some(call.caller().local_tag.as_str());
    let mut r = tu.response(&call.uas.req, code, tag, peer);
    if let Some(reason) = reason {
        r = r.reason(reason);
    }
    if (101..300).contains(&code) {
        for rr in call.uas.req.headers("Record-Route") {
            r.push("Record-Route", rr.to_string());
        }
        r.push("Contact", our_contact(tu));
    }
    if code >= 200 {
        r.push("Allow", ALLOW);
    }
    if (200..300).contains(&code) {
        if let Some(s) = call.session {
            session_headers(&mut r, s.se);
        }
    }
    if let (422, Some(min)) = (code, call.uas.min_se) {
        r.push("Min-SE", min.to_string());
    }
    if let Some(body) = sdp {
        r = r.body("application/sdp", body);
    }
    r
}

/// Sends a response to the caller's INVITE (see [`caller_response`])
/// unreliably, and remembers it for INVITE retransmissions. Finals
/// (>= 200) are retransmitted until the ACK, and end the retransmission
/// of a reliable provisional (RFC 3262 §3) and the queue behind it.
pub(super) fn respond_caller(
    tu: &mut Tu<'_>,
    call: &mut Call,
    code: u16,
    reason: Option<&str>,
    sdp: Option<Vec<u8>>,
    now: Instant,
) {
    let peer = call.caller().peer;
    let bytes = caller_response(tu, call, code, reason, sdp).to_bytes();
    call.uas.last_response = Some(bytes.clone());
    if code >= 200 {
        call.uas.final_code = Some(code);
        tu.stop_retrans(RtKey::Reliable(call.id));
        call.rel.queue.clear();
        call.rel.held_final = None;
        let cap = true; // 2xx: §13.3.1.4 caps at T2; non-2xx: timer G too.
        tu.send_retrans(RtKey::CallerFinal(call.id), peer, bytes, cap, now);
    } else {
        tu.send(peer, bytes);
    }
}

/// The session-timer headers of a 2xx relayed to a request's sender
/// (RFC 4028 §9): `Session-Expires`, and `Require: timer` when the
/// sender (the UAC) is to refresh.
pub(super) fn session_headers(r: &mut OutMsg, se: SessionExpires) {
    r.push("Session-Expires", se.to_header());
    if se.refresher == Some(Refresher::Uac) {
        r.push("Require", "timer");
    }
}

/// ACKs the callee's 2xx (in its dialog) and remembers the ACK for
/// retransmitted 2xx.
pub(super) fn send_callee_ack(tu: &mut Tu<'_>, call: &mut Call) {
    let branch = new_branch(tu.rng);
    let via = our_via(tu, &branch);
    let d = call.callee();
    let bytes = d
        .request(rsip::Method::Ack, call.uac.cseq, via, &tu.cfg.user_agent)
        .to_bytes();
    tu.send(d.peer, bytes.clone());
    call.uac.ack = Some(bytes);
}

/// The retransmission key of our BYE into dialog `side` of call `id`.
pub(super) fn bye_key(id: u64, side: Side) -> RtKey {
    match side {
        Side::Caller => RtKey::ByeToCaller(id),
        Side::Callee => RtKey::ByeToCallee(id),
    }
}

/// Sends a BYE into dialog `side` (retransmitted until answered).
pub(super) fn send_bye(tu: &mut Tu<'_>, call: &mut Call, side: Side, now: Instant) {
    let branch = new_branch(tu.rng);
    let (_, dest, bye) = new_in_dialog(tu, call, side, rsip::Method::Bye, &branch);
    tu.send_retrans(bye_key(call.id, side), dest, bye.to_bytes(), true, now);
}

/// CANCEL for our INVITE (§9.1): its Request-URI, branch, From, To
/// (without the callee's tag) and CSeq number.
fn callee_cancel(tu: &Tu<'_>, call: &Call) -> Vec<u8> {
    let d = call.callee();
    OutMsg::request(rsip::Method::Cancel, &call.uac.ruri)
        .header("Via", our_via(tu, &call.uac.branch))
        .header("Max-Forwards", "70")
        .header("From", d.local.clone())
        .header("To", d.remote.clone())
        .header("Call-ID", d.call_id.clone())
        .header("CSeq", format!("{} CANCEL", call.uac.cseq))
        .to_bytes()
}

/// Sends (and retransmits) a CANCEL for our INVITE.
pub(super) fn send_cancel(tu: &mut Tu<'_>, call: &mut Call, now: Instant) {
    let bytes = callee_cancel(tu, call);
    tu.send_retrans(RtKey::Cancel(call.id), call.callee().peer, bytes, true, now);
    call.uac.cancel_pending = false;
}
