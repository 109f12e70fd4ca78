//! A minimal, allocation-light SIP message scanner for the generator
//! (RFC 3261 §7): the start line, the header fields as `(name, value)`
//! slices of the datagram, and the body. It trusts nothing: anything it
//! cannot read is `None`, never a panic, and the caller counts it.
//!
//! It is deliberately not the signaling plane's parser (rsip behind a
//! normalizer): the generator must stay cheaper per message than the
//! system it measures, and it only needs a few headers of well-formed
//! traffic from the SUT.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Header fields a message may carry before the scanner gives up on it.
pub const MAX_HEADERS: usize = 64;

/// The start line (RFC 3261 §7.1/§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// `METHOD URI SIP/2.0`.
    Request { method: &'a str, uri: &'a str },
    /// `SIP/2.0 CODE REASON`.
    Response { code: u16 },
}

/// One scanned message; every slice borrows the datagram.
#[derive(Debug)]
pub struct Msg<'a> {
    pub start: Start<'a>,
    /// Header fields in order, names as sent (compare with
    /// [`Msg::header`], which knows the compact forms).
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body: `Content-Length` bytes (at most what arrived).
    pub body: &'a [u8],
}

/// RFC 3261 §7.3.3 compact forms of the headers the generator reads.
fn compact(name: &str) -> Option<&'static str> {
    Some(match name {
        "via" => "v",
        "from" => "f",
        "to" => "t",
        "call-id" => "i",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        _ => return None,
    })
}

fn name_is(got: &str, want_lower: &str) -> bool {
    got.eq_ignore_ascii_case(want_lower)
        || compact(want_lower).is_some_and(|c| got.eq_ignore_ascii_case(c))
}

impl<'a> Msg<'a> {
    /// Scans a datagram; `None` when it is not a SIP/2.0 message with a
    /// readable start line and at most [`MAX_HEADERS`] header fields.
    /// Folded header lines (§7.3.1) are not joined: their continuation is
    /// ignored, which only matters for headers the generator does not
    /// read.
    pub fn parse(data: &'a [u8]) -> Option<Msg<'a>> {
        // The head must be text; the body may be anything.
        let head_end = find(data, b"\r\n\r\n").map(|i| (i, i + 4));
        let head_end = head_end.or_else(|| find(data, b"\n\n").map(|i| (i, i + 2)));
        let (head_len, body_at) = head_end?;
        let head = std::str::from_utf8(&data[..head_len]).ok()?;
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let first = lines.next()?;
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let code: u16 = rest.get(..3)?.parse().ok()?;
            if !(100..700).contains(&code) {
                return None;
            }
            Start::Response { code }
        } else {
            let mut p = first.split(' ');
            let (method, uri, ver) = (p.next()?, p.next()?, p.next()?);
            if ver != "SIP/2.0" || method.is_empty() || uri.is_empty() || p.next().is_some() {
                return None;
            }
            Start::Request { method, uri }
        };
        let mut headers = Vec::with_capacity(16);
        for line in lines {
            if line.starts_with([' ', '\t']) {
                continue; // folded continuation
            }
            let (name, value) = line.split_once(':')?;
            if headers.len() == MAX_HEADERS {
                return None;
            }
            headers.push((name.trim(), value.trim()));
        }
        let rest = &data[body_at..];
        let mut m = Msg {
            start,
            headers,
            body: rest,
        };
        if let Some(l) = m.header("content-length") {
            let n: usize = l.parse().ok()?;
            m.body = &rest[..n.min(rest.len())];
        }
        Some(m)
    }

    /// The first value of header `lower` (lower-case full name; its compact
    /// form matches too).
    pub fn header(&self, lower: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| name_is(n, lower))
            .map(|(_, v)| *v)
    }

    /// Every value of header `lower`, in order.
    pub fn headers_named<'s>(&'s self, lower: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| name_is(n, lower))
            .map(|(_, v)| *v)
    }

    /// The whole header lines of `lower` (`Name: value`), as they must be
    /// copied into a response (Via, Record-Route: §8.2.6.2, §12.1.1).
    pub fn copy_lines(&self, lower: &str, out: &mut String) {
        for (n, v) in &self.headers {
            if name_is(n, lower) {
                out.push_str(n);
                out.push_str(": ");
                out.push_str(v);
                out.push_str("\r\n");
            }
        }
    }

    /// `Call-ID`.
    pub fn call_id(&self) -> Option<&'a str> {
        self.header("call-id")
    }

    /// `CSeq` as (number, method).
    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        let v = self.header("cseq")?;
        let mut p = v.split_whitespace();
        let n = p.next()?.parse().ok()?;
        Some((n, p.next()?))
    }

    /// The status code, for a response.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            Start::Response { code } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`) or a
/// bare addr-spec (`sip:a@b;tag=1` → `sip:a@b`).
pub fn uri_of(name_addr: &str) -> Option<&str> {
    if let Some(i) = name_addr.find('<') {
        let rest = &name_addr[i + 1..];
        return rest.find('>').map(|j| &rest[..j]);
    }
    let s = name_addr.trim();
    let end = s.find(';').unwrap_or(s.len());
    (!s.is_empty()).then(|| &s[..end])
}

/// The `tag` parameter of a From/To value (outside the `<...>`).
pub fn tag_of(v: &str) -> Option<&str> {
    let params = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then_some(val.trim())
            .filter(|t| !t.is_empty())
    })
}

/// A response to request `m` (§8.2.6): its Vias (and Record-Routes for a
/// 2xx) copied, From, Call-ID and CSeq copied, To with `to_tag` added when
/// it has none, `extra` header lines, and `body`. `None` when `m` lacks a
/// header a response must copy.
pub fn response(
    m: &Msg,
    code: u16,
    to_tag: Option<&str>,
    extra: &str,
    body: Option<&str>,
) -> Option<Vec<u8>> {
    let reason = match code {
        200 => "OK",
        481 => "Call/Transaction Does Not Exist",
        501 => "Not Implemented",
        _ => "Unknown",
    };
    let (from, to, call_id, cseq) = (
        m.header("from")?,
        m.header("to")?,
        m.call_id()?,
        m.header("cseq")?,
    );
    m.header("via")?;
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    m.copy_lines("via", &mut r);
    if (200..300).contains(&code) {
        m.copy_lines("record-route", &mut r);
    }
    let _ = write!(r, "From: {from}\r\nTo: {to}");
    if let (Some(t), None) = (to_tag, tag_of(to)) {
        let _ = write!(r, ";tag={t}");
    }
    let body = body.unwrap_or("");
    let _ = write!(
        r,
        "\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Some(r.into_bytes())
}

/// An SDP with one audio stream at `ip:port`: PCMU and telephone-event.
pub fn sdp(ip: Ipv4Addr, port: u16, session: u64) -> String {
    format!(
        "v=0\r\no=tern-load {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn responses_copy_the_transaction_headers() {
        let req = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP t;branch=z9hG4bK1\r\n\
            Via: SIP/2.0/UDP u;branch=z9hG4bK2\r\nRecord-Route: <sip:rr;lr>\r\n\
            From: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 4 INVITE\r\n\
            Content-Length: 0\r\n\r\n";
        let m = Msg::parse(req).unwrap();
        let r = response(&m, 200, Some("t1"), "X: y\r\n", Some("body")).unwrap();
        let r = String::from_utf8(r).unwrap();
        let p = Msg::parse(r.as_bytes()).unwrap();
        assert_eq!(p.code(), Some(200));
        assert_eq!(p.headers_named("via").count(), 2);
        assert_eq!(p.header("record-route"), Some("<sip:rr;lr>"));
        assert_eq!(p.header("to").and_then(tag_of), Some("t1"));
        assert_eq!(p.cseq(), Some((4, "INVITE")));
        assert_eq!(p.body, b"body");
        // A 481 carries no Record-Route; a request without Via gets nothing.
        let r = response(&m, 481, None, "", None).unwrap();
        assert!(!String::from_utf8(r).unwrap().contains("Record-Route"));
        let m = Msg::parse(
            b"BYE sip:x SIP/2.0\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n",
        )
        .unwrap();
        assert!(response(&m, 200, None, "", None).is_none());
    }

    #[test]
    fn sdp_offers_pcmu_and_events() {
        let s = sdp(Ipv4Addr::LOCALHOST, 4000, 7);
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(s.contains("m=audio 4000 RTP/AVP 0 101\r\n"));
        assert!(s.contains("telephone-event/8000"));
    }

    #[test]
    fn scans_a_response_with_compact_headers_and_body() {
        let m = Msg::parse(
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\n\
              f: <sip:a@x>;tag=1\r\nTo: \"B\" <sip:b@x>;tag=2\r\ni: c1\r\nCSeq: 7 INVITE\r\n\
              l: 3\r\n\r\nabcdef",
        )
        .unwrap();
        assert_eq!(m.code(), Some(200));
        assert_eq!(m.call_id(), Some("c1"));
        assert_eq!(m.cseq(), Some((7, "INVITE")));
        assert_eq!(m.body, b"abc");
        assert_eq!(m.headers_named("via").count(), 2);
        assert_eq!(m.header("to").and_then(tag_of), Some("2"));
        assert_eq!(m.header("to").and_then(uri_of), Some("sip:b@x"));
        let mut s = String::new();
        m.copy_lines("via", &mut s);
        assert_eq!(
            s,
            "v: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b\r\n"
        );
    }

    #[test]
    fn scans_a_request() {
        let m = Msg::parse(b"BYE sip:b@x:5 SIP/2.0\nCall-ID: z\n\n").unwrap();
        assert_eq!(
            m.start,
            Start::Request {
                method: "BYE",
                uri: "sip:b@x:5"
            }
        );
        assert!(m.body.is_empty());
        assert_eq!(uri_of("sip:b@x;tag=3"), Some("sip:b@x"));
        assert_eq!(tag_of("<sip:b@x;tag=no>"), None);
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        let bad: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"SIP/2.0 2\r\n\r\n",
            b"SIP/2.0 999 X\r\n\r\n",
            b"SIP/2.0 200 OK\r\nno colon\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n",
            b"INVITE sip:a SIP/3.0\r\n\r\n",
            b"INVITE  SIP/2.0\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCSeq: 1\r\n",
        ];
        for b in bad {
            assert!(Msg::parse(b).is_none(), "{:?}", String::from_utf8_lossy(b));
        }
        let many = format!(
            "SIP/2.0 200 OK\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(Msg::parse(many.as_bytes()).is_none());
        // A short body is cut at what arrived; CSeq without method is None.
        let m = Msg::parse(b"SIP/2.0 200 OK\r\nCSeq: 1\r\nl: 99\r\n\r\nab").unwrap();
        assert_eq!((m.body, m.cseq()), (&b"ab"[..], None));
    }
}
