//! RFC 7587 §6.1 Opus fmtp parameters: `OpusFmtp::parse` on arbitrary
//! UTF-8 (network input from SDP). Nothing may panic; every value kept is
//! in its RFC range; what parses re-serialises with `Display` to a string
//! that parses back to the same parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_codec::opus::OpusFmtp;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let f = OpusFmtp::parse(&s);
    for r in [f.maxplaybackrate, f.sprop_maxcapturerate].into_iter().flatten() {
        assert!((8000..=48000).contains(&r), "{s:?}: rate {r}");
    }
    if let Some(b) = f.maxaveragebitrate {
        assert!((6000..=510_000).contains(&b), "{s:?}: bitrate {b}");
    }
    for p in [f.ptime, f.minptime].into_iter().flatten() {
        assert!((3..=120).contains(&p), "{s:?}: ptime {p}");
    }
    let out = f.to_string();
    assert_eq!(OpusFmtp::parse(&out), f, "{s:?} -> {out:?}");
});
