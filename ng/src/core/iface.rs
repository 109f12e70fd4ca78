//! Which local interface each leg of a media section is on: rtpengine's
//! `direction` (`from-interface`, `to-interface`) names, `address family`
//! and the family of the sender's own address, over the relay's
//! interface list (the table's, named by [`super::CoreConfig::interfaces`]).
//!
//! As rtpengine (`call.c:__init_interface`): the sender's leg takes the
//! family of the address its SDP gives, the recipient's the `address
//! family` asked for, else the sender's when it has none yet; a leg keeps
//! its interface across messages unless one names another. A name with no
//! address of the wanted family gives way to the first interface of that
//! family (with a warning); `internal` and `external`, when no interface
//! has that name, select IPv4 and IPv6 (rtpengine's legacy form). Unlike
//! rtpengine, which logs `Interface 'X' not found, using default` and goes
//! on, an unknown name is an error: a typo would otherwise put a call on
//! the wrong network.

use std::net::IpAddr;

use crate::error::CommandError;

/// An address family: true for IPv4.
pub(crate) type V4 = bool;

/// One interface as ng sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Iface {
    pub(crate) name: String,
    /// What SDP says for its ports.
    pub(crate) sdp_ip: IpAddr,
}

impl Iface {
    fn v4(&self) -> V4 {
        self.sdp_ip.is_ipv4()
    }
}

/// The relay's interfaces, index = `LegConfig::iface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ifaces(pub(crate) Vec<Iface>);

/// What one leg's choice starts from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Want<'a> {
    /// A name from the message.
    pub(crate) name: Option<&'a str>,
    /// The family the leg must have (`address family`, or the sender's
    /// own address): another name's address of it beats the name.
    pub(crate) family: Option<V4>,
    /// The family the leg should have if its name has an address of it
    /// (the recipient's default: the sender's family).
    pub(crate) prefer: Option<V4>,
    /// The leg's interface so far, when it has one.
    pub(crate) current: Option<u8>,
}

fn fam_name(v4: V4) -> &'static str {
    if v4 {
        "IP4"
    } else {
        "IP6"
    }
}

impl Ifaces {
    /// The address SDP says for interface `i` (the first for one past
    /// the list).
    pub(crate) fn sdp_ip(&self, i: u8) -> IpAddr {
        self.0
            .get(usize::from(i))
            .or(self.0.first())
            .map_or(IpAddr::from([127, 0, 0, 1]), |f| f.sdp_ip)
    }

    fn find(&self, pred: impl Fn(&Iface) -> bool) -> Option<u8> {
        self.0.iter().position(pred).map(|i| i as u8)
    }

    /// Checks that `name` is an interface's (or a legacy selector).
    ///
    /// Errors: [`CommandError::UnknownInterface`].
    pub(crate) fn check(&self, name: &str) -> Result<(), CommandError> {
        let want = Want {
            name: Some(name),
            ..Want::default()
        };
        self.choose(want, &mut crate::keys::Warnings::default())
            .map(drop)
    }

    /// The interface for one leg.
    ///
    /// Errors: [`CommandError::UnknownInterface`] for a name that is none
    /// of the interfaces' (nor `internal`/`external`/`round-robin-calls`).
    pub(crate) fn choose(
        &self,
        want: Want<'_>,
        warnings: &mut crate::keys::Warnings,
    ) -> Result<u8, CommandError> {
        let mut family = want.family;
        let mut name = want.name.filter(|n| !n.is_empty());
        if let Some(n) = name {
            if !self.0.iter().any(|i| i.name == n) {
                match n {
                    "internal" => family = Some(true),
                    "external" => family = Some(false),
                    "round-robin-calls" => warnings.push(
                        "direction 'round-robin-calls' not supported: default interface".into(),
                    ),
                    _ => return Err(CommandError::UnknownInterface(n.to_string())),
                }
                name = None;
            }
        }
        let current = want.current.filter(|&c| usize::from(c) < self.0.len());
        // The name to look under: the message's, else the leg's so far.
        let base = name.or_else(|| current.map(|c| self.0[usize::from(c)].name.as_str()));
        if let (None, Some(p)) = (family, want.prefer) {
            let by_name = base.and_then(|b| self.find(|i| i.name == b && i.v4() == p));
            if let Some(i) = by_name {
                return Ok(i);
            }
            if base.is_none() {
                return Ok(self.find(|i| i.v4() == p).unwrap_or(0));
            }
        }
        let Some(v4) = family else {
            return Ok(match (name, current) {
                // Same name as now: stay (it may be the other family's).
                (Some(n), Some(c)) if self.0[usize::from(c)].name == n => c,
                (Some(n), _) => self.find(|i| i.name == n).unwrap_or(0),
                (None, Some(c)) => c,
                (None, None) => 0,
            });
        };
        if let Some(b) = base {
            if let Some(i) = self.find(|i| i.name == b && i.v4() == v4) {
                return Ok(i);
            }
        }
        if let Some(i) = self.find(|i| i.v4() == v4) {
            if let Some(b) = base {
                warnings.push(format!(
                    "interface '{b}' has no {} address: using '{}'",
                    fam_name(v4),
                    self.0[usize::from(i)].name
                ));
            }
            return Ok(i);
        }
        warnings.push(format!(
            "Requested address family ({}) not supported",
            fam_name(v4)
        ));
        Ok(match (base, current) {
            (_, Some(c)) if name.is_none() => c,
            (Some(b), _) => self.find(|i| i.name == b).unwrap_or(0),
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Ifaces {
        let i = |n: &str, ip: &str| Iface {
            name: n.into(),
            sdp_ip: ip.parse().unwrap(),
        };
        Ifaces(vec![
            i("priv", "127.0.0.2"),
            i("pub", "203.0.113.7"),
            i("v6", "::1"),
            i("pub", "2001:db8::7"),
        ])
    }

    fn pick(name: Option<&str>, family: Option<V4>, current: Option<u8>) -> (u8, String) {
        let mut w = crate::keys::Warnings::default();
        let i = list()
            .choose(
                Want {
                    name,
                    family,
                    current,
                    ..Want::default()
                },
                &mut w,
            )
            .unwrap();
        (i, w.render())
    }

    #[test]
    fn names_and_families_choose() {
        assert_eq!(pick(None, None, None).0, 0, "the first by default");
        assert_eq!(pick(Some("pub"), Some(true), None).0, 1);
        assert_eq!(pick(Some("pub"), Some(false), None).0, 3, "pub's IPv6");
        assert_eq!(pick(Some("pub"), None, None).0, 1);
        assert_eq!(pick(Some("pub"), None, Some(3)).0, 3, "stays on pub's v6");
        assert_eq!(pick(None, None, Some(2)).0, 2, "kept without a name");
        // A family alone: the leg's name in that family, else the first.
        assert_eq!(pick(None, Some(false), Some(1)).0, 3);
        assert_eq!(pick(None, Some(false), None).0, 2);
        let (i, w) = pick(None, Some(false), Some(0));
        assert_eq!(i, 2);
        assert!(w.contains("'priv' has no IP6"), "{w:?}");
        let (i, w) = pick(Some("v6"), Some(true), None);
        assert_eq!(i, 0, "v6 has no IPv4: the first IPv4");
        assert!(!w.is_empty());
        // Legacy selectors.
        assert_eq!(pick(Some("external"), None, None).0, 2);
        assert_eq!(pick(Some("internal"), Some(false), None).0, 0);
        let (i, w) = pick(Some("round-robin-calls"), None, None);
        assert_eq!((i, w.is_empty()), (0, false));
        assert_eq!(pick(Some(""), None, Some(1)).0, 1);
    }

    #[test]
    fn a_preferred_family_gives_way_to_a_name() {
        let mut w = crate::keys::Warnings::default();
        let mut pick = |name, prefer| {
            let want = Want {
                name,
                prefer,
                ..Want::default()
            };
            list().choose(want, &mut w).unwrap()
        };
        assert_eq!(pick(Some("v6"), Some(true)), 2, "v6 named: its IPv6");
        assert_eq!(pick(Some("pub"), Some(false)), 3, "pub's IPv6 preferred");
        assert_eq!(pick(None, Some(false)), 2, "no name: the first IPv6");
        assert_eq!(pick(None, Some(true)), 0);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn unknown_names_are_errors_and_missing_families_warn() {
        let mut w = crate::keys::Warnings::default();
        let e = list()
            .choose(
                Want {
                    name: Some("dmz"),
                    ..Want::default()
                },
                &mut w,
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "Interface 'dmz' not found");
        let v4only = Ifaces(vec![Iface {
            name: "default".into(),
            sdp_ip: "10.0.0.1".parse().unwrap(),
        }]);
        let i = v4only
            .choose(
                Want {
                    family: Some(false),
                    ..Want::default()
                },
                &mut w,
            )
            .unwrap();
        assert_eq!(i, 0);
        assert_eq!(w.render(), "Requested address family (IP6) not supported");
        assert_eq!(
            list().sdp_ip(9),
            list().sdp_ip(0),
            "past the list: the first"
        );
    }
}
