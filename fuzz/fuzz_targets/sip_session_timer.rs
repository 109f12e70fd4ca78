//! RFC 4028 headers: `session_timer::parse_session_expires` and
//! `parse_min_se` on arbitrary UTF-8, directly and as the value of a
//! `Session-Expires` (compact `x`) or `Min-SE` header of a parsed SIP
//! request. Nothing may panic; what parses re-serialises with
//! `to_header` to a value that parses back to the same interval and
//! refresher, and an interval is what the digits say (saturated).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_signaling::msg;
use tern_signaling::session_timer::{
    expiry_secs, lists_timer, parse_min_se, parse_session_expires,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(se) = parse_session_expires(s) {
        let v = se.to_header();
        let back = parse_session_expires(&v)
            .unwrap_or_else(|| panic!("{s:?} -> {v:?} does not parse back"));
        assert_eq!(back, se, "{s:?} -> {v:?}");
        assert_eq!(back.to_header(), v);
        assert_eq!(expiry_secs(se.delta), u64::from(se.delta));
        // The interval is the leading delta-seconds, saturated.
        let digits = s.split(';').next().unwrap_or("").trim();
        assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(parse_min_se(digits), Some(se.delta));
    }
    let _ = parse_min_se(s);
    let _ = lists_timer(s.split('\n'));

    // The same value in a request, by compact and full name. A value with
    // a line break makes another message (or none): only no panic counts.
    for name in ["x", "Session-Expires", "Min-SE"] {
        let req = format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKf\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n{name}: {s}\r\nContent-Length: 0\r\n\r\n"
        );
        let Ok(m) = msg::parse(req.as_bytes()) else {
            continue;
        };
        if let Some(v) = m.header("Session-Expires") {
            if let Some(se) = parse_session_expires(v) {
                assert_eq!(parse_session_expires(&se.to_header()), Some(se));
            }
        }
        if let Some(v) = m.header("Min-SE") {
            let _ = parse_min_se(v);
        }
    }
});
