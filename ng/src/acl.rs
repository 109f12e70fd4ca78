//! Who may talk to the ng control socket.
//!
//! The ng protocol has no authentication, so only loopback sources are
//! accepted unless more are listed (`--ng-allow CIDR`). Datagrams from any
//! other source are dropped without a reply (a reply would make the socket
//! an amplifier and tells a scanner it exists) and counted in
//! [`NgStats::dropped_unauthorized`](super::NgStats); TCP connections from
//! them are closed at once and counted the same way.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a
/// host: `/32` or `/128`). IPv4-mapped IPv6 sources match IPv4 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block of `addr` with `prefix` leading bits.
    ///
    /// Errors: a prefix longer than the address (32 or 128 bits).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max} bits"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `ADDR` or `ADDR/PREFIX`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|e| format!("{s:?}: bad address ({e}); expected ADDR or ADDR/PREFIX"))?;
        let addr = canonical(addr);
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .map_err(|e| format!("{s:?}: bad prefix length ({e})"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Cidr::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback sources plus the configured blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    allow: Vec<Cidr>,
}

impl Acl {
    /// Loopback and `allow`.
    pub fn new(allow: Vec<Cidr>) -> Acl {
        Acl { allow }
    }

    /// Whether a message from `ip` is served.
    pub fn permits(&self, ip: IpAddr) -> bool {
        canonical(ip).is_loopback() || self.allow.iter().any(|c| c.contains(ip))
    }

    /// The configured blocks (loopback is always allowed besides them).
    pub fn blocks(&self) -> &[Cidr] {
        &self.allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("2001:db8::1")));
        let h: Cidr = "192.0.2.7".parse().unwrap();
        assert!(h.contains(ip("192.0.2.7")) && !h.contains(ip("192.0.2.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert_eq!(c.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn loopback_always_allowed_others_only_when_listed() {
        let acl = Acl::default();
        assert!(acl.permits(ip("127.0.0.1")) && acl.permits(ip("127.9.9.9")));
        assert!(acl.permits(ip("::1")) && acl.permits(ip("::ffff:127.0.0.1")));
        assert!(!acl.permits(ip("192.0.2.1")));
        let acl = Acl::new(vec!["192.0.2.0/24".parse().unwrap()]);
        assert!(acl.permits(ip("192.0.2.1")) && !acl.permits(ip("198.51.100.1")));
    }
}
