//! The protection profiles ([`Suite`]) and why a packet is refused
//! ([`SrtpError`]).

use std::fmt;

/// SRTP protection profiles (RFC 4568 §6.2 names, RFC 6188, RFC 7714
/// §14.2). The discriminant is the compact id persisted in the slot table.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1
    /// tag (RFC 3711 / RFC 4568).
    AesCm128HmacSha1_80 = 1,
    /// `AES_CM_128_HMAC_SHA1_32`: as above with a 32-bit SRTP tag (SRTCP
    /// keeps 80 bits, RFC 4568 §6.2.1).
    AesCm128HmacSha1_32 = 2,
    /// `AES_256_CM_HMAC_SHA1_80`: AES-256 counter mode (RFC 6188).
    AesCm256HmacSha1_80 = 3,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm = 4,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm = 5,
}

impl Suite {
    /// Every suite, in discriminant order.
    pub const ALL: [Suite; 5] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AesCm256HmacSha1_80,
        Suite::AeadAes128Gcm,
        Suite::AeadAes256Gcm,
    ];

    /// From the SDES crypto-suite name of an `a=crypto` line (RFC 4568
    /// §6.2, RFC 6188 §7.1, RFC 7714 §14.2), exact and case-sensitive.
    pub fn from_name(s: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The SDES crypto-suite name, e.g. `"AES_CM_128_HMAC_SHA1_80"`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// From the compact id ([`Suite::as_u8`]), 1 to 5.
    pub fn from_u8(v: u8) -> Option<Suite> {
        Suite::ALL.into_iter().find(|x| x.as_u8() == v)
    }

    /// The compact id, 1 to 5.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this is an AES-GCM (RFC 7714) suite.
    pub fn is_aead(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// Master (and session) encryption key length in octets: 16 or 32.
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            Suite::AesCm256HmacSha1_80 | Suite::AeadAes256Gcm => 32,
        }
    }

    /// Master (and session) salt length in octets: 14 for AES-CM (112
    /// bits, RFC 3711 §8.2), 12 for AES-GCM (RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        if self.is_aead() {
            12
        } else {
            14
        }
    }

    /// Length of the concatenated master key and salt, as carried base64
    /// in an SDES `inline:` key parameter or exported by DTLS-SRTP: 30,
    /// 46, 28 or 44 octets.
    pub fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// Octets of authentication tag on an SRTP packet: 10, 4, 10, 16, 16.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm256HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => 16,
        }
    }

    /// Octets of authentication tag on an SRTCP packet: 10 for every
    /// HMAC-SHA1 suite (the `_32` suites too, RFC 3711 §5.2 / RFC 4568
    /// §6.2.1), 16 for AES-GCM.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() {
            16
        } else {
            10
        }
    }

    /// The DTLS-SRTP protection profile id (RFC 5764 §4.1.2, RFC 7714
    /// §14.2): `0x0001`, `0x0002`, `0x0007`, `0x0008`; `None` for
    /// `AES_256_CM_HMAC_SHA1_80`, which has none.
    pub fn dtls_profile(self) -> Option<u16> {
        match self {
            Suite::AesCm128HmacSha1_80 => Some(0x0001),
            Suite::AesCm128HmacSha1_32 => Some(0x0002),
            Suite::AesCm256HmacSha1_80 => None,
            Suite::AeadAes128Gcm => Some(0x0007),
            Suite::AeadAes256Gcm => Some(0x0008),
        }
    }

    /// From a DTLS-SRTP protection profile id ([`Suite::dtls_profile`]).
    pub fn from_dtls_profile(id: u16) -> Option<Suite> {
        Suite::ALL
            .into_iter()
            .find(|x| x.dtls_profile() == Some(id))
    }

    /// OpenSSL's name for the DTLS-SRTP profile (as given to
    /// `SSL_CTX_set_tlsext_use_srtp`), e.g. `"SRTP_AES128_CM_SHA1_80"`.
    pub fn dtls_profile_name(self) -> Option<&'static str> {
        match self {
            Suite::AesCm128HmacSha1_80 => Some("SRTP_AES128_CM_SHA1_80"),
            Suite::AesCm128HmacSha1_32 => Some("SRTP_AES128_CM_SHA1_32"),
            Suite::AesCm256HmacSha1_80 => None,
            Suite::AeadAes128Gcm => Some("SRTP_AEAD_AES_128_GCM"),
            Suite::AeadAes256Gcm => Some("SRTP_AEAD_AES_256_GCM"),
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a packet (or a key) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpError {
    /// Shorter than the fixed header plus the trailer/tag, or `len` past
    /// the end of the buffer.
    Truncated,
    /// Not version 2, or the CSRC list or header extension runs past the
    /// end of the packet (before the tag).
    Malformed,
    /// The authentication tag does not match (RFC 3711 §3.3 step 4).
    AuthFailed,
    /// Already received: the replay window has this index (§3.3.2).
    Replayed,
    /// 64 or more packets behind the highest received, or an index that
    /// cannot be placed (a ROC of -1 or 2^32).
    TooOld,
    /// The buffer has no room after the packet for the trailer and tag.
    NoRoom,
    /// Master key or salt of the wrong length for the suite.
    BadKey,
}

impl SrtpError {
    /// A short label for a drop counter: `"truncated"`, `"malformed"`,
    /// `"auth"`, `"replay"`, `"too_old"`, `"no_room"`, `"bad_key"`.
    pub fn reason(&self) -> &'static str {
        match self {
            SrtpError::Truncated => "truncated",
            SrtpError::Malformed => "malformed",
            SrtpError::AuthFailed => "auth",
            SrtpError::Replayed => "replay",
            SrtpError::TooOld => "too_old",
            SrtpError::NoRoom => "no_room",
            SrtpError::BadKey => "bad_key",
        }
    }
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpError::Truncated => "SRTP packet truncated",
            SrtpError::Malformed => "malformed RTP/RTCP header",
            SrtpError::AuthFailed => "SRTP authentication failed",
            SrtpError::Replayed => "SRTP packet replayed",
            SrtpError::TooOld => "SRTP packet outside the replay window",
            SrtpError::NoRoom => "no room in the buffer for the SRTP tag",
            SrtpError::BadKey => "wrong SRTP master key or salt length",
        })
    }
}

impl std::error::Error for SrtpError {}
