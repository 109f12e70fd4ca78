//! Call transfer headers, parsed: `Refer-To` (RFC 3515 §2.1, with an
//! embedded `Replaces` in its URI's headers, RFC 3891 §3), `Replaces`
//! (RFC 3891 §6.1), `Event` (RFC 6665 §8.2.1) and `Subscription-State`
//! (RFC 6665 §8.2.3), and the status line of a `message/sipfrag` body
//! (RFC 3420). What the B2BUA does with them is in `b2bua/transfer.rs`.
//!
//! Every parser takes a header value (after the colon, trimmed or not)
//! and returns a typed [`ReferError`] for a malformed one: the core
//! answers such a request 400.

use std::fmt;

use crate::msg::NameAddr;

/// Why a transfer header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferError {
    /// The value is empty.
    Empty,
    /// Not a name-addr or addr-spec (RFC 3261 §25.1), or no URI scheme.
    BadAddress,
    /// A `%` not followed by two hex digits, or an escape that decodes to
    /// invalid UTF-8 (RFC 3261 §25.1 `escaped`).
    BadEscape,
    /// A required part is missing: `call-id`, `to-tag` or `from-tag` of
    /// Replaces (RFC 3891 §6.1), the event type, the substate.
    Missing(&'static str),
    /// A parameter or token with characters its grammar forbids, or an
    /// `expires`/`retry-after` that is not delta-seconds.
    BadToken(&'static str),
}

impl fmt::Display for ReferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferError::Empty => write!(f, "empty header value"),
            ReferError::BadAddress => write!(f, "not a SIP address"),
            ReferError::BadEscape => write!(f, "bad %-escape"),
            ReferError::Missing(what) => write!(f, "missing {what}"),
            ReferError::BadToken(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for ReferError {}

/// A `Replaces` value (RFC 3891 §6.1): the dialog to replace, named by
/// its Call-ID and tags as the sender of the INVITE sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The dialog's Call-ID.
    pub call_id: String,
    /// `to-tag`: the tag of the party the replaced dialog's requests are
    /// addressed to, from the INVITE sender's view.
    pub to_tag: String,
    /// `from-tag`: the other party's tag.
    pub from_tag: String,
    /// `early-only`: replace only an early dialog (§3).
    pub early_only: bool,
}

impl Replaces {
    /// The header value as we write it.
    pub fn to_header(&self) -> String {
        let early = if self.early_only { ";early-only" } else { "" };
        format!(
            "{};to-tag={};from-tag={}{early}",
            self.call_id, self.to_tag, self.from_tag
        )
    }
}

/// Whether `c` may appear in a Call-ID (RFC 3261 §25.1 `word`).
fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~()<>:\\\"/[]?{}@".contains(c)
}

/// Whether `c` may appear in a `token` (RFC 3261 §25.1).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(token_char)
}

/// `;`-separated parameters as (lowercase name, value) pairs.
fn params(s: &str) -> Result<Vec<(String, Option<String>)>, ReferError> {
    let mut out = Vec::new();
    for p in s.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if !is_token(name) {
            return Err(ReferError::BadToken("parameter"));
        }
        let value = match value {
            Some(v) => {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                if v.is_empty() || v.contains(char::is_whitespace) && !p.contains('"') {
                    return Err(ReferError::BadToken("parameter value"));
                }
                Some(v.to_string())
            }
            None => None,
        };
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Parses a `Replaces` value (RFC 3891 §6.1): `callid *(;replaces-param)`
/// with `to-tag`, `from-tag` (both required, once each) and
/// `early-only`; other parameters are ignored.
///
/// Errors: [`ReferError::Empty`], [`ReferError::Missing`] for a missing
/// tag, [`ReferError::BadToken`] for a Call-ID or tag outside its
/// grammar or a repeated tag.
pub fn parse_replaces(v: &str) -> Result<Replaces, ReferError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ReferError::Empty);
    }
    let (call_id, rest) = v.split_once(';').unwrap_or((v, ""));
    let call_id = call_id.trim();
    if call_id.is_empty() {
        return Err(ReferError::Missing("call-id"));
    }
    if !call_id.chars().all(word_char) {
        return Err(ReferError::BadToken("call-id"));
    }
    let mut to_tag = None;
    let mut from_tag = None;
    let mut early_only = false;
    if !rest.is_empty() {
        for (name, value) in params(rest)? {
            let slot = match name.as_str() {
                "to-tag" => &mut to_tag,
                "from-tag" => &mut from_tag,
                "early-only" => {
                    early_only = true;
                    continue;
                }
                _ => continue,
            };
            let Some(tag) = value.filter(|t| is_token(t)) else {
                return Err(ReferError::BadToken("tag"));
            };
            if slot.replace(tag).is_some() {
                return Err(ReferError::BadToken("repeated tag"));
            }
        }
    }
    Ok(Replaces {
        call_id: call_id.to_string(),
        to_tag: to_tag.ok_or(ReferError::Missing("to-tag"))?,
        from_tag: from_tag.ok_or(ReferError::Missing("from-tag"))?,
        early_only,
    })
}

/// Decodes `%XX` escapes (RFC 3261 §25.1 `escaped`).
///
/// Errors: [`ReferError::BadEscape`] for a `%` without two hex digits
/// or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Result<String, ReferError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(ReferError::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| ReferError::BadEscape)?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ReferError::BadEscape);
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ReferError::BadEscape)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ReferError::BadEscape)
}

/// A `Refer-To` value (RFC 3515 §2.1): the URI to send a request to,
/// with the headers its `?` part carries, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The display name, if any.
    pub display: Option<String>,
    /// The URI without its `?headers` part (the Request-URI and To of
    /// the INVITE the transfer makes).
    pub uri: String,
    /// The URI's headers (RFC 3261 §19.1.1), names as written, values
    /// percent-decoded; `Replaces` among them is also in `replaces`.
    pub headers: Vec<(String, String)>,
    /// The embedded `Replaces` (attended transfer, RFC 3891 §3).
    pub replaces: Option<Replaces>,
}

/// Parses a `Refer-To` value (RFC 3515 §2.1; compact form `r`): a
/// name-addr or addr-spec whose URI may carry `?name=value&...`
/// headers (percent-encoded), of which `Replaces` is parsed with
/// [`parse_replaces`].
///
/// Errors: [`ReferError::Empty`], [`ReferError::BadAddress`],
/// [`ReferError::BadEscape`], and those of [`parse_replaces`].
pub fn parse_refer_to(v: &str) -> Result<ReferTo, ReferError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ReferError::Empty);
    }
    let na = NameAddr::parse(v).ok_or(ReferError::BadAddress)?;
    let (uri, query) = match na.uri.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (na.uri.as_str(), None),
    };
    let scheme_ok = uri
        .split_once(':')
        .is_some_and(|(s, rest)| is_token(s) && !rest.is_empty());
    if !scheme_ok {
        return Err(ReferError::BadAddress);
    }
    let mut headers = Vec::new();
    let mut replaces = None;
    for h in query.into_iter().flat_map(|q| q.split('&')) {
        let (name, value) = h.split_once('=').ok_or(ReferError::BadAddress)?;
        let name = percent_decode(name)?;
        if !is_token(&name) {
            return Err(ReferError::BadToken("URI header name"));
        }
        let value = percent_decode(value)?;
        if name.eq_ignore_ascii_case("replaces") {
            replaces = Some(parse_replaces(&value)?);
        }
        headers.push((name, value));
    }
    Ok(ReferTo {
        display: na.display,
        uri: uri.to_string(),
        headers,
        replaces,
    })
}

/// An `Event` value (RFC 6665 §8.2.1; compact form `o`): the package
/// (`refer` for a transfer, RFC 3515 §2.4.1) and its `id` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type, as written (compared case-insensitively).
    pub package: String,
    /// The `id` parameter: the CSeq number of the REFER that made the
    /// subscription, after the first (RFC 3515 §2.4.6).
    pub id: Option<String>,
}

/// Parses an `Event` value: `event-type *(;event-param)`.
///
/// Errors: [`ReferError::Empty`], [`ReferError::Missing`] without an
/// event type, [`ReferError::BadToken`] for a type or parameter outside
/// the grammar.
pub fn parse_event(v: &str) -> Result<Event, ReferError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ReferError::Empty);
    }
    let (package, rest) = v.split_once(';').unwrap_or((v, ""));
    let package = package.trim();
    if package.is_empty() {
        return Err(ReferError::Missing("event type"));
    }
    if !is_token(package) {
        return Err(ReferError::BadToken("event type"));
    }
    let mut id = None;
    if !rest.is_empty() {
        for (name, value) in params(rest)? {
            if name == "id" {
                id = Some(value.ok_or(ReferError::BadToken("id"))?);
            }
        }
    }
    Ok(Event {
        package: package.to_string(),
        id,
    })
}

/// A subscription's state (RFC 6665 §8.2.3 `substate-value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// `active`.
    Active,
    /// `pending`.
    Pending,
    /// `terminated`.
    Terminated,
    /// An extension value, lowercased.
    Other(String),
}

/// A `Subscription-State` value (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The state.
    pub state: SubState,
    /// `reason` (e.g. `noresource` at the end of a transfer's
    /// subscription, RFC 3515 §2.4.7), lowercased.
    pub reason: Option<String>,
    /// `expires`, seconds.
    pub expires: Option<u32>,
    /// `retry-after`, seconds.
    pub retry_after: Option<u32>,
}

/// Parses a `Subscription-State` value: `substate-value
/// *(;subexp-params)`.
///
/// Errors: [`ReferError::Empty`], [`ReferError::Missing`] without a
/// state, [`ReferError::BadToken`] for a state or parameter outside the
/// grammar or an `expires`/`retry-after` that is not delta-seconds.
pub fn parse_subscription_state(v: &str) -> Result<SubscriptionState, ReferError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(ReferError::Empty);
    }
    let (state, rest) = v.split_once(';').unwrap_or((v, ""));
    let state = state.trim().to_ascii_lowercase();
    if state.is_empty() {
        return Err(ReferError::Missing("substate"));
    }
    if !is_token(&state) {
        return Err(ReferError::BadToken("substate"));
    }
    let mut s = SubscriptionState {
        state: match state.as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            _ => SubState::Other(state),
        },
        reason: None,
        expires: None,
        retry_after: None,
    };
    if !rest.is_empty() {
        for (name, value) in params(rest)? {
            let secs = |v: &Option<String>| {
                v.as_deref()
                    .and_then(crate::msg::parse_delta)
                    .ok_or(ReferError::BadToken("delta-seconds"))
            };
            match name.as_str() {
                "reason" => {
                    let r = value.filter(|r| is_token(r));
                    s.reason = Some(
                        r.ok_or(ReferError::BadToken("reason"))?
                            .to_ascii_lowercase(),
                    );
                }
                "expires" => s.expires = Some(secs(&value)?),
                "retry-after" => s.retry_after = Some(secs(&value)?),
                _ => {}
            }
        }
    }
    Ok(s)
}

/// The status code of a `message/sipfrag` body's status line (RFC 3420;
/// RFC 3515 §2.4.5: `SIP/2.0 200 OK`). `None` when the body does not
/// start with a SIP status line.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let line = body.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 3 && !rest[3..].starts_with(' ') {
        return None;
    }
    code.parse().ok().filter(|c| (100..700).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_blind_and_attended() {
        let r = parse_refer_to("<sip:carol@127.0.0.1>").unwrap();
        assert_eq!(r.uri, "sip:carol@127.0.0.1");
        assert!(r.replaces.is_none() && r.headers.is_empty());
        let r = parse_refer_to("sip:carol@example.com").unwrap();
        assert_eq!(r.uri, "sip:carol@example.com");
        let r = parse_refer_to(
            "\"Carol\" <sip:carol@h?Replaces=abc%40h%3Bto-tag%3D7%3Bfrom-tag%3D9&X-A=b%20c>;p=1",
        )
        .unwrap();
        assert_eq!(r.display.as_deref(), Some("Carol"));
        assert_eq!(r.uri, "sip:carol@h");
        let rep = r.replaces.unwrap();
        assert_eq!(rep.call_id, "abc@h");
        assert_eq!((rep.to_tag.as_str(), rep.from_tag.as_str()), ("7", "9"));
        assert!(!rep.early_only);
        assert_eq!(r.headers[1], ("X-A".to_string(), "b c".to_string()));
    }

    #[test]
    fn refer_to_malformed() {
        assert_eq!(parse_refer_to(" "), Err(ReferError::Empty));
        assert_eq!(parse_refer_to("<carol>"), Err(ReferError::BadAddress));
        assert_eq!(
            parse_refer_to("<sip:c@h?Replaces=a%4>"),
            Err(ReferError::BadEscape)
        );
        assert_eq!(
            parse_refer_to("<sip:c@h?Replaces=a%ff>"),
            Err(ReferError::BadEscape)
        );
        assert_eq!(
            parse_refer_to("<sip:c@h?Replaces=a%3Bto-tag%3D1>"),
            Err(ReferError::Missing("from-tag"))
        );
        assert_eq!(
            parse_refer_to("<sip:c@h?Replaces>"),
            Err(ReferError::BadAddress)
        );
        assert_eq!(parse_refer_to("<sip:c@h"), Err(ReferError::BadAddress));
    }

    #[test]
    fn replaces_round_trips_and_refuses_bad_tags() {
        let r = parse_replaces("x@y;from-tag=f;to-tag=t;early-only;foo=bar").unwrap();
        assert_eq!(r.to_header(), "x@y;to-tag=t;from-tag=f;early-only");
        assert_eq!(parse_replaces(&r.to_header()), Ok(r));
        assert_eq!(parse_replaces(""), Err(ReferError::Empty));
        assert_eq!(
            parse_replaces(";to-tag=1;from-tag=2"),
            Err(ReferError::Missing("call-id"))
        );
        assert_eq!(
            parse_replaces("c;to-tag=1"),
            Err(ReferError::Missing("from-tag"))
        );
        assert_eq!(
            parse_replaces("c;to-tag;from-tag=2"),
            Err(ReferError::BadToken("tag"))
        );
        assert_eq!(
            parse_replaces("c;to-tag=1;to-tag=3;from-tag=2"),
            Err(ReferError::BadToken("repeated tag"))
        );
        assert_eq!(
            parse_replaces("c d;to-tag=1;from-tag=2"),
            Err(ReferError::BadToken("call-id"))
        );
    }

    #[test]
    fn event_and_subscription_state() {
        let e = parse_event("refer;id=93809824").unwrap();
        assert_eq!(e.package, "refer");
        assert_eq!(e.id.as_deref(), Some("93809824"));
        assert_eq!(parse_event("refer").unwrap().id, None);
        assert_eq!(parse_event(""), Err(ReferError::Empty));
        assert_eq!(parse_event(";id=1"), Err(ReferError::Missing("event type")));
        assert_eq!(
            parse_event("re fer"),
            Err(ReferError::BadToken("event type"))
        );
        assert_eq!(parse_event("refer;id"), Err(ReferError::BadToken("id")));

        let s = parse_subscription_state("terminated;reason=NoResource").unwrap();
        assert_eq!(s.state, SubState::Terminated);
        assert_eq!(s.reason.as_deref(), Some("noresource"));
        let s = parse_subscription_state("Active;expires=60").unwrap();
        assert_eq!((s.state, s.expires), (SubState::Active, Some(60)));
        let s = parse_subscription_state("pending;retry-after=5;x=y").unwrap();
        assert_eq!((s.state, s.retry_after), (SubState::Pending, Some(5)));
        assert_eq!(
            parse_subscription_state("waiting").unwrap().state,
            SubState::Other("waiting".into())
        );
        assert_eq!(
            parse_subscription_state("active;expires=soon"),
            Err(ReferError::BadToken("delta-seconds"))
        );
        assert_eq!(
            parse_subscription_state(";expires=1"),
            Err(ReferError::Missing("substate"))
        );
        assert_eq!(parse_subscription_state("  "), Err(ReferError::Empty));
    }

    /// What the fuzz target checks, on 20,000 strings drawn from the
    /// characters these grammars care about (seeded, so repeatable).
    #[test]
    fn random_values_never_panic_and_replaces_round_trips() {
        use rand::{Rng, SeedableRng};
        const ALPHABET: &[u8] = b"<>;=%?&\" :@sipSIP/2.0 13579abcdefFtgrmxyz-\r\n\xc3\xa9";
        let mut rng = rand::rngs::StdRng::seed_from_u64(3515);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = rng.gen_range(0..48);
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect();
            let _ = sipfrag_status(&bytes);
            let s = String::from_utf8_lossy(&bytes);
            for v in [
                s.to_string(),
                format!("<sip:a@h?Replaces={s}>"),
                format!("c;to-tag=1;from-tag=2{s}"),
            ] {
                if let Ok(r) = parse_replaces(&v) {
                    parsed += 1;
                    assert_eq!(parse_replaces(&r.to_header()).as_ref(), Ok(&r), "{v:?}");
                }
                if let Ok(r) = parse_refer_to(&v) {
                    assert!(!r.uri.contains('?'), "{v:?}");
                }
                let _ = parse_event(&v);
                let _ = parse_subscription_state(&v);
                let _ = percent_decode(&v);
            }
        }
        assert!(
            parsed > 0,
            "nothing parsed: the alphabet misses the grammar"
        );
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 486"), Some(486));
        assert_eq!(sipfrag_status(b"SIP/2.0 2000 OK"), None);
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 099 x"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
