//! Configuration of the signaling plane: [`SipConfig`] and the `[[users]]`
//! table of a TOML file.
//!
//! # TOML shape
//!
//! ```toml
//! [[users]]
//! name = "alice"
//! password = "secret"            # HA1 is computed at load: MD5(name:realm:password)
//!
//! [[users]]
//! name = "bob"
//! ha1 = "0123456789abcdef0123456789abcdef"   # 32 hex digits, MD5(name:realm:password)
//! ```
//!
//! [`load_users_toml`] reads only the top-level `users` array. Every other
//! key or table in the file (`[relay]`, `[sip]`, ...) is **ignored**: the
//! same file feeds the binary's own configuration reader. Inside a
//! `[[users]]` entry, unknown keys are rejected, since a typo there (say
//! `passwd`) would otherwise silently leave a user without credentials.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::digest;

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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Toml(s) => write!(f, "users configuration: {s}"),
            ConfigError::BadUser(s) => write!(f, "bad [[users]] entry: {s}"),
            ConfigError::Refused(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The secret a user authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A clear-text password; HA1 is derived from it with the realm when the
    /// signaling core is built, and only the HA1 is kept there.
    Password(String),
    /// HA1 = MD5(`name:realm:password`) as 32 lowercase hex digits
    /// (RFC 2617 §3.2.2.2). It must have been computed with the configured
    /// realm.
    Ha1(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => write!(f, "Password(<redacted>)"),
            Credential::Ha1(_) => write!(f, "Ha1(<redacted>)"),
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
    /// HA1 for `realm`, 32 lowercase hex digits (RFC 2617 §3.2.2.2).
    pub fn ha1(&self, realm: &str) -> String {
        match &self.credential {
            Credential::Password(p) => digest::md5_hex(&format!("{}:{realm}:{p}", self.name)),
            Credential::Ha1(h) => h.to_ascii_lowercase(),
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
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFile {
    users: Vec<RawUser>,
}

/// Reads the `[[users]]` entries of a TOML document; every other key or
/// table is ignored (see the module docs).
///
/// Errors: [`ConfigError::Toml`] if the text is not TOML or an entry has the
/// wrong shape or an unknown key; [`ConfigError::BadUser`] for an empty or
/// duplicate name, a name with `:`, both or neither of `password`/`ha1`, or
/// an `ha1` that is not 32 hex digits.
pub fn load_users_toml(text: &str) -> Result<Vec<User>, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
    let mut users: Vec<User> = Vec::with_capacity(raw.users.len());
    for u in raw.users {
        if u.name.is_empty() || u.name.contains(':') || u.name.contains(char::is_whitespace) {
            return Err(ConfigError::BadUser(format!(
                "user name {:?} must be non-empty, without ':' or white space",
                u.name
            )));
        }
        if users.iter().any(|x| x.name == u.name) {
            return Err(ConfigError::BadUser(format!(
                "user {:?} is listed twice",
                u.name
            )));
        }
        let credential = match (u.password, u.ha1) {
            (Some(p), None) => Credential::Password(p),
            (None, Some(h)) => {
                if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ConfigError::BadUser(format!(
                        "user {:?}: ha1 must be 32 hex digits (MD5 of name:realm:password)",
                        u.name
                    )));
                }
                Credential::Ha1(h.to_ascii_lowercase())
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::BadUser(format!(
                    "user {:?}: give either password or ha1, not both",
                    u.name
                )))
            }
            (None, None) => {
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

/// Configuration of the SIP signaling plane.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP address to listen on. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The address put in our Via and Contact headers when `listen` is a
    /// wildcard address. `None`: the relay's media address is used.
    pub advertise: Option<IpAddr>,
    /// Digest realm (RFC 2617 §3.2.1).
    pub realm: String,
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
    /// `stale=true` (RFC 2617 §3.2.1).
    pub nonce_ttl: Duration,
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
    /// Value of our `User-Agent`/`Server` headers.
    pub user_agent: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060),
            advertise: None,
            realm: "tern".into(),
            users: Vec::new(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86400,
            nonce_ttl: Duration::from_secs(300),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            user_agent: concat!("tern/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

impl SipConfig {
    /// Defaults, listening on `listen`, with the `[[users]]` of the TOML
    /// `text` (every other key or table is ignored; an empty text means no
    /// users). Call [`SipConfig::validate`] before serving.
    ///
    /// Errors: those of [`load_users_toml`].
    pub fn from_toml(listen: SocketAddr, text: &str) -> Result<SipConfig, ConfigError> {
        Ok(SipConfig {
            listen,
            users: load_users_toml(text)?,
            ..SipConfig::default()
        })
    }

    /// Checks that the configuration is safe and coherent.
    ///
    /// Errors: [`ConfigError::Refused`] when `listen` is not a loopback
    /// address and no user is configured (an open registrar and call relay
    /// on a reachable address), when the realm is empty or contains `"`,
    /// or when the timers or expiry bounds make no sense.
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
        if self.t1.is_zero() || self.t2 < self.t1 || self.t4.is_zero() {
            return Err(ConfigError::Refused(
                "timers: need 0 < t1 <= t2 and t4 > 0".to_string(),
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
        assert_eq!(users[0].ha1("tern"), digest::md5_hex("alice:tern:secret"));
        assert_eq!(users[1].ha1("x"), "0123456789abcdef0123456789abcdef");
        assert!(load_users_toml("").unwrap().is_empty());
    }

    #[test]
    fn bad_users_are_refused() {
        for bad in [
            "[[users]]\nname = \"a\"\n",
            "[[users]]\nname = \"a\"\npassword = \"x\"\nha1 = \"0123456789abcdef0123456789abcdef\"\n",
            "[[users]]\nname = \"a\"\nha1 = \"xyz\"\n",
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
        let c = SipConfig::from_toml(
            listen,
            "[sip]\nx = 1\n[[users]]\nname = \"a\"\npassword = \"p\"\n",
        )
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
}
