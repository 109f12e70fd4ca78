//! The RFC 3551 §6 static RTP payload types (tables 4 and 5): payload type
//! number → encoding name, clock rate and channels. The one copy of the
//! table in tern; the SDP policies of both planes and the jitter buffer
//! read it.
//!
//! Dynamic types (96..=127) and unassigned or reserved numbers are not in
//! it: their meaning comes from an `a=rtpmap` (RFC 8866 §6.6).

/// What a static payload type is for (RFC 3551 §6: A, V or AV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// Audio (table 4).
    Audio,
    /// Video (table 5).
    Video,
    /// Audio and video (MP2T, 33).
    AudioVideo,
}

/// One row of RFC 3551 tables 4 and 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPayload {
    /// Payload type number, 0..=34.
    pub pt: u8,
    /// Encoding name as RFC 3551 spells it (compare case-insensitively,
    /// RFC 8866 §6.6).
    pub name: &'static str,
    /// RTP clock rate, Hz. G722 is 8000 although it samples at 16 kHz
    /// (RFC 3551 §4.5.2); video is 90000.
    pub clock_rate: u32,
    /// Audio channels; `None` for video, and for MPA (14), whose channel
    /// count the RFC leaves to the stream.
    pub channels: Option<u8>,
    /// Audio, video or both.
    pub media: MediaType,
}

const fn a(pt: u8, name: &'static str, clock_rate: u32, channels: Option<u8>) -> StaticPayload {
    StaticPayload {
        pt,
        name,
        clock_rate,
        channels,
        media: MediaType::Audio,
    }
}

const fn v(pt: u8, name: &'static str, media: MediaType) -> StaticPayload {
    StaticPayload {
        pt,
        name,
        clock_rate: 90_000,
        channels: None,
        media,
    }
}

/// RFC 3551 §6 tables 4 and 5, by ascending payload type. Types 1, 2, 19
/// (reserved) and 20..=24, 27, 29, 30 (unassigned) are absent.
pub const STATIC_PAYLOADS: &[StaticPayload] = &[
    a(0, "PCMU", 8000, Some(1)),
    a(3, "GSM", 8000, Some(1)),
    a(4, "G723", 8000, Some(1)),
    a(5, "DVI4", 8000, Some(1)),
    a(6, "DVI4", 16_000, Some(1)),
    a(7, "LPC", 8000, Some(1)),
    a(8, "PCMA", 8000, Some(1)),
    a(9, "G722", 8000, Some(1)),
    a(10, "L16", 44_100, Some(2)),
    a(11, "L16", 44_100, Some(1)),
    a(12, "QCELP", 8000, Some(1)),
    a(13, "CN", 8000, Some(1)),
    a(14, "MPA", 90_000, None),
    a(15, "G728", 8000, Some(1)),
    a(16, "DVI4", 11_025, Some(1)),
    a(17, "DVI4", 22_050, Some(1)),
    a(18, "G729", 8000, Some(1)),
    v(25, "CelB", MediaType::Video),
    v(26, "JPEG", MediaType::Video),
    v(28, "nv", MediaType::Video),
    v(31, "H261", MediaType::Video),
    v(32, "MPV", MediaType::Video),
    v(33, "MP2T", MediaType::AudioVideo),
    v(34, "H263", MediaType::Video),
];

/// The RFC 3551 §6 entry of static payload type `pt`; `None` for dynamic,
/// reserved or unassigned types (and anything above 127).
pub fn static_payload(pt: u8) -> Option<&'static StaticPayload> {
    STATIC_PAYLOADS.iter().find(|p| p.pt == pt)
}

/// The RFC 3551 §6 clock rate of static payload type `pt`, Hz; `None` for
/// dynamic or unassigned types.
pub fn static_clock_rate(pt: u8) -> Option<u32> {
    static_payload(pt).map(|p| p.clock_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_static() {
        for w in STATIC_PAYLOADS.windows(2) {
            assert!(w[0].pt < w[1].pt, "{w:?}");
        }
        assert!(STATIC_PAYLOADS.iter().all(|p| p.pt < 35));
    }

    #[test]
    fn rfc3551_rows() {
        let pcmu = static_payload(0).unwrap();
        assert_eq!(
            (pcmu.name, pcmu.clock_rate, pcmu.channels),
            ("PCMU", 8000, Some(1))
        );
        assert_eq!(static_payload(9).unwrap().name, "G722");
        assert_eq!(static_clock_rate(9), Some(8000));
        assert_eq!(static_clock_rate(6), Some(16_000));
        assert_eq!(static_payload(10).unwrap().channels, Some(2));
        assert_eq!(static_clock_rate(16), Some(11_025));
        assert_eq!(static_clock_rate(17), Some(22_050));
        assert_eq!(static_clock_rate(31), Some(90_000));
        assert_eq!(static_payload(33).unwrap().media, MediaType::AudioVideo);
        for pt in [1, 2, 19, 20, 24, 27, 29, 30, 35, 96, 101, 127, 128, 255] {
            assert_eq!(static_payload(pt), None, "{pt}");
        }
    }

    #[test]
    fn clock_rates_match_the_old_jitter_table() {
        // The table the jitter buffer used before this module existed.
        let old = |pt: u8| match pt {
            0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
            6 => Some(16000),
            10 | 11 => Some(44100),
            16 => Some(11025),
            17 => Some(22050),
            14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90000),
            _ => None,
        };
        for pt in 0..=255u8 {
            assert_eq!(static_clock_rate(pt), old(pt), "{pt}");
        }
    }
}
