//! The trunk registration's reading of a registrar's 2xx (RFC 3261
//! §10.2.4): `trunk_register::granted_expires` on arbitrary UTF-8 as
//! Contact values and as an Expires value, and on the Contact and
//! Expires headers of a parsed 200 to a REGISTER. Nothing may panic; a
//! grant found is what a contact's `expires` or the Expires digits say
//! (saturated), and our own contact's parameter wins over the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_signaling::msg::{self, parse_delta};
use tern_signaling::trunk_register::granted_expires;

const OURS: &str = "sip:tern@127.0.0.1:5060";

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let g = granted_expires([s], Some(s), OURS);
    if g.is_none() {
        assert_eq!(parse_delta(s), None, "{s:?}: digits not taken");
    }
    let _ = granted_expires([s, s], None, s);
    // Our contact with the input as its expires parameter.
    let c = format!("<{OURS}>;expires={s}");
    if let Some(v) = parse_delta(s) {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            assert_eq!(granted_expires([c.as_str()], Some("1"), OURS), Some(v), "{s:?}");
        }
    }
    // The same in a response.
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf\r\nFrom: <sip:tern@gw>;tag=1\r\nTo: <sip:tern@gw>;tag=2\r\nCall-ID: tern-reg-f\r\nCSeq: 1 REGISTER\r\nContact: {s}\r\nExpires: {s}\r\nContent-Length: 0\r\n\r\n"
    );
    if let Ok(m) = msg::parse(resp.as_bytes()) {
        let _ = granted_expires(m.headers("Contact"), m.header("Expires"), OURS);
    }
});
