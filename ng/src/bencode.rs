//! Bencode framing and helpers for the ng protocol.
//!
//! Decoding and encoding are done by the `bt_bencode` crate. It recurses
//! once per nesting level and accepts dictionaries whose keys are not sorted
//! (Kamailio's rtpengine module sends them in insertion order), so every
//! message first goes through [`scan`]: an iterative, allocation-free pass
//! that finds where the top-level value ends (TCP framing), bounds its
//! nesting depth (no stack overflow on `llll…`) and refuses string lengths
//! that cannot fit (no huge allocation on `d3:sdp99999999999:`).

use std::collections::BTreeMap;

/// The decoded value types (from `bt_bencode`), for callers that read
/// replies.
pub use bt_bencode::{ByteString, Value};

/// Deepest nesting accepted. ng messages are at most three levels deep
/// (dictionary → list → string); rtpengine's replies are six.
pub const MAX_DEPTH: usize = 16;

/// Outcome of [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete top-level dictionary occupies the first `n` bytes.
    Complete(usize),
    /// Valid so far, but the buffer ends before the value does.
    Incomplete,
    /// Not bencode, not a dictionary at the top, too deep, or a string
    /// longer than `max_len` allows; the reason is for `error-reason`.
    Invalid(&'static str),
}

/// Finds the end of the bencode dictionary at the start of `buf` without
/// recursion: checks the token syntax loosely (full validation is left to
/// the decoder), nesting up to [`MAX_DEPTH`], and that no string length
/// reaches past `max_len` bytes from the start. Never panics.
pub fn scan(buf: &[u8], max_len: usize) -> Scan {
    let mut depth = 0usize;
    let mut pos = 0usize;
    match buf.first() {
        None => return Scan::Incomplete,
        Some(b'd') => {}
        Some(_) => return Scan::Invalid("message is not a bencode dictionary"),
    }
    loop {
        let Some(&b) = buf.get(pos) else {
            return Scan::Incomplete;
        };
        match b {
            b'd' | b'l' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Scan::Invalid("bencode nested too deeply");
                }
                pos += 1;
            }
            b'e' => {
                if depth == 0 {
                    return Scan::Invalid("unexpected end marker in bencode");
                }
                depth -= 1;
                pos += 1;
                if depth == 0 {
                    return Scan::Complete(pos);
                }
            }
            b'i' => {
                // i<digits>e: at most a sign and 20 digits.
                let mut k = pos + 1;
                loop {
                    match buf.get(k) {
                        None => return Scan::Incomplete,
                        Some(b'e') => break,
                        Some(c) if c.is_ascii_digit() || *c == b'-' => {}
                        Some(_) => return Scan::Invalid("bad bencode integer"),
                    }
                    if k - pos > 21 {
                        return Scan::Invalid("bencode integer too long");
                    }
                    k += 1;
                }
                pos = k + 1;
            }
            b'0'..=b'9' => {
                let mut len: usize = 0;
                let mut k = pos;
                loop {
                    match buf.get(k) {
                        None => return Scan::Incomplete,
                        Some(b':') => break,
                        Some(c) if c.is_ascii_digit() => {
                            len = match len
                                .checked_mul(10)
                                .and_then(|l| l.checked_add(usize::from(c - b'0')))
                            {
                                Some(l) if l <= max_len => l,
                                _ => return Scan::Invalid("bencode string length too large"),
                            };
                        }
                        Some(_) => return Scan::Invalid("bad bencode string length"),
                    }
                    k += 1;
                }
                let end = match (k + 1).checked_add(len) {
                    Some(e) if e <= max_len => e,
                    _ => return Scan::Invalid("bencode string length too large"),
                };
                if end > buf.len() {
                    return Scan::Incomplete;
                }
                pos = end;
            }
            _ => return Scan::Invalid("bad bencode token"),
        }
    }
}

/// Decodes exactly one dictionary from `buf` (already [`scan`]ned).
///
/// Errors: a static reason for `error-reason` (bad syntax, trailing bytes,
/// integer out of range, not a dictionary).
pub fn decode_dict(buf: &[u8]) -> Result<BTreeMap<ByteString, Value>, &'static str> {
    match bt_bencode::from_slice::<Value>(buf) {
        Ok(Value::Dict(d)) => Ok(d),
        Ok(_) => Err("message is not a bencode dictionary"),
        Err(_) => Err("Failed to decode bencode dictionary"),
    }
}

/// Encodes `v`; bencode of a [`Value`] cannot fail, but a failure would
/// give an empty dictionary rather than a panic.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// Appends the encoding of `v` to `out` (one buffer per reply instead of
/// a temporary one); on a failure, what was appended is replaced by an
/// empty dictionary `de`.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    let start = out.len();
    if bt_bencode::to_writer(&mut *out, v).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"de");
    }
}

/// A byte-string value.
pub fn bstr(s: impl Into<Vec<u8>>) -> Value {
    Value::ByteStr(ByteString::from(s.into()))
}

/// An integer value.
pub fn int(n: impl Into<i64>) -> Value {
    Value::Int(bt_bencode::value::Number::Signed(n.into()))
}

/// An unsigned integer value (counters).
pub fn uint(n: u64) -> Value {
    Value::Int(bt_bencode::value::Number::Unsigned(n))
}

/// A list of byte strings.
pub fn str_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::List(
        items
            .into_iter()
            .map(|s| bstr(s.as_ref().as_bytes().to_vec()))
            .collect(),
    )
}

/// Builds dictionaries key by key (keys are sorted by the encoder).
#[derive(Debug, Default, Clone)]
pub struct Dict(BTreeMap<ByteString, Value>);

impl Dict {
    /// An empty dictionary.
    pub fn new() -> Dict {
        Dict(BTreeMap::new())
    }
    /// Sets `key` to `v`.
    pub fn set(&mut self, key: &str, v: Value) -> &mut Dict {
        self.0.insert(ByteString::from(key.as_bytes().to_vec()), v);
        self
    }
    /// Builder form of [`Dict::set`].
    pub fn with(mut self, key: &str, v: Value) -> Dict {
        self.set(key, v);
        self
    }
    /// Whether `key` is set.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key.as_bytes())
    }
    /// The finished value.
    pub fn into_value(self) -> Value {
        Value::Dict(self.0)
    }
}

/// Read access to a decoded ng message dictionary. A key tern implements
/// is looked up under each of rtpengine's spellings of it
/// ([`crate::keys`]: `"call-id"` also finds `"call ID"`,
/// `"transport-protocol"` finds `"transport protocol"`); any other key
/// exactly as given.
#[derive(Debug)]
pub struct Msg<'a>(pub &'a BTreeMap<ByteString, Value>);

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The key is absent.
    Missing,
    /// The key is present with another type (or non-UTF-8 text).
    WrongType,
}

impl<'a> Msg<'a> {
    /// The raw value of `key` (either spelling).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        if let Some(v) = self.0.get(key.as_bytes()) {
            return Some(v);
        }
        crate::keys::spellings(key)
            .iter()
            .find_map(|k| self.0.get(k.as_bytes()))
    }

    /// `key` as UTF-8 text.
    pub fn str(&self, key: &str) -> Result<&'a str, FieldError> {
        match self.get(key) {
            None => Err(FieldError::Missing),
            Some(Value::ByteStr(b)) => {
                std::str::from_utf8(b.as_slice()).map_err(|_| FieldError::WrongType)
            }
            Some(_) => Err(FieldError::WrongType),
        }
    }

    /// `key` as UTF-8 text, `None` when absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.str(key) {
            Ok(s) => Ok(Some(s)),
            Err(FieldError::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `key` as an integer; a decimal string is accepted too (rtpengine's
    /// legacy form of `delete-delay`).
    pub fn opt_int(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(n)) => n.as_i64_checked().map(Some).ok_or(FieldError::WrongType),
            Some(Value::ByteStr(b)) => std::str::from_utf8(b.as_slice())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or(FieldError::WrongType),
            Some(_) => Err(FieldError::WrongType),
        }
    }

    /// `key` as a list of UTF-8 strings, empty when absent. A single string
    /// is taken as a one-item list; a non-string item is
    /// [`FieldError::WrongType`].
    pub fn str_list(&self, key: &str) -> Result<Vec<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Value::ByteStr(b) => match std::str::from_utf8(b.as_slice()) {
                            Ok(s) => out.push(s),
                            Err(_) => return Err(FieldError::WrongType),
                        },
                        _ => return Err(FieldError::WrongType),
                    }
                }
                Ok(out)
            }
            Some(Value::ByteStr(b)) => std::str::from_utf8(b.as_slice())
                .map(|s| vec![s])
                .map_err(|_| FieldError::WrongType),
            Some(_) => Err(FieldError::WrongType),
        }
    }
}

/// Conversions of bencode numbers.
trait NumberExt {
    fn as_i64_checked(&self) -> Option<i64>;
}

impl NumberExt for bt_bencode::value::Number {
    fn as_i64_checked(&self) -> Option<i64> {
        match *self {
            bt_bencode::value::Number::Signed(n) => Some(n),
            bt_bencode::value::Number::Unsigned(n) => i64::try_from(n).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_message_end() {
        let m = b"d7:command4:pinge";
        assert_eq!(scan(m, 1000), Scan::Complete(m.len()));
        let mut two = m.to_vec();
        two.extend_from_slice(b"d1:ai1ee");
        assert_eq!(scan(&two, 1000), Scan::Complete(m.len()));
        assert_eq!(scan(&m[..5], 1000), Scan::Incomplete);
        assert_eq!(scan(b"", 1000), Scan::Incomplete);
        assert_eq!(scan(b"d3:sdp5:v=0", 1000), Scan::Incomplete);
        assert_eq!(scan(b"d1:ai-12e1:bli1eee", 1000), Scan::Complete(18));
    }

    #[test]
    fn scan_refuses_bad_input() {
        assert!(matches!(scan(b"l1:ae", 1000), Scan::Invalid(_)));
        assert!(matches!(scan(b"i1e", 1000), Scan::Invalid(_)));
        assert!(matches!(
            scan(b"d3:sdp99999999999:x", 1000),
            Scan::Invalid(_)
        ));
        assert!(matches!(
            scan(b"d3:sdp99999999999999999999999999:x", usize::MAX),
            Scan::Invalid(_)
        ));
        assert!(matches!(scan(b"d1:ai1x2ee", 1000), Scan::Invalid(_)));
        assert!(matches!(scan(b"dxe", 1000), Scan::Invalid(_)));
        let mut deep = vec![b'd', b'1', b':', b'a'];
        deep.extend(vec![b'l'; 100_000]);
        deep.extend(vec![b'e'; 100_001]);
        assert!(matches!(scan(&deep, usize::MAX), Scan::Invalid(_)));
        assert!(matches!(
            scan(b"d1:ai11111111111111111111111111111111e", 1000),
            Scan::Invalid(_)
        ));
    }

    #[test]
    fn decodes_unsorted_keys_and_both_spellings() {
        let m =
            b"d3:sdp1:x7:call-id2:c118:transport protocol7:RTP/AVP5:flagsl13:trust address1:xee";
        assert_eq!(scan(m, 1000), Scan::Complete(m.len()));
        let d = decode_dict(m).unwrap();
        let msg = Msg(&d);
        assert_eq!(msg.str("call-id"), Ok("c1"));
        assert_eq!(msg.str("transport-protocol"), Ok("RTP/AVP"));
        assert_eq!(msg.str_list("flags"), Ok(vec!["trust address", "x"]));
        assert_eq!(msg.str("nope"), Err(FieldError::Missing));
        assert_eq!(msg.opt_int("sdp"), Err(FieldError::WrongType));
        assert!(decode_dict(b"d1:ai1eeXX").is_err());
    }

    #[test]
    fn encodes_sorted() {
        let v = Dict::new()
            .with("result", bstr("ok"))
            .with("a", int(-3))
            .with("b", uint(7))
            .with("c", str_list(["x", "y"]))
            .into_value();
        assert_eq!(
            encode(&v),
            b"d1:ai-3e1:bi7e1:cl1:x1:ye6:result2:oke".to_vec()
        );
    }
}
