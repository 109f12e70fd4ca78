//! Transcoding on the owning worker (issue 14; DESIGN.md stage 5,
//! "decode → PLC/resample → encode"): what a leg's peer sends, in the
//! leg's codecs ([`LegMedia::codecs`]), goes to the other leg's peer as
//! [`Transcode::output`], with its own SSRC, sequence numbers and
//! timestamps (RFC 3550 §5.1, tern-codec's [`Transcoder`]).
//!
//! A leg's transcoder and its output store are made when the slot's
//! configuration asks for it (not per packet). Each input packet is
//! pushed through it; each output packet is copied into the store and
//! either handed to the other leg's jitter buffer or sent at once by
//! [`Worker::send_stored`] (which protects it for a secure leg and counts
//! it). The input's provided buffer goes straight back to the ring.
//!
//! RTCP is not transcoded: reports pass through as they are (their
//! counts describe the input stream, not the output).
//!
//! Why on the owning worker and not a transcoding pool (measured,
//! docs/BENCHMARKS.md "Transcoding in the relay"): PCMU↔PCMA adds ~1.4 µs
//! per packet over plain forwarding; G.711↔Opus costs ~150 µs per packet
//! (libopus' encoder), so one worker carries ~65 Opus calls. A pool would
//! spend the same CPU plus a queue and a copy per packet; more workers
//! give the same parallelism, since each slot transcodes on its own.

use std::time::Instant;

use tern_codec::opus::OpusFmtp;
use tern_codec::packets::OutPackets;
use tern_codec::transcode::{Config, Transcoder};
use tern_codec::Codec;
use tern_shared::table::{DropReason, LegConfig, MediaCodec, SlotConfig, Transcode};
use tracing::{debug, warn};

use super::jitter_store::{alloc_store, buffer_packet, Buffered, JStore};
use super::{Worker, MAX_JSTORES};

/// Output packets one input packet can yield: a 120 ms G.711 input into
/// 10 ms output frames is 12; the transcoder refuses more (counted).
const MAX_OUT_PER_INPUT: usize = 16;

/// Store entries for output packets in flight (sent, not yet completed):
/// a few inputs' worth.
const STORE_ENTRIES: usize = 48;

/// The tern-codec codec of a table codec.
fn codec_of(c: MediaCodec) -> Codec {
    match c {
        MediaCodec::Pcmu => Codec::Pcmu,
        MediaCodec::Pcma => Codec::Pcma,
        MediaCodec::G722 => Codec::G722,
        MediaCodec::Opus => Codec::Opus { stereo: false },
        MediaCodec::OpusStereo => Codec::Opus { stereo: true },
    }
}

/// Largest output payload, bytes, for `t`: a waveform codec's frame at
/// one byte per 8 kHz tick (G.711 and G.722 alike), libopus's largest
/// packet for Opus.
fn max_payload(t: &Transcode) -> usize {
    match t.output {
        MediaCodec::Opus | MediaCodec::OpusStereo => tern_codec::opus::MAX_PACKET,
        _ => usize::from(t.output_ptime_ms) * 8,
    }
}

/// What a leg's transcoder was built from: the same key keeps it (and its
/// timeline) across reconfigurations that change something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct XcKey {
    codecs: [Option<(u8, MediaCodec)>; tern_shared::table::MAX_LEG_CODECS],
    input_dtmf: Option<u8>,
    transcode: Transcode,
    /// The SSRC the other leg's peer sees, when it is rewritten.
    out_ssrc: Option<u32>,
}

impl XcKey {
    fn of(src: &LegConfig, dst: &LegConfig) -> Option<XcKey> {
        Some(XcKey {
            codecs: src.media.codecs,
            input_dtmf: src.dtmf_pt,
            transcode: src.media.transcode?,
            out_ssrc: dst.rewrite_ssrc.then_some(dst.out_ssrc),
        })
    }

    /// The transcoder's configuration; the SSRC (unless rewritten), first
    /// sequence number and timestamp drawn at random (RFC 3550 §5.1,
    /// §8.1).
    fn config(&self) -> Config {
        let t = &self.transcode;
        Config {
            inputs: self
                .codecs
                .iter()
                .flatten()
                .map(|&(pt, c)| (pt, codec_of(c)))
                .collect(),
            input_dtmf: self.input_dtmf,
            output: codec_of(t.output),
            output_pt: t.output_pt,
            output_ptime_ms: u32::from(t.output_ptime_ms),
            output_dtmf: t.output_dtmf,
            opus_fmtp: OpusFmtp {
                maxaveragebitrate: (t.opus_bitrate_kbps > 0)
                    .then(|| u32::from(t.opus_bitrate_kbps) * 1000),
                useinbandfec: Some(t.opus_fec),
                usedtx: Some(t.opus_dtx),
                ..OpusFmtp::default()
            },
            ssrc: self.out_ssrc.unwrap_or_else(rand::random),
            first_seq: rand::random(),
            first_ts: rand::random(),
        }
    }
}

/// The transcoder of what one leg's peer sends, and where its output
/// waits to be sent.
pub(super) struct LegTranscode {
    key: XcKey,
    /// `None` when the configuration could not be built: the leg's
    /// packets are then dropped ([`DropReason::Transcode`]), never sent
    /// in a codec the other peer did not accept.
    xc: Option<Box<Transcoder>>,
    out: OutPackets,
    /// The worker's store holding output packets being sent.
    store: Option<u16>,
}

/// Where one output packet goes.
enum Step {
    Send,
    Stored(u16),
    Done,
    Drop(DropReason),
}

impl LegTranscode {
    /// Stage 5 for a transcoded leg: pushes `pkt` (RTP from the leg's
    /// peer, already rewritten toward the other leg) through the
    /// transcoder. The number of output packets now waiting for
    /// [`Worker::send_transcoded`] (0 while a frame fills).
    ///
    /// # Errors
    /// [`DropReason::Transcode`]: no transcoder (its configuration was
    /// refused), or the transcoder refused the packet with nothing put
    /// out (unknown payload type, malformed RTP or payload).
    #[inline]
    pub(super) fn push(&mut self, pkt: &[u8]) -> Result<usize, DropReason> {
        self.out.clear();
        let Some(xc) = self.xc.as_deref_mut() else {
            return Err(DropReason::Transcode);
        };
        // A refused packet leaves the timeline as it was; output written
        // before an error (OutputFull) still goes out.
        match xc.push(pkt, &mut self.out) {
            Ok(()) => Ok(self.out.len()),
            Err(_) if !self.out.is_empty() => Ok(self.out.len()),
            Err(_) => Err(DropReason::Transcode),
        }
    }
}

impl Worker {
    /// Brings slot `idx`'s transcoders in line with its configuration
    /// `cfg` (`None`: the slot is closing, drop them).
    pub(super) fn sync_transcode(&mut self, idx: usize, cfg: Option<&SlotConfig>) {
        let id = self.first + idx as u32;
        for leg in 0..2 {
            let want = cfg.and_then(|c| XcKey::of(&c.legs[leg], &c.legs[leg ^ 1]));
            if self.slots[idx].xc[leg].as_ref().map(|x| x.key) == want {
                continue;
            }
            if let Some(old) = self.slots[idx].xc[leg].take() {
                if let Some(s) = old.store {
                    self.retire_store(s);
                }
            }
            let Some(key) = want else { continue };
            let xc = match Transcoder::new(&key.config()) {
                Ok(x) => Some(Box::new(x)),
                Err(e) => {
                    warn!(
                        worker = self.index,
                        slot = id,
                        call_id = %self.slots[idx].call_id,
                        leg,
                        "transcoder not built: {e}; the leg's media is dropped"
                    );
                    None
                }
            };
            let entry = tern_shared::rtp::HEADER_LEN + max_payload(&key.transcode);
            let store = xc.as_ref().and_then(|_| {
                alloc_store(
                    &mut self.jstores,
                    &mut self.jstore_free,
                    JStore::new(STORE_ENTRIES, entry),
                    MAX_JSTORES,
                )
            });
            if xc.is_some() && store.is_none() {
                warn!(
                    worker = self.index,
                    slot = id,
                    leg,
                    "transcoder not started: all {MAX_JSTORES} store ids in use"
                );
            }
            debug!(
                worker = self.index,
                slot = id,
                call_id = %self.slots[idx].call_id,
                leg,
                output = ?key.transcode.output,
                "transcoding on"
            );
            self.slots[idx].xc[leg] = Some(Box::new(LegTranscode {
                key,
                xc: xc.filter(|_| store.is_some()),
                out: OutPackets::with_capacity(
                    MAX_OUT_PER_INPUT,
                    MAX_OUT_PER_INPUT * entry.max(256),
                ),
                store,
            }));
        }
    }

    /// Sends or buffers toward the other leg's peer what `leg`'s
    /// transcoder put out for the packet [`LegTranscode::push`] was given.
    pub(super) fn send_transcoded(&mut self, idx: usize, leg: usize, now: Instant) {
        let o = leg ^ 1;
        let Some(store) = self.slots[idx].xc[leg].as_deref().and_then(|lx| lx.store) else {
            return;
        };
        for i in 0..MAX_OUT_PER_INPUT {
            let slot = &mut self.slots[idx];
            let Some(p) = slot.xc[leg].as_deref().and_then(|lx| lx.out.get(i)) else {
                break;
            };
            // The other leg's jitter buffer takes its own copy.
            let step = match slot.jit[o].as_mut() {
                Some(lj) => match buffer_packet(&mut self.jstores, lj, p, now) {
                    Buffered::Held => Step::Done,
                    Buffered::Refused(r) => Step::Drop(r),
                    Buffered::Bypass => Step::Send,
                },
                None => Step::Send,
            };
            let step = match step {
                Step::Send => match self.jstores.get_mut(usize::from(store)) {
                    Some(Some(st)) => st
                        .take_entry(p)
                        .map_or(Step::Drop(DropReason::Transcode), Step::Stored),
                    _ => Step::Drop(DropReason::Transcode),
                },
                s => s,
            };
            match step {
                Step::Stored(e) => self.send_stored(idx, o, store, e),
                Step::Drop(r) => self.count_in_drop(idx, leg, r),
                Step::Done | Step::Send => {}
            }
        }
    }

    /// Counts a drop of a packet that arrived on `leg` of slot `idx`.
    fn count_in_drop(&mut self, idx: usize, leg: usize, r: DropReason) {
        if let Ok(c) = self.table.counters(self.first + idx as u32, leg) {
            c.count_drop(r);
        }
        self.dropped += 1;
    }
}
