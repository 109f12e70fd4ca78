//! `IceLite::on_stun` on arbitrary datagrams. Every answer fits the
//! buffer, is itself a well-formed STUN Binding response to the request
//! (same transaction id, valid MESSAGE-INTEGRITY under the local pwd and a
//! valid FINGERPRINT), and a success maps the source address.
//!
//! Input: one control byte, then the datagram. The control byte can make
//! the target fix up the datagram's length field, MESSAGE-INTEGRITY
//! (keyed with the local pwd) and FINGERPRINT before handing it over, so
//! the fuzzer gets past authentication to the code behind it; it also
//! picks the source address family, whether the remote credentials are
//! known and a smaller output buffer to try.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha1::Sha1;
use tern_secure::ice::{Credentials, IceDrop, IceLite, Outcome};
use tern_secure::stun::{self, Class, Message, HEADER_LEN};

const UFRAG: &str = "abcd";
const PWD: &str = "0123456789012345678901";
const REMOTE_UFRAG: &str = "wxyz";

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Rewrites the length field, the first MESSAGE-INTEGRITY that counts and
/// a last FINGERPRINT as a sender holding the pwd would.
fn fix_up(pkt: &mut [u8], len_field: bool, mi: bool, fp: bool) {
    if pkt.len() < HEADER_LEN {
        return;
    }
    if len_field {
        let n = u16::try_from(pkt.len() - HEADER_LEN).unwrap_or(0);
        pkt[2..4].copy_from_slice(&n.to_be_bytes());
    }
    // Walk the attributes as `Message::parse` does.
    let (mut at, mut mi_at, mut fp_at, mut sha256) = (HEADER_LEN, None, None, false);
    while pkt.len() - at >= 4 {
        let (ty, vlen) = (be16(pkt, at) as u16, be16(pkt, at + 2));
        let next = at + 4 + ((vlen + 3) & !3);
        if next > pkt.len() {
            break;
        }
        match ty {
            _ if fp_at.is_some() => {}
            stun::MESSAGE_INTEGRITY if mi_at.is_none() && !sha256 => mi_at = Some((at, vlen)),
            stun::MESSAGE_INTEGRITY_SHA256 => sha256 = true,
            stun::FINGERPRINT => fp_at = Some((at, vlen)),
            _ => {}
        }
        at = next;
    }
    if let (true, Some((at, 20))) = (mi, mi_at) {
        let mut mac = Hmac::<Sha1>::new_from_slice(PWD.as_bytes()).unwrap();
        mac.update(&pkt[..2]);
        mac.update(&((at + 24 - HEADER_LEN) as u16).to_be_bytes());
        mac.update(&pkt[4..at]);
        let tag = mac.finalize().into_bytes();
        pkt[at + 4..at + 24].copy_from_slice(&tag);
    }
    if let (true, Some((at, 4))) = (fp, fp_at) {
        if at + 8 == pkt.len() {
            let crc = crc32fast::hash(&pkt[..at]) ^ 0x5354_554e;
            pkt[at + 4..].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

/// The response in `out[..len]` answers `req` properly.
fn check_response(req: &Message<'_>, out: &[u8], len: usize, class: Class) -> SocketAddrOpt {
    assert!(len <= out.len(), "reply of {len} bytes in a {}-byte buffer", out.len());
    assert!(len <= IceLite::MAX_REPLY);
    let resp = Message::parse(&out[..len]).expect("the reply parses");
    assert_eq!(resp.class(), class);
    assert_eq!(resp.method(), stun::BINDING);
    assert_eq!(resp.transaction_id(), req.transaction_id());
    assert!(resp.has_fingerprint() && resp.check_fingerprint(), "reply FINGERPRINT");
    assert!(resp.check_integrity(PWD.as_bytes()), "reply MESSAGE-INTEGRITY");
    resp.xor_mapped_address()
}

type SocketAddrOpt = Option<SocketAddr>;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, pkt)) = data.split_first() else {
        return;
    };
    let mut pkt = pkt.to_vec();
    fix_up(&mut pkt, ctl & 1 != 0, ctl & 2 != 0, ctl & 4 != 0);

    let src = match (ctl >> 3) & 3 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32853),
        1 => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5678, 0x11, 0x2233, 0x4455, 0x6677)),
            32853,
        ),
        // A dual-stack socket's view of an IPv4 peer.
        2 => SocketAddr::new(IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()), 9),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 0),
    };
    let mapped = match src.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), src.port()),
            None => src,
        },
        IpAddr::V4(_) => src,
    };

    let mut ice = IceLite::new(Credentials::new(UFRAG, PWD).unwrap());
    if ctl & 0x20 != 0 {
        ice.set_remote(Some(Credentials::new(REMOTE_UFRAG, "zyxwvutsrqponmlkjihgfe").unwrap()));
    }
    let now = Instant::now();
    let mut out = [0u8; IceLite::MAX_REPLY];
    let before = ice.clone();
    let outcome = ice.on_stun(&pkt, src, now, &mut out);

    let parsed = Message::parse(&pkt);
    match (outcome, &parsed) {
        (Outcome::Drop(IceDrop::Malformed), Err(_)) => {}
        (_, Err(e)) => panic!("unparseable datagram ({e:?}) got {outcome:?}"),
        (Outcome::Drop(IceDrop::Malformed), Ok(_)) => panic!("parseable datagram dropped as malformed"),
        (Outcome::Drop(IceDrop::NoRoom), Ok(_)) => panic!("MAX_REPLY did not suffice"),
        (Outcome::Drop(_), Ok(_)) => {}
        (Outcome::Reply { len, nominated }, Ok(req)) => {
            assert_eq!(req.class(), Class::Request);
            assert_eq!(req.method(), stun::BINDING);
            assert!(req.check_integrity(PWD.as_bytes()));
            let xma = check_response(req, &out, len, Class::Success);
            assert_eq!(xma, Some(mapped), "XOR-MAPPED-ADDRESS is the source");
            assert_eq!(nominated, req.use_candidate());
            if nominated {
                assert_eq!(ice.nominated(), Some(src));
                assert!(ice.may_send(now));
                assert!(ice.may_send(now + Duration::from_secs(29)));
                assert!(!ice.may_send(now + IceLite::CONSENT_TIMEOUT));
            }
        }
        (Outcome::Error { len, code }, Ok(req)) => {
            assert!(code == 420 || code == 487, "error code {code}");
            assert!(req.check_integrity(PWD.as_bytes()));
            check_response(req, &out, len, Class::Error);
            // Errors change nothing.
            assert_eq!(ice.nominated(), before.nominated());
            assert_eq!(ice.consent_expires(), before.consent_expires());
        }
    }

    // The same request into a smaller buffer: a reply that fits, or NoRoom,
    // and no state change without a reply.
    let room = usize::from(data.last().copied().unwrap_or(0)) % IceLite::MAX_REPLY;
    let mut small = vec![0u8; room];
    let mut ice2 = before;
    let o2 = ice2.on_stun(&pkt, src, now, &mut small);
    match o2 {
        Outcome::Reply { len, .. } | Outcome::Error { len, .. } => {
            assert!(len <= room);
            assert_eq!(o2, outcome, "outcome depends on the buffer");
        }
        Outcome::Drop(IceDrop::NoRoom) => {
            assert!(outcome.reply_len().is_some_and(|l| l > room), "NoRoom but {outcome:?}");
            assert_eq!(ice2.nominated(), None);
        }
        Outcome::Drop(_) => assert_eq!(o2, outcome),
    }
});
