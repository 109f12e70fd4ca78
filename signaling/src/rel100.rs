//! Reliable provisional responses (RFC 3262): the `RSeq` and `RAck`
//! header values, parsed, and the `100rel` option tag in `Supported` /
//! `Require`. What the B2BUA does with them is in `b2bua/prack.rs`.

use std::fmt;

/// The option tag of RFC 3262 (§8): `100rel`.
pub const TAG_100REL: &str = "100rel";

/// The largest response number RFC 3262 allows (§3, §7.1): 2**31 - 1.
pub const RSEQ_MAX: u32 = (1 << 31) - 1;

/// Why an `RSeq` or `RAck` value did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel100Error {
    /// Empty, or a field that is not 1*DIGIT.
    NotDigits,
    /// A response number of 0 or above 2**31 - 1 (RFC 3262 §3), or a
    /// CSeq number above 2**31 - 1 (RFC 3261 §8.1.1.5).
    OutOfRange,
    /// `RAck` without its three fields (response-num CSeq-num Method),
    /// or with more.
    Fields,
    /// `RAck`'s method is not a SIP token.
    Method,
}

impl fmt::Display for Rel100Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rel100Error::NotDigits => "not a number",
            Rel100Error::OutOfRange => "number out of range",
            Rel100Error::Fields => "RAck needs response-num CSeq-num Method",
            Rel100Error::Method => "RAck method is not a token",
        })
    }
}

impl std::error::Error for Rel100Error {}

/// A number of 1*DIGIT in 1..=2**31-1 (leading zeros allowed).
fn number(s: &str) -> Result<u32, Rel100Error> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rel100Error::NotDigits);
    }
    let digits = s.trim_start_matches('0');
    // More than 10 significant digits cannot be <= 2**31 - 1.
    if digits.len() > 10 {
        return Err(Rel100Error::OutOfRange);
    }
    match digits.parse::<u64>() {
        Ok(n) if (1..=u64::from(RSEQ_MAX)).contains(&n) => {
            u32::try_from(n).map_err(|_| Rel100Error::OutOfRange)
        }
        _ => Err(Rel100Error::OutOfRange),
    }
}

/// Parses an `RSeq` value (RFC 3262 §7.1: `RSeq = "RSeq" HCOLON
/// response-num`, `response-num = 1*DIGIT`), surrounding white space
/// allowed. The number is in 1..=2**31-1 (§3).
///
/// # Errors
/// [`Rel100Error::NotDigits`] for anything but digits,
/// [`Rel100Error::OutOfRange`] for 0 or above 2**31 - 1.
pub fn parse_rseq(v: &str) -> Result<u32, Rel100Error> {
    number(v.trim())
}

/// An `RAck` value (RFC 3262 §7.2): which reliable provisional response
/// a PRACK acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The response's `RSeq`, 1..=2**31-1.
    pub rseq: u32,
    /// The CSeq number of the request it answered, 1..=2**31-1.
    pub cseq: u32,
    /// The CSeq method of that request (case-sensitive, RFC 3261 §7.1).
    pub method: String,
}

impl RAck {
    /// The header value as we write it: `rseq cseq method`.
    pub fn to_header(&self) -> String {
        format!("{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// Whether `s` is a SIP token (RFC 3261 §25.1).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// Parses an `RAck` value (RFC 3262 §7.2: `response-num LWS CSeq-num
/// LWS Method`): three fields separated by white space.
///
/// # Errors
/// [`Rel100Error::Fields`] without exactly three fields; the errors of
/// [`parse_rseq`] for either number; [`Rel100Error::Method`] when the
/// method is not a token.
pub fn parse_rack(v: &str) -> Result<RAck, Rel100Error> {
    let mut it = v.split_ascii_whitespace();
    let (Some(r), Some(c), Some(m), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Rel100Error::Fields);
    };
    let rseq = number(r)?;
    let cseq = number(c)?;
    if !is_token(m) {
        return Err(Rel100Error::Method);
    }
    Ok(RAck {
        rseq,
        cseq,
        method: m.to_string(),
    })
}

/// Whether an option-tag list (every value of a `Supported` or
/// `Require` header, comma-separated) names `100rel` (RFC 3262 §8;
/// option tags compare case-insensitively, RFC 3261 §19.2).
pub fn lists_100rel<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    values
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(TAG_100REL))
}

/// What a request says of 100rel (RFC 3262 §4): required, supported,
/// or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Support {
    /// No `100rel` in `Supported` or `Require`.
    #[default]
    None,
    /// `Supported: 100rel`: provisionals may be sent reliably.
    Supported,
    /// `Require: 100rel`: every provisional but 100 must be (§3).
    Required,
}

impl Support {
    /// From the `Supported` and `Require` values of a request.
    pub fn of<'a>(
        supported: impl Iterator<Item = &'a str>,
        require: impl Iterator<Item = &'a str>,
    ) -> Support {
        if lists_100rel(require) {
            Support::Required
        } else if lists_100rel(supported) {
            Support::Supported
        } else {
            Support::None
        }
    }

    /// The header a B2BUA that terminates 100rel per leg sends onward
    /// for this (RFC 3262 §4): `Supported: 100rel` when supported or
    /// required, so a next hop without 100rel still takes the request
    /// (with `Require` it would answer 420); `None` for [`Support::None`].
    pub fn offer_header(self) -> Option<(&'static str, &'static str)> {
        self.any().then_some(("Supported", TAG_100REL))
    }

    /// Whether reliable provisionals may be sent (supported or required).
    pub fn any(self) -> bool {
        self != Support::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rseq_is_digits_in_range() {
        assert_eq!(parse_rseq("1"), Ok(1));
        assert_eq!(parse_rseq(" 988789 "), Ok(988_789));
        assert_eq!(parse_rseq("0002147483647"), Ok(RSEQ_MAX));
        assert_eq!(parse_rseq("2147483648"), Err(Rel100Error::OutOfRange));
        assert_eq!(parse_rseq("0"), Err(Rel100Error::OutOfRange));
        assert_eq!(
            parse_rseq("99999999999999999999999"),
            Err(Rel100Error::OutOfRange)
        );
        for bad in ["", " ", "-1", "+1", "1 2", "12a", "١"] {
            assert_eq!(parse_rseq(bad), Err(Rel100Error::NotDigits), "{bad:?}");
        }
    }

    #[test]
    fn rack_has_three_fields() {
        let r = parse_rack("776656 1 INVITE").unwrap();
        assert_eq!((r.rseq, r.cseq, r.method.as_str()), (776_656, 1, "INVITE"));
        assert_eq!(r.to_header(), "776656 1 INVITE");
        assert_eq!(parse_rack(&r.to_header()), Ok(r));
        assert_eq!(
            parse_rack(" 5\t 7  INVITE ").map(|r| (r.rseq, r.cseq)),
            Ok((5, 7))
        );
        assert_eq!(parse_rack("5 7"), Err(Rel100Error::Fields));
        assert_eq!(parse_rack("5 7 INVITE x"), Err(Rel100Error::Fields));
        assert_eq!(parse_rack(""), Err(Rel100Error::Fields));
        assert_eq!(parse_rack("0 7 INVITE"), Err(Rel100Error::OutOfRange));
        assert_eq!(parse_rack("5 x INVITE"), Err(Rel100Error::NotDigits));
        assert_eq!(parse_rack("5 7 IN\"VITE"), Err(Rel100Error::Method));
        assert!(Rel100Error::Fields.to_string().contains("RAck"));
    }

    #[test]
    fn option_tags() {
        assert!(lists_100rel(["timer, 100REL"].into_iter()));
        assert!(!lists_100rel(["100rels, timer"].into_iter()));
        let s = |sup: &'static str, req: &'static str| {
            Support::of(std::iter::once(sup), std::iter::once(req))
        };
        assert_eq!(s("100rel", ""), Support::Supported);
        assert_eq!(s("timer", "100rel"), Support::Required);
        assert_eq!(s("timer", ""), Support::None);
        assert!(s("100rel", "").any() && !Support::None.any());
        assert_eq!(Support::None.offer_header(), None);
        assert_eq!(
            Support::Required.offer_header(),
            Some(("Supported", "100rel"))
        );
        assert_eq!(
            Support::Supported.offer_header(),
            Some(("Supported", "100rel"))
        );
    }
}
