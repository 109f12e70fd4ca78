//! Field views of single SDP lines (RFC 8866 §5), borrowed and parsed on
//! demand: `c=`, `o=`, `m=`, `a=` and the attributes both planes read
//! (`a=rtcp` RFC 3605, `a=rtpmap` RFC 8866 §6.6, `a=candidate` RFC 8839).
//! Re-exported by [`crate::sdp`].

use std::fmt;
use std::net::IpAddr;

use crate::table::Direction;

/// Why one field of a line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The named field is absent.
    Missing(&'static str),
    /// The named field is present but not valid.
    Invalid(&'static str),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::Missing(n) => write!(f, "missing {n}"),
            FieldError::Invalid(n) => write!(f, "bad {n}"),
        }
    }
}

impl std::error::Error for FieldError {}

/// An `a=` line's attribute (RFC 8866 §5.13): `name` or `name:value`. The
/// name is everything before the first `:`, untrimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute name (`rtpmap`, `sendonly`, …).
    pub name: &'a str,
    /// What follows the first `:`; `None` for a property attribute.
    pub value: Option<&'a str>,
}

impl<'a> Attribute<'a> {
    /// Splits the value of an `a=` line at its first `:`.
    pub fn parse(v: &'a str) -> Attribute<'a> {
        match v.split_once(':') {
            Some((name, value)) => Attribute {
                name,
                value: Some(value),
            },
            None => Attribute {
                name: v,
                value: None,
            },
        }
    }

    /// The direction of `a=sendrecv`, `a=sendonly`, `a=recvonly` or
    /// `a=inactive` (RFC 8866 §6.7); `None` for any other attribute,
    /// including those names with a value.
    pub fn direction(&self) -> Option<Direction> {
        if self.value.is_some() {
            return None;
        }
        parse_direction(self.name)
    }

    /// An ICE attribute ([`is_ice_attribute`]).
    pub fn is_ice(&self) -> bool {
        is_ice_attribute(self.name)
    }

    /// The payload type an `a=rtpmap`, `a=fmtp` (RFC 8866 §6.6, §6.15) or
    /// `a=rtcp-fb` (RFC 4585 §4.2) attribute is about: its first word, when
    /// a number 0..=255; `None` for other attributes and for `*`.
    pub fn payload_type(&self) -> Option<u8> {
        if !matches!(self.name, "rtpmap" | "fmtp" | "rtcp-fb") {
            return None;
        }
        field(self.value?, 0)?.parse().ok()
    }
}

/// Word `n` (0-based) of a line value, words being split at ASCII white
/// space (RFC 8866 §5 fields are separated by single spaces).
pub fn field(v: &str, n: usize) -> Option<&str> {
    v.split_ascii_whitespace().nth(n)
}

impl fmt::Display for Attribute<'_> {
    /// The value of the `a=` line (`name` or `name:value`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// The direction named by an attribute name (RFC 8866 §6.7.1–6.7.4).
pub fn parse_direction(name: &str) -> Option<Direction> {
    match name {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// The attribute name of a direction (RFC 8866 §6.7).
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    }
}

/// The ICE attributes of RFC 8839 §5 (`candidate`, `remote-candidates`,
/// `ice-lite`, `ice-mismatch`, `ice-ufrag`, `ice-pwd`, `ice-pacing`,
/// `ice-options`) and `end-of-candidates` (RFC 8840 §8.2).
pub const ICE_ATTRIBUTES: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
    "remote-candidates",
    "end-of-candidates",
];

/// Whether `name` is one of [`ICE_ATTRIBUTES`].
pub fn is_ice_attribute(name: &str) -> bool {
    ICE_ATTRIBUTES.contains(&name)
}

/// `IP4` or `IP6`, the SDP address type of `ip` (RFC 8866 §5.7).
pub fn addr_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// A `c=` value (RFC 8866 §5.7): `IN <addrtype> <address>[/ttl[/n]]`,
/// with an IP address (not a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection<'a> {
    /// `IN`.
    pub net_type: &'a str,
    /// `IP4`, `IP6` or whatever the line says.
    pub addr_type: &'a str,
    /// The address, without `/ttl` or `/n`.
    pub ip: IpAddr,
}

impl<'a> Connection<'a> {
    /// Reads a `c=` value (or the address part of `a=rtcp`). Words past
    /// the third are ignored.
    ///
    /// Errors: [`FieldError::Missing`] for a missing nettype, addrtype or
    /// address; [`FieldError::Invalid`] for a nettype other than `IN` or an
    /// address that is not an IP address.
    pub fn parse(v: &'a str) -> Result<Connection<'a>, FieldError> {
        let mut w = v.split_ascii_whitespace();
        let net_type = w.next().ok_or(FieldError::Missing("nettype"))?;
        let addr_type = w.next().ok_or(FieldError::Missing("addrtype"))?;
        let addr = w.next().ok_or(FieldError::Missing("connection-address"))?;
        if net_type != "IN" {
            return Err(FieldError::Invalid("nettype"));
        }
        let addr = addr.split('/').next().unwrap_or(addr);
        let ip = addr
            .parse()
            .map_err(|_| FieldError::Invalid("connection-address"))?;
        Ok(Connection {
            net_type,
            addr_type,
            ip,
        })
    }

    /// The address type names the address's family (`IP4` with an IPv4
    /// address, `IP6` with an IPv6 one).
    pub fn addr_type_matches(&self) -> bool {
        self.addr_type == addr_type(self.ip)
    }
}

/// The `c=` value for `ip`: `IN IP4 <ip>` or `IN IP6 <ip>`.
pub fn connection_value(ip: IpAddr) -> String {
    format!("IN {} {ip}", addr_type(ip))
}

/// An `o=` value (RFC 8866 §5.2): `<username> <sess-id> <sess-version>
/// <nettype> <addrtype> <unicast-address>`, split at ASCII white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `username` (`-` when none).
    pub username: &'a str,
    /// `sess-id`.
    pub session_id: &'a str,
    /// `sess-version`, as written (a decimal number in a valid body).
    pub version: &'a str,
    /// `nettype` (`IN`).
    pub net_type: &'a str,
    /// `addrtype` (`IP4`, `IP6`).
    pub addr_type: &'a str,
    /// `unicast-address`.
    pub address: &'a str,
    /// Anything after the sixth field (empty in a valid body).
    pub rest: &'a str,
}

impl<'a> Origin<'a> {
    /// Reads an `o=` value.
    ///
    /// Errors: [`FieldError::Missing`] when it has fewer than six fields.
    pub fn parse(v: &'a str) -> Result<Origin<'a>, FieldError> {
        let mut rest = v;
        let mut next = |name| {
            let t = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
            rest = &t[end..];
            Some(&t[..end])
                .filter(|f| !f.is_empty())
                .ok_or(FieldError::Missing(name))
        };
        let username = next("username")?;
        let session_id = next("sess-id")?;
        let version = next("sess-version")?;
        let net_type = next("nettype")?;
        let addr_type = next("addrtype")?;
        let address = next("unicast-address")?;
        Ok(Origin {
            username,
            session_id,
            version,
            net_type,
            addr_type,
            address,
            rest: rest.trim_matches(|c: char| c.is_ascii_whitespace()),
        })
    }

    /// The session version plus `by` (wrapping), or the version as written
    /// when it is not a number.
    pub fn bumped_version(&self, by: u64) -> String {
        self.version.parse::<u64>().map_or_else(
            |_| self.version.to_string(),
            |n| n.wrapping_add(by).to_string(),
        )
    }
}

impl fmt::Display for Origin<'_> {
    /// The `o=` value: the six fields and any extra ones, one space apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.version,
            self.net_type,
            self.addr_type,
            self.address
        )?;
        for w in self.rest.split_ascii_whitespace() {
            write!(f, " {w}")?;
        }
        Ok(())
    }
}

/// An `m=` value (RFC 8866 §5.14): `<media> <port>[/<number of ports>]
/// <proto> <fmt> ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLine<'a> {
    /// `audio`, `video`, `application`, …
    pub media: &'a str,
    /// The (first) port; 0 rejects or disables the stream (RFC 3264 §5.1).
    pub port: u16,
    /// The `/<number of ports>` suffix, unread.
    pub port_count: Option<&'a str>,
    /// The transport protocol (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, …).
    pub proto: &'a str,
    value: &'a str,
}

impl<'a> MediaLine<'a> {
    /// Reads an `m=` value. A line with no format is accepted.
    ///
    /// Errors: [`FieldError::Missing`] for a missing media, port or proto;
    /// [`FieldError::Invalid`] for a port that is not 0..=65535.
    pub fn parse(v: &'a str) -> Result<MediaLine<'a>, FieldError> {
        let mut w = v.split_ascii_whitespace();
        let media = w.next().ok_or(FieldError::Missing("media"))?;
        let port_field = w.next().ok_or(FieldError::Missing("port"))?;
        let proto = w.next().ok_or(FieldError::Missing("proto"))?;
        let (port, port_count) = match port_field.split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (port_field, None),
        };
        let port = port.parse().map_err(|_| FieldError::Invalid("port"))?;
        Ok(MediaLine {
            media,
            port,
            port_count,
            proto,
            value: v,
        })
    }

    /// The first word of an `m=` value (its media type), without reading
    /// the rest.
    pub fn media_of(v: &str) -> Option<&str> {
        field(v, 0)
    }

    /// The `<fmt>` words of an `m=` value (from the fourth word on),
    /// whether or not its port reads.
    pub fn formats_of(v: &str) -> impl Iterator<Item = &str> {
        v.split_ascii_whitespace().skip(3)
    }

    /// The `<fmt>` words, as written (payload type numbers for RTP).
    pub fn formats(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.value.split_ascii_whitespace().skip(3)
    }

    /// The formats that are RTP payload type numbers (0..=127), in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + 'a {
        self.formats()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|p| *p < 128)
    }
}

/// The value of an `a=rtcp` attribute (RFC 3605 §2.1): `<port>
/// [<nettype> <addrtype> <connection-address>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtcp<'a> {
    /// The RTCP port.
    pub port: u16,
    /// The address part, unread; `None` when only a port is given.
    pub address: Option<&'a str>,
}

impl<'a> Rtcp<'a> {
    /// Reads the value after `a=rtcp:`.
    ///
    /// Errors: [`FieldError::Missing`]/[`FieldError::Invalid`] for the
    /// port.
    pub fn parse(v: &'a str) -> Result<Rtcp<'a>, FieldError> {
        let v = v.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = v.find(|c: char| c.is_ascii_whitespace()).unwrap_or(v.len());
        let port = &v[..end];
        if port.is_empty() {
            return Err(FieldError::Missing("rtcp port"));
        }
        let port = port.parse().map_err(|_| FieldError::Invalid("rtcp port"))?;
        let rest = v[end..].trim_matches(|c: char| c.is_ascii_whitespace());
        Ok(Rtcp {
            port,
            address: (!rest.is_empty()).then_some(rest),
        })
    }

    /// The address part read as a [`Connection`]; `None` when absent.
    pub fn connection(&self) -> Option<Result<Connection<'a>, FieldError>> {
        self.address.map(Connection::parse)
    }
}

/// The value of an `a=rtcp` attribute: `<port>`, or `<port> IN IP4 <ip>`
/// (`IP6` for IPv6) when `ip` is given (RFC 3605 §2.1).
pub fn rtcp_value(port: u16, ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("{port} {}", connection_value(ip)),
        None => port.to_string(),
    }
}

/// The value of an `a=rtpmap` attribute (RFC 8866 §6.6): `<payload type>
/// <encoding name>/<clock rate>[/<encoding parameters>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// Payload type, 0..=127.
    pub pt: u8,
    /// Encoding name (compare case-insensitively).
    pub encoding: &'a str,
    /// Clock rate, Hz; `None` when missing or not a number.
    pub clock_rate: Option<u32>,
    /// Encoding parameters (channels for audio), unread.
    pub params: Option<&'a str>,
}

impl<'a> RtpMap<'a> {
    /// Reads the value after `a=rtpmap:`: the payload type, then the
    /// encoding word (`PCMU/8000`, `opus/48000/2`).
    ///
    /// Errors: [`FieldError::Missing`] for a missing payload type or
    /// encoding; [`FieldError::Invalid`] for a payload type outside
    /// 0..=127.
    pub fn parse(v: &'a str) -> Result<RtpMap<'a>, FieldError> {
        let mut w = v.split_ascii_whitespace();
        let pt = w.next().ok_or(FieldError::Missing("payload type"))?;
        let pt = pt
            .parse::<u8>()
            .ok()
            .filter(|p| *p < 128)
            .ok_or(FieldError::Invalid("payload type"))?;
        // `<encoding name>/<clock rate>[/<parameters>]` is one word; words
        // after it are ignored.
        let enc = w.next().ok_or(FieldError::Missing("encoding name"))?;
        let mut e = enc.splitn(3, '/');
        let encoding = e.next().unwrap_or(enc);
        let clock_rate = e.next().and_then(|r| r.parse().ok());
        Ok(RtpMap {
            pt,
            encoding,
            clock_rate,
            params: e.next(),
        })
    }
}

/// The value of an `a=candidate` attribute (RFC 8839 §5.1):
/// `<foundation> <component-id> <transport> <priority> <address> <port>
/// typ <cand-type> [raddr <addr>] [rport <port>] *(<name> <value>)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// 1 to 32 ice-chars.
    pub foundation: &'a str,
    /// Component: 1 for RTP, 2 for RTCP (1..=256).
    pub component: u16,
    /// `UDP` (or `TCP`), as written.
    pub transport: &'a str,
    /// Priority, 1..=2^31-1 (RFC 8445 §5.1.2).
    pub priority: u32,
    /// An IP address or an FQDN (an mDNS name), as written.
    pub address: &'a str,
    /// Port.
    pub port: u16,
    /// `host`, `srflx`, `prflx`, `relay`, or another token.
    pub typ: &'a str,
    /// `raddr`, when present.
    pub related_address: Option<&'a str>,
    /// `rport`, when present.
    pub related_port: Option<u16>,
}

impl<'a> Candidate<'a> {
    /// Reads the value after `a=candidate:`. Extension attributes after
    /// `raddr`/`rport` are skipped.
    ///
    /// Errors: [`FieldError::Missing`] for any of the first six fields or
    /// `typ`; [`FieldError::Invalid`] for a component, priority or port
    /// that is not a number in range, or a `typ` keyword missing.
    pub fn parse(v: &'a str) -> Result<Candidate<'a>, FieldError> {
        let mut w = v.split_ascii_whitespace();
        let mut field = |name| w.next().ok_or(FieldError::Missing(name));
        let foundation = field("foundation")?;
        let component = field("component-id")?
            .parse()
            .ok()
            .filter(|c| (1..=256).contains(c))
            .ok_or(FieldError::Invalid("component-id"))?;
        let transport = field("transport")?;
        let priority = field("priority")?
            .parse()
            .ok()
            .filter(|p| (1..=0x7fff_ffff).contains(p))
            .ok_or(FieldError::Invalid("priority"))?;
        let address = field("connection-address")?;
        let port = field("port")?
            .parse()
            .map_err(|_| FieldError::Invalid("port"))?;
        if field("typ")? != "typ" {
            return Err(FieldError::Invalid("typ"));
        }
        let typ = field("cand-type")?;
        let mut c = Candidate {
            foundation,
            component,
            transport,
            priority,
            address,
            port,
            typ,
            related_address: None,
            related_port: None,
        };
        while let (Some(name), Some(value)) = (w.next(), w.next()) {
            match name {
                "raddr" => c.related_address = Some(value),
                "rport" => {
                    c.related_port = Some(value.parse().map_err(|_| FieldError::Invalid("rport"))?)
                }
                _ => {}
            }
        }
        Ok(c)
    }
}
