//! Configuration of the signaling plane: [`SipConfig`], the `[[users]]`
//! table and the optional `[sip]` table of a TOML file.
//!
//! # TOML shape
//!
//! ```toml
//! [sip]                          # optional; every key optional
//! realm = "example.com"          # digest realm (default "tern")
//! domains = ["example.com"]      # local domains besides the realm and our address
//! auth_invites = true            # INVITEs to local users need auth (default: when users exist)
//! nonce_ttl = 300                # seconds a digest nonce stays valid
//! nonce_capacity = 262144        # nonces whose nonce-count is tracked (replay protection)
//! default_expires = 3600         # registration lifetime when none is asked, seconds
//! min_expires = 60               # shorter requests get 423
//! max_expires = 86400            # longer requests are cut down
//! timer_c = 180                  # seconds a ringing callee may take: then CANCEL + 408
//! min_se = 90                    # shortest Session-Expires accepted (RFC 4028): shorter get 422
//! drain_secs = 30                # longest SIGTERM drain, seconds
//! tcp_max_connections = 10000    # TCP connections open at once
//! tcp_idle_secs = 600            # an idle TCP connection is closed after this
//! tcp_max_message = 65536        # longest message on a stream, bytes
//! tcp_max_per_source = 100       # stream connections from one IP at once
//! tls = "127.0.0.1:5061"         # SIP over TLS; "off" to disable
//! ws = "127.0.0.1:5066"          # SIP over WebSocket (RFC 7118); "off"
//! wss = "127.0.0.1:7443"         # SIP over secure WebSocket; "off"
//! tls_cert = "/etc/tern/cert.pem"  # PEM chain, leaf first (TLS and WSS)
//! tls_key = "/etc/tern/key.pem"    # PEM key; without both, a self-signed one is made
//! rate_limit = 200               # requests/s per source IP; 0 (the default): no limit
//! rate_burst = 400               # requests at once per source IP (default 2 × rate_limit)
//! allow = ["10.0.0.0/8", "2001:db8::/32"]  # only these sources (default: all)
//! deny = ["10.6.6.0/24"]         # never these (wins over allow)
//! dns = "127.0.0.1:5353"         # DNS server for trunk gateway names (default: resolv.conf)
//!
//! [media]                        # optional: the B2BUA's calls (and `tern up`'s ng calls)
//! jitter_buffer = false          # play each leg out through a jitter buffer
//! jitter_target_ms = 60          # target playout delay, ms
//! jitter_max_ms = 200            # no packet waits longer, ms
//! jitter_adaptive = false        # size the delay from measured jitter
//! transcode = true               # transcode when caller and callee share no codec
//! moh = "/etc/tern/moh.wav"      # music on hold: played to a party the other holds
//!                                # (WAV, mono or stereo, 8/16/48 kHz, ≤ 10 min;
//!                                # checked at load; needs the shm/embedded relay)
//! record = false                 # record every B2BUA call (needs recording_dir)
//! recording_dir = "/var/lib/tern/rec"  # where recordings go (`--recording-dir`)
//!
//! [[media.interfaces]]           # optional, repeatable: named media interfaces
//! name = "pub"                   # (`tern up --interface pub/10.0.0.1!203.0.113.7`;
//! address = "10.0.0.1"           # the command line's list replaces this one)
//! advertised = "203.0.113.7"     # optional: the address SDP says
//!
//! [[users]]
//! name = "alice"
//! password = "secret"            # both HA1 values are computed at load
//!
//! [[users]]
//! name = "bob"
//! ha1 = "0123456789abcdef0123456789abcdef"   # 32 hex digits, MD5(name:realm:password)
//! ha1_sha256 = "..."                         # optional, 64 hex digits, SHA-256(name:realm:password)
//!
//! [[trunks]]                     # optional, repeatable: see crate::trunk
//! name = "carrier"
//! gateways = ["192.0.2.10:5060", "carrier.example"]  # tried in order; names by RFC 3263
//! username = "tern"              # optional: answers the gateway's 401/407
//! password = "secret"
//! register = false               # true: keep a registration at the first gateway up
//! register_expires = 3600        # Expires asked for, seconds
//! probe_secs = 5                 # a gateway marked down is probed with OPTIONS this often
//! inbound_from = ["192.0.2.0/24"]  # sources trusted as this trunk
//!
//! [[routes]]                     # optional, repeatable: longest prefix wins
//! prefix = "9"
//! strip = 1
//! add = ""
//! trunk = "carrier"
//! ```
//!
//! [`Config::from_toml`] parses the whole file once into the signaling
//! settings ([`SipConfig`]) and the transport's ([`TransportConfig`]).
//! **Unknown keys are errors**, at the top level, in `[sip]`, `[media]`
//! and every `[[users]]` entry: a typo (say `tcp_max_conections` or
//! `passwd`) would otherwise be silently ignored. The error,
//! [`ConfigError::UnknownKey`], names the key, its table and its line:
//!
//! ```text
//! line 3: unknown key `tcp_max_conections` in [sip] (expected one of `realm`, ...)
//! ```
//!
//! The guard keys (`rate_limit`, `rate_burst`, `allow`, `deny`) and
//! their policy (UDP floods dropped, streams answered 503, calls in
//! progress never limited) are described in [`crate::guard`]; a prefix
//! that does not parse is a [`ConfigError::Refused`] naming the key.
//!
//! [`load_users_toml`] reads only the top-level `users` array of a
//! document (other tables are not its business). A user without a SHA-256
//! HA1 (only `ha1` given) can answer only the MD5 challenge.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use tern_shared::iface::InterfaceSpec;
use tern_shared::table::JitterSettings;

use crate::digest;
use crate::guard::{parse_cidrs, GuardConfig};
use crate::tcp::DEFAULT_MAX_MESSAGE;

/// Errors in the signaling configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// The TOML text did not parse, or a `[[users]]` entry has the wrong shape.
    Toml(String),
    /// A user entry is invalid (empty name, both or neither of `password`
    /// and `ha1`, an `ha1` that is not 32 hex digits, a duplicate name).
    BadUser(String),
    /// The configuration would be unsafe or cannot work (for example an
    /// open registrar on a non-loopback address).
    Refused(String),
    /// The file has a key tern does not know (a typo, or a key of another
    /// version).
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it is: `[sip]`, `[media]`, `[[users]]` or `the top level`.
        table: String,
        /// Its line in the file, counted from 1.
        line: usize,
        /// The keys that table accepts, as the parser lists them
        /// (`` `a`, `b` ``).
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Toml(s) => write!(f, "{s}"),
            ConfigError::BadUser(s) => write!(f, "bad [[users]] entry: {s}"),
            ConfigError::Refused(s) => write!(f, "{s}"),
            ConfigError::UnknownKey {
                key,
                table,
                line,
                expected,
            } => {
                write!(f, "line {line}: unknown key `{key}` in {table}")?;
                if !expected.is_empty() {
                    write!(f, " (expected one of {expected})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The secret a user authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A clear-text password, as read by [`load_users_toml`] (which does
    /// not know the realm). [`SipConfig::from_toml`] and the signaling core
    /// turn it into [`Credential::Ha1`] and drop the password.
    Password(String),
    /// HA1 values H(`name:realm:password`) in lowercase hex (RFC 7616
    /// §3.4.2), computed with the configured realm.
    Ha1(digest::Ha1),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => write!(f, "Password(<redacted>)"),
            Credential::Ha1(h) => write!(f, "Ha1({h:?})"),
        }
    }
}

/// One user allowed to register and to place calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name: the digest `username` and the user part of the AOR.
    pub name: String,
    /// The user's secret.
    pub credential: Credential,
}

impl User {
    /// The HA1 values for `realm` (both MD5 and SHA-256 from a password;
    /// as configured from stored HA1s).
    pub fn ha1(&self, realm: &str) -> digest::Ha1 {
        match &self.credential {
            Credential::Password(p) => digest::Ha1::from_password(&self.name, realm, p),
            Credential::Ha1(h) => h.clone(),
        }
    }

    /// Replaces a password by its HA1 values for `realm`.
    pub fn hash_password(&mut self, realm: &str) {
        if let Credential::Password(_) = self.credential {
            self.credential = Credential::Ha1(self.ha1(realm));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ha1: Option<String>,
    #[serde(default)]
    ha1_sha256: Option<String>,
}

/// The `[sip]` keys: signaling, then transport.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSip {
    realm: Option<String>,
    domains: Option<Vec<String>>,
    auth_invites: Option<bool>,
    nonce_ttl: Option<u64>,
    nonce_capacity: Option<usize>,
    default_expires: Option<u32>,
    min_expires: Option<u32>,
    max_expires: Option<u32>,
    timer_c: Option<u64>,
    min_se: Option<u32>,
    drain_secs: Option<u64>,
    tcp_max_connections: Option<usize>,
    tcp_idle_secs: Option<u64>,
    tcp_max_message: Option<usize>,
    tcp_max_per_source: Option<usize>,
    tls: Option<String>,
    ws: Option<String>,
    wss: Option<String>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    dns: Option<String>,
}

/// The guard settings of `[sip]`: a bad prefix is refused naming its key.
fn guard_config(sip: &RawSip) -> Result<GuardConfig, ConfigError> {
    let list = |key: &str, v: &Option<Vec<String>>| {
        parse_cidrs(v.as_deref().unwrap_or_default())
            .map_err(|e| ConfigError::Refused(format!("[sip] {key}: {e}")))
    };
    let rate_limit = sip.rate_limit.unwrap_or(0);
    Ok(GuardConfig {
        rate_limit,
        rate_burst: sip
            .rate_burst
            .unwrap_or(rate_limit.saturating_mul(2))
            .max(u32::from(rate_limit > 0)),
        allow: list("allow", &sip.allow)?,
        deny: list("deny", &sip.deny)?,
        ..GuardConfig::default()
    })
}

/// A listener key (`tls`, `ws`, `wss`): `"off"` disables it, an address
/// binds it; absent, it is on at `default_port` on the SIP listen IP when
/// the SIP listen port is the standard 5060 (so `tern up` with no file
/// listens on all of them), and off otherwise (a second instance or a
/// test on other ports does not collide on 5061/5066/7443).
fn listener(
    key: &str,
    value: Option<&str>,
    listen: SocketAddr,
    default_port: u16,
) -> Result<Option<SocketAddr>, ConfigError> {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ConfigError::Refused(format!(
                "[sip] {key} = {v:?}: expected IP:PORT (e.g. \"127.0.0.1:{default_port}\") or \"off\""
            ))
        }),
        None if listen.port() == 5060 => Ok(Some(SocketAddr::new(listen.ip(), default_port))),
        None => Ok(None),
    }
}

/// The `[media]` keys: jitter-buffer defaults for calls, the interfaces.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawMedia {
    jitter_buffer: Option<bool>,
    jitter_target_ms: Option<u16>,
    jitter_max_ms: Option<u16>,
    jitter_adaptive: Option<bool>,
    transcode: Option<bool>,
    moh: Option<std::path::PathBuf>,
    record: Option<bool>,
    recording_dir: Option<std::path::PathBuf>,
    interfaces: Vec<RawInterface>,
}

/// One `[[media.interfaces]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    address: String,
    #[serde(default)]
    advertised: Option<String>,
}

/// The `[[media.interfaces]]` entries, each checked and the list as a
/// whole ([`tern_shared::iface::validate`]).
fn interfaces(raw: &[RawInterface]) -> Result<Vec<InterfaceSpec>, ConfigError> {
    let list = raw
        .iter()
        .map(|r| InterfaceSpec::new(&r.name, &r.address, r.advertised.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|l| tern_shared::iface::validate(&l).map(|()| l))
        .map_err(|e| ConfigError::Refused(format!("[[media.interfaces]]: {e}")))?;
    Ok(list)
}

/// The whole file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawFile {
    users: Vec<RawUser>,
    sip: RawSip,
    media: RawMedia,
    trunks: Vec<crate::trunk::RawTrunk>,
    routes: Vec<crate::trunk::RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUsersFile {
    users: Vec<RawUser>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_users(raw: Vec<RawUser>) -> Result<Vec<User>, ConfigError> {
    let mut users: Vec<User> = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    for u in raw {
        if u.name.is_empty() || u.name.contains(':') || u.name.contains(char::is_whitespace) {
            return Err(ConfigError::BadUser(format!(
                "user name {:?} must be non-empty, without ':' or white space",
                u.name
            )));
        }
        if !seen.insert(u.name.clone()) {
            return Err(ConfigError::BadUser(format!(
                "user {:?} is listed twice",
                u.name
            )));
        }
        let credential = match (u.password, u.ha1, u.ha1_sha256) {
            (Some(p), None, None) => Credential::Password(p),
            (None, md5, sha256) if md5.is_some() || sha256.is_some() => {
                if md5.as_deref().is_some_and(|h| !is_hex(h, 32)) {
                    return Err(ConfigError::BadUser(format!(
                        "user {:?}: ha1 must be 32 hex digits (MD5 of name:realm:password)",
                        u.name
                    )));
                }
                if sha256.as_deref().is_some_and(|h| !is_hex(h, 64)) {
                    return Err(ConfigError::BadUser(format!(
                        "user {:?}: ha1_sha256 must be 64 hex digits (SHA-256 of name:realm:password)",
                        u.name
                    )));
                }
                Credential::Ha1(digest::Ha1 {
                    md5: md5.map(|h| h.to_ascii_lowercase()),
                    sha256: sha256.map(|h| h.to_ascii_lowercase()),
                })
            }
            (Some(_), _, _) => {
                return Err(ConfigError::BadUser(format!(
                    "user {:?}: give either password or ha1/ha1_sha256, not both",
                    u.name
                )))
            }
            (None, _, _) => {
                return Err(ConfigError::BadUser(format!(
                    "user {:?}: needs password or ha1",
                    u.name
                )))
            }
        };
        users.push(User {
            name: u.name,
            credential,
        });
    }
    Ok(users)
}

/// Reads the `[[users]]` entries of a TOML document; every other key or
/// table is ignored (see the module docs). Passwords are kept as
/// [`Credential::Password`] since the realm is not known here.
///
/// Errors: [`ConfigError::Toml`] if the text is not TOML or an entry has the
/// wrong shape or an unknown key; [`ConfigError::BadUser`] for an empty or
/// duplicate name, a name with `:` or white space, a password together
/// with an HA1, none of `password`/`ha1`/`ha1_sha256`, or an `ha1` that is
/// not 32 hex digits (`ha1_sha256`: 64).
pub fn load_users_toml(text: &str) -> Result<Vec<User>, ConfigError> {
    let raw: RawUsersFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    check_users(raw.users)
}

/// A TOML error as a [`ConfigError`]: an unknown key becomes
/// [`ConfigError::UnknownKey`] (with the line from the error's span),
/// anything else [`ConfigError::Toml`] with the parser's text (which names
/// the line too).
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message();
    let unknown = msg
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'));
    match (unknown, e.span()) {
        (Some((key, rest)), Some(span)) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let expected = rest
                .trim_start_matches(',')
                .trim()
                .trim_start_matches("expected one of")
                .trim_start_matches("expected")
                .trim()
                .to_string();
            ConfigError::UnknownKey {
                key: key.to_string(),
                table: table_at(before),
                line,
                expected,
            }
        }
        _ => ConfigError::Toml(e.to_string().trim_end().to_string()),
    }
}

/// The table whose body `before` (the text up to a key) ends in: the last
/// `[name]` or `[[name]]` header line, or the top level.
fn table_at(before: &str) -> String {
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| match l.find(']') {
            Some(i) if l.starts_with("[[") => format!("{}]]", &l[..i]),
            Some(i) => l[..=i].to_string(),
            None => l.to_string(),
        })
        .unwrap_or_else(|| "the top level".to_string())
}

/// Settings of the transport beyond [`SipConfig`]: TCP bounds and the
/// drain time (the `[sip]` keys `tcp_max_connections`, `tcp_idle_secs`,
/// `tcp_max_message`, `drain_secs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Most TCP connections open at once (accepted and outgoing); beyond
    /// it new ones are closed at once and counted.
    pub max_connections: usize,
    /// A TCP connection without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Longest SIP message on a stream, bytes (header and body); longer
    /// closes the connection (RFC 3261 §18.3 framing is then lost).
    pub max_message: usize,
    /// Longest drain after the drain flag is set: then serving stops even
    /// with calls up.
    pub drain: Duration,
    /// Most stream connections (TCP, TLS, WS, WSS) from one IP address
    /// at once; beyond it new ones are closed at once and counted.
    pub max_per_source: usize,
    /// The rate limit and address lists ([`crate::guard`]; the `[sip]`
    /// keys `rate_limit`, `rate_burst`, `allow`, `deny`).
    pub guard: GuardConfig,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(600),
            max_message: DEFAULT_MAX_MESSAGE,
            drain: Duration::from_secs(30),
            max_per_source: 100,
            guard: GuardConfig::default(),
        }
    }
}

/// The configuration file, parsed once: what the signaling core needs and
/// what its transport needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[sip]` (signaling keys), `[media]` and `[[users]]`.
    pub sip: SipConfig,
    /// `[sip]` transport keys.
    pub transport: TransportConfig,
}

impl Config {
    /// Defaults, listening on `listen`, with the settings of the TOML
    /// `text` (empty: defaults and no users). Passwords are replaced by
    /// their HA1 values for the realm here. Call [`SipConfig::validate`]
    /// (on [`Config::sip`]) before serving.
    ///
    /// Errors: [`ConfigError::UnknownKey`] for a key tern does not know
    /// (its name, table and line); [`ConfigError::Toml`] for text that is
    /// not TOML or a key of the wrong type; those of [`load_users_toml`]
    /// for the users; [`ConfigError::Refused`] for zero
    /// `tcp_max_connections` or `tcp_idle_secs`, or a `tcp_max_message`
    /// under 1 KiB.
    pub fn from_toml(listen: SocketAddr, text: &str) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let d = SipConfig::default();
        let sip = raw.sip;
        let td = TransportConfig::default();
        let transport = TransportConfig {
            max_connections: sip.tcp_max_connections.unwrap_or(td.max_connections),
            idle_timeout: sip
                .tcp_idle_secs
                .map_or(td.idle_timeout, Duration::from_secs),
            max_message: sip.tcp_max_message.unwrap_or(td.max_message),
            drain: sip.drain_secs.map_or(td.drain, Duration::from_secs),
            max_per_source: sip.tcp_max_per_source.unwrap_or(td.max_per_source),
            guard: guard_config(&sip)?,
        };
        if sip.tls_cert.is_some() != sip.tls_key.is_some() {
            return Err(ConfigError::Refused(
                "[sip] tls_cert and tls_key go together: give both, or neither for a self-signed certificate".into(),
            ));
        }
        let tls = listener("tls", sip.tls.as_deref(), listen, 5061)?;
        let ws = listener("ws", sip.ws.as_deref(), listen, 5066)?;
        let wss = listener("wss", sip.wss.as_deref(), listen, 7443)?;
        if transport.max_connections == 0
            || transport.max_per_source == 0
            || transport.max_message < 1024
            || transport.idle_timeout.is_zero()
        {
            return Err(ConfigError::Refused(
                "[sip] tcp_max_connections, tcp_max_per_source and tcp_idle_secs must be > 0, tcp_max_message >= 1024"
                    .into(),
            ));
        }
        let (trunks, routes) =
            crate::trunk::check(raw.trunks, raw.routes).map_err(ConfigError::Refused)?;
        let mut cfg = SipConfig {
            listen,
            trunks,
            routes,
            realm: sip.realm.unwrap_or(d.realm),
            domains: sip.domains.unwrap_or_default(),
            auth_invites: sip.auth_invites,
            users: check_users(raw.users)?,
            nonce_ttl: sip.nonce_ttl.map_or(d.nonce_ttl, Duration::from_secs),
            nonce_capacity: sip.nonce_capacity.unwrap_or(d.nonce_capacity),
            default_expires: sip.default_expires.unwrap_or(d.default_expires),
            min_expires: sip.min_expires.unwrap_or(d.min_expires),
            max_expires: sip.max_expires.unwrap_or(d.max_expires),
            timer_c: sip.timer_c.map_or(d.timer_c, Duration::from_secs),
            min_se: sip.min_se.unwrap_or(d.min_se),
            tls,
            ws,
            wss,
            tls_cert: sip.tls_cert,
            tls_key: sip.tls_key,
            jitter: JitterSettings {
                enabled: raw.media.jitter_buffer.unwrap_or(d.jitter.enabled),
                target_ms: raw.media.jitter_target_ms.unwrap_or(d.jitter.target_ms),
                max_ms: raw.media.jitter_max_ms.unwrap_or(d.jitter.max_ms),
                adaptive: raw.media.jitter_adaptive.unwrap_or(d.jitter.adaptive),
            },
            transcode: raw.media.transcode.unwrap_or(d.transcode),
            interfaces: interfaces(&raw.media.interfaces)?,
            moh: raw.media.moh,
            record: raw.media.record.unwrap_or(d.record),
            recording_dir: raw.media.recording_dir.clone(),
            dns: sip
                .dns
                .as_deref()
                .map(crate::trunk::parse_dns)
                .transpose()
                .map_err(ConfigError::Refused)?,
            ..d
        };
        let realm = cfg.realm.clone();
        for u in &mut cfg.users {
            u.hash_password(&realm);
        }
        Ok(Config {
            sip: cfg,
            transport,
        })
    }
}

/// Configuration of the SIP signaling plane.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP address to listen on. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The address put in our Via and Contact headers when `listen` is a
    /// wildcard address. `None`: the relay's media address is used.
    pub advertise: Option<IpAddr>,
    /// Digest realm (RFC 7616 §3.3); also a local domain.
    pub realm: String,
    /// Local domains besides the realm and tern's own address: an INVITE
    /// whose Request-URI host is none of them is for a foreign domain and
    /// always needs authentication (tern is not an open relay). Compared
    /// case-insensitively.
    pub domains: Vec<String>,
    /// Whether an INVITE to a local user needs digest authentication.
    /// `None`: yes when users are configured. INVITEs to foreign domains
    /// need it regardless.
    pub auth_invites: Option<bool>,
    /// Users allowed to register and call. Empty: no authentication at all,
    /// which [`SipConfig::validate`] allows on loopback only.
    pub users: Vec<User>,
    /// Registration lifetime when the request gives none, seconds
    /// (RFC 3261 §10.2.1.1).
    pub default_expires: u32,
    /// Shortest lifetime accepted, seconds; shorter non-zero requests get
    /// 423 Interval Too Brief (RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longest lifetime granted, seconds; longer requests are cut down.
    pub max_expires: u32,
    /// How long a digest nonce stays valid; an older one is answered with
    /// `stale=true` (RFC 7616 §3.3).
    pub nonce_ttl: Duration,
    /// Bound of the nonce-count (replay protection) table, nonces; see
    /// [`crate::digest::NonceSource::with_capacity`].
    pub nonce_capacity: usize,
    /// RFC 3261 T1: RTT estimate, the first retransmission interval (500 ms).
    pub t1: Duration,
    /// RFC 3261 T2: cap on the non-INVITE and 2xx retransmission interval (4 s).
    pub t2: Duration,
    /// RFC 3261 T4: longest time a message stays in the network (5 s);
    /// timers I and K over UDP.
    pub t4: Duration,
    /// How long to wait for a final response once the callee sent a
    /// provisional one (RFC 3261 §16.6 Timer C, at least 3 min).
    pub timer_c: Duration,
    /// The shortest session interval accepted (RFC 4028 `Min-SE`,
    /// seconds, at least 90): a request whose `Session-Expires` is
    /// shorter gets 422 Session Interval Too Small with this `Min-SE`.
    pub min_se: u32,
    /// Value of our `User-Agent`/`Server` headers.
    pub user_agent: String,
    /// Jitter-buffer settings of both legs of every B2BUA call (`[media]`;
    /// off by default: a relay does not de-jitter unless asked).
    pub jitter: JitterSettings,
    /// `[media] transcode`: offer the callee the codecs tern transcodes
    /// (PCMU, PCMA, G722, opus) beside the caller's, and transcode when
    /// the answer shares no codec with the offer, instead of passing it
    /// on (on by default).
    pub transcode: bool,
    /// SIP over TLS listener (RFC 3261 §26.3.1); `None`: off.
    pub tls: Option<SocketAddr>,
    /// SIP over WebSocket listener (RFC 7118); `None`: off.
    pub ws: Option<SocketAddr>,
    /// SIP over secure WebSocket listener (RFC 7118 §5); `None`: off.
    pub wss: Option<SocketAddr>,
    /// PEM certificate chain for TLS and WSS; with [`SipConfig::tls_key`].
    /// `None`: a self-signed certificate is made at start.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of [`SipConfig::tls_cert`].
    pub tls_key: Option<std::path::PathBuf>,
    /// `[[media.interfaces]]`: the relay's named media interfaces under
    /// `tern up` (empty: the one `--media-ip`). Checked as a list.
    pub interfaces: Vec<InterfaceSpec>,
    /// `[media] record`: record every B2BUA call (both legs), written
    /// under [`SipConfig::recording_dir`]. Off by default.
    pub record: bool,
    /// `[media] recording_dir`: where recordings go under `tern up`
    /// (`--recording-dir` wins); `None`: nothing is written.
    pub recording_dir: Option<std::path::PathBuf>,
    /// `[[trunks]]`: carriers' gateways (see [`crate::trunk`]).
    pub trunks: Vec<crate::trunk::Trunk>,
    /// `[[routes]]`: numbers that go out to a trunk.
    pub routes: Vec<crate::trunk::Route>,
    /// `[sip] dns`: the DNS server that resolves trunk gateway names
    /// (RFC 3263); `None`: the system's (`/etc/resolv.conf`).
    pub dns: Option<SocketAddr>,
    /// `[media] moh`: a WAV file played to a party while the other holds
    /// it (`b2bua/moh.rs`); `None`: no music on hold.
    pub moh: Option<std::path::PathBuf>,
}

/// Jitter-buffer defaults when `[media]` switches it on: 60 ms target,
/// 200 ms maximum, fixed delay.
pub const DEFAULT_JITTER: JitterSettings = JitterSettings {
    enabled: false,
    target_ms: 60,
    max_ms: 200,
    adaptive: false,
};

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            advertise: None,
            realm: "tern".into(),
            domains: Vec::new(),
            auth_invites: None,
            users: Vec::new(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86400,
            nonce_ttl: Duration::from_secs(300),
            nonce_capacity: digest::DEFAULT_NC_CAPACITY,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            min_se: crate::session_timer::RFC_MIN_SE,
            user_agent: concat!("tern/", env!("CARGO_PKG_VERSION")).into(),
            jitter: DEFAULT_JITTER,
            transcode: true,
            tls: None,
            ws: None,
            wss: None,
            tls_cert: None,
            tls_key: None,
            interfaces: Vec::new(),
            record: false,
            recording_dir: None,
            trunks: Vec::new(),
            routes: Vec::new(),
            dns: None,
            moh: None,
        }
    }
}

impl SipConfig {
    /// [`Config::from_toml`]'s signaling part: the same parse, as strict
    /// (unknown keys are errors), with the transport settings dropped.
    ///
    /// Errors: those of [`Config::from_toml`].
    pub fn from_toml(listen: SocketAddr, text: &str) -> Result<SipConfig, ConfigError> {
        Config::from_toml(listen, text).map(|c| c.sip)
    }

    /// Whether `host` (a Request-URI host: name, IPv4 or `[IPv6]`) is one
    /// of ours: the realm, one of [`SipConfig::domains`] (names or IP
    /// addresses), the listen IP or `local` (the address in our
    /// Via/Contact).
    pub fn is_local_host(&self, host: &str, local: IpAddr) -> bool {
        let unbracket = |s: &str| s.trim_start_matches('[').trim_end_matches(']').to_string();
        let h = unbracket(host);
        if let Ok(ip) = h.parse::<IpAddr>() {
            return ip == local
                || ip == self.listen.ip()
                || self
                    .domains
                    .iter()
                    .any(|d| unbracket(d).parse::<IpAddr>() == Ok(ip));
        }
        h.eq_ignore_ascii_case(&self.realm)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(&h))
    }

    /// Checks that the configuration is safe and coherent.
    ///
    /// Errors: [`ConfigError::Refused`] when `listen` is not a loopback
    /// address and no user is configured (an open registrar and call relay
    /// on a reachable address), when the realm is empty or contains `"`,
    /// when `auth_invites = true` comes without users, when a domain is
    /// empty, when `nonce_ttl` or `nonce_capacity` is zero, or when the
    /// timers or expiry bounds make no sense, when the `[media]` jitter
    /// delays do not satisfy 0 < target <= max, or when `[media] moh` is
    /// not a WAV file tern plays.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.users.is_empty() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Refused(format!(
                "refusing to run an open registrar on {}: configure [[users]] (name and password or ha1) or listen on a loopback address",
                self.listen
            )));
        }
        if self.realm.is_empty() || self.realm.contains('"') || self.realm.contains(':') {
            return Err(ConfigError::Refused(format!(
                "realm {:?} must be non-empty, without '\"' or ':'",
                self.realm
            )));
        }
        if self.jitter.target_ms == 0 || self.jitter.max_ms < self.jitter.target_ms {
            return Err(ConfigError::Refused(
                "[media]: need 0 < jitter_target_ms <= jitter_max_ms".to_string(),
            ));
        }
        if let Some(f) = &self.moh {
            let loaded = std::fs::read(f)
                .map_err(|e| e.to_string())
                .and_then(|b| tern_shared::prompt::load_wav(&b).map_err(|e| e.to_string()));
            if let Err(e) = loaded {
                return Err(ConfigError::Refused(format!(
                    "[media] moh = {:?}: {e}",
                    f.display()
                )));
            }
        }
        if self.t1.is_zero() || self.t2 < self.t1 || self.t4.is_zero() || self.timer_c.is_zero() {
            return Err(ConfigError::Refused(
                "timers: need 0 < t1 <= t2, t4 > 0 and timer_c > 0".to_string(),
            ));
        }
        if self.nonce_ttl.is_zero() || self.nonce_capacity == 0 {
            return Err(ConfigError::Refused(
                "nonce_ttl and nonce_capacity must be > 0".to_string(),
            ));
        }
        if self.auth_invites == Some(true) && self.users.is_empty() {
            return Err(ConfigError::Refused(
                "auth_invites = true needs [[users]]: nobody could place a call".to_string(),
            ));
        }
        if self.domains.iter().any(|d| d.is_empty()) {
            return Err(ConfigError::Refused(
                "[sip] domains: empty domain".to_string(),
            ));
        }
        if self.min_se < crate::session_timer::RFC_MIN_SE {
            return Err(ConfigError::Refused(
                "[sip] min_se: RFC 4028 allows no session interval below 90 s".to_string(),
            ));
        }
        if self.min_expires > self.max_expires || self.default_expires == 0 {
            return Err(ConfigError::Refused(
                "expires: need min_expires <= max_expires and default_expires > 0".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_load_and_other_sections_are_ignored() {
        let text = r#"
            log = "debug"
            [relay]
            ports = "30000-40000"
            [sip]
            listen = "0.0.0.0:5060"
            [[users]]
            name = "alice"
            password = "secret"
            [[users]]
            name = "bob"
            ha1 = "0123456789ABCDEF0123456789abcdef"
        "#;
        let users = load_users_toml(text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "alice");
        let a = users[0].ha1("tern");
        assert_eq!(
            a.md5.as_deref(),
            Some(&*digest::md5_hex("alice:tern:secret"))
        );
        assert_eq!(
            a.sha256.as_deref(),
            Some(&*digest::Algorithm::Sha256.hex("alice:tern:secret"))
        );
        let b = users[1].ha1("x");
        assert_eq!(b.md5.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(b.sha256, None);
        assert!(load_users_toml("").unwrap().is_empty());
    }

    #[test]
    fn bad_users_are_refused() {
        for bad in [
            "[[users]]\nname = \"a\"\n",
            "[[users]]\nname = \"a\"\npassword = \"x\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n",
            "[[users]]\nname = \"a\"\nha1 = \"xyz\"\n",
            "[[users]]\nname = \"a\"\nha1_sha256 = \"0123456789abcdef0123456789abcdef\"\n",
            "[[users]]\nname = \"a\"\npassword = \"x\"\nha1_sha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n",
            "[[users]]\nname = \"a b\"\npassword = \"x\"\n",
            "[[users]]\nname = \"a:b\"\npassword = \"x\"\n",
            "[[users]]\nname = \"\"\npassword = \"x\"\n",
            "[[users]]\nname = \"a\"\npasswd = \"x\"\n",
            "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"\n",
            "users = 3",
        ] {
            assert!(load_users_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_toml_takes_listen_and_users() {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let c = SipConfig::from_toml(listen, "[sip]\n[[users]]\nname = \"a\"\npassword = \"p\"\n")
            .unwrap();
        assert_eq!(c.listen, listen);
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.realm, "tern");
        assert!(SipConfig::from_toml(listen, "").unwrap().users.is_empty());
        assert!(SipConfig::from_toml(listen, "[[users]]\nname = 1\n").is_err());
    }

    #[test]
    fn open_registrar_only_on_loopback() {
        let mut c = SipConfig::default();
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:5060".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("refusing to run an open registrar on 0.0.0.0:5060"),
            "{e}"
        );
        c.users = load_users_toml("[[users]]\nname = \"a\"\npassword = \"x\"\n").unwrap();
        assert!(c.validate().is_ok());
        c.listen = "[::1]:5060".parse().unwrap();
        c.users.clear();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn sip_table_and_hashed_passwords() {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let sha = "ab".repeat(32);
        let text = format!(
            "[sip]\nrealm = \"example.com\"\ndomains = [\"Example.org\"]\nauth_invites = false\nnonce_ttl = 30\nnonce_capacity = 1000\nmin_expires = 10\nmax_expires = 600\ndefault_expires = 300\n[[users]]\nname = \"a\"\npassword = \"p\"\n[[users]]\nname = \"b\"\nha1_sha256 = \"{sha}\"\n"
        );
        let c = SipConfig::from_toml(listen, &text).unwrap();
        assert_eq!(c.realm, "example.com");
        assert_eq!(c.auth_invites, Some(false));
        assert_eq!(c.nonce_ttl, Duration::from_secs(30));
        assert_eq!(c.nonce_capacity, 1000);
        assert_eq!(
            (c.min_expires, c.max_expires, c.default_expires),
            (10, 600, 300)
        );
        // The password is gone; the HA1s use the configured realm.
        assert_eq!(
            c.users[0].credential,
            Credential::Ha1(digest::Ha1::from_password("a", "example.com", "p"))
        );
        assert!(!format!("{:?}", c.users).contains("\"p\""));
        assert_eq!(c.users[1].ha1("x").sha256.as_deref(), Some(&*sha));
        assert_eq!(c.users[1].ha1("x").md5, None);
        c.validate().unwrap();
        let local: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(c.is_local_host("EXAMPLE.com", local));
        assert!(c.is_local_host("example.org", local));
        assert!(c.is_local_host("10.1.1.1", local));
        assert!(c.is_local_host("127.0.0.1", local));
        assert!(!c.is_local_host("127.0.0.2", local));
        assert!(!c.is_local_host("evil.example", local));
        let mut c2 = c.clone();
        c2.domains.push("192.0.2.9".into());
        c2.domains.push("[2001:db8::9]".into());
        assert!(c2.is_local_host("192.0.2.9", local));
        assert!(c2.is_local_host("[2001:db8::9]", local));
        assert!(!c2.is_local_host("192.0.2.10", local));
        let v6 = SipConfig::from_toml("[::1]:5060".parse().unwrap(), "").unwrap();
        assert!(v6.is_local_host("[::1]", local));
        assert!(SipConfig::from_toml(listen, "[sip]\nrealm = 3\n").is_err());
        let bad = SipConfig {
            domains: vec![String::new()],
            ..SipConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = SipConfig {
            auth_invites: Some(true),
            ..SipConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("auth_invites"));
    }

    fn many_users_toml(n: usize) -> String {
        let mut text = String::with_capacity(n * 60);
        for i in 0..n {
            if i % 2 == 0 {
                text.push_str(&format!(
                    "[[users]]\nname = \"u{i}\"\npassword = \"pw{i}\"\n"
                ));
            } else {
                let h = digest::md5_hex(&format!("u{i}:tern:pw{i}"));
                text.push_str(&format!("[[users]]\nname = \"u{i}\"\nha1 = \"{h}\"\n"));
            }
        }
        text
    }

    /// 100,000 users load, with HA1s right (the time is printed by
    /// `load_100k_users_timing`, not asserted).
    #[test]
    fn loads_100k_users() {
        let text = many_users_toml(100_000);
        let listen: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        let c = SipConfig::from_toml(listen, &text).unwrap();
        assert_eq!(c.users.len(), 100_000);
        c.validate().unwrap();
        for i in [0usize, 1, 4242, 99_999] {
            let u = &c.users[i];
            assert_eq!(u.name, format!("u{i}"));
            let h = u.ha1("tern");
            assert_eq!(
                h.md5.as_deref(),
                Some(&*digest::md5_hex(&format!("u{i}:tern:pw{i}")))
            );
            assert_eq!(h.sha256.is_some(), i % 2 == 0);
        }
        let mut dup = text.clone();
        dup.push_str("[[users]]\nname = \"u77\"\npassword = \"x\"\n");
        assert!(SipConfig::from_toml(listen, &dup).is_err());
    }

    /// `cargo test -p tern-signaling --release --lib load_100k -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, run by hand"]
    fn load_100k_users_timing() {
        let text = many_users_toml(100_000);
        let listen: SocketAddr = "0.0.0.0:5060".parse().unwrap();
        let rss_kib = || {
            std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map_or(0, |pages| pages * 4)
        };
        for _ in 0..3 {
            let before = rss_kib();
            let t = std::time::Instant::now();
            let c = SipConfig::from_toml(listen, &text).unwrap();
            println!(
                "100000 users ({} bytes of TOML) loaded in {:?}; RSS {} -> {} KiB",
                text.len(),
                t.elapsed(),
                before,
                rss_kib()
            );
            assert_eq!(c.users.len(), 100_000);
        }
    }

    #[test]
    fn media_table_sets_the_calls_jitter_buffer() {
        let listen = "127.0.0.1:5060".parse().unwrap();
        let c = SipConfig::from_toml(listen, "").unwrap();
        assert_eq!(c.jitter, DEFAULT_JITTER);
        assert!(!c.jitter.enabled);
        let c = SipConfig::from_toml(
            listen,
            "[media]\njitter_buffer = true\njitter_target_ms = 40\njitter_max_ms = 120\njitter_adaptive = true\n",
        )
        .unwrap();
        assert_eq!(
            c.jitter,
            JitterSettings {
                enabled: true,
                target_ms: 40,
                max_ms: 120,
                adaptive: true
            }
        );
        c.validate().unwrap();
        let c = SipConfig::from_toml(
            listen,
            "[media]\nrecord = true\nrecording_dir = \"/tmp/rec\"\n",
        )
        .unwrap();
        assert!(c.record);
        assert_eq!(
            c.recording_dir.as_deref(),
            Some(std::path::Path::new("/tmp/rec"))
        );
        assert!(!SipConfig::default().record);
        let c = SipConfig::from_toml(listen, "[media]\njitter_target_ms = 300\n").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Refused(_))));
        assert!(SipConfig::from_toml(listen, "[media]\njiter_buffer = true\n").is_err());
    }

    #[test]
    fn media_moh_is_a_wav_checked_at_load() {
        let listen = "127.0.0.1:5060".parse().unwrap();
        let dir = std::env::temp_dir().join(format!("tern-moh-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("moh.wav");
        // A minimal 8 kHz mono 16-bit WAV: header, then 4 samples.
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36u32 + 8).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        for v in [1u16, 1] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&8000u32.to_le_bytes());
        b.extend_from_slice(&16000u32.to_le_bytes());
        for v in [2u16, 16] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(b"data");
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[1, 0, 2, 0, 3, 0, 4, 0]);
        std::fs::write(&wav, &b).unwrap();
        let c = SipConfig::from_toml(listen, &format!("[media]\nmoh = {:?}\n", wav)).unwrap();
        assert_eq!(c.moh.as_deref(), Some(wav.as_path()));
        c.validate().unwrap();
        let bad = dir.join("missing.wav");
        let c = SipConfig::from_toml(listen, &format!("[media]\nmoh = {:?}\n", bad)).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("[media] moh"), "{e}");
        std::fs::write(&bad, b"RIFF nonsense").unwrap();
        let c = SipConfig::from_toml(listen, &format!("[media]\nmoh = {:?}\n", bad)).unwrap();
        assert!(c.validate().is_err());
        assert_eq!(SipConfig::from_toml(listen, "").unwrap().moh, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn media_interfaces_table() {
        let listen = "127.0.0.1:5060".parse().unwrap();
        let c = SipConfig::from_toml(
            listen,
            "[media]\njitter_buffer = false\n\n[[media.interfaces]]\nname = \"priv\"\naddress = \"127.0.0.2\"\n\n[[media.interfaces]]\nname = \"pub\"\naddress = \"127.0.0.3\"\nadvertised = \"203.0.113.7\"\n\n[[media.interfaces]]\nname = \"pub\"\naddress = \"::1\"\n",
        )
        .unwrap();
        let got: Vec<String> = c.interfaces.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            got,
            ["priv/127.0.0.2", "pub/127.0.0.3!203.0.113.7", "pub/::1"]
        );
        assert!(SipConfig::from_toml(listen, "")
            .unwrap()
            .interfaces
            .is_empty());
        // An unknown key names itself and the table.
        let e = SipConfig::from_toml(
            listen,
            "[[media.interfaces]]\nname = \"a\"\naddress = \"10.0.0.1\"\nadvertise = \"1.2.3.4\"\n",
        )
        .unwrap_err();
        match e {
            ConfigError::UnknownKey {
                key, table, line, ..
            } => {
                assert_eq!(
                    (key.as_str(), table.as_str(), line),
                    ("advertise", "[[media.interfaces]]", 4)
                );
            }
            other => panic!("{other:?}"),
        }
        // Bad values and bad lists are refused, naming the table.
        for bad in [
            "[[media.interfaces]]\nname = \"a\"\naddress = \"10.0.0.300\"\n",
            "[[media.interfaces]]\nname = \"a b\"\naddress = \"10.0.0.1\"\n",
            "[[media.interfaces]]\nname = \"a\"\naddress = \"10.0.0.1\"\nadvertised = \"x\"\n",
            "[[media.interfaces]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[media.interfaces]]\nname = \"a\"\naddress = \"10.0.0.2\"\n",
        ] {
            match SipConfig::from_toml(listen, bad) {
                Err(ConfigError::Refused(s)) => assert!(s.contains("[[media.interfaces]]"), "{s}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // `address` is required.
        assert!(SipConfig::from_toml(listen, "[[media.interfaces]]\nname = \"a\"\n").is_err());
    }

    #[test]
    fn stream_listeners_default_on_the_standard_port_only() {
        let std_port: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let c = SipConfig::from_toml(std_port, "").unwrap();
        assert_eq!(c.tls, Some("127.0.0.1:5061".parse().unwrap()));
        assert_eq!(c.ws, Some("127.0.0.1:5066".parse().unwrap()));
        assert_eq!(c.wss, Some("127.0.0.1:7443".parse().unwrap()));
        let other: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let c = SipConfig::from_toml(other, "").unwrap();
        assert_eq!((c.tls, c.ws, c.wss), (None, None, None));
        let text = "[sip]\ntls = \"off\"\nws = \"127.0.0.1:0\"\nwss = \"[::1]:7443\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";
        let c = SipConfig::from_toml(std_port, text).unwrap();
        assert_eq!(c.tls, None);
        assert_eq!(c.ws, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.wss, Some("[::1]:7443".parse().unwrap()));
        assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("/c.pem")));
        for bad in [
            "[sip]\nws = \"localhost\"\n",
            "[sip]\ntls_cert = \"/c.pem\"\n",
            "[sip]\ntcp_max_per_source = 0\n",
        ] {
            let e = SipConfig::from_toml(std_port, bad).unwrap_err();
            assert!(matches!(e, ConfigError::Refused(_)), "{bad}: {e}");
        }
        let e = SipConfig::from_toml(std_port, "[sip]\nwws = \"off\"\n").unwrap_err();
        assert!(e.to_string().contains("wws"), "{e}");
    }

    #[test]
    fn transport_config_reads_the_sip_table() {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let c = Config::from_toml(
            listen,
            "[sip]\nrealm = \"x\"\ndrain_secs = 5\ntcp_max_connections = 7\ntcp_idle_secs = 9\ntcp_max_message = 4096\ntcp_max_per_source = 3\n",
        )
        .unwrap();
        assert_eq!(
            c.transport,
            TransportConfig {
                max_connections: 7,
                idle_timeout: Duration::from_secs(9),
                max_message: 4096,
                drain: Duration::from_secs(5),
                max_per_source: 3,
                ..TransportConfig::default()
            }
        );
        assert_eq!(c.sip.realm, "x");
        assert_eq!(
            Config::from_toml(listen, "").unwrap().transport,
            TransportConfig::default()
        );
        for bad in [
            "[sip]\ndrain_secs = \"x\"\n",
            "[sip]\ntcp_max_connections = 0\n",
            "[sip]\ntcp_max_message = 10\n",
            "[sip]\ntcp_idle_secs = 0\n",
        ] {
            assert!(Config::from_toml(listen, bad).is_err(), "{bad}");
        }
    }

    fn unknown(text: &str) -> (String, String, usize, String) {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        match Config::from_toml(listen, text) {
            Err(ConfigError::UnknownKey {
                key,
                table,
                line,
                expected,
            }) => (key, table, line, expected),
            other => panic!("{text:?}: expected UnknownKey, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_named_with_table_and_line() {
        let (key, table, line, expected) = unknown(
            "# tern\n[sip]\nrealm = \"x\"\ntcp_max_conections = 3\n\n[media]\njitter_buffer = true\n",
        );
        assert_eq!(
            (key.as_str(), table.as_str(), line),
            ("tcp_max_conections", "[sip]", 4)
        );
        assert!(expected.contains("`tcp_max_connections`"), "{expected}");
        let (key, table, line, _) = unknown("[sip]\nrealm = \"x\"\n[media]\njiter_buffer = true\n");
        assert_eq!(
            (key.as_str(), table.as_str(), line),
            ("jiter_buffer", "[media]", 4)
        );
        let (key, table, line, _) = unknown(
            "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"b\"\npasswd = \"y\"\n",
        );
        assert_eq!(
            (key.as_str(), table.as_str(), line),
            ("passwd", "[[users]]", 6)
        );
        let (key, table, line, _) = unknown("log = \"debug\"\n[sip]\nrealm = \"x\"\n");
        assert_eq!(
            (key.as_str(), table.as_str(), line),
            ("log", "the top level", 1)
        );
        let (key, _, line, _) = unknown("[sip]\n\n[relay]\nports = 1\n");
        assert_eq!((key.as_str(), line), ("relay", 3));
        // The message a user sees names both.
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let e = SipConfig::from_toml(listen, "[sip]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("line 2: unknown key `x` in [sip] (expected one of `realm`"),
            "{e}"
        );
        // A wrong type is a TOML error that names the line too.
        let e = Config::from_toml(listen, "[sip]\n\nrealm = 3\n").unwrap_err();
        assert!(matches!(e, ConfigError::Toml(_)), "{e:?}");
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn timer_c_from_the_sip_table() {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let c = SipConfig::from_toml(listen, "[sip]\ntimer_c = 45\n").unwrap();
        assert_eq!(c.timer_c, Duration::from_secs(45));
        assert!(c.validate().is_ok());
        let c = SipConfig::from_toml(listen, "[sip]\ntimer_c = 0\n").unwrap();
        assert!(c.validate().is_err());
        assert_eq!(
            SipConfig::from_toml(listen, "").unwrap().timer_c,
            Duration::from_secs(180)
        );
    }

    #[test]
    fn min_se_from_the_sip_table() {
        let listen: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        let c = SipConfig::from_toml(listen, "[sip]\nmin_se = 300\n").unwrap();
        assert_eq!(c.min_se, 300);
        assert!(c.validate().is_ok());
        let c = SipConfig::from_toml(listen, "[sip]\nmin_se = 30\n").unwrap();
        assert!(c.validate().is_err());
        assert_eq!(SipConfig::from_toml(listen, "").unwrap().min_se, 90);
        assert!(SipConfig::from_toml(listen, "[sip]\nmin_sex = 90\n").is_err());
    }
}
