//! Media services of one leg (issue 14): transcoding, recording and media
//! playback, carried under the slot's configuration seqlock in the leg's
//! media block (`Slot::media[leg]`, [`MEDIA_WORDS`] words).
//!
//! ```text
//! word 0: the leg's audio codecs: four 16-bit entries, the first in
//!         bits 0..16; each `pt (0..7) | codec (8..12) | valid (15)`
//! word 1: transcode output: pt (0..8) | codec (8..12) | ptime ms (16..24)
//!         | dtmf pt (24..31) | dtmf valid (31) | bitrate kbit/s (32..48)
//!         | opus fec (48) | opus dtx (49) | valid (63)
//! word 2: recording: on (0) | paused (1) | id (32..64)
//! word 3: play media: id (0..32) | repeat times (32..48) | valid (63)
//! word 4: play media: file id (0..64), see [`MediaPlay::file`]
//! words 5..8: zero
//! ```
//!
//! A table of the same layout with an all-zero block reads "nothing".

/// Words of a leg's media block.
pub(super) const MEDIA_WORDS: usize = 8;

/// Most audio payload types a leg's media block names.
pub const MAX_LEG_CODECS: usize = 4;

/// A codec the dataplane decodes and encodes (`tern-codec`'s codecs, as
/// the table stores them: 4 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MediaCodec {
    /// G.711 µ-law, 8 kHz (RFC 3551 §4.5.14).
    Pcmu = 1,
    /// G.711 A-law, 8 kHz (RFC 3551 §4.5.14).
    Pcma = 2,
    /// G.722 at 64 kbit/s, RTP clock 8000 (RFC 3551 §4.5.2).
    G722 = 3,
    /// Opus decoded as one channel, RTP clock 48000 (RFC 7587).
    Opus = 4,
    /// Opus decoded as two channels (`sprop-stereo=1`), mixed to mono.
    OpusStereo = 5,
}

impl LegMedia {
    /// The codec of payload type `pt` among [`LegMedia::codecs`].
    pub fn codec_of(&self, pt: u8) -> Option<MediaCodec> {
        self.codecs
            .iter()
            .flatten()
            .find(|(p, _)| *p == pt)
            .map(|(_, c)| *c)
    }
}

impl MediaCodec {
    fn from_bits(v: u64) -> Option<MediaCodec> {
        Some(match v & 0xf {
            1 => MediaCodec::Pcmu,
            2 => MediaCodec::Pcma,
            3 => MediaCodec::G722,
            4 => MediaCodec::Opus,
            5 => MediaCodec::OpusStereo,
            _ => return None,
        })
    }

    /// The codec of an `a=rtpmap` encoding name (case-insensitive, RFC
    /// 8866 §6.6) and clock rate, Hz; `None` for one tern cannot
    /// transcode. Opus is `opus/48000/2` in SDP (RFC 7587 §7) whatever it
    /// carries.
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<MediaCodec> {
        let n = name.to_ascii_lowercase();
        match (n.as_str(), clock_rate) {
            ("pcmu", 8000) => Some(MediaCodec::Pcmu),
            ("pcma", 8000) => Some(MediaCodec::Pcma),
            ("g722", 8000) => Some(MediaCodec::G722),
            ("opus", 48000) => Some(MediaCodec::Opus),
            _ => None,
        }
    }

    /// RTP clock rate, Hz.
    pub fn rtp_clock(self) -> u32 {
        match self {
            MediaCodec::Opus | MediaCodec::OpusStereo => 48000,
            _ => 8000,
        }
    }
}

/// Transcoding of what a leg's peer sends, before it goes to the other
/// leg's peer: decoded by the leg's [`LegMedia::codecs`] (by payload
/// type), encoded as `output`. The input telephone-event type is the
/// leg's `dtmf_pt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcode {
    /// Payload type of the output (what the other leg's peer accepts).
    pub output_pt: u8,
    pub output: MediaCodec,
    /// Output packet duration, ms (10..=120; Opus: 10, 20, 40 or 60).
    pub output_ptime_ms: u8,
    /// telephone-event type toward the other leg's peer; `None` drops
    /// events.
    pub output_dtmf: Option<u8>,
    /// Opus output bitrate, kbit/s; 0: libopus's default.
    pub opus_bitrate_kbps: u16,
    /// Opus in-band FEC (`useinbandfec=1`, RFC 7587 §6.1).
    pub opus_fec: bool,
    /// Opus DTX (`usedtx=1`).
    pub opus_dtx: bool,
}

/// ng `play media` on a leg: a prompt played toward the other leg's
/// peer, in place of what this leg's peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPlay {
    /// Request number, new for each `play media`; never 0.
    pub id: u32,
    /// Times the prompt is played (ng `repeat-times`); 0 reads as 1.
    pub repeat: u16,
    /// Which prepared prompt: the programmer names it, the worker finds
    /// its samples by this id (see the dataplane's media store).
    pub file: u64,
}

/// The media services of one leg; all off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegMedia {
    /// The leg's audio payload types and their codecs, as its SDP
    /// negotiated them (what its peer sends and receives); unused entries
    /// `None`, and a codec tern cannot decode is not listed. Filled by the
    /// programmer whenever it knows them: transcoding decodes by them,
    /// recording and playback read them.
    pub codecs: [Option<(u8, MediaCodec)>; MAX_LEG_CODECS],
    /// Transcode what this leg's peer sends; `None`: forward as it is.
    pub transcode: Option<Transcode>,
    /// Record what this leg's peer sends (ng `start recording`).
    pub record: bool,
    /// Recording paused (ng `pause recording`): nothing is written, the
    /// files stay open.
    pub record_paused: bool,
    /// Recording number, so a restarted recording is a new one.
    pub record_id: u32,
    /// ng `play media` toward the other leg's peer.
    pub play: Option<MediaPlay>,
}

pub(super) fn encode(m: &LegMedia) -> [u64; MEDIA_WORDS] {
    let mut w = [0u64; MEDIA_WORDS];
    for (i, e) in m.codecs.iter().enumerate() {
        if let Some((pt, c)) = e {
            w[0] |= (u64::from(pt & 0x7f) | u64::from(*c as u8) << 8 | 1 << 15) << (16 * i);
        }
    }
    if let Some(t) = &m.transcode {
        w[1] = u64::from(t.output_pt & 0x7f)
            | u64::from(t.output as u8) << 8
            | u64::from(t.output_ptime_ms) << 16
            | t.output_dtmf
                .map_or(0, |pt| u64::from(pt & 0x7f) << 24 | 1 << 31)
            | u64::from(t.opus_bitrate_kbps) << 32
            | u64::from(t.opus_fec) << 48
            | u64::from(t.opus_dtx) << 49
            | 1 << 63;
    }
    w[2] = u64::from(m.record) | u64::from(m.record_paused) << 1 | u64::from(m.record_id) << 32;
    if let Some(p) = &m.play {
        w[3] = u64::from(p.id) | u64::from(p.repeat) << 32 | 1 << 63;
        w[4] = p.file;
    }
    w
}

pub(super) fn decode(w: &[u64; MEDIA_WORDS]) -> LegMedia {
    let transcode = match MediaCodec::from_bits(w[1] >> 8) {
        Some(output) if w[1] >> 63 == 1 => Some(Transcode {
            output_pt: (w[1] & 0x7f) as u8,
            output,
            output_ptime_ms: (w[1] >> 16) as u8,
            output_dtmf: (w[1] >> 31 & 1 == 1).then_some((w[1] >> 24 & 0x7f) as u8),
            opus_bitrate_kbps: (w[1] >> 32) as u16,
            opus_fec: w[1] >> 48 & 1 == 1,
            opus_dtx: w[1] >> 49 & 1 == 1,
        }),
        _ => None,
    };
    let mut codecs = [None; MAX_LEG_CODECS];
    for (i, e) in codecs.iter_mut().enumerate() {
        let v = w[0] >> (16 * i) & 0xffff;
        if v >> 15 == 1 {
            *e = MediaCodec::from_bits(v >> 8).map(|c| ((v & 0x7f) as u8, c));
        }
    }
    LegMedia {
        codecs,
        transcode,
        record: w[2] & 1 == 1,
        record_paused: w[2] >> 1 & 1 == 1,
        record_id: (w[2] >> 32) as u32,
        play: (w[3] >> 63 == 1).then_some(MediaPlay {
            id: w[3] as u32,
            repeat: (w[3] >> 32) as u16,
            file: w[4],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_round_trips() {
        assert_eq!(decode(&[0; MEDIA_WORDS]), LegMedia::default());
        let m = LegMedia {
            codecs: [
                Some((0, MediaCodec::Pcmu)),
                None,
                Some((111, MediaCodec::OpusStereo)),
                Some((9, MediaCodec::G722)),
            ],
            transcode: Some(Transcode {
                output_pt: 8,
                output: MediaCodec::Pcma,
                output_ptime_ms: 20,
                output_dtmf: Some(101),
                opus_bitrate_kbps: 32,
                opus_fec: true,
                opus_dtx: false,
            }),
            record: true,
            record_paused: true,
            record_id: 0xfeed_beef,
            play: Some(MediaPlay {
                id: 7,
                repeat: 3,
                file: u64::MAX - 1,
            }),
        };
        assert_eq!(decode(&encode(&m)), m);
        let off = LegMedia {
            record: true,
            ..LegMedia::default()
        };
        assert_eq!(decode(&encode(&off)), off);
    }

    #[test]
    fn rtpmap_names() {
        assert_eq!(
            MediaCodec::from_rtpmap("PCMU", 8000),
            Some(MediaCodec::Pcmu)
        );
        assert_eq!(
            MediaCodec::from_rtpmap("OPUS", 48000),
            Some(MediaCodec::Opus)
        );
        assert_eq!(MediaCodec::from_rtpmap("G729", 8000), None);
        assert_eq!(MediaCodec::from_rtpmap("pcma", 16000), None);
    }
}
