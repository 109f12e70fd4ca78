//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760 with
//! RFC 3261 §22), `qop=auth`, algorithms MD5 and SHA-256, sans-IO.
//!
//! # Challenges
//!
//! A challenge is two `WWW-Authenticate`/`Proxy-Authenticate` values over
//! the same nonce: MD5 first, since SIPp 3.6 and many phones speak only MD5
//! and take the first one they understand, then SHA-256. RFC 8760 has a
//! server list its most preferred algorithm first; we deviate on purpose,
//! since clients that take only the first challenge would otherwise fail
//! outright, while a SHA-256 client still finds its challenge (OpenSIPS's
//! UAC, for one, walks every header).
//!
//! # Nonces
//!
//! Nonces are stateless, 56 ASCII characters:
//!
//! ```text
//! <issue second: 8 hex><salt: 16 hex><MAC: 32 hex>
//! MAC = first 16 bytes of HMAC-SHA-256(secret, second (4 bytes, big
//!       endian) || salt (8 bytes, big endian) || realm)
//! ```
//!
//! The issue second counts from the creation of the [`NonceSource`], the
//! salt is random per nonce (so two clients challenged in the same second
//! get different nonces and their nonce-counts do not collide) and the
//! secret is random per process. A nonce is valid if its MAC checks out and
//! it is at most the TTL old; an older one with a correct response is
//! re-challenged with `stale=true` (RFC 7616 §3.3).
//!
//! # Replay protection
//!
//! Each nonce that has been used successfully remembers the highest
//! nonce-count (`nc`, RFC 7616 §3.4) accepted with it; a request whose `nc`
//! is not greater is refused as a replay (a fresh challenge with
//! `stale=true`, so an honest client retries at once) — unless it is a
//! retransmission of the very request that used the count (same
//! transaction identity, see [`verify`]), which UDP clients send when our
//! answer is late or lost and which must get the same answer (RFC 3261
//! §17.2.2). A response without `qop` counts as `nc=1`, making its nonce
//! single-use. The table is bounded
//! ([`NonceSource::with_capacity`]): entries go when their nonce expires,
//! and when the table is full the oldest nonces are evicted and every
//! nonce issued up to the newest evicted one is from then on answered
//! `stale=true` — eviction never re-opens a nonce to replay.
//!
//! Digest parameters are read from the raw header text, not from rsip's
//! typed header (rsip misspells `algorithm=SHA-256`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm (RFC 7616 §3.2; the `-sess` variants are not
/// supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: hashes are 32 hex digits (RFC 2617).
    Md5,
    /// `SHA-256`: hashes are 64 hex digits (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=` (`MD5`, `SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm=` token, case-insensitively; `None` for an
    /// algorithm we do not support (`-sess`, `SHA-512-256`, ...).
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The hash of `s` in lowercase hex (32 digits for MD5, 64 for SHA-256).
    pub fn hex(self, s: &str) -> String {
        self.hex_joined(&[s])
    }

    /// The hash of `parts` joined by `:` in lowercase hex, without building
    /// the joined string (this is on the path of every authenticated
    /// request).
    pub fn hex_joined(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }

    /// Length of a hash in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// MD5 of `s` as 32 lowercase hex digits.
pub fn md5_hex(s: &str) -> String {
    Algorithm::Md5.hex(s)
}

/// HA1 = H(`username:realm:password`) in lowercase hex (RFC 7616 §3.4.2).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex_joined(&[username, realm, password])
}

/// The stored secrets of one user: HA1 per algorithm, lowercase hex. A user
/// configured with only an MD5 `ha1` cannot answer a SHA-256 challenge.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Ha1 {
    /// H(`name:realm:password`) with MD5, 32 hex digits.
    pub md5: Option<String>,
    /// H(`name:realm:password`) with SHA-256, 64 hex digits.
    pub sha256: Option<String>,
}

impl std::fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha1")
            .field("md5", &self.md5.as_ref().map(|_| "<redacted>"))
            .field("sha256", &self.sha256.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Ha1 {
    /// Both HA1 values from a clear-text password.
    pub fn from_password(username: &str, realm: &str, password: &str) -> Ha1 {
        Ha1 {
            md5: Some(ha1(Algorithm::Md5, username, realm, password)),
            sha256: Some(ha1(Algorithm::Sha256, username, realm, password)),
        }
    }

    /// The HA1 for `alg`, if stored.
    pub fn get(&self, alg: Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => self.md5.as_deref(),
            Algorithm::Sha256 => self.sha256.as_deref(),
        }
    }
}

/// The parameters of a `Digest` credentials header (RFC 7616 §3.4), as
/// given; names are lowercased, quotes removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username`: the user name (also the AOR user part for REGISTER).
    pub username: String,
    /// `realm` the credentials are for.
    pub realm: String,
    /// `nonce` from our challenge.
    pub nonce: String,
    /// `uri`: the digest-uri the client hashed (usually the Request-URI).
    pub uri: String,
    /// `response`: 32 (MD5) or 64 (SHA-256) hex digits.
    pub response: String,
    /// `algorithm`, if given; absent means MD5 (RFC 7616 §3.3).
    pub algorithm: Option<String>,
    /// `cnonce` (with `qop`).
    pub cnonce: Option<String>,
    /// `qop` chosen by the client (`auth`).
    pub qop: Option<String>,
    /// `nc`: nonce count, 8 hex digits (with `qop`).
    pub nc: Option<String>,
    /// `opaque`, echoed if we had sent one (we do not).
    pub opaque: Option<String>,
}

/// Parses an `Authorization` / `Proxy-Authorization` value of scheme
/// `Digest`. Returns `None` for another scheme or when `username`, `realm`,
/// `nonce`, `uri` or `response` is missing.
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let value = value.trim_start();
    let (scheme, rest) = value.split_at(value.find(char::is_whitespace)?);
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Credentials::default();
    let (mut has_user, mut has_realm, mut has_nonce, mut has_uri, mut has_resp) =
        (false, false, false, false, false);
    for (name, val) in split_auth_params(rest) {
        match name.as_str() {
            "username" => (c.username, has_user) = (val, true),
            "realm" => (c.realm, has_realm) = (val, true),
            "nonce" => (c.nonce, has_nonce) = (val, true),
            "uri" => (c.uri, has_uri) = (val, true),
            "response" => (c.response, has_resp) = (val, true),
            "algorithm" => c.algorithm = Some(val),
            "cnonce" => c.cnonce = Some(val),
            "qop" => c.qop = Some(val),
            "nc" => c.nc = Some(val),
            "opaque" => c.opaque = Some(val),
            _ => {}
        }
    }
    (has_user && has_realm && has_nonce && has_uri && has_resp).then_some(c)
}

/// Splits `a=b, c="d, e"` into lowercased names and unquoted values.
pub(crate) fn split_auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (parts, _) = crate::normalize::split_unquoted(s, b',', false);
    for p in parts {
        let Some((n, v)) = p.split_once('=') else {
            continue;
        };
        let n = n.trim().to_ascii_lowercase();
        let v = v.trim();
        let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            v[1..v.len() - 1]
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            v.to_string()
        };
        out.push((n, v));
    }
    out
}

/// The expected `response` (RFC 7616 §3.4.1) with hash H of `alg`: with
/// `qop=auth`, `H(HA1:nonce:nc:cnonce:qop:HA2)`; without qop (RFC 2069),
/// `H(HA1:nonce:HA2)`; HA2 = `H(method:uri)`.
pub fn expected_response_with(alg: Algorithm, ha1: &str, method: &str, c: &Credentials) -> String {
    let ha2 = alg.hex_joined(&[method, &c.uri]);
    match (&c.qop, &c.cnonce, &c.nc) {
        (Some(q), Some(cn), Some(nc)) => alg.hex_joined(&[ha1, &c.nonce, nc, cn, q, &ha2]),
        _ => alg.hex_joined(&[ha1, &c.nonce, &ha2]),
    }
}

/// [`expected_response_with`] for MD5 (RFC 2617 §3.2.2.1).
pub fn expected_response(ha1: &str, method: &str, c: &Credentials) -> String {
    expected_response_with(Algorithm::Md5, ha1, method, c)
}

/// Compares two ASCII hex strings case-insensitively in time independent
/// of where they differ (no early exit on the first wrong digit).
fn ct_eq_hex(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.bytes().zip(b.bytes()) {
        diff |= x.to_ascii_lowercase() ^ y.to_ascii_lowercase();
    }
    diff == 0
}

/// Default bound of the nonce-count table, entries (about 100 bytes each).
pub const DEFAULT_NC_CAPACITY: usize = 1 << 18;

/// Issues and checks stateless nonces, and remembers the nonce-counts used
/// with them (see the module docs).
#[derive(Debug)]
pub struct NonceSource {
    secret: [u8; 64],
    /// The next nonce's salt (odd golden-ratio steps from a random start).
    salt: std::cell::Cell<u64>,
    epoch: Instant,
    ttl: Duration,
    /// MAC of a used nonce (its 16 bytes as u128) -> (issue second, highest
    /// nc accepted, keyed hash of the transaction that used it).
    used: HashMap<u128, (u32, u32, u64)>,
    /// Keys the transaction hashes, so they cannot be predicted.
    txn_hasher: std::collections::hash_map::RandomState,
    /// The same entries ordered by issue second, for expiry and eviction.
    order: BTreeSet<(u32, u128)>,
    capacity: usize,
    /// Nonces issued at or before this second may have lost their entry to
    /// eviction: without an entry they are answered `stale=true`.
    evicted_upto: Option<u32>,
    evictions: u64,
    replays: u64,
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us and still fresh.
    Valid,
    /// Issued by us but older than the TTL: re-challenge with `stale=true`.
    Stale,
    /// Not ours (bad format or MAC).
    Invalid,
}

/// A nonce split into its issue second and MAC.
struct NonceParts {
    secs: u32,
    mac: u128,
}

impl NonceSource {
    /// A source with a fresh random secret; `epoch` is the zero of the
    /// nonce timestamps, `ttl` the validity. The nonce-count table holds
    /// up to [`DEFAULT_NC_CAPACITY`] nonces.
    pub fn new(epoch: Instant, ttl: Duration) -> NonceSource {
        NonceSource::with_capacity(epoch, ttl, DEFAULT_NC_CAPACITY)
    }

    /// As [`NonceSource::new`], with the nonce-count table bounded to
    /// `capacity` nonces (at least 1).
    pub fn with_capacity(epoch: Instant, ttl: Duration, capacity: usize) -> NonceSource {
        NonceSource::with_rng(epoch, ttl, capacity, &mut rand::thread_rng())
    }

    /// As [`NonceSource::with_capacity`], with the secret and the salt
    /// sequence drawn from `rng` (the core's, so a seeded core issues the
    /// same nonces every run). The salt only has to differ per nonce (the
    /// HMAC under the secret is what cannot be forged), so it is a counter
    /// from a random start.
    pub fn with_rng(
        epoch: Instant,
        ttl: Duration,
        capacity: usize,
        rng: &mut dyn rand::RngCore,
    ) -> NonceSource {
        let mut secret = [0u8; 64];
        rng.fill_bytes(&mut secret[..]);
        NonceSource {
            secret,
            salt: std::cell::Cell::new(rng.next_u64()),
            epoch,
            ttl,
            used: HashMap::new(),
            txn_hasher: std::collections::hash_map::RandomState::new(),
            order: BTreeSet::new(),
            capacity: capacity.max(1),
            evicted_upto: None,
            evictions: 0,
            replays: 0,
        }
    }

    fn mac(&self, secs: u32, salt: u64, realm: &str) -> u128 {
        // A key of exactly the block size (64 bytes): no fallible path.
        let mut m = <Hmac<Sha256> as KeyInit>::new(&self.secret.into());
        m.update(&secs.to_be_bytes());
        m.update(&salt.to_be_bytes());
        m.update(realm.as_bytes());
        let tag = m.finalize().into_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(&tag[..16]);
        u128::from_be_bytes(b)
    }

    fn secs(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch)
            .as_secs()
            .min(u64::from(u32::MAX)) as u32
    }

    /// A fresh nonce for `realm` issued at `now` (56 ASCII characters).
    pub fn issue(&self, realm: &str, now: Instant) -> String {
        let secs = self.secs(now);
        let salt = self.salt.get();
        self.salt.set(salt.wrapping_add(0x9e37_79b9_7f4a_7c15));
        format!("{secs:08x}{salt:016x}{:032x}", self.mac(secs, salt, realm))
    }

    fn split(&self, nonce: &str, realm: &str) -> Option<NonceParts> {
        if nonce.len() != 56 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let secs = u32::from_str_radix(&nonce[..8], 16).ok()?;
        let salt = u64::from_str_radix(&nonce[8..24], 16).ok()?;
        let mac = u128::from_str_radix(&nonce[24..], 16).ok()?;
        // Not constant-time, but a forger learns nothing useful: the MAC
        // depends on the second and salt, which the forger picks.
        (self.mac(secs, salt, realm) == mac).then_some(NonceParts { secs, mac })
    }

    fn age_check(&self, secs: u32, now: Instant) -> NonceCheck {
        let issued = self.epoch + Duration::from_secs(u64::from(secs));
        match now.checked_duration_since(issued) {
            Some(age) if age <= self.ttl => NonceCheck::Valid,
            Some(_) => NonceCheck::Stale,
            // Issued "in the future": cannot be ours.
            None => NonceCheck::Invalid,
        }
    }

    /// Checks a nonce presented at `now` (MAC and age; not the nonce-count).
    pub fn check(&self, nonce: &str, realm: &str, now: Instant) -> NonceCheck {
        match self.split(nonce, realm) {
            Some(p) => self.age_check(p.secs, now),
            None => NonceCheck::Invalid,
        }
    }

    /// Records that a correct response used `nc` with the nonce in the
    /// transaction `txn`: `true` if `nc` is greater than every count
    /// accepted before with it, or repeats the last one in the same
    /// transaction (a retransmission); `false` (a replay, counted)
    /// otherwise.
    fn accept_nc(&mut self, p: &NonceParts, nc: u32, txn: &str, now: Instant) -> bool {
        use std::hash::BuildHasher;
        self.sweep(now);
        let key = self.txn_hasher.hash_one(txn);
        match self.used.get_mut(&p.mac) {
            Some((_, last, last_key)) => {
                if nc > *last {
                    (*last, *last_key) = (nc, key);
                    true
                } else if nc == *last && key == *last_key {
                    true
                } else {
                    self.replays += 1;
                    false
                }
            }
            None => {
                if self.evicted_upto.is_some_and(|e| p.secs <= e) {
                    // Its entry may have been evicted: cannot tell a first
                    // use from a replay.
                    self.replays += 1;
                    return false;
                }
                while self.used.len() >= self.capacity {
                    let Some(first) = self.order.pop_first() else {
                        break;
                    };
                    self.used.remove(&first.1);
                    self.evictions += 1;
                    self.evicted_upto = Some(self.evicted_upto.map_or(first.0, |e| e.max(first.0)));
                }
                self.used.insert(p.mac, (p.secs, nc, key));
                self.order.insert((p.secs, p.mac));
                true
            }
        }
    }

    /// Drops the entries of nonces older than the TTL at `now`: a correct
    /// response over them is answered `stale=true` anyway.
    pub fn sweep(&mut self, now: Instant) {
        let now_s = self.secs(now);
        let ttl = self.ttl.as_secs().min(u64::from(u32::MAX)) as u32;
        // Bounded by the table size.
        while let Some(&(secs, mac)) = self.order.first() {
            if secs.saturating_add(ttl) >= now_s {
                break;
            }
            self.order.pop_first();
            self.used.remove(&mac);
        }
    }

    /// Nonces in the nonce-count table.
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    /// Requests refused as replays (nonce-count not increasing) since creation.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Nonces evicted from the full nonce-count table since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// One `WWW-Authenticate`/`Proxy-Authenticate` value (RFC 7616 §3.3)
    /// over `nonce`.
    pub fn challenge_value(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
        let stale = if stale { ", stale=true" } else { "" };
        format!(
            "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
            alg.name()
        )
    }

    /// The challenge values to send, in order: MD5, then SHA-256, over one
    /// fresh nonce.
    pub fn challenges(&self, realm: &str, now: Instant, stale: bool) -> [String; 2] {
        let nonce = self.issue(realm, now);
        [
            Self::challenge_value(realm, &nonce, Algorithm::Md5, stale),
            Self::challenge_value(realm, &nonce, Algorithm::Sha256, stale),
        ]
    }

    /// The MD5 challenge value alone (RFC 2617 §3.2.1).
    pub fn challenge(&self, realm: &str, now: Instant, stale: bool) -> String {
        let nonce = self.issue(realm, now);
        Self::challenge_value(realm, &nonce, Algorithm::Md5, stale)
    }
}

/// Result of verifying credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    Ok(String),
    /// No usable credentials for our realm (none, a foreign nonce, an
    /// algorithm or qop we did not offer): challenge.
    Challenge,
    /// Correct response over an expired nonce, or a nonce-count already
    /// used (a replay): challenge with `stale=true`.
    Stale,
    /// Credentials for our realm that are wrong (unknown user, bad
    /// response, no HA1 stored for the algorithm): 403.
    Forbidden,
    /// Credentials for our realm whose `uri` does not designate the
    /// Request-URI (RFC 2617 §3.2.2.5, RFC 7616 §3.4.6): 400 Bad Request.
    /// Checked before the response, so it says nothing about the password.
    /// The bare `sip:host[:port]` form of the Request-URI is accepted
    /// too ([`crate::msg::host_form_of`]), as SIPp writes it.
    UriMismatch,
}

/// The request a credentials header is checked against: its method, its
/// Request-URI (as received), and its transaction identity (e.g. top Via
/// branch, Call-ID and CSeq), which tells a retransmission from a replay.
#[derive(Debug, Clone, Copy)]
pub struct RequestLine<'r> {
    /// The method, e.g. `REGISTER` (it enters HA2).
    pub method: &'r str,
    /// The Request-URI text; the digest `uri` must designate the same
    /// resource ([`crate::msg::same_resource`]).
    pub uri: &'r str,
    /// The transaction identity.
    pub txn: &'r str,
}

/// Stand-in HA1 values hashed for unknown users (see [`verify`]).
const UNKNOWN_HA1_MD5: &str = "00000000000000000000000000000000";
/// The SHA-256 one.
const UNKNOWN_HA1_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Verifies the credentials headers `values` of request `req` against the
/// HA1 table (`lookup(username)`), and on success records the
/// nonce-count in `nonces` (replay protection). Credentials for our realm
/// whose `uri` does not designate `req.uri` are refused with
/// [`Verdict::UriMismatch`]. A request repeating the last accepted
/// nonce-count is let through only with the same `req.txn`, as a
/// retransmission.
pub fn verify<'a, 'h>(
    values: impl Iterator<Item = &'a str>,
    req: RequestLine<'_>,
    realm: &str,
    nonces: &mut NonceSource,
    now: Instant,
    lookup: impl Fn(&str) -> Option<&'h Ha1>,
) -> Verdict {
    for v in values {
        let Some(c) = parse_credentials(v) else {
            continue;
        };
        if c.realm != realm {
            continue;
        }
        // The bare host form is let through for SIPp (see
        // `host_form_of`): it still names this server, and the nonce,
        // method and nonce-count bind the response to this request.
        if !crate::msg::same_resource(&c.uri, req.uri) && !crate::msg::host_form_of(&c.uri, req.uri)
        {
            return Verdict::UriMismatch;
        }
        let alg = match &c.algorithm {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(a) => a,
                None => return Verdict::Challenge,
            },
        };
        let nc = match (&c.qop, &c.nc, &c.cnonce) {
            (Some(q), Some(nc), Some(_)) if q.eq_ignore_ascii_case("auth") => {
                match u32::from_str_radix(nc, 16) {
                    Ok(n) if nc.len() == 8 && n > 0 => n,
                    _ => return Verdict::Challenge,
                }
            }
            // RFC 2069 style: the nonce is single-use.
            (None, None, None) => 1,
            _ => return Verdict::Challenge,
        };
        let Some(parts) = nonces.split(&c.nonce, realm) else {
            return Verdict::Challenge;
        };
        // An unknown user (or one without an HA1 for `alg`) costs the
        // same hashing as a wrong password and gets the same 403: the
        // answers do not tell which user names exist.
        let known = lookup(&c.username).and_then(|h| h.get(alg));
        let ha1 = known.unwrap_or(match alg {
            Algorithm::Md5 => UNKNOWN_HA1_MD5,
            Algorithm::Sha256 => UNKNOWN_HA1_SHA256,
        });
        let expected = expected_response_with(alg, ha1, req.method, &c);
        if !ct_eq_hex(&expected, &c.response) || known.is_none() {
            return Verdict::Forbidden;
        }
        return match nonces.age_check(parts.secs, now) {
            NonceCheck::Invalid => Verdict::Challenge,
            NonceCheck::Stale => Verdict::Stale,
            NonceCheck::Valid => {
                if nonces.accept_nc(&parts, nc, req.txn, now) {
                    Verdict::Ok(c.username)
                } else {
                    Verdict::Stale
                }
            }
        };
    }
    Verdict::Challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request line of the tests: Request-URI `sip:tern`.
    fn rl<'a>(method: &'a str, txn: &'a str) -> RequestLine<'a> {
        RequestLine {
            method,
            uri: "sip:tern",
            txn,
        }
    }

    /// [`verify`] of one REGISTER credentials header, transaction "t1",
    /// realm "tern".
    fn verify_one<'h>(
        hdr: &str,
        ns: &mut NonceSource,
        now: Instant,
        look: impl Fn(&str) -> Option<&'h Ha1>,
    ) -> Verdict {
        verify(
            [hdr].into_iter(),
            rl("REGISTER", "t1"),
            "tern",
            ns,
            now,
            look,
        )
    }

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5 (computed with HTTP method GET).
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: String::new(),
            algorithm: None,
            cnonce: Some("0a4f113b".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            opaque: None,
        };
        assert_eq!(
            expected_response(&ha1, "GET", &c),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1, the SHA-256 response.
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            response: String::new(),
            algorithm: Some("SHA-256".into()),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            opaque: None,
        };
        assert_eq!(
            expected_response_with(Algorithm::Sha256, &ha1, "GET", &c),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // And its MD5 twin (§3.9.1, first response).
        let ha1 = md5_hex("Mufasa:http-auth@example.org:Circle of Life");
        assert_eq!(
            expected_response(&ha1, "GET", &c),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse("SHA-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("SHA256"), None);
        assert_eq!(Algorithm::parse("MD5-sess"), None);
        assert_eq!(Algorithm::Sha256.hex("").len(), 64);
        assert_eq!(Algorithm::Md5.hex("").len(), Algorithm::Md5.hex_len());
        assert!(ct_eq_hex("ABCdef", "abcDEF"));
        assert!(!ct_eq_hex("abc", "abd"));
        assert!(!ct_eq_hex("abc", "abcd"));
    }

    #[test]
    fn parses_quoted_params() {
        let c = parse_credentials(
            "Digest username=\"bob\",realm=\"tern\", nonce=\"n,1\", uri=\"sip:x\", response=\"abc\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\"",
        )
        .unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.nonce, "n,1");
        assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
        assert!(parse_credentials("Basic abc").is_none());
        assert!(parse_credentials("Digest username=\"bob\"").is_none());
        assert!(parse_credentials("").is_none());
    }

    #[test]
    fn nonces_expire_and_resist_forgery() {
        let t0 = Instant::now();
        let ns = NonceSource::new(t0, Duration::from_secs(30));
        let n = ns.issue("tern", t0 + Duration::from_secs(5));
        assert_eq!(n.len(), 56);
        assert_ne!(n, ns.issue("tern", t0 + Duration::from_secs(5)));
        assert_eq!(
            ns.check(&n, "tern", t0 + Duration::from_secs(6)),
            NonceCheck::Valid
        );
        assert_eq!(
            ns.check(&n, "tern", t0 + Duration::from_secs(40)),
            NonceCheck::Stale
        );
        assert_eq!(
            ns.check(&n, "other", t0 + Duration::from_secs(6)),
            NonceCheck::Invalid
        );
        let mut forged = n.clone();
        forged.replace_range(0..8, "00000000");
        assert_eq!(
            ns.check(&forged, "tern", t0 + Duration::from_secs(6)),
            NonceCheck::Invalid
        );
        assert_eq!(ns.check("short", "tern", t0), NonceCheck::Invalid);
        assert_eq!(ns.check(&"z".repeat(56), "tern", t0), NonceCheck::Invalid);
        let other = NonceSource::new(t0, Duration::from_secs(30));
        assert_eq!(
            other.check(&n, "tern", t0 + Duration::from_secs(6)),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn challenges_offer_md5_then_sha256_over_one_nonce() {
        let t0 = Instant::now();
        let ns = NonceSource::new(t0, Duration::from_secs(30));
        let [md5, sha] = ns.challenges("tern", t0, true);
        assert!(md5.contains("algorithm=MD5,"), "{md5}");
        assert!(sha.contains("algorithm=SHA-256,"), "{sha}");
        assert!(md5.contains("qop=\"auth\"") && md5.ends_with("stale=true"));
        let nonce = |s: &str| s.split("nonce=\"").nth(1).unwrap()[..56].to_string();
        assert_eq!(nonce(&md5), nonce(&sha));
        assert!(!ns.challenge("tern", t0, false).contains("stale"));
    }

    /// Builds a credentials header answering `nonce`.
    fn answer(
        alg: Algorithm,
        user: &str,
        pw: &str,
        method: &str,
        nonce: &str,
        nc: Option<u32>,
    ) -> String {
        let mut c = Credentials {
            username: user.into(),
            realm: "tern".into(),
            nonce: nonce.into(),
            uri: "sip:tern".into(),
            ..Default::default()
        };
        let mut extra = String::new();
        if let Some(nc) = nc {
            c.cnonce = Some("xyz".into());
            c.qop = Some("auth".into());
            c.nc = Some(format!("{nc:08x}"));
            extra = format!(", cnonce=\"xyz\", qop=auth, nc={nc:08x}");
        }
        c.response = expected_response_with(alg, &ha1(alg, user, "tern", pw), method, &c);
        format!(
            "Digest username=\"{user}\", realm=\"tern\", nonce=\"{nonce}\", uri=\"sip:tern\", response=\"{}\", algorithm={}{extra}",
            c.response,
            alg.name()
        )
    }

    #[test]
    fn verify_round_trip_both_algorithms() {
        let t0 = Instant::now();
        let mut ns = NonceSource::new(t0, Duration::from_secs(30));
        let bob = Ha1::from_password("bob", "tern", "pw");
        let md5_only = Ha1 {
            md5: Some(ha1(Algorithm::Md5, "carol", "tern", "pw")),
            sha256: None,
        };
        let look = |u: &str| match u {
            "bob" => Some(&bob),
            "carol" => Some(&md5_only),
            _ => None,
        };
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nonce = ns.issue("tern", t0);
            let hdr = answer(alg, "bob", "pw", "REGISTER", &nonce, Some(1));
            let v = verify_one(hdr.as_str(), &mut ns, t0, look);
            assert_eq!(v, Verdict::Ok("bob".into()), "{alg:?}");
            // Same header for another method: the response is wrong.
            let v = verify(
                [hdr.as_str()].into_iter(),
                rl("INVITE", "t1"),
                "tern",
                &mut ns,
                t0,
                look,
            );
            assert_eq!(v, Verdict::Forbidden);
            let hdr = answer(alg, "bob", "wrong", "REGISTER", &nonce, Some(2));
            let v = verify_one(hdr.as_str(), &mut ns, t0, look);
            assert_eq!(v, Verdict::Forbidden);
            let hdr = answer(alg, "nobody", "pw", "REGISTER", &nonce, Some(2));
            let v = verify_one(hdr.as_str(), &mut ns, t0, look);
            assert_eq!(v, Verdict::Forbidden);
        }
        // No SHA-256 HA1 stored: refused; MD5 works.
        let nonce = ns.issue("tern", t0);
        let hdr = answer(
            Algorithm::Sha256,
            "carol",
            "pw",
            "REGISTER",
            &nonce,
            Some(1),
        );
        let v = verify_one(hdr.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Forbidden);
        let hdr = answer(Algorithm::Md5, "carol", "pw", "REGISTER", &nonce, Some(1));
        let v = verify_one(hdr.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Ok("carol".into()));
        assert_eq!(
            verify(
                std::iter::empty(),
                rl("REGISTER", "t1"),
                "tern",
                &mut ns,
                t0,
                look
            ),
            Verdict::Challenge
        );
        // Another realm's credentials are skipped; an unknown algorithm or
        // a foreign nonce is challenged.
        let nonce = ns.issue("tern", t0);
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(1));
        let foreign = hdr.replace("realm=\"tern\"", "realm=\"elsewhere\"");
        let v = verify_one(foreign.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Challenge);
        let sess = hdr.replace("algorithm=MD5", "algorithm=MD5-sess");
        let v = verify_one(sess.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Challenge);
        let other = NonceSource::new(t0, Duration::from_secs(30)).issue("tern", t0);
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &other, Some(1));
        let v = verify_one(hdr.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Challenge);
        // Expired nonce with a right response: stale.
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(1));
        let late = t0 + Duration::from_secs(100);
        let v = verify_one(hdr.as_str(), &mut ns, late, look);
        assert_eq!(v, Verdict::Stale);
        // Malformed nc.
        let bad = hdr.replace("nc=00000001", "nc=zz");
        let v = verify_one(bad.as_str(), &mut ns, t0, look);
        assert_eq!(v, Verdict::Challenge);
    }

    #[test]
    fn digest_uri_must_designate_the_request_uri() {
        let t0 = Instant::now();
        let mut ns = NonceSource::new(t0, Duration::from_secs(30));
        let bob = Ha1::from_password("bob", "tern", "pw");
        let look = |u: &str| (u == "bob").then_some(&bob);
        let at = |uri| RequestLine {
            method: "REGISTER",
            uri,
            txn: "t1",
        };
        // `answer` hashes uri="sip:tern": a request for another resource is
        // refused with 400 before the response is looked at, even though
        // the response is right for the uri it names.
        let nonce = ns.issue("tern", t0);
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(1));
        for other in [
            "sip:other",
            "sip:tern:5060",
            "sips:tern",
            "sip:bob@tern:5060",
            "tel:1",
        ] {
            let v = verify(
                [hdr.as_str()].into_iter(),
                at(other),
                "tern",
                &mut ns,
                t0,
                look,
            );
            assert_eq!(v, Verdict::UriMismatch, "{other}");
        }
        // A wrong password with a mismatched uri is still a 400.
        let bad = answer(Algorithm::Md5, "bob", "nope", "REGISTER", &nonce, Some(1));
        let v = verify(
            [bad.as_str()].into_iter(),
            at("sip:x"),
            "tern",
            &mut ns,
            t0,
            look,
        );
        assert_eq!(v, Verdict::UriMismatch);
        assert_eq!(ns.tracked(), 0, "nothing accepted");
        // The Request-URI with a user, hashed in SIPp's bare host form:
        // accepted (nc 1 is still unspent).
        let v = verify(
            [hdr.as_str()].into_iter(),
            at("sip:bob@tern"),
            "tern",
            &mut ns,
            t0,
            look,
        );
        assert_eq!(v, Verdict::Ok("bob".into()));
        // The same resource written differently passes (RFC 3261 §19.1.4).
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(2));
        let v = verify(
            [hdr.as_str()].into_iter(),
            at("SIP:TERN"),
            "tern",
            &mut ns,
            t0,
            look,
        );
        assert_eq!(v, Verdict::Ok("bob".into()));
        // Another realm's credentials are not ours to check.
        let foreign = hdr.replace("realm=\"tern\"", "realm=\"elsewhere\"");
        let v = verify(
            [foreign.as_str()].into_iter(),
            at("sip:x"),
            "tern",
            &mut ns,
            t0,
            look,
        );
        assert_eq!(v, Verdict::Challenge);
    }

    #[test]
    fn nonce_count_replays_are_refused() {
        let t0 = Instant::now();
        let mut ns = NonceSource::new(t0, Duration::from_secs(30));
        let bob = Ha1::from_password("bob", "tern", "pw");
        let look = |u: &str| (u == "bob").then_some(&bob);
        let nonce = ns.issue("tern", t0);
        let run = |ns: &mut NonceSource, nc: Option<u32>, txn: &str| {
            let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, nc);
            verify(
                [hdr.as_str()].into_iter(),
                rl("REGISTER", txn),
                "tern",
                ns,
                t0,
                look,
            )
        };
        assert_eq!(run(&mut ns, Some(1), "t1"), Verdict::Ok("bob".into()));
        // A retransmission of that request (same transaction) passes ...
        assert_eq!(run(&mut ns, Some(1), "t1"), Verdict::Ok("bob".into()));
        // ... the same (nonce, nc) in another request is a replay.
        assert_eq!(run(&mut ns, Some(1), "t2"), Verdict::Stale);
        assert_eq!(run(&mut ns, Some(3), "t3"), Verdict::Ok("bob".into()));
        // Lower than the last one: refused, even as "t1" again.
        assert_eq!(run(&mut ns, Some(2), "t4"), Verdict::Stale);
        assert_eq!(run(&mut ns, Some(1), "t1"), Verdict::Stale);
        assert_eq!(run(&mut ns, Some(4), "t5"), Verdict::Ok("bob".into()));
        assert_eq!(ns.replays(), 3);
        // Without qop the nonce is single-use.
        let nonce2 = ns.issue("tern", t0 + Duration::from_secs(1));
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce2, None);
        let v = |ns: &mut NonceSource, txn: &str| {
            verify(
                [hdr.as_str()].into_iter(),
                rl("REGISTER", txn),
                "tern",
                ns,
                t0 + Duration::from_secs(1),
                look,
            )
        };
        assert_eq!(v(&mut ns, "u1"), Verdict::Ok("bob".into()));
        assert_eq!(v(&mut ns, "u2"), Verdict::Stale);
        assert_eq!(ns.tracked(), 2);
        // Entries go with their nonce's expiry.
        ns.sweep(t0 + Duration::from_secs(60));
        assert_eq!(ns.tracked(), 0);
    }

    #[test]
    fn nonce_count_table_is_bounded_without_reopening_replays() {
        let t0 = Instant::now();
        let mut ns = NonceSource::with_capacity(t0, Duration::from_secs(3600), 4);
        let bob = Ha1::from_password("bob", "tern", "pw");
        let look = |u: &str| (u == "bob").then_some(&bob);
        let mut nonces = Vec::new();
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(i);
            let nonce = ns.issue("tern", at);
            let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(1));
            let v = verify_one(hdr.as_str(), &mut ns, at, look);
            assert_eq!(v, Verdict::Ok("bob".into()), "nonce {i}");
            assert!(ns.tracked() <= 4);
            nonces.push((at, hdr));
        }
        assert_eq!(ns.tracked(), 4);
        assert_eq!(ns.evictions(), 6);
        // Every earlier (nonce, nc) is still refused, evicted or not.
        for (at, hdr) in &nonces {
            let v = verify(
                [hdr.as_str()].into_iter(),
                rl("REGISTER", "replayed"),
                "tern",
                &mut ns,
                *at,
                look,
            );
            assert_eq!(v, Verdict::Stale);
        }
        // A fresh nonce issued after the evictions works.
        let at = t0 + Duration::from_secs(20);
        let nonce = ns.issue("tern", at);
        let hdr = answer(Algorithm::Md5, "bob", "pw", "REGISTER", &nonce, Some(1));
        let v = verify_one(hdr.as_str(), &mut ns, at, look);
        assert_eq!(v, Verdict::Ok("bob".into()));
    }
}
