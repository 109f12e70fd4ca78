//! [`Call`]: two `Dialog`s bridged through a relay slot, with the state
//! of the INVITE that set them up and of any offer being relayed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use tern_shared::table::Direction;

use super::dialog::{Dialog, Side};
use super::webrtc::LegWebrtc;
use crate::msg::Msg;
use crate::rel100::Support;
use crate::sdp::AudioInfo;
use crate::session_timer::SessionExpires;

/// Where the core routed a new call: the callee's contact.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The contact URI: the Request-URI of our INVITE.
    pub(crate) uri: String,
    /// Where the INVITE is sent.
    pub(crate) dest: SocketAddr,
    /// The callee registered or is reached over WS/WSS (RFC 7118): it is
    /// offered WebRTC media (RFC 8829) until its answer says otherwise.
    pub(crate) webrtc: bool,
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
    /// The sender's WebRTC state before its offer, restored likewise.
    pub(crate) prev_webrtc: LegWebrtc,
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
    /// The sender's WebRTC state before its offer, restored likewise.
    pub(crate) prev_webrtc: LegWebrtc,
    pub(crate) final_code: Option<u16>,
    /// Our final response, repeated for a retransmitted UPDATE.
    pub(crate) last_response: Option<Vec<u8>>,
}

/// An INFO (RFC 6086) relayed from one dialog into the other, body and
/// all (DTMF as `application/dtmf-relay` or `application/dtmf`, or any
/// other package).
#[derive(Debug)]
pub(crate) struct Info {
    /// Who sent it (we are its UAS).
    pub(crate) from: Side,
    pub(crate) req: Msg,
    pub(crate) src: SocketAddr,
    /// Our INFO in the other dialog: CSeq and branch.
    pub(crate) cseq: u32,
    pub(crate) branch: String,
    /// Our final response, repeated for a retransmitted INFO.
    pub(crate) last_response: Option<Vec<u8>>,
}

/// A negotiated session interval (RFC 4028) and when it runs out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    /// The `Session-Expires` of the 2xx that set it, as relayed.
    pub(crate) se: SessionExpires,
    /// When tern ends the call unless a refresh comes first.
    pub(crate) expires: Instant,
}

/// The caller's INVITE, of which we are the server transaction.
#[derive(Debug)]
pub(crate) struct InviteServer {
    /// The request as received (its Via, From, To, CSeq answer it).
    pub(crate) req: Msg,
    /// Our last response to it, repeated for a retransmitted INVITE.
    pub(crate) last_response: Option<Vec<u8>>,
    /// Our final status code, once sent.
    pub(crate) final_code: Option<u16>,
    /// The callee's `Min-SE`, for a 422 relayed to the caller.
    pub(crate) min_se: Option<u32>,
}

/// Our INVITE to the callee, of which we are the client transaction.
///
/// A forked call holds one of these, with its early [`Dialog`], per
/// fork (`fork.rs`); PRACK (RFC 3262) state for reliable provisionals
/// belongs here too.
#[derive(Debug)]
pub(crate) struct InviteClient {
    /// Its CSeq number.
    pub(crate) cseq: u32,
    /// Its Via branch (a CANCEL and a failure's ACK reuse it, §9.1, §17.1.1.3).
    pub(crate) branch: String,
    /// Its Request-URI: the callee's registered contact.
    pub(crate) ruri: String,
    /// A provisional response came (a CANCEL may be sent, §9.1).
    pub(crate) provisional: bool,
    /// Our ACK for its 2xx, repeated for a retransmitted 2xx.
    pub(crate) ack: Option<Vec<u8>>,
    /// Our ACK for its failure response, repeated likewise.
    pub(crate) fail_ack: Option<Vec<u8>>,
    /// A CANCEL waits for the first provisional response.
    pub(crate) cancel_pending: bool,
    /// The `RSeq` of the last reliable provisional of this INVITE we
    /// PRACKed (RFC 3262 §4: the next one must be one higher).
    pub(crate) rseq: Option<u32>,
    /// The CSeq number of our PRACK awaiting its response.
    pub(crate) prack_cseq: Option<u32>,
}

/// A provisional response waiting to go to the caller reliably.
#[derive(Debug)]
pub(crate) struct Provisional {
    pub(crate) code: u16,
    pub(crate) reason: Option<String>,
    /// Its SDP (the answer, rewritten to the slot), if any.
    pub(crate) sdp: Option<Vec<u8>>,
}

/// 100rel toward the caller (RFC 3262 §3; `prack.rs`): tern is the UAS
/// of the caller's INVITE and numbers its own reliable provisionals.
#[derive(Debug, Default)]
pub(crate) struct Rel100 {
    /// What the caller's INVITE said of 100rel.
    pub(crate) caller: Support,
    /// The `RSeq` of our last reliable provisional to the caller; the
    /// first is this plus one (random, §3).
    pub(crate) rseq: u32,
    /// Our latest reliable provisional to the caller: its `RSeq`,
    /// whether it carried SDP, and whether the caller PRACKed it.
    pub(crate) sent: Option<(u32, bool, bool)>,
    /// Reliable provisionals behind an unacknowledged one (§3: one at a
    /// time), oldest first.
    pub(crate) queue: VecDeque<Provisional>,
    /// The callee's 2xx, held while a reliable provisional with SDP is
    /// unacknowledged (§3).
    pub(crate) held_final: Option<Msg>,
    /// The caller's last PRACK answered: its CSeq number and our 200.
    pub(crate) last_prack: Option<(u32, Vec<u8>)>,
    /// A reliable provisional to the caller carried the answer.
    pub(crate) answered: bool,
    /// The answer last sent to the caller in an unreliable provisional,
    /// for a 2xx of the callee's without SDP.
    pub(crate) answer: Option<Vec<u8>>,
}

/// One fork of a forked call (`fork.rs`) that is not the primary: its
/// dialog and INVITE.
#[derive(Debug)]
pub(crate) struct Fork {
    /// Its number (0 for the first contact).
    pub(crate) n: u8,
    pub(crate) dialog: Dialog,
    pub(crate) uac: InviteClient,
}

/// The forks of a call.
#[derive(Debug)]
pub(crate) struct Forking {
    /// The number of the fork in the call's callee dialog.
    pub(crate) primary: u8,
    /// The other forks.
    pub(crate) others: Vec<Fork>,
    /// Each fork's failure (final >= 300, or 408 for no answer), by number.
    pub(crate) finals: Vec<Option<u16>>,
}

/// A transfer (RFC 3515) asked for by the party of dialog `from` with a
/// REFER: the slot leg facing `from` is handed to a target, reached
/// with a new INVITE (blind) or a re-INVITE in a dialog of another call
/// (attended, RFC 3891; `b2bua/transfer.rs`).
#[derive(Debug)]
pub(crate) struct Transfer {
    /// The referrer's side of the call: the slot leg that changes hands.
    pub(crate) from: Side,
    /// Until the target's 2xx, the target's dialog; after it, the
    /// referrer's old one (the two are swapped).
    pub(crate) other: Dialog,
    /// The target answered: `other` is the referrer's old dialog.
    pub(crate) swapped: bool,
    /// Our INVITE (or re-INVITE) to the target.
    pub(crate) uac: InviteClient,
    /// The attended case: the call whose dialog with the target this
    /// transfer took (it ends once the target answers).
    pub(crate) replaces: Option<u64>,
    /// The REFER's CSeq number and our response, for a retransmission.
    pub(crate) refer_cseq: u32,
    pub(crate) refer_response: Vec<u8>,
    /// The CSeq number of our latest NOTIFY to the referrer.
    pub(crate) notify_cseq: u32,
    /// The final status of the target's INVITE, once NOTIFYed.
    pub(crate) final_code: Option<u16>,
    /// The call's offer before the transfer, restored when it fails.
    pub(crate) prev_offer: Vec<u8>,
    /// The referrer hung up: no more NOTIFYs, no BYE from us.
    pub(crate) referrer_gone: bool,
    /// When our BYE to the referrer is due.
    pub(crate) bye_at: Option<Instant>,
    /// A replacing INVITE (RFC 3891 §3) took dialog `from`: its CSeq
    /// number, and our 2xx, retransmitted until its ACK.
    pub(crate) replaced_by: Option<(u32, Vec<u8>)>,
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

/// A call's music on hold (`moh.rs`): the play id programmed on each
/// slot leg (0: none), and the last id handed out.
#[derive(Debug, Default)]
pub(crate) struct Moh {
    pub(super) playing: [std::cell::Cell<u32>; 2],
    pub(super) seq: std::cell::Cell<u32>,
}

/// One relayed call: the caller's dialog and the callee's, bridged through
/// a relay slot.
#[derive(Debug)]
pub struct Call {
    pub(crate) id: u64,
    pub(crate) state: CallState,
    /// The relay slot, while held.
    pub(crate) slot: Option<u32>,
    pub(crate) slot_tag: u64,
    /// Our SSRC on slot leg 0 (toward the caller) and leg 1.
    pub(crate) ssrc: [u32; 2],
    /// Each slot leg's media block: transcoding when the parties share no
    /// codec (`sdp_transcode`), else none.
    pub(crate) media: [tern_shared::table::LegMedia; 2],
    /// The caller's dialog (index 0, [`Side::Caller`]) and the callee's
    /// (index 1); see [`Call::dialog`].
    pub(crate) dialogs: [Dialog; 2],
    /// The caller's INVITE.
    pub(crate) uas: InviteServer,
    /// Our INVITE to the callee.
    pub(crate) uac: InviteClient,
    /// A re-INVITE being relayed, or the last one (to absorb retransmissions).
    pub(crate) reinvite: Option<ReInvite>,
    /// An UPDATE being relayed, or the last one.
    pub(crate) update: Option<Update>,
    /// INFOs being relayed, and the last few answered (oldest first).
    pub(crate) infos: Vec<Info>,
    /// The session interval, when one was negotiated (RFC 4028).
    pub(crate) session: Option<Session>,
    /// The latest SDP offer relayed (as the sender wrote it, cut to the
    /// codecs we relay): answers are ordered and restricted by it.
    pub(crate) offer: Vec<u8>,
    /// The latest SDP body each party sent (index: [`Side::leg`]), as
    /// applied: what a transfer offers the new party.
    pub(crate) sdp: [Vec<u8>; 2],
    /// A transfer asked for by REFER, in progress or done.
    pub(crate) transfer: Option<Box<Transfer>>,
    pub(crate) timer_c: Option<Instant>,
    pub(crate) linger: Option<Instant>,
    /// The other contacts rung in parallel, when the user has several
    /// (`fork.rs`).
    pub(crate) forking: Option<Box<Forking>>,
    /// Reliable provisionals toward the caller (RFC 3262).
    pub(crate) rel: Rel100,
    /// Music on hold programmed on the slot (`moh.rs`).
    pub(crate) moh: Moh,
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

    /// The caller's Call-ID (what logs and listings name the call by).
    pub fn call_id(&self) -> &str {
        &self.dialogs[0].call_id
    }

    /// The Call-ID of our dialog with the callee.
    pub fn callee_call_id(&self) -> &str {
        &self.dialogs[1].call_id
    }

    /// The media profile leg `side` speaks: `RTP/AVP` or
    /// `UDP/TLS/RTP/SAVPF` (RFC 5764 §8).
    pub fn leg_profile(&self, side: Side) -> &'static str {
        self.dialog(side).webrtc.profile()
    }

    /// Whether leg `side` is a WebRTC leg (DTLS-SRTP and ICE-lite
    /// terminated by the relay, RFC 8827 §6.5).
    pub fn leg_webrtc(&self, side: Side) -> bool {
        self.dialog(side).webrtc.on
    }

    /// The dialog of `side`.
    pub(crate) fn dialog(&self, side: Side) -> &Dialog {
        &self.dialogs[side.leg()]
    }

    /// The dialog of `side`, to change.
    pub(crate) fn dialog_mut(&mut self, side: Side) -> &mut Dialog {
        &mut self.dialogs[side.leg()]
    }

    /// The caller's dialog.
    pub(crate) fn caller(&self) -> &Dialog {
        &self.dialogs[0]
    }

    /// The callee's dialog.
    pub(crate) fn callee(&self) -> &Dialog {
        &self.dialogs[1]
    }

    /// The callee's dialog, to change.
    pub(crate) fn callee_mut(&mut self) -> &mut Dialog {
        &mut self.dialogs[1]
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
