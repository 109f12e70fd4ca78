//! tern-secure's SRTP/SRTCP against libsrtp2 (the `srtp` crate), every
//! suite: `cargo test -p tern-bench --features libsrtp --test libsrtp_interop`.
#![cfg(feature = "libsrtp")]

use srtp::{CryptoPolicy, Session, StreamPolicy};
use tern_secure::srtp::{Context, Suite};

const SSRC: u32 = 0xdead_beef;

/// libsrtp's (SRTP, SRTCP) policies for a suite; the `_32` suite keeps an
/// 80-bit SRTCP tag (RFC 4568 §6.2.1).
fn policies(suite: Suite) -> (CryptoPolicy, CryptoPolicy) {
    match suite {
        Suite::AesCm128HmacSha1_80 => (
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
        ),
        Suite::AesCm128HmacSha1_32 => (
            CryptoPolicy::aes_cm_128_hmac_sha1_32(),
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
        ),
        Suite::AesCm256HmacSha1_80 => (
            CryptoPolicy::aes_cm_256_hmac_sha1_80(),
            CryptoPolicy::aes_cm_256_hmac_sha1_80(),
        ),
        Suite::AeadAes128Gcm => (
            CryptoPolicy::aes_gcm_128_16_auth(),
            CryptoPolicy::aes_gcm_128_16_auth(),
        ),
        Suite::AeadAes256Gcm => (
            CryptoPolicy::aes_gcm_256_16_auth(),
            CryptoPolicy::aes_gcm_256_16_auth(),
        ),
    }
}

fn master(suite: Suite) -> Vec<u8> {
    (0..suite.master_len() as u8)
        .map(|i| i.wrapping_mul(13) ^ 0x71)
        .collect()
}

fn ours(suite: Suite) -> Context {
    let m = master(suite);
    let (key, salt) = m.split_at(suite.key_len());
    Context::new(suite, key, salt).expect("context")
}

fn theirs(suite: Suite, inbound: bool) -> Session {
    let key = master(suite);
    let (rtp, rtcp) = policies(suite);
    let p = StreamPolicy {
        rtp,
        rtcp,
        key: &key,
        ..Default::default()
    };
    if inbound {
        Session::with_inbound_template(p).expect("libsrtp inbound")
    } else {
        Session::with_outbound_template(p).expect("libsrtp outbound")
    }
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x08];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn rtcp() -> Vec<u8> {
    let mut p = vec![0x81, 201, 0x00, 0x07];
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend((0..24u8).map(|i| i ^ 0x3c));
    p
}

#[test]
fn srtp_same_bytes_both_ways_across_the_roc_wrap() {
    for suite in Suite::ALL {
        let (mut our_tx, mut our_rx) = (ours(suite), ours(suite));
        let (mut their_tx, mut their_rx) = (theirs(suite, false), theirs(suite, true));
        let mut seq = 65530u16;
        for _ in 0..12 {
            let plain = rtp(seq);
            let mut a = plain.clone();
            a.resize(plain.len() + 16, 0);
            let n = our_tx.protect_rtp(&mut a, plain.len()).expect("protect");
            a.truncate(n);
            let mut b = plain.clone();
            their_tx.protect(&mut b).expect("libsrtp protect");
            assert_eq!(a, b, "{suite} seq {seq}: same SRTP bytes");
            their_rx.unprotect(&mut a).expect("libsrtp unprotect");
            assert_eq!(a, plain, "{suite}");
            let m = our_rx.unprotect_rtp(&mut b).expect("unprotect");
            assert_eq!(&b[..m], &plain[..], "{suite}");
            seq = seq.wrapping_add(1);
        }
    }
}

#[test]
fn srtcp_both_ways() {
    for suite in Suite::ALL {
        let (mut our_tx, mut our_rx) = (ours(suite), ours(suite));
        let (mut their_tx, mut their_rx) = (theirs(suite, false), theirs(suite, true));
        for _ in 0..3 {
            let plain = rtcp();
            let mut a = plain.clone();
            a.resize(plain.len() + 20, 0);
            let n = our_tx.protect_rtcp(&mut a, plain.len()).expect("protect");
            a.truncate(n);
            their_rx
                .unprotect_rtcp(&mut a)
                .expect("libsrtp unprotect_rtcp");
            assert_eq!(a, plain, "{suite}");
            let mut b = plain.clone();
            their_tx.protect_rtcp(&mut b).expect("libsrtp protect_rtcp");
            let m = our_rx.unprotect_rtcp(&mut b).expect("unprotect_rtcp");
            assert_eq!(&b[..m], &plain[..], "{suite}");
        }
    }
}
