//! The B2BUA with media anchoring (RFC 3261 UAS toward the caller, UAC
//! toward the callee; RFC 3264 offer/answer through a relay slot).
//!
//! A [`Call`] is two `Dialog`s of one type: the caller's ([`Side::Caller`],
//! where we are the UAS) and a new dialog with its own Call-ID and tags
//! toward the registered contact ([`Side::Callee`], where we are the UAC).
//! The caller's SDP offer is rewritten to point at slot leg 1 before it
//! goes to the callee, and the callee's answer to point at slot leg 0
//! before it goes to the caller.
//!
//! ```text
//! caller            tern                     callee
//!  INVITE ─────────▶ 100 ◀─  reserve slot, program leg 0
//!                    INVITE (new Call-ID, SDP → leg 1) ─▶
//!   ◀──── 180 ◀───────────────────────────── 180
//!   ◀──── 200 (SDP → leg 0) ◀─ program leg 1 ─ 200
//!  ACK ────────────▶ ACK (callee dialog) ───▶
//!  BYE ────────────▶ 200 ; BYE ─────────────▶ ; release slot
//! ```
//!
//! Failure finals from the callee are ACKed (same branch, §17.1.1.3) and
//! passed back with the same status code; CANCEL is relayed; the slot is
//! released whenever the call ends. A re-INVITE or UPDATE from either side
//! (hold, resume, new address, session refresh) is relayed into the other
//! dialog with its SDP rewritten, and the slot's peers and directions
//! follow the new offer/answer; a failed one restores the previous media.
//!
//! [`B2bua`] owns the calls. The core (`SipCore`) routes a
//! new INVITE (authentication, location lookup) and drives the B2BUA
//! through `Tu`, which lends it the outgoing queue, timers,
//! retransmissions, configuration and relay; nothing here reaches back
//! into the core.
//!
//! Files, by flow:
//! - [`dialog`]: `Dialog` and [`Side`]; [`call`]: [`Call`], its
//!   INVITE transactions and relayed offers.
//! - `invite.rs`: the initial INVITE, its responses, the caller's ACK and
//!   timer C; it hands provisionals and 2xx to `prack.rs`.
//! - `prack.rs`: PRACK (RFC 3262), 100rel terminated per leg: the
//!   callee's reliable provisionals PRACKed, our own sent reliably to a
//!   caller that supports them, the caller's PRACKs answered.
//! - `reoffer.rs`: offers inside a dialog, re-INVITE (RFC 3261 §14) and
//!   UPDATE (RFC 3311).
//! - `session.rs`: session timers (RFC 4028) passed end to end, and the
//!   end of a call whose session interval passed without a refresh;
//!   `invite.rs` and `reoffer.rs` call it, and it imports only the shared
//!   files below.
//! - `info.rs`: INFO (RFC 6086, DTMF and other packages) relayed into
//!   the other dialog and its response back.
//! - `teardown.rs`: BYE, CANCEL, timeouts and the end of a call.
//! - `transfer.rs`: REFER (RFC 3515) with NOTIFY sipfrag, blind and
//!   attended (Replaces, RFC 3891): the slot leg facing the referrer is
//!   handed to the target, the referrer gets its NOTIFYs and then BYE.
//!   It imports only the shared files; `teardown.rs` asks it (as a
//!   method) whether a BYE is the referrer's.
//! - Shared by the flows, importing none of them: `media.rs` (slot
//!   configuration, SDP offer/answer steps), `webrtc.rs` (each leg's
//!   kind, and the DTLS-SRTP and ICE-lite a WebRTC leg terminates) and
//!   `send.rs` (our Via and
//!   Contact, responses to the caller, ACK, BYE, CANCEL). This file
//!   imports only those, so no two files import each other.
//! - `fork.rs`: parallel forking to every contact of a user (RFC 3261
//!   §16.7): one outgoing dialog per contact, the responding fork swapped
//!   in as the call's callee dialog, the first 2xx wins.
//! - Routing beyond registered users (`[[routes]]`, trunks) belongs to the
//!   core's side of `B2bua::new_call`: it picks the `Target`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use crate::msg::Msg;
use crate::retransmit::{RtKey, TimerEv};
use crate::tu::Tu;
use media::release_slot;

pub mod call;
pub mod dialog;
mod failover;
mod fork;
mod info;
mod invite;
mod media;
mod moh;
mod prack;
mod reoffer;
mod send;
mod session;
mod teardown;
mod transfer;
mod webrtc;

pub(crate) use call::Target;
pub use call::{leg_directions, Call, CallState};
pub use dialog::Side;
pub(crate) use failover::TrunkLeg;
pub(crate) use transfer::Referred;
pub use transfer::REFERRER_BYE_AFTER;

/// Calls the call map is sized for at start (live plus lingering).
const CALLS_RESERVED: usize = 65_536;

/// The B2BUA: every call, live or lingering, and the index from Call-IDs
/// to their dialogs.
#[derive(Debug)]
pub struct B2bua {
    /// Boxed: a call is large, and the map moves its values when it grows
    /// (tens of thousands of calls linger 64·T1 after they end at high call
    /// rates) and on every remove/insert around a message.
    calls: HashMap<u64, Box<Call>>,
    /// Calls not yet lingering (in progress or up), by id: what observers
    /// list and what holds relay slots, without a pass over the lingering
    /// ones.
    live: BTreeSet<u64>,
    /// Call-ID → (call, side). Both dialogs of a call are indexed.
    dialogs: HashMap<String, (u64, Side)>,
    next_call: u64,
    /// Calls going out through a trunk (`failover.rs`), by id.
    trunk_legs: HashMap<u64, TrunkLeg>,
    /// Which trunk gateways are up (`crate::trunk_health`): `failover.rs`
    /// reports to it, the core routes and probes by it.
    pub(crate) gateways: crate::trunk_health::Health,
    /// Call-ID → call, for the dialog a transfer holds (`transfer.rs`):
    /// its target's before the target answers, the referrer's after.
    transfers: HashMap<String, u64>,
}

impl Default for B2bua {
    fn default() -> Self {
        B2bua::new()
    }
}

impl B2bua {
    /// No calls. The maps are sized for the calls lingering 64·T1 (32 s)
    /// at 2,000 calls/s, so they do not grow (and stall the loop) under
    /// load: about 6 MiB of buckets, faulted in only as they are used.
    pub fn new() -> B2bua {
        B2bua {
            calls: HashMap::with_capacity(CALLS_RESERVED),
            live: BTreeSet::new(),
            dialogs: HashMap::with_capacity(2 * CALLS_RESERVED),
            next_call: 1,
            trunk_legs: HashMap::new(),
            gateways: crate::trunk_health::Health::default(),
            transfers: HashMap::new(),
        }
    }

    /// Calls that still hold state (including finished ones lingering to
    /// absorb retransmissions).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Calls holding a relay slot.
    pub fn active_calls(&self) -> usize {
        // Lingering calls have released their slots.
        self.live_calls().filter(|c| c.slot.is_some()).count()
    }

    /// Calls in progress or up (not lingering after their end), by id.
    pub fn live_calls(&self) -> impl Iterator<Item = &Call> + '_ {
        self.live
            .iter()
            .filter_map(|id| self.calls.get(id).map(|c| &**c))
    }

    /// The dialog `req` belongs to: by Call-ID, and for a request with a
    /// To tag only if it carries that dialog's tags (§12.2.2; a Call-ID
    /// alone is not enough to touch a call).
    /// Whether `call_id` names a dialog of a call held (in progress, up
    /// or lingering), a transfer's included.
    pub fn has_call_id(&self, call_id: &str) -> bool {
        self.dialogs.contains_key(call_id) || self.transfers.contains_key(call_id)
    }

    pub(crate) fn dialog_of(&self, req: &Msg) -> Option<(u64, Side)> {
        let (id, side) = self.dialogs.get(&req.call_id).copied()?;
        if req.to.tag().is_some()
            && !self
                .calls
                .get(&id)
                .is_some_and(|c| c.dialog(side).matches(req))
        {
            debug!(call_id = %req.call_id, method = req.method().unwrap_or(""), "tags match no dialog");
            return None;
        }
        Some((id, side))
    }

    /// Runs `f` on call `id` (taken out of the map meanwhile), if it exists.
    fn with_call(&mut self, id: u64, f: impl FnOnce(&mut B2bua, &mut Call)) {
        if let Some(mut call) = self.calls.remove(&id) {
            f(self, &mut call);
            self.calls.insert(id, call);
        }
    }

    /// Ends a call: state Done, slot released, state dropped after 64*T1.
    fn finish(&mut self, tu: &mut Tu<'_>, call: &mut Call, now: Instant) {
        release_slot(tu, call);
        call.state = CallState::Done;
        call.timer_c = None;
        self.set_linger(tu, call, now + tu.cfg.t1 * 64);
    }

    fn set_linger(&mut self, tu: &mut Tu<'_>, call: &mut Call, at: Instant) {
        call.linger = Some(at);
        self.live.remove(&call.id);
        tu.schedule(at, TimerEv::Linger(call.id));
    }

    /// Drops call `id` at once: slot, dialogs and retransmissions.
    fn forget(&mut self, tu: &mut Tu<'_>, id: u64) {
        self.live.remove(&id);
        self.trunk_legs.remove(&id);
        if let Some(mut call) = self.calls.remove(&id) {
            release_slot(tu, &mut call);
            B2bua::forget_forks(tu, &call, &mut self.dialogs);
            // A dialog an attended transfer moved to another call stays.
            for d in &call.dialogs {
                if self.dialogs.get(&d.call_id).is_some_and(|e| e.0 == id) {
                    self.dialogs.remove(&d.call_id);
                }
            }
            if let Some(t) = &call.transfer {
                if self.transfers.get(&t.other.call_id) == Some(&id) {
                    self.transfers.remove(&t.other.call_id);
                }
            }
            for k in RtKey::all_of(id) {
                tu.stop_retrans(k);
            }
            for i in &call.infos {
                tu.stop_retrans(RtKey::Info(id, i.cseq));
            }
        }
    }

    /// A finished call's linger timer `at` fired: its state goes.
    pub(crate) fn on_linger(&mut self, tu: &mut Tu<'_>, id: u64, at: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.linger != Some(at) {
            return;
        }
        debug!(call_id = %call.call_id(), "call state dropped");
        self.forget(tu, id);
    }

    /// An ACK in dialog `side` of call `id`: for our 2xx to a replacing
    /// INVITE (`transfer.rs`), to a re-INVITE, or to the caller's INVITE;
    /// the callee sends none.
    pub(crate) fn on_ack(&mut self, tu: &mut Tu<'_>, id: u64, side: Side, ack: &Msg) {
        if self.on_replacing_ack(tu, id, side, ack) {
            return;
        }
        if self.is_reinvite_ack(id, side, ack) {
            self.on_reinvite_ack(tu, id, ack);
        } else if side == Side::Caller {
            self.on_caller_ack(tu, id);
        } else {
            debug!(call = id, "ACK from callee ignored");
        }
    }

    /// A response from the network: matched to its call by Call-ID, then
    /// to the request of ours it answers by CSeq method (and branch).
    /// Anything else counts as stray.
    pub(crate) fn on_response(
        &mut self,
        tu: &mut Tu<'_>,
        resp: &Msg,
        src: SocketAddr,
        now: Instant,
    ) {
        if let Some(&id) = self.transfers.get(&resp.call_id) {
            self.on_transfer_response(tu, id, resp, now);
            return;
        }
        let Some((id, side)) = self.dialogs.get(&resp.call_id).copied() else {
            tu.stats.stray_responses += 1;
            debug!(call_id = %resp.call_id, %src, "stray response dropped");
            return;
        };
        if side == Side::Callee && self.on_fork_response(tu, id, resp, now) {
            return;
        }
        if self.is_transfer_response(id, side, resp) {
            self.on_transfer_response(tu, id, resp, now);
            return;
        }
        match (resp.cseq.method.as_str(), side) {
            ("INVITE", side) if self.is_reinvite_response(id, side, resp) => {
                self.on_reinvite_response(tu, id, resp, now)
            }
            ("INVITE", Side::Callee) => {
                self.trunk_response(id, resp.code().unwrap_or(0), src);
                self.on_callee_invite_response(tu, id, resp, now)
            }
            ("BYE", side) => self.on_bye_response(tu, id, side, now),
            ("CANCEL", Side::Callee) => {
                tu.stop_retrans(RtKey::Cancel(id));
            }
            ("UPDATE", side) => self.on_update_response(tu, id, side, resp, now),
            ("INFO", side) => self.on_info_response(tu, id, side, resp),
            ("PRACK", Side::Callee) => self.on_prack_response(tu, id, resp),
            _ => {
                tu.stats.stray_responses += 1;
            }
        }
    }
}
