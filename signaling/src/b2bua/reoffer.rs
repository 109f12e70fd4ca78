//! Offers inside a dialog: re-INVITE (RFC 3261 §14, RFC 3264 §8: hold,
//! resume, address change, session refresh) and UPDATE (RFC 3311), each
//! relayed into the other dialog with its SDP rewritten; the slot follows
//! the offer and the answer, and a failed offer restores the sender's
//! previous media. Also the SDP steps the initial INVITE shares.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::info;

use super::call::{Call, CallState, ReInvite, Update};
use super::dialog::Side;
use super::media::{apply_answer, apply_offer, program, warning_code};
use super::send::{new_branch, new_in_dialog, our_contact, our_via, session_headers};
use super::{session, B2bua};
use crate::build::OutMsg;
use crate::method::ALLOW;
use crate::msg::Msg;
use crate::retransmit::RtKey;
use crate::tu::Tu;

/// The offer in `req` (from dialog `side`) applied to the call, as the
/// body to relay; `None` when `req` has no SDP. `Err` when the offer is
/// unusable: `req` has been answered 488 with a Warning (305
/// Incompatible media format when no codec is common, RFC 3261
/// §20.43).
fn relay_offer(
    tu: &mut Tu<'_>,
    call: &mut Call,
    side: Side,
    req: &Msg,
    src: SocketAddr,
) -> Result<Option<Vec<u8>>, ()> {
    if !req.has_sdp() {
        return Ok(None);
    }
    apply_offer(tu, call, side, req.body())
        .map(Some)
        .map_err(|e| {
            let code = warning_code(&e);
            tu.reply(req, 488, src, |r| {
                r.header("Warning", format!("{code} tern \"{e}\""))
            });
        })
}

impl B2bua {
    /// An in-dialog INVITE from `side`: relayed into the other dialog with
    /// its SDP rewritten, the slot reprogrammed (new peer, direction).
    pub(super) fn on_reinvite(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        reinvite_in(tu, &mut call, side, req, src, now);
        self.calls.insert(id, call);
    }

    /// Whether `resp` (from dialog `side`) answers our relayed re-INVITE.
    pub(super) fn is_reinvite_response(&self, id: u64, side: Side, resp: &Msg) -> bool {
        self.calls
            .get(&id)
            .and_then(|c| c.reinvite.as_ref())
            .is_some_and(|ri| {
                ri.from == side.other()
                    && ri.cseq == resp.cseq.num
                    && resp.top_via().branch() == Some(ri.branch.as_str())
            })
    }

    /// A response to our relayed re-INVITE.
    pub(super) fn on_reinvite_response(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        resp: &Msg,
        now: Instant,
    ) {
        self.with_call(id, |_, call| reinvite_response(tu, call, resp, now));
    }

    /// Whether `ack` from `side` acknowledges our answer to its re-INVITE.
    pub(crate) fn is_reinvite_ack(&self, id: u64, side: Side, ack: &Msg) -> bool {
        self.calls
            .get(&id)
            .and_then(|c| c.reinvite.as_ref())
            .is_some_and(|ri| ri.from == side && ri.req.cseq.num == ack.cseq.num)
    }

    /// The re-INVITE sender's ACK: for a 2xx, ACK the other dialog (with the
    /// SDP answer if the re-INVITE had no offer).
    pub(crate) fn on_reinvite_ack(&mut self, tu: &mut Tu<'_>, id: u64, ack: &Msg) {
        self.with_call(id, |_, call| {
            let Some(mut ri) = call.reinvite.take() else {
                return;
            };
            tu.stop_retrans(RtKey::ReFinal(call.id));
            if ri.final_code.is_some_and(|c| c < 300) && ri.ack.is_none() {
                let other = ri.from.other();
                let body = if ack.has_sdp() {
                    apply_answer(tu, call, ri.from, ack.body())
                } else {
                    None
                };
                let branch = new_branch(tu.rng);
                let via = our_via(tu, &branch);
                let d = call.dialog(other);
                let mut out = d.request(rsip::Method::Ack, ri.cseq, via, &tu.cfg.user_agent);
                if let Some(b) = body {
                    out = out.body("application/sdp", b);
                }
                let bytes = out.to_bytes();
                tu.send(d.peer, bytes.clone());
                ri.ack = Some(bytes);
            }
            call.reinvite = Some(ri);
        });
    }

    /// Our relayed re-INVITE got no answer (timer B): 408 to its sender.
    pub(super) fn on_reinvite_timeout(&mut self, tu: &mut Tu<'_>, id: u64, now: Instant) {
        self.with_call(id, |_, call| {
            let Some(mut ri) = call.reinvite.take() else {
                return;
            };
            if ri.final_code.is_none() {
                if ri.req.has_sdp() {
                    call.dialog_mut(ri.from).media = ri.prev.clone();
                    call.dialog_mut(ri.from).webrtc = ri.prev_webrtc.clone();
                    program(tu, call);
                }
                let bytes = tu.response(&ri.req, 408, None, ri.src).to_bytes();
                ri.final_code = Some(408);
                ri.last_response = Some(bytes.clone());
                tu.send_retrans(RtKey::ReFinal(call.id), ri.src, bytes, true, now);
            }
            call.reinvite = Some(ri);
        });
    }

    /// An UPDATE (RFC 3311) from `side` of call `id`: relayed into the
    /// other dialog with its offer rewritten; the slot follows the offer at
    /// once and the answer when it comes. Allowed in a confirmed dialog and
    /// in an early one once the callee's 18x gave both dialogs their tags.
    pub(crate) fn on_update(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            tu.reply(&req, 481, src, |r| r);
            return;
        };
        update_in(tu, &mut call, side, req, src, now);
        self.calls.insert(id, call);
    }

    /// A response (from dialog `side`) to an UPDATE we relayed: the final
    /// one goes back to the UPDATE's sender with the answer rewritten; a
    /// failure restores the sender's previous media.
    pub(super) fn on_update_response(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        resp: &Msg,
        now: Instant,
    ) {
        let matches = self
            .calls
            .get(&id)
            .and_then(|c| c.update.as_ref())
            .is_some_and(|u| {
                u.from == side.other()
                    && u.cseq == resp.cseq.num
                    && resp.top_via().branch() == Some(u.branch.as_str())
            });
        if !matches {
            tu.stats.stray_responses += 1;
            return;
        }
        let code = resp.code().unwrap_or(0);
        if code < 200 {
            return;
        }
        self.with_call(id, |_, call| {
            let Some(mut u) = call.update.take() else {
                return;
            };
            if u.final_code.is_some() {
                call.update = Some(u);
                return;
            }
            tu.stop_retrans(RtKey::Update(call.id));
            let mut r = tu.response(&u.req, code, None, u.src);
            if code < 300 {
                if resp.has_sdp() {
                    if let Some(b) = apply_answer(tu, call, side, resp.body()) {
                        r = r.body("application/sdp", b);
                    }
                }
                r.push("Contact", our_contact(tu));
                let se = session::negotiate(&u.req, resp);
                if let Some(se) = se {
                    session_headers(&mut r, se);
                }
                session::arm(tu, call, se, now);
            } else {
                if u.req.has_sdp() {
                    call.dialog_mut(u.from).media = u.prev.clone();
                    call.dialog_mut(u.from).webrtc = u.prev_webrtc.clone();
                    program(tu, call);
                }
                if code == 491 {
                    r.push("Retry-After", "1");
                }
            }
            info!(call_id = %call.call_id(), slot = ?call.slot, code, "UPDATE answered");
            let bytes = r.to_bytes();
            tu.send(u.src, bytes.clone());
            u.final_code = Some(code);
            u.last_response = Some(bytes);
            call.update = Some(u);
        });
    }

    /// Our relayed UPDATE got no answer (timer F): 408 to its sender, whose
    /// media goes back to what it was.
    pub(super) fn on_update_timeout(&mut self, tu: &mut Tu<'_>, id: u64) {
        self.with_call(id, |_, call| {
            let Some(mut u) = call.update.take() else {
                return;
            };
            if u.final_code.is_none() {
                if u.req.has_sdp() {
                    call.dialog_mut(u.from).media = u.prev.clone();
                    call.dialog_mut(u.from).webrtc = u.prev_webrtc.clone();
                    program(tu, call);
                }
                let bytes = tu.response(&u.req, 408, None, u.src).to_bytes();
                tu.send(u.src, bytes.clone());
                u.final_code = Some(408);
                u.last_response = Some(bytes);
            }
            call.update = Some(u);
        });
    }
}

fn reinvite_in(
    tu: &mut Tu<'_>,
    call: &mut Call,
    side: Side,
    req: Msg,
    src: SocketAddr,
    now: Instant,
) {
    if let Some(ri) = &call.reinvite {
        if ri.from == side && ri.req.cseq.num == req.cseq.num {
            if let Some(bytes) = ri.last_response.clone() {
                tu.send(src, bytes);
            }
            return;
        }
    }
    let pending = call
        .reinvite
        .as_ref()
        .is_some_and(|r| r.final_code.is_none());
    match call.state {
        CallState::Confirmed if !pending => {}
        CallState::Confirmed | CallState::Answered => {
            // §14.2: one offer at a time.
            tu.reply(&req, 491, src, |r| r);
            return;
        }
        _ => {
            tu.reply(&req, 481, src, |r| r);
            return;
        }
    }
    let trying = tu.response(&req, 100, None, src).to_bytes();
    tu.send(src, trying.clone());
    let other = side.other();
    let prev = call.dialog(side).media.clone();
    let prev_webrtc = call.dialog(side).webrtc.clone();
    let Ok(body) = relay_offer(tu, call, side, &req, src) else {
        return;
    };
    let branch = new_branch(tu.rng);
    let (cseq, dest, out) = new_in_dialog(tu, call, other, rsip::Method::Invite, &branch);
    let out = out
        .header("Contact", our_contact(tu))
        .header("Allow", ALLOW);
    let mut out = session::relay_request_headers(tu, &req, out);
    if let Some(b) = body {
        out = out.body("application/sdp", b);
    }
    let ruri = call.dialog(other).target.clone();
    info!(call_id = %call.call_id(), slot = ?call.slot, ?side, sdp = req.has_sdp(), "re-INVITE relayed");
    tu.send_retrans(RtKey::ReInvite(call.id), dest, out.to_bytes(), false, now);
    call.reinvite = Some(ReInvite {
        from: side,
        req,
        src,
        cseq,
        branch,
        ruri,
        prev,
        prev_webrtc,
        final_code: None,
        last_response: Some(trying),
        ack: None,
    });
}

fn reinvite_response(tu: &mut Tu<'_>, call: &mut Call, resp: &Msg, now: Instant) {
    let Some(mut ri) = call.reinvite.take() else {
        return;
    };
    let code = resp.code().unwrap_or(0);
    let other = ri.from.other();
    let other_dest = call.dialog(other).peer;
    tu.stop_retrans(RtKey::ReInvite(call.id));
    if code < 200 {
        call.reinvite = Some(ri);
        return;
    }
    if ri.final_code.is_some() {
        // Retransmitted final: repeat our ACK.
        if let Some(ack) = ri.ack.clone() {
            tu.send(other_dest, ack);
        }
        call.reinvite = Some(ri);
        return;
    }
    let mut r = tu.response(&ri.req, code, None, ri.src);
    if code < 300 {
        if resp.has_sdp() {
            let b = if ri.req.has_sdp() {
                apply_answer(tu, call, other, resp.body())
            } else {
                // Late offer: the 2xx offers, the sender's ACK answers.
                apply_offer(tu, call, other, resp.body()).ok()
            };
            if let Some(b) = b {
                r = r.body("application/sdp", b);
            }
        }
        r.push("Contact", our_contact(tu));
        // A session refresh (RFC 4028 §10), or the end of the timer.
        let se = session::negotiate(&ri.req, resp);
        if let Some(se) = se {
            session_headers(&mut r, se);
        }
        session::arm(tu, call, se, now);
    } else {
        // §17.1.1.3 ACK on the re-INVITE's branch; the offer failed, so
        // the sender's media goes back to what it was.
        let ack = OutMsg::request(rsip::Method::Ack, &ri.ruri)
            .header("Via", our_via(tu, &ri.branch))
            .header("Max-Forwards", "70")
            .header("From", resp.header("From").unwrap_or_default().to_string())
            .header("To", resp.header("To").unwrap_or_default().to_string())
            .header("Call-ID", resp.call_id.clone())
            .header("CSeq", format!("{} ACK", ri.cseq))
            .to_bytes();
        tu.send(other_dest, ack.clone());
        ri.ack = Some(ack);
        if ri.req.has_sdp() {
            call.dialog_mut(ri.from).media = ri.prev.clone();
            call.dialog_mut(ri.from).webrtc = ri.prev_webrtc.clone();
            program(tu, call);
        }
    }
    info!(call_id = %call.call_id(), slot = ?call.slot, code, "re-INVITE answered");
    let bytes = r.to_bytes();
    ri.final_code = Some(code);
    ri.last_response = Some(bytes.clone());
    tu.send_retrans(RtKey::ReFinal(call.id), ri.src, bytes, true, now);
    call.reinvite = Some(ri);
}

fn update_in(
    tu: &mut Tu<'_>,
    call: &mut Call,
    side: Side,
    req: Msg,
    src: SocketAddr,
    now: Instant,
) {
    if let Some(u) = &call.update {
        if u.from == side && u.req.cseq.num == req.cseq.num {
            // Retransmission: repeat the final response, if any yet.
            if let Some(bytes) = u.last_response.clone() {
                tu.send(src, bytes);
            }
            return;
        }
    }
    // An 18x with a To tag made both dialogs early ones (we relayed it
    // to the caller with our tag), and its SDP gave the callee's media.
    let early = call.state == CallState::Proceeding
        && call.callee().remote_tag.is_some()
        && call.callee().media.is_some();
    if !(early || matches!(call.state, CallState::Answered | CallState::Confirmed)) {
        tu.reply(&req, 481, src, |r| r);
        return;
    }
    if req.max_forwards() == Some(0) {
        tu.reply(&req, 483, src, |r| r);
        return;
    }
    let busy = call.update.as_ref().is_some_and(|u| u.final_code.is_none())
        || call
            .reinvite
            .as_ref()
            .is_some_and(|r| r.final_code.is_none());
    if busy {
        // RFC 3311 §5.2: an offer while one is outstanding.
        tu.reply(&req, 491, src, |r| r.header("Retry-After", "1"));
        return;
    }
    let prev = call.dialog(side).media.clone();
    let prev_webrtc = call.dialog(side).webrtc.clone();
    let Ok(body) = relay_offer(tu, call, side, &req, src) else {
        return;
    };
    let branch = new_branch(tu.rng);
    let (cseq, dest, out) = new_in_dialog(tu, call, side.other(), rsip::Method::Update, &branch);
    let out = out.header("Contact", our_contact(tu));
    let mut out = session::relay_request_headers(tu, &req, out);
    if let Some(b) = body {
        out = out.body("application/sdp", b);
    }
    info!(call_id = %call.call_id(), slot = ?call.slot, ?side, sdp = req.has_sdp(), "UPDATE relayed");
    tu.send_retrans(RtKey::Update(call.id), dest, out.to_bytes(), true, now);
    call.update = Some(Update {
        from: side,
        req,
        src,
        cseq,
        branch,
        prev,
        prev_webrtc,
        final_code: None,
        last_response: None,
    });
}
