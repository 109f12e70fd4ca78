use super::*;
use crate::stun::tests::xorshift;

const LOCAL_UFRAG: &str = "Lite";
const LOCAL_PWD: &str = "asd88fgpdd777uzjYhagZgAA";
const REMOTE_UFRAG: &str = "fUlL";
const REMOTE_PWD: &str = "abcdefghijklmnopqrstuvwx";

fn agent() -> IceLite {
    let mut a = IceLite::new(Credentials::new(LOCAL_UFRAG, LOCAL_PWD).unwrap());
    a.set_remote(Some(Credentials::new(REMOTE_UFRAG, REMOTE_PWD).unwrap()));
    a
}

fn src() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

/// What the full peer sends: a Binding request with the given USERNAME and
/// MESSAGE-INTEGRITY key (either left out when `None`).
struct Check<'a> {
    class: Class,
    method: u16,
    username: Option<&'a str>,
    key: Option<&'a str>,
    use_candidate: bool,
    controlled: bool,
    extra: Option<u16>,
    fingerprint: bool,
}

impl Default for Check<'_> {
    fn default() -> Self {
        Check {
            class: Class::Request,
            method: stun::BINDING,
            username: Some("Lite:fUlL"),
            key: Some(LOCAL_PWD),
            use_candidate: false,
            controlled: false,
            extra: None,
            fingerprint: true,
        }
    }
}

impl Check<'_> {
    fn bytes(&self, txid: u8) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let mut w = Builder::new(&mut buf, self.class, self.method, &[txid; 12]).unwrap();
        if let Some(u) = self.username {
            w.username(u).unwrap();
        }
        w.attribute(stun::PRIORITY, &0x6e00_01ffu32.to_be_bytes())
            .unwrap();
        if self.controlled {
            w.attribute(stun::ICE_CONTROLLED, &7u64.to_be_bytes())
                .unwrap();
        } else {
            w.attribute(stun::ICE_CONTROLLING, &7u64.to_be_bytes())
                .unwrap();
        }
        if self.use_candidate {
            w.attribute(stun::USE_CANDIDATE, &[]).unwrap();
        }
        if let Some(ty) = self.extra {
            w.attribute(ty, b"xyz").unwrap();
        }
        if let Some(k) = self.key {
            w.message_integrity(k.as_bytes()).unwrap();
        }
        let n = if self.fingerprint {
            w.fingerprint().unwrap()
        } else {
            w.finish()
        };
        buf[..n].to_vec()
    }
}

fn run(a: &mut IceLite, check: &Check<'_>, from: SocketAddr, now: Instant) -> Outcome {
    let mut out = [0u8; IceLite::MAX_REPLY];
    a.on_stun(&check.bytes(1), from, now, &mut out)
}

#[test]
fn valid_check_is_answered() {
    let mut a = agent();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let req = Check::default().bytes(9);
    let o = a.on_stun(&req, src(), Instant::now(), &mut out);
    let Outcome::Reply {
        len,
        nominated: false,
    } = o
    else {
        panic!("{o:?}")
    };
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Success, stun::BINDING));
    assert_eq!(m.transaction_id(), &[9; 12]);
    assert_eq!(m.xor_mapped_address(), Some(src()));
    assert!(m.check_integrity(LOCAL_PWD.as_bytes()));
    assert!(m.check_fingerprint());
    assert_eq!(o.reply_len(), Some(64));
    // Without nomination nothing may be sent yet.
    assert_eq!(a.nominated(), None);
    assert!(!a.may_send(Instant::now()));
}

#[test]
fn ipv6_and_mapped_sources() {
    let mut a = agent();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let req = Check::default().bytes(1);
    for (from, mapped) in [
        ("[2001:db8::5]:5004", "[2001:db8::5]:5004"),
        ("[::ffff:192.0.2.9]:5004", "192.0.2.9:5004"),
    ] {
        let from: SocketAddr = from.parse().unwrap();
        let Outcome::Reply { len, .. } = a.on_stun(&req, from, Instant::now(), &mut out) else {
            panic!()
        };
        let m = Message::parse(&out[..len]).unwrap();
        assert_eq!(m.xor_mapped_address(), Some(mapped.parse().unwrap()));
    }
}

#[test]
fn use_candidate_nominates() {
    let mut a = agent();
    let t = Instant::now();
    let nominate = Check {
        use_candidate: true,
        ..Check::default()
    };
    let o = run(&mut a, &nominate, src(), t);
    assert!(matches!(
        o,
        Outcome::Reply {
            nominated: true,
            ..
        }
    ));
    assert_eq!(a.nominated(), Some(src()));
    assert!(a.may_send(t));
    // A later nomination of another address moves it.
    let other: SocketAddr = "203.0.113.1:1".parse().unwrap();
    run(&mut a, &nominate, other, t);
    assert_eq!(a.nominated(), Some(other));
}

#[test]
fn drops() {
    let t = Instant::now();
    let cases = [
        (
            Check {
                key: Some(REMOTE_PWD),
                ..Check::default()
            },
            IceDrop::BadIntegrity,
        ),
        (
            Check {
                key: None,
                ..Check::default()
            },
            IceDrop::BadIntegrity,
        ),
        (
            Check {
                username: Some("Litx:fUlL"),
                ..Check::default()
            },
            IceDrop::BadUsername,
        ),
        (
            Check {
                username: Some("Lite:other"),
                ..Check::default()
            },
            IceDrop::BadUsername,
        ),
        (
            Check {
                username: Some("Lite"),
                ..Check::default()
            },
            IceDrop::BadUsername,
        ),
        (
            Check {
                username: None,
                ..Check::default()
            },
            IceDrop::BadUsername,
        ),
        (
            Check {
                class: Class::Success,
                ..Check::default()
            },
            IceDrop::NotRequest,
        ),
        (
            Check {
                class: Class::Error,
                ..Check::default()
            },
            IceDrop::NotRequest,
        ),
        (
            Check {
                class: Class::Indication,
                ..Check::default()
            },
            IceDrop::NotRequest,
        ),
        (
            Check {
                method: 0x003,
                ..Check::default()
            },
            IceDrop::UnknownMethod,
        ),
    ];
    for (check, why) in cases {
        let mut a = agent();
        let check = Check {
            use_candidate: true,
            ..check
        };
        assert_eq!(run(&mut a, &check, src(), t), Outcome::Drop(why));
        assert_eq!(a.nominated(), None);
        assert!(!why.reason().is_empty());
    }
    // A corrupted FINGERPRINT.
    let mut a = agent();
    let mut req = Check::default().bytes(1);
    let last = req.len() - 1;
    req[last] ^= 1;
    let mut out = [0u8; IceLite::MAX_REPLY];
    assert_eq!(
        a.on_stun(&req, src(), t, &mut out),
        Outcome::Drop(IceDrop::BadFingerprint)
    );
    // Not STUN at all.
    assert_eq!(
        a.on_stun(&[0x80; 40], src(), t, &mut out),
        Outcome::Drop(IceDrop::Malformed)
    );
}

#[test]
fn fingerprint_optional_and_remote_unknown() {
    let t = Instant::now();
    let mut a = agent();
    let o = run(
        &mut a,
        &Check {
            fingerprint: false,
            ..Check::default()
        },
        src(),
        t,
    );
    assert!(matches!(o, Outcome::Reply { .. }));
    // Before the answer is signalled only the local ufrag is checked.
    a.set_remote(None);
    let o = run(
        &mut a,
        &Check {
            username: Some("Lite:anything"),
            ..Check::default()
        },
        src(),
        t,
    );
    assert!(matches!(o, Outcome::Reply { .. }));
}

#[test]
fn role_conflict_and_unknown_attribute() {
    let t = Instant::now();
    let mut a = agent();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let req = Check {
        controlled: true,
        use_candidate: true,
        ..Check::default()
    }
    .bytes(3);
    let o = a.on_stun(&req, src(), t, &mut out);
    let Outcome::Error { len, code: 487 } = o else {
        panic!("{o:?}")
    };
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!((m.class(), m.transaction_id()), (Class::Error, &[3; 12]));
    assert_eq!(
        m.attribute(stun::ERROR_CODE),
        Some(&b"\0\0\x04\x57Role Conflict"[..])
    );
    assert!(m.check_integrity(LOCAL_PWD.as_bytes()) && m.check_fingerprint());
    assert_eq!(a.nominated(), None);

    let req = Check {
        extra: Some(0x0042),
        ..Check::default()
    }
    .bytes(4);
    let o = a.on_stun(&req, src(), t, &mut out);
    let Outcome::Error { len, code: 420 } = o else {
        panic!("{o:?}")
    };
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!(
        m.attribute(stun::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x42][..])
    );
    assert!(m.check_integrity(LOCAL_PWD.as_bytes()) && m.check_fingerprint());

    // Comprehension-optional types (0x8000–0xFFFF) are ignored.
    let o = run(
        &mut a,
        &Check {
            extra: Some(0xC057),
            ..Check::default()
        },
        src(),
        t,
    );
    assert!(matches!(o, Outcome::Reply { .. }));
}

/// The 420 listing the most types fits in MAX_REPLY.
#[test]
fn largest_reply_fits() {
    let mut buf = [0u8; 512];
    let mut w = Builder::new(&mut buf, Class::Request, stun::BINDING, &[1; 12]).unwrap();
    w.username("Lite:fUlL").unwrap();
    for ty in 0x0100..0x010a {
        w.attribute(ty, &[]).unwrap();
    }
    w.message_integrity(LOCAL_PWD.as_bytes()).unwrap();
    let n = w.fingerprint().unwrap();
    let mut a = agent();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let o = a.on_stun(&buf[..n], src(), Instant::now(), &mut out);
    let Outcome::Error { len, code: 420 } = o else {
        panic!("{o:?}")
    };
    assert_eq!(len, 100);
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!(
        m.attribute(stun::UNKNOWN_ATTRIBUTES).map(<[u8]>::len),
        Some(16)
    );
}

#[test]
fn no_room_changes_nothing() {
    let mut a = agent();
    let req = Check {
        use_candidate: true,
        ..Check::default()
    }
    .bytes(1);
    let mut out = [0u8; 63];
    assert_eq!(
        a.on_stun(&req, src(), Instant::now(), &mut out),
        Outcome::Drop(IceDrop::NoRoom)
    );
    assert_eq!(a.nominated(), None);
}

#[test]
fn restart_clears_nomination() {
    let mut a = agent();
    let t = Instant::now();
    run(
        &mut a,
        &Check {
            use_candidate: true,
            ..Check::default()
        },
        src(),
        t,
    );
    assert!(a.may_send(t));
    let local = Credentials::new("Nwer", "0123456789012345678901").unwrap();
    a.restart(local, Some(Credentials::new("nEwR", REMOTE_PWD).unwrap()));
    assert_eq!(a.nominated(), None);
    assert!(!a.may_send(t));
    assert_eq!(a.local().ufrag(), "Nwer");
    // The old credentials no longer work; the new ones do.
    let old = Check {
        use_candidate: true,
        ..Check::default()
    };
    assert_eq!(
        run(&mut a, &old, src(), t),
        Outcome::Drop(IceDrop::BadUsername)
    );
    let new = Check {
        username: Some("Nwer:nEwR"),
        key: Some("0123456789012345678901"),
        use_candidate: true,
        ..Check::default()
    };
    assert!(matches!(
        run(&mut a, &new, src(), t),
        Outcome::Reply {
            nominated: true,
            ..
        }
    ));
    assert!(a.may_send(t));
}

#[test]
fn consent_freshness() {
    let mut a = agent();
    let t0 = Instant::now();
    let s = Duration::from_secs;
    assert!(!a.may_send(t0));
    assert_eq!(a.consent_expires(), None);
    run(
        &mut a,
        &Check {
            use_candidate: true,
            ..Check::default()
        },
        src(),
        t0,
    );
    assert!(a.may_send(t0 + s(29)));
    assert!(!a.may_send(t0 + s(31)));
    assert_eq!(a.consent_expires(), Some(t0 + s(30)));
    // A check from elsewhere does not refresh the nominated address's consent.
    run(
        &mut a,
        &Check::default(),
        "192.0.2.200:9".parse().unwrap(),
        t0 + s(20),
    );
    assert!(!a.may_send(t0 + s(31)));
    // A check (no USE-CANDIDATE needed) from the nominated address does.
    run(&mut a, &Check::default(), src(), t0 + s(20));
    assert!(a.may_send(t0 + s(49)));
    assert!(!a.may_send(t0 + s(51)));
    // Failed checks do not.
    run(
        &mut a,
        &Check {
            key: Some(REMOTE_PWD),
            ..Check::default()
        },
        src(),
        t0 + s(40),
    );
    assert!(!a.may_send(t0 + s(51)));
}

#[test]
fn credentials() {
    assert!(Credentials::new("abcd", "0123456789abcdefghij+/").is_ok());
    assert_eq!(
        Credentials::new("abc", LOCAL_PWD),
        Err(IceError::UfragLength)
    );
    assert_eq!(
        Credentials::new(&"a".repeat(257), LOCAL_PWD),
        Err(IceError::UfragLength)
    );
    assert!(Credentials::new(&"a".repeat(256), &"b".repeat(256)).is_ok());
    assert_eq!(
        Credentials::new("abcd", "0123456789abcdefghij+"),
        Err(IceError::PwdLength)
    );
    assert_eq!(Credentials::new("ab:d", LOCAL_PWD), Err(IceError::BadChar));
    assert_eq!(
        Credentials::new("abcd", &"é".repeat(12)),
        Err(IceError::BadChar)
    );
    let c = Credentials::new(LOCAL_UFRAG, LOCAL_PWD).unwrap();
    assert_eq!((c.ufrag(), c.pwd()), (LOCAL_UFRAG, LOCAL_PWD));
    assert!(!format!("{c:?}").contains(LOCAL_PWD));
    for e in [
        IceError::UfragLength,
        IceError::PwdLength,
        IceError::BadChar,
    ] {
        assert!(!e.reason().is_empty() && !e.to_string().is_empty());
    }
}

#[test]
fn random_credentials() {
    let mut s = 1u64;
    let mut calls = 0;
    let mut rng = || {
        calls += 1;
        xorshift(&mut s)
    };
    let a = Credentials::random(&mut rng);
    let b = Credentials::random(&mut rng);
    assert_eq!(calls, 8);
    assert_ne!(a, b);
    for c in [a, b] {
        assert_eq!((c.ufrag().len(), c.pwd().len()), (8, 24));
        // They pass their own validation.
        assert_eq!(Credentials::new(c.ufrag(), c.pwd()), Ok(c));
    }
    // All 64 ice-chars come out of a counter.
    let mut n = 0u64;
    let c = Credentials::random(&mut || {
        n += 1;
        (0..10).fold(0, |acc, i| acc | ((n * 10 + i) % 64) << (6 * i))
    });
    assert_eq!(c.ufrag(), "KLMNOPQR");
}

/// Random datagrams, and valid checks with random bytes changed or cut
/// short: never a panic, and never an answer unless the check is intact.
#[test]
fn hostile_input() {
    let mut s = 0xdead_beef_cafe_f00du64;
    let mut a = agent();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let t = Instant::now();
    let valid = Check {
        use_candidate: true,
        ..Check::default()
    }
    .bytes(5);
    for n in 0..valid.len() {
        let o = a.on_stun(&valid[..n], src(), t, &mut out);
        assert!(matches!(o, Outcome::Drop(_)), "{n}: {o:?}");
    }
    for i in 0..20_000 {
        let b: Vec<u8> = if i % 2 == 0 {
            let n = (xorshift(&mut s) % 150) as usize;
            let mut b: Vec<u8> = (0..n).map(|_| xorshift(&mut s) as u8).collect();
            if n >= 20 && i % 4 == 0 {
                b[0] &= 0x3f;
                b[2..4].copy_from_slice(&((n - 20) as u16 & !3).to_be_bytes());
                b[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
            }
            b
        } else {
            let mut b = valid.clone();
            for _ in 0..1 + xorshift(&mut s) % 3 {
                let at = (xorshift(&mut s) as usize) % b.len();
                b[at] ^= 1 << (xorshift(&mut s) % 8);
            }
            b
        };
        // FINGERPRINT is outside MESSAGE-INTEGRITY: a change there that
        // turns it into some other comprehension-optional attribute leaves
        // an authentic check (§14.5: attributes after MI are ignored).
        let tail = valid.len() - 8;
        if b.len() == valid.len() && b[..tail] == valid[..tail] {
            continue;
        }
        let from = SocketAddr::new(IpAddr::from([10, 0, 0, (i % 7) as u8]), 9);
        let o = a.on_stun(&b, from, t, &mut out);
        assert!(o.reply_len().is_none(), "{i}: {o:?}");
    }
    assert_eq!(a.nominated(), None);
}
