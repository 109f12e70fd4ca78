//! Trunks and routes: calls to numbers that are no local user go out to
//! a carrier's gateways (`[[trunks]]`, `[[routes]]` in the TOML file).
//!
//! ```toml
//! [[trunks]]
//! name = "carrier"
//! gateways = ["127.0.0.1:5090", "carrier.example"]  # tried in order; names by RFC 3263
//! username = "tern"          # optional: answers the gateway's 401/407 once
//! password = "secret"
//! register = false           # true: REGISTER to the first gateway that is up (needs username)
//! register_expires = 3600    # the Expires asked for, seconds (refreshed at half the grant)
//! probe_secs = 5             # a gateway marked down is probed with OPTIONS this often
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
//! final outcome. Gateway health (`crate::trunk_health`): a gateway that
//! did not answer at all (Timer B) or whose transport failed is marked
//! down at once, one that answered 503 twice in a row too; calls skip
//! down gateways (unless all are down) and a down gateway is probed with
//! OPTIONS every `probe_secs` until a final response other than 503
//! marks it up. Registration (`crate::trunk_register`, RFC 3261 §10.2).
//!
//! Gateways: `IP:port` (or a bare IP: port 5060), or a host name resolved
//! by RFC 3263 (`crate::trunk_dns`, `crate::dns`): `name:port` by A/AAAA
//! only; `name` by SRV `_sip._udp.name` (priority, then RFC 2782 weighted
//! order), else A/AAAA on 5060. NAPTR is not looked up (UDP only).
//! `[sip] dns = "IP:port"` names the DNS server (default: resolv.conf).
//!
//! Unknown keys in either table are errors naming key, table and line,
//! as everywhere in the file (`crate::config`, which turns these errors
//! into `ConfigError::Refused`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::digest::{self, Algorithm, Credentials};
use crate::guard::{parse_cidrs, Cidr};

/// The `Expires` a trunk registration asks for when `register_expires`
/// is not given, seconds.
pub const DEFAULT_REGISTER_EXPIRES: u32 = 3600;
/// How often a gateway marked down is probed when `probe_secs` is not
/// given, seconds.
pub const DEFAULT_PROBE_SECS: u64 = 5;

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
    register_expires: Option<u32>,
    probe_secs: Option<u64>,
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

/// A gateway as configured: an address, or a host name resolved by
/// RFC 3263 (`port`: `Some` means A/AAAA only, `None` SRV first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gateway {
    /// `IP:port`.
    Addr(SocketAddr),
    /// A host name (lowercase, no trailing dot), with its port if given.
    Name {
        /// The name, e.g. `carrier.example`.
        host: String,
        /// The explicit port, if any.
        port: Option<u16>,
    },
}

impl Gateway {
    /// Parses a `gateways` entry: `IP:port`, `[IPv6]:port`, a bare IP
    /// (port 5060), `name` or `name:port` (name: letters, digits, `-`
    /// and `.`). `None` for anything else.
    pub fn parse(s: &str) -> Option<Gateway> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(Gateway::Addr(a));
        }
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Some(Gateway::Addr(SocketAddr::new(ip, 5060)));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|&p| p > 0)?)),
            None => (s, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            // All digits and dots would be a malformed IP, not a name.
            && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        ok.then_some(Gateway::Name { host, port })
    }

    /// The host part for a Request-URI (`ip:port`, or the name).
    pub fn host(&self) -> String {
        match self {
            Gateway::Addr(a) => a.to_string(),
            Gateway::Name {
                host,
                port: Some(p),
            } => format!("{host}:{p}"),
            Gateway::Name { host, port: None } => host.clone(),
        }
    }
}

/// A carrier: gateways tried in order, optional digest credentials,
/// trusted inbound sources.
#[derive(Debug, Clone)]
pub struct Trunk {
    /// Its name, as routes refer to it.
    pub name: String,
    /// Gateways, tried in order (names expand to their resolved targets).
    pub gateways: Vec<Gateway>,
    /// Digest user name and password answering a gateway's 401/407.
    pub credentials: Option<(String, String)>,
    /// `Some(seconds)`: tern keeps a registration at the first gateway
    /// that is up, asking for this Expires (RFC 3261 §10.2).
    pub register: Option<u32>,
    /// How often a gateway marked down is probed with OPTIONS.
    pub probe_every: Duration,
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
/// addresses or host names ([`Gateway::parse`]), credentials complete
/// (and present for `register = true`), `register_expires` and
/// `probe_secs` non-zero, routes naming a known trunk.
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
        let gateways = t
            .gateways
            .iter()
            .map(|g| {
                Gateway::parse(g).ok_or_else(|| {
                    bad(format!(
                        "[[trunks]] `{}`: gateway `{g}` is neither IP:port nor a host name[:port]",
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
        if t.register && credentials.is_none() {
            return Err(bad(format!(
                "[[trunks]] `{}`: register = true needs username and password (the AOR user)",
                t.name
            )));
        }
        if t.register_expires == Some(0) || t.probe_secs == Some(0) {
            return Err(bad(format!(
                "[[trunks]] `{}`: register_expires and probe_secs must be > 0",
                t.name
            )));
        }
        let inbound_from = parse_cidrs(&t.inbound_from)
            .map_err(|e| bad(format!("[[trunks]] `{}` inbound_from: {e}", t.name)))?;
        out.push(Trunk {
            name: t.name,
            gateways,
            credentials,
            register: t
                .register
                .then(|| t.register_expires.unwrap_or(DEFAULT_REGISTER_EXPIRES)),
            probe_every: Duration::from_secs(t.probe_secs.unwrap_or(DEFAULT_PROBE_SECS)),
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

/// `[sip] dns`: the DNS server gateway names are resolved with, `IP:port`
/// or a bare IP (port 53). `Err` names the key.
pub(crate) fn parse_dns(v: &str) -> Result<SocketAddr, String> {
    let v = v.trim();
    v.parse::<SocketAddr>()
        .or_else(|_| v.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("[sip] dns = {v:?}: expected IP or IP:PORT (e.g. \"127.0.0.1:5353\")"))
}

/// Our answer to a `Digest` challenge `chal` (a WWW-Authenticate or
/// Proxy-Authenticate value) for a `method` request to `uri` (RFC 7616
/// §3.4, RFC 3261 §22.2): the Authorization value, with `qop=auth`,
/// `nc=00000001` and `cnonce` when the challenge offers qop. `None` for
/// another scheme, no nonce or an unknown algorithm.
pub(crate) fn digest_answer(
    chal: &str,
    method: &str,
    (user, password): (&str, &str),
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let chal = chal.trim_start();
    let (scheme, rest) = chal.split_at(chal.find(char::is_whitespace)?);
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Credentials {
        username: user.to_string(),
        uri: uri.to_string(),
        ..Credentials::default()
    };
    let mut qops = String::new();
    for (n, v) in digest::split_auth_params(rest) {
        match n.as_str() {
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "algorithm" => c.algorithm = Some(v),
            "opaque" => c.opaque = Some(v),
            "qop" => qops = v,
            _ => {}
        }
    }
    if c.nonce.is_empty() {
        return None;
    }
    let alg = match c.algorithm.as_deref() {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a)?,
    };
    if qops
        .split(',')
        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
    {
        c.qop = Some("auth".into());
        c.nc = Some("00000001".into());
        c.cnonce = Some(cnonce.to_string());
    }
    let ha1 = digest::ha1(alg, user, &c.realm, password);
    let response = digest::expected_response_with(alg, &ha1, method, &c);
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        q(user),
        q(&c.realm),
        q(&c.nonce),
        q(uri),
        alg.name()
    );
    if let (Some(qop), Some(nc), Some(cn)) = (&c.qop, &c.nc, &c.cnonce) {
        out.push_str(&format!(", qop={qop}, nc={nc}, cnonce=\"{cn}\""));
    }
    if let Some(o) = &c.opaque {
        out.push_str(&format!(", opaque=\"{}\"", q(o)));
    }
    Some(out)
}
