//! Packet index estimation (RFC 3711 §3.3.1, Appendix A) and the replay
//! window (§3.3.2).
//!
//! An SRTP packet index is the 48-bit `ROC << 16 | SEQ`; an SRTCP index is
//! the 31-bit explicit index of the trailer. Both are tracked in a
//! [`Window`]: the highest index seen and a bitmap of the 64 before it.

use super::SrtpError;

/// Width of the replay window in packets (RFC 3711 §3.3.2 asks for at
/// least 64).
pub(crate) const WINDOW: u64 = 64;

/// Estimates the 48-bit packet index of a packet carrying `seq`, given the
/// highest index seen so far `top` (`ROC << 16 | s_l`): RFC 3711
/// Appendix A. `None` when the guessed ROC would be -1 (a packet from
/// before the stream's first one) or 2^32 (the ROC is exhausted and the
/// master key must have been replaced long ago).
pub(crate) fn estimate(top: u64, seq: u16) -> Option<u64> {
    let roc = (top >> 16) as i64;
    let s_l = (top & 0xffff) as i64;
    let seq = seq as i64;
    let v = if s_l < 0x8000 {
        if seq - s_l > 0x8000 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    if !(0..=u32::MAX as i64).contains(&v) {
        return None;
    }
    Some(((v as u64) << 16) | seq as u64)
}

/// The highest index seen and which of the 63 before it were seen too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// Highest authenticated index (SRTP: 48 bits, SRTCP: 31 bits).
    pub top: u64,
    /// Bit `n` set: index `top - n` was seen; bit 0 is `top` itself.
    pub bits: u64,
}

impl Window {
    /// A window whose only packet so far is `index`.
    pub fn starting_at(index: u64) -> Window {
        Window {
            top: index,
            bits: 1,
        }
    }

    /// A window restored from persisted state: everything at or below
    /// `index` counts as seen, since which of those arrived is not known.
    pub fn restored(index: u64) -> Window {
        Window {
            top: index,
            bits: u64::MAX,
        }
    }

    /// Whether `index` may be accepted; changes nothing.
    ///
    /// Errors: [`SrtpError::TooOld`] if it is 64 or more behind the top,
    /// [`SrtpError::Replayed`] if it was already seen.
    pub fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.top {
            return Ok(());
        }
        let back = self.top - index;
        if back >= WINDOW {
            return Err(SrtpError::TooOld);
        }
        if (self.bits >> back) & 1 == 1 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records `index` as seen; call only after [`Window::check`] passed
    /// and the packet authenticated.
    pub fn update(&mut self, index: u64) {
        if index > self.top {
            let ahead = index - self.top;
            self.bits = if ahead >= WINDOW {
                1
            } else {
                (self.bits << ahead) | 1
            };
            self.top = index;
        } else {
            let back = self.top - index;
            if back < WINDOW {
                self.bits |= 1 << back;
            }
        }
    }
}
