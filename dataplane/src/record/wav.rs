//! The WAV side of a recording, sans-IO: decoding a leg's RTP to
//! [`WAV_RATE`] Hz, the two-channel timeline that places it, and the
//! RIFF/WAVE header.
//!
//! Placement: the first packet of a stream (SSRC) is placed at its
//! arrival (µs since the recording started, × rate); later packets of
//! the stream by RTP timestamp from there (RFC 3550 §5.1), so network
//! jitter does not smear the audio. A stream whose timestamp position
//! drifts more than [`REANCHOR_US`] from its arrival (a timestamp jump,
//! a long pause) is anchored again at the arrival. What no packet
//! covers is silence, so the file's length is the recording's.
//!
//! Decoding: G.711 by table; G.722 (16 kHz) and Opus (48 kHz mono, or
//! stereo mixed) are decimated to 8 kHz by averaging (a box filter: a
//! recording for listening, not a reference-quality resampler).
//! Telephone-event and unknown payload types leave silence.

use tern_codec::g711;
use tern_codec::g722::G722Decoder;
use tern_codec::opus::OpusDecoder;
use tern_shared::table::MediaCodec;

/// Sample rate of every recording's WAV, Hz.
pub const WAV_RATE: u32 = 8000;

/// Drift between a stream's timestamp position and its arrival past
/// which it is placed by arrival again, µs.
pub const REANCHOR_US: u64 = 500_000;

/// The 44-byte header of a PCM WAV (RIFF, `fmt ` chunk of 16 bytes,
/// format 1) of `data_bytes` bytes, `channels` channels of 16-bit
/// samples at `rate` Hz. Sizes past 4 GiB saturate.
pub fn header(data_bytes: u64, channels: u16, rate: u32) -> [u8; 44] {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    let block = u32::from(channels) * 2;
    h[28..32].copy_from_slice(&(rate * block).to_le_bytes());
    h[32..34].copy_from_slice(&(block as u16).to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// A leg's decoders, made when its first packet of a codec needs one.
#[derive(Default)]
pub struct LegDecoder {
    g722: Option<G722Decoder>,
    opus: Option<(OpusDecoder, bool)>,
    scratch: Vec<i16>,
}

impl LegDecoder {
    /// Decodes `payload` of `codec` into `out` (cleared first) at
    /// [`WAV_RATE`]; false when it could not be decoded (out empty).
    pub fn decode(&mut self, codec: MediaCodec, payload: &[u8], out: &mut Vec<i16>) -> bool {
        out.clear();
        match codec {
            MediaCodec::Pcmu => out.extend(payload.iter().map(|&c| g711::ulaw_to_linear(c))),
            MediaCodec::Pcma => out.extend(payload.iter().map(|&c| g711::alaw_to_linear(c))),
            MediaCodec::G722 => {
                if self.g722.is_none() {
                    self.g722 = G722Decoder::new().ok();
                }
                let Some(d) = self.g722.as_mut() else {
                    return false;
                };
                self.scratch.resize(payload.len() * 2, 0);
                let n = d.decode(payload, &mut self.scratch);
                decimate(&self.scratch[..n.min(self.scratch.len())], 1, 2, out);
            }
            MediaCodec::Opus | MediaCodec::OpusStereo => {
                let stereo = codec == MediaCodec::OpusStereo;
                if !matches!(self.opus, Some((_, s)) if s == stereo) {
                    self.opus = OpusDecoder::new(if stereo { 2 } else { 1 })
                        .ok()
                        .map(|d| (d, stereo));
                }
                let Some((d, _)) = self.opus.as_mut() else {
                    return false;
                };
                let ch = d.channels();
                self.scratch.resize(tern_codec::opus::MAX_FRAME * ch, 0);
                let Ok(n) = d.decode(payload, &mut self.scratch) else {
                    return false;
                };
                decimate(
                    &self.scratch[..(n * ch).min(self.scratch.len())],
                    ch,
                    6,
                    out,
                );
            }
        }
        !out.is_empty()
    }
}

/// Averages every `k` frames of `ch` interleaved channels into one mono
/// sample.
fn decimate(pcm: &[i16], ch: usize, k: usize, out: &mut Vec<i16>) {
    for blk in pcm.chunks_exact(ch * k) {
        let s: i32 = blk.iter().map(|&x| i32::from(x)).sum();
        out.push((s / (ch * k) as i32) as i16);
    }
}

/// Where one stream's RTP timestamps are anchored on the timeline.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    ts: u32,
    /// Sample position of `ts`.
    pos: u64,
    clock: u32,
}

/// The stereo timeline of a recording: each leg's samples placed at
/// absolute positions (samples since the start), drained in order as
/// interleaved 16-bit little-endian frames with silence in the gaps.
#[derive(Default)]
pub struct Timeline {
    /// Frames drained so far: the position `pending[leg][0]` stands for.
    written: u64,
    pending: [Vec<i16>; 2],
    /// One past the last placed sample per leg.
    end: [u64; 2],
    anchor: [Option<Anchor>; 2],
}

/// Most samples a leg holds undrained (60 s): a packet placed further
/// ahead is dropped rather than let memory grow.
const MAX_PENDING: u64 = 60 * WAV_RATE as u64;

impl Timeline {
    /// The sample position of an RTP packet of `leg` (stream `ssrc`,
    /// timestamp `ts` at `clock` Hz) that arrived `since_us` after the
    /// recording started.
    pub fn position(&mut self, leg: usize, ssrc: u32, ts: u32, clock: u32, since_us: u64) -> u64 {
        let arrival = since_us * u64::from(WAV_RATE) / 1_000_000;
        let clock = clock.max(1);
        if let Some(a) = self.anchor[leg & 1] {
            if a.ssrc == ssrc && a.clock == clock {
                let d = i64::from(ts.wrapping_sub(a.ts) as i32) * i64::from(WAV_RATE)
                    / i64::from(clock);
                let pos = a.pos as i64 + d;
                let drift = (pos - arrival as i64).unsigned_abs() * 1_000_000 / u64::from(WAV_RATE);
                if pos >= 0 && drift <= REANCHOR_US {
                    return pos as u64;
                }
            }
        }
        self.anchor[leg & 1] = Some(Anchor {
            ssrc,
            ts,
            pos: arrival,
            clock,
        });
        arrival
    }

    /// Places `samples` of `leg` at `pos`; what falls before the drained
    /// part is lost (counted by the caller as late), what lies more than
    /// [`MAX_PENDING`] ahead is dropped. Returns the samples placed.
    pub fn place(&mut self, leg: usize, pos: u64, samples: &[i16]) -> usize {
        let leg = leg & 1;
        let skip = self.written.saturating_sub(pos) as usize;
        let Some(s) = samples.get(skip..) else {
            return 0;
        };
        let start = (pos + skip as u64 - self.written) as usize;
        if (start + s.len()) as u64 > MAX_PENDING {
            return 0;
        }
        let p = &mut self.pending[leg];
        if p.len() < start + s.len() {
            p.resize(start + s.len(), 0);
        }
        p[start..start + s.len()].copy_from_slice(s);
        self.end[leg] = self.end[leg].max(self.written + (start + s.len()) as u64);
        s.len()
    }

    /// One past the last sample placed on either leg.
    pub fn end(&self) -> u64 {
        self.end[0].max(self.end[1])
    }

    /// Frames drained so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the frames before position `upto` as interleaved
    /// (left = leg 0) 16-bit little-endian samples to `out`.
    pub fn drain(&mut self, upto: u64, out: &mut Vec<u8>) {
        let n = upto.saturating_sub(self.written) as usize;
        if n == 0 {
            return;
        }
        out.reserve(n * 4);
        for i in 0..n {
            for leg in 0..2 {
                let v = self.pending[leg].get(i).copied().unwrap_or(0);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for p in &mut self.pending {
            p.drain(..n.min(p.len()));
        }
        self.written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(out: &[u8]) -> Vec<(i16, i16)> {
        out.chunks_exact(4)
            .map(|c| {
                (
                    i16::from_le_bytes([c[0], c[1]]),
                    i16::from_le_bytes([c[2], c[3]]),
                )
            })
            .collect()
    }

    #[test]
    fn gaps_are_silence_and_channels_separate() {
        let mut t = Timeline::default();
        assert_eq!(t.place(0, 0, &[1, 2]), 2);
        assert_eq!(t.place(1, 4, &[7]), 1);
        let mut out = vec![];
        t.drain(3, &mut out);
        assert_eq!(samples(&out), vec![(1, 0), (2, 0), (0, 0)]);
        // Late samples before the drained part are cut.
        assert_eq!(t.place(0, 2, &[9, 9]), 1);
        out.clear();
        t.drain(t.end(), &mut out);
        assert_eq!(samples(&out), vec![(9, 0), (0, 7)]);
        assert_eq!(t.written(), 5);
        assert_eq!(t.place(0, 10 * MAX_PENDING, &[1]), 0);
    }

    #[test]
    fn placement_follows_timestamps_then_reanchors() {
        let mut t = Timeline::default();
        // First packet at 100 ms arrival.
        assert_eq!(t.position(0, 5, 1000, 8000, 100_000), 800);
        // 20 ms later by timestamp, arriving 3 ms late: still 960.
        assert_eq!(t.position(0, 5, 1160, 8000, 123_000), 960);
        // A 48 kHz stream on the other leg converts its clock.
        assert_eq!(t.position(1, 9, 0, 48000, 0), 0);
        assert_eq!(t.position(1, 9, 960, 48000, 20_000), 160);
        // A timestamp jump of 10 s re-anchors at arrival.
        assert_eq!(t.position(0, 5, 1160 + 80_000, 8000, 143_000), 1144);
        // A new SSRC anchors at arrival too.
        assert_eq!(t.position(0, 6, 0, 8000, 200_000), 1600);
    }

    #[test]
    fn header_and_g711_decode() {
        let h = header(400, 2, 8000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([h[4], h[5], h[6], h[7]]), 436);
        assert_eq!(u32::from_le_bytes([h[28], h[29], h[30], h[31]]), 32000);
        let mut d = LegDecoder::default();
        let mut out = vec![];
        assert!(d.decode(MediaCodec::Pcmu, &[0xff, 0x00], &mut out));
        assert_eq!(
            out,
            vec![g711::ulaw_to_linear(0xff), g711::ulaw_to_linear(0)]
        );
        assert!(!d.decode(MediaCodec::Pcma, &[], &mut out));
        decimate(&[2, 4, 6, 8], 1, 2, &mut out);
        assert_eq!(out, vec![3, 7]);
    }
}
