//! The media side of a call: the relay slot's configuration from both
//! dialogs' SDP, and the offer/answer steps (RFC 3264) every flow shares.

use tern_shared::table::{Direction, Learning, LegConfig, SlotConfig};
use tracing::{info, warn};

use super::call::{leg_directions, Call};
use super::dialog::Side;
use crate::sdp::{self, AudioInfo, SdpError};
use crate::tu::Tu;

/// The warning code of a 488 for an unusable offer: 305 Incompatible
/// media format when no codec is common (RFC 3261 §20.43), else 399.
pub(super) fn warning_code(e: &SdpError) -> u16 {
    if *e == SdpError::NoCommonCodec {
        305
    } else {
        399
    }
}

/// The slot configuration of `call`: each leg's peer, direction and codec
/// details from its party's latest SDP.
fn slot_config(tu: &Tu<'_>, call: &Call) -> SlotConfig {
    let (a, b) = (call.caller().media.as_ref(), call.callee().media.as_ref());
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
        jitter: tu.cfg.jitter,
        // The party's own SDP names the numbers it uses (RFC 3264
        // §5.1 asks both sides to keep one mapping).
        dtmf_pt: info.and_then(|a| a.dtmf_pt),
        clock_rate: info.map_or(0, |a| a.clock_rate),
        // Plain RTP on both legs until the B2BUA negotiates secure media.
        secure: Default::default(),
    };
    SlotConfig {
        legs: [leg(0, a), leg(1, b)],
        tag: call.slot_tag,
    }
}

/// Programs the call's slot from its dialogs' media; `false` if it holds
/// none or the relay refused.
pub(super) fn program(tu: &mut Tu<'_>, call: &Call) -> bool {
    let Some(slot) = call.slot else {
        return false;
    };
    let cfg = slot_config(tu, call);
    match tu.relay.program(slot, &cfg) {
        Ok(()) => true,
        Err(e) => {
            warn!(call_id = %call.call_id(), slot, error = %e, "programming the relay slot failed");
            false
        }
    }
}

pub(super) fn release_slot(tu: &mut Tu<'_>, call: &mut Call) {
    if let Some(slot) = call.slot.take() {
        match tu.relay.release(slot) {
            Ok(()) => info!(call_id = %call.call_id(), slot, "relay slot released"),
            Err(e) => {
                warn!(call_id = %call.call_id(), slot, error = %e, "releasing the relay slot failed")
            }
        }
    }
}

/// Takes `body` as the latest SDP of side `from`, programs the slot and
/// returns the body rewritten to the relay leg facing the other side
/// (`None` if unusable: the slot is left as it was).
fn apply_sdp(tu: &mut Tu<'_>, call: &mut Call, from: Side, body: &[u8]) -> Option<Vec<u8>> {
    let slot = call.slot?;
    match sdp::parse_audio(body) {
        Ok(a) => {
            call.dialog_mut(from).media = Some(a);
            program(tu, call);
        }
        Err(e) => {
            warn!(call_id = %call.call_id(), slot, ?from, error = %e, "unusable SDP");
            return None;
        }
    }
    let ports = tu.relay.leg_ports(slot, from.other().leg());
    sdp::rewrite(body, tu.relay.media_ip(), ports, 1).ok()
}

/// A new offer from `from`: cut to the codecs we relay, remembered for
/// the answer, applied to the slot, and returned rewritten to the leg
/// facing the other side.
///
/// Errors: [`SdpError::NoCommonCodec`] (→ 488) and the parse errors of
/// [`sdp::restrict_offer`]; the slot is left as it was.
pub(super) fn apply_offer(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
) -> Result<Vec<u8>, SdpError> {
    sdp::parse_audio(body)?;
    let restricted = sdp::restrict_offer(body)?;
    let out = apply_sdp(tu, call, from, &restricted).ok_or(SdpError::NoAudio)?;
    call.offer = restricted;
    Ok(out)
}

/// An answer from `from` to the latest offer: intersected with it in
/// the offerer's order and its direction mirrored (RFC 3264 §6.1),
/// then applied like [`apply_sdp`]. An answer with nothing in common is
/// passed on as it came (with a warning): the offerer is the one to give
/// up on it (RFC 3264 §6.1), and refusing it here would break calls
/// between agents that cope with it, such as SIPp's built-in PCMA
/// `uac_pcap` and PCMU `uas`.
pub(super) fn apply_answer(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
) -> Option<Vec<u8>> {
    match sdp::answer_in_offer_order(&call.offer, body) {
        Ok(b) => apply_sdp(tu, call, from, &b),
        Err(e) => {
            warn!(call_id = %call.call_id(), ?from, error = %e, "answer passed on as it came");
            apply_sdp(tu, call, from, body)
        }
    }
}
