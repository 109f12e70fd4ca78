use super::*;

/// RFC 5769 §2.1 sample request (USERNAME "evtj:h6vY", password
/// "VOkJxbRl1RmTxUk/WvJxBt"; SOFTWARE and USERNAME padded with 0x20).
const REQUEST: &str = concat!(
    "000100582112a442b7e7a701bc34d686fa87dfae",
    "802200105354554e207465737420636c69656e74",
    "002400046e0001ff",
    "80290008932ff9b151263b36",
    "000600096576746a3a68367659202020",
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2",
    "80280004e57a3bcf",
);

/// RFC 5769 §2.2 sample IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853.
const RESPONSE_V4: &str = concat!(
    "0101003c2112a442b7e7a701bc34d686fa87dfae",
    "8022000b7465737420766563746f7220",
    "002000080001a147e112a643",
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7",
    "80280004c07d4c96",
);

/// RFC 5769 §2.3 sample IPv6 response:
/// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const RESPONSE_V6: &str = concat!(
    "010100482112a442b7e7a701bc34d686fa87dfae",
    "8022000b7465737420766563746f7220",
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9",
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41",
    "80280004c8fb0b4c",
);

/// RFC 5769 §2.4 sample request with long-term authentication (no
/// FINGERPRINT; the key is MD5 of username:realm:password).
const REQUEST_LONG_TERM: &str = concat!(
    "000100602112a44278ad3433c6ad72c029da412e",
    "00060012e3839ee38388e383aae38383e382afe382b90000",
    "0015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341",
    "0014000b6578616d706c652e6f726700",
    "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
);

const PWD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h).expect("test vector hex")
}

#[test]
fn rfc5769_request() {
    let b = bytes(REQUEST);
    assert_eq!(b.len(), 108);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.transaction_id(), &TXID);
    assert_eq!(m.username(), Some("evtj:h6vY"));
    assert_eq!(m.attribute(SOFTWARE), Some(&b"STUN test client"[..]));
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    assert_eq!(m.ice_controlling(), None);
    assert!(!m.use_candidate());
    assert!(m.check_integrity(PWD));
    assert!(!m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"));
    assert!(m.has_fingerprint());
    assert!(m.check_fingerprint());
    let types: Vec<u16> = m.attributes().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        [
            SOFTWARE,
            PRIORITY,
            ICE_CONTROLLED,
            USERNAME,
            MESSAGE_INTEGRITY,
            FINGERPRINT
        ]
    );
}

#[test]
fn rfc5769_ipv4_response() {
    let b = bytes(RESPONSE_V4);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.attribute(SOFTWARE), Some(&b"test vector"[..]));
    assert_eq!(
        m.xor_mapped_address(),
        Some("192.0.2.1:32853".parse().unwrap())
    );
    assert!(m.check_integrity(PWD));
    assert!(m.check_fingerprint());
}

#[test]
fn rfc5769_ipv6_response() {
    let b = bytes(RESPONSE_V6);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Success);
    assert_eq!(
        m.xor_mapped_address(),
        Some(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        )
    );
    assert!(m.check_integrity(PWD));
    assert!(m.check_fingerprint());
}

#[test]
fn rfc5769_long_term_request() {
    let b = bytes(REQUEST_LONG_TERM);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.transaction_id()[..4], [0x78, 0xad, 0x34, 0x33]);
    assert_eq!(
        m.username(),
        Some("\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}")
    );
    assert_eq!(
        m.attribute(NONCE),
        Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..])
    );
    assert_eq!(m.attribute(REALM), Some(&b"example.org"[..]));
    assert!(m.has_integrity());
    // The key is MD5(username ":" realm ":" password), not the password.
    assert!(!m.check_integrity(b"TheMatrIX"));
    assert!(!m.has_fingerprint());
    assert!(!m.check_fingerprint());
}

/// The builder reproduces the RFC 5769 vectors byte for byte.
#[test]
fn builder_matches_rfc5769() {
    let mut buf = [0u8; 128];
    let mut w = Builder::new(&mut buf, Class::Success, BINDING, &TXID).unwrap();
    w.padding(b' ');
    w.software("test vector").unwrap();
    w.xor_mapped_address("192.0.2.1:32853".parse().unwrap())
        .unwrap();
    w.message_integrity(PWD).unwrap();
    let n = w.fingerprint().unwrap();
    assert_eq!(hex::encode(&buf[..n]), RESPONSE_V4);

    let mut w = Builder::new(&mut buf, Class::Success, BINDING, &TXID).unwrap();
    w.padding(b' ');
    w.software("test vector").unwrap();
    let v6 = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    w.xor_mapped_address(v6).unwrap();
    w.message_integrity(PWD).unwrap();
    let n = w.fingerprint().unwrap();
    assert_eq!(hex::encode(&buf[..n]), RESPONSE_V6);

    let mut w = Builder::new(&mut buf, Class::Request, BINDING, &TXID).unwrap();
    w.padding(b' ');
    w.software("STUN test client").unwrap();
    w.attribute(PRIORITY, &0x6e00_01ffu32.to_be_bytes())
        .unwrap();
    w.attribute(ICE_CONTROLLED, &0x932f_f9b1_5126_3b36u64.to_be_bytes())
        .unwrap();
    w.username("evtj:h6vY").unwrap();
    w.message_integrity(PWD).unwrap();
    let n = w.fingerprint().unwrap();
    assert_eq!(hex::encode(&buf[..n]), REQUEST);
}

#[test]
fn builder_round_trip() {
    let mut buf = [0u8; 256];
    let txid = [7u8; 12];
    let mut w = Builder::new(&mut buf, Class::Error, BINDING, &txid).unwrap();
    w.error_code(487, "Role Conflict").unwrap();
    w.unknown_attributes(&[0x0042, 0x7fff, 0x0003]).unwrap();
    w.xor_mapped_address("[::1]:9".parse().unwrap()).unwrap();
    w.message_integrity(b"key").unwrap();
    let n = w.fingerprint().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.class(), Class::Error);
    assert_eq!(m.method(), BINDING);
    assert_eq!(m.transaction_id(), &txid);
    assert_eq!(
        m.attribute(ERROR_CODE),
        Some(&b"\0\0\x04\x57Role Conflict"[..])
    );
    assert_eq!(
        m.attribute(UNKNOWN_ATTRIBUTES),
        Some(&[0, 0x42, 0x7f, 0xff, 0, 3][..])
    );
    assert_eq!(m.xor_mapped_address(), Some("[::1]:9".parse().unwrap()));
    assert!(m.check_integrity(b"key"));
    assert!(!m.check_integrity(b"kex"));
    assert!(m.check_fingerprint());
}

#[test]
fn message_types() {
    // RFC 8489 §5: Binding request 0x0001, indication 0x0011, success
    // 0x0101, error 0x0111; the class bits sit between method bits.
    for (class, ty) in [
        (Class::Request, 0x0001),
        (Class::Indication, 0x0011),
        (Class::Success, 0x0101),
        (Class::Error, 0x0111),
    ] {
        assert_eq!(message_type(class, BINDING), ty);
    }
    for method in [0x000, 0x001, 0x003, 0x00f, 0x010, 0x07f, 0x080, 0xfff] {
        for class in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            let mut buf = [0u8; 20];
            let n = Builder::new(&mut buf, class, method, &TXID)
                .unwrap()
                .finish();
            let m = Message::parse(&buf[..n]).unwrap();
            assert_eq!((m.class(), m.method()), (class, method));
        }
    }
}

#[test]
fn builder_errors() {
    let mut small = [0u8; 19];
    assert_eq!(
        Builder::new(&mut small, Class::Request, BINDING, &TXID).unwrap_err(),
        StunError::NoRoom
    );
    let mut buf = [0u8; 40];
    let mut w = Builder::new(&mut buf, Class::Request, BINDING, &TXID).unwrap();
    assert_eq!(w.error_code(299, "x"), Err(StunError::BadValue));
    assert_eq!(w.error_code(700, "x"), Err(StunError::BadValue));
    // 20 + 24 does not fit in 40; a failed append leaves the message whole.
    assert_eq!(w.message_integrity(b"k"), Err(StunError::NoRoom));
    assert_eq!(w.len(), 20);
    let n = w.fingerprint().unwrap();
    assert_eq!(n, 28);
    assert!(Message::parse(&buf[..n]).unwrap().check_fingerprint());
}

#[test]
fn parse_errors() {
    let good = bytes(RESPONSE_V4);
    assert_eq!(
        Message::parse(&good[..19]).unwrap_err(),
        StunError::Truncated
    );
    let mut b = good.clone();
    b[0] |= 0x40;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::NotStun);
    let mut b = good.clone();
    b[7] ^= 1;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::NotStun);
    let mut b = good.clone();
    b[3] += 1;
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::BadLength);
    let mut b = good.clone();
    b.extend_from_slice(&[0; 4]);
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::BadLength);
    // An attribute length running past the end.
    let mut b = good.clone();
    b[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
    assert_eq!(Message::parse(&b).unwrap_err(), StunError::BadAttribute);
    for e in [
        StunError::Truncated,
        StunError::NotStun,
        StunError::BadLength,
        StunError::BadAttribute,
        StunError::NoRoom,
        StunError::BadValue,
    ] {
        assert!(!e.reason().is_empty() && !e.to_string().is_empty());
    }
}

/// Attributes after MESSAGE-INTEGRITY (other than MI-SHA256 and
/// FINGERPRINT) do not count, nor anything after FINGERPRINT (§14.5, §14.7).
#[test]
fn attributes_after_integrity_ignored() {
    let mut buf = [0u8; 128];
    let mut w = Builder::new(&mut buf, Class::Request, BINDING, &TXID).unwrap();
    w.username("a:b").unwrap();
    w.message_integrity(b"k").unwrap();
    w.attribute(PRIORITY, &[0, 0, 0, 1]).unwrap();
    w.attribute(USE_CANDIDATE, &[]).unwrap();
    let n = w.fingerprint().unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert!(m.check_integrity(b"k"));
    assert!(m.check_fingerprint());
    assert_eq!(m.priority(), None);
    assert!(!m.use_candidate());
    assert_eq!(m.attributes().count(), 3);

    // FINGERPRINT not last: the check fails and what follows is ignored.
    let mut w = Builder::new(&mut buf, Class::Request, BINDING, &TXID).unwrap();
    w.fingerprint().unwrap();
    w.attribute(USE_CANDIDATE, &[]).unwrap();
    let n = w.finish();
    let m = Message::parse(&buf[..n]).unwrap();
    assert!(m.has_fingerprint());
    assert!(!m.check_fingerprint());
    assert!(!m.use_candidate());
}

/// Every strict prefix of a valid message is rejected, with its original
/// or a patched length field.
#[test]
fn truncations_rejected() {
    for v in [REQUEST, RESPONSE_V4, RESPONSE_V6, REQUEST_LONG_TERM] {
        let b = bytes(v);
        for n in 0..b.len() {
            assert!(Message::parse(&b[..n]).is_err(), "{n}");
            if n >= 20 {
                let mut c = b[..n].to_vec();
                c[2..4].copy_from_slice(&((n - 20) as u16).to_be_bytes());
                if let Ok(m) = Message::parse(&c) {
                    // A cut on an attribute boundary is a valid message,
                    // but its integrity and fingerprint can no longer hold
                    // unless the cut kept them whole.
                    exercise(&m);
                }
            }
        }
    }
}

fn exercise(m: &Message<'_>) {
    let _ = (m.class(), m.method(), m.transaction_id());
    let _ = m.attributes().count();
    let _ = (m.username(), m.priority(), m.use_candidate());
    let _ = (
        m.ice_controlling(),
        m.ice_controlled(),
        m.xor_mapped_address(),
    );
    let _ = (
        m.check_integrity(PWD),
        m.check_integrity(b""),
        m.check_fingerprint(),
    );
}

/// Small xorshift64* so the hostile-input loop is deterministic.
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Random bytes, random bytes behind a valid header, and mutated vectors:
/// parsing and every accessor must never panic.
#[test]
fn hostile_input_never_panics() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let vectors: Vec<Vec<u8>> = [REQUEST, RESPONSE_V4, RESPONSE_V6, REQUEST_LONG_TERM]
        .iter()
        .map(|v| bytes(v))
        .collect();
    let mut ok = 0;
    for i in 0..20_000 {
        let b: Vec<u8> = match i % 3 {
            0 => {
                let n = (xorshift(&mut s) % 120) as usize;
                (0..n).map(|_| xorshift(&mut s) as u8).collect()
            }
            1 => {
                let n = 20 + 4 * (xorshift(&mut s) % 24) as usize;
                let mut b: Vec<u8> = (0..n).map(|_| xorshift(&mut s) as u8).collect();
                b[0] &= 0x3f;
                b[2..4].copy_from_slice(&((n - 20) as u16).to_be_bytes());
                b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                // Plausible attribute lengths so the walk goes deep.
                let mut at = 20;
                while at + 4 <= n {
                    let l = (xorshift(&mut s) % 24) as u16;
                    b[at + 2..at + 4].copy_from_slice(&l.to_be_bytes());
                    at += 4 + padded(l.into());
                }
                b
            }
            _ => {
                let mut b = vectors[i % vectors.len()].clone();
                for _ in 0..1 + xorshift(&mut s) % 4 {
                    let at = (xorshift(&mut s) as usize) % b.len();
                    b[at] = xorshift(&mut s) as u8;
                }
                b
            }
        };
        if let Ok(m) = Message::parse(&b) {
            ok += 1;
            exercise(&m);
        }
    }
    assert!(
        ok > 1000,
        "the generator should reach past the header: {ok}"
    );
}
