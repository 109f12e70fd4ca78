//! Trunks and routes: calls to numbers that are no local user go out to
//! a carrier's gateways (`[[trunks]]`, `[[routes]]` in the TOML file).
//!
//! ```toml
//! [[trunks]]
//! name = "carrier"
//! gateways = ["127.0.0.1:5090", "127.0.0.1:5091"]  # tried in order
//! username = "tern"          # optional: answers the gateway's 401/407 once
//! password = "secret"
//! register = false           # registration to the trunk: not implemented, `true` is refused
//! inbound_from = ["127.0.0.1/32"]  # sources trusted as this trunk
//!
//! [[routes]]
//! prefix = "9"               # Request-URI user prefix; the longest match wins
//! strip = 1                  # leading characters removed
//! add = ""                   # prepended after the strip
//! trunk = "carrier"
//! ```
//!
//! Policy (no toll fraud): only an authenticated local user, or a source
//! in some trunk's `inbound_from`, may reach a route; an unauthenticated
//! INVITE for a routed number is challenged like any other. A trusted
//! trunk source calling a local user needs no challenge.
//!
//! Failover (`crate::b2bua` `failover.rs`): the next gateway is tried on
//! Timer B, 408, 5xx or a transport failure; the caller sees only the
//! final outcome. Gateways are not marked down between calls yet.
//!
//! Unknown keys in either table are errors naming key, table and line,
//! as everywhere in the file (`crate::config`, which turns these errors
//! into `ConfigError::Refused`).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::guard::{parse_cidrs, Cidr};

/// A `[[trunks]]` entry as written.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunk {
    name: String,
    #[serde(default)]
    gateways: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    register: bool,
    #[serde(default)]
    inbound_from: Vec<String>,
}

/// A `[[routes]]` entry as written.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    prefix: String,
    #[serde(default)]
    strip: usize,
    #[serde(default)]
    add: String,
    trunk: String,
}

/// A carrier: gateways tried in order, optional digest credentials,
/// trusted inbound sources.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Its name, as routes refer to it.
    pub name: String,
    /// Gateways, tried in order.
    pub gateways: Vec<SocketAddr>,
    /// Digest user name and password answering a gateway's 401/407.
    pub credentials: Option<(String, String)>,
    /// Sources (IP prefixes) whose INVITEs are trusted as this trunk's.
    pub inbound_from: Vec<Cidr>,
}

/// A route: numbers starting with `prefix` go to `trunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Request-URI user prefix (may be empty: a default route).
    pub prefix: String,
    /// Leading characters removed from the user.
    pub strip: usize,
    /// Prepended after the strip.
    pub add: String,
    /// Index into the trunks.
    pub trunk: usize,
}

/// Checks the raw tables: names unique and non-empty, gateways
/// `IP:port`, credentials complete, `register = true` refused (not
/// implemented), routes naming a known trunk.
pub(crate) fn check(
    trunks: Vec<RawTrunk>,
    routes: Vec<RawRoute>,
) -> Result<(Vec<Trunk>, Vec<Route>), String> {
    let bad = |s: String| s;
    let mut out: Vec<Trunk> = Vec::with_capacity(trunks.len());
    for t in trunks {
        if t.name.is_empty() || out.iter().any(|o| o.name == t.name) {
            return Err(bad(format!(
                "[[trunks]]: empty or duplicate name `{}`",
                t.name
            )));
        }
        if t.register {
            return Err(bad(format!(
                "[[trunks]] `{}`: register = true is not implemented yet (registration to a trunk); use static gateways",
                t.name
            )));
        }
        let gateways = t
            .gateways
            .iter()
            .map(|g| {
                g.parse::<SocketAddr>().map_err(|_| {
                    bad(format!(
                        "[[trunks]] `{}`: gateway `{g}` is not IP:port (host names are not resolved)",
                        t.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if gateways.is_empty() {
            return Err(bad(format!("[[trunks]] `{}`: no gateways", t.name)));
        }
        let credentials = match (t.username, t.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(bad(format!(
                    "[[trunks]] `{}`: username and password go together",
                    t.name
                )))
            }
        };
        let inbound_from = parse_cidrs(&t.inbound_from)
            .map_err(|e| bad(format!("[[trunks]] `{}` inbound_from: {e}", t.name)))?;
        out.push(Trunk {
            name: t.name,
            gateways,
            credentials,
            inbound_from,
        });
    }
    let mut rs = Vec::with_capacity(routes.len());
    for r in routes {
        let Some(trunk) = out.iter().position(|t| t.name == r.trunk) else {
            return Err(bad(format!(
                "[[routes]] prefix `{}`: no trunk named `{}`",
                r.prefix, r.trunk
            )));
        };
        if rs.iter().any(|o: &Route| o.prefix == r.prefix) {
            return Err(bad(format!("[[routes]]: duplicate prefix `{}`", r.prefix)));
        }
        rs.push(Route {
            prefix: r.prefix,
            strip: r.strip,
            add: r.add,
            trunk,
        });
    }
    Ok((out, rs))
}

/// The route for `user` (longest prefix wins) and the user rewritten by
/// it (`strip` leading characters removed, `add` prepended). `None`: no
/// route matches, or the rewritten user would be empty.
pub fn lookup<'a>(routes: &'a [Route], user: &str) -> Option<(&'a Route, String)> {
    let r = routes
        .iter()
        .filter(|r| user.starts_with(r.prefix.as_str()))
        .max_by_key(|r| r.prefix.len())?;
    let rest: String = user.chars().skip(r.strip).collect();
    let out = format!("{}{rest}", r.add);
    (!out.is_empty()).then_some((r, out))
}

/// The trunk `ip` is trusted as (its `inbound_from`), if any.
pub fn trusted_source(trunks: &[Trunk], ip: IpAddr) -> Option<&Trunk> {
    trunks
        .iter()
        .find(|t| t.inbound_from.iter().any(|c| c.contains(ip)))
}
