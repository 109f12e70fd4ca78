//! Named local interfaces in rtpengine's `--interface` syntax:
//! `NAME/IP[!ADVERTISED]`, or `IP[!ADVERTISED]` for the interface named
//! `default`. A name may be given twice, once with an IPv4 and once with
//! an IPv6 address: ng picks the address of the family a leg needs.
//!
//! Both the command line (`tern relay --interface`) and the config file
//! (`[[media.interfaces]]`) produce [`InterfaceSpec`]s; the list is
//! checked as a whole by [`validate`] and written into the slot table
//! ([`crate::table::SlotTable::set_interfaces`]) in its order, which is
//! the order of the indices legs carry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::table::{LocalInterface, MAX_INTERFACES};

/// The name an interface given without one gets (rtpengine's).
pub const DEFAULT_NAME: &str = "default";

/// One `--interface`: a name, the address to bind, the address SDP says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Logical name (`direction`, `from-interface`, `to-interface`).
    pub name: String,
    /// Where the relay's ports are bound.
    pub ip: IpAddr,
    /// Written into SDP instead of `ip` (behind a 1:1 NAT).
    pub advertised: Option<IpAddr>,
}

impl InterfaceSpec {
    /// The address written into SDP.
    pub fn sdp_ip(&self) -> IpAddr {
        self.advertised.unwrap_or(self.ip)
    }

    /// The table's form of it.
    pub fn local(&self) -> LocalInterface {
        LocalInterface {
            ip: self.ip,
            advertised: self.sdp_ip(),
        }
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.ip)?;
        if let Some(a) = self.advertised {
            write!(f, "!{a}")?;
        }
        Ok(())
    }
}

/// Whether `name` is a usable interface name: 1..=32 bytes of letters,
/// digits, `-`, `_`, `.` or `:` (rtpengine's `BASE:SUFFIX` form).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    let ip: IpAddr = t
        .parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 or IPv6 address"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{what} {s:?}: an interface needs a unicast address (not 0.0.0.0, :: or multicast)"
        ));
    }
    Ok(ip)
}

impl InterfaceSpec {
    /// Builds one from the config file's `name`, `address`, `advertised`.
    ///
    /// Errors: a bad name or address, as text naming it.
    pub fn new(name: &str, address: &str, advertised: Option<&str>) -> Result<Self, String> {
        if !valid_name(name) {
            return Err(format!(
                "interface name {name:?}: use 1..=32 letters, digits, '-', '_', '.' or ':'"
            ));
        }
        let ip = parse_ip(address, "address")?;
        let advertised = advertised
            .map(|a| parse_ip(a, "advertised address"))
            .transpose()?;
        Ok(InterfaceSpec {
            name: name.to_string(),
            ip,
            advertised,
        })
    }
}

impl FromStr for InterfaceSpec {
    type Err = String;

    /// `NAME/IP[!ADVERTISED]` or `IP[!ADVERTISED]` (named `default`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // An IPv6 address has no '/', so the first one ends the name.
        let (name, rest) = match s.split_once('/') {
            Some((n, r)) => (n, r),
            None => (DEFAULT_NAME, s),
        };
        let (ip, adv) = match rest.split_once('!') {
            Some((ip, a)) => (ip, Some(a)),
            None => (rest, None),
        };
        if rest.is_empty() || adv.is_some_and(str::is_empty) {
            return Err(format!(
                "interface {s:?}: expected NAME/IP[!ADVERTISED], e.g. pub/10.0.0.1!203.0.113.7"
            ));
        }
        InterfaceSpec::new(name, ip, adv).map_err(|e| format!("interface {s:?}: {e}"))
    }
}

/// Checks a whole list: at most [`MAX_INTERFACES`] entries, each address
/// once (every one binds the whole port range), and per name at most one
/// IPv4 and one IPv6 address (a leg's family picks between them; several
/// of one family would be rtpengine's round robin, which tern does not
/// do).
///
/// Errors: what is wrong, naming the entry.
pub fn validate(list: &[InterfaceSpec]) -> Result<(), String> {
    if list.len() > MAX_INTERFACES {
        return Err(format!(
            "{} interfaces: at most {MAX_INTERFACES}",
            list.len()
        ));
    }
    for (i, a) in list.iter().enumerate() {
        for b in &list[..i] {
            if a.ip == b.ip {
                return Err(format!("interface {a}: address {} given twice", a.ip));
            }
            if a.name == b.name && a.ip.is_ipv4() == b.ip.is_ipv4() {
                let fam = if a.ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(format!(
                    "interface {a}: {:?} already has an {fam} address ({}); one per family \
                     (round robin over several is not supported)",
                    a.name, b.ip
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_rtpengine_forms() {
        let p: InterfaceSpec = "priv/127.0.0.2".parse().unwrap();
        assert_eq!(
            p,
            InterfaceSpec {
                name: "priv".into(),
                ip: ip("127.0.0.2"),
                advertised: None
            }
        );
        assert_eq!(p.sdp_ip(), ip("127.0.0.2"));
        let q: InterfaceSpec = "pub/127.0.0.3!203.0.113.7".parse().unwrap();
        assert_eq!(
            (q.ip, q.advertised),
            (ip("127.0.0.3"), Some(ip("203.0.113.7")))
        );
        assert_eq!(q.sdp_ip(), ip("203.0.113.7"));
        assert_eq!(q.to_string(), "pub/127.0.0.3!203.0.113.7");
        let v6: InterfaceSpec = "v6/::1".parse().unwrap();
        assert_eq!((v6.name.as_str(), v6.ip), ("v6", ip("::1")));
        let br: InterfaceSpec = "v6/[2001:db8::1]![2001:db8::2]".parse().unwrap();
        assert_eq!(
            (br.ip, br.advertised),
            (ip("2001:db8::1"), Some(ip("2001:db8::2")))
        );
        // No name: rtpengine's `default`.
        let d: InterfaceSpec = "10.0.0.1!192.0.2.1".parse().unwrap();
        assert_eq!(d.name, DEFAULT_NAME);
        assert_eq!(d.local().advertised, ip("192.0.2.1"));
        let n: InterfaceSpec = "ext:1/10.0.0.2".parse().unwrap();
        assert_eq!(n.name, "ext:1");
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            "",
            "pub/",
            "pub/!1.2.3.4",
            "pub/1.2.3.4!",
            "pub/1.2.3",
            "pub/example.com",
            "/1.2.3.4",
            "p ub/1.2.3.4",
            "pub/0.0.0.0",
            "pub/::",
            "pub/1.2.3.4!0.0.0.0",
            "pub/224.0.0.1",
            "pub/1.2.3.4!nat",
            "pub/1.2.3.4/24",
        ] {
            let e = bad.parse::<InterfaceSpec>();
            assert!(e.is_err(), "{bad:?} parsed as {e:?}");
            assert!(e.unwrap_err().contains("interface"), "{bad:?}");
        }
        let long = format!("{}/1.2.3.4", "x".repeat(33));
        assert!(long.parse::<InterfaceSpec>().is_err());
    }

    #[test]
    fn validates_lists() {
        let l = |specs: &[&str]| -> Vec<InterfaceSpec> {
            specs.iter().map(|s| s.parse().unwrap()).collect()
        };
        assert!(validate(&l(&[
            "priv/127.0.0.2",
            "pub/127.0.0.3!203.0.113.7",
            "v6/::1"
        ]))
        .is_ok());
        // One v4 and one v6 under one name: fine.
        assert!(validate(&l(&["pub/10.0.0.1", "pub/2001:db8::1"])).is_ok());
        let e = validate(&l(&["pub/10.0.0.1", "pub/10.0.0.2"])).unwrap_err();
        assert!(e.contains("IPv4") && e.contains("round robin"), "{e}");
        let e = validate(&l(&["a/10.0.0.1", "b/10.0.0.1"])).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let many: Vec<InterfaceSpec> = (0..=MAX_INTERFACES)
            .map(|i| format!("i{i}/10.0.0.{}", i + 1).parse().unwrap())
            .collect();
        assert!(validate(&many).unwrap_err().contains("at most"));
        assert!(validate(&many[..MAX_INTERFACES]).is_ok());
        assert!(validate(&[]).is_ok());
    }
}
