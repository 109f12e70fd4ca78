//! Known-answer tests (RFC 3711 Appendix B, RFC 7714 §16–17), round trips
//! for every suite, ROC and replay handling, persistence, and garbage in.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cm::Cm;
use super::kdf::{self, SessionKeys};
use super::{Context, SrtpError, StreamState, Suite, MAX_STREAMS};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).expect("test vector hex")
}

fn session_keys(key: &[u8], salt: &[u8]) -> SessionKeys {
    let mut k = SessionKeys {
        key: [0; 32],
        auth: [0; 20],
        salt: [0; 14],
    };
    k.key[..key.len()].copy_from_slice(key);
    k.salt[..salt.len()].copy_from_slice(salt);
    k
}

/// A context keyed with session keys directly, as RFC 7714's vectors are.
fn raw_context(suite: Suite, key: &[u8], salt: &[u8]) -> Context {
    let k = session_keys(key, salt);
    Context::from_session_keys(suite, &k, &k).expect("raw context")
}

/// A 12-octet-header RTP packet with `payload_len` octets of a pattern.
fn rtp(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i * 7 + seq as usize) as u8));
    p
}

/// An RTCP receiver report with one report block and some padding words.
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0x00, 0x07];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..24).map(|i| i as u8 ^ 0x5a));
    p
}

fn protect(ctx: &mut Context, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 16, 0);
    let n = ctx.protect_rtp(&mut buf, plain.len()).expect("protect_rtp");
    buf.truncate(n);
    buf
}

fn unprotect(ctx: &mut Context, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtp.to_vec();
    let n = ctx.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn protect_c(ctx: &mut Context, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 20, 0);
    let n = ctx
        .protect_rtcp(&mut buf, plain.len())
        .expect("protect_rtcp");
    buf.truncate(n);
    buf
}

fn unprotect_c(ctx: &mut Context, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtcp.to_vec();
    let n = ctx.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn master(suite: Suite) -> (Vec<u8>, Vec<u8>) {
    let key = (0..suite.key_len() as u8)
        .map(|i| i.wrapping_mul(31) ^ 0xa5)
        .collect();
    let salt = (0..suite.salt_len() as u8)
        .map(|i| i.wrapping_mul(17) ^ 0x3c)
        .collect();
    (key, salt)
}

fn pair(suite: Suite) -> (Context, Context) {
    let (k, s) = master(suite);
    (
        Context::new(suite, &k, &s).expect("tx"),
        Context::new(suite, &k, &s).expect("rx"),
    )
}

// RFC 3711 Appendix B.2: the AES-CM keystream for session key
// 2B7E1516..., salt F0F1...FD, SSRC 0, index 0 (B.1 is AES-f8, which is
// not implemented).
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let keys = session_keys(
        &unhex("2B7E151628AED2A6ABF7158809CF4F3C"),
        &unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
    );
    let cm = Cm::new(&keys, 16, 10).expect("cm");
    let mut ks = vec![0u8; 0xff02 * 16];
    cm.apply_keystream(0, 0, &mut ks);
    let block = |n: usize| hex::encode_upper(&ks[n * 16..n * 16 + 16]);
    assert_eq!(block(0), "E03EAD0935C95E80E166B16DD92B4EB4");
    assert_eq!(block(1), "D23513162B02D0F72A43A2FE4A5F97AB");
    assert_eq!(block(2), "41E95B3BB0A2E8DD477901E4FCA894C0");
    assert_eq!(block(0xfeff), "EC8CDF7398607CB0F2D21675EA9EA1E4");
    assert_eq!(block(0xff00), "362B7C3C6773516318A077D7FC5073AE");
    assert_eq!(block(0xff01), "6A2CC3787889374FBEB4C81B17BA6C44");
}

// RFC 3711 Appendix B.3: session keys from master key E1F97A0D...
#[test]
fn rfc3711_b3_key_derivation() {
    let k = kdf::derive(
        Suite::AesCm128HmacSha1_80,
        &unhex("E1F97A0D3E018BE0D64FA32C06DE4139"),
        &unhex("0EC675AD498AFEEBB6960B3AABE6"),
        kdf::LABEL_SRTP,
    )
    .expect("derive");
    assert_eq!(
        hex::encode_upper(&k.key[..16]),
        "C61E7A93744F39EE10734AFE3FF7A087"
    );
    assert_eq!(hex::encode_upper(k.salt), "30CBBC08863D8C85D49DB34A9AE1");
    assert_eq!(
        hex::encode_upper(k.auth),
        "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"
    );
}

#[test]
fn bad_key_lengths() {
    for suite in Suite::ALL {
        let (k, s) = master(suite);
        assert!(Context::new(suite, &k, &s).is_ok());
        assert_eq!(
            Context::new(suite, &k[1..], &s).err(),
            Some(SrtpError::BadKey)
        );
        assert_eq!(
            Context::new(suite, &k, &s[1..]).err(),
            Some(SrtpError::BadKey)
        );
    }
}

const GCM_KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const GCM_SALT: &str = "517569642070726f2071756f";
/// RFC 7714 §16: SSRC 0x5501a0b2, SEQ 0xf17b, "Gallia est omnis divisa
/// in partes tres".
const GCM_RTP: &str = "8040f17b8041f8d35501a0b2 47616c6c696120657374206f6d6e6973
    2064697669736120696e207061727465732074726573";
/// RFC 7714 §17.1–17.3: an SR from SSRC 0x4d617273 ("Mars").
const GCM_RTCP: &str = "81c8000d4d6172734e5450314e545032525450200000042a0000e930
    4c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
const GCM_SRTCP_INDEX: u32 = 0x5d4;

fn check_gcm_rtp(suite: Suite, key: &str, expected: &str) {
    let plain = unhex(GCM_RTP);
    let expected = unhex(expected);
    let mut tx = raw_context(suite, &unhex(key), &unhex(GCM_SALT));
    assert_eq!(protect(&mut tx, &plain), expected);
    let mut rx = raw_context(suite, &unhex(key), &unhex(GCM_SALT));
    assert_eq!(unprotect(&mut rx, &expected).expect("unprotect"), plain);
}

fn check_gcm_rtcp(suite: Suite, key: &str, expected: &str) {
    let plain = unhex(GCM_RTCP);
    let expected = unhex(expected);
    let mut tx = raw_context(suite, &unhex(key), &unhex(GCM_SALT));
    tx.restore(StreamState {
        ssrc: 0x4d61_7273,
        roc: 0,
        seq: 0,
        srtcp_index: GCM_SRTCP_INDEX,
    });
    assert_eq!(protect_c(&mut tx, &plain), expected);
    let mut rx = raw_context(suite, &unhex(key), &unhex(GCM_SALT));
    assert_eq!(unprotect_c(&mut rx, &expected).expect("unprotect"), plain);
}

// RFC 7714 §16.1.1 (encrypt) and §16.1.2 (decrypt), AEAD_AES_128_GCM.
#[test]
fn rfc7714_16_1_aes128_gcm_srtp() {
    check_gcm_rtp(
        Suite::AeadAes128Gcm,
        GCM_KEY_128,
        "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bca
         be633bd50d294e6f42a5f47a51c7d19b36de3adf8833 899d7f27beb16a9152cf765ee4390cce",
    );
}

// RFC 7714 §16.2.1/§16.2.2, AEAD_AES_256_GCM.
#[test]
fn rfc7714_16_2_aes256_gcm_srtp() {
    check_gcm_rtp(
        Suite::AeadAes256Gcm,
        GCM_KEY_256,
        "8040f17b8041f8d35501a0b2 32b1de78a822fe12ef9f78fa332e33aa
         b18012389a58e2f3b50b2a0276ffae0f1ba63799b87b 7aa3db36dfffd6b0f9bb7878d7a76c13",
    );
}

// RFC 7714 §17.1, SRTCP AEAD_AES_128_GCM, index 0x5d4.
#[test]
fn rfc7714_17_1_aes128_gcm_srtcp() {
    check_gcm_rtcp(
        Suite::AeadAes128Gcm,
        GCM_KEY_128,
        "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d
         6fda4ce09b4686303ded0bb9275bc84aa458 96cf4d2fc5abf87245d9eade 800005d4",
    );
}

// RFC 7714 §17.2, SRTCP AEAD_AES_256_GCM.
#[test]
fn rfc7714_17_2_aes256_gcm_srtcp() {
    check_gcm_rtcp(
        Suite::AeadAes256Gcm,
        GCM_KEY_256,
        "81c8000d4d617273 d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be
         8415f658c61de0476f1b6fad 1d1eb30c4446839f57ff6f6c b26ac3be 800005d4",
    );
}

// RFC 7714 §17.3: E = 0, authenticated but not encrypted.
#[test]
fn rfc7714_17_3_srtcp_auth_only() {
    let plain = unhex(GCM_RTCP);
    let tagged = unhex(&format!(
        "{GCM_RTCP} 841dd9683dd78ec92ae58790125f62b3 000005d4"
    ));
    let mut rx = raw_context(Suite::AeadAes128Gcm, &unhex(GCM_KEY_128), &unhex(GCM_SALT));
    assert_eq!(unprotect_c(&mut rx, &tagged).expect("unprotect"), plain);
    // Flip one bit of the clear payload: the tag covers it.
    let mut forged = tagged.clone();
    forged[20] ^= 1;
    let mut rx = raw_context(Suite::AeadAes128Gcm, &unhex(GCM_KEY_128), &unhex(GCM_SALT));
    assert_eq!(unprotect_c(&mut rx, &forged), Err(SrtpError::AuthFailed));
}

#[test]
fn suite_names_and_ids() {
    for suite in Suite::ALL {
        assert_eq!(Suite::from_name(suite.name()), Some(suite));
        assert_eq!(Suite::from_u8(suite.as_u8()), Some(suite));
        assert_eq!(suite.master_len(), suite.key_len() + suite.salt_len());
        if let Some(id) = suite.dtls_profile() {
            assert_eq!(Suite::from_dtls_profile(id), Some(suite));
            assert!(suite.dtls_profile_name().is_some());
        } else {
            assert_eq!(suite.dtls_profile_name(), None);
        }
    }
    assert_eq!(Suite::from_name("AES_CM_256_HMAC_SHA1_80"), None);
    assert_eq!(Suite::from_name("aes_cm_128_hmac_sha1_80"), None);
    assert_eq!(Suite::from_u8(0), None);
    assert_eq!(Suite::from_u8(6), None);
    assert_eq!(Suite::from_dtls_profile(0x0003), None);
    let lens: Vec<_> = Suite::ALL
        .iter()
        .map(|s| (s.rtp_tag_len(), s.rtcp_tag_len()))
        .collect();
    assert_eq!(lens, [(10, 10), (4, 10), (10, 10), (16, 16), (16, 16)]);
    let masters: Vec<_> = Suite::ALL.iter().map(|s| s.master_len()).collect();
    assert_eq!(masters, [30, 30, 46, 28, 44]);
    assert_eq!(Suite::AeadAes128Gcm.dtls_profile(), Some(0x0007));
    assert_eq!(
        Suite::AesCm128HmacSha1_32.dtls_profile_name(),
        Some("SRTP_AES128_CM_SHA1_32")
    );
    assert_eq!(SrtpError::AuthFailed.reason(), "auth");
    assert_eq!(SrtpError::Replayed.reason(), "replay");
}

#[test]
fn rtp_round_trip_every_suite() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        for seq in 1000..1010u16 {
            let plain = rtp(seq, 0x1234_5678, 160);
            let srtp = protect(&mut tx, &plain);
            assert_eq!(srtp.len(), plain.len() + suite.rtp_tag_len(), "{suite}");
            assert_eq!(srtp[..12], plain[..12], "{suite}: header in the clear");
            assert_ne!(srtp[12..172], plain[12..], "{suite}: payload encrypted");
            assert_eq!(
                unprotect(&mut rx, &srtp).as_deref(),
                Ok(&plain[..]),
                "{suite}"
            );
        }
    }
}

#[test]
fn rtp_tamper_replay_and_too_old() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let old = protect(&mut tx, &rtp(100, 7, 160));
        let mut last = Vec::new();
        for seq in 101..=300u16 {
            last = protect(&mut tx, &rtp(seq, 7, 160));
        }
        // Every bit of header, payload and tag is covered.
        for byte in [0usize, 3, 11, 12, 100, last.len() - 1] {
            let mut forged = last.clone();
            forged[byte] ^= 0x10;
            let got = unprotect(&mut rx, &forged);
            assert!(
                matches!(got, Err(SrtpError::AuthFailed | SrtpError::Malformed)),
                "{suite} byte {byte}: {got:?}"
            );
        }
        assert!(unprotect(&mut rx, &last).is_ok(), "{suite}");
        // Once received, even a forgery of it is refused as a replay
        // without the cost of a MAC (RFC 3711 §3.3 checks replay first).
        let mut forged = last.clone();
        forged[50] ^= 1;
        assert_eq!(unprotect(&mut rx, &forged), Err(SrtpError::Replayed));
        let mut forged = protect(&mut tx, &rtp(301, 7, 160));
        forged[50] ^= 1;
        assert_eq!(
            unprotect(&mut rx, &forged),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        assert_eq!(
            unprotect(&mut rx, &last),
            Err(SrtpError::Replayed),
            "{suite}"
        );
        assert_eq!(unprotect(&mut rx, &old), Err(SrtpError::TooOld), "{suite}");
    }
}

#[test]
fn rtp_reordering_inside_the_window() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let pkts: Vec<_> = (0..70u16)
        .map(|s| protect(&mut tx, &rtp(s + 10, 9, 20)))
        .collect();
    assert!(unprotect(&mut rx, &pkts[0]).is_ok());
    assert!(unprotect(&mut rx, &pkts[65]).is_ok());
    // 63 behind the top: accepted once; 64 behind: too old.
    assert!(unprotect(&mut rx, &pkts[2]).is_ok());
    assert_eq!(unprotect(&mut rx, &pkts[2]), Err(SrtpError::Replayed));
    assert_eq!(unprotect(&mut rx, &pkts[1]), Err(SrtpError::TooOld));
    for p in &pkts[3..65] {
        assert!(unprotect(&mut rx, p).is_ok());
    }
    assert!(unprotect(&mut rx, &pkts[69]).is_ok());
    assert!(unprotect(&mut rx, &pkts[66]).is_ok());
}

#[test]
fn roc_wraps_on_both_sides() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let mut seq = 65530u16;
        for _ in 0..12 {
            let plain = rtp(seq, 0xabcd, 40);
            let srtp = protect(&mut tx, &plain);
            assert_eq!(
                unprotect(&mut rx, &srtp).as_deref(),
                Ok(&plain[..]),
                "{suite} {seq}"
            );
            seq = seq.wrapping_add(1);
        }
        let tx_state = tx.streams().next().expect("tx stream");
        let rx_state = rx.streams().next().expect("rx stream");
        assert_eq!((tx_state.roc, tx_state.seq), (1, 5), "{suite}");
        assert_eq!(rx_state, tx_state, "{suite}");
        // A late packet from before the wrap is still sent and read
        // under ROC 0.
        let plain = rtp(65534, 0xabcd, 40);
        let mut rx2 = pair(suite).1;
        let late = protect(&mut tx, &plain);
        assert_eq!(unprotect(&mut rx2, &late).as_deref(), Ok(&plain[..]));
        assert_eq!(
            unprotect(&mut rx, &late),
            Err(SrtpError::Replayed),
            "{suite}"
        );
    }
}

#[test]
fn roc_is_in_the_tag() {
    // The same SEQ under ROC 0 and ROC 1 is a different packet.
    let (mut tx, _) = pair(Suite::AesCm128HmacSha1_80);
    let first = protect(&mut tx, &rtp(5, 1, 20));
    tx.restore(StreamState {
        ssrc: 1,
        roc: 1,
        seq: 4,
        srtcp_index: 0,
    });
    let second = protect(&mut tx, &rtp(5, 1, 20));
    assert_ne!(first, second);
}

#[test]
fn restore_continues_the_roc() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let saved = StreamState {
            ssrc: 0x5eed,
            roc: 1,
            seq: 65530,
            srtcp_index: 40,
        };
        tx.restore(saved);
        rx.restore(saved);
        assert_eq!(tx.streams().collect::<Vec<_>>(), [saved]);
        let plain = rtp(5, 0x5eed, 160);
        let srtp = protect(&mut tx, &plain);
        assert_eq!(
            unprotect(&mut rx, &srtp).as_deref(),
            Ok(&plain[..]),
            "{suite}"
        );
        let now = rx.streams().next().expect("stream");
        assert_eq!((now.roc, now.seq), (2, 5), "{suite}");
        // It really was ROC 2: a receiver that knows ROC 2 from the start
        // reads it too, one that thinks ROC 1 does not.
        let (_, mut rx2) = pair(suite);
        rx2.restore(StreamState {
            roc: 2,
            seq: 0,
            ..saved
        });
        assert_eq!(
            unprotect(&mut rx2, &srtp).as_deref(),
            Ok(&plain[..]),
            "{suite}"
        );
        let (_, mut rx1) = pair(suite);
        rx1.restore(StreamState {
            roc: 1,
            seq: 0,
            ..saved
        });
        assert_eq!(
            unprotect(&mut rx1, &srtp),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        // What was at or before the saved point is refused after restore.
        let (mut tx3, _) = pair(suite);
        tx3.restore(StreamState {
            seq: 65529,
            ..saved
        });
        let before = protect(&mut tx3, &rtp(65530, 0x5eed, 160));
        assert_eq!(unprotect(&mut rx, &before), Err(SrtpError::Replayed));
        // SRTCP carries on from the saved index.
        let srtcp = protect_c(&mut tx, &rtcp(0x5eed));
        let idx = u32::from_be_bytes(srtcp_trailer(suite, &srtcp)) & 0x7fff_ffff;
        assert_eq!(idx, 40, "{suite}");
        assert_eq!(
            unprotect_c(&mut rx, &srtcp),
            Err(SrtpError::Replayed),
            "{suite}"
        );
        let srtcp = protect_c(&mut tx, &rtcp(0x5eed));
        assert!(unprotect_c(&mut rx, &srtcp).is_ok(), "{suite}");
        assert_eq!(tx.streams().next().map(|s| s.srtcp_index), Some(42));
        assert_eq!(rx.streams().next().map(|s| s.srtcp_index), Some(41));
    }
}

fn srtcp_trailer(suite: Suite, srtcp: &[u8]) -> [u8; 4] {
    let at = if suite.is_aead() {
        srtcp.len() - 4
    } else {
        srtcp.len() - 4 - suite.rtcp_tag_len()
    };
    let mut t = [0u8; 4];
    t.copy_from_slice(&srtcp[at..at + 4]);
    t
}

#[test]
fn rtcp_round_trip_every_suite() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let plain = rtcp(0xfeed);
        let mut sent = Vec::new();
        for n in 0..5u32 {
            let srtcp = protect_c(&mut tx, &plain);
            assert_eq!(
                srtcp.len(),
                plain.len() + 4 + suite.rtcp_tag_len(),
                "{suite}"
            );
            assert_eq!(srtcp[..8], plain[..8]);
            assert_ne!(srtcp[8..plain.len()], plain[8..]);
            assert_eq!(
                u32::from_be_bytes(srtcp_trailer(suite, &srtcp)),
                0x8000_0000 | n
            );
            sent.push(srtcp);
        }
        for srtcp in sent.iter().rev() {
            assert_eq!(
                unprotect_c(&mut rx, srtcp).as_deref(),
                Ok(&plain[..]),
                "{suite}"
            );
        }
        assert_eq!(unprotect_c(&mut rx, &sent[2]), Err(SrtpError::Replayed));
        let mut forged = protect_c(&mut tx, &plain);
        forged[12] ^= 0x80;
        assert_eq!(
            unprotect_c(&mut rx, &forged),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        // The E flag and index are authenticated too.
        let mut forged = protect_c(&mut tx, &plain);
        let at = forged.len()
            - if suite.is_aead() {
                1
            } else {
                1 + suite.rtcp_tag_len()
            };
        forged[at] ^= 1;
        assert_eq!(
            unprotect_c(&mut rx, &forged),
            Err(SrtpError::AuthFailed),
            "{suite}"
        );
        // SRTP and SRTCP keys differ.
        let mut buf = rtp(1, 0xfeed, 40);
        let n = buf.len();
        buf.resize(n + 16, 0);
        let n = tx.protect_rtp(&mut buf, n).expect("protect");
        assert!(rx.unprotect_rtcp(&mut buf[..n]).is_err());
    }
}

#[test]
fn rtcp_index_too_old() {
    let (mut tx, mut rx) = pair(Suite::AeadAes128Gcm);
    let plain = rtcp(3);
    let first = protect_c(&mut tx, &plain);
    let mut last = Vec::new();
    for _ in 0..100 {
        last = protect_c(&mut tx, &plain);
    }
    assert!(unprotect_c(&mut rx, &last).is_ok());
    assert_eq!(unprotect_c(&mut rx, &first), Err(SrtpError::TooOld));
}

#[test]
fn header_extension_and_csrcs_stay_clear() {
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        // CC = 2, X = 1 with a 2-word extension: 12 + 8 + 4 + 8 = 32.
        let mut plain = vec![0x92, 0x60, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 42];
        plain.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]);
        plain.extend_from_slice(&[
            0xbe, 0xde, 0x00, 0x02, 0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0,
        ]);
        plain.extend_from_slice(&[0x55; 20]);
        let srtp = protect(&mut tx, &plain);
        assert_eq!(srtp[..32], plain[..32], "{suite}");
        assert_ne!(srtp[32..52], plain[32..], "{suite}");
        assert_eq!(unprotect(&mut rx, &srtp).as_deref(), Ok(&plain[..]));
    }
}

#[test]
fn malformed_and_short_input() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let mut buf = rtp(1, 1, 20);
    buf[0] = 0x40; // version 1
    let n = buf.len();
    buf.resize(n + 10, 0);
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Malformed));
    assert_eq!(rx.unprotect_rtp(&mut buf), Err(SrtpError::Malformed));
    // 15 CSRCs announced, none there.
    let mut buf = rtp(1, 1, 20);
    buf[0] = 0x8f;
    buf.resize(n + 10, 0);
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Malformed));
    // Extension longer than the packet.
    let mut buf = rtp(1, 1, 20);
    buf[0] = 0x90;
    buf[12..16].copy_from_slice(&[0xbe, 0xde, 0x01, 0x00]);
    buf.resize(n + 10, 0);
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Malformed));
    // No room for the tag; len past the buffer.
    let mut buf = rtp(1, 1, 20);
    let n = buf.len();
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::NoRoom));
    assert_eq!(tx.protect_rtp(&mut buf, n + 1), Err(SrtpError::Truncated));
    buf.resize(n + 13, 0);
    assert_eq!(tx.protect_rtcp(&mut buf, 7), Err(SrtpError::Truncated));
    assert_eq!(
        tx.protect_rtcp(&mut buf[..n + 13], n),
        Err(SrtpError::NoRoom)
    );
    assert_eq!(rx.unprotect_rtp(&mut [0x80; 21]), Err(SrtpError::Truncated));
    assert_eq!(
        rx.unprotect_rtcp(&mut [0x80; 21]),
        Err(SrtpError::Truncated)
    );
    assert_eq!(rx.unprotect_rtp(&mut []), Err(SrtpError::Truncated));
}

#[test]
fn lru_stream_table() {
    let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
    let n = MAX_STREAMS as u32;
    for ssrc in 0..n {
        let srtp = protect(&mut tx, &rtp(10, ssrc, 20));
        assert!(unprotect(&mut rx, &srtp).is_ok());
    }
    // Keep SSRC 0 fresh; SSRC 1 is then the least recently used.
    let srtp = protect(&mut tx, &rtp(11, 0, 20));
    assert!(unprotect(&mut rx, &srtp).is_ok());
    // A forged packet from a new SSRC evicts nothing.
    let mut forged = protect(&mut tx, &rtp(10, 1000, 20));
    forged[20] ^= 1;
    assert_eq!(unprotect(&mut rx, &forged), Err(SrtpError::AuthFailed));
    assert_eq!(rx.streams().count(), MAX_STREAMS);
    assert!(rx.streams().any(|s| s.ssrc == 1));
    let srtp = protect(&mut tx, &rtp(10, 2000, 20));
    assert!(unprotect(&mut rx, &srtp).is_ok());
    let ssrcs: Vec<u32> = rx.streams().map(|s| s.ssrc).collect();
    assert_eq!(ssrcs.len(), MAX_STREAMS);
    assert!(ssrcs.contains(&0) && ssrcs.contains(&2000) && !ssrcs.contains(&1));
}

#[test]
fn garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5eed_5a17);
    for suite in Suite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let valid = protect(&mut tx, &rtp(9, 77, 160));
        let valid_c = protect_c(&mut tx, &rtcp(77));
        for round in 0..3000 {
            let len = rng.gen_range(0..300);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if round % 3 == 0 && !buf.is_empty() {
                // Mostly RTP/RTCP version 2, to get past the first check.
                buf[0] = (buf[0] & 0x3f) | 0x80;
            }
            let _ = rx.unprotect_rtp(&mut buf.clone());
            let _ = rx.unprotect_rtcp(&mut buf.clone());
            let plain_len = rng.gen_range(0..=buf.len());
            let _ = tx.protect_rtp(&mut buf.clone(), plain_len);
            let _ = tx.protect_rtcp(&mut buf.clone(), plain_len);
            let _ = tx.protect_rtp(&mut buf.clone(), buf.len() + 1);
            // Truncations and single-bit flips of real packets.
            let cut = rng.gen_range(0..=valid.len());
            let _ = rx.unprotect_rtp(&mut valid[..cut].to_vec());
            let cut = rng.gen_range(0..=valid_c.len());
            let _ = rx.unprotect_rtcp(&mut valid_c[..cut].to_vec());
            let mut flipped = valid.clone();
            let bit = rng.gen_range(0..flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(rx.unprotect_rtp(&mut flipped).is_err(), "{suite} bit {bit}");
        }
    }
}
