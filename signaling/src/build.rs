//! Building SIP messages: [`OutMsg`] (serialised through rsip's
//! `Request`/`Response` types), responses to parsed requests
//! ([`response_to`], [`response_salvaged`]) and reason phrases
//! (RFC 3261 §21). Parsing lives in [`crate::msg`].

use std::net::{IpAddr, SocketAddr};

use crate::msg::{Msg, Via};
use crate::normalize::Normalized;

/// Standard reason phrase for `code` (RFC 3261 §21).
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// A message being built. Serialised through rsip's `Request`/`Response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMsg {
    /// `Err(code)`: a response; `Ok((method, uri))`: a request.
    start: Result<(rsip::Method, String), (u16, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_type: Option<String>,
}

impl OutMsg {
    /// A request line `method uri SIP/2.0`.
    pub fn request(method: rsip::Method, uri: &str) -> OutMsg {
        OutMsg {
            start: Ok((method, uri.to_string())),
            headers: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }

    /// A status line with the standard reason phrase.
    pub fn response(code: u16) -> OutMsg {
        OutMsg {
            start: Err((code, reason(code).to_string())),
            headers: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }

    /// Replaces the reason phrase of a response (no effect on a request).
    pub fn reason(mut self, reason: &str) -> OutMsg {
        if let Err((_, r)) = &mut self.start {
            *r = reason.chars().filter(|c| !c.is_control()).collect();
        }
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> OutMsg {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Appends a header in place.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_string(), value.into()));
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> OutMsg {
        self.content_type = Some(content_type.to_string());
        self.body = body;
        self
    }

    /// The first value of a header given so far.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status code, for a response.
    pub fn code(&self) -> Option<u16> {
        self.start.as_ref().err().map(|(c, _)| *c)
    }

    /// Wire bytes, with Content-Type and Content-Length added.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut headers: Vec<rsip::Header> = self
            .headers
            .iter()
            .map(|(n, v)| to_rsip_header(n, v))
            .collect();
        if let Some(ct) = &self.content_type {
            headers.push(rsip::Header::ContentType(ct.as_str().into()));
        }
        headers.push(rsip::Header::ContentLength((self.body.len() as u32).into()));
        match &self.start {
            Ok((method, uri)) => {
                // rsip's URI printer drops URI headers; keep ours verbatim
                // when rsip does not parse or would change it.
                match rsip::Uri::try_from(uri.as_str()) {
                    Ok(u) if u.to_string() == *uri => rsip::Request {
                        method: *method,
                        uri: u,
                        version: rsip::Version::V2,
                        headers: headers.into(),
                        body: self.body.clone(),
                    }
                    .to_string()
                    .into_bytes(),
                    _ => {
                        let h: rsip::Headers = headers.into();
                        let mut out = format!("{method} {uri} SIP/2.0\r\n{h}\r\n").into_bytes();
                        out.extend_from_slice(&self.body);
                        out
                    }
                }
            }
            Err((code, reason)) => rsip::Response {
                status_code: rsip::StatusCode::Other(*code, reason.clone()),
                version: rsip::Version::V2,
                headers: headers.into(),
                body: self.body.clone(),
            }
            .to_string()
            .into_bytes(),
        }
    }
}

fn to_rsip_header(name: &str, v: &str) -> rsip::Header {
    use rsip::headers as h;
    use rsip::Header as H;
    let v = v.to_string();
    match name {
        "Via" => H::Via(h::Via::from(v)),
        "From" => H::From(h::From::from(v)),
        "To" => H::To(h::To::from(v)),
        "Call-ID" => H::CallId(h::CallId::from(v)),
        "CSeq" => H::CSeq(h::CSeq::from(v)),
        "Contact" => H::Contact(h::Contact::from(v)),
        "Max-Forwards" => H::MaxForwards(h::MaxForwards::from(v)),
        "Expires" => H::Expires(h::Expires::from(v)),
        "Min-Expires" => H::MinExpires(h::MinExpires::from(v)),
        "WWW-Authenticate" => H::WwwAuthenticate(h::WwwAuthenticate::from(v)),
        "Proxy-Authenticate" => H::ProxyAuthenticate(h::ProxyAuthenticate::from(v)),
        "Allow" => H::Allow(h::Allow::from(v)),
        "Supported" => H::Supported(h::Supported::from(v)),
        "Server" => H::Server(h::Server::from(v)),
        "User-Agent" => H::UserAgent(h::UserAgent::from(v)),
        "Warning" => H::Warning(h::Warning::from(v)),
        "Route" => H::Route(h::Route::from(v)),
        "Record-Route" => H::RecordRoute(h::RecordRoute::from(v)),
        _ => H::Other(name.to_string(), v),
    }
}

/// The top Via of a request, as our response carries it: `received` added
/// when the sent-by host is not the source IP (RFC 3261 §18.2.1) and an
/// empty `rport` filled in (RFC 3581 §4).
pub fn via_with_received(via: &Via, src: SocketAddr) -> String {
    let mut v = via.clone();
    let host_ip: Option<IpAddr> = v
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    // RFC 3581 §4: with an empty rport, received is added even when it
    // equals sent-by.
    let rport_asked = v
        .params
        .iter()
        .any(|(n, val)| n.eq_ignore_ascii_case("rport") && val.as_deref().unwrap_or("").is_empty());
    if (host_ip != Some(src.ip()) || rport_asked) && v.param("received").is_none() {
        v.params
            .push(("received".into(), Some(src.ip().to_string())));
    }
    for (n, val) in v.params.iter_mut() {
        if n.eq_ignore_ascii_case("rport") && val.as_deref().unwrap_or("").is_empty() {
            *val = Some(src.port().to_string());
        }
    }
    v.to_string()
}

/// A response to `req` (RFC 3261 §8.2.6.2): Via (top one with
/// `received`/`rport`), From, To (with `to_tag` added unless it has one;
/// never on 100), Call-ID and CSeq copied.
pub fn response_to(req: &Msg, code: u16, to_tag: Option<&str>, src: SocketAddr) -> OutMsg {
    let mut r = OutMsg::response(code);
    for (i, (_, v)) in req
        .raw
        .headers
        .iter()
        .filter(|(n, _)| n == "Via")
        .enumerate()
    {
        if i == 0 {
            r.push("Via", via_with_received(req.top_via(), src));
        } else {
            r.push("Via", v.clone());
        }
    }
    r.push("From", req.header("From").unwrap_or_default().to_string());
    let to = req.header("To").unwrap_or_default();
    let to = match (req.to.tag(), to_tag) {
        (None, Some(t)) if code > 100 => format!("{to};tag={t}"),
        _ => to.to_string(),
    };
    r.push("To", to);
    r.push("Call-ID", req.call_id.clone());
    r.push("CSeq", req.header("CSeq").unwrap_or_default().to_string());
    r
}

/// A response built from the salvaged headers of a malformed request:
/// `None` when it has no Via to answer to. The other mandatory headers are
/// copied as far as they are present.
///
/// Via values that do not parse are left out; when none parses, the first
/// non-empty one is sent with stray trailing separators trimmed
/// (RFC 4475 badinv01.dat), so the reply stays well formed where possible.
pub fn response_salvaged(n: &Normalized, code: u16) -> Option<OutMsg> {
    let mut vias: Vec<String> = n
        .get_all("Via")
        .filter(|v| Via::parse(v).is_some())
        .map(str::to_string)
        .collect();
    if vias.is_empty() {
        let first = n
            .get_all("Via")
            .map(|v| v.trim_end_matches([';', ',', ' ', '\t']))
            .find(|v| !v.is_empty())?;
        vias.push(first.to_string());
    }
    let mut r = OutMsg::response(code);
    for v in vias {
        r.push("Via", v);
    }
    for (name, v) in &n.headers {
        if ["From", "To", "Call-ID", "CSeq"].contains(&name.as_str()) {
            r.push(name, v.clone());
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::parse;

    const OPTIONS: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn via_with_received_adds_rport_and_received() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;rport").unwrap();
        let src: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(
            via_with_received(&v, src),
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;rport=4000;received=10.0.0.1"
        );
    }

    #[test]
    fn parse_and_respond() {
        let m = parse(OPTIONS.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("OPTIONS"));
        assert_eq!(m.uri_user().as_deref(), Some("a"));
        let r = response_to(&m, 200, Some("tt"), "192.0.2.1:5060".parse().unwrap());
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(wire.starts_with("SIP/2.0 200 OK\r\n"), "{wire}");
        assert!(wire.contains("To: <sip:a@b>;tag=tt\r\n"), "{wire}");
        assert!(
            wire.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"),
            "{wire}"
        );
        assert!(wire.ends_with("Content-Length: 0\r\n\r\n"), "{wire}");
        let back = parse(wire.as_bytes()).unwrap();
        assert_eq!(back.code(), Some(200));
        assert_eq!(back.to.tag(), Some("tt"));
    }

    #[test]
    fn request_building() {
        let r = OutMsg::request(rsip::Method::Invite, "sip:bob@127.0.0.1:5070")
            .header("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx")
            .header("Max-Forwards", "69")
            .body("application/sdp", b"v=0\r\n".to_vec());
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            wire.starts_with("INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n"),
            "{wire}"
        );
        assert!(
            wire.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"),
            "{wire}"
        );
        let r = OutMsg::request(rsip::Method::Bye, "sip:x@h?Subject=y");
        let wire = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            wire.starts_with("BYE sip:x@h?Subject=y SIP/2.0\r\n"),
            "{wire}"
        );
    }
}
