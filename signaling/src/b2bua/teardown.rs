//! The end of a call: BYE from either side, CANCEL from the caller, our
//! own BYEs and CANCELs and their responses, and what happens when a
//! message of ours gets no answer (timers B, F and the 2xx timer).
//!
//! REFER (RFC 3515, call transfer) is in `transfer.rs`: a BYE from a
//! referrer whose transfer is under way, and the end of a call with one,
//! are its to handle (asked here as methods).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{info, warn};

use super::call::{Call, CallState};
use super::dialog::Side;
use super::media::release_slot;
use super::send::{bye_key, respond_caller, send_bye, send_callee_ack, send_cancel};
use super::{fork, B2bua};
use crate::msg::Msg;
use crate::retransmit::RtKey;
use crate::tu::Tu;

/// CANCELs our INVITE now if the callee sent a provisional response
/// (§9.1), or once it does.
fn cancel_when_possible(tu: &mut Tu<'_>, call: &mut Call, now: Instant) {
    if call.uac.provisional {
        send_cancel(tu, call, now);
    } else {
        call.uac.cancel_pending = true;
    }
}

impl B2bua {
    /// A BYE from dialog `side` of call `id`: answered 200, then the call
    /// ends: BYE into the other dialog of a call up, or, on an early
    /// dialog, CANCEL toward the callee and 487 (480 when the callee hung
    /// up) to the caller.
    pub(crate) fn on_bye(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        if self.referrer_hangs_up(tu, id, side, req, src) {
            return;
        }
        tu.reply(req, 200, src, |r| r);
        self.with_call(id, |b2b, call| {
            info!(call_id = %call.call_id(), slot = ?call.slot, ?side, "BYE");
            match call.state {
                CallState::Answered | CallState::Confirmed => {
                    b2b.abort_transfer(tu, call, now);
                    tu.stop_retrans(RtKey::CallerFinal(call.id));
                    tu.stop_retrans(RtKey::ReInvite(call.id));
                    tu.stop_retrans(RtKey::ReFinal(call.id));
                    match side {
                        Side::Caller => {
                            if call.uac.ack.is_none() {
                                send_callee_ack(tu, call);
                            }
                            send_bye(tu, call, Side::Callee, now);
                        }
                        Side::Callee => send_bye(tu, call, Side::Caller, now),
                    }
                    release_slot(tu, call);
                    call.state = CallState::Terminating;
                    let at = now + tu.cfg.t1 * 66;
                    b2b.set_linger(tu, call, at);
                }
                CallState::Calling | CallState::Proceeding => {
                    // BYE on an early dialog: end the attempt.
                    cancel_when_possible(tu, call, now);
                    fork::cancel_others(tu, call, now);
                    let code = if side == Side::Caller { 487 } else { 480 };
                    respond_caller(tu, call, code, None, None, now);
                    release_slot(tu, call);
                    call.state = CallState::Cancelling;
                    let at = now + tu.cfg.t1 * 66;
                    b2b.set_linger(tu, call, at);
                }
                CallState::Cancelling | CallState::Terminating | CallState::Done => {}
            }
        });
    }

    /// A CANCEL from the caller (§9.2): 481 unless it matches the INVITE
    /// (CSeq number and From tag); else 200, and unless a final response
    /// went already, 487 to the INVITE and a CANCEL toward the callee.
    pub(crate) fn on_cancel(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        req: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&id) else {
            tu.reply(req, 481, src, |r| r);
            return;
        };
        let inv = &call.uas.req;
        if inv.cseq.num != req.cseq.num || inv.from.tag() != req.from.tag() {
            tu.reply(req, 481, src, |r| r);
            return;
        }
        let tag = call.caller().local_tag.clone();
        let r = tu.response(req, 200, Some(&tag), src).to_bytes();
        tu.send(src, r);
        self.with_call(id, |b2b, call| {
            if call.uas.final_code.is_some() {
                return;
            }
            info!(call_id = %call.call_id(), slot = ?call.slot, "call cancelled by the caller");
            respond_caller(tu, call, 487, None, None, now);
            cancel_when_possible(tu, call, now);
            fork::cancel_others(tu, call, now);
            release_slot(tu, call);
            call.state = CallState::Cancelling;
            call.timer_c = None;
            let at = now + tu.cfg.t1 * 66;
            b2b.set_linger(tu, call, at);
        });
    }

    /// A response to our BYE into dialog `side`: once both BYEs are
    /// answered, the call is over.
    pub(super) fn on_bye_response(&mut self, tu: &mut Tu<'_>, id: u64, side: Side, now: Instant) {
        if !tu.stop_retrans(bye_key(id, side)) {
            return;
        }
        self.end_if_byes_done(tu, id, true, now);
    }

    /// Ends a terminating call whose BYEs are all answered or given up.
    fn end_if_byes_done(&mut self, tu: &mut Tu<'_>, id: u64, log: bool, now: Instant) {
        self.with_call(id, |b2b, call| {
            if !tu.retransmitting(RtKey::ByeToCaller(id))
                && !tu.retransmitting(RtKey::ByeToCallee(id))
                && call.state == CallState::Terminating
            {
                if log {
                    info!(call_id = %call.call_id(), "call ended");
                }
                b2b.finish(tu, call, now);
            }
        });
    }

    /// A message of ours under `key` got no answer in time (timer B or F,
    /// the 2xx timer's 64·T1), or its transport failed.
    pub(crate) fn on_retrans_timeout(&mut self, tu: &mut Tu<'_>, key: RtKey, now: Instant) {
        match key {
            RtKey::CalleeInvite(id) if self.is_forked(id) => self.on_fork_timeout(tu, id, 0, now),
            RtKey::ForkInvite(id, n) => self.on_fork_timeout(tu, id, n, now),
            RtKey::ForkCancel(..) | RtKey::ForkBye(..) => {}
            RtKey::CalleeInvite(id) => self.with_call(id, |b2b, call| {
                // Timer B: the callee never answered (a trunk tries its
                // next gateway first).
                if b2b.trunk_retry(tu, call, None, now) {
                    return;
                }
                match call.state {
                    CallState::Calling => {
                        info!(call_id = %call.call_id(), slot = ?call.slot, "callee does not respond (timer B)");
                        respond_caller(tu, call, 408, None, None, now);
                        b2b.finish(tu, call, now);
                    }
                    CallState::Cancelling => b2b.finish(tu, call, now),
                    _ => {}
                }
            }),
            RtKey::CallerFinal(id) => self.with_call(id, |b2b, call| {
                if call.state == CallState::Answered {
                    // §13.3.1.4: no ACK for our 2xx: end the session.
                    warn!(call_id = %call.call_id(), slot = ?call.slot, "no ACK from the caller; ending the call");
                    send_callee_ack(tu, call);
                    send_bye(tu, call, Side::Callee, now);
                    send_bye(tu, call, Side::Caller, now);
                    release_slot(tu, call);
                    call.state = CallState::Terminating;
                    let at = now + tu.cfg.t1 * 66;
                    b2b.set_linger(tu, call, at);
                }
            }),
            RtKey::ByeToCaller(id) | RtKey::ByeToCallee(id) => {
                self.end_if_byes_done(tu, id, false, now)
            }
            RtKey::ReInvite(id) => self.on_reinvite_timeout(tu, id, now),
            RtKey::Update(id) => self.on_update_timeout(tu, id),
            RtKey::Info(id, cseq) => self.on_info_timeout(tu, id, cseq),
            RtKey::TransferInvite(id) => self.on_transfer_timeout(tu, id, now),
            RtKey::Reliable(id) => self.on_reliable_timeout(tu, id, now),
            RtKey::Cancel(_) | RtKey::ReFinal(_) | RtKey::Prack(_) => {}
            RtKey::Notify(_) | RtKey::TransferEnd(_) | RtKey::ReplacesFinal(_) => {}
        }
    }
}
