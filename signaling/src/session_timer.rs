//! RFC 4028 session timers: the `Session-Expires` (compact `x`) and
//! `Min-SE` header values, parsed. What the B2BUA does with them is in
//! `b2bua/session.rs`.

use crate::msg::parse_delta;

/// The shortest session interval RFC 4028 allows (§4, §5): 90 s.
pub const RFC_MIN_SE: u32 = 90;

/// Who refreshes the session (RFC 4028 §4): the UAC or the UAS of the
/// dialog the header travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// `refresher=uac`.
    Uac,
    /// `refresher=uas`.
    Uas,
}

impl Refresher {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value: `delta-seconds *(;se-params)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval, seconds (saturated at 2**32-1).
    pub delta: u32,
    /// The `refresher` parameter; `None` when absent.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// The header value as we write it.
    pub fn to_header(self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.delta, r.as_str()),
            None => self.delta.to_string(),
        }
    }
}

/// Parses a `Session-Expires` value (RFC 4028 §4): delta-seconds, then
/// parameters; `refresher` must be `uac` or `uas` (case-insensitive) when
/// present, other parameters are ignored. `None` when malformed (no
/// number, an empty parameter name, another refresher value).
pub fn parse_session_expires(v: &str) -> Option<SessionExpires> {
    let mut parts = v.split(';');
    let delta = parse_delta(parts.next()?)?;
    let mut refresher = None;
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if name.is_empty() {
            return None;
        }
        if name.eq_ignore_ascii_case("refresher") {
            refresher = Some(match value {
                Some(v) if v.eq_ignore_ascii_case("uac") => Refresher::Uac,
                Some(v) if v.eq_ignore_ascii_case("uas") => Refresher::Uas,
                _ => return None,
            });
        }
    }
    Some(SessionExpires { delta, refresher })
}

/// Parses a `Min-SE` value (RFC 4028 §5): delta-seconds, then generic
/// parameters (ignored). `None` when malformed.
pub fn parse_min_se(v: &str) -> Option<u32> {
    let delta = v.split(';').next()?;
    parse_delta(delta)
}

/// Whether a `Supported` or `Require` list (all values of the header)
/// names the `timer` option tag.
pub fn lists_timer<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    values
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

/// When the B2BUA gives up on a session that was not refreshed: at the
/// session expiration itself, `delta` seconds after the last refresh.
/// The end point that does not refresh sends its own BYE earlier (RFC
/// 4028 §10: `delta - min(32, delta/3)`), which tern relays; tern's BYE
/// is the backstop for end points that are gone, and must not race
/// theirs.
pub fn expiry_secs(delta: u32) -> u64 {
    u64::from(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_values() {
        let se = |v| parse_session_expires(v);
        assert_eq!(
            se("1800"),
            Some(SessionExpires {
                delta: 1800,
                refresher: None
            })
        );
        assert_eq!(
            se(" 120 ;refresher=uac"),
            Some(SessionExpires {
                delta: 120,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(
            se("90;x=1;Refresher = UAS").and_then(|s| s.refresher),
            Some(Refresher::Uas)
        );
        assert_eq!(se("99999999999").map(|s| s.delta), Some(u32::MAX));
        for bad in [
            "",
            "abc",
            "-5",
            "12a",
            "120;refresher=both",
            "120;refresher",
            "120;;x",
            "1 2",
        ] {
            assert_eq!(se(bad), None, "{bad:?}");
        }
        assert_eq!(
            se("120;refresher=uac").map(|s| s.to_header()).as_deref(),
            Some("120;refresher=uac")
        );
    }

    #[test]
    fn min_se_and_option_tags() {
        assert_eq!(parse_min_se("90"), Some(90));
        assert_eq!(parse_min_se(" 600;p=q"), Some(600));
        assert_eq!(parse_min_se("x"), None);
        assert!(lists_timer(["100rel, Timer"].into_iter()));
        assert!(lists_timer(["100rel", "timer"].into_iter()));
        assert!(!lists_timer(["100rel, timers"].into_iter()));
    }
}
