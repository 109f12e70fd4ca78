//! Calls out through a trunk (`crate::trunk`): the gateways are tried in
//! order, the next one on Timer B, a transport failure, 408 or 5xx; a
//! gateway's 401/407 is answered once with the trunk's credentials (a new
//! INVITE with the next CSeq and Authorization / Proxy-Authorization).
//! The caller sees only the final outcome. What a gateway did is told to
//! the gateway health (`crate::trunk_health`, [`B2bua::gateways`]): no
//! answer (Timer B) or a 503 counts against it, a final response other
//! than 503 for it ([`B2bua::trunk_response`]).
//!
//! The core attaches a [`TrunkLeg`] to a new call with
//! [`B2bua::attach_trunk`]; `invite.rs` and `teardown.rs` ask
//! [`B2bua::trunk_retry`] before passing a failure to the caller.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::info;

use super::call::{Call, CallState};
use super::dialog::Side;
use super::media::{shape, Op};
use super::send::{our_contact, our_via, rand_hex};
use super::{session, B2bua};
use crate::build::OutMsg;
use crate::method::ALLOW;
use crate::msg::Msg;
use crate::retransmit::RtKey;
use crate::trunk::digest_answer;
use crate::trunk_health::Failure;
use crate::tu::Tu;

/// A call's way out through a trunk.
#[derive(Debug, Clone)]
pub(crate) struct TrunkLeg {
    /// The trunk's name (logs).
    pub(crate) trunk: String,
    /// The number as the gateway gets it (after strip/add).
    pub(crate) user: String,
    /// Gateways in order; `next` is the one to try after the current.
    pub(crate) gateways: Vec<SocketAddr>,
    pub(crate) next: usize,
    /// User name and password for a gateway's challenge.
    pub(crate) credentials: Option<(String, String)>,
    /// Whether the current gateway's challenge was answered already.
    pub(crate) auth_tried: bool,
}

impl TrunkLeg {
    /// The Request-URI toward gateway `gw`.
    pub(crate) fn uri(&self, gw: SocketAddr) -> String {
        format!("sip:{}@{gw}", self.user)
    }
}

impl B2bua {
    /// Marks the call whose caller Call-ID is `call_id` as going out
    /// through a trunk.
    pub(crate) fn attach_trunk(&mut self, call_id: &str, leg: TrunkLeg) {
        if let Some(&(id, _)) = self.dialogs.get(call_id) {
            if self.calls.contains_key(&id) {
                self.trunk_legs.insert(id, leg);
            }
        }
    }

    /// A final response `code` from `src` to call `id`'s INVITE: a
    /// gateway of a trunk call that answered other than 503 is alive.
    pub(super) fn trunk_response(&mut self, id: u64, code: u16, src: SocketAddr) {
        if code >= 200 && code != 503 && self.trunk_legs.contains_key(&id) {
            self.gateways.alive(src);
        }
    }

    /// Whether a trunk call's failure (`resp`, or `None` for Timer B or a
    /// transport failure) was absorbed by a new INVITE: with credentials
    /// for a first 401/407, to the next gateway for 408, 5xx or no
    /// answer. `false`: the failure goes to the caller as usual.
    pub(super) fn trunk_retry(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        resp: Option<&Msg>,
        now: Instant,
    ) -> bool {
        if !matches!(call.state, CallState::Calling | CallState::Proceeding) {
            return false;
        }
        let Some(leg) = self.trunk_legs.get_mut(&call.id) else {
            return false;
        };
        let code = resp.and_then(Msg::code).unwrap_or(408);
        let mut auth = None;
        let dest = if code == 401 || code == 407 {
            let (Some(resp), Some((user, pass)), false) =
                (resp, leg.credentials.as_ref(), leg.auth_tried)
            else {
                return false;
            };
            let (chal_hdr, cred_hdr) = if code == 401 {
                ("WWW-Authenticate", "Authorization")
            } else {
                ("Proxy-Authenticate", "Proxy-Authorization")
            };
            let cnonce = rand_hex(tu.rng, 8);
            let uri = call.uac.ruri.clone();
            let Some(value) = resp
                .headers(chal_hdr)
                .find_map(|c| digest_answer(c, "INVITE", (user, pass), &uri, &cnonce))
            else {
                return false;
            };
            leg.auth_tried = true;
            auth = Some((cred_hdr, value));
            call.callee().peer
        } else if code == 408 || (500..600).contains(&code) {
            // Timer B (no response at all) or 503: against the gateway.
            let failed = call.callee().peer;
            if resp.is_none() {
                self.gateways.failed(failed, Failure::Timeout, now);
            } else if code == 503 {
                self.gateways.failed(failed, Failure::Unavailable, now);
            }
            let Some(&gw) = leg.gateways.get(leg.next) else {
                return false;
            };
            leg.next += 1;
            leg.auth_tried = false;
            gw
        } else {
            return false;
        };
        let uri = leg.uri(dest);
        info!(call_id = %call.call_id(), trunk = %leg.trunk, code, %dest, auth = auth.is_some(), "trunk: INVITE again");
        self.resend_invite(tu, call, dest, uri, auth, now)
    }

    /// A new INVITE transaction toward `dest` in the callee dialog.
    fn resend_invite(
        &mut self,
        tu: &mut Tu<'_>,
        call: &mut Call,
        dest: SocketAddr,
        uri: String,
        auth: Option<(&str, String)>,
        now: Instant,
    ) -> bool {
        let offer = call.offer.clone();
        let Ok(body) = shape(tu, call, Side::Callee, &offer, Op::Offer) else {
            return false;
        };
        call.uac.cseq += 1;
        call.uac.branch = format!("z9hG4bK{}", rand_hex(tu.rng, 10));
        call.uac.ruri = uri.clone();
        call.uac.provisional = false;
        call.uac.fail_ack = None;
        call.uac.ack = None;
        call.state = CallState::Calling;
        call.timer_c = None;
        let cseq = call.uac.cseq;
        let d = call.callee_mut();
        d.peer = dest;
        d.target = uri.clone();
        d.remote_tag = None;
        d.local_cseq = cseq;
        let mf = call.uas.req.max_forwards().unwrap_or(70).clamp(1, 256) - 1;
        let d = call.callee();
        let mut out = OutMsg::request(rsip::Method::Invite, &uri)
            .header("Via", our_via(tu, &call.uac.branch))
            .header("Max-Forwards", mf.to_string())
            .header("From", d.local.clone())
            .header("To", d.remote.clone())
            .header("Call-ID", d.call_id.clone())
            .header("CSeq", format!("{cseq} INVITE"))
            .header("Contact", our_contact(tu))
            .header("Allow", ALLOW)
            .header("User-Agent", tu.cfg.user_agent.clone());
        if let Some((h, v)) = auth {
            out = out.header(h, v);
        }
        let invite = session::relay_request_headers(tu, &call.uas.req, out)
            .body("application/sdp", body)
            .to_bytes();
        tu.send_retrans(RtKey::CalleeInvite(call.id), dest, invite, false, now);
        true
    }
}
