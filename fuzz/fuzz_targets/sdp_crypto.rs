//! `sdp::Crypto::parse` (an `a=crypto` value, RFC 4568 §9.1) on arbitrary
//! UTF-8. What parses re-serialises with `to_value` to a value that
//! parses back to the same line: tag, suite and key||salt, and also the
//! lifetime, MKI, further key-params and session parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_shared::sdp::{crypto_value, Crypto, MAX_KEY_SALT};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Crypto::parse(s) else {
        return;
    };
    assert!(c.tag < 1_000_000_000);
    assert!(!c.suite.is_empty());
    assert!(!c.key_salt().is_empty() && c.key_salt().len() <= MAX_KEY_SALT);
    if let Some(m) = c.mki {
        assert!((1..=128).contains(&m.length));
    }
    let _ = c.lifetime.map(|l| l.packets());
    let _ = (c.unencrypted_srtp(), c.unencrypted_srtcp(), c.unauthenticated_srtp(), c.kdr());
    let _ = format!("{c:?}");

    let v = c.to_value();
    let back = Crypto::parse(&v).unwrap_or_else(|e| panic!("{s:?} -> {v:?} does not parse: {e:?}"));
    assert_eq!(back.tag, c.tag, "tag: {s:?} -> {v:?}");
    assert_eq!(back.suite, c.suite, "suite: {s:?} -> {v:?}");
    assert_eq!(back.key_salt(), c.key_salt(), "key||salt: {s:?} -> {v:?}");
    assert_eq!(back.lifetime, c.lifetime, "lifetime: {s:?} -> {v:?}");
    assert_eq!(back.mki, c.mki, "mki: {s:?} -> {v:?}");
    assert_eq!(back.more_keys, c.more_keys, "more keys: {s:?} -> {v:?}");
    assert_eq!(back.session_params, c.session_params, "session params: {s:?} -> {v:?}");
    // Serialising is then a fixed point.
    assert_eq!(back.to_value(), v);

    // The plain formatter agrees on the first three fields.
    let plain = crypto_value(c.tag, c.suite, c.key_salt());
    let p = Crypto::parse(&plain).unwrap_or_else(|e| panic!("{plain:?} does not parse: {e:?}"));
    assert_eq!((p.tag, p.suite, p.key_salt()), (c.tag, c.suite, c.key_salt()));
});
