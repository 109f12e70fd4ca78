//! DTLS-SRTP (RFC 5763, RFC 5764) over memory: no sockets, no threads.
//!
//! The relay's worker forwards every DTLS datagram of a leg (first byte
//! 20–63, RFC 7983 §7) to a DTLS task, which owns one [`Endpoint`] per leg:
//! it hands the endpoint each datagram ([`Endpoint::handle_datagram`]),
//! sends what [`Endpoint::poll_transmit`] yields back through the worker,
//! drives retransmission with [`Endpoint::timeout`] /
//! [`Endpoint::handle_timeout`] (RFC 6347 §4.2.4) and, once
//! [`State::Connected`], takes the exported [`SrtpKeying`].
//!
//! The relay's identity is one [`Certificate`] made at start; its
//! [`Fingerprint`] goes into SDP as `a=fingerprint` (RFC 8122 §5), and each
//! endpoint pins the peer's certificate to the fingerprint from the peer's
//! SDP. `a=setup` (RFC 8842 §5) picks the [`Role`]: `active` is the DTLS
//! client, `passive` the DTLS server.
//!
//! The handshake itself is OpenSSL's (DTLS 1.2 only). Unlike the rest of
//! this crate, the endpoint does not take a `now`: the retransmission
//! timer runs on OpenSSL's own clock (`gettimeofday` in OpenSSL 3.0), so
//! [`Endpoint::timeout`] is a duration from the moment it is asked.

mod cert;
mod endpoint;
#[cfg(test)]
mod tests;

use std::fmt;

pub use cert::Certificate;
pub use endpoint::Endpoint;

/// A hash function of `a=fingerprint` (RFC 8122 §5, names from the IANA
/// "Hash Function Textual Names" registry).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum HashAlg {
    /// `sha-1`, 20-byte digest.
    Sha1,
    /// `sha-224`, 28-byte digest.
    Sha224,
    /// `sha-256`, 32-byte digest.
    Sha256,
    /// `sha-384`, 48-byte digest.
    Sha384,
    /// `sha-512`, 64-byte digest.
    Sha512,
}

impl HashAlg {
    /// The SDP name, lower case: `"sha-1"`, `"sha-224"`, `"sha-256"`,
    /// `"sha-384"`, `"sha-512"`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha-1",
            HashAlg::Sha224 => "sha-224",
            HashAlg::Sha256 => "sha-256",
            HashAlg::Sha384 => "sha-384",
            HashAlg::Sha512 => "sha-512",
        }
    }

    /// Digest length in bytes: 20, 28, 32, 48 or 64.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The hash of an SDP name, case-insensitive; `None` for any other name
    /// (`md5` and `md2` included: RFC 8122 §5 forbids them).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        [
            HashAlg::Sha1,
            HashAlg::Sha224,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ]
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(name))
    }

    /// `data` hashed with this function: [`Self::digest_len`] bytes.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha1::Digest as _;
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A certificate fingerprint, the value of `a=fingerprint` (RFC 8122 §5):
/// a hash function and the digest of the certificate's DER encoding.
///
/// Displays as the SDP attribute value, e.g. `"sha-256 AB:CD:…"`: the hash
/// name, one space, then the digest as upper-case hex pairs joined by `:`.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Fingerprint {
    /// The hash function.
    pub algorithm: HashAlg,
    /// The digest, [`HashAlg::digest_len`] bytes of `algorithm`.
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded X.509 certificate (RFC 8122 §5:
    /// the hash is over the whole DER certificate).
    pub fn of_der(alg: HashAlg, der: &[u8]) -> Fingerprint {
        Fingerprint {
            algorithm: alg,
            digest: alg.digest(der),
        }
    }

    /// Parses an `a=fingerprint` value: `hash-func SP fingerprint`, e.g.
    /// `"sha-256 AB:CD:…"` (RFC 8122 §5). The hash name and the hex are
    /// case-insensitive; surrounding whitespace and more than one space
    /// between the two parts are accepted.
    ///
    /// # Errors
    /// [`DtlsError::BadFingerprint`] when the hash is unknown, a byte is
    /// not exactly two hex digits, or the digest's length does not fit
    /// the hash.
    pub fn parse(s: &str) -> Result<Fingerprint, DtlsError> {
        let mut parts = s.split_ascii_whitespace();
        let (Some(name), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DtlsError::BadFingerprint(
                "expected `hash-func fingerprint`",
            ));
        };
        let algorithm =
            HashAlg::from_name(name).ok_or(DtlsError::BadFingerprint("unknown hash function"))?;
        let mut digest = Vec::with_capacity(algorithm.digest_len());
        for pair in hex.split(':') {
            let b = pair.as_bytes();
            let byte = match b {
                [hi, lo] => hex_val(*hi).zip(hex_val(*lo)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            digest.push(byte.ok_or(DtlsError::BadFingerprint(
                "digest bytes must be two hex digits each, colon-separated",
            ))?);
        }
        if digest.len() != algorithm.digest_len() {
            return Err(DtlsError::BadFingerprint(
                "digest length does not match the hash function",
            ));
        }
        Ok(Fingerprint { algorithm, digest })
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.name())?;
        for (i, b) in self.digest.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

/// Which side of the DTLS handshake an endpoint plays, from `a=setup`
/// (RFC 8842 §5; RFC 5763 §5: the answerer's `active`/`passive`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Role {
    /// DTLS client (`a=setup:active`): sends the ClientHello.
    Active,
    /// DTLS server (`a=setup:passive`): waits for the ClientHello.
    Passive,
}

/// Where an [`Endpoint`] stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum State {
    /// The handshake is under way (or, for a passive endpoint, not begun).
    Handshaking,
    /// The handshake completed, the peer's certificate matched its
    /// fingerprint and an SRTP profile was negotiated: keying is ready.
    Connected,
    /// The handshake or connection failed for good: fingerprint mismatch,
    /// a fatal alert sent or received, no SRTP profile, a protocol error.
    Failed,
    /// The peer closed the connection (close_notify, RFC 5246 §7.2.1).
    Closed,
}

/// SRTP keying exported per RFC 5764 §4.2: OpenSSL's exporter (RFC 5705)
/// with label `"EXTRACTOR-dtls_srtp"` and no context yields
/// `2 * (key_len + salt_len)` bytes laid out as
/// `client_write_key | server_write_key | client_write_salt | server_write_salt`.
///
/// "Local" is what this endpoint protects (sends) with, "remote" what it
/// unprotects (receives) with: for the DTLS client (Active) local is the
/// client write key/salt, for the server (Passive) the server's.
///
/// Lengths by profile: 0x0001 and 0x0002 16-byte key, 14-byte salt;
/// 0x0007 16-byte key, 12-byte salt; 0x0008 32-byte key, 12-byte salt.
///
/// `Debug` prints the profile only, never the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeying {
    /// The negotiated protection profile, RFC 5764 §4.1.2 / RFC 7714 §14.2:
    /// 0x0001 `SRTP_AES128_CM_HMAC_SHA1_80`, 0x0002
    /// `SRTP_AES128_CM_HMAC_SHA1_32`, 0x0007 `SRTP_AEAD_AES_128_GCM`,
    /// 0x0008 `SRTP_AEAD_AES_256_GCM`.
    pub profile: u16,
    /// Master key this endpoint protects with.
    pub local_key: Vec<u8>,
    /// Master salt this endpoint protects with.
    pub local_salt: Vec<u8>,
    /// Master key this endpoint unprotects the peer's packets with.
    pub remote_key: Vec<u8>,
    /// Master salt this endpoint unprotects the peer's packets with.
    pub remote_salt: Vec<u8>,
}

/// SRTP protection profile ids (RFC 5764 §4.1.2, RFC 7714 §14.2).
pub mod profile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`.
    pub const AES128_CM_SHA1_80: u16 = 0x0001;
    /// `SRTP_AES128_CM_HMAC_SHA1_32`.
    pub const AES128_CM_SHA1_32: u16 = 0x0002;
    /// `SRTP_AEAD_AES_128_GCM`.
    pub const AEAD_AES_128_GCM: u16 = 0x0007;
    /// `SRTP_AEAD_AES_256_GCM`.
    pub const AEAD_AES_256_GCM: u16 = 0x0008;

    /// `(master key length, master salt length)` in bytes for a profile
    /// this crate negotiates; `None` for any other id.
    pub fn key_salt_len(profile: u16) -> Option<(usize, usize)> {
        match profile {
            AES128_CM_SHA1_80 | AES128_CM_SHA1_32 => Some((16, 14)),
            AEAD_AES_128_GCM => Some((16, 12)),
            AEAD_AES_256_GCM => Some((32, 12)),
            _ => None,
        }
    }
}

impl fmt::Debug for SrtpKeying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpKeying")
            .field("profile", &format_args!("{:#06x}", self.profile))
            .finish_non_exhaustive()
    }
}

/// What went wrong. No message carries key material: OpenSSL's error text
/// names a library, function and reason only.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DtlsError {
    /// An `a=fingerprint` value did not parse; the reason is given.
    BadFingerprint(&'static str),
    /// Making the certificate or the TLS context failed (OpenSSL's text).
    Setup(String),
    /// The handshake failed (OpenSSL's text: a protocol error, or a fatal
    /// alert sent or received).
    Handshake(String),
    /// The peer's certificate does not match the fingerprint from its SDP
    /// (RFC 5763 §5), or it sent none.
    FingerprintMismatch,
    /// The handshake completed without a `use_srtp` profile we offer
    /// (RFC 5764 §4.1.1).
    NoSrtpProfile,
    /// Exporting the SRTP keying material failed (OpenSSL's text).
    Export(String),
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::BadFingerprint(why) => write!(f, "bad a=fingerprint: {why}"),
            DtlsError::Setup(e) => write!(f, "DTLS setup failed: {e}"),
            DtlsError::Handshake(e) => write!(f, "DTLS handshake failed: {e}"),
            DtlsError::FingerprintMismatch => {
                f.write_str("peer certificate does not match its a=fingerprint")
            }
            DtlsError::NoSrtpProfile => f.write_str("no SRTP protection profile negotiated"),
            DtlsError::Export(e) => write!(f, "SRTP keying export failed: {e}"),
        }
    }
}

impl std::error::Error for DtlsError {}
