//! RFC 3262 headers: `rel100::parse_rseq`, `parse_rack` and the
//! `100rel` option-tag checks on arbitrary UTF-8, directly and as the
//! value of an `RSeq` / `RAck` / `Require` / `Supported` header of a
//! parsed SIP message. Nothing may panic; what parses is in range
//! (1..=2**31-1) and an `RAck` re-serialises with `to_header` to a value
//! that parses back to the same one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_signaling::msg;
use tern_signaling::rel100::{lists_100rel, parse_rack, parse_rseq, Support, RSEQ_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = parse_rseq(s) {
        assert!((1..=RSEQ_MAX).contains(&n), "{s:?} -> {n}");
        assert_eq!(parse_rseq(&n.to_string()), Ok(n));
    }
    if let Ok(r) = parse_rack(s) {
        assert!((1..=RSEQ_MAX).contains(&r.rseq) && (1..=RSEQ_MAX).contains(&r.cseq));
        let v = r.to_header();
        assert_eq!(parse_rack(&v).as_ref(), Ok(&r), "{s:?} -> {v:?}");
    }
    let _ = lists_100rel(s.split('\n'));
    let support = Support::of(std::iter::once(s), std::iter::empty());
    assert_eq!(support.any(), lists_100rel(std::iter::once(s)));

    // The same value in a message, by header name. A value with a line
    // break makes another message (or none): only no panic counts.
    for name in ["RSeq", "RAck", "Require", "Supported", "k"] {
        let m = format!(
            "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>;tag=2\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\n{name}: {s}\r\nContent-Length: 0\r\n\r\n"
        );
        let Ok(m) = msg::parse(m.as_bytes()) else {
            continue;
        };
        if let Some(v) = m.header("RSeq") {
            let _ = parse_rseq(v);
        }
        if let Some(v) = m.header("RAck") {
            if let Ok(r) = parse_rack(v) {
                assert_eq!(parse_rack(&r.to_header()), Ok(r));
            }
        }
        let _ = Support::of(m.headers("Supported"), m.headers("Require"));
    }
});
