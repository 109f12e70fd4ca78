//! PRACK (RFC 3262): reliable provisional responses, terminated per leg.
//!
//! Each leg has its own 100rel: tern is the UAC of the callee's INVITE
//! and the UAS of the caller's, so each leg has its own `RSeq` space and
//! its own PRACKs, and either leg may do 100rel without the other.
//!
//! - The INVITE to the callee offers 100rel when the caller's did:
//!   `Supported: 100rel`, also when the caller required it. tern never
//!   requires it of the callee: it terminates 100rel on the caller's leg
//!   itself, and a callee without 100rel would answer `Require` with 420.
//! - A reliable provisional from the callee (`Require: 100rel` and a
//!   valid `RSeq`) is PRACKed in the callee's early dialog (`RAck`, §7.2)
//!   whatever the caller supports; a retransmission (an `RSeq` not above
//!   the last) or one out of order (§4: not the last plus one) is
//!   dropped, so the caller sees each provisional once.
//! - Toward the caller, a provisional goes reliably when the caller
//!   required 100rel, or supports it and the callee's was reliable:
//!   `Require: 100rel` and our own `RSeq` (random start, one up per
//!   response, §3), retransmitted from T1 doubling without a cap until
//!   the PRACK, one at a time (later ones queue). Otherwise it goes as
//!   it always did, unreliably, without `RSeq`.
//! - The caller's PRACK matching our latest reliable provisional (its
//!   `RAck`) gets 200 and releases the next; a retransmitted PRACK gets
//!   the same 200; one matching nothing gets 481, a malformed `RAck` 400.
//!   A PRACK with an SDP body (a new offer, §5) is not supported: 488.
//! - A 2xx from the callee while a reliable provisional with SDP is
//!   unacknowledged waits for the PRACK (§3). When the caller got the
//!   answer reliably, the 2xx goes without SDP (RFC 6337 §3.1); when it
//!   got it only unreliably, the 2xx carries it if the callee's has none.
//! - No PRACK within 64·T1: the caller gets 500 (§3), the callee a
//!   CANCEL, and the call ends (`CoreStats::reliable_abandoned`).
//!
//! The SDP of a reliable 183 is rewritten through the slot exactly as
//! a 2xx's is (`media.rs`): the answer of the callee, anchored.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::call::{Call, CallState, Provisional};
use super::dialog::Side;
use super::media::release_slot;
use super::send::{caller_response, new_branch, new_in_dialog, respond_caller, send_cancel};
use super::{fork, B2bua};
use crate::msg::Msg;
use crate::rel100::{lists_100rel, parse_rack, parse_rseq, Support, RSEQ_MAX, TAG_100REL};
use crate::retransmit::RtKey;
use crate::tu::Tu;

/// Reliable provisionals queued behind an unacknowledged one; more are
/// dropped (a callee sends a handful at most: 180, 183).
const QUEUE_MAX: usize = 8;

/// What the caller's INVITE `req` says of 100rel, with the `RSeq`
/// before our first reliable provisional to it (random in 0..2**30, so
/// the numbers stay below 2**31 - 1, §3).
pub(super) fn caller_support(tu: &mut Tu<'_>, req: &Msg) -> (Support, u32) {
    let s = Support::of(req.headers("Supported"), req.headers("Require"));
    (s, rand::Rng::gen_range(tu.rng, 0..(1u32 << 30)))
}

/// A provisional (101..=199) from the callee to our INVITE, before it is
/// relayed: `None` when it is to be dropped (a retransmitted or
/// out-of-order reliable one), else whether it was reliable, in which
/// case our PRACK is on its way (RFC 3262 §4).
pub(super) fn callee_provisional(
    tu: &mut Tu<'_>,
    call: &mut Call,
    resp: &Msg,
    now: Instant,
) -> Option<bool> {
    if !lists_100rel(resp.headers("Require")) {
        return Some(false);
    }
    let Some(rseq) = resp.header("RSeq").and_then(|v| parse_rseq(v).ok()) else {
        // §7.1: a reliable provisional carries RSeq; without one it
        // cannot be PRACKed, so it is relayed as an unreliable one.
        warn!(call_id = %call.call_id(), "Require: 100rel without a valid RSeq");
        return Some(false);
    };
    if let Some(last) = call.uac.rseq {
        if rseq != last.wrapping_add(1) {
            debug!(call_id = %call.call_id(), rseq, last, "reliable provisional retransmitted or out of order");
            return None;
        }
    } else {
        // The early dialog's remote target and route set (§12.1.2).
        let d = call.callee_mut();
        if let Some(c) = resp.contacts().first() {
            d.target = c.uri.clone();
        }
        d.route = resp.headers("Record-Route").map(str::to_string).collect();
        d.route.reverse();
    }
    call.uac.rseq = Some(rseq);
    let branch = new_branch(tu.rng);
    let (cseq, dest, out) = new_in_dialog(tu, call, Side::Callee, rsip::Method::PRack, &branch);
    let rack = format!("{rseq} {} INVITE", call.uac.cseq);
    let bytes = out.header("RAck", rack).to_bytes();
    call.uac.prack_cseq = Some(cseq);
    tu.stats.prack_sent += 1;
    debug!(call_id = %call.call_id(), rseq, "PRACK to the callee");
    tu.send_retrans(RtKey::Prack(call.id), dest, bytes, true, now);
    Some(true)
}

/// Whether the caller still waits for an answer we hold: a reliable
/// provisional with SDP unacknowledged or queued.
fn answer_pending(call: &Call) -> bool {
    matches!(call.rel.sent, Some((_, true, false)))
        || call.rel.queue.iter().any(|p| p.sdp.is_some())
}

/// Relays a callee's provisional `code` (with the rewritten answer
/// `sdp`, if any) to the caller: reliably when the caller required
/// 100rel, or supports it and `callee_reliable`; else unreliably.
pub(super) fn relay_provisional(
    tu: &mut Tu<'_>,
    call: &mut Call,
    code: u16,
    reason: Option<&str>,
    sdp: Option<Vec<u8>>,
    callee_reliable: bool,
    now: Instant,
) {
    let reliable = match call.rel.caller {
        Support::Required => true,
        Support::Supported => callee_reliable,
        Support::None => false,
    };
    if !reliable || call.rel.rseq >= RSEQ_MAX {
        if sdp.is_some() {
            call.rel.answer = sdp.clone();
        }
        respond_caller(tu, call, code, reason, sdp, now);
        return;
    }
    let p = Provisional {
        code,
        reason: reason.map(str::to_string),
        sdp,
    };
    if matches!(call.rel.sent, Some((_, _, false))) {
        if call.rel.queue.len() < QUEUE_MAX {
            call.rel.queue.push_back(p);
        } else {
            warn!(call_id = %call.call_id(), code, "reliable provisional queue full: dropped");
        }
        return;
    }
    send_reliable(tu, call, p, now);
}

/// Sends `p` to the caller reliably: `Require: 100rel`, the next `RSeq`,
/// retransmitted until its PRACK (§3).
fn send_reliable(tu: &mut Tu<'_>, call: &mut Call, p: Provisional, now: Instant) {
    call.rel.rseq += 1;
    let rseq = call.rel.rseq;
    let with_sdp = p.sdp.is_some();
    let mut r = caller_response(tu, call, p.code, p.reason.as_deref(), p.sdp);
    r.push("Require", TAG_100REL);
    r.push("RSeq", rseq.to_string());
    let bytes = r.to_bytes();
    call.uas.last_response = Some(bytes.clone());
    call.rel.sent = Some((rseq, with_sdp, false));
    if with_sdp {
        call.rel.answered = true;
    }
    tu.stats.reliable_provisionals += 1;
    debug!(call_id = %call.call_id(), code = p.code, rseq, "reliable provisional to the caller");
    let peer = call.caller().peer;
    tu.send_retrans(RtKey::Reliable(call.id), peer, bytes, false, now);
}

/// The callee's 2xx `resp` arrives: true when it is held until the
/// caller's PRACK for a provisional with SDP (§3).
pub(super) fn hold_final(call: &mut Call, resp: &Msg) -> bool {
    if !answer_pending(call) {
        return false;
    }
    debug!(call_id = %call.call_id(), "2xx held until the caller's PRACK");
    call.rel.held_final = Some(resp.clone());
    true
}

/// The SDP for the 2xx to the caller, from the callee's rewritten answer
/// `sdp` in it: none once the caller got the answer reliably (RFC 6337
/// §3.1), the answer of an unreliable provisional when the 2xx has none.
pub(super) fn final_sdp(call: &mut Call, sdp: Option<Vec<u8>>) -> Option<Vec<u8>> {
    if call.rel.answered {
        return None;
    }
    let early = call.rel.answer.take();
    sdp.or(early)
}

impl B2bua {
    /// A PRACK from dialog `side` of call `id` (RFC 3262 §3).
    pub(crate) fn on_prack(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        if !self.calls.contains_key(&id) {
            tu.reply(req, 481, src, |r| r);
            return;
        }
        self.with_call(id, |b2b, call| {
            b2b.prack_in(tu, call, side, req, src, now);
        });
    }

    fn prack_in(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        side: Side,
        req: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        if let Some((cseq, bytes)) = &call.rel.last_prack {
            if side == Side::Caller && *cseq == req.cseq.num {
                tu.send(src, bytes.clone());
                return;
            }
        }
        let rack = match req.header("RAck").map(parse_rack) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tu.stats.malformed_requests += 1;
                tu.reply(req, 400, src, |r| {
                    r.header("Warning", format!("399 tern \"malformed RAck: {e}\""))
                });
                return;
            }
            None => {
                tu.stats.malformed_requests += 1;
                tu.reply(req, 400, src, |r| {
                    r.header("Warning", "399 tern \"PRACK without RAck\"")
                });
                return;
            }
        };
        // We send reliable provisionals only to the caller.
        let sent = call.rel.sent.filter(|&(rseq, _, _)| {
            side == Side::Caller
                && call.state != CallState::Done
                && rack.rseq == rseq
                && rack.cseq == call.uas.req.cseq.num
                && rack.method == "INVITE"
        });
        let Some((rseq, with_sdp, _)) = sent else {
            debug!(call_id = %req.call_id, rack = %rack.to_header(), "PRACK matches nothing: 481");
            tu.reply(req, 481, src, |r| r);
            return;
        };
        if req.has_sdp() {
            info!(call_id = %call.call_id(), "offer in PRACK refused");
            tu.reply(req, 488, src, |r| {
                r.header("Warning", "399 tern \"no offer in PRACK\"")
            });
            return;
        }
        tu.stop_retrans(RtKey::Reliable(call.id));
        call.rel.sent = Some((rseq, with_sdp, true));
        let bytes = tu.response(req, 200, None, src).to_bytes();
        tu.send(src, bytes.clone());
        call.rel.last_prack = Some((req.cseq.num, bytes));
        debug!(call_id = %call.call_id(), rseq, "PRACK from the caller answered");
        if !matches!(call.state, CallState::Calling | CallState::Proceeding) {
            return;
        }
        if let Some(p) = call.rel.queue.pop_front() {
            send_reliable(tu, call, p, now);
        }
        if !answer_pending(call) {
            if let Some(held) = call.rel.held_final.take() {
                self.callee_invite_response(tu, call, &held, now);
            }
        }
    }

    /// A response from the callee to our PRACK.
    pub(super) fn on_prack_response(&mut self, tu: &mut Tu<'_>, id: u64, resp: &Msg) {
        self.with_call(id, |_, call| {
            if call.uac.prack_cseq == Some(resp.cseq.num) && resp.code().unwrap_or(0) >= 200 {
                tu.stop_retrans(RtKey::Prack(call.id));
                call.uac.prack_cseq = None;
            } else {
                tu.stats.stray_responses += 1;
            }
        });
    }

    /// Our reliable provisional to the caller of call `id` was not
    /// PRACKed within 64·T1 (§3): 500 to the caller, CANCEL to the callee.
    pub(super) fn on_reliable_timeout(&mut self, tu: &mut Tu<'_>, id: u64, now: Instant) {
        self.with_call(id, |b2b, call| {
            if !matches!(call.state, CallState::Calling | CallState::Proceeding)
                || call.uas.final_code.is_some()
            {
                return;
            }
            tu.stats.reliable_abandoned += 1;
            info!(call_id = %call.call_id(), slot = ?call.slot, "no PRACK from the caller: call refused");
            call.timer_c = None;
            send_cancel(tu, call, now);
            fork::cancel_others(tu, call, now);
            respond_caller(tu, call, 500, None, None, now);
            release_slot(tu, call);
            call.state = CallState::Cancelling;
            let at = now + tu.cfg.t1 * 66;
            b2b.set_linger(tu, call, at);
        });
    }
}
