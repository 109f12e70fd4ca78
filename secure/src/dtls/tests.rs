use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn cert() -> Certificate {
    Certificate::generate().expect("certificate")
}

/// An Active and a Passive endpoint, each pinned to the other's cert.
fn pair() -> (Endpoint, Endpoint) {
    let (ca, cb) = (cert(), cert());
    let a = Endpoint::new(&ca, Role::Active, cb.fingerprint().clone()).unwrap();
    let b = Endpoint::new(&cb, Role::Passive, ca.fingerprint().clone()).unwrap();
    (a, b)
}

/// Moves every queued datagram from `from` to `to`; how many moved.
fn deliver(from: &mut Endpoint, to: &mut Endpoint) -> usize {
    let mut n = 0;
    while let Some(d) = from.poll_transmit() {
        let _ = to.handle_datagram(&d);
        n += 1;
    }
    n
}

/// Exchanges flights until both are connected, nothing moves, or 50
/// exchanges have passed.
fn pump(a: &mut Endpoint, b: &mut Endpoint) {
    for _ in 0..50 {
        let moved = deliver(a, b) + deliver(b, a);
        if a.state() == State::Connected && b.state() == State::Connected {
            return;
        }
        if moved == 0 {
            return;
        }
    }
}

fn assert_keys_agree(a: &mut Endpoint, b: &mut Endpoint) -> u16 {
    assert_eq!(a.state(), State::Connected, "{:?}", a.failure());
    assert_eq!(b.state(), State::Connected, "{:?}", b.failure());
    let ka = a.take_keying().expect("active keying");
    let kb = b.take_keying().expect("passive keying");
    assert!(a.take_keying().is_none() && b.take_keying().is_none());
    assert_eq!(ka.profile, kb.profile);
    assert!(
        [0x0001, 0x0002, 0x0007, 0x0008].contains(&ka.profile),
        "{ka:?}"
    );
    let (key_len, salt_len) = profile::key_salt_len(ka.profile).unwrap();
    for k in [&ka, &kb] {
        assert_eq!(k.local_key.len(), key_len);
        assert_eq!(k.remote_key.len(), key_len);
        assert_eq!(k.local_salt.len(), salt_len);
        assert_eq!(k.remote_salt.len(), salt_len);
    }
    assert_eq!(ka.local_key, kb.remote_key);
    assert_eq!(ka.local_salt, kb.remote_salt);
    assert_eq!(ka.remote_key, kb.local_key);
    assert_eq!(ka.remote_salt, kb.local_salt);
    assert_ne!(ka.local_key, ka.remote_key);
    ka.profile
}

#[test]
fn handshake_connects_and_keys_agree() {
    let (mut a, mut b) = pair();
    assert_eq!(a.role(), Role::Active);
    assert_eq!(b.role(), Role::Passive);
    assert_eq!(a.state(), State::Handshaking);
    assert!(a.timeout().is_some(), "client timer runs after ClientHello");
    assert!(
        b.timeout().is_none(),
        "server has no timer before ClientHello"
    );
    pump(&mut a, &mut b);
    let profile = assert_keys_agree(&mut a, &mut b);
    // Both sides offer the same list: the server's first choice wins.
    assert_eq!(profile, profile::AEAD_AES_256_GCM);
    assert!(a.failure().is_none() && b.failure().is_none());
}

#[test]
fn flights_fit_the_mtu() {
    let (mut a, mut b) = pair();
    for _ in 0..50 {
        let mut moved = 0;
        while let Some(d) = a.poll_transmit() {
            assert!(d.len() <= 1200, "{}", d.len());
            b.handle_datagram(&d).unwrap();
            moved += 1;
        }
        while let Some(d) = b.poll_transmit() {
            assert!(d.len() <= 1200, "{}", d.len());
            a.handle_datagram(&d).unwrap();
            moved += 1;
        }
        if moved == 0 {
            break;
        }
    }
    assert_keys_agree(&mut a, &mut b);
}

#[test]
fn passive_rejects_wrong_client_fingerprint() {
    let (ca, cb, other) = (cert(), cert(), cert());
    let mut a = Endpoint::new(&ca, Role::Active, cb.fingerprint().clone()).unwrap();
    let mut b = Endpoint::new(&cb, Role::Passive, other.fingerprint().clone()).unwrap();
    pump(&mut a, &mut b);
    assert_eq!(b.state(), State::Failed);
    assert_eq!(b.failure(), Some(&DtlsError::FingerprintMismatch));
    assert!(b.take_keying().is_none());
    // The client got the server's alert.
    assert_eq!(a.state(), State::Failed);
    assert!(a.take_keying().is_none());
    assert!(b.timeout().is_none());
}

#[test]
fn active_rejects_wrong_server_fingerprint() {
    let (ca, cb, other) = (cert(), cert(), cert());
    let mut a = Endpoint::new(&ca, Role::Active, other.fingerprint().clone()).unwrap();
    let mut b = Endpoint::new(&cb, Role::Passive, ca.fingerprint().clone()).unwrap();
    pump(&mut a, &mut b);
    assert_eq!(a.state(), State::Failed);
    assert_eq!(a.failure(), Some(&DtlsError::FingerprintMismatch));
    assert!(a.take_keying().is_none());
    assert_eq!(b.state(), State::Failed);
    assert!(b.take_keying().is_none());
}

#[test]
fn fingerprint_of_another_hash_is_pinned_too() {
    let (ca, cb) = (cert(), cert());
    let der = ca.to_der().unwrap();
    let fp = Fingerprint::of_der(HashAlg::Sha512, &der);
    let mut a = Endpoint::new(&ca, Role::Active, cb.fingerprint().clone()).unwrap();
    let mut b = Endpoint::new(&cb, Role::Passive, fp).unwrap();
    pump(&mut a, &mut b);
    assert_keys_agree(&mut a, &mut b);
}

#[test]
fn fingerprint_display_parse_round_trip() {
    let c = cert();
    let fp = c.fingerprint();
    assert_eq!(fp.algorithm, HashAlg::Sha256);
    assert_eq!(fp.digest.len(), 32);
    assert_eq!(
        *fp,
        Fingerprint::of_der(HashAlg::Sha256, &c.to_der().unwrap())
    );
    let s = fp.to_string();
    assert!(s.starts_with("sha-256 "), "{s}");
    assert_eq!(s.len(), "sha-256 ".len() + 32 * 3 - 1);
    assert!(s[8..]
        .chars()
        .all(|c| c == ':' || c.is_ascii_digit() || ('A'..='F').contains(&c)));
    assert_eq!(Fingerprint::parse(&s).unwrap(), *fp);
    // Case-insensitive name and hex, extra whitespace.
    let lower = format!("  SHA-256   {} ", s[8..].to_ascii_lowercase());
    assert_eq!(Fingerprint::parse(&lower).unwrap(), *fp);

    let sha1 = Fingerprint {
        algorithm: HashAlg::Sha1,
        digest: (0u8..20).collect(),
    };
    assert_eq!(
        sha1.to_string(),
        "sha-1 00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13"
    );
    assert_eq!(Fingerprint::parse(&sha1.to_string()).unwrap(), sha1);
    for alg in [HashAlg::Sha224, HashAlg::Sha384, HashAlg::Sha512] {
        let f = Fingerprint::of_der(alg, b"x");
        assert_eq!(f.digest.len(), alg.digest_len());
        assert_eq!(Fingerprint::parse(&f.to_string()).unwrap(), f);
    }
}

#[test]
fn fingerprint_parse_errors() {
    let good = cert().fingerprint().to_string();
    let hex = &good[8..];
    for bad in [
        String::new(),
        "   ".into(),
        "sha-256".into(),
        "sha-256 ZZ".into(),
        format!("md5 {hex}"),
        format!("sha-3 {hex}"),
        format!("sha-1 {hex}"),                       // length does not fit
        format!("sha-256 {}", &hex[..hex.len() - 3]), // one byte short
        format!("sha-256 {hex}:00"),                  // one byte long
        format!("sha-256 {}", hex.replace(':', "")),
        format!("sha-256 {}", hex.replacen(':', "::", 1)),
        format!("sha-256 {}", hex.replacen(':', " ", 1)),
        format!("sha-256 :{hex}"),
        format!("sha-256 {hex}:"),
        format!("sha-256 {} extra", hex),
        format!("sha-256 A{}", &hex[1..].replacen(':', "", 1)),
        format!("sha-256 {}", hex.replacen('A', "\u{e9}", 1)),
    ] {
        let e = Fingerprint::parse(&bad);
        assert!(
            matches!(e, Err(DtlsError::BadFingerprint(_))),
            "{bad:?} -> {e:?}"
        );
    }
}

#[test]
fn keying_debug_shows_no_keys() {
    let (mut a, mut b) = pair();
    pump(&mut a, &mut b);
    let k = a.take_keying().expect("keying");
    let dbg = format!("{k:?} {k:#?}");
    assert!(dbg.contains("profile"), "{dbg}");
    for secret in [&k.local_key, &k.local_salt, &k.remote_key, &k.remote_salt] {
        let lower = hex::encode(secret);
        assert!(!dbg.contains(&lower));
        assert!(!dbg.contains(&lower.to_ascii_uppercase()));
        assert!(!dbg.contains(&format!("{secret:?}")[1..20]));
    }
    let c = cert();
    assert!(format!("{c:?}").contains(&c.fingerprint().to_string()));
}

/// A datagram of random bytes, or a random body behind a plausible DTLS
/// 1.2 record header (so it reaches OpenSSL's handshake parsing).
fn noise(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(0..1500);
    let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    if d.len() >= 13 && rng.gen_bool(0.5) {
        d[0] = rng.gen_range(20..=23);
        d[1] = 0xfe;
        d[2] = if rng.gen_bool(0.8) { 0xfd } else { 0xff };
        d[3] = 0;
        d[4] = if rng.gen_bool(0.8) { 0 } else { rng.gen() }; // epoch
        let body = (d.len() - 13) as u16;
        let rec_len = if rng.gen_bool(0.8) { body } else { rng.gen() };
        d[11..13].copy_from_slice(&rec_len.to_be_bytes());
        if d.len() >= 25 && d[0] == 22 && rng.gen_bool(0.7) {
            d[13] = 1; // ClientHello
            if rng.gen_bool(0.5) {
                d[17] = 0; // message_seq 0
                d[18] = 0;
            }
        }
    } else if !d.is_empty() {
        d[0] = rng.gen_range(20..=63);
    }
    d
}

#[test]
fn hostile_input_is_ignored_before_the_handshake() {
    let mut rng = StdRng::seed_from_u64(0x7e57_d715);
    let (ca, cb) = (cert(), cert());
    let mut b = Endpoint::new(&cb, Role::Passive, ca.fingerprint().clone()).unwrap();

    // Truncations of a real ClientHello (from a client we then discard).
    let mut probe = Endpoint::new(&ca, Role::Active, cb.fingerprint().clone()).unwrap();
    let hello = probe.poll_transmit().unwrap();
    for n in 0..hello.len() {
        b.handle_datagram(&hello[..n]).unwrap();
    }
    for _ in 0..3000 {
        let d = noise(&mut rng);
        b.handle_datagram(&d).unwrap();
        assert_eq!(b.state(), State::Handshaking);
    }
    assert!(b.poll_transmit().is_none(), "noise got no reply");
    assert!(b.timeout().is_none());

    // Chosen behaviour: noise is dropped (OpenSSL discards what is no
    // valid record; what breaks a server that has sent nothing makes it
    // start over), so a real client still connects.
    let mut a = Endpoint::new(&ca, Role::Active, cb.fingerprint().clone()).unwrap();
    pump(&mut a, &mut b);
    assert_keys_agree(&mut a, &mut b);
}

#[test]
fn hostile_input_mid_handshake_and_after_never_panics() {
    let mut rng = StdRng::seed_from_u64(42);
    // Mid-handshake: either side may fail, but nothing panics.
    for round in 0..20 {
        let (mut a, mut b) = pair();
        for _ in 0..round % 4 {
            deliver(&mut a, &mut b);
            deliver(&mut b, &mut a);
        }
        for _ in 0..100 {
            let _ = a.handle_datagram(&noise(&mut rng));
            let _ = b.handle_datagram(&noise(&mut rng));
        }
        pump(&mut a, &mut b);
        let _ = (a.timeout(), b.handle_timeout(), a.take_keying());
    }
    // Connected: random records never carry a valid MAC, so they are
    // dropped (RFC 6347 §4.1.2.7) and the connection stands.
    let (mut a, mut b) = pair();
    pump(&mut a, &mut b);
    for _ in 0..1000 {
        let mut d = noise(&mut rng);
        if d.len() >= 13 {
            d[0] = 23; // application data, epoch 1
            d[4] = 1;
        }
        a.handle_datagram(&d).unwrap();
        b.handle_datagram(&d).unwrap();
    }
    // A record too short for its AEAD nonce and tag (OpenSSL 3.0 reports
    // that one oddly).
    let short = [
        0x17, 0xfe, 0xfd, 0, 1, 0x41, 0x57, 0x39, 0x86, 0x29, 0x2c, 0, 6, 1, 2, 3, 4, 5, 6,
    ];
    a.handle_datagram(&short).unwrap();
    b.handle_datagram(&short).unwrap();
    assert_keys_agree(&mut a, &mut b);
    // Both still work: real records get through, and a close ends both.
    a.send_app_data(b"ping");
    deliver(&mut a, &mut b);
    assert_eq!(b.app_data_dropped(), 4);
    b.send_app_data(b"pong!");
    deliver(&mut b, &mut a);
    assert_eq!(a.app_data_dropped(), 5);
    a.close();
    assert_eq!(a.state(), State::Closed);
    deliver(&mut a, &mut b);
    assert_eq!(b.state(), State::Closed);
    // b answered with its own close_notify; a ignores it.
    deliver(&mut b, &mut a);
    assert_eq!(a.state(), State::Closed);
}

#[test]
fn lost_server_flight_is_retransmitted() {
    let started = Instant::now();
    let (mut a, mut b) = pair();
    deliver(&mut a, &mut b); // ClientHello
    let mut dropped = 0;
    while b.poll_transmit().is_some() {
        dropped += 1;
    }
    assert!(dropped > 0, "server answered the ClientHello");
    let wait = b.timeout().expect("server timer runs after its flight");
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    // Not yet due: nothing happens.
    b.handle_timeout().unwrap();
    assert!(b.poll_transmit().is_none());

    std::thread::sleep(wait + Duration::from_millis(20));
    assert_eq!(b.timeout(), Some(Duration::ZERO));
    b.handle_timeout().unwrap();
    let mut resent = 0;
    while let Some(d) = b.poll_transmit() {
        a.handle_datagram(&d).unwrap();
        resent += 1;
    }
    // OpenSSL sent the flight as one datagram and resends it one
    // handshake message per datagram.
    assert!(
        resent >= dropped,
        "the whole flight again: {resent} < {dropped}"
    );
    let next = b.timeout().expect("timer re-armed");
    assert!(next > wait, "doubled: {next:?} after {wait:?}");
    pump(&mut a, &mut b);
    assert_keys_agree(&mut a, &mut b);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn lost_client_hello_is_retransmitted() {
    let (mut a, mut b) = pair();
    let first = a.poll_transmit().expect("ClientHello ready at once");
    assert!(a.poll_transmit().is_none());
    let wait = a.timeout().expect("client timer");
    std::thread::sleep(wait + Duration::from_millis(20));
    a.handle_timeout().unwrap();
    let again = a.poll_transmit().expect("ClientHello again");
    // Same message (message_seq 0), new record sequence number.
    assert_eq!(first.len(), again.len());
    assert_eq!(first[13..], again[13..]);
    b.handle_datagram(&again).unwrap();
    pump(&mut a, &mut b);
    assert_keys_agree(&mut a, &mut b);
}

#[test]
fn endpoint_and_certificate_are_send() {
    fn send<T: Send>() {}
    send::<Endpoint>();
    send::<Certificate>();
    send::<SrtpKeying>();
    send::<DtlsError>();
}

#[test]
fn errors_display_without_secrets() {
    let e = DtlsError::FingerprintMismatch;
    assert!(!e.to_string().is_empty());
    let (ca, cb, other) = (cert(), cert(), cert());
    let mut a = Endpoint::new(&ca, Role::Active, other.fingerprint().clone()).unwrap();
    let mut b = Endpoint::new(&cb, Role::Passive, ca.fingerprint().clone()).unwrap();
    pump(&mut a, &mut b);
    let why = b.failure().expect("server failed").to_string();
    assert!(why.starts_with("DTLS handshake failed"), "{why}");
}

/// Protected records of every length up to 64, of each content type and
/// epoch, leave a connection working (OpenSSL 3.0 alone is broken by
/// epoch-1 records shorter than nonce + tag).
#[test]
fn short_protected_records_do_not_break_the_connection() {
    let (mut a, mut b) = pair();
    pump(&mut a, &mut b);
    let mut sent = 0;
    for ty in 20u8..=23 {
        for epoch in 0u8..=2 {
            for len in 0..64u8 {
                let mut d = vec![ty, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0x29, len, 0, len];
                d.extend((0..len).map(|i| i.wrapping_mul(7).wrapping_add(1)));
                b.handle_datagram(&d).unwrap();
            }
            a.send_app_data(b"ping");
            sent += 4;
            deliver(&mut a, &mut b);
            assert_eq!(b.app_data_dropped(), sent, "type {ty} epoch {epoch}");
        }
    }
    assert_keys_agree(&mut a, &mut b);
}
