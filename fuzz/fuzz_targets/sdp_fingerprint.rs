//! `sdp::Fingerprint::parse` (an `a=fingerprint` value, RFC 8122 §5) on
//! arbitrary UTF-8. What parses has the digest length of its hash, and
//! `to_value` writes a value that parses back to the same fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_shared::sdp::{Fingerprint, FINGERPRINT_HASHES};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = Fingerprint::parse(s) else {
        return;
    };
    let &(_, len) = FINGERPRINT_HASHES
        .iter()
        .find(|(n, _)| *n == f.algorithm)
        .expect("algorithm is one of FINGERPRINT_HASHES, lower case");
    assert_eq!(f.digest().len(), len);
    let _ = format!("{f:?}");

    let v = f.to_value();
    assert_eq!(v.len(), f.algorithm.len() + 1 + 3 * len - 1);
    let back = Fingerprint::parse(&v).unwrap_or_else(|e| panic!("{s:?} -> {v:?} does not parse: {e:?}"));
    assert_eq!(back, f, "{s:?} -> {v:?}");
    assert_eq!(back.to_value(), v);
});
