//! RFC 4733 telephone-event payloads and their conversion between RTP
//! clock rates (8 kHz ↔ 48 kHz).
//!
//! Payload layout (RFC 4733 §2.3), 4 bytes, network order:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The event's RTP timestamp is its start, shared by every packet of the
//! event; `duration` counts RTP clock ticks from it (RFC 4733 §2.5.1.2),
//! and the events use the clock of the audio they accompany (RFC 4733
//! §2.2.1), so a relay between an 8 kHz and a 48 kHz leg rescales both.

/// Bytes of one event (RFC 4733 §2.3).
pub const PAYLOAD_LEN: usize = 4;

/// Why a payload is not a telephone-event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfError {
    /// Fewer than [`PAYLOAD_LEN`] bytes (the length seen).
    TooShort(usize),
}

impl std::fmt::Display for DtmfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DtmfError::TooShort(n) => write!(f, "telephone-event payload of {n} bytes, needs 4"),
        }
    }
}

impl std::error::Error for DtmfError {}

/// One telephone-event (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (§2.3.1; DTMF 0–9 are 0–9, `*` 10, `#` 11, A–D 12–15).
    pub event: u8,
    /// E: the last packets of the event (§2.3.2).
    pub end: bool,
    /// Power level, 0..=63, in −dBm0 (§2.3.4); larger is quieter.
    pub volume: u8,
    /// Duration so far, RTP clock ticks (§2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of `payload` (further bytes, such as RFC 2198
    /// redundancy that was not unwrapped, are ignored). The R bit is
    /// ignored, as §2.3.3 asks of receivers.
    ///
    /// # Errors
    /// [`DtmfError::TooShort`] below 4 bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::TooShort(payload.len()));
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Writes the 4-byte payload into `out[..4]` (R = 0, volume masked to
    /// 6 bits) and returns 4, or 0 when `out` is shorter.
    pub fn write(&self, out: &mut [u8]) -> usize {
        let Some(o) = out.get_mut(..PAYLOAD_LEN) else {
            return 0;
        };
        let d = self.duration.to_be_bytes();
        o.copy_from_slice(&[
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]);
        PAYLOAD_LEN
    }

    /// The same event with its duration converted from the `from` clock to
    /// the `to` clock (Hz), see [`rescale_duration`].
    pub fn rescaled(&self, from: u32, to: u32) -> Self {
        Self {
            duration: rescale_duration(self.duration, from, to),
            ..*self
        }
    }
}

/// `ticks` of a `from` Hz clock in ticks of a `to` Hz clock, rounded to
/// the nearest (a zero `from` gives 0). 160 ticks at 8 kHz (20 ms) are 960
/// at 48 kHz.
pub fn rescale_ticks(ticks: i64, from: u32, to: u32) -> i64 {
    if from == 0 {
        return 0;
    }
    let (f, t) = (i128::from(from), i128::from(to));
    let n = i128::from(ticks) * t;
    let r = if n >= 0 {
        (n + f / 2) / f
    } else {
        (n - f / 2) / f
    };
    r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A telephone-event duration from the `from` clock to the `to` clock,
/// saturating at 0xFFFF: 65535 ticks are 1.365 s at 48 kHz, and the
/// long-event segmentation of RFC 4733 §2.5.1.3 (a new segment with a new
/// timestamp) is the caller's to do, not this function's.
pub fn rescale_duration(duration: u16, from: u32, to: u32) -> u16 {
    rescale_ticks(i64::from(duration), from, to).clamp(0, 0xFFFF) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_write_follow_rfc4733_layout() {
        // '5', end, volume 10, duration 800.
        let p = [5u8, 0x80 | 0x40 | 10, 0x03, 0x20];
        let e = TelephoneEvent::parse(&p).unwrap();
        assert_eq!(
            e,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        let mut out = [0u8; 6];
        assert_eq!(e.write(&mut out), 4);
        // R is written as 0.
        assert_eq!(out[..4], [5, 0x8A, 0x03, 0x20]);
        assert_eq!(e.write(&mut out[..3]), 0);
        assert_eq!(TelephoneEvent::parse(&p[..3]), Err(DtmfError::TooShort(3)));
    }

    #[test]
    fn durations_rescale_between_8_and_48_khz() {
        let e = TelephoneEvent {
            event: 11,
            end: false,
            volume: 7,
            duration: 400,
        };
        assert_eq!(e.rescaled(8000, 48000).duration, 2400);
        assert_eq!(e.rescaled(8000, 48000).rescaled(48000, 8000), e);
        assert_eq!(rescale_duration(50_000, 8000, 48000), 0xFFFF);
        assert_eq!(rescale_ticks(160, 8000, 48000), 960);
        assert_eq!(rescale_ticks(-160, 8000, 48000), -960);
        assert_eq!(rescale_ticks(7, 48000, 8000), 1);
        assert_eq!(rescale_ticks(5, 0, 8000), 0);
    }
}
