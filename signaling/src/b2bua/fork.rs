//! Parallel forking (RFC 3261 §16.7, as a B2BUA): an INVITE for a user
//! with several registered contacts rings all of them.
//!
//! Each contact gets its own outgoing dialog: its own Call-ID, From tag
//! and branch (a B2BUA is the UAC of every fork, so the forks are
//! separate dialogs rather than branches of one transaction). The
//! call's callee dialog (`Call::dialogs[1]`) and `Call::uac` hold the
//! *primary* fork; the others wait in [`Forking::others`]. A response
//! from another fork that matters to the caller (a provisional, a 2xx
//! while nobody won) swaps that fork in as the primary, so the rest of
//! the B2BUA (early media, the 2xx, ACK, BYE, re-INVITE) sees one callee
//! dialog as before:
//!
//! - early media comes from whichever fork sent the latest 18x with SDP:
//!   the slot's callee leg is programmed from it;
//! - the first 2xx wins: the other forks get CANCEL (or once they send
//!   a provisional); a late 2xx from another fork gets ACK then BYE in
//!   its own dialog;
//! - failures are ACKed and held; when every fork failed the caller gets
//!   the best one (§16.7.6: the lowest 6xx, else from the lowest class,
//!   408 for forks that never answered, 503 passed as 500).
//!
//! Forking is to plain RTP contacts only: a WebRTC (WS/WSS) contact is
//! not added as an extra fork, nor are extra forks added when the first
//! contact is WebRTC (the forks share the one offer sent to slot leg 1).
//! Sequential forking by q-value is not done.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{debug, info};

use super::call::{Call, CallState, Fork, Forking, InviteClient, Target};
use super::dialog::{Dialog, Role, Side};
use super::media::{shape, LegWebrtc, Op};
use super::send::{new_branch, our_contact, our_via, rand_hex, respond_caller};
use super::{session, B2bua};
use crate::build::OutMsg;
use crate::method::ALLOW;
use crate::msg::Msg;
use crate::retransmit::RtKey;
use crate::tu::Tu;

/// Forks a call has at most (the first contact included).
const MAX_FORKS: usize = 16;

/// The retransmission key of fork `n`'s INVITE.
fn invite_key_n(id: u64, n: u8) -> RtKey {
    if n == 0 {
        RtKey::CalleeInvite(id)
    } else {
        RtKey::ForkInvite(id, n)
    }
}

/// The retransmission key of the primary fork's INVITE.
pub(super) fn invite_key(call: &Call) -> RtKey {
    invite_key_n(call.id, call.forking.as_ref().map_or(0, |f| f.primary))
}

/// The best final response of failed forks (RFC 3261 §16.7.6): the
/// lowest 6xx; else the lowest class, a real answer before a timeout's
/// 408; 503 becomes 500 (§16.7 step 6).
pub(crate) fn best_final(codes: &[u16]) -> u16 {
    let best = if let Some(c) = codes.iter().copied().filter(|c| *c >= 600).min() {
        c
    } else {
        let class = codes.iter().map(|c| c / 100).min().unwrap_or(4);
        let in_class = || codes.iter().copied().filter(move |c| c / 100 == class);
        in_class()
            .find(|c| *c != 408)
            .or_else(|| in_class().next())
            .unwrap_or(408)
    };
    if best == 503 {
        500
    } else {
        best
    }
}

/// ACK for a fork's failure response (§17.1.1.3).
fn failure_ack(tu: &Tu<'_>, d: &Dialog, uac: &InviteClient, resp: &Msg) -> Vec<u8> {
    OutMsg::request(rsip::Method::Ack, &uac.ruri)
        .header("Via", our_via(tu, &uac.branch))
        .header("Max-Forwards", "70")
        .header("From", d.local.clone())
        .header("To", resp.header("To").unwrap_or_default().to_string())
        .header("Call-ID", d.call_id.clone())
        .header("CSeq", format!("{} ACK", uac.cseq))
        .to_bytes()
}

/// Sends (and retransmits) a CANCEL for fork `f`'s INVITE, or marks it
/// to go with the fork's first provisional.
fn cancel_fork(tu: &mut Tu<'_>, id: u64, f: &mut Fork, now: Instant) {
    if !f.uac.provisional {
        f.uac.cancel_pending = true;
        return;
    }
    let d = &f.dialog;
    let bytes = OutMsg::request(rsip::Method::Cancel, &f.uac.ruri)
        .header("Via", our_via(tu, &f.uac.branch))
        .header("Max-Forwards", "70")
        .header("From", d.local.clone())
        .header("To", d.remote.clone())
        .header("Call-ID", d.call_id.clone())
        .header("CSeq", format!("{} CANCEL", f.uac.cseq))
        .to_bytes();
    tu.send_retrans(RtKey::ForkCancel(id, f.n), d.peer, bytes, true, now);
    f.uac.cancel_pending = false;
}

/// CANCELs every fork but the primary that has no final response yet
/// (the primary is the flows' own business).
pub(super) fn cancel_others(tu: &mut Tu<'_>, call: &mut Call, now: Instant) {
    let id = call.id;
    let Some(f) = call.forking.as_mut() else {
        return;
    };
    for fork in &mut f.others {
        let pending = f
            .finals
            .get(usize::from(fork.n))
            .is_some_and(|c| c.is_none());
        if pending && fork.uac.ack.is_none() {
            cancel_fork(tu, id, fork, now);
        }
    }
}

/// Makes other fork `i` the primary (the primary goes to its place).
fn swap_in(call: &mut Call, i: usize) {
    let Call {
        forking,
        dialogs,
        uac,
        ..
    } = call;
    let Some(f) = forking.as_mut() else {
        return;
    };
    let Some(fork) = f.others.get_mut(i) else {
        return;
    };
    std::mem::swap(&mut dialogs[1], &mut fork.dialog);
    std::mem::swap(uac, &mut fork.uac);
    std::mem::swap(&mut f.primary, &mut fork.n);
}

impl B2bua {
    /// Adds a fork per extra target to the new call of the caller's
    /// `call_id` (just made by [`B2bua::new_call`] toward the first
    /// contact): an INVITE with the same offer, in a dialog of its own.
    pub(crate) fn add_forks(
        &mut self,
        tu: &mut Tu<'_>,
        call_id: &str,
        targets: Vec<Target>,
        max_forwards: u32,
        now: Instant,
    ) {
        let Some(&(id, Side::Caller)) = self.dialogs.get(call_id) else {
            return;
        };
        let mut new_ids = Vec::new();
        self.with_call(id, |_, call| {
            if call.state != CallState::Calling || call.forking.is_some() || call.callee().webrtc.on
            {
                return;
            }
            let offer = call.offer.clone();
            let Ok(body) = shape(tu, call, Side::Callee, &offer, Op::Offer) else {
                return;
            };
            let mut others = Vec::new();
            for t in targets.into_iter().filter(|t| !t.webrtc) {
                let n = others.len() + 1;
                if n >= MAX_FORKS {
                    break;
                }
                let Ok(n) = u8::try_from(n) else { break };
                let p = call.callee();
                let tag = rand_hex(tu.rng, 6);
                let base = p.local.rsplit_once(";tag=").map_or(p.local.as_str(), |(b, _)| b);
                let dialog = Dialog {
                    role: Role::Uac,
                    peer: t.dest,
                    call_id: format!("{}@tern", rand_hex(tu.rng, 12)),
                    local: format!("{base};tag={tag}"),
                    local_tag: tag,
                    remote_tag: None,
                    remote: p.remote.clone(),
                    target: t.uri.clone(),
                    route: Vec::new(),
                    local_cseq: 1,
                    media: None,
                    webrtc: LegWebrtc::hinted(false),
                };
                let uac = InviteClient {
                    cseq: 1,
                    branch: new_branch(tu.rng),
                    ruri: t.uri.clone(),
                    provisional: false,
                    ack: None,
                    fail_ack: None,
                    cancel_pending: false,
                    rseq: None,
                    prack_cseq: None,
                };
                let out = OutMsg::request(rsip::Method::Invite, &uac.ruri)
                    .header("Via", our_via(tu, &uac.branch))
                    .header("Max-Forwards", (max_forwards.min(256) - 1).to_string())
                    .header("From", dialog.local.clone())
                    .header("To", dialog.remote.clone())
                    .header("Call-ID", dialog.call_id.clone())
                    .header("CSeq", format!("{} INVITE", uac.cseq))
                    .header("Contact", our_contact(tu))
                    .header("Allow", ALLOW)
                    .header("User-Agent", tu.cfg.user_agent.clone());
                let mut out = out;
                if let Some((name, value)) = call.rel.caller.offer_header() {
                    out = out.header(name, value); // RFC 3262 §4
                }
                let invite = session::relay_request_headers(tu, &call.uas.req, out)
                    .body("application/sdp", body.clone())
                    .to_bytes();
                info!(call_id = %call.call_id(), b_call_id = %dialog.call_id, callee = %t.uri, dest = %t.dest, fork = n, "call: INVITE forked to another contact");
                tu.send_retrans(RtKey::ForkInvite(id, n), t.dest, invite, false, now);
                new_ids.push(dialog.call_id.clone());
                others.push(Fork { n, dialog, uac });
            }
            if others.is_empty() {
                return;
            }
            call.forking = Some(Box::new(Forking {
                primary: 0,
                finals: vec![None; others.len() + 1],
                others,
            }));
        });
        for c in new_ids {
            self.dialogs.insert(c, (id, Side::Callee));
        }
    }

    /// A response in a callee dialog of call `id`, seen before the
    /// B2BUA's own handling: true when it belonged to forking and was
    /// dealt with here, false to go on as for an unforked call (maybe
    /// after swapping the responding fork in as the primary).
    pub(super) fn on_fork_response(
        &mut self,
        tu: &mut Tu<'_>,
        id: u64,
        resp: &Msg,
        now: Instant,
    ) -> bool {
        if !self.is_forked(id) {
            return false;
        }
        let mut handled = false;
        self.with_call(id, |b2b, call| {
            handled = b2b.fork_response(tu, call, resp, now);
        });
        handled
    }

    fn fork_response(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        resp: &Msg,
        now: Instant,
    ) -> bool {
        let id = call.id;
        let primary = resp.call_id == call.callee().call_id;
        let code = resp.code().unwrap_or(0);
        let undecided = matches!(call.state, CallState::Calling | CallState::Proceeding);
        let Some(f) = call.forking.as_mut() else {
            return false;
        };
        if primary {
            // Only the initial INVITE's responses (not a re-INVITE's, nor
            // BYE's) concern forking.
            if resp.cseq.method != "INVITE"
                || resp.cseq.num != call.uac.cseq
                || resp.top_via().branch() != Some(call.uac.branch.as_str())
            {
                return false;
            }
            if code < 300 {
                if (200..300).contains(&code) && undecided {
                    let n = f.primary;
                    tu.stop_retrans(invite_key_n(id, n));
                    cancel_others(tu, call, now);
                }
                return false;
            }
            tu.stop_retrans(invite_key_n(id, f.primary));
            let n = f.primary;
            let peer = call.dialogs[1].peer;
            if let Some(ack) = call.uac.fail_ack.clone() {
                tu.send(peer, ack);
                return true;
            }
            let ack = failure_ack(tu, &call.dialogs[1], &call.uac, resp);
            tu.send(peer, ack.clone());
            call.uac.fail_ack = Some(ack);
            self.fork_failed(tu, call, n, code, now);
            return true;
        }
        let Some(i) = f
            .others
            .iter()
            .position(|o| o.dialog.call_id == resp.call_id)
        else {
            tu.stats.stray_responses += 1;
            return true;
        };
        let n = f.others[i].n;
        match resp.cseq.method.as_str() {
            "INVITE" => {}
            "BYE" => {
                tu.stop_retrans(RtKey::ForkBye(id, n));
                return true;
            }
            "CANCEL" => {
                tu.stop_retrans(RtKey::ForkCancel(id, n));
                return true;
            }
            _ => {
                tu.stats.stray_responses += 1;
                return true;
            }
        }
        let fork = &mut f.others[i];
        if resp.top_via().branch() != Some(fork.uac.branch.as_str())
            || resp.cseq.num != fork.uac.cseq
        {
            tu.stats.stray_responses += 1;
            return true;
        }
        tu.stop_retrans(invite_key_n(id, n));
        let failed = f.finals.get(usize::from(n)).is_some_and(|c| c.is_some());
        match code {
            100..=199 => {
                fork.uac.provisional = true;
                if fork.uac.cancel_pending {
                    cancel_fork(tu, id, fork, now);
                    return true;
                }
                if !undecided || code == 100 || failed {
                    return true;
                }
                debug!(call_id = %call.dialogs[0].call_id, fork = n, code, "provisional from another fork");
                swap_in(call, i);
                false
            }
            200..=299 if undecided && !failed => {
                info!(call_id = %call.dialogs[0].call_id, fork = n, "fork answered first");
                swap_in(call, i);
                cancel_others(tu, call, now);
                false
            }
            200..=299 => {
                // A late 2xx: ACK it, then BYE (§16.7 step 10 for a UAC).
                if let Some(ack) = fork.uac.ack.clone() {
                    tu.send(fork.dialog.peer, ack);
                    return true;
                }
                info!(call_id = %call.dialogs[0].call_id, fork = n, "late 2xx from another fork: ACK and BYE");
                let d = &mut fork.dialog;
                d.remote_tag = resp.to.tag().map(str::to_string);
                if let Some(c) = resp.contacts().first() {
                    d.target = c.uri.clone();
                }
                d.route = resp.headers("Record-Route").map(str::to_string).collect();
                d.route.reverse();
                let br = new_branch(tu.rng);
                let via = our_via(tu, &br);
                let ack = d
                    .request(rsip::Method::Ack, fork.uac.cseq, via, &tu.cfg.user_agent)
                    .to_bytes();
                tu.send(d.peer, ack.clone());
                fork.uac.ack = Some(ack);
                let br = new_branch(tu.rng);
                let via = our_via(tu, &br);
                let cseq = d.next_cseq();
                let bye = d
                    .request(rsip::Method::Bye, cseq, via, &tu.cfg.user_agent)
                    .to_bytes();
                tu.send_retrans(RtKey::ForkBye(id, n), d.peer, bye, true, now);
                true
            }
            _ => {
                if let Some(ack) = fork.uac.fail_ack.clone() {
                    tu.send(fork.dialog.peer, ack);
                    return true;
                }
                let ack = failure_ack(tu, &fork.dialog, &fork.uac, resp);
                tu.send(fork.dialog.peer, ack.clone());
                fork.uac.fail_ack = Some(ack);
                self.fork_failed(tu, call, n, code, now);
                true
            }
        }
    }

    /// Fork `n` failed with `code` (or 408: no answer). While nobody
    /// won: a failed primary hands over to a fork still trying, and once
    /// every fork failed the caller gets the best of their responses.
    fn fork_failed(&mut self, tu: &mut Tu<'_>, call: &mut Call, n: u8, code: u16, now: Instant) {
        let Some(f) = call.forking.as_mut() else {
            return;
        };
        if let Some(c) = f.finals.get_mut(usize::from(n)) {
            c.get_or_insert(code);
        }
        let pending =
            |f: &Forking, n: u8| f.finals.get(usize::from(n)).is_some_and(|c| c.is_none());
        let all_done = f.finals.iter().all(Option::is_some);
        debug!(call_id = %call.dialogs[0].call_id, fork = n, code, all_done, "fork failed");
        match call.state {
            CallState::Calling | CallState::Proceeding if !all_done && f.primary == n => {
                if let Some(i) = f.others.iter().position(|o| pending(f, o.n)) {
                    swap_in(call, i);
                }
            }
            CallState::Calling | CallState::Proceeding if !all_done => {}
            CallState::Calling | CallState::Proceeding => {
                let codes: Vec<u16> = f.finals.iter().flatten().copied().collect();
                let best = best_final(&codes);
                info!(call_id = %call.call_id(), slot = ?call.slot, code = best, "every fork failed");
                respond_caller(tu, call, best, None, None, now);
                self.finish(tu, call, now);
            }
            CallState::Cancelling if all_done => self.finish(tu, call, now),
            _ => {}
        }
    }

    /// Whether call `id` forked.
    pub(super) fn is_forked(&self, id: u64) -> bool {
        self.calls.get(&id).is_some_and(|c| c.forking.is_some())
    }

    /// Fork `n`'s INVITE got no answer (timer B).
    pub(super) fn on_fork_timeout(&mut self, tu: &mut Tu<'_>, id: u64, n: u8, now: Instant) {
        self.with_call(id, |b2b, call| b2b.fork_failed(tu, call, n, 408, now));
    }

    /// A forked call's fork dialogs and retransmissions go with it.
    pub(super) fn forget_forks(
        tu: &mut Tu<'_>,
        call: &Call,
        dialogs: &mut HashMap<String, (u64, Side)>,
    ) {
        let Some(f) = call.forking.as_ref() else {
            return;
        };
        for o in &f.others {
            dialogs.remove(&o.dialog.call_id);
        }
        for n in 0..=u8::try_from(f.others.len()).unwrap_or(u8::MAX) {
            tu.stop_retrans(invite_key_n(call.id, n));
            tu.stop_retrans(RtKey::ForkCancel(call.id, n));
            tu.stop_retrans(RtKey::ForkBye(call.id, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::best_final;

    #[test]
    fn best_final_follows_16_7() {
        assert_eq!(best_final(&[486, 486]), 486);
        assert_eq!(best_final(&[486, 603, 600]), 600);
        assert_eq!(best_final(&[408, 486]), 486);
        assert_eq!(best_final(&[408, 408]), 408);
        assert_eq!(best_final(&[503, 480]), 480);
        assert_eq!(best_final(&[503]), 500);
        assert_eq!(best_final(&[]), 408);
    }
}
