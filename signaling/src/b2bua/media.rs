//! The media side of a call: the relay slot's configuration from both
//! dialogs' SDP, and the offer/answer steps (RFC 3264) every flow shares.

use tern_shared::table::{Direction, Learning, LegConfig, LegMedia, SlotConfig};
use tracing::{info, warn};

use super::call::{leg_directions, Call};
use super::dialog::Side;
pub(super) use super::webrtc::{LegWebrtc, Op, NO_CERT};
use crate::sdp::{self, AudioInfo, SdpError};
use crate::sdp_transcode;
use crate::sdp_webrtc::{self, LocalWebrtc, WebrtcInfo};
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

/// The slot configuration of `call`: each leg's peer, direction, codec
/// details and security from its party's latest SDP.
///
/// RTCP multiplexing is per leg: a WebRTC leg always muxes (RFC 8829
/// §5.1.3); a plain leg facing one muxes when its party's SDP says so
/// (before its answer, what we offered it: the other party's); two plain
/// legs mux only when both parties do.
fn slot_config(tu: &Tu<'_>, call: &Call) -> SlotConfig {
    let (a, b) = (call.caller().media.as_ref(), call.callee().media.as_ref());
    let dirs = leg_directions(
        a.map_or(Direction::SendRecv, |m| m.direction),
        b.map(|m| m.direction),
    );
    let both = a.is_some_and(|m| m.rtcp_mux) && !matches!(b, Some(m) if !m.rtcp_mux);
    let web = [call.caller().webrtc.on, call.callee().webrtc.on];
    let infos = [a, b];
    let mux = |i: usize| match (web[i], web[i ^ 1]) {
        (true, _) => true,
        (false, true) => infos[i].or(infos[i ^ 1]).is_some_and(|m| m.rtcp_mux),
        (false, false) => both,
    };
    let leg = |i: usize, info: Option<&AudioInfo>| LegConfig {
        peer: info.and_then(|a| a.rtp),
        peer_rtcp: info.and_then(|a| a.rtcp),
        learning: Learning::LearnOnce,
        direction: dirs[i],
        rewrite_ssrc: true,
        out_ssrc: call.ssrc[i],
        rtcp_mux: mux(i),
        payload_types: 0,
        jitter: tu.cfg.jitter,
        // The party's own SDP names the numbers it uses (RFC 3264
        // §5.1 asks both sides to keep one mapping).
        dtmf_pt: info.and_then(|a| a.dtmf_pt),
        clock_rate: info.map_or(0, |a| a.clock_rate),
        secure: call.dialogs[i].webrtc.security(),
        // The SIP plane uses the relay's first interface for both legs.
        iface: 0,
        // The party's codecs (the transcoding plan's when the parties
        // share none); `[media] record`: both legs, one recording per call
        // (its number from the call's tag, so a re-INVITE does not
        // restart it).
        media: LegMedia {
            codecs: match call.media[i].transcode {
                Some(_) => call.media[i].codecs,
                None => info.map(super::moh::codecs_of).unwrap_or_default(),
            },
            record: tu.cfg.record,
            record_id: (call.slot_tag as u32).max(1),
            ..call.media[i]
        },
        // No media control (block, silence) from the SIP plane.
        ..LegConfig::default()
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
    let mut cfg = slot_config(tu, call);
    super::moh::apply(tu, call, &mut cfg);
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

/// Refuses WebRTC media the relay cannot terminate: an SDP from `from`
/// (`w`) that is WebRTC, or a WebRTC party on the other side, with no DTLS
/// certificate in the dataplane.
///
/// Errors: those of [`WebrtcInfo::is_webrtc`], and [`SdpError::Secure`]
/// without a certificate.
pub(super) fn check_secure(
    tu: &Tu<'_>,
    w: &WebrtcInfo,
    other_webrtc: bool,
) -> Result<(), SdpError> {
    if (w.is_webrtc()? || other_webrtc) && tu.relay.dtls_fingerprint().is_none() {
        return Err(SdpError::Secure(NO_CERT));
    }
    Ok(())
}

/// `body`, an SDP of the other side's party, made ready for side `to`:
/// pointed at the slot leg facing `to`, laid out as the `m=` lines `to`
/// negotiated (RFC 3264 §6, §8.1), then made WebRTC for a WebRTC party or
/// plain for a plain one when it came from a WebRTC one. An offer's
/// layout becomes `to`'s.
///
/// Errors: [`SdpError::NotSdp`], [`SdpError::NoAudio`], and
/// [`SdpError::Secure`] for a WebRTC party when the dataplane has no
/// certificate.
pub(super) fn shape(
    tu: &mut Tu<'_>,
    call: &mut Call,
    to: Side,
    body: &[u8],
    op: Op,
) -> Result<Vec<u8>, SdpError> {
    let slot = call.slot.ok_or(SdpError::NoAudio)?;
    let ip = tu.relay.media_ip();
    let ports = tu.relay.leg_ports(slot, to.leg());
    let base = sdp::rewrite(body, ip, ports, 1)?;
    let from_webrtc = call.dialog(to.other()).webrtc.on;
    call.dialog_mut(to).webrtc.ensure_ice(tu.rng);
    let d = call.dialog(to);
    let tw = &d.webrtc;
    let laid = sdp_webrtc::relayout(&base, &tw.layout, ip, tw.on)?;
    let out = match (tw.on, tw.ice) {
        (true, Some(ice)) => {
            let fp = tu
                .relay
                .dtls_fingerprint()
                .ok_or(SdpError::Secure(NO_CERT))?;
            let mid = tw.mid();
            let local = LocalWebrtc {
                ice_ufrag: ice.local_ufrag.as_str(),
                ice_pwd: ice.local_pwd.as_str(),
                fingerprint: &fp,
                setup: match op {
                    Op::Offer => tw.offer_setup(),
                    Op::Answer => tw.answer_setup(),
                },
                mid: &mid,
                ip,
                port: ports.rtp,
            };
            sdp_webrtc::to_webrtc(&laid, &local)?
        }
        _ if from_webrtc => {
            let keep_mux = op == Op::Offer || d.media.as_ref().is_some_and(|m| m.rtcp_mux);
            sdp_webrtc::to_plain(&laid, keep_mux)?
        }
        _ => laid,
    };
    if op == Op::Offer {
        call.dialog_mut(to).webrtc.layout = sdp_webrtc::layout_of(&out);
        if tu.cfg.transcode {
            // The answerer may take a codec only the relay has with the
            // offerer: then the answer is transcoded (`apply_answer`).
            return sdp_transcode::extend_offer(&out);
        }
    }
    Ok(out)
}

/// Takes `body` as the latest SDP (`op`) of side `from`: its media and
/// kind, the slot programmed; returns the body made ready for the other
/// side ([`shape`]). On an error nothing has changed.
fn apply_sdp(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
    op: Op,
) -> Result<Vec<u8>, SdpError> {
    apply_sdp_as(tu, call, from, body, body, op)
}

/// [`apply_sdp`], with `out` shaped for the other side in place of
/// `body` (a transcoded answer names the offerer's codecs, while the
/// answerer's leg is programmed from what it sent).
fn apply_sdp_as(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
    out: &[u8],
    op: Op,
) -> Result<Vec<u8>, SdpError> {
    let slot = call.slot.ok_or(SdpError::NoAudio)?;
    let checked = sdp::parse_audio(body).and_then(|a| {
        let w = sdp_webrtc::read(body)?;
        check_secure(tu, &w, call.dialog(from.other()).webrtc.on)?;
        Ok((a, w))
    });
    let (a, w) = match checked {
        Ok(x) => x,
        Err(e) => {
            warn!(call_id = %call.call_id(), slot, ?from, error = %e, "unusable SDP");
            return Err(e);
        }
    };
    let prev = call.dialog(from).webrtc.clone();
    call.dialog_mut(from).webrtc.take(&w, op, tu.rng)?;
    if prev.on != call.dialog(from).webrtc.on || prev.ice != call.dialog(from).webrtc.ice {
        info!(call_id = %call.call_id(), slot, ?from, profile = call.leg_profile(from), ice_restart = prev.ice.is_some() && prev.ice != call.dialog(from).webrtc.ice, "leg media");
    }
    call.dialog_mut(from).media = Some(a);
    call.sdp[from.leg()] = body.to_vec();
    call.dialog_mut(from.other()).webrtc.ensure_ice(tu.rng);
    program(tu, call);
    shape(tu, call, from.other(), out, op)
}

/// A new offer from `from`: cut to the codecs we relay, remembered for
/// the answer, applied to the slot, and returned made ready for the
/// other side ([`shape`]).
///
/// Errors: [`SdpError::NoCommonCodec`] (→ 488), [`SdpError::Secure`]
/// (→ 488), and the parse errors of [`sdp::restrict_offer`]; the slot is
/// left as it was.
pub(super) fn apply_offer(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
) -> Result<Vec<u8>, SdpError> {
    sdp::parse_audio(body)?;
    let restricted = sdp::restrict_offer(body)?;
    let out = apply_sdp(tu, call, from, &restricted, Op::Offer)?;
    call.offer = restricted;
    Ok(out)
}

/// An answer from `from` to the latest offer: intersected with it in
/// the offerer's order and its direction mirrored (RFC 3264 §6.1),
/// then applied like [`apply_sdp`]. An answer with nothing in common is
/// passed on as it came (with a warning): the offerer is the one to give
/// up on it (RFC 3264 §6.1), and refusing it here would break calls
/// between agents that cope with it, such as SIPp's built-in PCMA
/// `uac_pcap` and PCMU `uas`. `None` when the answer is unusable.
pub(super) fn apply_answer(
    tu: &mut Tu<'_>,
    call: &mut Call,
    from: Side,
    body: &[u8],
) -> Option<Vec<u8>> {
    match sdp::answer_in_offer_order(&call.offer, body) {
        Ok(b) => {
            call.media = Default::default();
            apply_sdp(tu, call, from, &b, Op::Answer).ok()
        }
        Err(SdpError::NoCommonCodec) if tu.cfg.transcode => {
            match sdp_transcode::transcoded_answer(&call.offer, body) {
                Ok((toward_offerer, plan)) => {
                    let (o, a) = (from.other().leg(), from.leg());
                    call.media[o] = plan.offerer;
                    call.media[a] = plan.answerer;
                    info!(
                        call_id = %call.call_id(),
                        offerer = ?plan.offerer.codecs[0].map(|c| c.1),
                        answerer = ?plan.answerer.codecs[0].map(|c| c.1),
                        "no common codec: transcoding"
                    );
                    apply_sdp_as(tu, call, from, body, &toward_offerer, Op::Answer).ok()
                }
                Err(e) => {
                    warn!(call_id = %call.call_id(), ?from, error = %e, "answer passed on as it came");
                    call.media = Default::default();
                    apply_sdp(tu, call, from, body, Op::Answer).ok()
                }
            }
        }
        Err(e) => {
            warn!(call_id = %call.call_id(), ?from, error = %e, "answer passed on as it came");
            apply_sdp(tu, call, from, body, Op::Answer).ok()
        }
    }
}
