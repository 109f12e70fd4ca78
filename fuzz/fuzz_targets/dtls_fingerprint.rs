//! `dtls::Fingerprint::parse` (the DTLS side's `a=fingerprint` reader) on
//! arbitrary UTF-8. What parses has its hash's digest length and displays
//! as a value that parses back to the same fingerprint; and the SDP
//! reader (`sdp::Fingerprint`, which also knows md5/md2) reads the same
//! digest from that canonical value and from the input itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_secure::dtls::Fingerprint;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = Fingerprint::parse(s) else {
        return;
    };
    assert_eq!(f.digest.len(), f.algorithm.digest_len());
    let v = f.to_string();
    let back = Fingerprint::parse(&v).unwrap_or_else(|e| panic!("{s:?} -> {v:?} does not parse: {e}"));
    assert_eq!(back, f, "{s:?} -> {v:?}");
    assert_eq!(back.to_string(), v);

    let sdp = tern_shared::sdp::Fingerprint::parse(&v)
        .unwrap_or_else(|e| panic!("sdp reader refuses {v:?}: {e:?}"));
    assert_eq!(sdp.algorithm, f.algorithm.name());
    assert_eq!(sdp.digest(), &f.digest[..]);
    assert_eq!(sdp.to_value(), v);

    // The stricter DTLS reader accepting `s` means the SDP reader (which
    // the signalling path uses first) accepts it with the same digest.
    let sdp = tern_shared::sdp::Fingerprint::parse(s)
        .unwrap_or_else(|e| panic!("dtls reads {s:?}, sdp refuses it: {e:?}"));
    assert_eq!(sdp.digest(), &f.digest[..], "{s:?}");
});
