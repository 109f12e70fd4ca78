//! Music on hold (`[media] moh`): while one party holds the other (its
//! SDP says `a=sendonly` or `a=inactive`, or its connection address is
//! `0.0.0.0`, RFC 3264 §8.4 and RFC 2543's way), the held party hears
//! the configured WAV file, played by the dataplane in place of what the
//! holding party sends (a `MediaPlay` on the holding party's slot leg,
//! as ng `play media` makes one); when the hold ends, forwarding resumes.
//!
//! The play id of a hold is kept on the call ([`Moh`]) so that the slot
//! republished during the same hold (a session refresh, the other
//! party's re-INVITE) does not restart the file; a new hold is a new id.
//! The file plays [`u16::MAX`] times back to back, i.e. until the hold
//! ends.
//!
//! Also here: each leg's audio codecs for the slot's media block, which
//! the dataplane encodes the file in.

use tern_shared::table::{Direction, MediaCodec, MediaPlay, SlotConfig, MAX_LEG_CODECS};
use tracing::{info, warn};

use super::call::Call;
use crate::sdp::AudioInfo;
use crate::tu::Tu;

/// Whether a party whose latest SDP is `info` holds the other party.
pub(super) fn holds(info: &AudioInfo) -> bool {
    info.rtp.is_none() || matches!(info.direction, Direction::SendOnly | Direction::Inactive)
}

/// The audio codecs of a party's SDP tern encodes, in `m=` order: the
/// static PCMU (0), PCMA (8) and G722 (9), and Opus as the first dynamic
/// type of a 48 kHz section (the B2BUA relays only PCMU, PCMA, G722,
/// opus and telephone-event).
pub(super) fn codecs_of(info: &AudioInfo) -> [Option<(u8, MediaCodec)>; MAX_LEG_CODECS] {
    let mut out = [None; MAX_LEG_CODECS];
    let mut opus = info.clock_rate == 48000;
    let known = info.payload_types.iter().filter_map(|&pt| match pt {
        0 => Some((0, MediaCodec::Pcmu)),
        8 => Some((8, MediaCodec::Pcma)),
        9 => Some((9, MediaCodec::G722)),
        96..=127 if opus && Some(pt) != info.dtmf_pt => {
            opus = false;
            Some((pt, MediaCodec::Opus))
        }
        _ => None,
    });
    for (o, c) in out.iter_mut().zip(known) {
        *o = Some(c);
    }
    out
}

/// Adds the music on hold `call`'s hold state asks for to `cfg`.
pub(super) fn apply(tu: &mut Tu<'_>, call: &Call, cfg: &mut SlotConfig) {
    let infos = [call.caller().media.as_ref(), call.callee().media.as_ref()];
    for leg in 0..2 {
        let held = infos[leg].is_some_and(holds) && infos[leg ^ 1].is_some();
        let moh = &call.moh;
        let Some(path) = tu.cfg.moh.as_deref().filter(|_| held) else {
            moh.playing[leg].set(0);
            continue;
        };
        let file = match tu.relay.prompt(path) {
            Ok(f) => f,
            Err(e) => {
                warn!(call_id = %call.call_id(), "music on hold: {e}");
                continue;
            }
        };
        let mut id = moh.playing[leg].get();
        if id == 0 {
            id = moh.seq.get().wrapping_add(1).max(1);
            moh.seq.set(id);
            moh.playing[leg].set(id);
            info!(call_id = %call.call_id(), leg, "music on hold");
        }
        cfg.legs[leg].media.play = Some(MediaPlay {
            id,
            repeat: u16::MAX,
            file,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pts: &[u8], clock: u32, dir: Direction, addr: bool) -> AudioInfo {
        AudioInfo {
            rtp: addr.then(|| "192.0.2.1:4000".parse().unwrap()),
            rtcp: None,
            rtcp_mux: false,
            direction: dir,
            payload_types: pts.to_vec(),
            dtmf_pt: Some(101),
            clock_rate: clock,
        }
    }

    #[test]
    fn hold_is_sendonly_inactive_or_no_address() {
        assert!(!holds(&info(&[0], 8000, Direction::SendRecv, true)));
        assert!(!holds(&info(&[0], 8000, Direction::RecvOnly, true)));
        assert!(holds(&info(&[0], 8000, Direction::SendOnly, true)));
        assert!(holds(&info(&[0], 8000, Direction::Inactive, true)));
        assert!(holds(&info(&[0], 8000, Direction::SendRecv, false)));
    }

    #[test]
    fn codecs_in_order_with_opus_dynamic() {
        let c = codecs_of(&info(&[8, 0, 101], 8000, Direction::SendRecv, true));
        assert_eq!(
            c[..2],
            [Some((8, MediaCodec::Pcma)), Some((0, MediaCodec::Pcmu))]
        );
        assert_eq!(c[2], None, "telephone-event is no audio codec");
        let c = codecs_of(&info(&[111, 0, 101], 48000, Direction::SendRecv, true));
        assert_eq!(
            c[..2],
            [Some((111, MediaCodec::Opus)), Some((0, MediaCodec::Pcmu))]
        );
    }
}
