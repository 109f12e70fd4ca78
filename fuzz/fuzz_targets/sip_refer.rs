//! Transfer headers (RFC 3515, RFC 3891, RFC 6665): `refer::parse_refer_to`,
//! `parse_replaces`, `parse_event`, `parse_subscription_state`,
//! `percent_decode` and `sipfrag_status` on arbitrary UTF-8 (and bytes),
//! directly and as header values of a parsed SIP REFER. Nothing may
//! panic; a Replaces that parses re-serialises with `to_header` to one
//! that parses back equal, and a Refer-To's URI never keeps its `?`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_signaling::msg;
use tern_signaling::refer::{
    parse_event, parse_refer_to, parse_replaces, parse_subscription_state, percent_decode,
    sipfrag_status,
};

fuzz_target!(|data: &[u8]| {
    if let Some(code) = sipfrag_status(data) {
        assert!((100..700).contains(&code));
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = parse_replaces(s) {
        assert_eq!(parse_replaces(&r.to_header()), Ok(r));
    }
    if let Ok(r) = parse_refer_to(s) {
        assert!(!r.uri.contains('?'), "{s:?}");
        if let Some(rep) = r.replaces {
            assert_eq!(parse_replaces(&rep.to_header()), Ok(rep));
        }
    }
    let _ = parse_event(s);
    let _ = parse_subscription_state(s);
    let _ = percent_decode(s);

    for name in ["Refer-To", "r", "Replaces", "Event", "o", "Subscription-State"] {
        let req = format!(
            "REFER sip:tern@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKf\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: f\r\nCSeq: 2 REFER\r\n{name}: {s}\r\nContent-Length: 0\r\n\r\n"
        );
        let Ok(m) = msg::parse(req.as_bytes()) else {
            continue;
        };
        if let Some(v) = m.header("Refer-To") {
            let _ = parse_refer_to(v);
        }
        if let Some(v) = m.header("Replaces") {
            let _ = parse_replaces(v);
        }
        if let Some(v) = m.header("Event") {
            let _ = parse_event(v);
        }
        if let Some(v) = m.header("Subscription-State") {
            let _ = parse_subscription_state(v);
        }
    }
});
