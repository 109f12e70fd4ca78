use super::*;
use crate::sdp::{Candidate, Sdp};

type E = SecureFieldError;

/// Chrome's DTLS fingerprint line (as in sdp.rs's WEBRTC body).
const CHROME_FP: &str = "sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08";

/// Crypto lines in rtpengine's shape (one suite each, unpadded base64):
/// AEAD_AES_256_GCM with 32+12 bytes, AES_256_CM_HMAC_SHA1_80 with 32+14.
/// The keys are bytes 1..=44 and 100..=145.
const RTPENGINE_GCM: &str =
    "1 AEAD_AES_256_GCM inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKyw";
const RTPENGINE_CM256: &str = "3 AES_256_CM_HMAC_SHA1_80 inline:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkQ";

#[test]
fn rfc4568_examples() {
    let c = Crypto::parse(
        "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32",
    )
    .unwrap();
    assert_eq!((c.tag, c.suite), (1, "AES_CM_128_HMAC_SHA1_80"));
    assert_eq!(c.key_salt(), b"wDfvg&T+)xG7@fb5jU,RaA}\\|p0%*#");
    assert_eq!(c.key_salt().len(), 30);
    assert_eq!(c.lifetime, Some(Lifetime::PowerOfTwo(20)));
    assert_eq!(c.lifetime.map(Lifetime::packets), Some(1 << 20));
    assert_eq!(
        c.mki,
        Some(Mki {
            value: 1,
            length: 32
        })
    );
    assert_eq!((c.more_keys, c.session_params), ("", ""));

    // §9.1's second example: two master keys, each with lifetime and MKI.
    let v = "1 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP";
    let c = Crypto::parse(v).unwrap();
    assert_eq!(c.key_salt(), b"YS___semctl () {\t220;}\n}\nunles");
    assert_eq!(
        c.mki,
        Some(Mki {
            value: 1,
            length: 4
        })
    );
    assert_eq!(
        c.more_keys,
        "inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4"
    );
    assert_eq!(c.session_params, "FEC_ORDER=FEC_SRTP");
    assert_eq!(c.to_value(), v);
    assert!(!c.unencrypted_srtp() && !c.unencrypted_srtcp() && !c.unauthenticated_srtp());
    assert_eq!(c.kdr(), Ok(None));
}

#[test]
fn crypto_session_params_and_lifetimes() {
    let key = "inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj";
    let v = format!(
        "7 AES_CM_128_HMAC_SHA1_80 {key}|1048576  KDR=3 UNENCRYPTED_SRTCP  UNAUTHENTICATED_SRTP WSH=64 "
    );
    let c = Crypto::parse(&v).unwrap();
    assert_eq!(c.lifetime, Some(Lifetime::Packets(1_048_576)));
    assert_eq!(c.mki, None);
    assert_eq!(
        c.session_params,
        "KDR=3 UNENCRYPTED_SRTCP  UNAUTHENTICATED_SRTP WSH=64"
    );
    assert_eq!(c.kdr(), Ok(Some(3)));
    assert!(c.unencrypted_srtcp() && c.unauthenticated_srtp() && !c.unencrypted_srtp());
    assert_eq!(c.session_param_words().count(), 4);
    let v = format!("1 S {key}|5:1 UNENCRYPTED_SRTP KDR=25");
    let c = Crypto::parse(&v).unwrap();
    assert_eq!(
        c.mki,
        Some(Mki {
            value: 5,
            length: 1
        })
    );
    assert!(c.unencrypted_srtp());
    assert_eq!(c.kdr(), Err(E::BadKdr));
    // The key method is matched case-insensitively.
    assert!(Crypto::parse(&format!("1 S INLINE:{}", &key[7..])).is_ok());
    // Tabs separate words too, and a 9-digit tag is the largest.
    let v = format!("999999999\tS\t{key}");
    let c = Crypto::parse(&v).unwrap();
    assert_eq!(c.tag, 999_999_999);
}

#[test]
fn real_world_lines() {
    let f = Fingerprint::parse(CHROME_FP).unwrap();
    assert_eq!(f.algorithm, "sha-256");
    assert_eq!(f.digest().len(), 32);
    assert_eq!(f.digest()[..3], [0x6b, 0x8b, 0xf0]);
    assert_eq!(f.to_value(), CHROME_FP);

    let g = Crypto::parse(RTPENGINE_GCM).unwrap();
    assert_eq!((g.tag, g.suite), (1, "AEAD_AES_256_GCM"));
    assert_eq!(g.key_salt(), (1..=44).collect::<Vec<u8>>());
    let c = Crypto::parse(RTPENGINE_CM256).unwrap();
    assert_eq!((c.tag, c.suite), (3, "AES_256_CM_HMAC_SHA1_80"));
    assert_eq!(c.key_salt(), (100..=145).collect::<Vec<u8>>());
    // Padded and unpadded base64 read the same; Display writes padding.
    let padded = format!("{RTPENGINE_CM256}==");
    assert_eq!(Crypto::parse(&padded).unwrap(), c);
    assert_eq!(c.to_value(), padded);
    // The GCM key padded (60 characters, one `=`) reads the same.
    let padded = format!("{RTPENGINE_GCM}=");
    assert_eq!(Crypto::parse(&padded).unwrap(), g);
    assert_eq!(g.to_value(), padded);
}

#[test]
fn crypto_round_trips_every_suite_length() {
    for (suite, len) in [
        ("AES_CM_128_HMAC_SHA1_80", 30),
        ("AES_256_CM_HMAC_SHA1_32", 46),
        ("AEAD_AES_128_GCM", 28),
        ("AEAD_AES_256_GCM", 44),
        ("AES_192_CM_HMAC_SHA1_80", 38),
    ] {
        let key: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let v = crypto_value(42, suite, &key);
        assert!(v.starts_with(&format!("42 {suite} inline:")), "{v}");
        let c = Crypto::parse(&v).unwrap();
        assert_eq!((c.tag, c.suite, c.key_salt()), (42, suite, &key[..]));
        assert_eq!(c.to_value(), v);
        let mut out = String::from("a=crypto:");
        Crypto::format(42, suite, &key, &mut out);
        assert_eq!(out, format!("a=crypto:{v}"));
    }
}

#[test]
fn crypto_debug_hides_the_key() {
    let c = Crypto::parse(RTPENGINE_GCM).unwrap();
    let body = format!("v=0\r\nm=audio 1 RTP/SAVP 0\r\na=crypto:{RTPENGINE_GCM}\r\n");
    let sdp = Sdp::read(&body);
    let m = SecureMedia::read(&sdp.media(0).unwrap(), None);
    let d = format!("{c:?} {m:#?}");
    assert!(d.contains("tag: 1") && d.contains("AEAD_AES_256_GCM") && d.contains("key_len: 44"));
    for leak in ["AQID", "[1, 2", "0x01", "key: ["] {
        assert!(!d.contains(leak), "{d}");
    }
}

#[test]
fn crypto_errors() {
    let k = "inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj";
    let cases: &[(String, E)] = &[
        (String::new(), E::Missing("tag")),
        ("1".into(), E::Missing("crypto-suite")),
        ("1 S".into(), E::Missing("key-params")),
        (format!("x S {k}"), E::BadTag),
        (format!("+1 S {k}"), E::BadTag),
        (format!("1234567890 S {k}"), E::BadTag),
        (format!("1 S-1 {k}"), E::BadSuite),
        (
            "1 S d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj".into(),
            E::NotInline,
        ),
        ("1 S uri:x".into(), E::NotInline),
        ("1 S inline:".into(), E::Missing("key||salt")),
        ("1 S inline:|2^20".into(), E::Missing("key||salt")),
        ("1 S inline:d0Rm*mcm".into(), E::BadBase64),
        ("1 S inline:d0R".into(), E::BadBase64),
        (format!("1 S inline:{}", "A".repeat(64)), E::KeyTooLong),
        (format!("1 S inline:{}", "A".repeat(65)), E::KeyTooLong),
        (format!("1 S {k}|2^64"), E::BadLifetime),
        (format!("1 S {k}|2^"), E::BadLifetime),
        (format!("1 S {k}|x"), E::BadLifetime),
        (format!("1 S {k}|"), E::BadLifetime),
        (format!("1 S {k}|1:4|2^20"), E::BadLifetime),
        (format!("1 S {k}|2^20|2^20"), E::BadLifetime),
        (format!("1 S {k}|1:4|1:4"), E::BadMki),
        (format!("1 S {k}|x:4"), E::BadMki),
        (format!("1 S {k}|1:0"), E::BadMkiLength),
        (format!("1 S {k}|1:129"), E::BadMkiLength),
        (format!("1 S {k}|1:"), E::BadMkiLength),
    ];
    for (v, e) in cases {
        assert_eq!(Crypto::parse(v).map(|c| c.tag), Err(*e), "{v:?}");
    }
    // 62 characters unpadded are 46 bytes, the most.
    let max = format!("1 S inline:{}", "A".repeat(62));
    assert_eq!(Crypto::parse(&max).unwrap().key_salt(), [0u8; 46]);
    assert_eq!(
        E::KeyTooLong.to_string(),
        "key||salt is longer than 46 bytes"
    );
}

#[test]
fn fingerprints() {
    for &(alg, len) in FINGERPRINT_HASHES {
        let digest: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(29)).collect();
        let v = fingerprint_value(&alg.to_uppercase(), &digest);
        assert!(v.starts_with(&format!("{alg} ")), "{v}");
        let f = Fingerprint::parse(&v).unwrap();
        assert_eq!((f.algorithm, f.digest()), (alg, &digest[..]));
        assert_eq!(f.to_string(), v);
        assert!(format!("{f:?}").contains(alg));
    }
    let lower = Fingerprint::parse(&format!("SHA-256  {}", CHROME_FP[8..].to_lowercase())).unwrap();
    assert_eq!(lower, Fingerprint::parse(CHROME_FP).unwrap());
    let short = "sha-256 6B:8B:F0";
    let cases: &[(&str, E)] = &[
        ("", E::Missing("hash-func")),
        ("sha-256", E::Missing("fingerprint")),
        ("sha-3 AB", E::UnknownHash),
        (
            short,
            E::DigestLength {
                expected: 32,
                got: 3,
            },
        ),
        ("md5 6B:8B:F0:6", E::BadHex),
        ("md5 6B::F0", E::BadHex),
        ("md5 6B:8G", E::BadHex),
        ("md5 6B8B", E::BadHex),
        ("md5 6B:", E::BadHex),
        ("sha-1 é1:02", E::BadHex),
    ];
    for (v, e) in cases {
        assert_eq!(Fingerprint::parse(v), Err(*e), "{v:?}");
    }
    let long = format!("sha-512 {}", ["AA"; 65].join(":"));
    assert_eq!(
        Fingerprint::parse(&long),
        Err(E::DigestLength {
            expected: 64,
            got: 65
        })
    );
}

#[test]
fn setup_roles() {
    for s in [
        Setup::Active,
        Setup::Passive,
        Setup::ActPass,
        Setup::HoldConn,
    ] {
        assert_eq!(Setup::parse(s.as_str()), Ok(s));
        assert_eq!(
            Setup::parse(&format!(" {} ", s.to_string().to_uppercase())),
            Ok(s)
        );
    }
    assert_eq!(Setup::parse(""), Err(E::Missing("role")));
    assert_eq!(Setup::parse("actpas"), Err(E::UnknownSetup));
}

#[test]
fn ice_credentials_and_options() {
    assert_eq!(parse_ice_ufrag("Oy4f"), Ok("Oy4f"));
    assert_eq!(parse_ice_ufrag(" a+/9 "), Ok("a+/9"));
    assert_eq!(parse_ice_ufrag(&"u".repeat(256)).map(str::len), Ok(256));
    assert_eq!(parse_ice_ufrag("Oy4"), Err(E::UfragLength));
    assert_eq!(parse_ice_ufrag(&"u".repeat(257)), Err(E::UfragLength));
    assert_eq!(parse_ice_ufrag("Oy4f-"), Err(E::BadIceChar("ice-ufrag")));
    assert_eq!(parse_ice_ufrag("Oy 4f"), Err(E::BadIceChar("ice-ufrag")));
    assert_eq!(parse_ice_ufrag(""), Err(E::Missing("ice-ufrag")));
    let pwd = "8Ck6gKcwJ1PjX+lZXdyF3xiN";
    assert_eq!(parse_ice_pwd(pwd), Ok(pwd));
    assert_eq!(parse_ice_pwd(&pwd[..21]), Err(E::PwdLength));
    assert_eq!(parse_ice_pwd(&pwd[..22]).map(str::len), Ok(22));
    assert_eq!(
        parse_ice_pwd("8Ck6gKcwJ1PjX+lZXdyF3x=N"),
        Err(E::BadIceChar("ice-pwd"))
    );
    let o = IceOptions::parse("trickle  ice2").unwrap();
    assert_eq!(o.tags().collect::<Vec<_>>(), ["trickle", "ice2"]);
    assert!(o.has("trickle") && !o.has("renomination"));
    assert_eq!(IceOptions::parse(" "), Err(E::Missing("ice-option-tag")));
    assert_eq!(
        IceOptions::parse("a,b"),
        Err(E::BadIceChar("ice-option-tag"))
    );
    assert_eq!(parse_mid(" audio-0 "), Ok("audio-0"));
    assert_eq!(parse_mid("a b"), Err(E::BadMid));
    assert_eq!(parse_mid("\"x\""), Err(E::BadMid));
    assert_eq!(parse_mid(""), Err(E::Missing("identification-tag")));
}

#[test]
fn host_candidates() {
    assert_eq!(host_priority(1, 65535), 2_130_706_431);
    assert_eq!(host_priority(2, 65535), 2_130_706_430);
    assert_eq!(host_priority(1, 0), 126 << 24 | 255);
    assert_eq!(host_priority(0, 0), host_priority(1, 0));
    let ip: IpAddr = "2001:db8::7".parse().unwrap();
    let v = candidate_value("1", 1, "UDP", host_priority(1, 65535), ip, 40000, "host");
    assert_eq!(v, "1 1 UDP 2130706431 2001:db8::7 40000 typ host");
    let c = Candidate::parse(&v).unwrap();
    assert_eq!(
        (c.foundation, c.component, c.transport, c.priority),
        ("1", 1, "UDP", 2_130_706_431)
    );
    assert_eq!((c.address, c.port, c.typ), ("2001:db8::7", 40000, "host"));
}

#[test]
fn secure_media_of_sections() {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=fingerprint:{CHROME_FP}\r\n\
         a=ice-ufrag:SESS\r\na=ice-pwd:sessionsessionsession22\r\na=setup:passive\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a0\r\na=setup:actpass\r\na=ice-ufrag:Oy4f\r\n\
         a=ice-options:trickle\r\na=candidate:1 1 UDP 2130706431 192.0.2.1 9 typ host\r\n\
         a=candidate:2 1 UDP 2130706431 192.0.2.2 9 typ host\r\na=rtcp-mux\r\na=rtcp-mux-only\r\n\
         m=audio 4000 RTP/SAVP 0\r\na=crypto:{RTPENGINE_GCM}\r\na=crypto:2 X inline:!!\r\n\
         a=crypto:{RTPENGINE_CM256}\r\na=fingerprint:md5 00\r\na=ice-pwd:short\r\na=mid:a b\r\n"
    );
    let sdp = Sdp::read(&body);
    let session = sdp.session();
    let dtls = SecureMedia::read(&sdp.media(0).unwrap(), Some(&session));
    assert_eq!(dtls.fingerprint, Some(Fingerprint::parse(CHROME_FP)));
    assert_eq!(dtls.setup, Some(Ok(Setup::ActPass)));
    assert_eq!(dtls.ice_ufrag, Some(Ok("Oy4f")));
    assert_eq!(dtls.ice_pwd, Some(Ok("sessionsessionsession22")));
    assert_eq!(dtls.ice_options, Some("trickle"));
    assert!(dtls.ice_lite && dtls.rtcp_mux && dtls.rtcp_mux_only);
    assert_eq!((dtls.candidates, dtls.mid), (2, Some(Ok("a0"))));
    assert!(dtls.crypto.is_empty());

    let sdes = SecureMedia::read(&sdp.media(1).unwrap(), None);
    assert_eq!(sdes.crypto.len(), 2);
    assert_eq!(sdes.crypto_skipped, 1);
    assert_eq!(sdes.crypto_by_tag(3).map(|c| c.key_salt().len()), Some(46));
    assert!(sdes.crypto_by_tag(2).is_none());
    assert_eq!(
        sdes.fingerprint,
        Some(Err(E::DigestLength {
            expected: 16,
            got: 1
        }))
    );
    assert_eq!(sdes.ice_pwd, Some(Err(E::PwdLength)));
    assert_eq!(sdes.mid, Some(Err(E::BadMid)));
    assert_eq!(
        (sdes.setup, sdes.ice_ufrag, sdes.ice_lite),
        (None, None, false)
    );

    // The cap: a hostile section with many crypto lines keeps eight.
    let many: String = (0..20)
        .map(|i| format!("a=crypto:{i} AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"))
        .collect();
    let body = format!("v=0\r\nm=audio 1 RTP/SAVP 0\r\n{many}");
    let sdp = Sdp::read(&body);
    let m = SecureMedia::read(&sdp.media(0).unwrap(), None);
    assert_eq!((m.crypto.len(), m.crypto_skipped), (MAX_CRYPTO, 12));
    assert_eq!(m.crypto[7].tag, 7);
}

/// Feeds `v` to every parser; none may panic.
fn exercise(v: &str) {
    if let Ok(c) = Crypto::parse(v) {
        let _ = (
            c.to_value(),
            format!("{c:?}"),
            c.kdr(),
            c.unencrypted_srtp(),
        );
        // What Display writes reads back the same.
        assert_eq!(Crypto::parse(&c.to_value()), Ok(c), "{v:?}");
    }
    if let Ok(f) = Fingerprint::parse(v) {
        assert_eq!(Fingerprint::parse(&f.to_value()), Ok(f), "{v:?}");
    }
    let _ = (Setup::parse(v), parse_ice_ufrag(v), parse_ice_pwd(v));
    let _ = (IceOptions::parse(v).map(|o| o.tags().count()), parse_mid(v));
    let _ = Candidate::parse(v);
    let body = format!("v=0\na=fingerprint:{v}\nm=x\na={v}\na=crypto:{v}\na=setup:{v}");
    let sdp = Sdp::read(&body);
    let _ = SecureMedia::read(&sdp.media(0).unwrap(), Some(&sdp.session()));
}

#[test]
fn hostile_input_never_panics() {
    let valid = [
        "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32 KDR=1",
        "1 AES_CM_128_HMAC_SHA1_32 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4",
        RTPENGINE_GCM,
        RTPENGINE_CM256,
        CHROME_FP,
        "sha-1 é3:ü4",
        "actpass",
        "8Ck6gKcwJ1PjX+lZXdyF3xiN",
        "trickle ice2",
    ];
    for v in valid {
        for (i, _) in v.char_indices().chain([(v.len(), ' ')]) {
            exercise(&v[..i]);
            exercise(&v[i..]);
        }
    }
    let alphabet: Vec<char> =
        "0123456789 AaZz+/=:;|^_-.inline:sha-256 KDR=UNENCRYPTED_SRTP\t\r\néü€"
            .chars()
            .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut s = String::new();
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.clear();
        let len = (x % 120) as usize;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        exercise(&s);
        // And the same bytes behind a valid prefix, so the later fields
        // are reached.
        exercise(&format!(
            "1 S inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj{s}"
        ));
        exercise(&format!("sha-1 {s}"));
    }
}
