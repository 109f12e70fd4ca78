//! Call transfer: REFER (RFC 3515) in a call's dialog, with the
//! referrer's implicit subscription NOTIFYed in `message/sipfrag`
//! (RFC 3420), blind or attended (RFC 3891 Replaces, RFC 5589).
//!
//! The party of dialog `from` REFERs the other party (the transferee)
//! to a target. tern answers 202, NOTIFYs `SIP/2.0 100 Trying`
//! (`Subscription-State: active`), and offers the target the
//! transferee's latest SDP pointed at the slot leg that faced the
//! referrer: that leg changes hands, so the transferee's view (the
//! other leg) does not change and it gets no re-INVITE. The target is
//! reached with
//! - a new INVITE (blind: `Refer-To` names a user, looked up like a new
//!   call's, with `Referred-By`), or
//! - a re-INVITE in tern's dialog with it in another call (attended:
//!   `Refer-To` carries `?Replaces=` naming the referrer's dialog with
//!   tern on that call; tern joins the two calls itself).
//!
//! ```text
//! alice ─ tern ─ bob            REFER (Refer-To: carol) ◀── bob
//!                               202, NOTIFY 100 ──▶ bob
//!                 INVITE (alice's SDP → bob's slot leg) ──▶ carol
//!                 ◀── 200 ; ACK ──▶ ; slot leg reprogrammed to carol
//!                               NOTIFY 200 (terminated) ──▶ bob
//!                               BYE ──▶ bob after REFERRER_BYE_AFTER
//! ```
//!
//! The target's 2xx swaps its dialog into the call in place of the
//! referrer's, which the transfer keeps (indexed in `B2bua::transfers`)
//! for the final NOTIFY and our BYE; the referrer may BYE first
//! (RFC 5589 §6.1 allows either). A failure from the target is NOTIFYed
//! with its status (`terminated`) and the call goes on as before
//! (the referrer may retrieve it), unless the referrer hung up
//! meanwhile: then the transferee gets BYE. In the attended case the
//! consultation call ends once the target answers: BYE to the
//! referrer's dialog there, its slot freed.
//!
//! Not done here: transfer to a `[[routes]]` trunk target, NOTIFYs for
//! provisional responses, and re-INVITE of the transferee when the
//! target's codec differs from the one the transferee negotiated.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::call::{Call, CallState, InviteClient, Target, Transfer};
use super::dialog::{Dialog, Role, Side};
use super::media::{apply_answer, program, release_slot, shape, warning_code, LegWebrtc, Op};
use super::send::{new_branch, our_contact, our_via, rand_hex, send_bye};
use super::B2bua;
use crate::build::OutMsg;
use crate::method::ALLOW;
use crate::msg::{Msg, NameAddr, Start};
use crate::refer::ReferTo;
use crate::retransmit::{RtKey, TimerEv};
use crate::sdp;
use crate::tu::Tu;

/// How long after the final NOTIFY of a successful transfer the
/// referrer may hang up itself before tern sends it BYE (RFC 5589 §6.1).
pub const REFERRER_BYE_AFTER: Duration = Duration::from_secs(2);

/// The `expires` of the implicit subscription while a transfer runs,
/// seconds (RFC 3515 §2.4.4 lets the notifier choose).
const SUBSCRIPTION_SECS: u32 = 60;

/// Where the core resolved a REFER's `Refer-To` (`refer_route.rs`).
#[derive(Debug)]
pub(crate) enum Referred {
    /// A registered contact of a local user (blind transfer).
    Contact(Target),
    /// A dialog tern holds, named by the embedded Replaces (attended):
    /// the call and the side of it that is the referrer's dialog.
    Dialog(u64, Side),
}

/// `addr` (a From/To value) without its `tag` parameter.
fn strip_tag(addr: &str) -> String {
    match NameAddr::parse(addr) {
        Some(mut na) => {
            na.params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
            na.to_string()
        }
        None => addr.to_string(),
    }
}

/// The reason phrase of a response (`"OK"` when it has none).
fn reason_of(resp: &Msg) -> String {
    match &resp.start {
        Start::Response { reason, .. } if !reason.trim().is_empty() => reason.trim().to_string(),
        _ => "OK".to_string(),
    }
}

/// Sends (and retransmits) a NOTIFY of `code reason` to the referrer of
/// `t` (RFC 3515 §2.4.4-5): `Event: refer;id=<REFER CSeq>`, a
/// `message/sipfrag` status line, `active` until a final status, then
/// `terminated;reason=noresource`.
fn notify(
    tu: &mut Tu<'_>,
    call: &mut Call,
    t: &mut Transfer,
    code: u16,
    reason: &str,
    now: Instant,
) {
    if t.referrer_gone {
        return;
    }
    let d = if t.swapped {
        &mut t.other
    } else {
        call.dialog_mut(t.from)
    };
    let cseq = d.next_cseq();
    let branch = new_branch(tu.rng);
    let state = if code >= 200 {
        "terminated;reason=noresource".to_string()
    } else {
        format!("active;expires={SUBSCRIPTION_SECS}")
    };
    let bytes = d
        .request(
            rsip::Method::Notify,
            cseq,
            our_via(tu, &branch),
            &tu.cfg.user_agent,
        )
        .header("Contact", our_contact(tu))
        .header("Event", format!("refer;id={}", t.refer_cseq))
        .header("Subscription-State", state)
        .body(
            "message/sipfrag;version=2.0",
            format!("SIP/2.0 {code} {reason}\r\n").into_bytes(),
        )
        .to_bytes();
    let dest = d.peer;
    t.notify_cseq = cseq;
    tu.send_retrans(RtKey::Notify(call.id), dest, bytes, true, now);
}

/// Sends a BYE into the transfer's extra dialog `t.other` (the old
/// referrer's, or a target the call no longer needs).
fn bye_other(tu: &mut Tu<'_>, id: u64, t: &mut Transfer, now: Instant) {
    let branch = new_branch(tu.rng);
    let d = &mut t.other;
    let cseq = d.next_cseq();
    let bytes = d
        .request(
            rsip::Method::Bye,
            cseq,
            our_via(tu, &branch),
            &tu.cfg.user_agent,
        )
        .to_bytes();
    tu.send_retrans(RtKey::TransferEnd(id), d.peer, bytes, true, now);
}

/// Whether transfer `t` still runs: the target has not answered, or
/// the referrer's old dialog is not over yet.
fn busy(t: &Transfer) -> bool {
    t.final_code.is_none() || (t.swapped && !t.referrer_gone)
}

impl B2bua {
    /// Whether `call_id` names a dialog a transfer holds (a target's
    /// before its answer, a referrer's after it).
    pub(crate) fn holds_transfer_dialog(&self, call_id: &str) -> bool {
        self.transfers.contains_key(call_id)
    }

    /// The dialog of a call, by Call-ID and its two tags in either order
    /// (RFC 3891 §3: a Replaces names a dialog by Call-ID, to-tag and
    /// from-tag): the call and the side.
    pub(crate) fn find_dialog(
        &self,
        call_id: &str,
        tag_a: &str,
        tag_b: &str,
    ) -> Option<(u64, Side)> {
        let (id, side) = self.dialogs.get(call_id).copied()?;
        let d = self.calls.get(&id)?.dialog(side);
        let remote = d.remote_tag.as_deref()?;
        let local = d.local_tag.as_str();
        ((local == tag_a && remote == tag_b) || (local == tag_b && remote == tag_a))
            .then_some((id, side))
    }

    /// A REFER from dialog `side` of call `id` whose `Refer-To`
    /// (`refer_to`) the core resolved to `to`: a retransmission gets our
    /// response again; a call not up, or one with an offer or a transfer
    /// in progress, gets 491; an SDP we cannot shape 488. Else 202, the
    /// first NOTIFY, and the (re-)INVITE to the target.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_refer(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: &Msg,
        src: SocketAddr,
        refer_to: &ReferTo,
        to: Referred,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            tu.reply(req, 481, src, |r| r);
            return;
        };
        self.refer_in(tu, &mut call, side, req, src, refer_to, to, now);
        self.calls.insert(id, call);
    }

    #[allow(clippy::too_many_arguments)]
    fn refer_in(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        side: Side,
        req: &Msg,
        src: SocketAddr,
        refer_to: &ReferTo,
        to: Referred,
        now: Instant,
    ) {
        if let Some(t) = &call.transfer {
            if t.from == side && t.refer_cseq == req.cseq.num && !t.refer_response.is_empty() {
                tu.send(src, t.refer_response.clone());
                return;
            }
        }
        let offering = call
            .reinvite
            .as_ref()
            .is_some_and(|r| r.final_code.is_none())
            || call.update.as_ref().is_some_and(|u| u.final_code.is_none());
        if call.state != CallState::Confirmed
            || offering
            || call.transfer.as_deref().is_some_and(busy)
        {
            tu.reply(req, 491, src, |r| r.header("Retry-After", "2"));
            return;
        }
        // The target's dialog: new (blind) or the one tern has with it
        // in the consultation call (attended).
        let (mut other, uac, replaces) = match to {
            Referred::Contact(target) => {
                let tag = rand_hex(tu.rng, 6);
                let who = strip_tag(&call.dialog(side.other()).remote);
                let d = Dialog {
                    role: Role::Uac,
                    peer: target.dest,
                    call_id: format!("{}@tern", rand_hex(tu.rng, 12)),
                    local: format!("{who};tag={tag}"),
                    local_tag: tag,
                    remote_tag: None,
                    remote: format!("<{}>", refer_to.uri),
                    target: target.uri.clone(),
                    route: Vec::new(),
                    local_cseq: 1,
                    media: None,
                    webrtc: LegWebrtc::hinted(target.webrtc),
                };
                let uac = InviteClient {
                    cseq: 1,
                    branch: new_branch(tu.rng),
                    ruri: target.uri,
                    provisional: false,
                    ack: None,
                    fail_ack: None,
                    cancel_pending: false,
                    rseq: None,
                    prack_cseq: None,
                };
                (d, uac, None)
            }
            Referred::Dialog(id2, referrer2) => {
                let consult = self.calls.get(&id2).filter(|c| {
                    id2 != call.id
                        && c.state == CallState::Confirmed
                        && !c.transfer.as_deref().is_some_and(busy)
                });
                let Some(c2) = consult else {
                    tu.reply(req, 491, src, |r| r.header("Retry-After", "2"));
                    return;
                };
                let mut d = c2.dialog(referrer2.other()).clone();
                let cseq = d.next_cseq();
                let uac = InviteClient {
                    cseq,
                    branch: new_branch(tu.rng),
                    ruri: d.target.clone(),
                    provisional: false,
                    ack: None,
                    fail_ack: None,
                    cancel_pending: false,
                    rseq: None,
                    prack_cseq: None,
                };
                (d, uac, Some((id2, referrer2)))
            }
        };
        // The transferee's SDP, pointed at the leg that faced the
        // referrer and laid out for the target's kind.
        let sdp = call.sdp[side.other().leg()].clone();
        let referrer_webrtc =
            std::mem::replace(&mut call.dialog_mut(side).webrtc, other.webrtc.clone());
        let body = shape(tu, call, side, &sdp, Op::Offer);
        other.webrtc = std::mem::replace(&mut call.dialog_mut(side).webrtc, referrer_webrtc);
        let body = match body {
            Ok(b) if !sdp.is_empty() => b,
            _ => {
                tu.reply(req, 488, src, |r| r);
                return;
            }
        };
        let accepted = tu
            .response(req, 202, None, src)
            .header("Contact", our_contact(tu))
            .to_bytes();
        tu.send(src, accepted.clone());
        tu.stats.transfers += 1;
        let mut t = Transfer {
            from: side,
            other,
            swapped: false,
            uac,
            replaces: replaces.map(|r| r.0),
            refer_cseq: req.cseq.num,
            refer_response: accepted,
            notify_cseq: 0,
            final_code: None,
            prev_offer: std::mem::replace(&mut call.offer, sdp),
            referrer_gone: false,
            bye_at: None,
            replaced_by: None,
        };
        if let Some(old) = call.transfer.take() {
            self.transfers.remove(&old.other.call_id);
        }
        notify(tu, call, &mut t, 100, "Trying", now);
        let d = &t.other;
        let out = match replaces {
            None => {
                let referred_by = req
                    .header("Referred-By")
                    .map(str::to_string)
                    .unwrap_or_else(|| strip_tag(req.header("From").unwrap_or_default()));
                OutMsg::request(rsip::Method::Invite, &t.uac.ruri)
                    .header("Via", our_via(tu, &t.uac.branch))
                    .header("Max-Forwards", "70")
                    .header("From", d.local.clone())
                    .header("To", d.remote.clone())
                    .header("Call-ID", d.call_id.clone())
                    .header("CSeq", format!("{} INVITE", t.uac.cseq))
                    .header("User-Agent", tu.cfg.user_agent.clone())
                    .header("Referred-By", referred_by)
            }
            Some(_) => d.request(
                rsip::Method::Invite,
                t.uac.cseq,
                our_via(tu, &t.uac.branch),
                &tu.cfg.user_agent,
            ),
        };
        let invite = out
            .header("Contact", our_contact(tu))
            .header("Allow", ALLOW)
            .body("application/sdp", body)
            .to_bytes();
        info!(call_id = %call.call_id(), slot = ?call.slot, ?side, target = %refer_to.uri, attended = replaces.is_some(), "REFER: transfer to the target");
        tu.send_retrans(RtKey::TransferInvite(call.id), d.peer, invite, false, now);
        if let Some((id2, referrer2)) = replaces {
            // The target's dialog answers to this call until it is done.
            debug!(
                consult = id2,
                ?referrer2,
                "attended transfer joins two calls"
            );
            self.dialogs.remove(&d.call_id);
        }
        self.transfers.insert(d.call_id.clone(), call.id);
        call.transfer = Some(Box::new(t));
    }

    /// Whether `resp`, in dialog `side` of call `id`, answers a request
    /// of the call's transfer: a NOTIFY to the referrer, or the target's
    /// INVITE (a retransmitted 2xx after the swap).
    pub(super) fn is_transfer_response(&self, id: u64, side: Side, resp: &Msg) -> bool {
        let Some(t) = self.calls.get(&id).and_then(|c| c.transfer.as_deref()) else {
            return false;
        };
        match resp.cseq.method.as_str() {
            "NOTIFY" => t.from == side,
            "INVITE" => resp.top_via().branch() == Some(t.uac.branch.as_str()),
            _ => false,
        }
    }

    /// A response in a transfer of call `id`: to our NOTIFY, to our BYE
    /// or CANCEL of the extra dialog, or to the target's INVITE.
    pub(super) fn on_transfer_response(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        resp: &Msg,
        now: Instant,
    ) {
        self.with_call(id, |b2b, call| {
            let Some(mut t) = call.transfer.take() else {
                return;
            };
            match resp.cseq.method.as_str() {
                "NOTIFY" if resp.cseq.num == t.notify_cseq => {
                    tu.stop_retrans(RtKey::Notify(id));
                }
                "BYE" | "CANCEL" if resp.code().is_some_and(|c| c >= 200) => {
                    if tu.stop_retrans(RtKey::TransferEnd(id)) && t.swapped {
                        t.referrer_gone = true;
                    }
                }
                "INVITE" if resp.top_via().branch() == Some(t.uac.branch.as_str()) => {
                    b2b.target_response(tu, call, &mut t, resp, now);
                }
                _ => tu.stats.stray_responses += 1,
            }
            call.transfer = Some(t);
        });
    }

    /// The target's response to our (re-)INVITE.
    fn target_response(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        t: &mut Transfer,
        resp: &Msg,
        now: Instant,
    ) {
        let code = resp.code().unwrap_or(0);
        tu.stop_retrans(RtKey::TransferInvite(call.id));
        if code < 200 {
            t.uac.provisional = true;
            return;
        }
        // A retransmitted final: our ACK again.
        if let Some(ack) = t.uac.ack.clone().or_else(|| t.uac.fail_ack.clone()) {
            let dest = if t.swapped {
                call.dialog(t.from).peer
            } else {
                t.other.peer
            };
            tu.send(dest, ack);
            return;
        }
        if code >= 300 {
            let d = &t.other;
            let ack = OutMsg::request(rsip::Method::Ack, &t.uac.ruri)
                .header("Via", our_via(tu, &t.uac.branch))
                .header("Max-Forwards", "70")
                .header("From", d.local.clone())
                .header("To", resp.header("To").unwrap_or_default().to_string())
                .header("Call-ID", d.call_id.clone())
                .header("CSeq", format!("{} ACK", t.uac.cseq))
                .to_bytes();
            tu.send(d.peer, ack.clone());
            t.uac.fail_ack = Some(ack);
            if t.final_code.is_none() {
                self.transfer_failed(tu, call, t, code, &reason_of(resp), now);
            }
            return;
        }
        let d = &mut t.other;
        if d.remote_tag.is_none() {
            d.remote_tag = resp.to.tag().map(str::to_string);
        }
        if let Some(c) = resp.contacts().first() {
            d.target = c.uri.clone();
        }
        if t.replaces.is_none() {
            d.route = resp.headers("Record-Route").map(str::to_string).collect();
            d.route.reverse();
        }
        let branch = new_branch(tu.rng);
        let ack = d
            .request(
                rsip::Method::Ack,
                t.uac.cseq,
                our_via(tu, &branch),
                &tu.cfg.user_agent,
            )
            .to_bytes();
        tu.send(d.peer, ack.clone());
        t.uac.ack = Some(ack);
        if t.final_code.is_some() || call.state != CallState::Confirmed {
            // The call ended (or the transfer was given up) meanwhile.
            if t.replaces.is_none() {
                bye_other(tu, call.id, t, now);
            }
            return;
        }
        t.final_code = Some(code);
        t.swapped = true;
        let from = t.from;
        std::mem::swap(call.dialog_mut(from), &mut t.other);
        let (new_id, old_id) = (call.dialog(from).call_id.clone(), t.other.call_id.clone());
        self.transfers.remove(&new_id);
        self.dialogs.insert(new_id, (call.id, from));
        if self.dialogs.get(&old_id).is_some_and(|e| e.0 == call.id) {
            self.dialogs.remove(&old_id);
        }
        self.transfers.insert(old_id, call.id);
        // The target's answer programs the leg that faced the referrer;
        // the transferee's view of the slot is unchanged.
        if resp.has_sdp() {
            let _ = apply_answer(tu, call, from, resp.body());
        }
        info!(call_id = %call.call_id(), slot = ?call.slot, ?from, peer = ?call.dialog(from).media.as_ref().and_then(|m| m.rtp), "transfer: target answered, slot leg re-anchored");
        if let Some(id2) = t.replaces {
            self.end_consultation(tu, id2, now);
        }
        notify(tu, call, t, code, &reason_of(resp), now);
        if !t.referrer_gone {
            let at = now + REFERRER_BYE_AFTER;
            t.bye_at = Some(at);
            tu.schedule(at, TimerEv::TransferBye(call.id));
        }
    }

    /// The transfer failed with `code`: NOTIFYed, the call as it was (the
    /// target's dialog back in the consultation call, for an attended
    /// one); a referrer that hung up leaves the transferee alone: BYE.
    fn transfer_failed(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        t: &mut Transfer,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        info!(call_id = %call.call_id(), slot = ?call.slot, code, "transfer failed");
        tu.stats.transfers_failed += 1;
        t.final_code = Some(code);
        call.offer = std::mem::take(&mut t.prev_offer);
        self.give_back_target(t);
        notify(tu, call, t, code, reason, now);
        if t.referrer_gone && call.state == CallState::Confirmed {
            send_bye(tu, call, t.from.other(), now);
            release_slot(tu, call);
            call.state = CallState::Terminating;
            let at = now + tu.cfg.t1 * 66;
            self.set_linger(tu, call, at);
        }
    }

    /// The target's dialog of a transfer that did not happen goes out of
    /// the transfer index; an attended one's goes back to its
    /// consultation call, with the CSeq our re-INVITE used.
    fn give_back_target(&mut self, t: &Transfer) {
        self.transfers.remove(&t.other.call_id);
        let Some(id2) = t.replaces else {
            return;
        };
        let Some(c2) = self.calls.get_mut(&id2) else {
            return;
        };
        let cid = &t.other.call_id;
        if let Some(side2) = [Side::Caller, Side::Callee]
            .into_iter()
            .find(|s| &c2.dialog(*s).call_id == cid)
        {
            c2.dialog_mut(side2).local_cseq = t.other.local_cseq;
            self.dialogs.insert(cid.clone(), (id2, side2));
        }
    }

    /// An attended transfer joined consultation call `id2`'s target into
    /// another call: the referrer's dialog there gets BYE, its slot goes.
    fn end_consultation(&mut self, tu: &mut Tu<'_>, id2: u64, now: Instant) {
        self.with_call(id2, |b2b, c2| {
            if c2.state != CallState::Confirmed {
                return;
            }
            let referrer = [Side::Caller, Side::Callee]
                .into_iter()
                .find(|s| b2b.dialogs.get(&c2.dialog(*s).call_id) == Some(&(id2, *s)));
            if let Some(side) = referrer {
                send_bye(tu, c2, side, now);
            }
            release_slot(tu, c2);
            c2.state = CallState::Terminating;
            info!(call_id = %c2.call_id(), "consultation call ended by the attended transfer");
            let at = now + tu.cfg.t1 * 66;
            b2b.set_linger(tu, c2, at);
        });
    }

    /// Our INVITE to the target got no answer (timer B): a 408 failure.
    pub(super) fn on_transfer_timeout(&mut self, tu: &mut Tu<'_>, id: u64, now: Instant) {
        self.with_call(id, |b2b, call| {
            let Some(mut t) = call.transfer.take() else {
                return;
            };
            if t.final_code.is_none() {
                b2b.transfer_failed(tu, call, &mut t, 408, "Request Timeout", now);
            }
            call.transfer = Some(t);
        });
    }

    /// A BYE from dialog `side` of call `id` while its transfer waits for
    /// the target: the referrer may hang up after 202 (RFC 5589 §6.1):
    /// answered 200, no more NOTIFYs, and the call waits for the target.
    /// `false` when the BYE is not the referrer's (the call ends).
    pub(super) fn referrer_hangs_up(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        req: &Msg,
        src: SocketAddr,
    ) -> bool {
        let Some(t) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.transfer.as_deref_mut())
        else {
            return false;
        };
        if t.swapped || t.final_code.is_some() || t.from != side {
            return false;
        }
        info!(call_id = %req.call_id, "referrer hung up before the transfer target answered");
        tu.reply(req, 200, src, |r| r);
        t.referrer_gone = true;
        tu.stop_retrans(RtKey::Notify(id));
        true
    }

    /// The call ends while its transfer waits for the target: the
    /// target's INVITE is CANCELled once it had a provisional response
    /// (else its 2xx, if any, gets ACK and BYE).
    pub(super) fn abort_transfer(&mut self, tu: &mut Tu<'_>, call: &mut Call, now: Instant) {
        let Some(t) = call.transfer.as_deref_mut() else {
            return;
        };
        if t.final_code.is_some() {
            return;
        }
        t.final_code = Some(487);
        tu.stop_retrans(RtKey::TransferInvite(call.id));
        if t.replaces.is_some() {
            // The consultation call keeps its target (its answer to our
            // re-INVITE, if any, reaches that call as a stray).
            self.give_back_target(t);
            return;
        }
        if t.uac.provisional {
            // §9.1: the INVITE's To, without the target's tag.
            let d = &t.other;
            let to = d.remote.clone();
            let cancel = OutMsg::request(rsip::Method::Cancel, &t.uac.ruri)
                .header("Via", our_via(tu, &t.uac.branch))
                .header("Max-Forwards", "70")
                .header("From", d.local.clone())
                .header("To", to)
                .header("Call-ID", d.call_id.clone())
                .header("CSeq", format!("{} CANCEL", t.uac.cseq))
                .to_bytes();
            tu.send_retrans(RtKey::TransferEnd(call.id), d.peer, cancel, true, now);
        }
    }

    /// The BYE of a transferred call's referrer is due (`at`): unless it
    /// hung up first, it gets ours.
    pub(crate) fn on_transfer_bye_due(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        at: Instant,
        now: Instant,
    ) {
        let Some(t) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.transfer.as_deref_mut())
        else {
            return;
        };
        if t.bye_at != Some(at) || !t.swapped || t.referrer_gone {
            return;
        }
        t.bye_at = None;
        info!(call_id = %t.other.call_id, "transfer done: BYE to the referrer");
        bye_other(tu, id, t, now);
    }

    /// A request in a dialog a transfer holds: the old referrer's BYE
    /// (200; our own BYE is then not sent), anything else 481.
    pub(crate) fn on_transfer_request(
        &mut self,
        tu: &mut Tu<'_>,
        req: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let _ = now;
        let Some(&id) = self.transfers.get(&req.call_id) else {
            tu.reply(req, 481, src, |r| r);
            return;
        };
        let t = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.transfer.as_deref_mut());
        let Some(t) = t.filter(|t| req.to.tag().is_some() && t.other.matches(req)) else {
            tu.reply(req, 481, src, |r| r);
            return;
        };
        match req.method() {
            Some("ACK") => {}
            Some("BYE") => {
                tu.reply(req, 200, src, |r| r);
                if t.swapped {
                    t.referrer_gone = true;
                    t.bye_at = None;
                    tu.stop_retrans(RtKey::TransferEnd(id));
                    tu.stop_retrans(RtKey::Notify(id));
                }
            }
            _ => tu.reply(req, 481, src, |r| r),
        }
    }
}

impl B2bua {
    /// A new INVITE whose `Replaces` (RFC 3891 §3) named dialog `side`
    /// of call `id` (found by the core): it takes that dialog's place.
    /// The call must be up (an early dialog, or one with an offer or a
    /// transfer under way, is not replaced: 481, 491), `early_only`
    /// refuses a confirmed one (486), and the INVITE must offer SDP
    /// (488). Then the new party's offer programs the slot leg the old
    /// party faced, it is answered 200 with the other party's media
    /// pointed at that leg (the other party's view is unchanged: no
    /// re-INVITE), and the replaced dialog gets BYE.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_replacing_invite(
        &mut self,
        tu: &mut Tu<'_>,
        req: Msg,
        src: SocketAddr,
        id: u64,
        side: Side,
        early_only: bool,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            tu.reply(&req, 481, src, |r| r);
            return;
        };
        self.replace_in(tu, &mut call, req, src, side, early_only, now);
        self.calls.insert(id, call);
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_in(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        req: Msg,
        src: SocketAddr,
        side: Side,
        early_only: bool,
        now: Instant,
    ) {
        if call.state != CallState::Confirmed {
            tu.reply(&req, 481, src, |r| r);
            return;
        }
        if early_only {
            tu.reply(&req, 486, src, |r| r);
            return;
        }
        let offering = call
            .reinvite
            .as_ref()
            .is_some_and(|r| r.final_code.is_none())
            || call.update.as_ref().is_some_and(|u| u.final_code.is_none());
        if offering || call.transfer.as_deref().is_some_and(busy) {
            tu.reply(&req, 491, src, |r| r.header("Retry-After", "2"));
            return;
        }
        let offer =
            sdp::parse_audio(req.body()).and_then(|o| Ok((o, sdp::restrict_offer(req.body())?)));
        let (media, restricted) = match offer {
            Ok(o) if req.has_sdp() => o,
            Ok(_) => {
                tu.reply(&req, 488, src, |r| r);
                return;
            }
            Err(e) => {
                let code = warning_code(&e);
                tu.reply(&req, 488, src, |r| {
                    r.header("Warning", format!("{code} tern \"{e}\""))
                });
                return;
            }
        };
        let other_sdp = call.sdp[side.other().leg()].clone();
        let answer = sdp::answer_in_offer_order(&restricted, &other_sdp).unwrap_or(other_sdp);
        let tag = rand_hex(tu.rng, 6);
        let new = Dialog::uas(&req, src, tag.clone(), media, LegWebrtc::default());
        let old = std::mem::replace(call.dialog_mut(side), new);
        let (old_sdp, old_offer) = (call.sdp[side.leg()].clone(), call.offer.clone());
        call.sdp[side.leg()] = restricted.clone();
        call.offer = restricted;
        let body = if program(tu, call) {
            shape(tu, call, side, &answer, Op::Answer).ok()
        } else {
            None
        };
        let Some(body) = body else {
            // Nothing changed for the call.
            *call.dialog_mut(side) = old;
            call.sdp[side.leg()] = old_sdp;
            call.offer = old_offer;
            program(tu, call);
            tu.reply(&req, 488, src, |r| r);
            return;
        };
        let mut r = tu
            .response(&req, 200, Some(&tag), src)
            .header("Contact", our_contact(tu))
            .header("Allow", ALLOW);
        for rr in req.headers("Record-Route") {
            r.push("Record-Route", rr.to_string());
        }
        let ok = r.body("application/sdp", body).to_bytes();
        tu.send_retrans(RtKey::ReplacesFinal(call.id), src, ok.clone(), true, now);
        tu.stats.transfers += 1;
        info!(call_id = %call.call_id(), slot = ?call.slot, ?side, replaced = %old.call_id, "INVITE with Replaces took the dialog's place (RFC 3891)");
        self.dialogs.insert(req.call_id.clone(), (call.id, side));
        if self
            .dialogs
            .get(&old.call_id)
            .is_some_and(|e| e.0 == call.id)
        {
            self.dialogs.remove(&old.call_id);
        }
        if let Some(prev) = call.transfer.take() {
            self.transfers.remove(&prev.other.call_id);
        }
        let mut t = Transfer {
            from: side,
            other: old,
            swapped: true,
            uac: InviteClient {
                cseq: 0,
                branch: new_branch(tu.rng),
                ruri: String::new(),
                provisional: false,
                ack: None,
                fail_ack: None,
                cancel_pending: false,
                rseq: None,
                prack_cseq: None,
            },
            replaces: None,
            refer_cseq: 0,
            refer_response: Vec::new(),
            notify_cseq: 0,
            final_code: Some(200),
            prev_offer: Vec::new(),
            referrer_gone: true,
            bye_at: None,
            replaced_by: Some((req.cseq.num, ok)),
        };
        bye_other(tu, call.id, &mut t, now);
        self.transfers.insert(t.other.call_id.clone(), call.id);
        call.transfer = Some(Box::new(t));
    }

    /// A retransmission of the INVITE that replaced a dialog of call
    /// `id`: our 2xx again. `false` when `req` is not one.
    pub(super) fn absorb_replacing(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        req: &Msg,
        src: SocketAddr,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(t) = call.transfer.as_deref() else {
            return false;
        };
        match &t.replaced_by {
            Some((cseq, ok))
                if *cseq == req.cseq.num && call.dialog(t.from).call_id == req.call_id =>
            {
                tu.send(src, ok.clone());
                true
            }
            _ => false,
        }
    }

    /// Whether `ack` (dialog `side` of call `id`) acknowledges our 2xx
    /// to a replacing INVITE; if so, that 2xx is no longer resent.
    pub(super) fn on_replacing_ack(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        side: Side,
        ack: &Msg,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let ours = call.transfer.as_deref().is_some_and(|t| {
            t.from == side
                && call.dialog(side).call_id == ack.call_id
                && t.replaced_by
                    .as_ref()
                    .is_some_and(|(c, _)| *c == ack.cseq.num)
        });
        if ours {
            tu.stop_retrans(RtKey::ReplacesFinal(id));
        }
        ours
    }
}
