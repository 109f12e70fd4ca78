//! SRTP/SRTCP unprotect on arbitrary packets under every suite, and
//! protect → unprotect round trips of whatever parses as RTP/RTCP.
//!
//! Asserts: an unprotected length never exceeds the packet; a refused
//! packet is left as it was (RFC 3711 §3.3: nothing is decrypted before
//! the tag checks out; for SRTCP under AES-GCM with E = 0 the documented
//! exception, the 4 bytes the index moves over, is allowed); a protected
//! packet unprotects to the original bytes, a one-byte change of it is
//! refused and does not disturb the receiver, and a replay is refused.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tern_secure::srtp::{Context, SrtpError, Suite};

/// A fresh context for `suite` under a fixed key and salt. Key derivation
/// runs once per suite; each use gets a clone of the untouched context.
fn context(suite: Suite) -> Context {
    static FRESH: OnceLock<Vec<Context>> = OnceLock::new();
    let fresh = FRESH.get_or_init(|| {
        Suite::ALL
            .into_iter()
            .map(|suite| {
                let key: Vec<u8> = (0..suite.key_len() as u8).collect();
                let salt: Vec<u8> = (0..suite.salt_len() as u8).map(|b| 0xA0 ^ b).collect();
                Context::new(suite, &key, &salt).expect("fixed key and salt have the suite's lengths")
            })
            .collect()
    });
    let c = fresh.iter().find(|c| c.suite() == suite).expect("every suite").clone();
    assert!(c.streams().next().is_none());
    c
}

/// What `unprotect_rtcp` may overwrite on failure: the tag octets the
/// E + index word moves over for an unencrypted AES-GCM packet.
fn rtcp_scratch(suite: Suite, pkt: &[u8]) -> Option<std::ops::Range<usize>> {
    let tag = suite.rtcp_tag_len();
    if !suite.is_aead() || pkt.len() < 8 + 4 + tag {
        return None;
    }
    let plain_len = pkt.len() - 4 - tag;
    Some(plain_len..plain_len + 4)
}

fn same_except(a: &[u8], b: &[u8], skip: Option<std::ops::Range<usize>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| x == y || skip.as_ref().is_some_and(|r| r.contains(&i)))
}

fuzz_target!(|data: &[u8]| {
    // A byte that picks which octet of a protected packet to change.
    let flip_at = data.first().map_or(0, |&b| usize::from(b));

    for suite in Suite::ALL {
        // Arbitrary bytes as SRTP and as SRTCP.
        let mut rx = context(suite);
        let mut pkt = data.to_vec();
        match rx.unprotect_rtp(&mut pkt) {
            Ok(n) => assert!(n <= data.len()),
            Err(e) => assert!(pkt == data, "{suite:?}: unprotect_rtp {e:?} changed the packet"),
        }
        let mut pkt = data.to_vec();
        match rx.unprotect_rtcp(&mut pkt) {
            Ok(n) => assert!(n <= data.len()),
            Err(e) => assert!(
                same_except(&pkt, data, rtcp_scratch(suite, data)),
                "{suite:?}: unprotect_rtcp {e:?} changed the packet"
            ),
        }

        // RTP round trip.
        if data.len() >= 12 && data[0] >> 6 == 2 {
            let tag = suite.rtp_tag_len();
            let mut buf = data.to_vec();
            buf.resize(data.len() + tag, 0);
            let mut tx = context(suite);
            // Malformed (CSRCs or extension overrun) is a fair refusal.
            if let Ok(m) = tx.protect_rtp(&mut buf, data.len()) {
                assert_eq!(m, data.len() + tag);
                assert_eq!(buf[..12], data[..12], "the fixed header stays clear");
                let mut rx = context(suite);
                let mut forged = buf.clone();
                let at = flip_at % m;
                forged[at] ^= 0x01 | (flip_at as u8 & 0xfe);
                assert!(rx.unprotect_rtp(&mut forged).is_err(), "{suite:?}: forged SRTP accepted");
                let mut got = buf.clone();
                let n = rx
                    .unprotect_rtp(&mut got)
                    .unwrap_or_else(|e| panic!("{suite:?}: own SRTP refused: {e:?}"));
                assert_eq!(n, data.len());
                assert_eq!(&got[..n], data, "{suite:?}: SRTP round trip");
                let mut again = buf.clone();
                assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
            }
        }

        // RTCP round trip (always encrypted, E = 1).
        if data.len() >= 8 && data[0] >> 6 == 2 {
            let extra = 4 + suite.rtcp_tag_len();
            let mut buf = data.to_vec();
            buf.resize(data.len() + extra, 0);
            let mut tx = context(suite);
            let m = tx
                .protect_rtcp(&mut buf, data.len())
                .unwrap_or_else(|e| panic!("{suite:?}: protect_rtcp refused {e:?}"));
            assert_eq!(m, data.len() + extra);
            assert_eq!(buf[..8], data[..8], "the RTCP header stays clear");
            let mut rx = context(suite);
            let mut forged = buf.clone();
            let at = flip_at % m;
            forged[at] ^= 0x01 | (flip_at as u8 & 0xfe);
            assert!(rx.unprotect_rtcp(&mut forged).is_err(), "{suite:?}: forged SRTCP accepted");
            let mut got = buf.clone();
            let n = rx
                .unprotect_rtcp(&mut got)
                .unwrap_or_else(|e| panic!("{suite:?}: own SRTCP refused: {e:?}"));
            assert_eq!(n, data.len());
            assert_eq!(&got[..n], data, "{suite:?}: SRTCP round trip");
            let mut again = buf.clone();
            assert_eq!(rx.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
        }
    }
});
