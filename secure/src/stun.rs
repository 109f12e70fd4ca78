//! STUN (RFC 8489) messages: a zero-copy view over a received datagram and a
//! writer into a caller-supplied buffer. Neither allocates, and neither panics
//! on any input: this runs in the worker's packet loop.
//!
//! Message layout (RFC 8489 §5), all fields big-endian:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  attributes: 16-bit type, 16-bit value length, value padded   |
//! |  to a multiple of 4 bytes (RFC 8489 §14)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The message length counts the bytes after the 20-byte header, so it is
//! always a multiple of 4.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

#[cfg(test)]
pub(crate) mod tests;

/// The fixed 32-bit value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the fixed header: type, length, cookie, transaction id.
pub const HEADER_LEN: usize = 20;
/// The Binding method (RFC 8489 §18.2), the only one ICE uses.
pub const BINDING: u16 = 0x001;

/// MAPPED-ADDRESS (RFC 8489 §14.1): the address in the clear.
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME (§14.3): UTF-8, fewer than 509 bytes.
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY (§14.5): 20-byte HMAC-SHA1.
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE (§14.8): 21 zero bits, 3-bit class, 8-bit number, reason.
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES (§14.9): a list of 16-bit attribute types.
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// REALM (§14.9), long-term credentials only.
pub const REALM: u16 = 0x0014;
/// NONCE (§14.10), long-term credentials only.
pub const NONCE: u16 = 0x0015;
/// MESSAGE-INTEGRITY-SHA256 (§14.6): 16–32-byte HMAC-SHA256.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM (§14.12), long-term credentials only.
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH (§14.4), long-term credentials only.
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS (§14.2): the address XORed with cookie (and txid).
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PRIORITY (RFC 8445 §16.1): 32-bit candidate priority.
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (RFC 8445 §16.1): empty; the controlling agent nominates.
pub const USE_CANDIDATE: u16 = 0x0025;
/// SOFTWARE (§14.14): UTF-8 description of the sender.
pub const SOFTWARE: u16 = 0x8022;
/// FINGERPRINT (§14.7): CRC-32 of the message XOR 0x5354554e; always last.
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED (RFC 8445 §16.1): 64-bit tie-breaker.
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING (RFC 8445 §16.1): 64-bit tie-breaker.
pub const ICE_CONTROLLING: u16 = 0x802A;

/// The value XORed into the CRC-32 of FINGERPRINT ("STUN" in ASCII).
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Longest USERNAME value accepted (RFC 8489 §14.3: fewer than 509 bytes).
const MAX_USERNAME: usize = 508;
/// Longest ERROR-CODE reason phrase (RFC 8489 §14.8: fewer than 763 bytes).
const MAX_REASON: usize = 762;

/// The 2-bit message class (RFC 8489 §5): bits C1 (type bit 8) and C0
/// (type bit 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 0b00: a request; it expects a success or error response.
    Request,
    /// 0b01: an indication; no response.
    Indication,
    /// 0b10: a success response.
    Success,
    /// 0b11: an error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// The 14-bit message type from a 12-bit method and a class: the class bits
/// are interleaved as type bits 4 (C0) and 8 (C1) (RFC 8489 §5).
fn message_type(class: Class, method: u16) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    ((m & 0x0F80) << 2) | ((m & 0x0070) << 1) | (m & 0x000F) | ((c & 0b10) << 7) | ((c & 0b01) << 4)
}

/// Why a datagram is not an acceptable STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StunError {
    /// Shorter than the 20-byte header, or than the length field says.
    Truncated,
    /// The first two bits are not zero or the magic cookie is wrong: not
    /// STUN (RFC 8489 §6.3), or a classic RFC 3489 message.
    NotStun,
    /// The length field is not a multiple of 4 or the datagram runs past it.
    BadLength,
    /// An attribute's header or padded value runs past the message.
    BadAttribute,
    /// The output buffer is too small for what was asked to be written.
    NoRoom,
    /// A value given to the builder is out of range (an error code outside
    /// 300–699, an over-long reason or attribute).
    BadValue,
}

impl StunError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StunError::Truncated => "truncated",
            StunError::NotStun => "not_stun",
            StunError::BadLength => "bad_length",
            StunError::BadAttribute => "bad_attribute",
            StunError::NoRoom => "no_room",
            StunError::BadValue => "bad_value",
        }
    }
}

impl fmt::Display for StunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            StunError::Truncated => "STUN message truncated",
            StunError::NotStun => "not a STUN message (leading bits or magic cookie)",
            StunError::BadLength => "STUN length field does not match the datagram",
            StunError::BadAttribute => "STUN attribute overruns the message",
            StunError::NoRoom => "no room for the STUN message in the buffer",
            StunError::BadValue => "STUN attribute value out of range",
        };
        f.write_str(s)
    }
}

impl std::error::Error for StunError {}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// A value padded to the next multiple of 4 (RFC 8489 §14).
fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// A validated view over one whole STUN datagram (RFC 8489 §5, §6.3).
///
/// Attribute look-ups follow §14.5–14.7: attributes after
/// MESSAGE-INTEGRITY are ignored except MESSAGE-INTEGRITY-SHA256 and
/// FINGERPRINT, those after MESSAGE-INTEGRITY-SHA256 except FINGERPRINT,
/// and everything after FINGERPRINT.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    txid: &'a [u8; 12],
    /// Offset of the first MESSAGE-INTEGRITY attribute header, if any.
    mi: Option<usize>,
    /// Offset of the FINGERPRINT attribute header, if any.
    fp: Option<usize>,
}

impl<'a> Message<'a> {
    /// Checks the header and attribute framing: the first two bits zero,
    /// the magic cookie, the 16-bit length field a multiple of 4 and equal
    /// to the datagram length − 20, and every attribute's 4-byte header and
    /// value (padded to 4) inside the message.
    ///
    /// Errors: [`StunError::Truncated`] (under 20 bytes, or shorter than
    /// the length field), [`StunError::NotStun`], [`StunError::BadLength`],
    /// [`StunError::BadAttribute`].
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, StunError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Err(StunError::Truncated);
        };
        if header[0] & 0xC0 != 0 || header[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(StunError::NotStun);
        }
        let len = usize::from(be16(header, 2));
        if len % 4 != 0 {
            return Err(StunError::BadLength);
        }
        let body = buf.len() - HEADER_LEN;
        if len > body {
            return Err(StunError::Truncated);
        }
        if len < body {
            return Err(StunError::BadLength);
        }
        let Ok(txid) = <&[u8; 12]>::try_from(&header[8..]) else {
            return Err(StunError::Truncated);
        };
        let mut msg = Message {
            buf,
            txid,
            mi: None,
            fp: None,
        };
        let mut sha256 = false;
        let mut at = HEADER_LEN;
        while at < buf.len() {
            if buf.len() - at < 4 {
                return Err(StunError::BadAttribute);
            }
            let ty = be16(buf, at);
            let vlen = usize::from(be16(buf, at + 2));
            if padded(vlen) > buf.len() - at - 4 {
                return Err(StunError::BadAttribute);
            }
            // Only the first MI counts, and none after MI-SHA256 or
            // FINGERPRINT (§14.5–14.7), as in `attributes()`.
            match ty {
                _ if msg.fp.is_some() => {}
                MESSAGE_INTEGRITY if msg.mi.is_none() && !sha256 => msg.mi = Some(at),
                MESSAGE_INTEGRITY_SHA256 => sha256 = true,
                FINGERPRINT => msg.fp = Some(at),
                _ => {}
            }
            at += 4 + padded(vlen);
        }
        Ok(msg)
    }

    /// The whole datagram this view covers.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    fn raw_type(&self) -> u16 {
        be16(self.buf, 0)
    }

    /// The class, from type bits 8 (C1) and 4 (C0).
    pub fn class(&self) -> Class {
        let t = self.raw_type();
        match ((t >> 7) & 0b10) | ((t >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }

    /// The 12-bit method (0x001 = Binding), from the type bits around the
    /// class bits.
    pub fn method(&self) -> u16 {
        let t = self.raw_type();
        (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    }

    /// The 96-bit transaction id, bytes 8..20.
    pub fn transaction_id(&self) -> &'a [u8; 12] {
        self.txid
    }

    /// The attributes as (type, value without padding), in order, omitting
    /// those RFC 8489 §14.5–14.7 say to ignore (see [`Message`]).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf,
            at: HEADER_LEN,
            after_mi: false,
            after_sha256: false,
        }
    }

    /// The value of the first attribute of type `ty` that counts.
    pub fn attribute(&self, ty: u16) -> Option<&'a [u8]> {
        self.attributes().find(|&(t, _)| t == ty).map(|(_, v)| v)
    }

    /// USERNAME (§14.3) as UTF-8; `None` if absent, not UTF-8 or over 508
    /// bytes.
    pub fn username(&self) -> Option<&'a str> {
        let v = self.attribute(USERNAME)?;
        if v.len() > MAX_USERNAME {
            return None;
        }
        core::str::from_utf8(v).ok()
    }

    /// PRIORITY (RFC 8445 §16.1): a 32-bit value; `None` if absent or not
    /// 4 bytes.
    pub fn priority(&self) -> Option<u32> {
        let v: [u8; 4] = self.attribute(PRIORITY)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }

    /// Whether USE-CANDIDATE (RFC 8445 §16.1, no value) is present.
    pub fn use_candidate(&self) -> bool {
        self.attribute(USE_CANDIDATE).is_some()
    }

    /// ICE-CONTROLLING's 64-bit tie-breaker; `None` if absent or not 8 bytes.
    pub fn ice_controlling(&self) -> Option<u64> {
        let v: [u8; 8] = self.attribute(ICE_CONTROLLING)?.try_into().ok()?;
        Some(u64::from_be_bytes(v))
    }

    /// ICE-CONTROLLED's 64-bit tie-breaker; `None` if absent or not 8 bytes.
    pub fn ice_controlled(&self) -> Option<u64> {
        let v: [u8; 8] = self.attribute(ICE_CONTROLLED)?.try_into().ok()?;
        Some(u64::from_be_bytes(v))
    }

    /// XOR-MAPPED-ADDRESS (§14.2): 8 reserved bits, 8-bit family (1 = IPv4
    /// with a 4-byte address, 2 = IPv6 with 16), the 16-bit port XOR the
    /// cookie's top 16 bits, the address XOR the cookie (IPv4) or the cookie
    /// and transaction id (IPv6). `None` if absent or malformed.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let v = self.attribute(XOR_MAPPED_ADDRESS)?;
        let mut mask = [0u8; 16];
        mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        mask[4..].copy_from_slice(self.transaction_id());
        let port = be16(v, 2) ^ (MAGIC_COOKIE >> 16) as u16;
        let ip = match (v.get(1), v.len()) {
            (Some(1), 8) => {
                let mut a = [0u8; 4];
                for (i, b) in a.iter_mut().enumerate() {
                    *b = v[4 + i] ^ mask[i];
                }
                IpAddr::V4(Ipv4Addr::from(a))
            }
            (Some(2), 20) => {
                let mut a = [0u8; 16];
                for (i, b) in a.iter_mut().enumerate() {
                    *b = v[4 + i] ^ mask[i];
                }
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }

    /// Whether a FINGERPRINT attribute is present (anywhere).
    pub fn has_fingerprint(&self) -> bool {
        self.fp.is_some()
    }

    /// Whether a MESSAGE-INTEGRITY attribute is present.
    pub fn has_integrity(&self) -> bool {
        self.mi.is_some()
    }

    /// RFC 8489 §14.5: the 20-byte MESSAGE-INTEGRITY value equals the
    /// HMAC-SHA1, keyed with `key` (for ICE, the short-term password's
    /// bytes), of the message up to that attribute with the length field
    /// set as if the message ended just after it. Compared in constant
    /// time. `false` if absent or not 20 bytes.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.mi else { return false };
        let (Some(head), Some(rest), Some(value)) = (
            self.buf.get(..2),
            self.buf.get(4..at),
            self.buf.get(at + 4..at + 24),
        ) else {
            return false;
        };
        if be16(self.buf, at + 2) != 20 {
            return false;
        }
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            return false;
        };
        // The length counts the bytes after the header up to the end of MI.
        let adjusted = (at + 24 - HEADER_LEN) as u16;
        mac.update(head);
        mac.update(&adjusted.to_be_bytes());
        mac.update(rest);
        let tag = mac.finalize().into_bytes();
        tag.as_slice().ct_eq(value).into()
    }

    /// RFC 8489 §14.7: FINGERPRINT is the last attribute, 4 bytes, and
    /// equals the CRC-32 of the message before it XOR 0x5354554e. `false`
    /// if absent or not last.
    pub fn check_fingerprint(&self) -> bool {
        let Some(at) = self.fp else { return false };
        if at + 8 != self.buf.len() || be16(self.buf, at + 2) != 4 {
            return false;
        }
        let (Some(covered), Some(&[a, b, c, d])) = (self.buf.get(..at), self.buf.get(at + 4..))
        else {
            return false;
        };
        crc32fast::hash(covered) ^ FINGERPRINT_XOR == u32::from_be_bytes([a, b, c, d])
    }
}

/// Iterator over a message's attributes; see [`Message::attributes`].
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    at: usize,
    after_mi: bool,
    after_sha256: bool,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let ty = be16(self.buf, self.at);
            let vlen = usize::from(be16(self.buf, self.at + 2));
            let value = self.buf.get(self.at + 4..self.at + 4 + vlen)?;
            self.at += 4 + padded(vlen);
            // §14.5–14.7: what follows MI, MI-SHA256 and FINGERPRINT is
            // not covered by them and so does not count.
            let counts = match ty {
                FINGERPRINT => {
                    self.at = self.buf.len();
                    true
                }
                MESSAGE_INTEGRITY_SHA256 if !self.after_sha256 => {
                    self.after_sha256 = true;
                    true
                }
                MESSAGE_INTEGRITY if !self.after_mi && !self.after_sha256 => {
                    self.after_mi = true;
                    true
                }
                _ => !self.after_mi && !self.after_sha256,
            };
            if counts {
                return Some((ty, value));
            }
        }
    }
}

/// Writes one STUN message into a caller buffer (RFC 8489 §5, §14) without
/// allocating. The header's length field is kept current after every
/// attribute, so the bytes so far are always a complete message.
#[derive(Debug)]
pub struct Builder<'b> {
    buf: &'b mut [u8],
    len: usize,
    pad: u8,
}

impl<'b> Builder<'b> {
    /// Starts a message: 14-bit type from `class` and the 12-bit `method`,
    /// length 0, the magic cookie and `txid`. Error: [`StunError::NoRoom`]
    /// if `buf` is under 20 bytes.
    pub fn new(
        buf: &'b mut [u8],
        class: Class,
        method: u16,
        txid: &[u8; 12],
    ) -> Result<Self, StunError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(StunError::NoRoom)?;
        header[..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        header[2..4].copy_from_slice(&[0, 0]);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..].copy_from_slice(txid);
        Ok(Builder {
            buf,
            len: HEADER_LEN,
            pad: 0,
        })
    }

    /// Sets the byte used to pad later attribute values to 4 bytes
    /// (default 0). Receivers ignore it (§14); RFC 5769's vectors use 0x20.
    pub fn padding(&mut self, byte: u8) {
        self.pad = byte;
    }

    /// The message length so far, header included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the header is written by [`Builder::new`].
    pub fn is_empty(&self) -> bool {
        false
    }

    fn set_length(&mut self, body: usize) {
        self.buf[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    }

    /// Reserves an attribute with a `vlen`-byte value: writes the type,
    /// length and padding, updates the header length, and returns the
    /// value's offset. Errors: `BadValue` if over 65535 bytes, `NoRoom`.
    fn reserve(&mut self, ty: u16, vlen: usize) -> Result<usize, StunError> {
        let vlen16 = u16::try_from(vlen).map_err(|_| StunError::BadValue)?;
        let end = self.len + 4 + padded(vlen);
        // The 16-bit length field bounds the message at 20 + 65532 bytes.
        if end - HEADER_LEN > 0xFFFC {
            return Err(StunError::BadValue);
        }
        let pad = self.pad;
        let at = self.len;
        let dst = self.buf.get_mut(at..end).ok_or(StunError::NoRoom)?;
        dst[..2].copy_from_slice(&ty.to_be_bytes());
        dst[2..4].copy_from_slice(&vlen16.to_be_bytes());
        dst[4 + vlen..].fill(pad);
        self.len = end;
        self.set_length(end - HEADER_LEN);
        Ok(at + 4)
    }

    /// Appends an attribute of type `ty` with `value`, padded to 4 bytes.
    /// Errors: [`StunError::NoRoom`], [`StunError::BadValue`] (over 65535).
    pub fn attribute(&mut self, ty: u16, value: &[u8]) -> Result<(), StunError> {
        let at = self.reserve(ty, value.len())?;
        self.buf[at..at + value.len()].copy_from_slice(value);
        Ok(())
    }

    /// Appends XOR-MAPPED-ADDRESS (§14.2) for `addr`: 8 bytes for IPv4,
    /// 20 for IPv6. Error: [`StunError::NoRoom`].
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<(), StunError> {
        let mut mask = [0u8; 16];
        mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        mask[4..].copy_from_slice(&self.buf[8..HEADER_LEN]);
        let mut v = [0u8; 20];
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 1;
                v[4..8].copy_from_slice(&ip.octets());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 2;
                v[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        v[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
        for (b, m) in v[4..n].iter_mut().zip(mask) {
            *b ^= m;
        }
        self.attribute(XOR_MAPPED_ADDRESS, &v[..n])
    }

    /// Appends USERNAME (§14.3). Errors: [`StunError::BadValue`] over 508
    /// bytes, [`StunError::NoRoom`].
    pub fn username(&mut self, name: &str) -> Result<(), StunError> {
        if name.len() > MAX_USERNAME {
            return Err(StunError::BadValue);
        }
        self.attribute(USERNAME, name.as_bytes())
    }

    /// Appends SOFTWARE (§14.14). Errors: [`StunError::BadValue`] over 762
    /// bytes, [`StunError::NoRoom`].
    pub fn software(&mut self, name: &str) -> Result<(), StunError> {
        if name.len() > MAX_REASON {
            return Err(StunError::BadValue);
        }
        self.attribute(SOFTWARE, name.as_bytes())
    }

    /// Appends ERROR-CODE (§14.8): 21 zero bits, the 3-bit class
    /// (`code / 100`), the 8-bit number (`code % 100`), then the UTF-8
    /// `reason`. Errors: [`StunError::BadValue`] if `code` is outside
    /// 300–699 or `reason` is over 762 bytes, [`StunError::NoRoom`].
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<(), StunError> {
        if !(300..700).contains(&code) || reason.len() > MAX_REASON {
            return Err(StunError::BadValue);
        }
        let at = self.reserve(ERROR_CODE, 4 + reason.len())?;
        let v = &mut self.buf[at..at + 4 + reason.len()];
        v[..4].copy_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        v[4..].copy_from_slice(reason.as_bytes());
        Ok(())
    }

    /// Appends UNKNOWN-ATTRIBUTES (§14.9): each type as 16 bits. Errors:
    /// [`StunError::NoRoom`], [`StunError::BadValue`].
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<(), StunError> {
        let at = self.reserve(UNKNOWN_ATTRIBUTES, 2 * types.len())?;
        for (i, t) in types.iter().enumerate() {
            self.buf[at + 2 * i..at + 2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY (§14.5): HMAC-SHA1 keyed with `key` over
    /// the message so far, the length field already counting this
    /// attribute's 24 bytes. Error: [`StunError::NoRoom`].
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<(), StunError> {
        let at = self.reserve(MESSAGE_INTEGRITY, 20)?;
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = Hmac::<Sha1>::new_from_slice(key).map_err(|_| StunError::BadValue)?;
        mac.update(&self.buf[..at - 4]);
        let tag = mac.finalize().into_bytes();
        self.buf[at..at + 20].copy_from_slice(&tag);
        Ok(())
    }

    /// Appends FINGERPRINT (§14.7), which must be last: CRC-32 of the
    /// message so far (length field counting its 8 bytes) XOR 0x5354554e.
    /// Returns the total message length. Error: [`StunError::NoRoom`].
    pub fn fingerprint(&mut self) -> Result<usize, StunError> {
        let at = self.reserve(FINGERPRINT, 4)?;
        let crc = crc32fast::hash(&self.buf[..at - 4]) ^ FINGERPRINT_XOR;
        self.buf[at..at + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(self.len)
    }

    /// Ends the message; returns its total length in bytes.
    pub fn finish(self) -> usize {
        self.len
    }
}
