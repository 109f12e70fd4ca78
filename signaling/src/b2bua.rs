//! The B2BUA with media anchoring (RFC 3261 UAS toward the caller, UAC
//! toward the callee; RFC 3264 offer/answer through a relay slot).
//!
//! A call is two dialogs: leg **A** (the caller's dialog, where we are the
//! UAS) and leg **B** (a new dialog with its own Call-ID and tags toward the
//! registered contact, where we are the UAC). The caller's SDP offer is
//! rewritten to point at slot leg 1 before it goes to the callee, and the
//! callee's answer to point at slot leg 0 before it goes to the caller.
//!
//! ```text
//! caller            tern                     callee
//!  INVITE ─────────▶ 100 ◀─  reserve slot, program leg 0
//!                    INVITE (new Call-ID, SDP → leg 1) ─▶
//!   ◀──── 180 ◀───────────────────────────── 180
//!   ◀──── 200 (SDP → leg 0) ◀─ program leg 1 ─ 200
//!  ACK ────────────▶ ACK (B dialog) ────────▶
//!  BYE ────────────▶ 200 ; BYE ─────────────▶ ; release slot
//! ```
//!
//! Failure finals from the callee are ACKed (same branch, §17.1.1.3) and
//! passed back with the same status code; CANCEL is relayed; the slot is
//! released whenever the call ends. A re-INVITE from either side (hold,
//! resume, new address, session refresh) is relayed into the other dialog
//! with its SDP rewritten, and the slot's peers and directions follow the
//! new offer/answer; a failed re-INVITE restores the previous media.

use std::net::SocketAddr;
use std::time::Instant;

use tern_shared::table::{Direction, Learning, LegConfig, SlotConfig};
use tracing::{debug, info, warn};

use crate::core::{rand_hex, RtKey, SipCore, TimerEv, ALLOW};
use crate::msg::{Msg, OutMsg};
use crate::sdp::{self, AudioInfo, SdpError};

/// Which dialog of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller's dialog (we are its UAS).
    A,
    /// The callee's dialog (we are its UAC).
    B,
}

impl Side {
    /// The other dialog.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// The slot leg facing this side: 0 for the caller, 1 for the callee.
    pub fn leg(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// A re-INVITE relayed from one dialog into the other (RFC 3261 §14,
/// RFC 3264 §8: hold, resume, address change, session refresh).
#[derive(Debug)]
pub(crate) struct ReInvite {
    /// Who sent it (we are the UAS of this one).
    pub(crate) from: Side,
    pub(crate) req: Msg,
    pub(crate) src: SocketAddr,
    /// Our INVITE in the other dialog: CSeq, branch, Request-URI.
    pub(crate) cseq: u32,
    pub(crate) branch: String,
    pub(crate) ruri: String,
    /// The sender's media before its offer, restored if the offer fails.
    pub(crate) prev: Option<AudioInfo>,
    pub(crate) final_code: Option<u16>,
    pub(crate) last_response: Option<Vec<u8>>,
    /// ACK sent in the other dialog for its 2xx / its failure response.
    pub(crate) ack: Option<Vec<u8>>,
}

/// An UPDATE relayed from one dialog into the other (RFC 3311: a new
/// offer inside an early or confirmed dialog, without a re-INVITE's
/// three-way handshake).
#[derive(Debug)]
pub(crate) struct Update {
    /// Who sent it (we are its UAS).
    pub(crate) from: Side,
    pub(crate) req: Msg,
    pub(crate) src: SocketAddr,
    /// Our UPDATE in the other dialog: CSeq and branch.
    pub(crate) cseq: u32,
    pub(crate) branch: String,
    /// The sender's media before its offer, restored if the offer fails.
    pub(crate) prev: Option<AudioInfo>,
    pub(crate) final_code: Option<u16>,
    /// Our final response, repeated for a retransmitted UPDATE.
    pub(crate) last_response: Option<Vec<u8>>,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent to the callee, no response yet.
    Calling,
    /// The callee sent a provisional response.
    Proceeding,
    /// 2xx relayed to the caller; waiting for the caller's ACK.
    Answered,
    /// ACK relayed: the call is up.
    Confirmed,
    /// The caller cancelled; waiting for the callee's final response.
    Cancelling,
    /// BYE sent to one or both sides; waiting for the responses.
    Terminating,
    /// Over; state kept a while to absorb retransmissions.
    Done,
}

/// One relayed call.
#[derive(Debug)]
pub struct Call {
    pub(crate) id: u64,
    pub(crate) state: CallState,
    /// The relay slot, while held.
    pub(crate) slot: Option<u32>,
    pub(crate) slot_tag: u64,
    pub(crate) ssrc: [u32; 2],
    /// The latest SDP of the caller (index 0) and of the callee (index 1).
    pub(crate) media: [Option<AudioInfo>; 2],
    /// A re-INVITE being relayed, or the last one (to absorb retransmissions).
    pub(crate) reinvite: Option<ReInvite>,
    /// An UPDATE being relayed, or the last one.
    pub(crate) update: Option<Update>,
    /// The latest SDP offer relayed (as the sender wrote it, cut to the
    /// codecs we relay): answers are ordered and restricted by it.
    pub(crate) offer: Vec<u8>,
    // --- A dialog (caller; we are the UAS)
    pub(crate) a_src: SocketAddr,
    pub(crate) a_invite: Msg,
    pub(crate) a_to_tag: String,
    pub(crate) a_local_cseq: u32,
    pub(crate) a_last_response: Option<Vec<u8>>,
    pub(crate) a_final: Option<u16>,
    // --- B dialog (callee; we are the UAC)
    pub(crate) b_dest: SocketAddr,
    pub(crate) b_call_id: String,
    pub(crate) b_from: String,
    pub(crate) b_from_tag: String,
    pub(crate) b_to: String,
    pub(crate) b_to_tag: Option<String>,
    pub(crate) b_ruri: String,
    pub(crate) b_target: Option<String>,
    pub(crate) b_route: Vec<String>,
    pub(crate) b_cseq: u32,
    pub(crate) b_branch: String,
    pub(crate) b_provisional: bool,
    pub(crate) b_ack: Option<Vec<u8>>,
    pub(crate) b_fail_ack: Option<Vec<u8>>,
    pub(crate) b_next_cseq: u32,
    pub(crate) cancel_pending: bool,
    pub(crate) timer_c: Option<Instant>,
    pub(crate) linger: Option<Instant>,
}

impl Call {
    /// The call's current state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// The relay slot it holds, if any.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    pub(crate) fn a_call_id(&self) -> &str {
        &self.a_invite.call_id
    }
}

/// Direction of a leg from the relay's side: what it may send to the peer
/// and what it accepts from the peer.
fn leg_direction(sends_to_peer: bool, accepts_from_peer: bool) -> Direction {
    match (sends_to_peer, accepts_from_peer) {
        (true, true) => Direction::SendRecv,
        (true, false) => Direction::SendOnly,
        (false, true) => Direction::RecvOnly,
        (false, false) => Direction::Inactive,
    }
}

/// Leg directions (leg 0 toward the caller, leg 1 toward the callee) from
/// the direction attribute of the caller's SDP (its own view) and of the
/// callee's (`None` before its answer: sendrecv), whoever offered. Media
/// flows from one party to the other only if one sends and the other
/// receives (RFC 3264 §6.1).
pub fn leg_directions(caller: Direction, callee: Option<Direction>) -> [Direction; 2] {
    let callee = callee.unwrap_or_default();
    let a_sends = matches!(caller, Direction::SendRecv | Direction::SendOnly);
    let a_recvs = matches!(caller, Direction::SendRecv | Direction::RecvOnly);
    let b_sends = matches!(callee, Direction::SendRecv | Direction::SendOnly);
    let b_recvs = matches!(callee, Direction::SendRecv | Direction::RecvOnly);
    let a_to_b = a_sends && b_recvs;
    let b_to_a = b_sends && a_recvs;
    [leg_direction(b_to_a, a_to_b), leg_direction(a_to_b, b_to_a)]
}

fn new_branch() -> String {
    format!("z9hG4bK{}", rand_hex(8))
}

fn nonzero_ssrc() -> u32 {
    loop {
        let s: u32 = rand::random();
        if s != 0 {
            return s;
        }
    }
}

impl SipCore {
    fn local_str(&self) -> String {
        self.local.to_string()
    }

    fn our_contact(&self) -> String {
        format!("<sip:tern@{}>", self.local_str())
    }

    fn our_via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch};rport", self.local_str())
    }

    fn slot_config(&self, call: &Call) -> SlotConfig {
        let (a, b) = (call.media[0].as_ref(), call.media[1].as_ref());
        let dirs = leg_directions(
            a.map_or(Direction::SendRecv, |m| m.direction),
            b.map(|m| m.direction),
        );
        let mux = a.is_some_and(|m| m.rtcp_mux) && !matches!(b, Some(m) if !m.rtcp_mux);
        let leg = |i: usize, info: Option<&AudioInfo>| LegConfig {
            peer: info.and_then(|a| a.rtp),
            peer_rtcp: info.and_then(|a| a.rtcp),
            learning: Learning::LearnOnce,
            direction: dirs[i],
            rewrite_ssrc: true,
            out_ssrc: call.ssrc[i],
            rtcp_mux: mux,
            payload_types: 0,
            jitter: self.cfg.jitter,
            // The party's own SDP names the numbers it uses (RFC 3264
            // §5.1 asks both sides to keep one mapping).
            dtmf_pt: info.and_then(|a| a.dtmf_pt),
            clock_rate: info.map_or(0, |a| a.clock_rate),
        };
        SlotConfig {
            legs: [leg(0, a), leg(1, b)],
            tag: call.slot_tag,
        }
    }

    fn program(&mut self, call: &Call) -> bool {
        let Some(slot) = call.slot else {
            return false;
        };
        let cfg = self.slot_config(call);
        match self.relay.program(slot, &cfg) {
            Ok(()) => true,
            Err(e) => {
                warn!(call_id = %call.a_call_id(), slot, error = %e, "programming the relay slot failed");
                false
            }
        }
    }

    fn release_slot(&mut self, call: &mut Call) {
        if let Some(slot) = call.slot.take() {
            match self.relay.release(slot) {
                Ok(()) => info!(call_id = %call.a_call_id(), slot, "relay slot released"),
                Err(e) => {
                    warn!(call_id = %call.a_call_id(), slot, error = %e, "releasing the relay slot failed")
                }
            }
        }
    }

    /// Ends a call: state Done, slot released, state dropped after 64*T1.
    fn finish(&mut self, call: &mut Call, now: Instant) {
        self.release_slot(call);
        call.state = CallState::Done;
        call.timer_c = None;
        self.set_linger(call, now + self.cfg.t1 * 64);
    }

    fn set_linger(&mut self, call: &mut Call, at: Instant) {
        call.linger = Some(at);
        self.live.remove(&call.id);
        self.schedule(at, TimerEv::Linger(call.id));
    }

    fn with_call(&mut self, id: u64, f: impl FnOnce(&mut SipCore, &mut Call)) {
        if let Some(mut call) = self.calls.remove(&id) {
            f(self, &mut call);
            self.calls.insert(id, call);
        }
    }

    /// Sends a response to the caller's INVITE (with our To tag, Contact,
    /// and Record-Route echoed for 18x/2xx) and remembers it for INVITE
    /// retransmissions. Finals (>= 200) are retransmitted until the ACK.
    fn respond_a(
        &mut self,
        call: &mut Call,
        code: u16,
        reason: Option<&str>,
        sdp: Option<Vec<u8>>,
        now: Instant,
    ) {
        let tag = (code > 100).then_some(call.a_to_tag.as_str());
        let mut r = self.response(&call.a_invite, code, tag, call.a_src);
        if let Some(reason) = reason {
            r = r.reason(reason);
        }
        if (101..300).contains(&code) {
            for rr in call.a_invite.headers("Record-Route") {
                r.push("Record-Route", rr.to_string());
            }
            r.push("Contact", self.our_contact());
        }
        if code >= 200 {
            r.push("Allow", ALLOW);
        }
        if let Some(body) = sdp {
            r = r.body("application/sdp", body);
        }
        let bytes = r.to_bytes();
        call.a_last_response = Some(bytes.clone());
        if code >= 200 {
            call.a_final = Some(code);
            let cap = true; // 2xx: §13.3.1.4 caps at T2; non-2xx: timer G too.
            self.send_retrans(RtKey::AFinal(call.id), call.a_src, bytes, cap, now);
        } else {
            self.send(call.a_src, bytes);
        }
    }

    /// A request in the B dialog (ACK for 2xx, BYE).
    fn b_in_dialog(&self, call: &Call, method: rsip::Method, cseq: u32, branch: &str) -> OutMsg {
        let target = call.b_target.as_deref().unwrap_or(&call.b_ruri);
        let to = match &call.b_to_tag {
            Some(t) => format!("{};tag={t}", call.b_to),
            None => call.b_to.clone(),
        };
        let mut r = OutMsg::request(method, target)
            .header("Via", self.our_via(branch))
            .header("Max-Forwards", "70");
        for route in &call.b_route {
            r.push("Route", route.clone());
        }
        r.header("From", call.b_from.clone())
            .header("To", to)
            .header("Call-ID", call.b_call_id.clone())
            .header("CSeq", format!("{cseq} {method}"))
            .header("User-Agent", self.cfg.user_agent.clone())
    }

    /// A request in the A dialog (BYE toward the caller).
    fn a_in_dialog(&self, call: &Call, method: rsip::Method, cseq: u32, branch: &str) -> OutMsg {
        let inv = &call.a_invite;
        let target = inv
            .contacts()
            .first()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| inv.from.uri.clone());
        let mut r = OutMsg::request(method, &target)
            .header("Via", self.our_via(branch))
            .header("Max-Forwards", "70");
        // UAS route set: Record-Route in order (§12.1.1).
        for rr in inv.headers("Record-Route") {
            r.push("Route", rr.to_string());
        }
        let from = format!(
            "{};tag={}",
            inv.header("To").unwrap_or_default(),
            call.a_to_tag
        );
        r.header("From", from)
            .header("To", inv.header("From").unwrap_or_default().to_string())
            .header("Call-ID", inv.call_id.clone())
            .header("CSeq", format!("{cseq} {method}"))
            .header("User-Agent", self.cfg.user_agent.clone())
    }

    /// ACK for a non-2xx final response to our INVITE (§17.1.1.3): same
    /// Request-URI and branch as the INVITE, To from the response.
    fn b_failure_ack(&self, call: &Call, resp: &Msg) -> Vec<u8> {
        OutMsg::request(rsip::Method::Ack, &call.b_ruri)
            .header("Via", self.our_via(&call.b_branch))
            .header("Max-Forwards", "70")
            .header("From", call.b_from.clone())
            .header("To", resp.header("To").unwrap_or_default().to_string())
            .header("Call-ID", call.b_call_id.clone())
            .header("CSeq", format!("{} ACK", call.b_cseq))
            .to_bytes()
    }

    fn b_cancel(&self, call: &Call) -> Vec<u8> {
        OutMsg::request(rsip::Method::Cancel, &call.b_ruri)
            .header("Via", self.our_via(&call.b_branch))
            .header("Max-Forwards", "70")
            .header("From", call.b_from.clone())
            .header("To", call.b_to.clone())
            .header("Call-ID", call.b_call_id.clone())
            .header("CSeq", format!("{} CANCEL", call.b_cseq))
            .to_bytes()
    }

    fn send_b_cancel(&mut self, call: &mut Call, now: Instant) {
        let bytes = self.b_cancel(call);
        self.send_retrans(RtKey::Cancel(call.id), call.b_dest, bytes, true, now);
        call.cancel_pending = false;
    }

    /// A new request of ours in dialog `side` (RFC 3261 §12.2.1.1): takes
    /// that dialog's next local CSeq and returns it with where to send the
    /// request and the request itself (branch `branch`).
    fn new_in_dialog(
        &self,
        call: &mut Call,
        side: Side,
        method: rsip::Method,
        branch: &str,
    ) -> (u32, SocketAddr, OutMsg) {
        match side {
            Side::A => {
                call.a_local_cseq += 1;
                let cseq = call.a_local_cseq;
                (
                    cseq,
                    call.a_src,
                    self.a_in_dialog(call, method, cseq, branch),
                )
            }
            Side::B => {
                call.b_next_cseq += 1;
                let cseq = call.b_next_cseq;
                (
                    cseq,
                    call.b_dest,
                    self.b_in_dialog(call, method, cseq, branch),
                )
            }
        }
    }

    fn send_bye(&mut self, call: &mut Call, side: Side, now: Instant) {
        let (_, dest, bye) = self.new_in_dialog(call, side, rsip::Method::Bye, &new_branch());
        self.send_retrans(RtKey::Bye(call.id, side), dest, bye.to_bytes(), true, now);
    }

    /// The offer in `req` (from dialog `side`) applied to the call, as the
    /// body to relay; `None` when `req` has no SDP. `Err` when the offer is
    /// unusable: `req` has been answered 488 with a Warning (305
    /// Incompatible media format when no codec is common, RFC 3261
    /// §20.43).
    fn relay_offer(
        &mut self,
        call: &mut Call,
        side: Side,
        req: &Msg,
        src: SocketAddr,
    ) -> Result<Option<Vec<u8>>, ()> {
        if !req.has_sdp() {
            return Ok(None);
        }
        self.apply_offer(call, side, req.body())
            .map(Some)
            .map_err(|e| {
                let code = if e == SdpError::NoCommonCodec {
                    305
                } else {
                    399
                };
                self.reply(req, 488, src, |r| {
                    r.header("Warning", format!("{code} tern \"{e}\""))
                });
            })
    }

    fn send_b_ack(&mut self, call: &mut Call) {
        let bytes = self
            .b_in_dialog(call, rsip::Method::Ack, call.b_cseq, &new_branch())
            .to_bytes();
        self.send(call.b_dest, bytes.clone());
        call.b_ack = Some(bytes);
    }

    /// Whether `req` (with a To tag, from dialog `side` of call `id`)
    /// carries that dialog's tags: the remote tag in From, ours in To.
    pub(crate) fn dialog_matches(&self, id: u64, side: Side, req: &Msg) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        match side {
            Side::A => {
                req.from.tag() == call.a_invite.from.tag()
                    && req.to.tag() == Some(call.a_to_tag.as_str())
            }
            Side::B => {
                req.from.tag().is_some()
                    && req.from.tag() == call.b_to_tag.as_deref()
                    && req.to.tag() == Some(call.b_from_tag.as_str())
            }
        }
    }

    /// INVITE from the network. `dialog` is the Call-ID's existing entry.
    pub(crate) fn on_invite(
        &mut self,
        req: Msg,
        src: SocketAddr,
        dialog: Option<(u64, Side)>,
        now: Instant,
    ) {
        match (dialog, req.to.tag()) {
            (Some((id, Side::A)), None) => {
                let same = self
                    .calls
                    .get(&id)
                    .map(|c| c.a_invite.cseq.num == req.cseq.num);
                let done = self.calls.get(&id).map(|c| c.state == CallState::Done);
                if same == Some(true) || done == Some(false) {
                    // Retransmission: repeat the last response.
                    if let Some(bytes) = self.calls.get(&id).and_then(|c| c.a_last_response.clone())
                    {
                        debug!(call_id = %req.call_id, "INVITE retransmission absorbed");
                        self.send(src, bytes);
                    }
                    return;
                }
                // A new INVITE reusing the Call-ID of a finished call.
                self.forget(id);
            }
            (Some((_, Side::B)), None) => {
                warn!(call_id = %req.call_id, "INVITE loops back to us");
                self.reply(&req, 482, src, |r| r);
                return;
            }
            (Some((id, side)), Some(_)) => {
                self.on_reinvite(id, side, req, src, now);
                return;
            }
            (None, Some(_)) => {
                self.reply(&req, 481, src, |r| r);
                return;
            }
            (None, None) => {}
        }
        self.new_call(req, src, now);
    }

    fn forget(&mut self, id: u64) {
        self.live.remove(&id);
        if let Some(mut call) = self.calls.remove(&id) {
            self.release_slot(&mut call);
            self.dialogs.remove(call.a_call_id());
            self.dialogs.remove(&call.b_call_id);
            for k in [
                RtKey::AFinal(id),
                RtKey::BInvite(id),
                RtKey::Bye(id, Side::A),
                RtKey::Bye(id, Side::B),
                RtKey::Cancel(id),
                RtKey::ReInvite(id),
                RtKey::ReFinal(id),
                RtKey::Update(id),
            ] {
                self.stop_retrans(k);
            }
        }
    }

    fn new_call(&mut self, req: Msg, src: SocketAddr, now: Instant) {
        if !matches!(req.uri_scheme().as_deref(), Some("sip" | "sips")) {
            self.reply(&req, 416, src, |r| r);
            return;
        }
        if self.authenticate(&req, src, true, now).is_none() {
            return;
        }
        let mf = req.max_forwards().unwrap_or(70);
        if mf == 0 {
            self.reply(&req, 483, src, |r| r);
            return;
        }
        // 100 Trying at once (§16.2 / §17.2.1), no To tag.
        let trying = self.response(&req, 100, None, src).to_bytes();
        self.send(src, trying);

        // tern routes only to its own registered users: it has no route
        // to other domains, so even an authenticated caller's INVITE for
        // one must not reach a local user who happens to share the name.
        let local_ip = self.local.ip();
        let local = req
            .uri_text()
            .and_then(crate::msg::uri_host_port)
            .is_some_and(|(h, _)| self.cfg.is_local_host(&h, local_ip));
        if !local {
            info!(call_id = %req.call_id, uri = req.uri_text().unwrap_or(""), "INVITE for a foreign domain: no route");
            self.reply(&req, 404, src, |r| {
                r.header("Warning", "399 tern \"no route to that domain\"")
            });
            return;
        }
        let user = req.uri_user().unwrap_or_default();
        let Some(binding) = self.loc.lookup_user(&user, now).into_iter().next() else {
            info!(call_id = %req.call_id, %user, "INVITE for an unknown or unregistered user");
            self.reply(&req, 404, src, |r| r);
            return;
        };
        if !req.has_sdp() {
            // Late offer (offer in the 2xx, answer in the ACK) is not
            // supported yet.
            self.reply(&req, 488, src, |r| {
                r.header("Warning", "399 tern \"INVITE without SDP offer\"")
            });
            return;
        }
        let offer = match sdp::parse_audio(req.body()).and_then(|o| {
            let restricted = sdp::restrict_offer(req.body())?;
            Ok((o, restricted))
        }) {
            Ok(o) => o,
            Err(e) => {
                info!(call_id = %req.call_id, error = %e, "unusable SDP offer");
                let code = if e == SdpError::NoCommonCodec {
                    305
                } else {
                    399
                };
                self.reply(&req, 488, src, |r| {
                    r.header("Warning", format!("{code} tern \"{e}\""))
                });
                return;
            }
        };
        let (offer, offer_body) = offer;
        let slot = match self.relay.allocate() {
            Ok(s) => s,
            Err(crate::relay::RelayError::Full) => {
                self.stats.no_slot += 1;
                warn!(call_id = %req.call_id, "no free relay slot");
                self.reply(&req, 503, src, |r| r.header("Retry-After", "5"));
                return;
            }
            Err(e) => {
                warn!(call_id = %req.call_id, error = %e, "relay allocation failed");
                self.reply(&req, 500, src, |r| r);
                return;
            }
        };
        self.relay.set_call_id(slot, &req.call_id);
        let id = self.next_call;
        self.next_call += 1;
        let b_call_id = format!("{}@tern", rand_hex(12));
        let b_from_tag = rand_hex(6);
        let from_display = req
            .from
            .display
            .as_ref()
            .map(|d| format!("\"{d}\" "))
            .unwrap_or_default();
        let to_display = req
            .to
            .display
            .as_ref()
            .map(|d| format!("\"{d}\" "))
            .unwrap_or_default();
        let mut call = Call {
            id,
            state: CallState::Calling,
            slot: Some(slot),
            slot_tag: tern_shared::table::call_tag(&req.call_id),
            ssrc: [nonzero_ssrc(), nonzero_ssrc()],
            media: [Some(offer), None],
            reinvite: None,
            update: None,
            offer: offer_body,
            a_src: src,
            a_to_tag: rand_hex(6),
            a_local_cseq: 0,
            a_last_response: Some(trying_for_retrans(self, &req, src)),
            a_final: None,
            b_dest: binding.target,
            b_call_id,
            b_from: format!("{from_display}<{}>;tag={b_from_tag}", req.from.uri),
            b_from_tag,
            b_to: format!("{to_display}<{}>", req.to.uri),
            b_to_tag: None,
            b_ruri: binding.contact.clone(),
            b_target: None,
            b_route: Vec::new(),
            b_cseq: 1,
            b_branch: format!("z9hG4bK{}", rand_hex(10)),
            b_provisional: false,
            b_ack: None,
            b_fail_ack: None,
            b_next_cseq: 1,
            cancel_pending: false,
            timer_c: None,
            linger: None,
            a_invite: req,
        };
        if !self.program(&call) {
            self.release_slot(&mut call);
            let r = self
                .response(&call.a_invite, 500, Some(&call.a_to_tag), src)
                .to_bytes();
            self.send(src, r);
            return;
        }
        let ports = self.relay.leg_ports(slot, 1);
        let media_ip = self.relay.media_ip();
        let body = match sdp::rewrite(&call.offer, media_ip, ports, 1) {
            Ok(b) => b,
            Err(e) => {
                warn!(call_id = %call.a_call_id(), error = %e, "SDP rewrite failed");
                self.release_slot(&mut call);
                let r = self
                    .response(&call.a_invite, 488, Some(&call.a_to_tag), src)
                    .to_bytes();
                self.send(src, r);
                return;
            }
        };
        let invite = OutMsg::request(rsip::Method::Invite, &call.b_ruri)
            .header("Via", self.our_via(&call.b_branch))
            .header("Max-Forwards", (mf.min(256) - 1).to_string())
            .header("From", call.b_from.clone())
            .header("To", call.b_to.clone())
            .header("Call-ID", call.b_call_id.clone())
            .header("CSeq", format!("{} INVITE", call.b_cseq))
            .header("Contact", self.our_contact())
            .header("Allow", ALLOW)
            .header("User-Agent", self.cfg.user_agent.clone())
            .body("application/sdp", body)
            .to_bytes();
        self.stats.calls += 1;
        info!(
            call_id = %call.a_call_id(),
            slot,
            b_call_id = %call.b_call_id,
            callee = %binding.contact,
            dest = %binding.target,
            leg0_peer = ?call.media[0].as_ref().and_then(|m| m.rtp),
            "call: INVITE relayed to the callee"
        );
        self.send_retrans(RtKey::BInvite(id), call.b_dest, invite, false, now);
        self.dialogs
            .insert(call.a_call_id().to_string(), (id, Side::A));
        self.dialogs.insert(call.b_call_id.clone(), (id, Side::B));
        self.live.insert(id);
        self.calls.insert(id, Box::new(call));
    }

    pub(crate) fn on_b_invite_response(&mut self, id: u64, resp: &Msg, now: Instant) {
        self.with_call(id, |core, call| core.b_invite_response(call, resp, now));
    }

    fn b_invite_response(&mut self, call: &mut Call, resp: &Msg, now: Instant) {
        let code = resp.code().unwrap_or(0);
        if resp.top_via().branch() != Some(call.b_branch.as_str()) || resp.cseq.num != call.b_cseq {
            self.stats.stray_responses += 1;
            return;
        }
        self.stop_retrans(RtKey::BInvite(call.id));
        let reason = match &resp.start {
            crate::msg::Start::Response { reason, .. } if !reason.trim().is_empty() => {
                Some(reason.clone())
            }
            _ => None,
        };
        match code {
            100..=199 => {
                call.b_provisional = true;
                if call.cancel_pending {
                    self.send_b_cancel(call, now);
                }
                if !matches!(call.state, CallState::Calling | CallState::Proceeding) {
                    return;
                }
                call.state = CallState::Proceeding;
                let at = now + self.cfg.timer_c;
                call.timer_c = Some(at);
                self.schedule(at, TimerEv::TimerC(call.id));
                if code == 100 {
                    return;
                }
                if call.b_to_tag.is_none() {
                    call.b_to_tag = resp.to.tag().map(str::to_string);
                }
                // Early media (183 with SDP): leg 1 is programmed now, so
                // media flows through the slot before the 2xx.
                let sdp = if resp.has_sdp() {
                    self.apply_answer(call, Side::B, resp.body())
                } else {
                    None
                };
                debug!(call_id = %call.a_call_id(), slot = ?call.slot, code, "provisional relayed");
                self.respond_a(call, code, reason.as_deref(), sdp, now);
            }
            200..=299 => match call.state {
                CallState::Calling | CallState::Proceeding => {
                    call.b_to_tag = resp.to.tag().map(str::to_string);
                    call.b_target = resp.contacts().first().map(|c| c.uri.clone());
                    call.b_route = resp.headers("Record-Route").map(str::to_string).collect();
                    call.b_route.reverse();
                    call.timer_c = None;
                    let sdp = if resp.has_sdp() {
                        self.apply_answer(call, Side::B, resp.body())
                    } else {
                        warn!(call_id = %call.a_call_id(), "2xx without SDP answer");
                        None
                    };
                    self.stats.calls_answered += 1;
                    info!(call_id = %call.a_call_id(), slot = ?call.slot, leg1_peer = ?call.media[1].as_ref().and_then(|m| m.rtp), "call answered");
                    call.state = CallState::Answered;
                    self.respond_a(call, code, reason.as_deref(), sdp, now);
                }
                CallState::Answered | CallState::Confirmed => {
                    if let Some(ack) = call.b_ack.clone() {
                        self.send(call.b_dest, ack);
                    }
                }
                CallState::Cancelling | CallState::Terminating | CallState::Done => {
                    // 2xx after CANCEL or after giving up: ACK, then BYE (§15).
                    if let Some(ack) = call.b_ack.clone() {
                        self.send(call.b_dest, ack);
                        return;
                    }
                    call.b_to_tag = resp.to.tag().map(str::to_string);
                    call.b_target = resp.contacts().first().map(|c| c.uri.clone());
                    self.send_b_ack(call);
                    self.send_bye(call, Side::B, now);
                    call.state = CallState::Terminating;
                    self.release_slot(call);
                }
            },
            _ => {
                if let Some(ack) = call.b_fail_ack.clone() {
                    // Retransmitted final: ACK again.
                    self.send(call.b_dest, ack);
                    return;
                }
                let ack = self.b_failure_ack(call, resp);
                self.send(call.b_dest, ack.clone());
                call.b_fail_ack = Some(ack);
                match call.state {
                    CallState::Calling | CallState::Proceeding => {
                        info!(call_id = %call.a_call_id(), slot = ?call.slot, code, "callee refused the call");
                        self.respond_a(call, code, reason.as_deref(), None, now);
                        self.finish(call, now);
                    }
                    CallState::Cancelling => self.finish(call, now),
                    _ => {}
                }
            }
        }
    }

    /// Takes `body` as the latest SDP of side `from`, programs the slot and
    /// returns the body rewritten to the relay leg facing the other side
    /// (`None` if unusable: the slot is left as it was).
    fn apply_sdp(&mut self, call: &mut Call, from: Side, body: &[u8]) -> Option<Vec<u8>> {
        let slot = call.slot?;
        match sdp::parse_audio(body) {
            Ok(a) => {
                call.media[from.leg()] = Some(a);
                self.program(call);
            }
            Err(e) => {
                warn!(call_id = %call.a_call_id(), slot, ?from, error = %e, "unusable SDP");
                return None;
            }
        }
        let ports = self.relay.leg_ports(slot, from.other().leg());
        sdp::rewrite(body, self.relay.media_ip(), ports, 1).ok()
    }

    /// A new offer from `from`: cut to the codecs we relay, remembered for
    /// the answer, applied to the slot, and returned rewritten to the leg
    /// facing the other side.
    ///
    /// Errors: [`SdpError::NoCommonCodec`] (→ 488) and the parse errors of
    /// [`sdp::restrict_offer`]; the slot is left as it was.
    fn apply_offer(
        &mut self,
        call: &mut Call,
        from: Side,
        body: &[u8],
    ) -> Result<Vec<u8>, SdpError> {
        sdp::parse_audio(body)?;
        let restricted = sdp::restrict_offer(body)?;
        let out = self
            .apply_sdp(call, from, &restricted)
            .ok_or(SdpError::NoAudio)?;
        call.offer = restricted;
        Ok(out)
    }

    /// An answer from `from` to the latest offer: intersected with it in
    /// the offerer's order and its direction mirrored (RFC 3264 §6.1),
    /// then applied like [`Self::apply_sdp`]. An answer with nothing in
    /// common is passed on as it came (with a warning): the offerer is the
    /// one to give up on it (RFC 3264 §6.1), and refusing it here would
    /// break calls between agents that cope with it, such as SIPp's
    /// built-in PCMA `uac_pcap` and PCMU `uas`.
    fn apply_answer(&mut self, call: &mut Call, from: Side, body: &[u8]) -> Option<Vec<u8>> {
        match sdp::answer_in_offer_order(&call.offer, body) {
            Ok(b) => self.apply_sdp(call, from, &b),
            Err(e) => {
                warn!(call_id = %call.a_call_id(), ?from, error = %e, "answer passed on as it came");
                self.apply_sdp(call, from, body)
            }
        }
    }

    pub(crate) fn on_a_ack(&mut self, id: u64, req: &Msg, _now: Instant) {
        self.with_call(id, |core, call| {
            let _ = req;
            match call.state {
                CallState::Answered => {
                    core.stop_retrans(RtKey::AFinal(call.id));
                    core.send_b_ack(call);
                    call.state = CallState::Confirmed;
                    info!(call_id = %call.a_call_id(), slot = ?call.slot, "call confirmed");
                }
                _ => {
                    if call.a_final.is_some_and(|c| c >= 300) {
                        core.stop_retrans(RtKey::AFinal(call.id));
                    }
                }
            }
        });
    }

    pub(crate) fn on_bye(&mut self, id: u64, side: Side, req: &Msg, src: SocketAddr, now: Instant) {
        self.reply(req, 200, src, |r| r);
        self.with_call(id, |core, call| {
            info!(call_id = %call.a_call_id(), slot = ?call.slot, ?side, "BYE");
            match call.state {
                CallState::Answered | CallState::Confirmed => {
                    core.stop_retrans(RtKey::AFinal(call.id));
                    core.stop_retrans(RtKey::ReInvite(call.id));
                    core.stop_retrans(RtKey::ReFinal(call.id));
                    match side {
                        Side::A => {
                            if call.b_ack.is_none() {
                                core.send_b_ack(call);
                            }
                            core.send_bye(call, Side::B, now);
                        }
                        Side::B => core.send_bye(call, Side::A, now),
                    }
                    core.release_slot(call);
                    call.state = CallState::Terminating;
                    let at = now + core.cfg.t1 * 66;
                    core.set_linger(call, at);
                }
                CallState::Calling | CallState::Proceeding => {
                    // BYE on an early dialog: end the attempt.
                    if call.b_provisional {
                        core.send_b_cancel(call, now);
                    } else {
                        call.cancel_pending = true;
                    }
                    let code = if side == Side::A { 487 } else { 480 };
                    core.respond_a(call, code, None, None, now);
                    core.release_slot(call);
                    call.state = CallState::Cancelling;
                    let at = now + core.cfg.t1 * 66;
                    core.set_linger(call, at);
                }
                CallState::Cancelling | CallState::Terminating | CallState::Done => {}
            }
        });
    }

    pub(crate) fn on_cancel(&mut self, id: u64, req: &Msg, src: SocketAddr, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            self.reply(req, 481, src, |r| r);
            return;
        };
        if call.a_invite.cseq.num != req.cseq.num || call.a_invite.from.tag() != req.from.tag() {
            self.reply(req, 481, src, |r| r);
            return;
        }
        let tag = call.a_to_tag.clone();
        let r = self.response(req, 200, Some(&tag), src).to_bytes();
        self.send(src, r);
        self.with_call(id, |core, call| {
            if call.a_final.is_some() {
                return;
            }
            info!(call_id = %call.a_call_id(), slot = ?call.slot, "call cancelled by the caller");
            core.respond_a(call, 487, None, None, now);
            if call.b_provisional {
                core.send_b_cancel(call, now);
            } else {
                call.cancel_pending = true;
            }
            core.release_slot(call);
            call.state = CallState::Cancelling;
            call.timer_c = None;
            let at = now + core.cfg.t1 * 66;
            core.set_linger(call, at);
        });
    }

    pub(crate) fn on_bye_response(&mut self, id: u64, side: Side, resp: &Msg, now: Instant) {
        let _ = resp;
        if !self.stop_retrans(RtKey::Bye(id, side)) {
            return;
        }
        self.with_call(id, |core, call| {
            if !core.retransmitting(RtKey::Bye(id, Side::A))
                && !core.retransmitting(RtKey::Bye(id, Side::B))
                && call.state == CallState::Terminating
            {
                info!(call_id = %call.a_call_id(), "call ended");
                core.finish(call, now);
            }
        });
    }

    pub(crate) fn on_retrans_timeout(&mut self, key: RtKey, now: Instant) {
        match key {
            RtKey::BInvite(id) => self.with_call(id, |core, call| {
                // Timer B: the callee never answered.
                match call.state {
                    CallState::Calling => {
                        info!(call_id = %call.a_call_id(), slot = ?call.slot, "callee does not respond (timer B)");
                        core.respond_a(call, 408, None, None, now);
                        core.finish(call, now);
                    }
                    CallState::Cancelling => core.finish(call, now),
                    _ => {}
                }
            }),
            RtKey::AFinal(id) => self.with_call(id, |core, call| {
                if call.state == CallState::Answered {
                    // §13.3.1.4: no ACK for our 2xx: end the session.
                    warn!(call_id = %call.a_call_id(), slot = ?call.slot, "no ACK from the caller; ending the call");
                    core.send_b_ack(call);
                    core.send_bye(call, Side::B, now);
                    core.send_bye(call, Side::A, now);
                    core.release_slot(call);
                    call.state = CallState::Terminating;
                    let at = now + core.cfg.t1 * 66;
                    core.set_linger(call, at);
                }
            }),
            RtKey::Bye(id, _) => self.with_call(id, |core, call| {
                if !core.retransmitting(RtKey::Bye(id, Side::A))
                    && !core.retransmitting(RtKey::Bye(id, Side::B))
                    && call.state == CallState::Terminating
                {
                    core.finish(call, now);
                }
            }),
            RtKey::ReInvite(id) => self.on_reinvite_timeout(id, now),
            RtKey::Update(id) => self.on_update_timeout(id),
            RtKey::Cancel(_) | RtKey::ReFinal(_) => {}
        }
    }

    pub(crate) fn on_timer_c(&mut self, id: u64, at: Instant, now: Instant) {
        self.with_call(id, |core, call| {
            if call.timer_c != Some(at) || call.state != CallState::Proceeding {
                return;
            }
            info!(call_id = %call.a_call_id(), slot = ?call.slot, "no final response from the callee (timer C)");
            call.timer_c = None;
            core.send_b_cancel(call, now);
            core.respond_a(call, 408, None, None, now);
            core.release_slot(call);
            call.state = CallState::Cancelling;
            let at = now + core.cfg.t1 * 66;
            core.set_linger(call, at);
        });
    }

    pub(crate) fn on_linger(&mut self, id: u64, at: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.linger != Some(at) {
            return;
        }
        debug!(call_id = %call.a_call_id(), "call state dropped");
        self.forget(id);
    }
}

impl SipCore {
    /// An in-dialog INVITE from `side`: relayed into the other dialog with
    /// its SDP rewritten, the slot reprogrammed (new peer, direction).
    fn on_reinvite(&mut self, id: u64, side: Side, req: Msg, src: SocketAddr, now: Instant) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.reinvite_in(&mut call, side, req, src, now);
        self.calls.insert(id, call);
    }

    fn reinvite_in(
        &mut self,
        call: &mut Call,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        if let Some(ri) = &call.reinvite {
            if ri.from == side && ri.req.cseq.num == req.cseq.num {
                if let Some(bytes) = ri.last_response.clone() {
                    self.send(src, bytes);
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
                self.reply(&req, 491, src, |r| r);
                return;
            }
            _ => {
                self.reply(&req, 481, src, |r| r);
                return;
            }
        }
        let trying = self.response(&req, 100, None, src).to_bytes();
        self.send(src, trying.clone());
        let other = side.other();
        let prev = call.media[side.leg()].clone();
        let Ok(body) = self.relay_offer(call, side, &req, src) else {
            return;
        };
        let branch = new_branch();
        let (cseq, dest, out) = self.new_in_dialog(call, other, rsip::Method::Invite, &branch);
        let mut out = out
            .header("Contact", self.our_contact())
            .header("Allow", ALLOW);
        if let Some(b) = body {
            out = out.body("application/sdp", b);
        }
        let ruri = match other {
            Side::A => call
                .a_invite
                .contacts()
                .first()
                .map(|c| c.uri.clone())
                .unwrap_or_else(|| call.a_invite.from.uri.clone()),
            Side::B => call.b_target.clone().unwrap_or_else(|| call.b_ruri.clone()),
        };
        info!(call_id = %call.a_call_id(), slot = ?call.slot, ?side, sdp = req.has_sdp(), "re-INVITE relayed");
        self.send_retrans(RtKey::ReInvite(call.id), dest, out.to_bytes(), false, now);
        call.reinvite = Some(ReInvite {
            from: side,
            req,
            src,
            cseq,
            branch,
            ruri,
            prev,
            final_code: None,
            last_response: Some(trying),
            ack: None,
        });
    }

    /// Whether `resp` (from dialog `side`) answers our relayed re-INVITE.
    pub(crate) fn is_reinvite_response(&self, id: u64, side: Side, resp: &Msg) -> bool {
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
    pub(crate) fn on_reinvite_response(&mut self, id: u64, resp: &Msg, now: Instant) {
        self.with_call(id, |core, call| core.reinvite_response(call, resp, now));
    }

    fn reinvite_response(&mut self, call: &mut Call, resp: &Msg, now: Instant) {
        let Some(ri) = call.reinvite.take() else {
            return;
        };
        let mut ri = ri;
        let code = resp.code().unwrap_or(0);
        let other = ri.from.other();
        let other_dest = match other {
            Side::A => call.a_src,
            Side::B => call.b_dest,
        };
        self.stop_retrans(RtKey::ReInvite(call.id));
        if code < 200 {
            call.reinvite = Some(ri);
            return;
        }
        if ri.final_code.is_some() {
            // Retransmitted final: repeat our ACK.
            if let Some(ack) = ri.ack.clone() {
                self.send(other_dest, ack);
            }
            call.reinvite = Some(ri);
            return;
        }
        let mut r = self.response(&ri.req, code, None, ri.src);
        if code < 300 {
            if resp.has_sdp() {
                let b = if ri.req.has_sdp() {
                    self.apply_answer(call, other, resp.body())
                } else {
                    // Late offer: the 2xx offers, the sender's ACK answers.
                    self.apply_offer(call, other, resp.body()).ok()
                };
                if let Some(b) = b {
                    r = r.body("application/sdp", b);
                }
            }
            r.push("Contact", self.our_contact());
        } else {
            // §17.1.1.3 ACK on the re-INVITE's branch; the offer failed, so
            // the sender's media goes back to what it was.
            let ack = OutMsg::request(rsip::Method::Ack, &ri.ruri)
                .header("Via", self.our_via(&ri.branch))
                .header("Max-Forwards", "70")
                .header("From", resp.header("From").unwrap_or_default().to_string())
                .header("To", resp.header("To").unwrap_or_default().to_string())
                .header("Call-ID", resp.call_id.clone())
                .header("CSeq", format!("{} ACK", ri.cseq))
                .to_bytes();
            self.send(other_dest, ack.clone());
            ri.ack = Some(ack);
            if ri.req.has_sdp() {
                call.media[ri.from.leg()] = ri.prev.clone();
                self.program(call);
            }
        }
        info!(call_id = %call.a_call_id(), slot = ?call.slot, code, "re-INVITE answered");
        let bytes = r.to_bytes();
        ri.final_code = Some(code);
        ri.last_response = Some(bytes.clone());
        self.send_retrans(RtKey::ReFinal(call.id), ri.src, bytes, true, now);
        call.reinvite = Some(ri);
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
    pub(crate) fn on_reinvite_ack(&mut self, id: u64, ack: &Msg) {
        self.with_call(id, |core, call| {
            let Some(mut ri) = call.reinvite.take() else {
                return;
            };
            core.stop_retrans(RtKey::ReFinal(call.id));
            if ri.final_code.is_some_and(|c| c < 300) && ri.ack.is_none() {
                let other = ri.from.other();
                let body = if ack.has_sdp() {
                    core.apply_answer(call, ri.from, ack.body())
                } else {
                    None
                };
                let mut out = match other {
                    Side::A => core.a_in_dialog(call, rsip::Method::Ack, ri.cseq, &new_branch()),
                    Side::B => core.b_in_dialog(call, rsip::Method::Ack, ri.cseq, &new_branch()),
                };
                if let Some(b) = body {
                    out = out.body("application/sdp", b);
                }
                let dest = match other {
                    Side::A => call.a_src,
                    Side::B => call.b_dest,
                };
                let bytes = out.to_bytes();
                core.send(dest, bytes.clone());
                ri.ack = Some(bytes);
            }
            call.reinvite = Some(ri);
        });
    }

    /// Our relayed re-INVITE got no answer (timer B): 408 to its sender.
    pub(crate) fn on_reinvite_timeout(&mut self, id: u64, now: Instant) {
        self.with_call(id, |core, call| {
            let Some(mut ri) = call.reinvite.take() else {
                return;
            };
            if ri.final_code.is_none() {
                if ri.req.has_sdp() {
                    call.media[ri.from.leg()] = ri.prev.clone();
                    core.program(call);
                }
                let bytes = core.response(&ri.req, 408, None, ri.src).to_bytes();
                ri.final_code = Some(408);
                ri.last_response = Some(bytes.clone());
                core.send_retrans(RtKey::ReFinal(call.id), ri.src, bytes, true, now);
            }
            call.reinvite = Some(ri);
        });
    }
}

impl SipCore {
    /// An UPDATE (RFC 3311) from `side` of call `id`: relayed into the
    /// other dialog with its offer rewritten; the slot follows the offer at
    /// once and the answer when it comes. Allowed in a confirmed dialog and
    /// in an early one once the callee's 18x gave both dialogs their tags.
    pub(crate) fn on_update(
        &mut self,
        id: u64,
        side: Side,
        req: Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            self.reply(&req, 481, src, |r| r);
            return;
        };
        self.update_in(&mut call, side, req, src, now);
        self.calls.insert(id, call);
    }

    fn update_in(&mut self, call: &mut Call, side: Side, req: Msg, src: SocketAddr, now: Instant) {
        if let Some(u) = &call.update {
            if u.from == side && u.req.cseq.num == req.cseq.num {
                // Retransmission: repeat the final response, if any yet.
                if let Some(bytes) = u.last_response.clone() {
                    self.send(src, bytes);
                }
                return;
            }
        }
        // An 18x with a To tag made both dialogs early ones (we relayed it
        // to the caller with our tag), and its SDP gave the callee's media.
        let early = call.state == CallState::Proceeding
            && call.b_to_tag.is_some()
            && call.media[1].is_some();
        if !(early || matches!(call.state, CallState::Answered | CallState::Confirmed)) {
            self.reply(&req, 481, src, |r| r);
            return;
        }
        if req.max_forwards() == Some(0) {
            self.reply(&req, 483, src, |r| r);
            return;
        }
        let busy = call.update.as_ref().is_some_and(|u| u.final_code.is_none())
            || call
                .reinvite
                .as_ref()
                .is_some_and(|r| r.final_code.is_none());
        if busy {
            // RFC 3311 §5.2: an offer while one is outstanding.
            self.reply(&req, 491, src, |r| r.header("Retry-After", "1"));
            return;
        }
        let prev = call.media[side.leg()].clone();
        let Ok(body) = self.relay_offer(call, side, &req, src) else {
            return;
        };
        let branch = new_branch();
        let (cseq, dest, out) =
            self.new_in_dialog(call, side.other(), rsip::Method::Update, &branch);
        let mut out = out.header("Contact", self.our_contact());
        if let Some(b) = body {
            out = out.body("application/sdp", b);
        }
        info!(call_id = %call.a_call_id(), slot = ?call.slot, ?side, sdp = req.has_sdp(), "UPDATE relayed");
        self.send_retrans(RtKey::Update(call.id), dest, out.to_bytes(), true, now);
        call.update = Some(Update {
            from: side,
            req,
            src,
            cseq,
            branch,
            prev,
            final_code: None,
            last_response: None,
        });
    }

    /// A response (from dialog `side`) to an UPDATE we relayed: the final
    /// one goes back to the UPDATE's sender with the answer rewritten; a
    /// failure restores the sender's previous media.
    pub(crate) fn on_update_response(&mut self, id: u64, side: Side, resp: &Msg) {
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
            self.stats.stray_responses += 1;
            return;
        }
        let code = resp.code().unwrap_or(0);
        if code < 200 {
            return;
        }
        self.with_call(id, |core, call| {
            let Some(mut u) = call.update.take() else {
                return;
            };
            if u.final_code.is_some() {
                call.update = Some(u);
                return;
            }
            core.stop_retrans(RtKey::Update(call.id));
            let mut r = core.response(&u.req, code, None, u.src);
            if code < 300 {
                if resp.has_sdp() {
                    if let Some(b) = core.apply_answer(call, side, resp.body()) {
                        r = r.body("application/sdp", b);
                    }
                }
                r.push("Contact", core.our_contact());
            } else {
                if u.req.has_sdp() {
                    call.media[u.from.leg()] = u.prev.clone();
                    core.program(call);
                }
                if code == 491 {
                    r.push("Retry-After", "1");
                }
            }
            info!(call_id = %call.a_call_id(), slot = ?call.slot, code, "UPDATE answered");
            let bytes = r.to_bytes();
            core.send(u.src, bytes.clone());
            u.final_code = Some(code);
            u.last_response = Some(bytes);
            call.update = Some(u);
        });
    }

    /// Our relayed UPDATE got no answer (timer F): 408 to its sender, whose
    /// media goes back to what it was.
    pub(crate) fn on_update_timeout(&mut self, id: u64) {
        self.with_call(id, |core, call| {
            let Some(mut u) = call.update.take() else {
                return;
            };
            if u.final_code.is_none() {
                if u.req.has_sdp() {
                    call.media[u.from.leg()] = u.prev.clone();
                    core.program(call);
                }
                let bytes = core.response(&u.req, 408, None, u.src).to_bytes();
                core.send(u.src, bytes.clone());
                u.final_code = Some(408);
                u.last_response = Some(bytes);
            }
            call.update = Some(u);
        });
    }
}

fn trying_for_retrans(core: &SipCore, req: &Msg, src: SocketAddr) -> Vec<u8> {
    core.response(req, 100, None, src).to_bytes()
}
