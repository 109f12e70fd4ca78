//! One payload type of an SDP `m=` line as the `codec` operations
//! ([`crate::codec`]) and transcoding ([`crate::transcode`]) see it: its
//! number, encoding, clock rate and channels (RFC 8866 §6.6 `a=rtpmap`,
//! RFC 3551 §6 for static types).

/// One payload type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Payload type number.
    pub pt: u8,
    /// Encoding name as written (`a=rtpmap`, else RFC 3551's); empty when
    /// unknown.
    pub encoding: String,
    /// RTP clock rate, Hz; 0 when unknown.
    pub clock_rate: u32,
    /// Channels (1 unless the rtpmap says otherwise).
    pub channels: u32,
}

impl Codec {
    /// A codec of payload type `pt`.
    pub fn new(pt: u8, encoding: &str, clock_rate: u32, channels: u32) -> Codec {
        Codec {
            pt,
            encoding: encoding.to_string(),
            clock_rate,
            channels,
        }
    }

    /// `telephone-event` or `CN`: rtpengine's supplemental codecs, which
    /// go with the codecs of their clock rate.
    pub fn is_supplemental(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
            || self.encoding.eq_ignore_ascii_case("CN")
    }

    /// Whether `name` names this codec (rtpengine's `codec_names`:
    /// encoding, `encoding_with_params`, `encoding_with_full_params`;
    /// case-insensitive).
    pub fn is_named(&self, name: &str) -> bool {
        if self.encoding.is_empty() {
            return false;
        }
        let full = format!("{}/{}/{}", self.encoding, self.clock_rate, self.channels);
        let with_params = if self.channels > 1 {
            full.clone()
        } else {
            format!("{}/{}", self.encoding, self.clock_rate)
        };
        [self.encoding.as_str(), &with_params, &full]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}
