//! The initial INVITE: a new call toward a routed [`Target`], the
//! callee's responses relayed to the caller (180, 183 with early media,
//! 2xx, failures), the caller's ACK, and timer C.
//!
//! Forking (parallel INVITEs to every contact of a user) is in `fork.rs`:
//! it swaps the responding fork in as the call's callee dialog before
//! the responses here see it. PRACK (RFC 3262) for reliable provisionals
//! joins the provisional branch of [`B2bua::on_callee_invite_response`].

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::call::{Call, CallState, InviteClient, InviteServer, Rel100, Target};
use super::dialog::{Dialog, Role, Side};
use super::media::{
    apply_answer, check_secure, program, release_slot, shape, warning_code, LegWebrtc, Op,
};
use super::send::{
    our_contact, our_via, rand_hex, respond_caller, send_bye, send_callee_ack, send_cancel,
};
use super::{fork, prack, session, B2bua};
use crate::build::OutMsg;
use crate::method::ALLOW;
use crate::msg::{Msg, Start};
use crate::relay::RelayError;
use crate::retransmit::{RtKey, TimerEv};
use crate::sdp;
use crate::sdp_webrtc;
use crate::session_timer::parse_min_se;
use crate::tu::Tu;

fn nonzero_ssrc(rng: &mut rand::rngs::StdRng) -> u32 {
    loop {
        let s: u32 = rand::Rng::gen(rng);
        if s != 0 {
            return s;
        }
    }
}

/// ACK for a non-2xx final response to our INVITE (§17.1.1.3): same
/// Request-URI and branch as the INVITE, To from the response.
fn callee_failure_ack(tu: &Tu<'_>, call: &Call, resp: &Msg) -> Vec<u8> {
    let d = call.callee();
    OutMsg::request(rsip::Method::Ack, &call.uac.ruri)
        .header("Via", our_via(tu, &call.uac.branch))
        .header("Max-Forwards", "70")
        .header("From", d.local.clone())
        .header("To", resp.header("To").unwrap_or_default().to_string())
        .header("Call-ID", d.call_id.clone())
        .header("CSeq", format!("{} ACK", call.uac.cseq))
        .to_bytes()
}

impl B2bua {
    /// An INVITE from the network; `dialog` is what [`B2bua::dialog_of`]
    /// found for it. A retransmission gets our last response again, an
    /// in-dialog INVITE is a re-INVITE, a loop gets 482 and a stray To tag
    /// 481. Returns the request when it starts a new call: the core routes
    /// it and calls [`B2bua::new_call`].
    pub(crate) fn on_invite(
        &mut self,
        tu: &mut Tu<'_>,
        req: Msg,
        src: SocketAddr,
        dialog: Option<(u64, Side)>,
        now: Instant,
    ) -> Option<Msg> {
        if let (Some((id, _)), None) = (dialog, req.to.tag()) {
            // A retransmitted INVITE that replaced a dialog (transfer.rs).
            if self.absorb_replacing(tu, id, &req, src) {
                return None;
            }
        }
        match (dialog, req.to.tag()) {
            (Some((id, Side::Caller)), None) => {
                let call = self.calls.get(&id);
                let same = call.map(|c| c.uas.req.cseq.num == req.cseq.num);
                let done = call.map(|c| c.state == CallState::Done);
                if same == Some(true) || done == Some(false) {
                    // Retransmission: repeat the last response.
                    if let Some(bytes) = call.and_then(|c| c.uas.last_response.clone()) {
                        debug!(call_id = %req.call_id, "INVITE retransmission absorbed");
                        tu.send(src, bytes);
                    }
                    return None;
                }
                // A new INVITE reusing the Call-ID of a finished call.
                self.forget(tu, id);
            }
            (Some((_, Side::Callee)), None) => {
                warn!(call_id = %req.call_id, "INVITE loops back to us");
                tu.reply(&req, 482, src, |r| r);
                return None;
            }
            (Some((id, side)), Some(_)) => {
                self.on_reinvite(tu, id, side, req, src, now);
                return None;
            }
            (None, Some(_)) => {
                tu.reply(&req, 481, src, |r| r);
                return None;
            }
            (None, None) => {}
        }
        Some(req)
    }

    /// A new call from `req` (authenticated, answered 100, routed by the
    /// core to `target`; `max_forwards` is its Max-Forwards, > 0): the
    /// offer is checked (488 without one or with nothing usable), a relay
    /// slot reserved (503 when none is free) and programmed, and the
    /// INVITE sent to the callee with the offer pointed at slot leg 1.
    ///
    /// Each leg's kind comes from its party's SDP (RFC 8829, RFC 5763): a
    /// DTLS-SRTP offer makes the caller's leg WebRTC; `caller_webrtc`
    /// (the INVITE came over WS/WSS, RFC 7118) is kept as the caller's
    /// hint, for which its offer's profile wins. `target.webrtc` makes the
    /// callee's leg WebRTC until its answer says otherwise. A WebRTC leg
    /// with no DTLS certificate in the dataplane gets 488 with a Warning.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_call(
        &mut self,
        tu: &mut Tu<'_>,
        req: Msg,
        src: SocketAddr,
        target: Target,
        caller_webrtc: bool,
        max_forwards: u32,
        now: Instant,
    ) {
        if !req.has_sdp() {
            // Late offer (offer in the 2xx, answer in the ACK) is not
            // supported yet.
            tu.reply(&req, 488, src, |r| {
                r.header("Warning", "399 tern \"INVITE without SDP offer\"")
            });
            return;
        }
        let mut caller_leg = LegWebrtc::hinted(caller_webrtc);
        let offer = match sdp::parse_audio(req.body()).and_then(|o| {
            let restricted = sdp::restrict_offer(req.body())?;
            let w = sdp_webrtc::read(req.body())?;
            check_secure(tu, &w, target.webrtc)?;
            caller_leg.take(&w, Op::Offer, tu.rng)?;
            Ok((o, restricted))
        }) {
            Ok(o) => o,
            Err(e) => {
                info!(call_id = %req.call_id, error = %e, "unusable SDP offer");
                let code = warning_code(&e);
                tu.reply(&req, 488, src, |r| {
                    r.header("Warning", format!("{code} tern \"{e}\""))
                });
                return;
            }
        };
        let (offer, offer_body) = offer;
        let slot = match tu.relay.allocate() {
            Ok(s) => s,
            Err(RelayError::Full) => {
                tu.stats.no_slot += 1;
                warn!(call_id = %req.call_id, "no free relay slot");
                tu.reply(&req, 503, src, |r| r.header("Retry-After", "5"));
                return;
            }
            Err(e) => {
                warn!(call_id = %req.call_id, error = %e, "relay allocation failed");
                tu.reply(&req, 500, src, |r| r);
                return;
            }
        };
        tu.relay.set_call_id(slot, &req.call_id);
        let id = self.next_call;
        self.next_call += 1;
        let display =
            |d: &Option<String>| d.as_ref().map(|d| format!("\"{d}\" ")).unwrap_or_default();
        let callee_tag = rand_hex(tu.rng, 6);
        let callee = Dialog {
            role: Role::Uac,
            peer: target.dest,
            call_id: format!("{}@tern", rand_hex(tu.rng, 12)),
            local: format!(
                "{}<{}>;tag={callee_tag}",
                display(&req.from.display),
                req.from.uri
            ),
            local_tag: callee_tag,
            remote_tag: None,
            remote: format!("{}<{}>", display(&req.to.display), req.to.uri),
            target: target.uri.clone(),
            route: Vec::new(),
            local_cseq: 1,
            media: None,
            webrtc: LegWebrtc::hinted(target.webrtc),
        };
        let caller_tag = rand_hex(tu.rng, 6);
        let caller = Dialog::uas(&req, src, caller_tag, offer, caller_leg);
        let trying = tu.response(&req, 100, None, src).to_bytes();
        let (rel100, rseq) = prack::caller_support(tu, &req);
        let mut call = Call {
            id,
            state: CallState::Calling,
            slot: Some(slot),
            slot_tag: tern_shared::table::call_tag(&req.call_id),
            ssrc: [nonzero_ssrc(tu.rng), nonzero_ssrc(tu.rng)],
            media: Default::default(),
            dialogs: [caller, callee],
            uas: InviteServer {
                req,
                last_response: Some(trying),
                final_code: None,
                min_se: None,
            },
            uac: InviteClient {
                cseq: 1,
                branch: format!("z9hG4bK{}", rand_hex(tu.rng, 10)),
                ruri: target.uri.clone(),
                provisional: false,
                ack: None,
                fail_ack: None,
                cancel_pending: false,
                rseq: None,
                prack_cseq: None,
            },
            reinvite: None,
            update: None,
            infos: Vec::new(),
            session: None,
            sdp: [offer_body.clone(), Vec::new()],
            offer: offer_body,
            transfer: None,
            timer_c: None,
            linger: None,
            forking: None,
            rel: Rel100 {
                caller: rel100,
                rseq,
                ..Rel100::default()
            },
            moh: Default::default(),
        };
        call.callee_mut().webrtc.ensure_ice(tu.rng);
        if !program(tu, &call) {
            release_slot(tu, &mut call);
            let tag = call.caller().local_tag.clone();
            let r = tu.response(&call.uas.req, 500, Some(&tag), src).to_bytes();
            tu.send(src, r);
            return;
        }
        let offer = call.offer.clone();
        let body = match shape(tu, &mut call, Side::Callee, &offer, Op::Offer) {
            Ok(b) => b,
            Err(e) => {
                warn!(call_id = %call.call_id(), error = %e, "SDP rewrite failed");
                release_slot(tu, &mut call);
                let tag = call.caller().local_tag.clone();
                let r = tu.response(&call.uas.req, 488, Some(&tag), src).to_bytes();
                tu.send(src, r);
                return;
            }
        };
        let d = call.callee();
        let out = OutMsg::request(rsip::Method::Invite, &call.uac.ruri)
            .header("Via", our_via(tu, &call.uac.branch))
            .header("Max-Forwards", (max_forwards.min(256) - 1).to_string())
            .header("From", d.local.clone())
            .header("To", d.remote.clone())
            .header("Call-ID", d.call_id.clone())
            .header("CSeq", format!("{} INVITE", call.uac.cseq))
            .header("Contact", our_contact(tu))
            .header("Allow", ALLOW)
            .header("User-Agent", tu.cfg.user_agent.clone());
        let mut out = out;
        if let Some((name, value)) = call.rel.caller.offer_header() {
            out = out.header(name, value); // RFC 3262 §4
        }
        let invite = session::relay_request_headers(tu, &call.uas.req, out)
            .body("application/sdp", body)
            .to_bytes();
        tu.stats.calls += 1;
        info!(
            call_id = %call.call_id(),
            slot,
            b_call_id = %d.call_id,
            callee = %target.uri,
            dest = %target.dest,
            leg0 = call.leg_profile(Side::Caller),
            leg1 = call.leg_profile(Side::Callee),
            leg0_peer = ?call.caller().media.as_ref().and_then(|m| m.rtp),
            "call: INVITE relayed to the callee"
        );
        tu.send_retrans(RtKey::CalleeInvite(id), d.peer, invite, false, now);
        self.dialogs
            .insert(call.call_id().to_string(), (id, Side::Caller));
        self.dialogs
            .insert(call.callee().call_id.clone(), (id, Side::Callee));
        self.live.insert(id);
        self.calls.insert(id, Box::new(call));
    }

    /// A response from the callee to our INVITE.
    pub(crate) fn on_callee_invite_response(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        resp: &Msg,
        now: Instant,
    ) {
        self.with_call(id, |b2b, call| {
            b2b.callee_invite_response(tu, call, resp, now)
        });
    }

    pub(super) fn callee_invite_response(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        resp: &Msg,
        now: Instant,
    ) {
        let code = resp.code().unwrap_or(0);
        if resp.top_via().branch() != Some(call.uac.branch.as_str())
            || resp.cseq.num != call.uac.cseq
        {
            tu.stats.stray_responses += 1;
            return;
        }
        tu.stop_retrans(fork::invite_key(call));
        let reason = match &resp.start {
            Start::Response { reason, .. } if !reason.trim().is_empty() => Some(reason.clone()),
            _ => None,
        };
        match code {
            100..=199 => {
                call.uac.provisional = true;
                if call.uac.cancel_pending {
                    send_cancel(tu, call, now);
                }
                if !matches!(call.state, CallState::Calling | CallState::Proceeding) {
                    return;
                }
                call.state = CallState::Proceeding;
                let at = now + tu.cfg.timer_c;
                call.timer_c = Some(at);
                tu.schedule(at, TimerEv::TimerC(call.id));
                if code == 100 {
                    return;
                }
                if call.callee().remote_tag.is_none() {
                    call.callee_mut().remote_tag = resp.to.tag().map(str::to_string);
                }
                // RFC 3262: a reliable one is PRACKed (a repeat dropped).
                let Some(reliable) = prack::callee_provisional(tu, call, resp, now) else {
                    return;
                };
                // Early media (183 with SDP): leg 1 is programmed now, so
                // media flows through the slot before the 2xx.
                let sdp = if resp.has_sdp() {
                    apply_answer(tu, call, Side::Callee, resp.body())
                } else {
                    None
                };
                debug!(call_id = %call.call_id(), slot = ?call.slot, code, reliable, "provisional relayed");
                prack::relay_provisional(tu, call, code, reason.as_deref(), sdp, reliable, now);
            }
            200..=299 => match call.state {
                CallState::Calling | CallState::Proceeding => {
                    if prack::hold_final(call, resp) {
                        return;
                    }
                    let ruri = call.uac.ruri.clone();
                    let d = call.callee_mut();
                    d.remote_tag = resp.to.tag().map(str::to_string);
                    d.target = resp.contacts().first().map_or(ruri, |c| c.uri.clone());
                    d.route = resp.headers("Record-Route").map(str::to_string).collect();
                    d.route.reverse();
                    call.timer_c = None;
                    let sdp = if resp.has_sdp() {
                        apply_answer(tu, call, Side::Callee, resp.body())
                    } else {
                        None
                    };
                    let sdp = prack::final_sdp(call, sdp);
                    if sdp.is_none() && !call.rel.answered {
                        warn!(call_id = %call.call_id(), "2xx without SDP answer");
                    }
                    let se = session::negotiate(&call.uas.req, resp);
                    session::arm(tu, call, se, now);
                    tu.stats.calls_answered += 1;
                    info!(call_id = %call.call_id(), slot = ?call.slot, leg1_peer = ?call.callee().media.as_ref().and_then(|m| m.rtp), "call answered");
                    call.state = CallState::Answered;
                    respond_caller(tu, call, code, reason.as_deref(), sdp, now);
                }
                CallState::Answered | CallState::Confirmed => {
                    if let Some(ack) = call.uac.ack.clone() {
                        tu.send(call.callee().peer, ack);
                    }
                }
                CallState::Cancelling | CallState::Terminating | CallState::Done => {
                    // 2xx after CANCEL or after giving up: ACK, then BYE (§15).
                    if let Some(ack) = call.uac.ack.clone() {
                        tu.send(call.callee().peer, ack);
                        return;
                    }
                    let ruri = call.uac.ruri.clone();
                    let d = call.callee_mut();
                    d.remote_tag = resp.to.tag().map(str::to_string);
                    d.target = resp.contacts().first().map_or(ruri, |c| c.uri.clone());
                    send_callee_ack(tu, call);
                    send_bye(tu, call, Side::Callee, now);
                    call.state = CallState::Terminating;
                    release_slot(tu, call);
                }
            },
            _ => {
                let dest = call.callee().peer;
                if let Some(ack) = call.uac.fail_ack.clone() {
                    // Retransmitted final: ACK again.
                    tu.send(dest, ack);
                    return;
                }
                let ack = callee_failure_ack(tu, call, resp);
                tu.send(dest, ack.clone());
                call.uac.fail_ack = Some(ack);
                if self.trunk_retry(tu, call, Some(resp), now) {
                    return;
                }
                if code == 422 {
                    // RFC 4028 §6: the caller retries with this Min-SE.
                    let min = resp.header("Min-SE").and_then(parse_min_se);
                    call.uas.min_se = Some(min.unwrap_or(0).max(tu.cfg.min_se));
                }
                match call.state {
                    CallState::Calling | CallState::Proceeding => {
                        info!(call_id = %call.call_id(), slot = ?call.slot, code, "callee refused the call");
                        respond_caller(tu, call, code, reason.as_deref(), None, now);
                        self.finish(tu, call, now);
                    }
                    CallState::Cancelling => self.finish(tu, call, now),
                    _ => {}
                }
            }
        }
    }

    /// An ACK from the caller for our final response to its INVITE: for
    /// the 2xx, the callee's 2xx is ACKed and the call is up.
    pub(crate) fn on_caller_ack(&mut self, tu: &mut Tu<'_>, id: u64) {
        self.with_call(id, |_, call| match call.state {
            CallState::Answered => {
                tu.stop_retrans(RtKey::CallerFinal(call.id));
                send_callee_ack(tu, call);
                call.state = CallState::Confirmed;
                info!(call_id = %call.call_id(), slot = ?call.slot, "call confirmed");
            }
            _ => {
                if call.uas.final_code.is_some_and(|c| c >= 300) {
                    tu.stop_retrans(RtKey::CallerFinal(call.id));
                }
            }
        });
    }

    /// Timer C `at` of call `id` fired (RFC 3261 §16.6 step 11): a callee
    /// still ringing is CANCELled and the caller gets 408.
    pub(crate) fn on_timer_c(&mut self, tu: &mut Tu<'_>, id: u64, at: Instant, now: Instant) {
        self.with_call(id, |b2b, call| {
            if call.timer_c != Some(at) || call.state != CallState::Proceeding {
                return;
            }
            info!(call_id = %call.call_id(), slot = ?call.slot, "no final response from the callee (timer C)");
            call.timer_c = None;
            send_cancel(tu, call, now);
            fork::cancel_others(tu, call, now);
            respond_caller(tu, call, 408, None, None, now);
            release_slot(tu, call);
            call.state = CallState::Cancelling;
            let at = now + tu.cfg.t1 * 66;
            b2b.set_linger(tu, call, at);
        });
    }
}
