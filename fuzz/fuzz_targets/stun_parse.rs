//! `stun::Message::parse` on arbitrary bytes; on success every accessor
//! runs, and what they return agrees with the bytes and the framing rules
//! `parse` promises (RFC 8489 §5, §14).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_secure::stun::{self, Class, Message, HEADER_LEN, MAGIC_COOKIE};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    // Framing parse checked: header, cookie, length field = body, 4-aligned.
    assert!(data.len() >= HEADER_LEN);
    assert_eq!(data[0] & 0xC0, 0);
    assert_eq!(data[4..8], MAGIC_COOKIE.to_be_bytes());
    assert_eq!(
        usize::from(u16::from_be_bytes([data[2], data[3]])),
        data.len() - HEADER_LEN
    );
    assert_eq!(data.len() % 4, 0);
    assert_eq!(m.as_bytes(), data);

    let class = m.class();
    let method = m.method();
    assert!(method <= 0x0FFF);
    // Class and method re-encode to the type field (§5).
    let c = match class {
        Class::Request => 0b00u16,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    let ty = (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 0b01) << 4)
        | ((c & 0b10) << 7);
    assert_eq!(ty, u16::from_be_bytes([data[0], data[1]]));
    assert_eq!(&m.transaction_id()[..], &data[8..20]);

    // Every attribute value lies inside the message, in order.
    let base = data.as_ptr() as usize;
    let mut prev_end = HEADER_LEN;
    let mut n = 0usize;
    for (t, v) in m.attributes() {
        let at = v.as_ptr() as usize - base;
        assert!(at >= prev_end + 4, "attribute value overlaps the previous one");
        assert!(at + v.len() <= data.len());
        assert_eq!(u16::from_be_bytes([data[at - 4], data[at - 3]]), t);
        assert_eq!(usize::from(u16::from_be_bytes([data[at - 2], data[at - 1]])), v.len());
        prev_end = at + v.len();
        n += 1;
        assert!(n <= data.len() / 4, "more attributes than words");
        // `attribute(t)` finds the first that counts, which is this one or
        // an earlier one of the same type.
        let first = m.attribute(t).expect("an iterated attribute is found");
        assert!(first.as_ptr() as usize <= v.as_ptr() as usize);
    }

    if let Some(u) = m.username() {
        assert!(u.len() <= 508);
        assert_eq!(m.attribute(stun::USERNAME).map(<[u8]>::len), Some(u.len()));
    }
    if m.priority().is_some() {
        assert_eq!(m.attribute(stun::PRIORITY).map(<[u8]>::len), Some(4));
    }
    assert_eq!(m.use_candidate(), m.attribute(stun::USE_CANDIDATE).is_some());
    let _ = m.ice_controlling();
    let _ = m.ice_controlled();
    if let Some(a) = m.xor_mapped_address() {
        let len = m.attribute(stun::XOR_MAPPED_ADDRESS).map(<[u8]>::len);
        assert_eq!(len, Some(if a.is_ipv4() { 8 } else { 20 }));
    }
    let integrity = m.check_integrity(b"key");
    assert!(!integrity || m.has_integrity());
    let fingerprint = m.check_fingerprint();
    assert!(!fingerprint || m.has_fingerprint());
    if fingerprint {
        // A valid FINGERPRINT is the last attribute, 4 bytes (§14.7).
        assert_eq!(data[data.len() - 8..data.len() - 4], [0x80, 0x28, 0x00, 0x04]);
    }
    let _ = m.check_integrity(b"");
    let _ = m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt");
});
