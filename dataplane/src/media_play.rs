//! Playing a prompt into a stream (ng `play media`, the B2BUA's music on
//! hold), sans-IO: a [`MediaPlayer`] is told the time and writes the RTP
//! packet due, if any, into a caller-owned buffer.
//!
//! Every `ptime` (20 ms) the next frame of the prompt is read from its
//! samples (a [`Samples`], the worker's mapped prompt file), resampled to
//! the codec's audio rate in 10 ms chunks (tern-codec's [`Resampler`]),
//! encoded, and written as one RTP packet (RFC 3550 §5.1): sequence
//! numbers +1 and timestamps + one frame's clock ticks per packet, the
//! marker bit on the first (RFC 3551 §4.1: a talkspurt's start). The
//! packet carries the player's own input SSRC, sequence number and
//! timestamp: the worker maps them onto the stream the far peer already
//! receives with that stream's [`SsrcRewriter`], as a source switch, so
//! the peer sees one SSRC whose numbers continue across the start and the
//! end of the play.
//!
//! The prompt plays `repeat` times; the last frame is padded with
//! silence. A player that falls more than [`MAX_LATE_MS`] behind (a
//! stalled loop) skips the frames it missed instead of bursting them.
//! Everything a frame needs is allocated by [`MediaPlayer::new`].

use std::time::{Duration, Instant};

use tern_codec::g711;
use tern_codec::g722::G722Encoder;
use tern_codec::opus::{OpusEncoder, OpusFmtp};
use tern_codec::resample::Resampler;
use tern_shared::prompt::PromptMap;
use tern_shared::rtp::HEADER_LEN;
use tern_shared::table::MediaCodec;

use crate::ssrc::SsrcRewriter;

/// Packet duration, ms.
pub const PTIME_MS: u32 = 20;
/// How far behind its schedule a player may fall before it skips, ms.
pub const MAX_LATE_MS: u64 = 200;
/// Largest packet a player writes, bytes: the RTP header and libopus's
/// largest packet (a G.711 or G.722 20 ms frame is 160 bytes).
pub const MAX_PACKET: usize = HEADER_LEN + tern_codec::opus::MAX_PACKET;

/// Mono 16-bit samples to play.
pub trait Samples {
    /// Sample rate, Hz (8000, 16000 or 48000).
    fn rate(&self) -> u32;
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies samples from `at` into `out`; how many (fewer at the end).
    fn read(&self, at: usize, out: &mut [i16]) -> usize;
}

impl Samples for PromptMap {
    fn rate(&self) -> u32 {
        PromptMap::rate(self)
    }
    fn len(&self) -> usize {
        PromptMap::len(self)
    }
    fn read(&self, at: usize, out: &mut [i16]) -> usize {
        PromptMap::read(self, at, out)
    }
}

/// Why a player could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayError {
    /// The prompt's rate has no resampler to the codec's (tern-codec's
    /// text).
    Resample(String),
    /// The encoder could not be created (its library's text).
    Encoder(String),
    /// The prompt has no samples.
    Empty,
}

impl std::fmt::Display for PlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlayError::Resample(e) => write!(f, "no resampler: {e}"),
            PlayError::Encoder(e) => write!(f, "no encoder: {e}"),
            PlayError::Empty => write!(f, "empty prompt"),
        }
    }
}

impl std::error::Error for PlayError {}

enum Encoder {
    Pcmu,
    Pcma,
    G722(Box<G722Encoder>),
    Opus(Box<OpusEncoder>),
}

/// Audio sample rate a codec encodes, Hz (G.722: 16 kHz audio on an
/// 8 kHz RTP clock, RFC 3551 §4.5.2).
fn audio_rate(c: MediaCodec) -> u32 {
    match c {
        MediaCodec::Pcmu | MediaCodec::Pcma => 8000,
        MediaCodec::G722 => 16000,
        MediaCodec::Opus | MediaCodec::OpusStereo => 48000,
    }
}

/// A prompt being played as RTP of one codec.
pub struct MediaPlayer<S: Samples> {
    src: S,
    /// Next prompt sample to read.
    pos: usize,
    /// Plays left after the current one.
    repeats_left: u32,
    rs: Resampler,
    enc: Encoder,
    pt: u8,
    /// Prompt samples per frame, and codec audio samples per frame.
    frame_in: usize,
    frame_out: usize,
    /// RTP clock ticks per frame.
    ticks: u32,
    ptime: Duration,
    ssrc: u32,
    seq: u16,
    ts: u32,
    next: Instant,
    first: bool,
    done: bool,
    /// Frames written.
    sent: u64,
    pcm_in: Vec<i16>,
    pcm_out: Vec<i16>,
}

impl<S: Samples> MediaPlayer<S> {
    /// A player of `src`, `repeat` times (0 reads as 1), as `codec` with
    /// payload type `pt`; its packets carry input SSRC `ssrc`, the first
    /// sequence number `seq` and timestamp `ts`; the first is due at
    /// `start`.
    ///
    /// # Errors
    /// [`PlayError`] when `src` is empty or no resampler or encoder can
    /// be made.
    pub fn new(
        src: S,
        repeat: u16,
        codec: MediaCodec,
        pt: u8,
        (ssrc, seq, ts): (u32, u16, u32),
        start: Instant,
    ) -> Result<MediaPlayer<S>, PlayError> {
        if src.is_empty() {
            return Err(PlayError::Empty);
        }
        let rate = audio_rate(codec);
        let rs =
            Resampler::new(src.rate(), rate).map_err(|e| PlayError::Resample(e.to_string()))?;
        let enc = match codec {
            MediaCodec::Pcmu => Encoder::Pcmu,
            MediaCodec::Pcma => Encoder::Pcma,
            MediaCodec::G722 => Encoder::G722(Box::new(
                G722Encoder::new().map_err(|e| PlayError::Encoder(format!("{e:?}")))?,
            )),
            MediaCodec::Opus | MediaCodec::OpusStereo => Encoder::Opus(Box::new(
                OpusEncoder::new(&OpusFmtp::default())
                    .map_err(|e| PlayError::Encoder(e.to_string()))?,
            )),
        };
        let frame_in = (src.rate() * PTIME_MS / 1000) as usize;
        let frame_out = (rate * PTIME_MS / 1000) as usize;
        Ok(MediaPlayer {
            src,
            pos: 0,
            repeats_left: u32::from(repeat.max(1)) - 1,
            rs,
            enc,
            pt: pt & 0x7f,
            frame_in,
            frame_out,
            ticks: codec.rtp_clock() * PTIME_MS / 1000,
            ptime: Duration::from_millis(u64::from(PTIME_MS)),
            ssrc,
            seq,
            ts,
            next: start,
            first: true,
            done: false,
            sent: 0,
            pcm_in: vec![0; frame_in],
            // The resampler appends whole 10 ms chunks: room for two
            // frames so a carried chunk never reallocates.
            pcm_out: Vec::with_capacity(2 * frame_out + rate as usize / 100),
        })
    }

    /// Whether the last frame has been written (or [`MediaPlayer::stop`]).
    pub fn done(&self) -> bool {
        self.done
    }

    /// Stops at once: nothing more is written.
    pub fn stop(&mut self) {
        self.done = true;
    }

    /// When the next frame is due; `None` once done.
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.done).then_some(self.next)
    }

    /// RTP clock ticks per frame.
    pub fn ticks(&self) -> u32 {
        self.ticks
    }

    /// Sets the input SSRC of the packets still to come.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.ssrc = ssrc;
    }

    /// Moves the next frame's deadline to `t` (a play that waited for the
    /// stream it continues).
    pub fn set_next(&mut self, t: Instant) {
        self.next = t;
    }

    /// Frames written so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Total frames of the play (counted from its start): `repeat`
    /// times the prompt, back to back, in frames, rounded up.
    pub fn total_frames(&self) -> u64 {
        let all = self.src.len() as u64 * (u64::from(self.repeats_left) + 1);
        all.div_ceil(self.frame_in as u64)
    }

    /// Writes the packet due at `now`, if one is, into `out` (at least
    /// [`MAX_PACKET`] bytes) and returns its length.
    pub fn poll(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if self.done || now < self.next || out.len() < MAX_PACKET {
            return None;
        }
        // Far behind: skip to now rather than burst what was missed.
        if now.saturating_duration_since(self.next) > Duration::from_millis(MAX_LATE_MS) {
            let missed =
                now.saturating_duration_since(self.next).as_millis() as u64 / u64::from(PTIME_MS);
            self.seq = self.seq.wrapping_add(missed as u16);
            self.ts = self.ts.wrapping_add(self.ticks.wrapping_mul(missed as u32));
            self.next += self.ptime * missed as u32;
        }
        // The next frame of the prompt, wrapping into the next play.
        let mut got = 0;
        while got < self.frame_in {
            let n = self.src.read(self.pos, &mut self.pcm_in[got..]);
            got += n;
            self.pos += n;
            if self.pos >= self.src.len() {
                if self.repeats_left == 0 {
                    break;
                }
                self.repeats_left -= 1;
                self.pos = 0;
            }
        }
        let last = self.pos >= self.src.len() && self.repeats_left == 0;
        self.pcm_in[got..].fill(0);
        self.pcm_out.clear();
        self.rs.process(&self.pcm_in, &mut self.pcm_out);
        self.pcm_out.resize(self.frame_out, 0);
        let (hdr, body) = out.split_at_mut(HEADER_LEN);
        let n = match &mut self.enc {
            Encoder::Pcmu => g711::ulaw_encode(&self.pcm_out, body),
            Encoder::Pcma => g711::alaw_encode(&self.pcm_out, body),
            Encoder::G722(e) => e.encode(&self.pcm_out, body),
            Encoder::Opus(e) => e.encode(&self.pcm_out, body).unwrap_or(0),
        };
        hdr[0] = 0x80;
        hdr[1] = u8::from(self.first) << 7 | self.pt;
        hdr[2..4].copy_from_slice(&self.seq.to_be_bytes());
        hdr[4..8].copy_from_slice(&self.ts.to_be_bytes());
        hdr[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.ticks);
        self.next += self.ptime;
        self.sent += 1;
        self.done = last;
        Some(HEADER_LEN + n)
    }
}

/// A rewriter that continues a stream whose last packet went out as
/// `(ssrc, seq, ts)` with `step` ticks per packet: the player's first
/// packet (a source switch for it) goes out as `(ssrc, seq + 1, ts +
/// step)`. For a leg that does not rewrite SSRCs, learned from the peer's
/// packet the play replaces.
pub fn continuing(ssrc: u32, seq: u16, ts: u32, step: u32) -> SsrcRewriter {
    // State words of SsrcRewriter::to_state: the input SSRC is `ssrc`
    // itself with offsets 0, so only a different input is a switch.
    SsrcRewriter::from_state(
        ssrc,
        [
            u64::from(ssrc) | u64::from(seq) << 48,
            u64::from(ts) << 32,
            u64::from(step) | 1 << 32,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_shared::rtp::RtpPacket;

    struct Pcm(u32, Vec<i16>);
    impl Samples for Pcm {
        fn rate(&self) -> u32 {
            self.0
        }
        fn len(&self) -> usize {
            self.1.len()
        }
        fn read(&self, at: usize, out: &mut [i16]) -> usize {
            let at = at.min(self.1.len());
            let n = out.len().min(self.1.len() - at);
            out[..n].copy_from_slice(&self.1[at..at + n]);
            n
        }
    }

    fn ramp(n: usize) -> Vec<i16> {
        (0..n).map(|i| (i as i16 % 200) * 100 - 10_000).collect()
    }

    #[test]
    fn frames_follow_the_virtual_clock_with_continuous_numbers() {
        let t0 = Instant::now();
        // 50 ms of 8 kHz audio, twice: the second play continues the
        // frame the first ends in, so 800 samples are 5 frames of 160.
        let mut p = MediaPlayer::new(
            Pcm(8000, ramp(400)),
            2,
            MediaCodec::Pcmu,
            0,
            (7, 65534, u32::MAX - 100),
            t0,
        )
        .unwrap();
        assert_eq!(p.total_frames(), 5);
        let mut buf = vec![0u8; MAX_PACKET];
        let mut got = Vec::new();
        for ms in 0..200u64 {
            let now = t0 + Duration::from_millis(ms);
            if let Some(n) = p.poll(now, &mut buf) {
                let r = RtpPacket::new_checked(&buf[..n]).unwrap();
                got.push((
                    ms,
                    r.sequence_number(),
                    r.timestamp(),
                    r.marker(),
                    r.payload().len(),
                ));
                assert_eq!((r.ssrc(), r.payload_type()), (7, 0));
            }
        }
        assert!(p.done());
        let want_ts = |k: u32| (u32::MAX - 100).wrapping_add(160 * k);
        assert_eq!(
            got,
            vec![
                (0, 65534, want_ts(0), true, 160),
                (20, 65535, want_ts(1), false, 160),
                (40, 0, want_ts(2), false, 160),
                (60, 1, want_ts(3), false, 160),
                (80, 2, want_ts(4), false, 160),
            ]
        );
        assert_eq!(p.next_deadline(), None);
        assert_eq!(p.poll(t0 + Duration::from_secs(1), &mut buf), None);
    }

    #[test]
    fn payload_is_the_encoded_prompt() {
        let t0 = Instant::now();
        let s = ramp(320);
        let mut p =
            MediaPlayer::new(Pcm(8000, s.clone()), 1, MediaCodec::Pcma, 8, (1, 0, 0), t0).unwrap();
        let mut buf = vec![0u8; MAX_PACKET];
        let n = p.poll(t0, &mut buf).unwrap();
        let mut want = [0u8; 160];
        g711::alaw_encode(&s[..160], &mut want);
        assert_eq!(&buf[HEADER_LEN..n], &want[..]);
        assert_eq!(buf[1], 0x80 | 8);
        // Not due yet, then the second and last frame.
        assert_eq!(p.poll(t0 + Duration::from_millis(19), &mut buf), None);
        assert!(p.poll(t0 + Duration::from_millis(20), &mut buf).is_some());
        assert!(p.done());
    }

    #[test]
    fn a_stall_skips_frames_and_numbers_stay_on_the_clock() {
        let t0 = Instant::now();
        let mut p = MediaPlayer::new(
            Pcm(16000, ramp(16000)),
            1,
            MediaCodec::G722,
            9,
            (1, 100, 1000),
            t0,
        )
        .unwrap();
        let mut buf = vec![0u8; MAX_PACKET];
        let n = p.poll(t0, &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 160, "G.722 20 ms: 160 bytes");
        // One second later: 49 frames missed, skipped, numbers advanced.
        let now = t0 + Duration::from_millis(1000);
        p.poll(now, &mut buf).unwrap();
        let r = RtpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(r.sequence_number(), 100 + 50);
        assert_eq!(r.timestamp(), 1000 + 50 * 160);
        assert_eq!(p.poll(now, &mut buf), None, "one frame per period");
        p.stop();
        assert!(p.done() && p.next_deadline().is_none());
    }

    #[test]
    fn opus_at_48_khz_from_an_8_khz_prompt() {
        let t0 = Instant::now();
        let mut p = MediaPlayer::new(
            Pcm(8000, ramp(1600)),
            1,
            MediaCodec::Opus,
            111,
            (1, 0, 0),
            t0,
        )
        .unwrap();
        let mut buf = vec![0u8; MAX_PACKET];
        p.poll(t0, &mut buf).unwrap();
        let n = p.poll(t0 + Duration::from_millis(20), &mut buf).unwrap();
        let r = RtpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(r.timestamp(), 960, "48 kHz clock");
        assert!(n > HEADER_LEN);
        assert!(
            MediaPlayer::new(Pcm(8000, vec![]), 1, MediaCodec::Pcmu, 0, (1, 0, 0), t0).is_err()
        );
    }

    #[test]
    fn continuing_rewriter_switches_onto_the_stream() {
        let mut rw = continuing(0xabc, 500, 8000, 160);
        let mut pkt = [0x80u8, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 42, 0xff];
        let mut p = RtpPacket::new_checked(&mut pkt[..]).unwrap();
        rw.rewrite_rtp(&mut p);
        assert_eq!(
            (p.ssrc(), p.sequence_number(), p.timestamp()),
            (0xabc, 501, 8160)
        );
    }
}
