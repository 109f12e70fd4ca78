//! The client side of SIP digest authentication (RFC 3261 §22.4 with
//! RFC 7616 `qop=auth`; MD5 and SHA-256 per RFC 8760): read a
//! `WWW-Authenticate`/`Proxy-Authenticate` challenge, answer it with an
//! `Authorization`/`Proxy-Authorization` value, and count nonce uses
//! (`nc`) so that one challenge can authenticate many requests.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm the generator can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Md5,
    Sha256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Md5 => "MD5",
            Alg::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of the hash of `s`.
    pub fn hex(self, s: &str) -> String {
        match self {
            Alg::Md5 => hex(&Md5::digest(s.as_bytes())),
            Alg::Sha256 => hex(&Sha256::digest(s.as_bytes())),
        }
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// One challenge, and how many requests its nonce has authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub alg: Alg,
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// The server offered `qop=auth` (else RFC 2069 style: no nc/cnonce).
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, the nonce was not.
    pub stale: bool,
    /// Nonce-count of the last response computed with this nonce.
    pub nc: u32,
}

/// The value of `key` in a comma-separated `k=v` / `k="v"` list.
fn param<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    // Split on commas outside quotes.
    let mut start = 0;
    let mut quoted = false;
    let b = list.as_bytes();
    let mut i = 0;
    // Bounded by the string's length.
    while i <= b.len() {
        let at_end = i == b.len();
        if !at_end && b[i] == b'"' {
            quoted = !quoted;
        }
        if at_end || (b[i] == b',' && !quoted) {
            let item = list[start..i].trim();
            if let Some((k, v)) = item.split_once('=') {
                if k.trim().eq_ignore_ascii_case(key) {
                    let v = v.trim();
                    return Some(
                        v.strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or(v),
                    );
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    None
}

impl Challenge {
    /// Reads one challenge header value; `None` when it is not a Digest
    /// challenge with a realm and nonce in an algorithm we answer (MD5 when
    /// absent, RFC 2617 §3.2.1), or offers a `qop` without `auth`.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let alg = match param(rest, "algorithm") {
            None => Alg::Md5,
            Some(a) if a.eq_ignore_ascii_case("MD5") => Alg::Md5,
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Alg::Sha256,
            Some(_) => return None,
        };
        let qop_auth = match param(rest, "qop") {
            None => false,
            Some(q) => {
                if !q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                    return None;
                }
                true
            }
        };
        Some(Challenge {
            alg,
            realm: param(rest, "realm")?.to_string(),
            nonce: param(rest, "nonce")?.to_string(),
            opaque: param(rest, "opaque").map(str::to_string),
            qop_auth,
            stale: param(rest, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            nc: 0,
        })
    }

    /// The first challenge among `values` in `prefer`, else the first we
    /// can answer at all.
    pub fn pick<'a>(values: impl Iterator<Item = &'a str>, prefer: Alg) -> Option<Challenge> {
        let all: Vec<Challenge> = values.filter_map(Challenge::parse).take(8).collect();
        let i = all.iter().position(|c| c.alg == prefer).unwrap_or(0);
        all.into_iter().nth(i)
    }

    /// The credentials for `method uri` as `user`/`password`, using the
    /// next nonce-count (RFC 7616 §3.4: `nc` counts up per nonce, the
    /// server refuses a count it has seen).
    pub fn answer(&mut self, user: &str, password: &str, method: &str, uri: &str) -> String {
        self.nc = self.nc.wrapping_add(1);
        let a = self.alg;
        let ha1 = a.hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = a.hex(&format!("{method}:{uri}"));
        let mut v = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
            self.realm,
            self.nonce,
            a.name()
        );
        if self.qop_auth {
            let nc = format!("{:08x}", self.nc);
            let cnonce = format!("{:08x}{:08x}", rand::random::<u32>(), self.nc);
            let resp = a.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
            v.push_str(&format!(
                ", response=\"{resp}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
            ));
        } else {
            let resp = a.hex(&format!("{ha1}:{}:{ha2}", self.nonce));
            v.push_str(&format!(", response=\"{resp}\""));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{o}\""));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges_and_prefers_the_asked_algorithm() {
        let md5 = "Digest realm=\"tern\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
        let sha = "Digest realm=\"tern\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth,auth-int\", stale=true, opaque=\"o,1\"";
        let c = Challenge::pick([md5, sha].into_iter(), Alg::Sha256).unwrap();
        assert_eq!(c.alg, Alg::Sha256);
        assert!(c.stale && c.qop_auth);
        assert_eq!(c.opaque.as_deref(), Some("o,1"));
        let c = Challenge::pick([md5, sha].into_iter(), Alg::Md5).unwrap();
        assert_eq!((c.alg, c.stale), (Alg::Md5, false));
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512").is_none());
        assert!(Challenge::parse("Digest realm=\"x\"").is_none());
        assert!(Challenge::parse("Digest nonce=\"x\", qop=\"auth-int\", realm=r").is_none());
        assert!(Challenge::pick(["garbage", ""].into_iter(), Alg::Md5).is_none());
    }

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5 (HTTP method GET), with its cnonce replaced by ours:
        // check the structure by recomputing it.
        let mut c = Challenge {
            alg: Alg::Md5,
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            opaque: None,
            qop_auth: true,
            stale: false,
            nc: 0,
        };
        let v = c.answer("Mufasa", "Circle Of Life", "GET", "/dir/index.html");
        assert_eq!(c.nc, 1);
        assert!(v.contains("nc=00000001"), "{v}");
        let cnonce = param(v.strip_prefix("Digest ").unwrap(), "cnonce").unwrap();
        let ha1 = Alg::Md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = Alg::Md5.hex("GET:/dir/index.html");
        let want = Alg::Md5.hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:{cnonce}:auth:{ha2}"
        ));
        assert_eq!(param(&v[7..], "response"), Some(want.as_str()));
        // With RFC 2617's own cnonce the response is the RFC's.
        let rfc = Alg::Md5.hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        assert_eq!(rfc, "6629fae49393a05397450978507c4ef1");
    }
}
