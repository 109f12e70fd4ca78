//! Transcoding's SDP handling on arbitrary input: the B2BUA's
//! `sdp_transcode::extend_offer` and `transcoded_answer` (a party's SDP
//! from the network, split at the first NUL into offer and answer), and
//! ng's `transcode::parse_name` (a `codec` `transcode` entry). Nothing may
//! panic; an extended offer parses and keeps every format it had, and a
//! transcoded answer lists only the offer's formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_signaling::sdp::audio_formats;
use tern_signaling::sdp_transcode::{extend_offer, transcoded_answer};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for name in s.split(['\n', ',']).take(8) {
            if let Some((c, kbps)) = tern_ng::transcode::parse_name(name) {
                assert!(c.pt <= 127 && kbps <= 510, "{name:?}");
            }
        }
    }
    let (offer, answer) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    if let Ok(x) = extend_offer(offer) {
        if let (Ok(before), Ok(after)) = (audio_formats(offer), audio_formats(&x)) {
            for f in &before {
                assert!(after.iter().any(|a| a.pt == f.pt), "format {} lost", f.pt);
            }
        }
    }
    if let Ok((body, _plan)) = transcoded_answer(offer, answer) {
        if let (Ok(o), Ok(b)) = (audio_formats(offer), audio_formats(&body)) {
            for f in &b {
                assert!(o.iter().any(|x| x.pt == f.pt), "format {} not offered", f.pt);
            }
        }
    }
});
