//! Zero-copy views of RTCP packets (RFC 3550 §6) and in-place SSRC mapping
//! of compound packets.
//!
//! Every RTCP packet starts with the same 4-byte header (RFC 3550 §6.4.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|  count  |      PT       |  length (32-bit words - 1)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `count` is RC (SR/RR), SC (SDES/BYE), FMT (RTPFB/PSFB) or a subtype
//! (APP). A datagram carries one or more such packets back to back: a
//! compound packet (RFC 3550 §6.1), walked by [`CompoundIter`].
//!
//! Accessors never panic: on a view made with [`RtcpPacket::new_unchecked`]
//! over a buffer too short for a field, getters read missing bytes as zero.

use std::fmt;

use crate::rtp::{read_u16, read_u32, read_u8, write_bytes};

/// Length in bytes of the common RTCP header (RFC 3550 §6.4.1).
pub const HEADER_LEN: usize = 4;

/// The only RTCP version accepted (RFC 3550 §6.4.1, field V).
pub const VERSION: u8 = 2;

/// Sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;
/// Transport-layer feedback, e.g. generic NACK (RFC 4585 §6.2).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback, e.g. PLI, FIR (RFC 4585 §6.3, RFC 5104).
pub const PT_PSFB: u8 = 206;

/// Length of the sender info in an SR after the sender SSRC: NTP timestamp
/// (8), RTP timestamp (4), packet count (4), octet count (4) (RFC 3550
/// §6.4.1).
const SENDER_INFO_LEN: usize = 20;
/// Length of one report block (RFC 3550 §6.4.1): SSRC, fraction lost +
/// cumulative lost, extended highest sequence, jitter, LSR, DLSR.
pub const REPORT_BLOCK_LEN: usize = 24;
/// PSFB FMT of a Full Intra Request (RFC 5104 §4.3.1), whose FCI entries
/// (8 bytes each) name the media SSRC instead of the common header.
const PSFB_FMT_FIR: u8 = 4;

/// Why a buffer is not a valid (compound) RTCP packet. Offsets are byte
/// offsets of the offending packet's header within the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    // --- Framing: the common header and lengths (RFC 3550 §6.4.1, §A.2).
    /// Fewer than 4 bytes left where a packet header should start (an
    /// empty datagram included).
    TooShort {
        /// Offset of the truncated header.
        offset: usize,
        /// Bytes left from that offset.
        len: usize,
    },
    /// The version field is not 2.
    BadVersion {
        /// Offset of the packet.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// The length field, `(length + 1) * 4` bytes, runs past the datagram.
    LengthPastEnd {
        /// Offset of the packet.
        offset: usize,
        /// Bytes the length field declares, header included.
        declared: usize,
        /// Bytes left in the datagram from that offset.
        available: usize,
    },
    /// The P bit is set but the padding count (last byte of the packet) is
    /// zero or exceeds the packet's bytes after its header.
    BadPadding {
        /// Offset of the packet.
        offset: usize,
        /// The padding count.
        count: u8,
    },
    /// The P bit is set on a packet that is not the last of the compound;
    /// only the last one may be padded (RFC 3550 §6.4.1, §A.2).
    PaddingNotLast {
        /// Offset of the packet.
        offset: usize,
    },

    // --- Body: the type-specific layout does not fit the packet.
    /// The fixed part (sender SSRC, sender info, feedback SSRCs), the RC
    /// report blocks, the SC BYE sources, the BYE reason or the FIR entries
    /// need more bytes than the packet holds (padding excluded).
    BodyTooShort {
        /// Offset of the packet.
        offset: usize,
        /// Its packet type.
        packet_type: u8,
        /// Bytes needed after the 4-byte header.
        needed: usize,
        /// Bytes there are after the header, padding excluded.
        available: usize,
    },
    /// An SDES chunk (SSRC, items, null terminator, alignment) runs past
    /// the end of its packet (RFC 3550 §6.5).
    SdesChunkPastEnd {
        /// Offset of the packet.
        offset: usize,
        /// Index of the chunk (0-based).
        chunk: u8,
    },
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RtcpError::TooShort { offset, len } => write!(
                f,
                "RTCP header at byte {offset} truncated: {len} bytes left, need {HEADER_LEN}"
            ),
            RtcpError::BadVersion { offset, version } => write!(
                f,
                "RTCP packet at byte {offset} has version {version}, expected {VERSION}"
            ),
            RtcpError::LengthPastEnd {
                offset,
                declared,
                available,
            } => write!(
                f,
                "RTCP packet at byte {offset} declares {declared} bytes, {available} left"
            ),
            RtcpError::BadPadding { offset, count } => write!(
                f,
                "RTCP packet at byte {offset} has invalid padding count {count}"
            ),
            RtcpError::PaddingNotLast { offset } => write!(
                f,
                "RTCP packet at byte {offset} is padded but not last in the compound"
            ),
            RtcpError::BodyTooShort {
                offset,
                packet_type,
                needed,
                available,
            } => write!(
                f,
                "RTCP packet type {packet_type} at byte {offset} needs {needed} body bytes, has {available}"
            ),
            RtcpError::SdesChunkPastEnd { offset, chunk } => write!(
                f,
                "SDES chunk {chunk} of the packet at byte {offset} runs past its end"
            ),
        }
    }
}

impl std::error::Error for RtcpError {}

/// A view of ONE RTCP packet: the common header plus `length` words
/// (RFC 3550 §6.4.1). The buffer may extend past the packet (the rest of a
/// compound); [`RtcpPacket::packet_len`] says where this one ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtcpPacket<T> {
    /// Wraps `buffer` without any check; accessors return zeros for bytes
    /// past its end.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        RtcpPacket { buffer }
    }

    /// Wraps `buffer` after checking the common header against it (the
    /// offsets in errors are 0):
    ///
    /// - [`RtcpError::TooShort`]: fewer than 4 bytes;
    /// - [`RtcpError::BadVersion`]: V is not 2;
    /// - [`RtcpError::LengthPastEnd`]: `(length + 1) * 4` bytes do not fit;
    /// - [`RtcpError::BadPadding`]: with P set, the packet's last byte is 0
    ///   or more than `packet_len - 4`.
    ///
    /// The type-specific body is not checked here; [`validate_compound`]
    /// and [`map_ssrcs`] do that.
    pub fn new_checked(buffer: T) -> Result<Self, RtcpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check(0)?;
        Ok(packet)
    }

    fn check(&self, offset: usize) -> Result<(), RtcpError> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(RtcpError::TooShort {
                offset,
                len: available,
            });
        }
        if self.version() != VERSION {
            return Err(RtcpError::BadVersion {
                offset,
                version: self.version(),
            });
        }
        let declared = self.packet_len();
        if declared > available {
            return Err(RtcpError::LengthPastEnd {
                offset,
                declared,
                available,
            });
        }
        if self.padding() {
            let count = read_u8(self.buffer.as_ref(), declared - 1);
            if count == 0 || usize::from(count) > declared - HEADER_LEN {
                return Err(RtcpError::BadPadding { offset, count });
            }
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// This packet's bytes, header to end of padding (clamped to the
    /// buffer).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        buf.get(..self.packet_len()).unwrap_or(buf)
    }

    /// Version, V: bits 7..6 of byte 0 (2).
    #[inline]
    pub fn version(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 0) >> 6
    }

    /// Padding, P: bit 5 of byte 0; the packet's last byte then counts the
    /// padding bytes, itself included.
    #[inline]
    pub fn padding(&self) -> bool {
        read_u8(self.buffer.as_ref(), 0) & 0x20 != 0
    }

    /// Count: bits 4..0 of byte 0 (0..=31): RC for SR/RR, SC for SDES/BYE,
    /// FMT for RTPFB/PSFB, subtype for APP.
    #[inline]
    pub fn count(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 0) & 0x1f
    }

    /// Packet type, PT: byte 1 (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP,
    /// 205 RTPFB, 206 PSFB, ...).
    #[inline]
    pub fn packet_type(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 1)
    }

    /// Raw length field: bytes 2..4, in 32-bit words minus one.
    #[inline]
    pub fn length(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 2)
    }

    /// Packet length in bytes, header and padding included:
    /// `(length + 1) * 4`.
    #[inline]
    pub fn packet_len(&self) -> usize {
        (usize::from(self.length()) + 1) * 4
    }

    /// Padding bytes at the end of the packet (0 when P is clear).
    #[inline]
    pub fn padding_len(&self) -> usize {
        if self.padding() {
            usize::from(read_u8(self.buffer.as_ref(), self.packet_len() - 1))
        } else {
            0
        }
    }

    /// The body after the 4-byte header, padding excluded (empty when the
    /// layout does not fit the buffer).
    #[inline]
    pub fn body(&self) -> &[u8] {
        let end = self.packet_len().saturating_sub(self.padding_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The first SSRC after the header (bytes 4..8): the sender for SR, RR,
    /// RTPFB, PSFB and APP, the first chunk's SSRC for SDES, the first
    /// source for BYE; `None` when the body is shorter than 4 bytes.
    #[inline]
    pub fn ssrc(&self) -> Option<u32> {
        (self.body().len() >= 4).then(|| read_u32(self.buffer.as_ref(), HEADER_LEN))
    }
}

/// Checked iteration over the packets of a compound RTCP datagram
/// (RFC 3550 §6.1, §A.2).
///
/// Yields each packet as a view over exactly its bytes. Each packet's
/// header must be whole, its version 2, its length within the datagram and
/// its padding valid; only the last packet may be padded. On the first
/// error it yields that error and then stops, so a packet's lengths always
/// add up to the datagram when the walk ends without one. An empty datagram
/// yields [`RtcpError::TooShort`].
#[derive(Debug, Clone)]
pub struct CompoundIter<'a> {
    buf: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> CompoundIter<'a> {
    /// Starts a walk over `buf`, one UDP datagram.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        CompoundIter {
            buf,
            offset: 0,
            done: false,
        }
    }

    /// Byte offset of the next packet within the datagram.
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for CompoundIter<'a> {
    type Item = Result<RtcpPacket<&'a [u8]>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.offset != 0 && self.offset >= self.buf.len()) {
            return None;
        }
        let offset = self.offset;
        let rest = self.buf.get(offset..).unwrap_or(&[]);
        let whole = RtcpPacket::new_unchecked(rest);
        if let Err(e) = whole.check(offset) {
            self.done = true;
            return Some(Err(e));
        }
        let len = whole.packet_len();
        if whole.padding() && len != rest.len() {
            self.done = true;
            return Some(Err(RtcpError::PaddingNotLast { offset }));
        }
        self.offset = offset + len;
        Some(Ok(RtcpPacket::new_unchecked(
            rest.get(..len).unwrap_or(rest),
        )))
    }
}

/// Which SSRC/CSRC field of an RTCP packet [`map_ssrcs`] is handing over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SsrcField {
    /// The packet sender's own SSRC: SR/RR sender (RFC 3550 §6.4), and the
    /// first word of APP (§6.7) and of any unknown packet type.
    Sender,
    /// The source a report block is about: "SSRC_n (source identifier)"
    /// of an SR/RR report block (RFC 3550 §6.4.1).
    ReportSource,
    /// An SDES chunk's SSRC/CSRC (RFC 3550 §6.5).
    SdesChunk,
    /// A BYE source (RFC 3550 §6.6).
    ByeSource,
    /// "SSRC of packet sender" of RTPFB/PSFB feedback (RFC 4585 §6.1).
    FeedbackSender,
    /// "SSRC of media source" of RTPFB/PSFB feedback (RFC 4585 §6.1), and
    /// the SSRC of each FIR entry (RFC 5104 §4.3.1).
    FeedbackMedia,
}

/// Receives the SSRC fields found by the body walker; split from the walk
/// so one walk serves both validation (read-only) and rewriting.
trait FieldSink {
    fn bytes(&self) -> &[u8];
    fn field(&mut self, field: SsrcField, offset: usize);
}

struct Validate<'a>(&'a [u8]);

impl FieldSink for Validate<'_> {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn field(&mut self, _: SsrcField, _: usize) {}
}

struct Rewrite<'a, F>(&'a mut [u8], F);

impl<F: FnMut(SsrcField, u32) -> u32> FieldSink for Rewrite<'_, F> {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn field(&mut self, field: SsrcField, offset: usize) {
        let old = read_u32(self.0, offset);
        let new = (self.1)(field, old);
        if new != old {
            write_bytes(self.0, offset, &new.to_be_bytes());
        }
    }
}

/// Walks every packet of the compound in the sink's buffer, checking each
/// type-specific layout and reporting each SSRC field's offset. Rewriting
/// a field never changes a byte the walk reads (headers, counts, SDES item
/// lengths), so reading and writing can interleave.
fn walk(sink: &mut impl FieldSink) -> Result<(), RtcpError> {
    let mut offset = 0;
    loop {
        // Header checks are the iterator's; one step at a time so the
        // borrow of the sink's bytes ends before a field is reported.
        let (pt, count, body_len) = {
            let mut it = CompoundIter {
                buf: sink.bytes(),
                offset,
                done: false,
            };
            match it.next() {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(p)) => (p.packet_type(), p.count(), p.body().len()),
            }
        };
        let next = offset + (usize::from(read_u16(sink.bytes(), offset + 2)) + 1) * 4;
        let body = offset + HEADER_LEN;
        let need = |needed: usize| {
            if needed > body_len {
                Err(RtcpError::BodyTooShort {
                    offset,
                    packet_type: pt,
                    needed,
                    available: body_len,
                })
            } else {
                Ok(())
            }
        };
        let count = usize::from(count);
        match pt {
            PT_SR | PT_RR => {
                let fixed = if pt == PT_SR { 4 + SENDER_INFO_LEN } else { 4 };
                // Profile-specific extensions may follow the report blocks.
                need(fixed + count * REPORT_BLOCK_LEN)?;
                sink.field(SsrcField::Sender, body);
                for i in 0..count {
                    sink.field(SsrcField::ReportSource, body + fixed + i * REPORT_BLOCK_LEN);
                }
            }
            PT_SDES => walk_sdes(sink, offset, count, body_len)?,
            PT_BYE => {
                need(4 * count)?;
                let reason = 4 * count;
                if reason < body_len {
                    // Optional reason: length octet then text (RFC 3550 §6.6).
                    let text = usize::from(read_u8(sink.bytes(), body + reason));
                    need(reason + 1 + text)?;
                }
                for i in 0..count {
                    sink.field(SsrcField::ByeSource, body + 4 * i);
                }
            }
            PT_RTPFB | PT_PSFB => {
                need(8)?;
                let fir = pt == PT_PSFB && count == usize::from(PSFB_FMT_FIR);
                if fir {
                    // A partial trailing FCI entry: ask for the whole entry.
                    need(8 + (body_len - 8).div_ceil(8) * 8)?;
                }
                sink.field(SsrcField::FeedbackSender, body);
                sink.field(SsrcField::FeedbackMedia, body + 4);
                if fir {
                    // FIR puts the target in each FCI entry: SSRC (4),
                    // seq nr (1), reserved (3) (RFC 5104 §4.3.1.1).
                    let mut at = body + 8;
                    while at + 8 <= body + body_len {
                        sink.field(SsrcField::FeedbackMedia, at);
                        at += 8;
                    }
                }
            }
            _ => {
                // APP needs SSRC + name (RFC 3550 §6.7); unknown types are
                // left alone when too short to hold a sender SSRC.
                if pt == PT_APP {
                    need(8)?;
                }
                if body_len >= 4 {
                    sink.field(SsrcField::Sender, body);
                }
            }
        }
        offset = next;
    }
}

/// Walks the SC chunks of an SDES packet (RFC 3550 §6.5): each chunk is an
/// SSRC/CSRC, then items (type octet, length octet, text), ended by one or
/// more null octets up to the next 32-bit boundary (at least one null, so a
/// chunk with no items is SSRC + 4 nulls).
fn walk_sdes(
    sink: &mut impl FieldSink,
    offset: usize,
    count: usize,
    body_len: usize,
) -> Result<(), RtcpError> {
    let body = offset + HEADER_LEN;
    let end = body + body_len;
    let mut at = body;
    for chunk in 0..count {
        // Count is at most 31, so the cast is lossless.
        let past_end = RtcpError::SdesChunkPastEnd {
            offset,
            chunk: chunk as u8,
        };
        let ssrc_at = at;
        at += 4;
        loop {
            if at >= end {
                return Err(past_end);
            }
            if read_u8(sink.bytes(), at) == 0 {
                // Null terminator, then nulls to the 32-bit boundary;
                // chunks start 32-bit aligned relative to the packet.
                at = (at + 1 - offset).next_multiple_of(4) + offset;
                break;
            }
            if at + 2 > end {
                return Err(past_end);
            }
            at += 2 + usize::from(read_u8(sink.bytes(), at + 1));
        }
        if at > end {
            return Err(past_end);
        }
        sink.field(SsrcField::SdesChunk, ssrc_at);
    }
    Ok(())
}

/// Checks a whole compound RTCP datagram: the framing of every packet (see
/// [`CompoundIter`]) and the type-specific layout that [`map_ssrcs`] relies
/// on (see [`RtcpError`] for what is checked).
pub fn validate_compound(buf: &[u8]) -> Result<(), RtcpError> {
    walk(&mut Validate(buf))
}

/// Rewrites, in place, every SSRC/CSRC field of a compound RTCP datagram
/// with what `f(field, old_value)` returns:
///
/// - SR (200): sender SSRC ([`SsrcField::Sender`]) and RC report-block
///   sources ([`SsrcField::ReportSource`], 24-byte blocks after the 20-byte
///   sender info), RFC 3550 §6.4.1;
/// - RR (201): sender SSRC and RC report-block sources, §6.4.2;
/// - SDES (202): each of the SC chunks' SSRC ([`SsrcField::SdesChunk`]),
///   §6.5;
/// - BYE (203): each of the SC sources ([`SsrcField::ByeSource`]), §6.6;
/// - RTPFB (205) / PSFB (206): sender ([`SsrcField::FeedbackSender`]) and
///   media source ([`SsrcField::FeedbackMedia`]), RFC 4585 §6.1, plus the
///   SSRC of each FIR entry as `FeedbackMedia` (RFC 5104 §4.3.1);
/// - APP (204) and unknown types: the word after the header, as `Sender`.
///
/// The whole datagram is validated first ([`validate_compound`]), so on
/// error nothing has been written. `f` is only called on valid input;
/// values it returns unchanged are not written.
pub fn map_ssrcs(buf: &mut [u8], f: impl FnMut(SsrcField, u32) -> u32) -> Result<(), RtcpError> {
    validate_compound(buf)?;
    walk(&mut Rewrite(buf, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a header for a packet of `total` bytes (a multiple of 4).
    fn hdr(count: u8, pt: u8, total: usize) -> [u8; 4] {
        let words = (total / 4 - 1) as u16;
        let l = words.to_be_bytes();
        [0x80 | count, pt, l[0], l[1]]
    }

    fn sr_two_blocks() -> Vec<u8> {
        let mut v = hdr(2, PT_SR, 4 + 4 + 20 + 48).to_vec();
        v.extend_from_slice(&0x1111_1111u32.to_be_bytes());
        v.extend_from_slice(&[0xee; 20]);
        for src in [0x2222_2222u32, 0x3333_3333] {
            v.extend_from_slice(&src.to_be_bytes());
            v.extend_from_slice(&[0x77; 20]);
        }
        v
    }

    fn sdes_two_chunks() -> Vec<u8> {
        // Chunk 1: SSRC, CNAME "ab" (4 bytes) -> 8 + null + 3 pad = 12
        // Chunk 2: SSRC, CNAME "xyz", NAME "q" (5 + 3 bytes) -> 12 + 4 nulls
        let mut body = Vec::new();
        body.extend_from_slice(&0xaaaa_aaaau32.to_be_bytes());
        body.extend_from_slice(&[1, 2, b'a', b'b', 0, 0, 0, 0]);
        body.extend_from_slice(&0xbbbb_bbbbu32.to_be_bytes());
        body.extend_from_slice(&[1, 3, b'x', b'y', b'z', 2, 1, b'q', 0, 0, 0, 0]);
        let mut v = hdr(2, PT_SDES, 4 + body.len()).to_vec();
        v.extend_from_slice(&body);
        v
    }

    fn collect(buf: &mut [u8]) -> Result<Vec<(SsrcField, u32)>, RtcpError> {
        let mut seen = Vec::new();
        map_ssrcs(buf, |f, v| {
            seen.push((f, v));
            v ^ 0xffff_ffff
        })?;
        Ok(seen)
    }

    #[test]
    fn sr_with_two_report_blocks() {
        let mut buf = sr_two_blocks();
        let p = RtcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.packet_type(), PT_SR);
        assert_eq!(p.count(), 2);
        assert_eq!(p.packet_len(), buf.len());
        assert_eq!(p.ssrc(), Some(0x1111_1111));
        let seen = collect(&mut buf).unwrap();
        assert_eq!(
            seen,
            [
                (SsrcField::Sender, 0x1111_1111),
                (SsrcField::ReportSource, 0x2222_2222),
                (SsrcField::ReportSource, 0x3333_3333),
            ]
        );
        assert_eq!(read_u32(&buf, 4), !0x1111_1111u32);
        assert_eq!(read_u32(&buf, 28), !0x2222_2222u32);
        assert_eq!(read_u32(&buf, 52), !0x3333_3333u32);
        // Sender info and report contents untouched.
        assert!(buf[8..28].iter().all(|&b| b == 0xee));
        assert!(buf[32..52].iter().all(|&b| b == 0x77));
    }

    #[test]
    fn rr() {
        let mut buf = hdr(1, PT_RR, 32).to_vec();
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&6u32.to_be_bytes());
        buf.extend_from_slice(&[0; 20]);
        assert_eq!(
            collect(&mut buf).unwrap(),
            [(SsrcField::Sender, 5), (SsrcField::ReportSource, 6)]
        );
        // Empty RR: header + sender SSRC only.
        let mut buf = hdr(0, PT_RR, 8).to_vec();
        buf.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(collect(&mut buf).unwrap(), [(SsrcField::Sender, 5)]);
    }

    #[test]
    fn sdes_multiple_chunks_and_items() {
        let mut buf = sdes_two_chunks();
        let orig = buf.clone();
        assert_eq!(
            collect(&mut buf).unwrap(),
            [
                (SsrcField::SdesChunk, 0xaaaa_aaaa),
                (SsrcField::SdesChunk, 0xbbbb_bbbb),
            ]
        );
        assert_eq!(read_u32(&buf, 4), !0xaaaa_aaaau32);
        assert_eq!(read_u32(&buf, 16), !0xbbbb_bbbbu32);
        assert_eq!(buf[8..16], orig[8..16]);
        assert_eq!(buf[20..], orig[20..]);
    }

    #[test]
    fn sdes_chunk_without_items() {
        let mut buf = hdr(1, PT_SDES, 12).to_vec();
        buf.extend_from_slice(&9u32.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        assert_eq!(collect(&mut buf).unwrap(), [(SsrcField::SdesChunk, 9)]);
    }

    #[test]
    fn bye_with_reason() {
        let mut buf = hdr(2, PT_BYE, 4 + 8 + 4).to_vec();
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&2u32.to_be_bytes());
        buf.extend_from_slice(&[3, b'b', b'y', b'e']);
        assert_eq!(
            collect(&mut buf).unwrap(),
            [(SsrcField::ByeSource, 1), (SsrcField::ByeSource, 2)]
        );
        assert_eq!(&buf[12..], &[3, b'b', b'y', b'e']);
    }

    #[test]
    fn pli_and_nack() {
        // PLI: PSFB FMT 1, no FCI.
        let mut buf = hdr(1, PT_PSFB, 12).to_vec();
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(&20u32.to_be_bytes());
        assert_eq!(
            collect(&mut buf).unwrap(),
            [
                (SsrcField::FeedbackSender, 10),
                (SsrcField::FeedbackMedia, 20)
            ]
        );
        // Generic NACK: RTPFB FMT 1, one FCI (PID, BLP) left alone.
        let mut buf = hdr(1, PT_RTPFB, 16).to_vec();
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(&20u32.to_be_bytes());
        buf.extend_from_slice(&[0x12, 0x34, 0x00, 0x01]);
        assert_eq!(
            collect(&mut buf).unwrap(),
            [
                (SsrcField::FeedbackSender, 10),
                (SsrcField::FeedbackMedia, 20)
            ]
        );
        assert_eq!(&buf[12..], &[0x12, 0x34, 0x00, 0x01]);
    }

    #[test]
    fn fir_entries() {
        let mut buf = hdr(PSFB_FMT_FIR, PT_PSFB, 20).to_vec();
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&30u32.to_be_bytes());
        buf.extend_from_slice(&[7, 0, 0, 0]);
        assert_eq!(
            collect(&mut buf).unwrap(),
            [
                (SsrcField::FeedbackSender, 10),
                (SsrcField::FeedbackMedia, 0),
                (SsrcField::FeedbackMedia, 30),
            ]
        );
        // A partial FIR entry is malformed.
        let mut buf = hdr(PSFB_FMT_FIR, PT_PSFB, 16).to_vec();
        buf.extend_from_slice(&[0; 12]);
        assert!(matches!(
            collect(&mut buf),
            Err(RtcpError::BodyTooShort { .. })
        ));
    }

    #[test]
    fn app_and_unknown_sender() {
        let mut buf = hdr(0, PT_APP, 12).to_vec();
        buf.extend_from_slice(&4u32.to_be_bytes());
        buf.extend_from_slice(b"name");
        let mut xr = hdr(0, 207, 8).to_vec();
        xr.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&xr);
        assert_eq!(
            collect(&mut buf).unwrap(),
            [(SsrcField::Sender, 4), (SsrcField::Sender, 5)]
        );
    }

    #[test]
    fn compound_sr_sdes() {
        let mut buf = sr_two_blocks();
        let sr_len = buf.len();
        buf.extend_from_slice(&sdes_two_chunks());
        let kinds: Vec<u8> = CompoundIter::new(&buf)
            .map(|p| p.unwrap().packet_type())
            .collect();
        assert_eq!(kinds, [PT_SR, PT_SDES]);
        let seen = collect(&mut buf).unwrap();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[3], (SsrcField::SdesChunk, 0xaaaa_aaaa));
        assert_eq!(read_u32(&buf, sr_len + 4), !0xaaaa_aaaau32);
    }

    #[test]
    fn padded_last_packet() {
        let mut buf = sr_two_blocks();
        let mut rr = hdr(0, PT_RR, 12).to_vec();
        rr[0] |= 0x20;
        rr.extend_from_slice(&5u32.to_be_bytes());
        rr.extend_from_slice(&[0, 0, 0, 4]);
        buf.extend_from_slice(&rr);
        assert_eq!(collect(&mut buf).unwrap().len(), 4);
        let p = RtcpPacket::new_checked(&rr[..]).unwrap();
        assert_eq!(p.padding_len(), 4);
        assert_eq!(p.body(), &5u32.to_be_bytes());
    }

    /// Every malformed input leaves the buffer untouched.
    fn assert_rejected(mut buf: Vec<u8>, want: RtcpError) {
        let orig = buf.clone();
        assert_eq!(map_ssrcs(&mut buf, |_, v| !v), Err(want));
        assert_eq!(buf, orig);
        assert_eq!(validate_compound(&buf), Err(want));
    }

    #[test]
    fn rejects_truncated() {
        assert_rejected(Vec::new(), RtcpError::TooShort { offset: 0, len: 0 });
        let mut buf = sr_two_blocks();
        buf.extend_from_slice(&[0x80, PT_RR]);
        assert_rejected(buf, RtcpError::TooShort { offset: 76, len: 2 });
    }

    #[test]
    fn rejects_length_past_end() {
        let mut buf = sr_two_blocks();
        buf.truncate(72);
        assert_rejected(
            buf,
            RtcpError::LengthPastEnd {
                offset: 0,
                declared: 76,
                available: 72,
            },
        );
    }

    #[test]
    fn rejects_bad_version() {
        let mut buf = sr_two_blocks();
        let mut rr = hdr(0, PT_RR, 8).to_vec();
        rr[0] = 0x40;
        rr.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&rr);
        assert_rejected(
            buf,
            RtcpError::BadVersion {
                offset: 76,
                version: 1,
            },
        );
        let mut buf = sr_two_blocks();
        buf[0] = 0x02;
        assert_rejected(
            buf,
            RtcpError::BadVersion {
                offset: 0,
                version: 0,
            },
        );
    }

    #[test]
    fn rejects_report_blocks_past_end() {
        // RC says 3 blocks, only 2 fit; a valid SDES before it must not be
        // rewritten either.
        let mut buf = sdes_two_chunks();
        let off = buf.len();
        let mut sr = sr_two_blocks();
        sr[0] = 0x83;
        buf.extend_from_slice(&sr);
        assert_rejected(
            buf,
            RtcpError::BodyTooShort {
                offset: off,
                packet_type: PT_SR,
                needed: 24 + 72,
                available: 72,
            },
        );
    }

    #[test]
    fn rejects_sdes_chunk_overrun() {
        // Item length runs past the packet.
        let mut buf = sdes_two_chunks();
        buf[9] = 40;
        assert_rejected(
            buf,
            RtcpError::SdesChunkPastEnd {
                offset: 0,
                chunk: 0,
            },
        );
        // SC claims a third chunk.
        let mut buf = sdes_two_chunks();
        buf[0] = 0x83;
        assert_rejected(
            buf,
            RtcpError::SdesChunkPastEnd {
                offset: 0,
                chunk: 2,
            },
        );
        // Missing null terminator: the last item ends exactly at the end.
        let mut buf = hdr(1, PT_SDES, 12).to_vec();
        buf.extend_from_slice(&9u32.to_be_bytes());
        buf.extend_from_slice(&[1, 2, b'a', b'b']);
        assert_rejected(
            buf,
            RtcpError::SdesChunkPastEnd {
                offset: 0,
                chunk: 0,
            },
        );
    }

    #[test]
    fn rejects_bad_padding() {
        let mut buf = hdr(0, PT_RR, 12).to_vec();
        buf[0] |= 0x20;
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 9]);
        assert_rejected(
            buf,
            RtcpError::BadPadding {
                offset: 0,
                count: 9,
            },
        );
        // Padding on a packet that is not last.
        let mut buf = hdr(0, PT_RR, 12).to_vec();
        buf[0] |= 0x20;
        buf.extend_from_slice(&5u32.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 4]);
        buf.extend_from_slice(&sr_two_blocks());
        assert_rejected(buf, RtcpError::PaddingNotLast { offset: 0 });
    }

    #[test]
    fn rejects_short_bodies() {
        let mut buf = hdr(1, PT_PSFB, 8).to_vec();
        buf.extend_from_slice(&10u32.to_be_bytes());
        assert_rejected(
            buf,
            RtcpError::BodyTooShort {
                offset: 0,
                packet_type: PT_PSFB,
                needed: 8,
                available: 4,
            },
        );
        let mut buf = hdr(2, PT_BYE, 8).to_vec();
        buf.extend_from_slice(&1u32.to_be_bytes());
        assert_rejected(
            buf,
            RtcpError::BodyTooShort {
                offset: 0,
                packet_type: PT_BYE,
                needed: 8,
                available: 4,
            },
        );
        // BYE reason longer than the packet.
        let mut buf = hdr(1, PT_BYE, 12).to_vec();
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(&[9, b'x', 0, 0]);
        assert_rejected(
            buf,
            RtcpError::BodyTooShort {
                offset: 0,
                packet_type: PT_BYE,
                needed: 14,
                available: 8,
            },
        );
    }

    #[test]
    fn errors_display() {
        let e = RtcpError::SdesChunkPastEnd {
            offset: 8,
            chunk: 1,
        };
        assert!(e.to_string().contains("SDES chunk 1"));
        let _: &dyn std::error::Error = &e;
    }
}
