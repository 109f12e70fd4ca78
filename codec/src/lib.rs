//! tern's media codecs: the sans-IO pieces issue 14's transcoding,
//! recording and media injection are built from.
//!
//! - [`g711`]: ITU-T G.711 µ-law and A-law, table-driven (8 kHz, one byte
//!   a sample).
//! - [`g722`]: ITU-T G.722 at 64 kbit/s (16 kHz audio, RTP clock 8000,
//!   RFC 3551 §4.5.2) through Debian's libspandsp.
//! - [`opus`]: Opus (RFC 6716) through libopus at 48 kHz, with the RFC 7587
//!   §6.1 fmtp parameters, in-band FEC and DTX.
//! - [`resample`]: fixed-ratio 8/16/48 kHz conversion in 10 ms chunks
//!   (rubato's FFT resampler), with its delay reported.
//! - [`plc`]: packet-loss concealment for the waveform codecs (pitch
//!   repetition with fade, after ITU-T G.711 Appendix I).
//! - [`dtmf`]: RFC 4733 telephone-event payloads and their clock-rate
//!   conversion (8 kHz ↔ 48 kHz).
//! - [`transcode`]: a [`transcode::Transcoder`] from RTP packets of one
//!   codec to RTP packets of another, with its own SSRC, sequence numbers
//!   and timestamps (RFC 3550 §5.1), a ptime change, concealment of lost
//!   packets and telephone-event pass-through; it writes into a
//!   caller-owned [`packets::OutPackets`].
//!
//! Nothing here owns a socket or a clock: input is bytes, output is bytes
//! written to caller-owned buffers, and time is the RTP timestamps.
//! Malformed input gives a typed error, never a panic.

#![warn(missing_docs)]

pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod opus;
pub mod packets;
pub mod plc;
pub mod resample;
pub mod transcode;

/// An audio codec tern can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law (RFC 3551 §4.5.14, static PT 0): 8 kHz, 1 byte/sample.
    Pcmu,
    /// G.711 A-law (RFC 3551 §4.5.14, static PT 8): 8 kHz, 1 byte/sample.
    Pcma,
    /// G.722 at 64 kbit/s (RFC 3551 §4.5.2, static PT 9): 16 kHz audio,
    /// 1 byte per 2 samples, RTP clock 8000.
    G722,
    /// Opus (RFC 7587): 48 kHz audio and RTP clock. `stereo` is whether
    /// the stream is decoded as two channels (`sprop-stereo=1`); tern
    /// mixes it down to mono and always encodes mono.
    Opus {
        /// Decode two channels (then mix to mono).
        stereo: bool,
    },
}

impl Codec {
    /// Sample rate of the decoded audio, Hz: 8000, 16000 or 48000.
    pub const fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16000,
            Codec::Opus { .. } => 48000,
        }
    }

    /// RTP timestamp clock rate, Hz (RFC 3551 table 4; RFC 7587 §4.1):
    /// 8000 for G.711 and G.722, 48000 for Opus.
    pub const fn rtp_clock(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::Opus { .. } => 48000,
        }
    }

    /// Encoding name as in `a=rtpmap` (RFC 3551 §6, RFC 7587 §7).
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus { .. } => "opus",
        }
    }
}
