//! The overload and abuse guard in front of the core: source address
//! lists and a per-source-IP token bucket on requests. Sans-IO: the
//! transport loop hands in the source IP, the message bytes and `now`,
//! and does what the [`Admit`] verdict says.
//!
//! # Policy
//!
//! - **Address lists** (`[sip] allow`, `deny`: CIDR prefixes, IPv4 and
//!   IPv6). A source in `deny` is refused; with `allow` non-empty, a
//!   source in none of its prefixes is refused too; deny wins over allow.
//!   Refused messages are dropped silently (responses included: nothing
//!   from such a source is processed), and stream connections from such
//!   a source are closed at accept. Counted in
//!   [`crate::TransportStats::guard_denied`].
//! - **Rate** (`[sip] rate_limit` requests/s and `rate_burst` per source
//!   IP; `rate_limit = 0` disables): each source has a bucket of
//!   `rate_burst` tokens refilled at `rate_limit` per second; a request
//!   takes one. A request finding the bucket empty is over the limit:
//!   over UDP it is **dropped silently** (answering a flood, possibly from
//!   spoofed addresses, would amplify it; the sender's retransmissions
//!   try again later); over a stream (TCP, TLS, WS, WSS: the address is
//!   proven by the handshake) it is **answered 503 with `Retry-After`**
//!   (RFC 3261 §21.5.4; an ACK is never answered). Counted in
//!   [`crate::TransportStats::guard_rate_limited`].
//! - **Never limited**: responses, and requests whose Call-ID names a
//!   dialog of a call the B2BUA holds (BYE, re-INVITE, ACK, CANCEL,
//!   retransmissions of an INVITE in progress), so a flood from one
//!   source cannot starve calls in progress. A To tag alone does not
//!   exempt a request: a flooder could add one.
//! - **Bounded memory**: at most [`MAX_SOURCES`] sources have a bucket
//!   (about 3 MiB); when a new source arrives with the table full, the
//!   source tracked longest is forgotten (oldest first, FIFO). A forgotten
//!   source starts again with a full bucket, so an attacker rotating
//!   through more than that many addresses gets a burst per address per
//!   cycle — the bound on memory is the price.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Instant;

/// Most sources whose bucket is tracked at once; see the module docs.
pub const MAX_SOURCES: usize = 65_536;

/// An IPv4 or IPv6 prefix, `10.0.0.0/8`, `2001:db8::/32` (a bare address
/// is a host prefix, /32 or /128). Host bits set under the mask are
/// ignored (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A prefix that does not parse: the text as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCidr(pub String);

impl fmt::Display for BadCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an address or prefix (e.g. \"10.0.0.0/8\", \"2001:db8::/32\")",
            self.0
        )
    }
}

impl std::error::Error for BadCidr {}

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Cidr, BadCidr> {
        let bad = || BadCidr(s.to_string());
        let t = s.trim();
        let (ip, len) = match t.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (t, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in this prefix. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`, from a dual-stack socket) matches as its IPv4
    /// address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses a `[sip] allow`/`deny` list; the error names the entry.
pub fn parse_cidrs(list: &[String]) -> Result<Vec<Cidr>, BadCidr> {
    list.iter().map(|s| s.parse()).collect()
}

/// Settings of the guard (the `[sip]` keys `rate_limit`, `rate_burst`,
/// `allow`, `deny`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Requests per second each source IP may send; 0: no limit.
    pub rate_limit: u32,
    /// Requests a source may send at once, beyond the rate (the bucket
    /// size; at least 1 when the limit is on).
    pub rate_burst: u32,
    /// Non-empty: only sources in one of these are served.
    pub allow: Vec<Cidr>,
    /// Sources never served (wins over `allow`).
    pub deny: Vec<Cidr>,
    /// Most sources tracked ([`MAX_SOURCES`]).
    pub max_sources: usize,
}

impl Default for GuardConfig {
    /// Off: no rate limit (tern often sits behind a proxy that sends
    /// everything from one address), no lists.
    fn default() -> Self {
        GuardConfig {
            rate_limit: 0,
            rate_burst: 0,
            allow: Vec::new(),
            deny: Vec::new(),
            max_sources: MAX_SOURCES,
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Hand it to the core.
    Pass,
    /// A request over its source's rate: drop it (UDP) or answer 503
    /// (streams).
    Limited,
    /// From a refused source: drop it.
    Denied,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The guard: address lists and per-source buckets.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    buckets: HashMap<IpAddr, Bucket>,
    /// Sources in the order they were first tracked (oldest first); the
    /// same set as `buckets`' keys.
    order: VecDeque<IpAddr>,
}

impl Guard {
    /// A guard applying `cfg`.
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            cfg,
            buckets: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Sources tracked now (at most [`GuardConfig::max_sources`]).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Whether `ip` may be served at all (the address lists).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        if self.cfg.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.cfg.allow.is_empty() || self.cfg.allow.iter().any(|c| c.contains(ip))
    }

    /// The verdict on `data` (one message) from `ip` at `now`.
    /// `known_call` says whether a Call-ID names a call in progress
    /// (such requests are never limited; nor are responses).
    pub fn check(
        &mut self,
        ip: IpAddr,
        data: &[u8],
        known_call: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Admit {
        if !self.allowed(ip) {
            return Admit::Denied;
        }
        if self.cfg.rate_limit == 0 || data.starts_with(b"SIP/2.0 ") {
            return Admit::Pass;
        }
        if call_id(data).is_some_and(known_call) {
            return Admit::Pass;
        }
        if self.take(ip, now) {
            Admit::Pass
        } else {
            Admit::Limited
        }
    }

    /// Takes a token from `ip`'s bucket at `now`; false when empty.
    fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.cfg.rate_limit);
        let burst = f64::from(self.cfg.rate_burst.max(1));
        let b = match self.buckets.get_mut(&ip) {
            Some(b) => b,
            None => {
                while self.buckets.len() >= self.cfg.max_sources.max(1) {
                    match self.order.pop_front() {
                        Some(old) => {
                            self.buckets.remove(&old);
                        }
                        None => break,
                    }
                }
                self.order.push_back(ip);
                self.buckets.entry(ip).or_insert(Bucket {
                    tokens: burst,
                    last: now,
                })
            }
        };
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * rate).min(burst);
        b.last = b.last.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The Call-ID of a message (`Call-ID:` or the compact `i:`), read from
/// its header lines without a full parse; `None` if it has none.
pub fn call_id(data: &[u8]) -> Option<&str> {
    // Bounded: the lines of one message, up to its blank line.
    for line in data.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return std::str::from_utf8(line[colon + 1..].trim_ascii())
                .ok()
                .filter(|v| !v.is_empty());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limited(rate: u32, burst: u32) -> Guard {
        Guard::new(GuardConfig {
            rate_limit: rate,
            rate_burst: burst,
            ..GuardConfig::default()
        })
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:tern SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1\r\nCall-ID: flood-1\r\nCSeq: 1 OPTIONS\r\n\r\n";

    fn passes(g: &mut Guard, from: &str, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| g.check(ip(from), OPTIONS, |_| false, now) == Admit::Pass)
            .count()
    }

    #[test]
    fn burst_then_refill_on_a_virtual_clock() {
        let mut g = limited(200, 400);
        let t0 = Instant::now();
        assert_eq!(passes(&mut g, "192.0.2.1", 1000, t0), 400);
        // 100 ms: 20 tokens back.
        assert_eq!(
            passes(&mut g, "192.0.2.1", 100, t0 + Duration::from_millis(100)),
            20
        );
        // A long pause refills only up to the burst.
        assert_eq!(
            passes(&mut g, "192.0.2.1", 1000, t0 + Duration::from_secs(60)),
            400
        );
        // Another source has its own bucket.
        assert_eq!(passes(&mut g, "192.0.2.2", 500, t0), 400);
        // A steady 1,000/s for 5 s from one source passes rate·t + burst.
        let mut g = limited(200, 400);
        let ok = (0..5000)
            .filter(|i| {
                let now = t0 + Duration::from_millis(*i);
                g.check(ip("192.0.2.9"), OPTIONS, |_| false, now) == Admit::Pass
            })
            .count();
        assert!((1399..=1401).contains(&ok), "{ok}");
    }

    #[test]
    fn responses_and_known_calls_are_never_limited_and_zero_disables() {
        let mut g = limited(1, 1);
        let now = Instant::now();
        assert_eq!(passes(&mut g, "192.0.2.1", 10, now), 1);
        let resp = b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n";
        assert_eq!(g.check(ip("192.0.2.1"), resp, |_| false, now), Admit::Pass);
        let bye = b"BYE sip:a SIP/2.0\r\ni: call-7\r\nTo: <sip:b>;tag=1\r\n\r\n";
        assert_eq!(
            g.check(ip("192.0.2.1"), bye, |c| c == "call-7", now),
            Admit::Pass
        );
        // A To tag alone is not enough.
        assert_eq!(
            g.check(ip("192.0.2.1"), bye, |_| false, now),
            Admit::Limited
        );
        let mut off = limited(0, 0);
        assert_eq!(passes(&mut off, "192.0.2.1", 10_000, now), 10_000);
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn tracked_sources_are_bounded_oldest_evicted() {
        let mut g = Guard::new(GuardConfig {
            rate_limit: 1,
            rate_burst: 1,
            max_sources: 100,
            ..GuardConfig::default()
        });
        let now = Instant::now();
        assert_eq!(passes(&mut g, "10.0.0.1", 5, now), 1);
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000u32 + i));
            g.check(a, OPTIONS, |_| false, now);
            assert!(g.tracked() <= 100);
        }
        assert_eq!(g.tracked(), 100);
        // 10.0.0.1 was the oldest: forgotten, it starts with a full bucket.
        assert_eq!(passes(&mut g, "10.0.0.1", 5, now), 1);
        // The newest is still tracked (its bucket is empty).
        assert_eq!(
            g.check(
                IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000u32 + 999)),
                OPTIONS,
                |_| false,
                now
            ),
            Admit::Limited
        );
    }

    #[test]
    fn cidr_parse_and_match_v4_v6() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("2001:db8::1")));
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(c.contains(ip("10.9.9.9")));
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!("::1/128".parse::<Cidr>().unwrap().contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(BadCidr(bad.to_string())), "{bad}");
        }
        let e = parse_cidrs(&["10.0.0.0/8".into(), "nope/3".into()]).unwrap_err();
        assert!(e.to_string().contains("\"nope/3\""), "{e}");
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let cidrs = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<Cidr>>();
        let mut g = Guard::new(GuardConfig {
            allow: cidrs(&["10.0.0.0/8", "2001:db8::/32"]),
            deny: cidrs(&["10.6.6.0/24"]),
            ..GuardConfig::default()
        });
        let now = Instant::now();
        let v = |g: &mut Guard, a: &str| g.check(ip(a), OPTIONS, |_| false, now);
        assert_eq!(v(&mut g, "10.1.1.1"), Admit::Pass);
        assert_eq!(v(&mut g, "2001:db8::5"), Admit::Pass);
        assert_eq!(v(&mut g, "10.6.6.6"), Admit::Denied);
        assert_eq!(v(&mut g, "192.0.2.1"), Admit::Denied);
        // Responses from a refused source are dropped too.
        assert_eq!(
            g.check(ip("10.6.6.6"), b"SIP/2.0 200 OK\r\n\r\n", |_| true, now),
            Admit::Denied
        );
        // Deny alone: everyone else is served.
        let mut g = Guard::new(GuardConfig {
            deny: cidrs(&["::/0"]),
            ..GuardConfig::default()
        });
        assert_eq!(v(&mut g, "2001:db8::5"), Admit::Denied);
        assert_eq!(v(&mut g, "192.0.2.1"), Admit::Pass);
    }

    #[test]
    fn call_id_is_read_without_a_parse() {
        assert_eq!(call_id(OPTIONS), Some("flood-1"));
        assert_eq!(
            call_id(b"BYE x SIP/2.0\r\nCALL-ID :  a@b \r\n\r\n"),
            Some("a@b")
        );
        assert_eq!(
            call_id(b"BYE x SIP/2.0\r\nTo: x\r\n\r\nCall-ID: body\r\n"),
            None
        );
        assert_eq!(call_id(b"\r\n\r\n"), None);
        assert_eq!(call_id(b"BYE x SIP/2.0\r\nCall-ID:\r\n\r\n"), None);
    }

    #[test]
    fn sip_table_guard_keys() {
        use crate::config::{Config, ConfigError};
        let listen = "127.0.0.1:5060".parse().unwrap();
        let g = |text: &str| Config::from_toml(listen, text).map(|c| c.transport.guard);
        assert_eq!(g("").unwrap(), GuardConfig::default());
        let c = g("[sip]\nrate_limit = 200\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ndeny = [\"10.6.6.6\"]\n").unwrap();
        assert_eq!((c.rate_limit, c.rate_burst), (200, 400));
        assert_eq!(c.allow.len(), 2);
        assert_eq!(c.deny, vec!["10.6.6.6/32".parse().unwrap()]);
        let c = g("[sip]\nrate_limit = 5\nrate_burst = 0\n").unwrap();
        assert_eq!((c.rate_limit, c.rate_burst), (5, 1));
        for (text, key) in [
            ("[sip]\nallow = [\"10.0.0.0/33\"]\n", "[sip] allow"),
            ("[sip]\ndeny = [\"10.0.0.0/8\", \"evil\"]\n", "[sip] deny"),
        ] {
            match g(text) {
                Err(ConfigError::Refused(m)) => assert!(m.starts_with(key), "{m}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        match g("[sip]\nrate_limt = 1\n") {
            Err(ConfigError::UnknownKey { key, .. }) => assert_eq!(key, "rate_limt"),
            other => panic!("{other:?}"),
        }
    }
}
