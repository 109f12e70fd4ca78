//! An ICE-lite agent's per-leg state (RFC 8445 §2.5): it only answers the
//! full peer's connectivity checks, never sends its own, and is always the
//! controlled agent (§6.1.1). Consent freshness (RFC 7675) for a lite agent
//! is the peer's authenticated checks arriving from the nominated address.
//!
//! Sans-IO: [`IceLite::on_stun`] is handed the datagram, its source, `now`
//! and an output buffer; it reads no clock, owns no socket, draws no random
//! numbers and does not allocate.

use core::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::stun::{self, Builder, Class, Message};

#[cfg(test)]
mod tests;

/// Longest ufrag or pwd (RFC 8839 §5.4: at most 256 ice-chars).
const MAX_CHARS: usize = 256;
/// Shortest ufrag (RFC 8839 §5.4: at least 4 ice-chars).
const MIN_UFRAG: usize = 4;
/// Shortest pwd (RFC 8839 §5.4: at least 22 ice-chars, 128 bits).
const MIN_PWD: usize = 22;
/// Length of a generated ufrag, in ice-chars (48 random bits).
const RANDOM_UFRAG: usize = 8;
/// Length of a generated pwd, in ice-chars (144 random bits).
const RANDOM_PWD: usize = 24;
/// The 64 ice-chars (RFC 8839 §5.4: ALPHA / DIGIT / "+" / "/"): one per
/// 6 random bits, so generated credentials are unbiased.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Attributes a Binding request may carry that this agent understands, or
/// may safely ignore, in the comprehension-required range 0x0000–0x7FFF
/// (RFC 8489 §14, RFC 8445 §16.1). Any other such type gets a 420.
const KNOWN_REQUIRED: [u16; 13] = [
    stun::MAPPED_ADDRESS,
    stun::USERNAME,
    stun::MESSAGE_INTEGRITY,
    stun::ERROR_CODE,
    stun::UNKNOWN_ATTRIBUTES,
    stun::REALM,
    stun::NONCE,
    stun::MESSAGE_INTEGRITY_SHA256,
    stun::PASSWORD_ALGORITHM,
    stun::USERHASH,
    stun::XOR_MAPPED_ADDRESS,
    stun::PRIORITY,
    stun::USE_CANDIDATE,
];
/// Most unknown types listed in one 420's UNKNOWN-ATTRIBUTES.
const MAX_UNKNOWN: usize = 8;

fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Up to 256 ice-chars stored inline, so credentials need no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Chars {
    buf: [u8; MAX_CHARS],
    len: u16,
}

impl Chars {
    fn new(s: &str, min: usize, short: IceError) -> Result<Self, IceError> {
        let b = s.as_bytes();
        if b.len() < min || b.len() > MAX_CHARS {
            return Err(short);
        }
        if !b.iter().copied().all(is_ice_char) {
            return Err(IceError::BadChar);
        }
        let mut buf = [0; MAX_CHARS];
        buf[..b.len()].copy_from_slice(b);
        Ok(Chars {
            buf,
            len: b.len() as u16,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Only ASCII ice-chars are ever stored.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// Why a ufrag or pwd was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceError {
    /// The ufrag is not 4–256 ice-chars long.
    UfragLength,
    /// The pwd is not 22–256 ice-chars long.
    PwdLength,
    /// A character is not ALPHA / DIGIT / "+" / "/".
    BadChar,
}

impl IceError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IceError::UfragLength => "ufrag_length",
            IceError::PwdLength => "pwd_length",
            IceError::BadChar => "bad_char",
        }
    }
}

impl fmt::Display for IceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IceError::UfragLength => "ice-ufrag must be 4 to 256 ice-chars",
            IceError::PwdLength => "ice-pwd must be 22 to 256 ice-chars",
            IceError::BadChar => "ice-ufrag/ice-pwd may hold only ALPHA, DIGIT, '+' and '/'",
        })
    }
}

impl std::error::Error for IceError {}

/// One side's short-term credentials (RFC 8445 §5.3, RFC 8839 §5.4): the
/// ice-ufrag (4–256 ice-chars) and ice-pwd (22–256 ice-chars). A check's
/// USERNAME is "<receiver ufrag>:<sender ufrag>" and its MESSAGE-INTEGRITY
/// key is the receiver's pwd (RFC 8445 §7.2.2). Stored inline (about 516
/// bytes); `Debug` does not print the pwd.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    ufrag: Chars,
    pwd: Chars,
}

impl Credentials {
    /// Validates and copies `ufrag` and `pwd`. Errors:
    /// [`IceError::UfragLength`], [`IceError::PwdLength`],
    /// [`IceError::BadChar`].
    pub fn new(ufrag: &str, pwd: &str) -> Result<Self, IceError> {
        Ok(Credentials {
            ufrag: Chars::new(ufrag, MIN_UFRAG, IceError::UfragLength)?,
            pwd: Chars::new(pwd, MIN_PWD, IceError::PwdLength)?,
        })
    }

    /// Fresh local credentials: an 8-char ufrag and a 24-char pwd (144
    /// bits, above RFC 8445's 128), 6 bits of `rng` per char. `rng` must be
    /// a CSPRNG: the pwd is what authenticates checks. It is called 4 times.
    pub fn random(rng: &mut impl FnMut() -> u64) -> Self {
        let mut chars = [0u8; RANDOM_UFRAG + RANDOM_PWD];
        let (mut pool, mut bits) = (0u64, 0u32);
        for c in chars.iter_mut() {
            if bits < 6 {
                (pool, bits) = (rng(), 64);
            }
            *c = ICE_CHARS[(pool & 63) as usize];
            (pool, bits) = (pool >> 6, bits - 6);
        }
        let mut ufrag = Chars {
            buf: [0; MAX_CHARS],
            len: RANDOM_UFRAG as u16,
        };
        ufrag.buf[..RANDOM_UFRAG].copy_from_slice(&chars[..RANDOM_UFRAG]);
        let mut pwd = Chars {
            buf: [0; MAX_CHARS],
            len: RANDOM_PWD as u16,
        };
        pwd.buf[..RANDOM_PWD].copy_from_slice(&chars[RANDOM_UFRAG..]);
        Credentials { ufrag, pwd }
    }

    /// The ice-ufrag, for SDP `a=ice-ufrag`.
    pub fn ufrag(&self) -> &str {
        self.ufrag.as_str()
    }

    /// The ice-pwd, for SDP `a=ice-pwd`; also the MESSAGE-INTEGRITY key.
    pub fn pwd(&self) -> &str {
        self.pwd.as_str()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag())
            .field("pwd", &"<redacted>")
            .finish()
    }
}

/// What to do with a STUN datagram, from [`IceLite::on_stun`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send `out[..len]`, a Binding success response, back to the source.
    /// `nominated`: this check carried USE-CANDIDATE and the source is now
    /// the nominated address (newly or again).
    Reply { len: usize, nominated: bool },
    /// Send `out[..len]`, an authenticated Binding error response, back to
    /// the source: 487 Role Conflict (the peer claims to be controlled) or
    /// 420 Unknown Attribute. Nothing was nominated or refreshed.
    Error { len: usize, code: u16 },
    /// Send nothing.
    Drop(IceDrop),
}

impl Outcome {
    /// The length of the response to send, if any.
    pub fn reply_len(&self) -> Option<usize> {
        match *self {
            Outcome::Reply { len, .. } | Outcome::Error { len, .. } => Some(len),
            Outcome::Drop(_) => None,
        }
    }
}

/// Why a datagram got no answer. Unauthenticated requests are never
/// answered, so a spoofed source cannot be used for reflection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceDrop {
    /// Not a well-formed STUN message ([`stun::StunError`]).
    Malformed,
    /// A response or indication: a lite agent sends no requests, and
    /// Binding indications are keepalives needing no answer.
    NotRequest,
    /// A request for a method other than Binding.
    UnknownMethod,
    /// FINGERPRINT present but wrong or not last.
    BadFingerprint,
    /// USERNAME missing, or not "<local ufrag>:<remote ufrag>".
    BadUsername,
    /// MESSAGE-INTEGRITY missing or not valid under the local pwd.
    BadIntegrity,
    /// The output buffer cannot hold the response.
    NoRoom,
}

impl IceDrop {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IceDrop::Malformed => "malformed",
            IceDrop::NotRequest => "not_request",
            IceDrop::UnknownMethod => "unknown_method",
            IceDrop::BadFingerprint => "bad_fingerprint",
            IceDrop::BadUsername => "bad_username",
            IceDrop::BadIntegrity => "bad_integrity",
            IceDrop::NoRoom => "no_room",
        }
    }
}

/// One leg's ICE-lite responder: local and (once signalled) remote
/// credentials, the nominated source address and when consent was last
/// refreshed.
#[derive(Clone, Debug)]
pub struct IceLite {
    local: Credentials,
    remote: Option<Credentials>,
    nominated: Option<SocketAddr>,
    last_consent: Option<Instant>,
}

impl IceLite {
    /// RFC 7675 §5.1: consent is lost 30 s after it was last refreshed.
    pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

    /// An `out` buffer this long holds any response [`IceLite::on_stun`]
    /// writes (the largest, a 420 listing 8 types, is 100 bytes; a success
    /// is 64 for IPv4 and 76 for IPv6).
    pub const MAX_REPLY: usize = 128;

    /// A responder answering checks keyed with `local`; the remote
    /// credentials are unknown until [`IceLite::set_remote`].
    pub fn new(local: Credentials) -> Self {
        IceLite {
            local,
            remote: None,
            nominated: None,
            last_consent: None,
        }
    }

    /// Sets (or forgets) the peer's credentials. While they are known, a
    /// check's USERNAME must end in ":<remote ufrag>". Nomination and
    /// consent are kept; use [`IceLite::restart`] for an ICE restart.
    pub fn set_remote(&mut self, remote: Option<Credentials>) {
        self.remote = remote;
    }

    /// ICE restart (RFC 8445 §9): new credentials on both sides; the
    /// nominated address and consent are cleared, so nothing may be sent
    /// until the peer nominates again.
    pub fn restart(&mut self, local: Credentials, remote: Option<Credentials>) {
        *self = IceLite {
            local,
            remote,
            nominated: None,
            last_consent: None,
        };
    }

    /// The local credentials, to advertise in SDP.
    pub fn local(&self) -> &Credentials {
        &self.local
    }

    /// The remote credentials, if known.
    pub fn remote(&self) -> Option<&Credentials> {
        self.remote.as_ref()
    }

    /// The address the peer last nominated with USE-CANDIDATE.
    pub fn nominated(&self) -> Option<SocketAddr> {
        self.nominated
    }

    /// RFC 7675: whether media may be sent to the nominated address at
    /// `now`: true only once nominated and less than
    /// [`IceLite::CONSENT_TIMEOUT`] after the last valid check from it.
    pub fn may_send(&self, now: Instant) -> bool {
        match (self.nominated, self.last_consent) {
            (Some(_), Some(t)) => now.saturating_duration_since(t) < Self::CONSENT_TIMEOUT,
            _ => false,
        }
    }

    /// When consent expires unless refreshed (for the caller's timer);
    /// `None` before nomination.
    pub fn consent_expires(&self) -> Option<Instant> {
        self.nominated?;
        self.last_consent?.checked_add(Self::CONSENT_TIMEOUT)
    }

    /// Handles one STUN datagram from `src` received at `now`, writing any
    /// response into `out` ([`IceLite::MAX_REPLY`] bytes always suffice).
    ///
    /// A Binding request is answered when its USERNAME is
    /// "<local ufrag>:<remote ufrag>" (only the local part is checked while
    /// the remote credentials are unknown), its MESSAGE-INTEGRITY is valid
    /// under the local pwd, and its FINGERPRINT, if present, is valid. The
    /// success response carries XOR-MAPPED-ADDRESS = `src`,
    /// MESSAGE-INTEGRITY (local pwd) and FINGERPRINT. USE-CANDIDATE
    /// nominates `src`; every answered check from the nominated address
    /// refreshes consent. Authenticated requests get a 420 for unknown
    /// comprehension-required attributes (RFC 8489 §6.3.1) and a 487 when
    /// they carry ICE-CONTROLLED: a lite agent is always controlled, so the
    /// full peer must take the controlling role (RFC 8445 §6.1.1, §7.3.1.1).
    pub fn on_stun(
        &mut self,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
        out: &mut [u8],
    ) -> Outcome {
        let Ok(msg) = Message::parse(pkt) else {
            return Outcome::Drop(IceDrop::Malformed);
        };
        if msg.class() != Class::Request {
            return Outcome::Drop(IceDrop::NotRequest);
        }
        if msg.method() != stun::BINDING {
            return Outcome::Drop(IceDrop::UnknownMethod);
        }
        if msg.has_fingerprint() && !msg.check_fingerprint() {
            return Outcome::Drop(IceDrop::BadFingerprint);
        }
        if !self.username_ok(&msg) {
            return Outcome::Drop(IceDrop::BadUsername);
        }
        if !msg.check_integrity(self.local.pwd.as_bytes()) {
            return Outcome::Drop(IceDrop::BadIntegrity);
        }

        let mut unknown = [0u16; MAX_UNKNOWN];
        let mut n_unknown = 0;
        for (ty, _) in msg.attributes() {
            if ty < 0x8000 && !KNOWN_REQUIRED.contains(&ty) && n_unknown < MAX_UNKNOWN {
                unknown[n_unknown] = ty;
                n_unknown += 1;
            }
        }
        if n_unknown > 0 {
            return self.error(&msg, out, 420, "Unknown Attribute", &unknown[..n_unknown]);
        }
        if msg.attribute(stun::ICE_CONTROLLED).is_some() {
            return self.error(&msg, out, 487, "Role Conflict", &[]);
        }

        let Ok(len) = self.success(&msg, src, out) else {
            return Outcome::Drop(IceDrop::NoRoom);
        };
        // State changes only once the answer is written.
        let nominated = msg.use_candidate();
        if nominated {
            self.nominated = Some(src);
        }
        if self.nominated == Some(src) {
            self.last_consent = Some(now);
        }
        Outcome::Reply { len, nominated }
    }

    fn username_ok(&self, msg: &Message<'_>) -> bool {
        let Some((ours, theirs)) = msg.username().and_then(|u| u.split_once(':')) else {
            return false;
        };
        // Until the answer brings the peer's ufrag, any remote part goes.
        let theirs_ok = match &self.remote {
            Some(r) => theirs.as_bytes() == r.ufrag.as_bytes(),
            None => true,
        };
        ours.as_bytes() == self.local.ufrag.as_bytes() && theirs_ok
    }

    fn success(
        &self,
        msg: &Message<'_>,
        src: SocketAddr,
        out: &mut [u8],
    ) -> Result<usize, stun::StunError> {
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the
        // peer knows its address as IPv4.
        let mapped = match src.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(IpAddr::V4(v4), src.port()),
                None => src,
            },
            IpAddr::V4(_) => src,
        };
        let mut w = Builder::new(out, Class::Success, stun::BINDING, msg.transaction_id())?;
        w.xor_mapped_address(mapped)?;
        w.message_integrity(self.local.pwd.as_bytes())?;
        w.fingerprint()
    }

    fn error(
        &self,
        msg: &Message<'_>,
        out: &mut [u8],
        code: u16,
        reason: &str,
        unknown: &[u16],
    ) -> Outcome {
        let written = (|| {
            let mut w = Builder::new(out, Class::Error, stun::BINDING, msg.transaction_id())?;
            w.error_code(code, reason)?;
            if !unknown.is_empty() {
                w.unknown_attributes(unknown)?;
            }
            w.message_integrity(self.local.pwd.as_bytes())?;
            w.fingerprint()
        })();
        match written {
            Ok(len) => Outcome::Error { len, code },
            Err(_) => Outcome::Drop(IceDrop::NoRoom),
        }
    }
}
