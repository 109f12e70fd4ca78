//! Known-answer tests (RFC 3711 Appendix B, RFC 7714 §16–17) and the
//! suite table; the helpers `streams` shares.

use super::cm::Cm;
use super::kdf::{self, SessionKeys};
use super::{Context, SrtpError, StreamState, Suite};

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

mod streams;
