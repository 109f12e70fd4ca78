//! HTTP Digest authentication for SIP (RFC 2617 with RFC 3261 §22), MD5 with
//! `qop=auth`, sans-IO.
//!
//! Nonces are stateless: `<seconds as 8 hex digits><32 hex digits of
//! MD5(secret ":" seconds ":" realm)>`, where the seconds count from the
//! creation of the [`NonceSource`] and the secret is random per process. A
//! nonce is valid if its MAC checks out and it is younger than the TTL; an
//! older one with a correct response is re-challenged with `stale=true`.
//! Nonce counts (`nc`) are not tracked, so a captured request can be
//! replayed within the nonce's lifetime (a known gap).
//!
//! Digest parameters are read from the raw header text, not from rsip's
//! typed header (rsip misspells `algorithm=SHA-256`).

use std::time::{Duration, Instant};

use md5::{Digest, Md5};

/// MD5 of `s` as 32 lowercase hex digits.
pub fn md5_hex(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    let mut out = String::with_capacity(32);
    for b in d.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The parameters of a `Digest` credentials header (RFC 2617 §3.2.2), as
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
    /// `response`: 32 hex digits.
    pub response: String,
    /// `algorithm`, if given (we offer only `MD5`).
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
fn split_auth_params(s: &str) -> Vec<(String, String)> {
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

/// The expected `response` (RFC 2617 §3.2.2.1): with `qop=auth`,
/// `MD5(HA1:nonce:nc:cnonce:qop:HA2)`; without qop (RFC 2069),
/// `MD5(HA1:nonce:HA2)`; HA2 = `MD5(method:uri)`.
pub fn expected_response(ha1: &str, method: &str, c: &Credentials) -> String {
    let ha2 = md5_hex(&format!("{method}:{}", c.uri));
    match (&c.qop, &c.cnonce, &c.nc) {
        (Some(q), Some(cn), Some(nc)) => md5_hex(&format!("{ha1}:{}:{nc}:{cn}:{q}:{ha2}", c.nonce)),
        _ => md5_hex(&format!("{ha1}:{}:{ha2}", c.nonce)),
    }
}

/// Issues and checks stateless nonces.
#[derive(Debug, Clone)]
pub struct NonceSource {
    secret: [u8; 16],
    epoch: Instant,
    ttl: Duration,
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

impl NonceSource {
    /// A source with a fresh random secret; `epoch` is the zero of the
    /// nonce timestamps, `ttl` the validity.
    pub fn new(epoch: Instant, ttl: Duration) -> NonceSource {
        NonceSource {
            secret: rand::random(),
            epoch,
            ttl,
        }
    }

    fn mac(&self, ts: &str, realm: &str) -> String {
        let mut h = Md5::new();
        h.update(self.secret);
        h.update(b":");
        h.update(ts.as_bytes());
        h.update(b":");
        h.update(realm.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A nonce for `realm` issued at `now`.
    pub fn issue(&self, realm: &str, now: Instant) -> String {
        let secs = now.saturating_duration_since(self.epoch).as_secs() as u32;
        let ts = format!("{secs:08x}");
        let mac = self.mac(&ts, realm);
        format!("{ts}{mac}")
    }

    /// Checks a nonce presented at `now`.
    pub fn check(&self, nonce: &str, realm: &str, now: Instant) -> NonceCheck {
        if nonce.len() != 40 || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (ts, mac) = nonce.split_at(8);
        if self.mac(ts, realm) != mac.to_ascii_lowercase() {
            return NonceCheck::Invalid;
        }
        let Ok(secs) = u32::from_str_radix(ts, 16) else {
            return NonceCheck::Invalid;
        };
        let issued = self.epoch + Duration::from_secs(u64::from(secs));
        match now.checked_duration_since(issued) {
            Some(age) if age <= self.ttl => NonceCheck::Valid,
            Some(_) => NonceCheck::Stale,
            // Issued "in the future": cannot be ours.
            None => NonceCheck::Invalid,
        }
    }

    /// A `WWW-Authenticate`/`Proxy-Authenticate` value (RFC 2617 §3.2.1).
    pub fn challenge(&self, realm: &str, now: Instant, stale: bool) -> String {
        let nonce = self.issue(realm, now);
        let stale = if stale { ", stale=true" } else { "" };
        format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}")
    }
}

/// Result of verifying credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    Ok(String),
    /// No usable credentials for our realm: challenge.
    Challenge,
    /// Correct response over an expired nonce: challenge with `stale=true`.
    Stale,
    /// Credentials for our realm that are wrong (unknown user, bad
    /// response or foreign nonce): 403.
    Forbidden,
}

/// Verifies the credentials headers `values` of a request with `method`
/// against the HA1 table (`lookup(username) -> Some(ha1)`).
pub fn verify<'a>(
    values: impl Iterator<Item = &'a str>,
    method: &str,
    realm: &str,
    nonces: &NonceSource,
    now: Instant,
    lookup: impl Fn(&str) -> Option<String>,
) -> Verdict {
    for v in values {
        let Some(c) = parse_credentials(v) else {
            continue;
        };
        if c.realm != realm {
            continue;
        }
        if let Some(a) = &c.algorithm {
            if !a.eq_ignore_ascii_case("MD5") {
                // We only offered MD5.
                return Verdict::Challenge;
            }
        }
        if let Some(q) = &c.qop {
            if !q.eq_ignore_ascii_case("auth") {
                return Verdict::Challenge;
            }
        }
        let Some(ha1) = lookup(&c.username) else {
            return Verdict::Forbidden;
        };
        let ok = expected_response(&ha1, method, &c).eq_ignore_ascii_case(&c.response);
        return match (nonces.check(&c.nonce, realm, now), ok) {
            (NonceCheck::Invalid, _) => Verdict::Challenge,
            (_, false) => Verdict::Forbidden,
            (NonceCheck::Stale, true) => Verdict::Stale,
            (NonceCheck::Valid, true) => Verdict::Ok(c.username),
        };
    }
    Verdict::Challenge
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let other = NonceSource::new(t0, Duration::from_secs(30));
        assert_eq!(
            other.check(&n, "tern", t0 + Duration::from_secs(6)),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn verify_round_trip() {
        let t0 = Instant::now();
        let ns = NonceSource::new(t0, Duration::from_secs(30));
        let nonce = ns.issue("tern", t0);
        let ha1 = md5_hex("bob:tern:pw");
        let mut c = Credentials {
            username: "bob".into(),
            realm: "tern".into(),
            nonce,
            uri: "sip:tern".into(),
            cnonce: Some("xyz".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            ..Default::default()
        };
        c.response = expected_response(&ha1, "REGISTER", &c);
        let hdr = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm=MD5, cnonce=\"xyz\", qop=auth, nc=00000001",
            c.username, c.realm, c.nonce, c.uri, c.response
        );
        let look = |u: &str| (u == "bob").then(|| ha1.clone());
        assert_eq!(
            verify(
                [hdr.as_str()].into_iter(),
                "REGISTER",
                "tern",
                &ns,
                t0,
                look
            ),
            Verdict::Ok("bob".into())
        );
        assert_eq!(
            verify([hdr.as_str()].into_iter(), "INVITE", "tern", &ns, t0, look),
            Verdict::Forbidden
        );
        assert_eq!(
            verify(std::iter::empty(), "REGISTER", "tern", &ns, t0, look),
            Verdict::Challenge
        );
        assert_eq!(
            verify(
                [hdr.as_str()].into_iter(),
                "REGISTER",
                "tern",
                &ns,
                t0 + Duration::from_secs(100),
                look
            ),
            Verdict::Stale
        );
    }
}
