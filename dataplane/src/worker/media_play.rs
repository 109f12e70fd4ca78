//! ng `play media` on the owning worker (and the B2BUA's music on hold):
//! a leg whose media block names a play ([`MediaPlay`]) gets a
//! [`MediaPlayer`] over the mapped prompt file, and what that leg's peer
//! sends is not forwarded while it plays (rtpengine replaces the media
//! the same way).
//!
//! The loop polls the players like the jitter buffers' playout: each due
//! frame is mapped onto the stream the other leg's peer receives by a
//! copy of that stream's [`SsrcRewriter`] (a source switch: the same SSRC,
//! the sequence number and timestamp continuing), copied into the
//! player's store and sent by [`Worker::send_stored`] (protected for a
//! secure leg, counted). When the play ends or is stopped the copy goes
//! back to the forwarder, so the peer's resumed packets are one more
//! switch and continue after the prompt.
//!
//! A leg that does not rewrite SSRCs has no rewriter to copy: the player
//! then waits (up to [`ARM_MS`]) for the peer's next packet, takes its
//! SSRC, sequence number and timestamp, and replaces it and those after
//! it; the rewriter it made stays on the forwarder after the play (until
//! the next reconfiguration). A peer that sends nothing in that time
//! (on hold) gets the prompt under its last SSRC with fresh numbers.
//!
//! Everything is allocated when the play starts: the mapping, the
//! encoder, the store; nothing per packet.

use std::time::{Duration, Instant};

use tern_shared::prompt::{prompt_path, PromptMap};
use tern_shared::rtp::RtpPacket;
use tern_shared::table::{LegConfig, MediaCodec, MediaPlay, SlotConfig};
use tracing::{debug, warn};

use super::jitter_store::{alloc_store, JStore};
use super::{Worker, MAX_JSTORES};
use crate::media_play::{continuing, MediaPlayer, MAX_PACKET, PTIME_MS};
use crate::quality::jitter::PacketInfo;
use crate::ssrc::SsrcRewriter;

/// Longest wait for the peer's packet that a play on a leg without SSRC
/// rewriting continues, ms.
pub const ARM_MS: u64 = 60;
/// Store entries of a player: packets in flight at 50 a second.
const STORE_ENTRIES: usize = 8;

/// The codec and payload type a play on a leg whose peer sends as `src`
/// goes in, toward the peer of `dst`: the transcoder's output when the
/// leg is transcoded; else the first of `src`'s codecs that `dst` also
/// lists (or `src`'s first, or `dst`'s first when `src` names none).
pub fn play_codec(src: &LegConfig, dst: &LegConfig) -> Option<(u8, MediaCodec)> {
    if let Some(t) = src.media.transcode {
        return Some((t.output_pt, t.output));
    }
    let theirs = &dst.media.codecs;
    let ours = src.media.codecs.iter().flatten();
    ours.clone()
        .find(|c| theirs.iter().flatten().any(|d| d == *c))
        .or_else(|| ours.clone().next())
        .or_else(|| theirs.iter().flatten().next())
        .copied()
}

/// A play on one leg.
pub(super) struct LegPlay {
    player: MediaPlayer<PromptMap>,
    /// The store its packets are sent from.
    store: u16,
    /// Maps its packets onto the other leg's stream; `None` while it
    /// waits for the peer's packet (a leg without SSRC rewriting).
    rw: Option<SsrcRewriter>,
    /// Waiting for that packet until then.
    armed_until: Option<Instant>,
    /// The player's input SSRC (differs from the peer's, so the switch
    /// back at the end is one).
    in_ssrc: u32,
    id: u32,
    buf: Box<[u8]>,
}

/// A slot's plays, and the request last taken per leg (a request
/// republished with later configurations is played once).
#[derive(Default)]
pub(super) struct SlotPlays {
    legs: [Option<Box<LegPlay>>; 2],
    taken: [u32; 2],
}

/// Stage 5 for a leg whose peer's media a play replaces: whether the
/// packet `hdr` (RTP from that peer, as it arrived) is consumed. A play
/// waiting for the peer's numbering takes it from this packet and starts
/// now.
#[inline]
pub(super) fn consume(
    plays: &mut Option<Box<SlotPlays>>,
    leg: usize,
    hdr: Option<&PacketInfo>,
    now: Instant,
) -> bool {
    let Some(p) = plays
        .as_deref_mut()
        .and_then(|p| p.legs[leg & 1].as_deref_mut())
    else {
        return false;
    };
    if p.armed_until.is_some() {
        if let Some(h) = hdr {
            let step = p.player.ticks();
            p.rw = Some(continuing(
                h.ssrc,
                h.seq.wrapping_sub(1),
                h.timestamp.wrapping_sub(step),
                step,
            ));
            p.in_ssrc = !h.ssrc;
            p.player.set_ssrc(p.in_ssrc);
            p.armed_until = None;
            p.player.set_next(now);
        }
    }
    true
}

impl Worker {
    /// Brings slot `idx`'s plays in line with `cfg` (`None`: the slot is
    /// closing): starts a newly requested one (replacing what plays on
    /// that leg), stops one whose request is gone (`stop media`).
    /// `resume` (a restarted worker attaching): only takes note of the
    /// requests.
    pub(super) fn sync_media_play(&mut self, idx: usize, cfg: Option<&SlotConfig>, resume: bool) {
        for leg in 0..2 {
            let want = cfg.and_then(|c| c.legs[leg].media.play);
            let taken = self.slots[idx].plays.as_ref().map_or(0, |p| p.taken[leg]);
            let running = self.slots[idx]
                .plays
                .as_ref()
                .and_then(|p| p.legs[leg].as_ref())
                .map(|p| p.id);
            match want {
                Some(req) if req.id != taken => {
                    self.finish_play(idx, leg);
                    let plays = self.slots[idx].plays.get_or_insert_with(Box::default);
                    plays.taken[leg] = req.id;
                    if !resume {
                        if let Some(c) = cfg {
                            self.start_play(idx, leg, c, req);
                        }
                    }
                }
                Some(req) if running.is_some_and(|r| r != req.id) => self.finish_play(idx, leg),
                None if running.is_some() => self.finish_play(idx, leg),
                _ => {}
            }
        }
        // A closed slot's next call numbers its plays from 1 again.
        if cfg.is_none() {
            self.slots[idx].plays = None;
        }
        let any = self.slots[idx]
            .plays
            .as_ref()
            .is_some_and(|p| p.legs.iter().any(Option::is_some));
        let listed = self.play_slots.iter().position(|&i| i as usize == idx);
        match (any, listed) {
            (true, None) => self.play_slots.push(idx as u32),
            (false, Some(p)) => {
                self.play_slots.swap_remove(p);
            }
            _ => {}
        }
    }

    fn start_play(&mut self, idx: usize, leg: usize, cfg: &SlotConfig, req: MediaPlay) {
        let id = self.first + idx as u32;
        let o = leg ^ 1;
        let call_id = self.slots[idx].call_id.clone();
        let path = prompt_path(self.table.path(), req.file);
        let map = match PromptMap::open(&path) {
            Ok(m) => m,
            Err(e) => {
                warn!(worker = self.index, slot = id, call_id, leg, path = %path.display(), "play media: {e}");
                return;
            }
        };
        let (pt, codec) = play_codec(&cfg.legs[leg], &cfg.legs[o]).unwrap_or_else(|| {
            warn!(
                worker = self.index,
                slot = id,
                call_id,
                leg,
                "play media: the leg names no codec; playing PCMU"
            );
            (0, MediaCodec::Pcmu)
        });
        let now = self.clock.at;
        let fwd_rw = self.slots[idx].fwd.as_ref().and_then(|f| f.leg(o).rewriter);
        let peer_ssrc = self.slots[idx].q.stats(leg).ssrc();
        // With a rewriter the play starts now, as a switch of its stream;
        // without, it waits for the peer's numbering.
        let (rw, armed_until, in_ssrc) = match fwd_rw {
            Some(rw) => (Some(rw), None, !rw.in_ssrc().unwrap_or(0)),
            None => (None, Some(now + Duration::from_millis(ARM_MS)), 0),
        };
        let player = match MediaPlayer::new(map, req.repeat, codec, pt, (in_ssrc, 0, 0), now) {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    worker = self.index,
                    slot = id,
                    call_id,
                    leg,
                    "play media: {e}"
                );
                return;
            }
        };
        let Some(store) = alloc_store(
            &mut self.jstores,
            &mut self.jstore_free,
            JStore::new(STORE_ENTRIES, MAX_PACKET),
            MAX_JSTORES,
        ) else {
            warn!(
                worker = self.index,
                slot = id,
                leg,
                "play media not started: all {MAX_JSTORES} store ids in use"
            );
            return;
        };
        debug!(
            worker = self.index,
            slot = id,
            call_id,
            leg,
            play = req.id,
            ?codec,
            pt,
            repeat = req.repeat,
            frames = player.total_frames(),
            peer_ssrc,
            "play media"
        );
        let plays = self.slots[idx].plays.get_or_insert_with(Box::default);
        plays.legs[leg] = Some(Box::new(LegPlay {
            player,
            store,
            rw,
            armed_until,
            in_ssrc,
            id: req.id,
            buf: vec![0u8; MAX_PACKET].into_boxed_slice(),
        }));
    }

    /// Ends the play on `leg` of slot `idx`, if any: its rewriter goes
    /// back to the forwarder (so the peer's packets continue after it),
    /// its store is retired.
    fn finish_play(&mut self, idx: usize, leg: usize) {
        let id = self.first + idx as u32;
        let Some(p) = self.slots[idx]
            .plays
            .as_deref_mut()
            .and_then(|p| p.legs[leg].take())
        else {
            return;
        };
        let o = leg ^ 1;
        let Some(fwd) = self.slots[idx].fwd.as_mut() else {
            self.retire_store(p.store);
            return;
        };
        // Not when the leg's SSRC policy changed meanwhile (a new out SSRC
        // is a new stream).
        let now_rw = fwd.leg(o).rewriter.map(|r| r.out_ssrc());
        let same = |rw: &SsrcRewriter| now_rw.is_none_or(|s| s == rw.out_ssrc());
        if let Some(rw) = p.rw.filter(same) {
            fwd.set_rewriter(o, Some(rw));
            if let Ok(c) = self.table.counters(id, o) {
                c.set_ssrc_state(rw.to_state());
            }
        }
        debug!(
            worker = self.index,
            slot = id,
            leg,
            play = p.id,
            frames = p.player.sent(),
            "play media ended"
        );
        self.retire_store(p.store);
    }

    /// Sends every frame that is due among the worker's plays and ends
    /// those done; the earliest deadline still pending.
    pub(super) fn play_media(&mut self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let now = self.clock.at + super::PLAYOUT_SLACK;
        let mut k = 0;
        while k < self.play_slots.len() {
            let idx = self.play_slots[k] as usize;
            for leg in 0..2 {
                if let Some(d) = self.play_leg(idx, leg, now) {
                    earliest = Some(earliest.map_or(d, |x| x.min(d)));
                }
            }
            let any = self.slots[idx]
                .plays
                .as_ref()
                .is_some_and(|p| p.legs.iter().any(Option::is_some));
            if any {
                k += 1;
            } else {
                self.play_slots.swap_remove(k);
            }
        }
        earliest
    }

    /// The due frames of the play on `leg` of slot `idx`; its next
    /// deadline.
    fn play_leg(&mut self, idx: usize, leg: usize, now: Instant) -> Option<Instant> {
        let o = leg ^ 1;
        // Two frames at most per pass: a late loop catches up without a
        // burst (the player skips what is far behind).
        for _ in 0..2 {
            let slot = &mut self.slots[idx];
            let fallback_ssrc = slot.q.stats(leg).ssrc();
            let p = slot.plays.as_deref_mut()?.legs[leg].as_deref_mut()?;
            if let Some(t) = p.armed_until {
                if now < t {
                    return Some(t);
                }
                // Nothing from the peer: its last SSRC, fresh numbers.
                let out = fallback_ssrc.unwrap_or_else(rand::random);
                p.rw = Some(SsrcRewriter::new(out));
                p.in_ssrc = !out;
                p.player.set_ssrc(p.in_ssrc);
                p.armed_until = None;
                p.player.set_next(now);
            }
            if p.player.done() {
                self.finish_play(idx, leg);
                return None;
            }
            let Some(n) = p.player.poll(now, &mut p.buf) else {
                return p.player.next_deadline();
            };
            // An encoder that failed a frame wrote no payload: skip it
            // (its numbers are used, so the far side sees a loss).
            if n <= tern_shared::rtp::HEADER_LEN {
                self.dropped += 1;
                continue;
            }
            if let (Some(rw), Ok(mut r)) = (p.rw.as_mut(), RtpPacket::new_checked(&mut p.buf[..n]))
            {
                rw.rewrite_rtp(&mut r);
            }
            let store = p.store;
            let entry = match self.jstores.get_mut(usize::from(store)) {
                Some(Some(st)) => st.take_entry(&p.buf[..n]),
                _ => None,
            };
            match entry {
                Some(e) => self.send_stored(idx, o, store, e),
                None => self.dropped += 1,
            }
        }
        self.slots[idx].plays.as_deref()?.legs[leg]
            .as_deref()?
            .player
            .next_deadline()
            .or(Some(now + Duration::from_millis(u64::from(PTIME_MS))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_shared::table::LegMedia;

    fn leg(codecs: &[(u8, MediaCodec)]) -> LegConfig {
        let mut m = LegMedia::default();
        for (i, c) in codecs.iter().enumerate() {
            m.codecs[i] = Some(*c);
        }
        LegConfig {
            media: m,
            ..LegConfig::default()
        }
    }

    #[test]
    fn the_codec_both_sides_name_is_played() {
        let (u, a, g) = (
            (0, MediaCodec::Pcmu),
            (8, MediaCodec::Pcma),
            (9, MediaCodec::G722),
        );
        assert_eq!(play_codec(&leg(&[u, a]), &leg(&[a])), Some(a));
        assert_eq!(play_codec(&leg(&[g, u]), &leg(&[u, g])), Some(g));
        assert_eq!(play_codec(&leg(&[u]), &leg(&[g])), Some(u));
        assert_eq!(play_codec(&leg(&[]), &leg(&[g])), Some(g));
        assert_eq!(play_codec(&leg(&[]), &leg(&[])), None);
    }
}
