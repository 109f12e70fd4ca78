//! Zero-copy view of an RTP packet (RFC 3550 §5.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers (CC x 32)   |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |  profile-defined (16)         |  extension length (16, words) |  if X
//! |                  extension data (length x 32)                 |  if X
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    payload ...                                |
//! |                               |  padding ...  | padding count |  if P
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! All multi-byte fields are big-endian (network order).
//!
//! Accessors never panic: on a view made with [`RtpPacket::new_unchecked`]
//! over a buffer too short for a field, getters read the missing bytes as
//! zero and setters do nothing. Use [`RtpPacket::new_checked`] on anything
//! that came off the wire.

use std::fmt;

/// Length in bytes of the fixed RTP header (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// The only RTP version this view accepts (RFC 3550 §5.1, field V).
pub const VERSION: u8 = 2;

/// Reads `N` bytes at `off`, or zeros when they are past the end, so that
/// accessors on an unchecked view cannot panic.
#[inline]
pub(crate) fn read_be<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = off.checked_add(N).and_then(|end| buf.get(off..end)) {
        out.copy_from_slice(src);
    }
    out
}

/// Big-endian u16 at `off` (zero when out of bounds).
#[inline]
pub(crate) fn read_u16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(read_be(buf, off))
}

/// Big-endian u32 at `off` (zero when out of bounds).
#[inline]
pub(crate) fn read_u32(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(read_be(buf, off))
}

/// Byte at `off` (zero when out of bounds).
#[inline]
pub(crate) fn read_u8(buf: &[u8], off: usize) -> u8 {
    buf.get(off).copied().unwrap_or(0)
}

/// Writes `bytes` at `off`; does nothing when they would run past the end.
#[inline]
pub(crate) fn write_bytes(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = off
        .checked_add(bytes.len())
        .and_then(|end| buf.get_mut(off..end))
    {
        dst.copy_from_slice(bytes);
    }
}

/// Why a buffer is not a valid RTP packet (RFC 3550 §5.1, §A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than [`HEADER_LEN`] (12) bytes: no room for the fixed header.
    TooShort {
        /// Length of the buffer in bytes.
        len: usize,
    },
    /// The version field (top 2 bits of byte 0) is not 2.
    BadVersion(u8),
    /// The CSRC list (4 bytes per CSRC, CC from byte 0) runs past the end.
    CsrcPastEnd {
        /// The CC field (0..=15).
        csrc_count: u8,
        /// Length of the buffer in bytes.
        len: usize,
    },
    /// The extension header (4 bytes) or its data (4 bytes per word of the
    /// length field) runs past the end (RFC 3550 §5.3.1).
    ExtensionPastEnd {
        /// Bytes the header up to the end of the extension needs.
        needed: usize,
        /// Length of the buffer in bytes.
        len: usize,
    },
    /// The P bit is set but the padding count (last byte) is zero or larger
    /// than the bytes that follow the header.
    BadPadding {
        /// The padding count, from the last byte.
        count: u8,
        /// Bytes available after the header (payload plus padding).
        available: usize,
    },
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RtpError::TooShort { len } => {
                write!(
                    f,
                    "RTP packet too short: {len} bytes, header needs {HEADER_LEN}"
                )
            }
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected {VERSION}"),
            RtpError::CsrcPastEnd { csrc_count, len } => write!(
                f,
                "RTP CSRC list of {csrc_count} entries runs past the end of a {len}-byte packet"
            ),
            RtpError::ExtensionPastEnd { needed, len } => write!(
                f,
                "RTP header extension needs {needed} bytes, packet has {len}"
            ),
            RtpError::BadPadding { count, available } => write!(
                f,
                "RTP padding count {count} invalid with {available} bytes after the header"
            ),
        }
    }
}

impl std::error::Error for RtpError {}

/// A read/write view of an RTP packet over a buffer `T` (RFC 3550 §5.1).
///
/// The view spans the whole buffer: the packet ends where the buffer ends,
/// as it does for a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// Wraps `buffer` without any check. Accessors still never panic, but
    /// return meaningless values (zeros for missing bytes) on a malformed
    /// buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        RtpPacket { buffer }
    }

    /// Wraps `buffer` after checking the whole header layout against it
    /// (RFC 3550 §5.1, §5.3.1, §A.1):
    ///
    /// - [`RtpError::TooShort`]: fewer than 12 bytes;
    /// - [`RtpError::BadVersion`]: V is not 2;
    /// - [`RtpError::CsrcPastEnd`]: `12 + 4*CC` bytes do not fit;
    /// - [`RtpError::ExtensionPastEnd`]: with X set, the 4-byte extension
    ///   header or its `4*length` bytes of data do not fit;
    /// - [`RtpError::BadPadding`]: with P set, the last byte is zero or
    ///   exceeds the bytes after the header.
    pub fn new_checked(buffer: T) -> Result<Self, RtpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), RtpError> {
        let buf = self.buffer.as_ref();
        let len = buf.len();
        if len < HEADER_LEN {
            return Err(RtpError::TooShort { len });
        }
        if self.version() != VERSION {
            return Err(RtpError::BadVersion(self.version()));
        }
        let csrc_end = HEADER_LEN + 4 * usize::from(self.csrc_count());
        if csrc_end > len {
            return Err(RtpError::CsrcPastEnd {
                csrc_count: self.csrc_count(),
                len,
            });
        }
        if self.extension() {
            // Check the extension header itself before trusting its length.
            if csrc_end + 4 > len {
                return Err(RtpError::ExtensionPastEnd {
                    needed: csrc_end + 4,
                    len,
                });
            }
            let needed = self.header_len();
            if needed > len {
                return Err(RtpError::ExtensionPastEnd { needed, len });
            }
        }
        if self.padding() {
            let count = read_u8(buf, len - 1);
            let available = len - self.header_len();
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole packet: header, payload and padding.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version, V: bits 7..6 of byte 0 (2 for RFC 3550).
    #[inline]
    pub fn version(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 0) >> 6
    }

    /// Padding, P: bit 5 of byte 0. When set, the last byte counts the
    /// padding bytes at the end, itself included.
    #[inline]
    pub fn padding(&self) -> bool {
        read_u8(self.buffer.as_ref(), 0) & 0x20 != 0
    }

    /// Extension, X: bit 4 of byte 0. When set, one header extension
    /// follows the CSRC list (RFC 3550 §5.3.1).
    #[inline]
    pub fn extension(&self) -> bool {
        read_u8(self.buffer.as_ref(), 0) & 0x10 != 0
    }

    /// CSRC count, CC: bits 3..0 of byte 0 (0..=15).
    #[inline]
    pub fn csrc_count(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 0) & 0x0f
    }

    /// Marker, M: bit 7 of byte 1 (profile-defined; for audio, the first
    /// packet of a talkspurt).
    #[inline]
    pub fn marker(&self) -> bool {
        read_u8(self.buffer.as_ref(), 1) & 0x80 != 0
    }

    /// Payload type, PT: bits 6..0 of byte 1 (0..=127).
    #[inline]
    pub fn payload_type(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 1) & 0x7f
    }

    /// Sequence number: bytes 2..4, 16 bits, +1 per packet, wrapping.
    #[inline]
    pub fn sequence_number(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 2)
    }

    /// Timestamp: bytes 4..8, 32 bits, in units of the payload's clock rate
    /// (e.g. 8000 Hz for PCMU), wrapping.
    #[inline]
    pub fn timestamp(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 4)
    }

    /// Synchronization source: bytes 8..12, 32 bits.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 8)
    }

    /// The `i`-th contributing source (bytes `12+4i..16+4i`), or `None`
    /// when `i >= CC`.
    #[inline]
    pub fn csrc(&self, i: usize) -> Option<u32> {
        if i < usize::from(self.csrc_count()) {
            Some(read_u32(self.buffer.as_ref(), HEADER_LEN + 4 * i))
        } else {
            None
        }
    }

    /// Offset of the header extension (just after the CSRC list).
    #[inline]
    fn extension_offset(&self) -> usize {
        HEADER_LEN + 4 * usize::from(self.csrc_count())
    }

    /// Header extension "defined by profile" field (16 bits; 0xBEDE for
    /// RFC 8285 one-byte headers), or `None` when X is clear.
    #[inline]
    pub fn extension_profile(&self) -> Option<u16> {
        self.extension()
            .then(|| read_u16(self.buffer.as_ref(), self.extension_offset()))
    }

    /// Header extension data (`4 * length` bytes after the 4-byte extension
    /// header), or `None` when X is clear or it does not fit.
    #[inline]
    pub fn extension_data(&self) -> Option<&[u8]> {
        if !self.extension() {
            return None;
        }
        let start = self.extension_offset() + 4;
        self.buffer.as_ref().get(start..self.header_len())
    }

    /// Header length in bytes: 12 + 4*CC, plus 4 + 4*(extension length in
    /// words) when X is set.
    #[inline]
    pub fn header_len(&self) -> usize {
        let mut len = self.extension_offset();
        if self.extension() {
            let words = usize::from(read_u16(self.buffer.as_ref(), len + 2));
            len += 4 + 4 * words;
        }
        len
    }

    /// Number of padding bytes at the end (the last byte when P is set,
    /// else 0).
    #[inline]
    pub fn padding_len(&self) -> usize {
        let buf = self.buffer.as_ref();
        match (self.padding(), buf.last()) {
            (true, Some(&count)) => usize::from(count),
            _ => 0,
        }
    }

    /// The payload: from the end of the header to the start of the padding
    /// (empty when the layout does not fit the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = buf.len().saturating_sub(self.padding_len());
        buf.get(self.header_len()..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    /// Sets the sequence number (bytes 2..4).
    #[inline]
    pub fn set_sequence_number(&mut self, seq: u16) {
        write_bytes(self.buffer.as_mut(), 2, &seq.to_be_bytes());
    }

    /// Sets the timestamp (bytes 4..8, clock-rate units).
    #[inline]
    pub fn set_timestamp(&mut self, ts: u32) {
        write_bytes(self.buffer.as_mut(), 4, &ts.to_be_bytes());
    }

    /// Sets the SSRC (bytes 8..12).
    #[inline]
    pub fn set_ssrc(&mut self, ssrc: u32) {
        write_bytes(self.buffer.as_mut(), 8, &ssrc.to_be_bytes());
    }

    /// Sets or clears the marker bit (bit 7 of byte 1).
    #[inline]
    pub fn set_marker(&mut self, marker: bool) {
        if let Some(b) = self.buffer.as_mut().get_mut(1) {
            *b = (*b & 0x7f) | if marker { 0x80 } else { 0 };
        }
    }

    /// Sets the payload type (bits 6..0 of byte 1); bits above 7 are
    /// ignored.
    #[inline]
    pub fn set_payload_type(&mut self, pt: u8) {
        if let Some(b) = self.buffer.as_mut().get_mut(1) {
            *b = (*b & 0x80) | (pt & 0x7f);
        }
    }

    /// The payload, mutable (see [`RtpPacket::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let pad = self.padding_len();
        let buf = self.buffer.as_mut();
        let end = buf.len().saturating_sub(pad);
        buf.get_mut(start..end).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for RtpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Whether a datagram on an rtcp-mux port is RTCP rather than RTP
/// (RFC 5761 §4): the second byte, read as an RTCP packet type, is in
/// 192..=223 — that is RTP payload types 64..=95 with the marker bit set,
/// which RFC 5761 reserves so the two cannot be confused. Buffers shorter
/// than 2 bytes are not RTCP. Validation is left to the RTCP parser.
#[inline]
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> [u8; 16] {
        [
            0x80, 0x00, 0x12, 0x34, // V=2, PT 0, seq 0x1234
            0xde, 0xad, 0xbe, 0xef, // ts
            0x01, 0x02, 0x03, 0x04, // ssrc
            0xaa, 0xbb, 0xcc, 0xdd, // payload
        ]
    }

    #[test]
    fn parses_basic() {
        let buf = basic();
        let p = RtpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(!p.padding() && !p.extension() && !p.marker());
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xdeadbeef);
        assert_eq!(p.ssrc(), 0x01020304);
        assert_eq!(p.header_len(), 12);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(p.csrc(0), None);
        assert_eq!(p.extension_profile(), None);
    }

    #[test]
    fn parses_csrc_extension_padding_marker() {
        let buf = [
            0xb2, 0xe0, 0x00, 0x01, // V=2 P X CC=2, M, PT 96
            0, 0, 0, 160, // ts
            0, 0, 0, 7, // ssrc
            0, 0, 0, 1, // csrc 0
            0, 0, 0, 2, // csrc 1
            0xbe, 0xde, 0, 1, // extension, 1 word
            0x10, 0xff, 0, 0, // extension data
            9, 9, 9, // payload
            0, 0, 3, // padding of 3
        ];
        let p = RtpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.padding() && p.extension() && p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.csrc(0), Some(1));
        assert_eq!(p.csrc(1), Some(2));
        assert_eq!(p.csrc(2), None);
        assert_eq!(p.extension_profile(), Some(0xbede));
        assert_eq!(p.extension_data(), Some(&[0x10, 0xff, 0, 0][..]));
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), &[9, 9, 9]);
    }

    #[test]
    fn setters() {
        let mut buf = basic();
        let mut p = RtpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_sequence_number(0xfffe);
        p.set_timestamp(42);
        p.set_ssrc(0xcafebabe);
        p.set_marker(true);
        p.set_payload_type(101);
        assert_eq!(p.sequence_number(), 0xfffe);
        assert_eq!(p.timestamp(), 42);
        assert_eq!(p.ssrc(), 0xcafebabe);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 101);
        p.set_marker(false);
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 101);
        assert_eq!(p.version(), 2);
        p.payload_mut()[0] = 1;
        assert_eq!(p.payload()[0], 1);
    }

    #[test]
    fn rejects_too_short() {
        assert_eq!(
            RtpPacket::new_checked(&basic()[..11]).unwrap_err(),
            RtpError::TooShort { len: 11 }
        );
        assert_eq!(
            RtpPacket::new_checked(&[][..]).unwrap_err(),
            RtpError::TooShort { len: 0 }
        );
    }

    #[test]
    fn rejects_bad_version() {
        let mut buf = basic();
        buf[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::BadVersion(1)
        );
    }

    #[test]
    fn rejects_csrc_past_end() {
        let mut buf = basic();
        buf[0] = 0x82; // CC=2 needs 20 bytes, have 16
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::CsrcPastEnd {
                csrc_count: 2,
                len: 16
            }
        );
    }

    #[test]
    fn rejects_extension_past_end() {
        // Extension header itself missing.
        let mut buf = basic();
        buf[0] = 0x91; // X, CC=1: extension header at 16, nothing there
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::ExtensionPastEnd {
                needed: 20,
                len: 16
            }
        );
        // Extension length runs past the end.
        let mut buf = basic();
        buf[0] = 0x90;
        buf[12..16].copy_from_slice(&[0xbe, 0xde, 0, 2]);
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::ExtensionPastEnd {
                needed: 24,
                len: 16
            }
        );
    }

    #[test]
    fn rejects_bad_padding() {
        let mut buf = basic();
        buf[0] = 0xa0;
        buf[15] = 0;
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::BadPadding {
                count: 0,
                available: 4
            }
        );
        buf[15] = 5;
        assert_eq!(
            RtpPacket::new_checked(&buf[..]).unwrap_err(),
            RtpError::BadPadding {
                count: 5,
                available: 4
            }
        );
        buf[15] = 4; // the whole payload is padding: allowed
        let p = RtpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn unchecked_never_panics() {
        let p = RtpPacket::new_unchecked(&[0xbf, 0xff][..]);
        assert_eq!(p.ssrc(), 0);
        assert_eq!(p.csrc(14), Some(0));
        assert!(p.payload().is_empty());
        let mut buf = [0xbfu8];
        let mut p = RtpPacket::new_unchecked(&mut buf[..]);
        p.set_ssrc(1);
        p.set_marker(true);
        assert!(p.payload_mut().is_empty());
    }

    #[test]
    fn rtcp_demux() {
        assert!(looks_like_rtcp(&[0x80, 200, 0, 6]));
        assert!(looks_like_rtcp(&[0x81, 206]));
        assert!(looks_like_rtcp(&[0x80, 223]));
        assert!(!looks_like_rtcp(&[0x80, 224]));
        assert!(!looks_like_rtcp(&[0x80, 0x00])); // PCMU
        assert!(!looks_like_rtcp(&[0x80, 0xe0])); // PT 96 with marker
        assert!(!looks_like_rtcp(&[0x80, 191]));
        assert!(!looks_like_rtcp(&[0x80]));
    }
}
