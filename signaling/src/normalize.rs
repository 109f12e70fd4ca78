//! The normalising pass in front of rsip: one small, tested place that turns
//! what RFC 3261 allows (and rsip 0.4 does not parse) into plain
//! `Name: value` lines, and frames the body by Content-Length over UDP.
//!
//! It handles (RFC 3261 §7.3, §7.5, §18.3, §20):
//! - leading CRLFs before the start line (ignored) and keep-alives;
//! - bare LF line ends;
//! - folded header lines (continuation lines that start with SP or HT);
//! - white space before and after the colon;
//! - compact header forms (`v: f: t: i: m: l: c: k: s: e: o: r: b: u: x:`);
//! - comma-joined multi-value headers Via, Contact, Route, Record-Route
//!   (split outside quotes and angle brackets; `Contact: *` kept);
//! - Content-Length framing: the body is cut to its length (trailing bytes
//!   of a datagram are ignored), a length larger than the body, a negative or
//!   non-numeric one, or several different values are framing errors.
//!
//! It never panics on input; it works on bytes and lossily decoded text.

use std::fmt;

/// Why a datagram could not be framed. Each variant keeps the normalised
/// header lines when they could be read, so a 400 can still be addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Only white space (a CRLF keep-alive, RFC 5626 §3.5.1): ignore.
    KeepAlive,
    /// A header line without a colon, or with an empty or invalid name.
    BadHeaderLine(String),
    /// Content-Length is not a non-negative integer.
    BadContentLength(String),
    /// Content-Length larger than the bytes that arrived (RFC 4475 §3.1.2.2).
    ContentLengthTooLarge {
        /// The Content-Length value.
        declared: u64,
        /// Body bytes present.
        actual: usize,
    },
    /// Several Content-Length values that differ (RFC 4475 §3.3.9); the
    /// datagram is dropped, not answered.
    MultipleContentLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::KeepAlive => write!(f, "keep-alive"),
            FrameError::BadHeaderLine(l) => write!(f, "bad header line {l:?}"),
            FrameError::BadContentLength(v) => write!(f, "bad Content-Length {v:?}"),
            FrameError::ContentLengthTooLarge { declared, actual } => {
                write!(f, "Content-Length {declared} but only {actual} body bytes")
            }
            FrameError::MultipleContentLength => write!(f, "several Content-Length values"),
        }
    }
}

/// A normalised message: start line, header lines and the framed body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalized {
    /// The start line as received (no line end).
    pub start: String,
    /// Header fields in order, names in canonical form, one value per entry
    /// for the multi-value headers that were split.
    pub headers: Vec<(String, String)>,
    /// The body, cut to Content-Length when one was given.
    pub body: Vec<u8>,
}

impl Normalized {
    /// The canonical wire form rsip parses: `start CRLF (name: value CRLF)* CRLF body`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(self.start.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The first value of header `name` (case-insensitive, canonical or
    /// compact name).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// All values of header `name` (case-insensitive).
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical_name(name);
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.as_str())
    }
}

/// Long form of a compact header name (RFC 3261 §7.3.3, RFC 3515, RFC 3892,
/// RFC 4028, RFC 6665); other names are returned as given, except that the
/// long forms we use are put in canonical case.
pub fn canonical_name(name: &str) -> String {
    const COMPACT: &[(&str, &str)] = &[
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
    ];
    const LONG: &[&str] = &[
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Content-Type",
        "Max-Forwards",
        "Expires",
        "Route",
        "Record-Route",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Min-Expires",
    ];
    if name.len() == 1 {
        for (c, l) in COMPACT {
            if name.eq_ignore_ascii_case(c) {
                return (*l).to_string();
            }
        }
    }
    for l in LONG {
        if name.eq_ignore_ascii_case(l) {
            return (*l).to_string();
        }
    }
    name.to_string()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Headers whose comma-separated values are split into one entry each.
fn is_multi_value(name: &str) -> bool {
    ["Via", "Contact", "Route", "Record-Route"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Splits `s` at commas outside double quotes and angle brackets.
pub fn split_commas(s: &str) -> Vec<String> {
    split_unquoted(s, b',', true)
        .0
        .into_iter()
        .map(|p| p.trim().to_string())
        .collect()
}

/// Splits `s` at `sep` where it stands outside a quoted string (RFC 3261
/// §25.1 `quoted-string`, with `\` escapes) and, when `brackets` is set,
/// outside `<...>`. Returns the untrimmed parts and whether every quote was
/// closed. The one quote-aware splitter for header lists, header parameters
/// and digest parameters.
pub fn split_unquoted(s: &str, sep: u8, brackets: bool) -> (Vec<&str>, bool) {
    let mut parts = Vec::new();
    let (mut start, mut in_q, mut esc, mut angle) = (0, false, false, 0u32);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if in_q {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_q = false;
            }
            continue;
        }
        match b {
            b'"' => in_q = true,
            b'<' if brackets => angle += 1,
            b'>' if brackets => angle = angle.saturating_sub(1),
            _ if b == sep && angle == 0 => {
                // `sep` is ASCII, so `i` is a char boundary.
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    (parts, !in_q)
}

/// Finds the end of the header block: the index of the blank line's first
/// byte and the index where the body starts.
fn header_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            // "\n\n" or "\n\r\n"
            if b.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Normalises one datagram (see the module docs). On a framing error the
/// already normalised header lines come back with it, so a caller can still
/// salvage a Via to answer 400.
pub fn normalize(datagram: &[u8]) -> Result<Normalized, (FrameError, Normalized)> {
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let skip = datagram
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .unwrap_or(datagram.len());
    let data = &datagram[skip..];
    if data.is_empty() {
        return Err((FrameError::KeepAlive, Normalized::default()));
    }
    let (head, body) = match header_end(data) {
        Some((h, b)) => (&data[..h], &data[b..]),
        // No blank line (RFC 4475 baddn.dat): all headers, no body.
        None => (data, &data[data.len()..]),
    };
    let text = String::from_utf8_lossy(head);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    let start = lines.next().unwrap_or_default().trim_end().to_string();

    // Unfold continuation lines.
    let mut raw: Vec<String> = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = raw.last_mut() {
                last.push(' ');
                last.push_str(l.trim());
                continue;
            }
        }
        raw.push(l.to_string());
    }

    let mut n = Normalized {
        start,
        headers: Vec::with_capacity(raw.len()),
        body: Vec::new(),
    };
    let mut error: Option<FrameError> = None;
    for l in raw {
        let Some((name, value)) = l.split_once(':') else {
            error.get_or_insert(FrameError::BadHeaderLine(l.clone()));
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            error.get_or_insert(FrameError::BadHeaderLine(l.clone()));
            continue;
        }
        let name = canonical_name(name);
        let value = value.trim();
        if is_multi_value(&name) && value != "*" {
            for v in split_commas(value) {
                n.headers.push((name.clone(), v));
            }
        } else {
            n.headers.push((name, value.to_string()));
        }
    }

    // Content-Length framing (RFC 3261 §18.3).
    let mut declared: Option<u64> = None;
    for v in n.get_all("Content-Length") {
        let v = v.trim();
        let parsed = if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            None
        };
        match (parsed, declared) {
            (None, _) => {
                error.get_or_insert(FrameError::BadContentLength(v.to_string()));
            }
            (Some(p), Some(d)) if p != d => {
                error.get_or_insert(FrameError::MultipleContentLength);
            }
            (Some(p), _) => declared = Some(p),
        }
    }
    match declared {
        Some(d) if d > body.len() as u64 => {
            error.get_or_insert(FrameError::ContentLengthTooLarge {
                declared: d,
                actual: body.len(),
            });
            n.body = body.to_vec();
        }
        Some(d) => n.body = body[..d as usize].to_vec(),
        None => n.body = body.to_vec(),
    }
    match error {
        Some(e) => Err((e, n)),
        None => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_folding_and_colon_space() {
        let m = b"\r\nINVITE sip:a@b SIP/2.0\r\nv : SIP/2.0/UDP h;branch=z9hG4bK1,\r\n SIP/2.0/UDP g;branch=z9hG4bK2\r\nf: <sip:x@y>;tag=1\r\nt:\r\n  <sip:a@b>\r\ni: abc\r\nm: \"A, B\" <sip:a@h>, <sip:b@h>\r\nl: 4\r\nc: application/sdp\r\nk: 100rel\r\ns: hi\r\n\r\nbodyXXXX";
        let n = normalize(m).unwrap();
        assert_eq!(n.start, "INVITE sip:a@b SIP/2.0");
        let vias: Vec<_> = n.get_all("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP h;branch=z9hG4bK1",
                "SIP/2.0/UDP g;branch=z9hG4bK2"
            ]
        );
        assert_eq!(n.get("To"), Some("<sip:a@b>"));
        assert_eq!(n.get("call-id"), Some("abc"));
        assert_eq!(n.get("i"), Some("abc"));
        let contacts: Vec<_> = n.get_all("Contact").collect();
        assert_eq!(contacts, ["\"A, B\" <sip:a@h>", "<sip:b@h>"]);
        assert_eq!(n.get("Supported"), Some("100rel"));
        assert_eq!(n.get("Subject"), Some("hi"));
        assert_eq!(n.get("Content-Type"), Some("application/sdp"));
        assert_eq!(n.body, b"body");
        let wire = String::from_utf8(n.to_bytes()).unwrap();
        assert!(wire.contains("\r\nContent-Length: 4\r\n"));
        assert!(wire.ends_with("\r\n\r\nbody"));
    }

    #[test]
    fn bare_lf_and_no_blank_line() {
        let n = normalize(b"OPTIONS sip:a SIP/2.0\nVia: x\nTo: y").unwrap();
        assert_eq!(n.headers.len(), 2);
        assert!(n.body.is_empty());
        let n = normalize(b"OPTIONS sip:a SIP/2.0\nVia: x\n\nabc").unwrap();
        assert_eq!(n.body, b"abc");
    }

    #[test]
    fn content_length_errors() {
        assert!(matches!(
            normalize(b"A sip:a SIP/2.0\r\nl: 10\r\n\r\nabc"),
            Err((
                FrameError::ContentLengthTooLarge {
                    declared: 10,
                    actual: 3
                },
                _
            ))
        ));
        assert!(matches!(
            normalize(b"A sip:a SIP/2.0\r\nl: -1\r\n\r\nabc"),
            Err((FrameError::BadContentLength(_), _))
        ));
        assert!(matches!(
            normalize(b"A sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nabc"),
            Err((FrameError::MultipleContentLength, _))
        ));
        assert!(matches!(
            normalize(b"\r\n\r\n"),
            Err((FrameError::KeepAlive, _))
        ));
        assert!(matches!(
            normalize(b"A sip:a SIP/2.0\r\nno colon\r\nVia: v\r\n\r\n"),
            Err((FrameError::BadHeaderLine(_), n)) if n.get("Via") == Some("v")
        ));
        assert!(normalize(&[0xff, 0xfe, b'\n', 0, 0x80]).is_err());
    }

    #[test]
    fn route_and_ipv6_values_split_at_commas_only() {
        let n = normalize(
            b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK1 , SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\nRoute: <sip:[2001:db8::1]:5060;lr>,<sip:p2;lr>\r\nRecord-Route : <sip:a;lr>,\r\n\t<sip:b;lr>\r\n\r\n",
        )
        .unwrap();
        let vias: Vec<_> = n.get_all("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bK1",
                "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2"
            ]
        );
        let routes: Vec<_> = n.get_all("Route").collect();
        assert_eq!(routes, ["<sip:[2001:db8::1]:5060;lr>", "<sip:p2;lr>"]);
        let rr: Vec<_> = n.get_all("Record-Route").collect();
        assert_eq!(rr, ["<sip:a;lr>", "<sip:b;lr>"]);
    }

    #[test]
    fn star_contact_is_kept() {
        let n = normalize(b"REGISTER sip:a SIP/2.0\r\nContact: *\r\n\r\n").unwrap();
        assert_eq!(n.get("Contact"), Some("*"));
    }
}
