//! SIP messages: parsing (normalising pass, then rsip, then the checks of
//! RFC 3261 §8.1.1 / §8.2.2 and RFC 4475). Building them is
//! `crate::build`'s.
//!
//! rsip gives the start line, the Request-URI and the header list; the
//! header values we act on (Via, From/To/Contact name-addr, CSeq) are read by
//! the small tolerant parsers here, which accept the LWS and parameter forms
//! of RFC 3261 §25 that rsip's typed headers stumble on.
//!
//! Nothing here panics on input.

use std::fmt;
use std::net::IpAddr;

use crate::method::Method;
use crate::normalize::{normalize, FrameError, Normalized};

/// A header parameter: name and optional value (quotes kept).
pub type Param = (String, Option<String>);

/// A parsed Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper case (`UDP`, `TCP`, ...).
    pub transport: String,
    /// sent-by host (IPv6 without brackets).
    pub host: String,
    /// sent-by port, if given.
    pub port: Option<u16>,
    /// Via parameters in order.
    pub params: Vec<Param>,
}

impl Via {
    /// Parses one Via value; `None` when it is malformed (RFC 4475 §3.1.2.1).
    pub fn parse(s: &str) -> Option<Via> {
        let (head, params) = split_head_params(s)?;
        let mut parts = head.splitn(3, '/');
        let proto = parts.next()?.trim();
        let version = parts.next()?.trim();
        let rest = parts.next()?.trim();
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        let mut words = rest.split_whitespace();
        let transport = words.next()?.to_ascii_uppercase();
        let sent_by: String = words.collect();
        if sent_by.is_empty() {
            return None;
        }
        let (host, port) = split_host_port(&sent_by)?;
        Some(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// Value of parameter `name` (case-insensitive); `Some("")` if it has
    /// no value.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} ", self.transport)?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

/// A From, To or Contact value: `[display] <uri>;params` or `uri;params`
/// (RFC 3261 §20.10, §20.20, §20.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted as given (escapes kept).
    pub display: Option<String>,
    /// The URI, as text.
    pub uri: String,
    /// Header parameters (tag, expires, q, ...).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses a name-addr or addr-spec with parameters; `None` if malformed
    /// (unbalanced quotes or brackets, empty parameters, no URI scheme).
    pub fn parse(s: &str) -> Option<NameAddr> {
        let s = s.trim();
        let (display, uri, rest) = if let Some(stripped) = s.strip_prefix('"') {
            let end = closing_quote(stripped)?;
            let display = stripped[..end].to_string();
            let after = stripped[end + 1..].trim_start();
            let inner = after.strip_prefix('<')?;
            let close = inner.find('>')?;
            (Some(display), inner[..close].trim(), &inner[close + 1..])
        } else if let Some(open) = s.find('<') {
            let display = s[..open].trim();
            if display.contains('"') || display.contains('>') {
                return None;
            }
            let inner = &s[open + 1..];
            let close = inner.find('>')?;
            let display = (!display.is_empty()).then(|| display.to_string());
            (display, inner[..close].trim(), &inner[close + 1..])
        } else {
            let end = s.find(';').unwrap_or(s.len());
            (None, s[..end].trim(), &s[end..])
        };
        if uri.is_empty() || !uri.contains(':') || uri.contains(char::is_whitespace) {
            return None;
        }
        let rest = rest.trim();
        let params = if rest.is_empty() {
            Vec::new()
        } else {
            parse_params(rest.strip_prefix(';')?)?
        };
        Some(NameAddr {
            display,
            uri: uri.to_string(),
            params,
        })
    }

    /// Value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").filter(|t| !t.is_empty())
    }

    /// The user part of the URI (`user` of `sip:user@host`).
    pub fn user(&self) -> Option<&str> {
        uri_user(&self.uri)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A parsed CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2**31 for requests we send, up to 2**32-1 read.
    pub num: u32,
    /// Method token.
    pub method: String,
}

impl CSeq {
    /// Parses `num METHOD`; `None` if the number is not 32-bit or parts miss.
    pub fn parse(s: &str) -> Option<CSeq> {
        let mut w = s.split_whitespace();
        let num = w.next()?;
        let method = w.next()?;
        if w.next().is_some() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 12 {
            return None;
        }
        Some(CSeq {
            num: num.parse().ok()?,
            method: method.to_string(),
        })
    }
}

/// The user part of a `sip:`/`sips:`/`tel:` URI text.
pub fn uri_user(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once(':')?;
    let end = rest.find(['?', '>']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    // Drop a password (user:password@host).
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    (!user.is_empty()).then_some(user)
}

/// The host part of a SIP URI text (IPv6 without brackets) and its port.
pub fn uri_host_port(uri: &str) -> Option<(String, Option<u16>)> {
    let (_, rest) = uri.split_once(':')?;
    let rest = match rest.rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    split_host_port(&rest[..end])
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if let Some(v6) = s.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = v6[..close].to_string();
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let h = h.trim();
            (!h.is_empty()).then_some(())?;
            Some((h.to_string(), Some(p.trim().parse().ok()?)))
        }
        Some(_) => Some((s.to_string(), None)), // bare IPv6
        None => (!s.is_empty()).then(|| (s.to_string(), None)),
    }
}

/// Index of the closing `"` in `s` (which starts after the opening one).
fn closing_quote(s: &str) -> Option<usize> {
    let mut esc = false;
    for (i, ch) in s.char_indices() {
        if esc {
            esc = false;
        } else if ch == '\\' {
            esc = true;
        } else if ch == '"' {
            return Some(i);
        }
    }
    None
}

/// Splits `value` into the part before the first `;` and its parameters.
fn split_head_params(s: &str) -> Option<(&str, Vec<Param>)> {
    match s.find(';') {
        Some(i) => Some((&s[..i], parse_params(&s[i + 1..])?)),
        None => Some((s, Vec::new())),
    }
}

/// Parses `a=b;c;d="e;f"` (the part after the first `;`). Empty parameters
/// or names are malformed.
fn parse_params(s: &str) -> Option<Vec<Param>> {
    let mut out = Vec::new();
    let (parts, quotes_closed) = crate::normalize::split_unquoted(s, b';', false);
    if !quotes_closed {
        return None;
    }
    for p in parts {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (p.trim(), None),
        };
        if n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        {
            return None;
        }
        out.push((n.to_string(), v));
    }
    Some(out)
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref().unwrap_or(""))
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// The start line of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A request; `method` is the upper-case token.
    Request {
        /// The method token, e.g. `INVITE`.
        method: String,
        /// The Request-URI as rsip parsed it; `None` when rsip could not
        /// (unknown scheme, some escapes): then only `uri_text` is known.
        uri: Option<rsip::Uri>,
        /// The Request-URI text as received.
        uri_text: String,
    },
    /// A response.
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase as received (may be empty).
        reason: String,
    },
}

/// A parsed, checked SIP message.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Start line.
    pub start: Start,
    /// Normalised header lines and body.
    pub raw: Normalized,
    /// All Via values, topmost first (at least one; see [`Msg::vias`]).
    vias: Vec<Via>,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Call-ID.
    pub call_id: String,
    /// CSeq.
    pub cseq: CSeq,
}

impl Msg {
    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The request method as a [`Method`], `None` for a response.
    pub fn request_method(&self) -> Option<Method> {
        self.method().map(Method::parse)
    }

    /// The status code, `None` for a request.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            Start::Response { code, .. } => Some(*code),
            Start::Request { .. } => None,
        }
    }

    /// The Request-URI scheme (`sip`, `sips`, `tel`, ...), lower case.
    pub fn uri_scheme(&self) -> Option<String> {
        let t = self.uri_text()?;
        Some(t.split_once(':')?.0.to_ascii_lowercase())
    }

    /// The Request-URI text, `None` for a response.
    pub fn uri_text(&self) -> Option<&str> {
        match &self.start {
            Start::Request { uri_text, .. } => Some(uri_text),
            Start::Response { .. } => None,
        }
    }

    /// The user part of the Request-URI.
    pub fn uri_user(&self) -> Option<String> {
        match &self.start {
            Start::Request { uri, uri_text, .. } => uri
                .as_ref()
                .and_then(|u| u.user())
                .map(str::to_string)
                .or_else(|| uri_user(uri_text).map(str::to_string)),
            Start::Response { .. } => None,
        }
    }

    /// First value of a header (case-insensitive; compact names work).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.get(name)
    }

    /// All values of a header.
    pub fn headers<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.raw.get_all(name)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.raw.body
    }

    /// All Via values, topmost first; never empty.
    pub fn vias(&self) -> &[Via] {
        &self.vias
    }

    /// The topmost Via.
    pub fn top_via(&self) -> &Via {
        // `parse` guarantees at least one Via; index 0 always exists.
        &self.vias[0]
    }

    /// Whether the body is SDP (Content-Type application/sdp, non-empty).
    pub fn has_sdp(&self) -> bool {
        !self.raw.body.is_empty()
            && self
                .header("Content-Type")
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/sdp")
                })
                .unwrap_or(false)
    }

    /// Contact values (`*` yields `Err(())`-free `None` entries filtered;
    /// see [`Msg::contact_star`]).
    pub fn contacts(&self) -> Vec<NameAddr> {
        self.headers("Contact")
            .filter(|v| v.trim() != "*")
            .filter_map(NameAddr::parse)
            .collect()
    }

    /// Whether a `Contact: *` is present.
    pub fn contact_star(&self) -> bool {
        self.headers("Contact").any(|v| v.trim() == "*")
    }

    /// The Expires header in seconds, saturated at 2**32-1; `None` if
    /// absent or not a number (treated as absent, RFC 4475 §3.1.2.4).
    pub fn expires(&self) -> Option<u32> {
        parse_delta(self.header("Expires")?)
    }

    /// Max-Forwards, `None` if absent.
    pub fn max_forwards(&self) -> Option<u32> {
        self.header("Max-Forwards")?.trim().parse().ok()
    }
}

/// Parses a delta-seconds value, saturating (RFC 3261 §20.19).
pub fn parse_delta(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone)]
pub enum ParseError {
    /// White space only (keep-alive): ignore silently.
    KeepAlive,
    /// A malformed request, to be answered with `status` (400, 505 or 501)
    /// when `salvage` still holds a Via (else dropped).
    BadRequest {
        /// 400 Bad Request, 501 Not Implemented (unknown method) or
        /// 505 Version Not Supported.
        status: u16,
        /// What was wrong, for the log.
        detail: String,
        /// The normalised header lines, to address the answer.
        salvage: Normalized,
    },
    /// A malformed response or unparsable garbage: dropped and counted.
    Drop {
        /// What was wrong, for the log.
        detail: String,
    },
}

/// What the start line looks like before rsip sees it.
enum StartShape {
    Request { method: String, version: String },
    Response,
    Garbage,
}

/// Whether `w` starts with `SIP/` (any case); never slices inside a char.
fn has_sip_prefix(w: &str) -> bool {
    w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

fn start_shape(start: &str) -> StartShape {
    let words: Vec<&str> = start.split_whitespace().collect();
    match words.first() {
        Some(w) if has_sip_prefix(w) => StartShape::Response,
        Some(m) if words.len() >= 3 => StartShape::Request {
            method: (*m).to_string(),
            version: words.last().copied().unwrap_or_default().to_string(),
        },
        _ => StartShape::Garbage,
    }
}

/// Parses and checks one datagram (see the module docs).
pub fn parse(datagram: &[u8]) -> Result<Msg, ParseError> {
    let (norm, frame_err) = match normalize(datagram) {
        Ok(n) => (n, None),
        Err((FrameError::KeepAlive, _)) => return Err(ParseError::KeepAlive),
        Err((e, n)) => (n, Some(e)),
    };
    let shape = start_shape(&norm.start);
    let bad = |status: u16, detail: String, norm: Normalized| -> ParseError {
        match shape {
            StartShape::Request { .. } => ParseError::BadRequest {
                status,
                detail,
                salvage: norm,
            },
            _ => ParseError::Drop { detail },
        }
    };
    if let StartShape::Request { version, .. } = &shape {
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            let status = if version.len() > 4 && has_sip_prefix(version) {
                505
            } else {
                400
            };
            return Err(bad(status, format!("version {version:?}"), norm));
        }
    }
    if let StartShape::Garbage = shape {
        return Err(ParseError::Drop {
            detail: format!("no start line: {:?}", truncate(&norm.start, 60)),
        });
    }
    if let Some(e) = frame_err {
        // RFC 4475 §3.3.9: with several Content-Length values the framing
        // is unknowable; over UDP the datagram is discarded, not answered.
        if e == FrameError::MultipleContentLength {
            return Err(ParseError::Drop {
                detail: e.to_string(),
            });
        }
        return Err(bad(400, e.to_string(), norm));
    }
    // rsip sees a canonical start line (single spaces, a reason phrase);
    // the received one stays in `norm.start`.
    let words: Vec<&str> = norm.start.split_whitespace().collect();
    let canonical = match &shape {
        StartShape::Response if words.len() == 2 => format!("{} {} X", words[0], words[1]),
        StartShape::Request { .. } if words.len() == 3 => words.join(" "),
        _ => norm.start.clone(),
    };
    let for_rsip = |start: String| {
        let mut n = Normalized {
            start,
            headers: norm.headers.clone(),
            body: norm.body.clone(),
        };
        let bytes = n.to_bytes();
        n.body.clear();
        rsip::SipMessage::try_from(bytes.as_slice())
    };
    let mut uri_ok = true;
    let parsed = match for_rsip(canonical) {
        Ok(m) => m,
        Err(e) => {
            // A Request-URI rsip cannot read (RFC 4475 semiuri.dat, unknown
            // schemes, some IPv6 forms): parse the rest with a placeholder
            // and keep the URI text; the core answers 416 where it matters.
            let retry = match (&shape, words.len()) {
                (StartShape::Request { method, .. }, 3) if known_method(method) => {
                    for_rsip(format!("{method} sip:uri.invalid SIP/2.0")).ok()
                }
                _ => None,
            };
            match retry {
                Some(m) => {
                    uri_ok = false;
                    m
                }
                None => {
                    let status = match &shape {
                        StartShape::Request { method, .. } if !known_method(method) => 501,
                        _ => 400,
                    };
                    return Err(bad(status, format!("rsip: {e}"), norm));
                }
            }
        }
    };
    let start = match parsed {
        rsip::SipMessage::Request(r) => {
            let method = r.method.to_string();
            let raw_method = words.first().copied().unwrap_or_default();
            if method != raw_method {
                // rsip matches methods case-insensitively; SIP does not.
                return Err(bad(501, format!("unknown method {raw_method:?}"), norm));
            }
            let uri_text = words.get(1).copied().unwrap_or_default().to_string();
            if unbracketed_ipv6(&uri_text) {
                return Err(bad(
                    400,
                    format!("IPv6 host without [ ] in {uri_text:?} (RFC 5118 §4.2)"),
                    norm,
                ));
            }
            Start::Request {
                method,
                uri: uri_ok.then_some(r.uri),
                uri_text,
            }
        }
        rsip::SipMessage::Response(r) => {
            let code = r.status_code.code();
            if !(100..=699).contains(&code) {
                return Err(ParseError::Drop {
                    detail: format!("status code {code}"),
                });
            }
            let reason = norm
                .start
                .splitn(3, ' ')
                .nth(2)
                .unwrap_or_default()
                .to_string();
            Start::Response { code, reason }
        }
    };
    match check(start, norm.clone()) {
        Ok(m) => Ok(m),
        Err(detail) => Err(bad(400, detail, norm)),
    }
}

/// Whether a `sip:`/`sips:` URI names an IPv6 host without the brackets
/// RFC 3261 §25.1 requires (`sip:2001:db8::10`, RFC 5118 §4.2): more than
/// one colon in the host-port part.
pub fn unbracketed_ipv6(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return false;
    }
    let rest = rest.split('?').next().unwrap_or_default();
    // The user part may hold ';' (RFC 4475 semiuri.dat): find '@' first.
    let host = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let host = host.split(';').next().unwrap_or_default();
    !host.starts_with('[') && host.matches(':').count() > 1
}

/// A SIP or SIPS URI split for comparison (RFC 3261 §19.1.4): scheme and
/// host lowercased, escapes decoded, parameter names lowercased.
#[derive(Debug, PartialEq, Eq)]
struct UriKey {
    scheme: String,
    /// `user[:password]`, escapes decoded, case kept.
    userinfo: Option<String>,
    host: String,
    port: Option<u16>,
    /// `(name, value)`; values lowercased and decoded.
    params: Vec<(String, Option<String>)>,
}

/// Decodes `%XX` escapes; a malformed escape is kept as written.
fn pct_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn uri_key(uri: &str) -> Option<UriKey> {
    let uri = uri.trim();
    let uri = match uri.strip_prefix('<') {
        Some(inner) => inner.strip_suffix('>')?,
        None => uri,
    };
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "sip" && scheme != "sips" {
        return None;
    }
    // Headers (`?h=v`) are not compared.
    let rest = rest.split('?').next().unwrap_or_default();
    // The user part may hold ';' (RFC 4475 semiuri.dat): find '@' first.
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(pct_decode(&rest[..at])), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut parts = hostpart.split(';');
    let (host, port) = split_host_port(parts.next().unwrap_or_default())?;
    // IP literals compare as addresses (`::1` = `0:0::1`), names
    // case-insensitively.
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    };
    let mut params = Vec::new();
    for p in parts.filter(|p| !p.trim().is_empty()) {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(pct_decode(v.trim()).to_ascii_lowercase())),
            None => (p, None),
        };
        params.push((pct_decode(n.trim()).to_ascii_lowercase(), v));
    }
    Some(UriKey {
        scheme,
        userinfo,
        host,
        port,
        params,
    })
}

/// Whether URIs `a` and `b` designate the same resource, as the digest
/// `uri` check needs it (RFC 2617 §3.2.2.5, RFC 7616 §3.4.6).
///
/// SIP and SIPS URIs compare as RFC 3261 §19.1.4 says: scheme and host
/// case-insensitively (IP literals as addresses), user and password
/// case-sensitively, escapes decoded, and a port compared as written (an
/// absent port does not equal an explicit 5060). The parameters `user`,
/// `ttl`, `method`, `maddr` and `transport` must match when either URI has
/// them; any other parameter only when both have it. Headers (`?...`)
/// are not compared (a deviation: no client hashes them apart from the
/// Request-URI). Other schemes (`tel:`, ...) and unparsable text must be
/// equal byte for byte, bar surrounding white space.
pub fn same_resource(a: &str, b: &str) -> bool {
    let (ka, kb) = match (uri_key(a), uri_key(b)) {
        (Some(ka), Some(kb)) => (ka, kb),
        (None, None) => return a.trim() == b.trim(),
        _ => return false,
    };
    if ka.scheme != kb.scheme
        || ka.userinfo != kb.userinfo
        || ka.host != kb.host
        || ka.port != kb.port
    {
        return false;
    }
    const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
    let get = |k: &UriKey, n: &str| {
        k.params
            .iter()
            .find(|(pn, _)| pn == n)
            .map(|(_, v)| v.clone())
    };
    let names = ka.params.iter().chain(kb.params.iter()).map(|(n, _)| n);
    for n in names {
        match (get(&ka, n), get(&kb, n)) {
            (Some(x), Some(y)) if x != y => return false,
            (Some(_), None) | (None, Some(_)) if MUST_MATCH.contains(&n.as_str()) => return false,
            _ => {}
        }
    }
    true
}

/// Whether `short` is the bare `sip:host[:port]` form of `full`: no user
/// part and no parameters, with `full`'s scheme, host and port (compared
/// as in [`same_resource`]). SIPp's `[authentication]` keyword hashes
/// this form (`sip:[remote_ip]:[remote_port]`) rather than the
/// Request-URI of an INVITE to `sip:user@host:port`.
pub fn host_form_of(short: &str, full: &str) -> bool {
    match (uri_key(short), uri_key(full)) {
        (Some(s), Some(f)) => {
            s.userinfo.is_none()
                && s.params.is_empty()
                && s.scheme == f.scheme
                && s.host == f.host
                && s.port == f.port
        }
        _ => false,
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Whether rsip knows `method` (upper case).
fn known_method(method: &str) -> bool {
    [
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    ]
    .contains(&method)
}

/// Mandatory header checks (RFC 3261 §8.1.1, §8.2.2; RFC 4475 §3.1.2, §3.3.1, §3.3.8).
fn check(start: Start, raw: Normalized) -> Result<Msg, String> {
    let one = |name: &str| -> Result<&str, String> {
        let mut it = raw.get_all(name);
        let v = it.next().ok_or_else(|| format!("no {name}"))?;
        if it.next().is_some() {
            return Err(format!("several {name} values"));
        }
        Ok(v)
    };
    let vias = raw
        .get_all("Via")
        .map(|v| Via::parse(v).ok_or_else(|| format!("bad Via {v:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if vias.is_empty() {
        return Err("no Via".into());
    }
    let from = one("From")?;
    let from = NameAddr::parse(from).ok_or_else(|| format!("bad From {from:?}"))?;
    let to = one("To")?;
    let to = NameAddr::parse(to).ok_or_else(|| format!("bad To {to:?}"))?;
    let call_id = one("Call-ID")?.trim().to_string();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err("bad Call-ID".into());
    }
    let cseq_text = one("CSeq")?;
    let cseq = CSeq::parse(cseq_text).ok_or_else(|| format!("bad CSeq {cseq_text:?}"))?;
    if let Start::Request { method, .. } = &start {
        if &cseq.method != method {
            return Err(format!("CSeq method {} in a {method}", cseq.method));
        }
        let mut mf = raw.get_all("Max-Forwards");
        if let Some(v) = mf.next() {
            let ok = v.trim().parse::<u32>().map(|n| n <= 255).unwrap_or(false);
            if !ok || mf.next().is_some() {
                return Err(format!("bad Max-Forwards {v:?}"));
            }
        }
        for c in raw.get_all("Contact") {
            if c.trim() != "*" && NameAddr::parse(c).is_none() {
                return Err(format!("bad Contact {c:?}"));
            }
        }
        if raw.get_all("Content-Type").count() > 1 {
            return Err("several Content-Type values".into());
        }
    }
    Ok(Msg {
        start,
        raw,
        vias,
        from,
        to,
        call_id,
        cseq,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_resource_compares_as_sip_uris() {
        use super::same_resource as same;
        // RFC 3261 §19.1.4: equivalent forms.
        assert!(same("sip:example.com", "sip:EXAMPLE.com"));
        assert!(same(
            "SIP:alice@AtLanTa.CoM;Transport=UDP",
            "sip:alice@atlanta.com;transport=udp"
        ));
        assert!(same(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=Tcp"
        ));
        assert!(same(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(same("sip:[::1]:5060", "sip:[0:0::1]:5060"));
        assert!(same("<sip:bob@h>", "sip:bob@h"));
        assert!(same("sip:bob@h?subject=x", "sip:bob@h"));
        assert!(same(" tel:+1234 ", "tel:+1234"));
        assert!(same(
            "sip:+1;phone-context=x@h;user=phone",
            "sip:+1;phone-context=x@h;user=phone"
        ));
        // Not equivalent.
        assert!(!same("sip:ALICE@atlanta.com", "sip:alice@atlanta.com"));
        assert!(!same("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!same("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
        assert!(!same("sip:bob@biloxi.com", "sip:bob@biloxi.org"));
        assert!(!same("sip:bob@h", "sip:h"));
        assert!(!same("sip:bob@h:5070", "sip:bob@h:5080"));
        assert!(!same("sip:bob@h;transport=udp", "sip:bob@h"));
        assert!(!same("sip:bob@h;a=1", "sip:bob@h;a=2"));
        assert!(!same("sip:bob@h", "tel:+1234"));
        assert!(!same("tel:+1234", "TEL:+1234"));
        // Unparsable text compares byte for byte.
        assert!(same("sip:", "sip:"));
        assert!(!same("sip:", "sip:h"));
        assert!(same("", ""));
        // Malformed escapes are kept, not a panic.
        assert!(same("sip:a%@h", "sip:a%@h"));
        assert!(same("sip:a%4@h", "sip:a%4@h"));
        assert!(!same("sip:a%41@h", "sip:a%4@h"));
    }

    #[test]
    fn host_form_is_the_request_uri_without_user_and_params() {
        use super::host_form_of as hf;
        assert!(hf("sip:127.0.0.1:5060", "sip:bob@127.0.0.1:5060"));
        assert!(hf("sip:EXAMPLE.com", "sip:bob@example.com;transport=tcp"));
        assert!(hf("sip:h", "sip:h"));
        assert!(!hf("sip:h", "sip:bob@h:5060"));
        assert!(!hf("sip:h:5070", "sip:bob@h:5060"));
        assert!(!hf("sips:h", "sip:bob@h"));
        assert!(!hf("sip:other", "sip:bob@h"));
        assert!(!hf("sip:alice@h", "sip:bob@h"));
        assert!(!hf("sip:h;transport=tcp", "sip:bob@h"));
        assert!(!hf("tel:1", "tel:1"));
    }

    #[test]
    fn unbracketed_ipv6_in_sip_uris() {
        use super::unbracketed_ipv6 as u;
        assert!(u("sip:2001:db8::10"));
        assert!(u("sip:user@2001:db8::10;transport=udp"));
        assert!(!u("sip:[2001:db8::10]:5070"));
        assert!(!u("sip:user;par=u%40example.net@example.com"));
        assert!(!u("sip:example.com:5060"));
        assert!(!u("tel:+1:2:3"));
    }

    use super::*;

    #[test]
    fn via_forms() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;rport").unwrap();
        assert_eq!(v.host, "2001:db8::9:1");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.param("rport"), Some(""));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;rport"
        );
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_none());
        assert!(Via::parse(";").is_none());
        assert!(Via::parse("").is_none());
        assert!(Via::parse("SIP/2.0/UDP").is_none());
        assert!(Via::parse("SIP/2.0/UDP host:99999").is_none());
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.uri, "sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(a.user(), Some("jdrosen"));
        let a =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag(), Some("1918181833n"));
        let a = NameAddr::parse("Bob <sip:bob@h:5070;transport=udp>;expires=60").unwrap();
        assert_eq!(a.display.as_deref(), Some("Bob"));
        assert_eq!(a.param("expires"), Some("60"));
        assert_eq!(uri_host_port(&a.uri), Some(("h".into(), Some(5070))));
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_none());
        assert!(NameAddr::parse("\"Joe <sip:joe@example.org>").is_none());
        assert!(NameAddr::parse("<sip:joe@example.org").is_none());
        assert!(NameAddr::parse("").is_none());
        assert_eq!(
            uri_user("sip:user;par=u%40example.net@example.com"),
            Some("user;par=u%40example.net")
        );
        assert_eq!(uri_user("sip:127.0.0.1:5070"), None);
        assert_eq!(uri_user("sip:a:pw@h"), Some("a"));
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().num, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_none());
        assert!(CSeq::parse("4294967296 REGISTER").is_none());
        assert!(CSeq::parse("1").is_none());
    }

    const OPTIONS: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn rejects() {
        let mm = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        assert!(matches!(
            parse(mm.as_bytes()),
            Err(ParseError::BadRequest { status: 400, .. })
        ));
        let v7 = OPTIONS.replace("sip:a@b SIP/2.0", "sip:a@b SIP/7.0");
        assert!(matches!(
            parse(v7.as_bytes()),
            Err(ParseError::BadRequest { status: 505, .. })
        ));
        let unk = OPTIONS
            .replace("OPTIONS sip", "FOO sip")
            .replace("1 OPTIONS", "1 FOO");
        assert!(matches!(
            parse(unk.as_bytes()),
            Err(ParseError::BadRequest { status: 501, .. })
        ));
        let lower = OPTIONS
            .replace("OPTIONS sip", "options sip")
            .replace("1 OPTIONS", "1 options");
        assert!(matches!(
            parse(lower.as_bytes()),
            Err(ParseError::BadRequest { status: 501, .. })
        ));
        let nocallid = OPTIONS.replace("Call-ID: c1\r\n", "");
        assert!(matches!(
            parse(nocallid.as_bytes()),
            Err(ParseError::BadRequest { status: 400, .. })
        ));
        assert!(matches!(parse(b"\r\n\r\n"), Err(ParseError::KeepAlive)));
        assert!(matches!(parse(b"hello"), Err(ParseError::Drop { .. })));
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(matches!(
            parse(resp.as_bytes()),
            Err(ParseError::Drop { .. })
        ));
    }
}
