//! The SDP attributes of secure media, read and written: SDES keys
//! (`a=crypto`, RFC 4568), DTLS-SRTP (`a=fingerprint` RFC 8122, `a=setup`
//! RFC 4145/8842), ICE credentials and options (RFC 8839 §5), `a=mid`
//! (RFC 9143) and `a=rtcp-mux`/`a=rtcp-mux-only` (RFC 8858), and
//! [`SecureMedia`], all of them read from one media section.
//!
//! Every parser takes the attribute value (what follows `a=<name>:`),
//! borrows it, and returns a [`SecureFieldError`] for anything it cannot
//! read; none panics on any input. Fixed buffers hold keys and digests,
//! so reading allocates nothing. Re-exported by [`crate::sdp`].

use std::fmt;
use std::net::IpAddr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, Engine as _};
use base64::DecodeSliceError;

use super::Section;

/// The longest SRTP master key and salt, bytes: AES-256 (32) + 14.
pub const MAX_KEY_SALT: usize = 46;

/// The longest digest of [`FINGERPRINT_HASHES`] (sha-512), bytes.
pub const MAX_DIGEST: usize = 64;

/// How many `a=crypto` lines [`SecureMedia`] keeps (a hostile offer's
/// thousands of lines cannot grow it).
pub const MAX_CRYPTO: usize = 8;

/// Why a secure-media attribute value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureFieldError {
    /// The named field is absent.
    Missing(&'static str),
    /// `a=crypto` tag is not 1–9 digits (RFC 4568 §9.1).
    BadTag,
    /// `a=crypto` suite is not `1*(ALPHA / DIGIT / "_")`.
    BadSuite,
    /// `a=crypto` key-params do not start `inline:` (the one key method
    /// of RFC 4568 §6.1).
    NotInline,
    /// The key||salt is not base64 (standard alphabet).
    BadBase64,
    /// The key||salt decodes to more than [`MAX_KEY_SALT`] bytes.
    KeyTooLong,
    /// The key lifetime is not decimal or `2^N` (N ≤ 63).
    BadLifetime,
    /// The MKI is not `<decimal>:<length>`.
    BadMki,
    /// The MKI length is not 1–128.
    BadMkiLength,
    /// `KDR=` is not 0–24 (RFC 4568 §6.3.1).
    BadKdr,
    /// The hash function is not one of [`FINGERPRINT_HASHES`].
    UnknownHash,
    /// The fingerprint is not hex pairs separated by `:`.
    BadHex,
    /// The digest length does not match the hash function.
    DigestLength {
        /// Bytes the function gives.
        expected: usize,
        /// Bytes the line has.
        got: usize,
    },
    /// `a=setup` is none of active, passive, actpass, holdconn.
    UnknownSetup,
    /// `ice-ufrag` is not 4–256 characters.
    UfragLength,
    /// `ice-pwd` is not 22–256 characters.
    PwdLength,
    /// The named ICE field has a character that is not an ice-char.
    BadIceChar(&'static str),
    /// `a=mid` is not a token (RFC 8866 §9).
    BadMid,
}

impl fmt::Display for SecureFieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SecureFieldError as E;
        match self {
            E::Missing(n) => write!(f, "missing {n}"),
            E::BadTag => f.write_str("crypto tag is not 1-9 digits"),
            E::BadSuite => f.write_str("bad crypto-suite"),
            E::NotInline => f.write_str("key-params are not inline:"),
            E::BadBase64 => f.write_str("key||salt is not base64"),
            E::KeyTooLong => write!(f, "key||salt is longer than {MAX_KEY_SALT} bytes"),
            E::BadLifetime => f.write_str("bad key lifetime"),
            E::BadMki => f.write_str("bad MKI"),
            E::BadMkiLength => f.write_str("MKI length is not 1-128"),
            E::BadKdr => f.write_str("KDR is not 0-24"),
            E::UnknownHash => f.write_str("unknown fingerprint hash function"),
            E::BadHex => f.write_str("fingerprint is not hex pairs"),
            E::DigestLength { expected, got } => {
                write!(f, "digest is {got} bytes, the hash gives {expected}")
            }
            E::UnknownSetup => f.write_str("unknown setup role"),
            E::UfragLength => f.write_str("ice-ufrag is not 4-256 characters"),
            E::PwdLength => f.write_str("ice-pwd is not 22-256 characters"),
            E::BadIceChar(n) => write!(f, "{n} has a character that is not an ice-char"),
            E::BadMid => f.write_str("mid is not a token"),
        }
    }
}

impl std::error::Error for SecureFieldError {}

/// The next word of `rest` (split at ASCII white space), advancing it.
fn next_word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let t = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
    *rest = &t[end..];
    (end > 0).then(|| &t[..end])
}

/// `s` as a number when it is 1 to `max` ASCII digits (`str::parse`
/// alone would take a `+`).
fn digits(s: &str, max: usize) -> Option<u64> {
    let ok = !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

/// Base64 decoding as seen in the wild: the standard alphabet with the
/// `=` padding optional.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An SRTP master key's lifetime, in packets (RFC 4568 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Written as a decimal number.
    Packets(u64),
    /// Written `2^N`.
    PowerOfTwo(u8),
}

impl Lifetime {
    /// The lifetime in packets.
    pub fn packets(self) -> u64 {
        match self {
            Lifetime::Packets(n) => n,
            Lifetime::PowerOfTwo(n) => 1u64 << n.min(63),
        }
    }

    /// `lifetime = ["2^"] 1*(DIGIT)`.
    fn parse(s: &str) -> Result<Lifetime, SecureFieldError> {
        let bad = SecureFieldError::BadLifetime;
        match s.strip_prefix("2^") {
            Some(n) => digits(n, 2)
                .filter(|n| *n <= 63)
                .map(|n| Lifetime::PowerOfTwo(n as u8))
                .ok_or(bad),
            None => digits(s, 20).map(Lifetime::Packets).ok_or(bad),
        }
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::Packets(n) => write!(f, "{n}"),
            Lifetime::PowerOfTwo(n) => write!(f, "2^{n}"),
        }
    }
}

/// A master key identifier (RFC 4568 §6.1): `<value>:<length>`, the
/// value decimal, the length (bytes in each SRTP packet) 1–128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    /// The MKI value.
    pub value: u64,
    /// Its length on the wire, bytes.
    pub length: u8,
}

impl Mki {
    fn parse(s: &str) -> Result<Mki, SecureFieldError> {
        let (v, l) = s.split_once(':').ok_or(SecureFieldError::BadMki)?;
        let value = digits(v, 20).ok_or(SecureFieldError::BadMki)?;
        let length = digits(l, 3)
            .filter(|l| (1..=128).contains(l))
            .ok_or(SecureFieldError::BadMkiLength)?;
        Ok(Mki {
            value,
            length: length as u8,
        })
    }
}

/// An `a=crypto` value (RFC 4568 §9.1):
///
/// ```text
/// <tag> 1*WSP <crypto-suite> 1*WSP <key-params> *(1*WSP <session-param>)
/// tag        = 1*9DIGIT
/// key-params = key-param *(";" key-param)
/// key-param  = "inline:" <base64 key||salt> ["|" lifetime] ["|" mki]
/// lifetime   = ["2^"] 1*DIGIT
/// mki        = 1*DIGIT ":" 1*3DIGIT
/// ```
///
/// Only the first key-param is read (several are allowed for SRTP, each
/// its own master key; tern uses one); the rest stay in
/// [`Crypto::more_keys`], unread. The key||salt is decoded into a fixed
/// buffer of [`MAX_KEY_SALT`] bytes, so nothing is allocated. Its
/// [`Debug`](fmt::Debug) shows the tag, suite and key length, never the
/// key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Crypto<'a> {
    /// The tag that names this line in the answer, < 10^9.
    pub tag: u32,
    /// The suite name as written (`AES_CM_128_HMAC_SHA1_80`, …); mapping
    /// it to a cipher is the SRTP code's business.
    pub suite: &'a str,
    key: [u8; MAX_KEY_SALT],
    key_len: u8,
    /// The first key-param's lifetime, when given.
    pub lifetime: Option<Lifetime>,
    /// The first key-param's MKI, when given.
    pub mki: Option<Mki>,
    /// The key-params after the first `;`, unread; empty when none.
    pub more_keys: &'a str,
    /// The session parameters, as written; empty when none.
    pub session_params: &'a str,
}

impl<'a> Crypto<'a> {
    /// Reads the value after `a=crypto:`.
    ///
    /// Errors: [`SecureFieldError::Missing`] for no tag, suite, key-params
    /// or key; [`SecureFieldError::BadTag`], [`SecureFieldError::BadSuite`],
    /// [`SecureFieldError::NotInline`], [`SecureFieldError::BadBase64`],
    /// [`SecureFieldError::KeyTooLong`], [`SecureFieldError::BadLifetime`],
    /// [`SecureFieldError::BadMki`], [`SecureFieldError::BadMkiLength`].
    pub fn parse(v: &'a str) -> Result<Crypto<'a>, SecureFieldError> {
        let mut rest = v;
        let tag = next_word(&mut rest).ok_or(SecureFieldError::Missing("tag"))?;
        let tag = digits(tag, 9).ok_or(SecureFieldError::BadTag)? as u32;
        let suite = next_word(&mut rest).ok_or(SecureFieldError::Missing("crypto-suite"))?;
        if !suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(SecureFieldError::BadSuite);
        }
        let params = next_word(&mut rest).ok_or(SecureFieldError::Missing("key-params"))?;
        let (first, more_keys) = params.split_once(';').unwrap_or((params, ""));
        let info = match first.get(..7) {
            Some(m) if m.eq_ignore_ascii_case("inline:") => &first[7..],
            _ => return Err(SecureFieldError::NotInline),
        };
        let mut parts = info.split('|');
        let b64 = parts.next().unwrap_or("");
        let (key, key_len) = decode_key(b64)?;
        let (mut lifetime, mut mki) = (None, None);
        for p in parts {
            // The MKI has a ':', the lifetime none; the lifetime comes
            // first and each appears once.
            if p.contains(':') {
                if mki.is_some() {
                    return Err(SecureFieldError::BadMki);
                }
                mki = Some(Mki::parse(p)?);
            } else {
                if lifetime.is_some() || mki.is_some() {
                    return Err(SecureFieldError::BadLifetime);
                }
                lifetime = Some(Lifetime::parse(p)?);
            }
        }
        Ok(Crypto {
            tag,
            suite,
            key,
            key_len,
            lifetime,
            mki,
            more_keys,
            session_params: rest.trim_matches(|c: char| c.is_ascii_whitespace()),
        })
    }

    /// The master key followed by the master salt, as decoded.
    pub fn key_salt(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len).min(MAX_KEY_SALT)]
    }

    /// The session parameters, one word each.
    pub fn session_param_words(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.session_params.split_ascii_whitespace()
    }

    fn has_param(&self, p: &str) -> bool {
        self.session_param_words().any(|w| w == p)
    }

    /// `UNENCRYPTED_SRTP` is among the session parameters (§6.3.3).
    pub fn unencrypted_srtp(&self) -> bool {
        self.has_param("UNENCRYPTED_SRTP")
    }

    /// `UNENCRYPTED_SRTCP` is among the session parameters (§6.3.4).
    pub fn unencrypted_srtcp(&self) -> bool {
        self.has_param("UNENCRYPTED_SRTCP")
    }

    /// `UNAUTHENTICATED_SRTP` is among the session parameters (§6.3.5).
    pub fn unauthenticated_srtp(&self) -> bool {
        self.has_param("UNAUTHENTICATED_SRTP")
    }

    /// The key derivation rate exponent of `KDR=<n>` (§6.3.1: the rate is
    /// 2^n, n 0–24); `Ok(None)` when absent.
    ///
    /// Errors: [`SecureFieldError::BadKdr`] when present but not 0–24 (the
    /// line must then be refused, not read as the default).
    pub fn kdr(&self) -> Result<Option<u8>, SecureFieldError> {
        match self
            .session_param_words()
            .find_map(|w| w.strip_prefix("KDR="))
        {
            None => Ok(None),
            Some(n) => digits(n, 2)
                .filter(|n| *n <= 24)
                .map(|n| Some(n as u8))
                .ok_or(SecureFieldError::BadKdr),
        }
    }

    /// Appends the value `<tag> <suite> inline:<base64 key||salt>` (padded
    /// base64) to `out`; with no lifetime, MKI or session parameters.
    /// Keys longer than [`MAX_KEY_SALT`] are written but will not parse.
    pub fn format(tag: u32, suite: &str, key_salt: &[u8], out: &mut String) {
        use fmt::Write as _;
        let _ = write!(out, "{tag} {suite} inline:");
        STANDARD.encode_string(key_salt, out);
    }

    /// The value as [`Display`](fmt::Display) writes it.
    pub fn to_value(&self) -> String {
        self.to_string()
    }
}

/// Decodes `b64` into a fixed buffer: the key and its length.
fn decode_key(b64: &str) -> Result<([u8; MAX_KEY_SALT], u8), SecureFieldError> {
    if b64.is_empty() {
        return Err(SecureFieldError::Missing("key||salt"));
    }
    // 46 bytes are 64 characters padded; refuse more before decoding.
    if b64.len() > 64 {
        return Err(SecureFieldError::KeyTooLong);
    }
    let mut key = [0u8; MAX_KEY_SALT];
    match LENIENT.decode_slice(b64, &mut key) {
        Ok(0) => Err(SecureFieldError::Missing("key||salt")),
        Ok(n) => Ok((key, n.min(MAX_KEY_SALT) as u8)),
        Err(DecodeSliceError::OutputSliceTooSmall) => Err(SecureFieldError::KeyTooLong),
        Err(DecodeSliceError::DecodeError(_)) => Err(SecureFieldError::BadBase64),
    }
}

/// The value `<tag> <suite> inline:<base64 key||salt>` (see
/// [`Crypto::format`]).
pub fn crypto_value(tag: u32, suite: &str, key_salt: &[u8]) -> String {
    let mut s = String::with_capacity(suite.len() + 24 + key_salt.len() * 4 / 3);
    Crypto::format(tag, suite, key_salt, &mut s);
    s
}

impl fmt::Debug for Crypto<'_> {
    /// Tag, suite and key length only: key material is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key_len", &self.key_len)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Crypto<'_> {
    /// The `a=crypto` value: the key||salt in padded base64, then the
    /// lifetime, MKI, further key-params and session parameters as read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = [0u8; 64];
        let n = STANDARD
            .encode_slice(self.key_salt(), &mut b)
            .map_err(|_| fmt::Error)?;
        let b64 = std::str::from_utf8(&b[..n]).map_err(|_| fmt::Error)?;
        write!(f, "{} {} inline:{b64}", self.tag, self.suite)?;
        if let Some(l) = self.lifetime {
            write!(f, "|{l}")?;
        }
        if let Some(m) = self.mki {
            write!(f, "|{}:{}", m.value, m.length)?;
        }
        if !self.more_keys.is_empty() {
            write!(f, ";{}", self.more_keys)?;
        }
        if !self.session_params.is_empty() {
            write!(f, " {}", self.session_params)?;
        }
        Ok(())
    }
}

/// The hash functions of RFC 8122 §5 (from RFC 3279 and RFC 4572's
/// registry) and their digest lengths, bytes.
pub const FINGERPRINT_HASHES: &[(&str, usize)] = &[
    ("sha-1", 20),
    ("sha-224", 28),
    ("sha-256", 32),
    ("sha-384", 48),
    ("sha-512", 64),
    ("md5", 16),
    ("md2", 16),
];

/// An `a=fingerprint` value (RFC 8122 §5):
///
/// ```text
/// <hash-func> SP <fingerprint>
/// fingerprint = 2UHEX *(":" 2UHEX)
/// ```
///
/// The hash function is matched case-insensitively against
/// [`FINGERPRINT_HASHES`] and the digest must have its length; lower-case
/// hex is accepted too. The digest lives in a fixed buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash function, lower case (`sha-256`).
    pub algorithm: &'static str,
    digest: [u8; MAX_DIGEST],
    len: u8,
}

impl Fingerprint {
    /// Reads the value after `a=fingerprint:`. Words after the
    /// fingerprint are ignored.
    ///
    /// Errors: [`SecureFieldError::Missing`] for no hash function or
    /// fingerprint; [`SecureFieldError::UnknownHash`],
    /// [`SecureFieldError::BadHex`], [`SecureFieldError::DigestLength`].
    pub fn parse(v: &str) -> Result<Fingerprint, SecureFieldError> {
        let mut rest = v;
        let alg = next_word(&mut rest).ok_or(SecureFieldError::Missing("hash-func"))?;
        let hex = next_word(&mut rest).ok_or(SecureFieldError::Missing("fingerprint"))?;
        let &(algorithm, expected) = FINGERPRINT_HASHES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(alg))
            .ok_or(SecureFieldError::UnknownHash)?;
        let mut digest = [0u8; MAX_DIGEST];
        let mut got = 0;
        for pair in hex.split(':') {
            let b = match pair.as_bytes() {
                [h, l] => hex_val(*h).zip(hex_val(*l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            let b = b.ok_or(SecureFieldError::BadHex)?;
            if let Some(d) = digest.get_mut(got) {
                *d = b;
            }
            got += 1;
        }
        if got != expected {
            return Err(SecureFieldError::DigestLength { expected, got });
        }
        Ok(Fingerprint {
            algorithm,
            digest,
            len: expected as u8,
        })
    }

    /// The digest bytes.
    pub fn digest(&self) -> &[u8] {
        &self.digest[..usize::from(self.len).min(MAX_DIGEST)]
    }

    /// The value as [`Display`](fmt::Display) writes it.
    pub fn to_value(&self) -> String {
        self.to_string()
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

/// The value `<alg> <HEX:HEX:…>` of an `a=fingerprint` attribute, `alg`
/// in lower case and the digest in upper-case hex pairs (RFC 8122 §5).
pub fn fingerprint_value(alg: &str, digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(alg.len() + 1 + digest.len() * 3);
    s.extend(alg.chars().map(|c| c.to_ascii_lowercase()));
    s.push(' ');
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprint")
            .field("algorithm", &self.algorithm)
            .field("digest", &self.digest())
            .finish()
    }
}

impl fmt::Display for Fingerprint {
    /// The `a=fingerprint` value ([`fingerprint_value`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fingerprint_value(self.algorithm, self.digest()))
    }
}

/// An `a=setup` role (RFC 4145 §4; RFC 8842 §5 for DTLS: the offerer
/// says `actpass`, the answerer `active` or `passive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// Opens the connection (the DTLS client).
    Active,
    /// Accepts the connection (the DTLS server).
    Passive,
    /// Either; the answerer chooses.
    ActPass,
    /// Not yet.
    HoldConn,
}

impl Setup {
    /// Reads the value after `a=setup:` (white space around it ignored,
    /// case-insensitive).
    ///
    /// Errors: [`SecureFieldError::Missing`] when empty,
    /// [`SecureFieldError::UnknownSetup`] for another word.
    pub fn parse(v: &str) -> Result<Setup, SecureFieldError> {
        let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
        if v.is_empty() {
            return Err(SecureFieldError::Missing("role"));
        }
        [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(v))
        .ok_or(SecureFieldError::UnknownSetup)
    }

    /// The role's attribute value (`active`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ice-char = ALPHA / DIGIT / "+" / "/"` (RFC 8839 §5.1).
pub fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// `value` (white space around it trimmed) when it is `min`–256
/// ice-chars.
fn ice_chars<'a>(
    v: &'a str,
    min: usize,
    name: &'static str,
    len_err: SecureFieldError,
) -> Result<&'a str, SecureFieldError> {
    let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
    if v.is_empty() {
        return Err(SecureFieldError::Missing(name));
    }
    if !v.bytes().all(is_ice_char) {
        return Err(SecureFieldError::BadIceChar(name));
    }
    if !(min..=256).contains(&v.len()) {
        return Err(len_err);
    }
    Ok(v)
}

/// Reads an `a=ice-ufrag` value (RFC 8839 §5.4: `4*256ice-char`).
///
/// Errors: [`SecureFieldError::Missing`] when empty,
/// [`SecureFieldError::BadIceChar`], [`SecureFieldError::UfragLength`].
pub fn parse_ice_ufrag(v: &str) -> Result<&str, SecureFieldError> {
    ice_chars(v, 4, "ice-ufrag", SecureFieldError::UfragLength)
}

/// Reads an `a=ice-pwd` value (RFC 8839 §5.4: `22*256ice-char`).
///
/// Errors: [`SecureFieldError::Missing`] when empty,
/// [`SecureFieldError::BadIceChar`], [`SecureFieldError::PwdLength`].
pub fn parse_ice_pwd(v: &str) -> Result<&str, SecureFieldError> {
    ice_chars(v, 22, "ice-pwd", SecureFieldError::PwdLength)
}

/// An `a=ice-options` value (RFC 8839 §5.6): `ice-option-tag *(SP
/// ice-option-tag)`, each tag `1*ice-char` (`trickle`, `ice2`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceOptions<'a>(&'a str);

impl<'a> IceOptions<'a> {
    /// Reads the value after `a=ice-options:`.
    ///
    /// Errors: [`SecureFieldError::Missing`] when it has no tag,
    /// [`SecureFieldError::BadIceChar`] for a tag that is not ice-chars.
    pub fn parse(v: &'a str) -> Result<IceOptions<'a>, SecureFieldError> {
        let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
        if v.is_empty() {
            return Err(SecureFieldError::Missing("ice-option-tag"));
        }
        if !v.bytes().all(|b| is_ice_char(b) || b.is_ascii_whitespace()) {
            return Err(SecureFieldError::BadIceChar("ice-option-tag"));
        }
        Ok(IceOptions(v))
    }

    /// The option tags, in order.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.0.split_ascii_whitespace()
    }

    /// Whether `tag` is among them (`trickle`, RFC 8840 §4.1.1).
    pub fn has(&self, tag: &str) -> bool {
        self.tags().any(|t| t == tag)
    }
}

/// Reads an `a=mid` value (RFC 9143 §5: `identification-tag = token`,
/// RFC 8866 §9's token), white space around it trimmed.
///
/// Errors: [`SecureFieldError::Missing`] when empty,
/// [`SecureFieldError::BadMid`] for a non-token character.
pub fn parse_mid(v: &str) -> Result<&str, SecureFieldError> {
    let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
    if v.is_empty() {
        return Err(SecureFieldError::Missing("identification-tag"));
    }
    // token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A
    //              / %x5E-7E
    let token = |b: u8| matches!(b, 0x21 | 0x23..=0x27 | 0x2a..=0x2b | 0x2d..=0x2e | 0x30..=0x39 | 0x41..=0x5a | 0x5e..=0x7e);
    if v.bytes().all(token) {
        Ok(v)
    } else {
        Err(SecureFieldError::BadMid)
    }
}

/// The type preference of host candidates (RFC 8445 §5.1.2.2).
pub const HOST_TYPE_PREFERENCE: u32 = 126;

/// A host candidate's priority (RFC 8445 §5.1.2.1): `2^24 * 126 + 2^8 *
/// local_pref + (256 - component)`. A component of 0 (not valid) is
/// taken as 1 so the result stays a priority.
pub fn host_priority(component: u8, local_pref: u16) -> u32 {
    (HOST_TYPE_PREFERENCE << 24)
        + (u32::from(local_pref) << 8)
        + (256 - u32::from(component.max(1)))
}

/// An `a=candidate` value (RFC 8839 §5.1): `<foundation> <component>
/// <transport> <priority> <ip> <port> typ <typ>`, with no related address
/// (a host candidate's shape). Read back by
/// [`Candidate::parse`](super::Candidate::parse).
pub fn candidate_value(
    foundation: &str,
    component: u16,
    transport: &str,
    priority: u32,
    ip: IpAddr,
    port: u16,
    typ: &str,
) -> String {
    format!("{foundation} {component} {transport} {priority} {ip} {port} typ {typ}")
}

/// The secure-media attributes of one media section, read in one pass
/// (with a second over the session part for what may be given there).
/// Values that did not read are kept as their error, so a caller can
/// refuse the offer; attributes absent are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureMedia<'a> {
    /// The `a=crypto` lines that read, in order, at most [`MAX_CRYPTO`].
    pub crypto: Vec<Crypto<'a>>,
    /// `a=crypto` lines that did not read or came past [`MAX_CRYPTO`]
    /// (RFC 4568 §7.1.1: an answerer ignores lines it cannot use).
    pub crypto_skipped: usize,
    /// The first `a=fingerprint` of the section, else of the session part
    /// (RFC 8122 §5 allows either).
    pub fingerprint: Option<Result<Fingerprint, SecureFieldError>>,
    /// `a=setup`, the section's else the session's (RFC 4145 §4).
    pub setup: Option<Result<Setup, SecureFieldError>>,
    /// `a=ice-ufrag`, the section's else the session's (RFC 8839 §5.4).
    pub ice_ufrag: Option<Result<&'a str, SecureFieldError>>,
    /// `a=ice-pwd`, the section's else the session's.
    pub ice_pwd: Option<Result<&'a str, SecureFieldError>>,
    /// `a=ice-options`, the section's else the session's, unread.
    pub ice_options: Option<&'a str>,
    /// `a=ice-lite` in the session part (RFC 8839 §5.3) or the section.
    pub ice_lite: bool,
    /// How many `a=candidate` lines the section has.
    pub candidates: usize,
    /// The section's `a=mid`.
    pub mid: Option<Result<&'a str, SecureFieldError>>,
    /// `a=rtcp-mux` (RFC 5761 §5.1.1).
    pub rtcp_mux: bool,
    /// `a=rtcp-mux-only` (RFC 8858 §3).
    pub rtcp_mux_only: bool,
}

impl<'a> SecureMedia<'a> {
    /// Reads `section` and, for fingerprint, setup, ICE credentials,
    /// options and ice-lite, `session` (the body's session part) when the
    /// section has none. Attributes with no value where one is needed read
    /// as the parser's `Missing` error.
    pub fn read(section: &Section<'_, 'a>, session: Option<&Section<'_, 'a>>) -> SecureMedia<'a> {
        let mut m = SecureMedia {
            crypto: Vec::new(),
            crypto_skipped: 0,
            fingerprint: None,
            setup: None,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: None,
            ice_lite: false,
            candidates: 0,
            mid: None,
            rtcp_mux: false,
            rtcp_mux_only: false,
        };
        for (_, a) in section.attributes() {
            let v = a.value.unwrap_or("");
            match a.name {
                "crypto" => match Crypto::parse(v) {
                    Ok(c) if m.crypto.len() < MAX_CRYPTO => m.crypto.push(c),
                    _ => m.crypto_skipped += 1,
                },
                "candidate" => m.candidates += 1,
                "mid" if m.mid.is_none() => m.mid = Some(parse_mid(v)),
                "rtcp-mux" => m.rtcp_mux = true,
                "rtcp-mux-only" => m.rtcp_mux_only = true,
                _ => m.shared(a.name, v),
            }
        }
        if let Some(s) = session {
            for (_, a) in s.attributes() {
                m.shared(a.name, a.value.unwrap_or(""));
            }
        }
        m
    }

    /// The attributes allowed at both levels: the first one seen wins,
    /// and the section is read before the session part.
    fn shared(&mut self, name: &str, v: &'a str) {
        match name {
            "fingerprint" if self.fingerprint.is_none() => {
                self.fingerprint = Some(Fingerprint::parse(v));
            }
            "setup" if self.setup.is_none() => self.setup = Some(Setup::parse(v)),
            "ice-ufrag" if self.ice_ufrag.is_none() => self.ice_ufrag = Some(parse_ice_ufrag(v)),
            "ice-pwd" if self.ice_pwd.is_none() => self.ice_pwd = Some(parse_ice_pwd(v)),
            "ice-options" if self.ice_options.is_none() => self.ice_options = Some(v),
            "ice-lite" => self.ice_lite = true,
            _ => {}
        }
    }

    /// The `a=crypto` line with tag `tag`, among those kept.
    pub fn crypto_by_tag(&self, tag: u32) -> Option<&Crypto<'a>> {
        self.crypto.iter().find(|c| c.tag == tag)
    }
}

#[cfg(test)]
#[path = "secure_tests.rs"]
mod tests;
