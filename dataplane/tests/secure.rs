//! Secure legs through real io_uring workers over loopback: a slot whose
//! leg B is SDES-SRTP with ICE-lite bridged to plain RTP on leg A, next to
//! a plain call; ICE checks answered and nominating, consent gating
//! sending, SRTP both ways, and hostile input (truncated and garbled STUN,
//! DTLS and SRTP, bad tags, replays) dropped and counted by reason while
//! the other call forwards on. Every wait is bounded.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tern_dataplane::{start, RelayConfig};
use tern_secure::srtp::{Context, Suite};
use tern_secure::stun::{self, Builder, Class, Message};
use tern_shared::table::testing::TempTable;
use tern_shared::table::{
    IceParams, IceToken, LegSecurity, LegStats, SlotConfig, SlotTable, SrtpKeying,
};

const UFRAG: &str = "tErNuFrG";
const PWD: &str = "relay+password/0123456789";
const KEY_IN: [u8; 30] = [0x11; 30];
const KEY_OUT: [u8; 30] = [0x22; 30];

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u8).map(|i| i ^ seq as u8));
    p
}

fn ctx(key: &[u8; 30]) -> Context {
    Context::new(Suite::AesCm128HmacSha1_80, &key[..16], &key[16..]).unwrap()
}

fn protect(c: &mut Context, p: &[u8]) -> Vec<u8> {
    let mut b = p.to_vec();
    b.resize(p.len() + 16, 0);
    let n = c.protect_rtp(&mut b, p.len()).unwrap();
    b.truncate(n);
    b
}

fn stats(t: &SlotTable, id: u32, leg: usize) -> LegStats {
    t.stats(id, leg).unwrap()
}

/// A Binding request from the controlling peer, signed with the relay's
/// password (`key`); `nominate` adds USE-CANDIDATE.
fn check(txid: u8, key: &[u8], nominate: bool) -> Vec<u8> {
    let mut b = vec![0u8; 256];
    let mut m = Builder::new(&mut b, Class::Request, stun::BINDING, &[txid; 12]).unwrap();
    m.username(&format!("{UFRAG}:peer")).unwrap();
    m.attribute(stun::PRIORITY, &1_853_824_767u32.to_be_bytes())
        .unwrap();
    m.attribute(stun::ICE_CONTROLLING, &7u64.to_be_bytes())
        .unwrap();
    if nominate {
        m.attribute(stun::USE_CANDIDATE, &[]).unwrap();
    }
    m.message_integrity(key).unwrap();
    let n = m.fingerprint().unwrap();
    b.truncate(n);
    b
}

#[test]
fn srtp_and_ice_lite_leg_with_hostile_input_counted_by_reason() {
    let t = TempTable::new("dp-secure", 31800, 31899, 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers: 1,
        bind_ip: "127.0.0.1".parse().unwrap(),
        pin: false,
    };
    let relay = start(cfg, t.clone(), stop.clone()).unwrap();
    let (a, b) = (udp(), udp());
    let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    // The secure call: A plain, B SDES-SRTP with ICE-lite.
    let id = t.reserve().unwrap();
    let mut sc = SlotConfig::default();
    sc.legs[0].peer = Some(pa);
    sc.legs[1].peer = Some(pb);
    // RTCP to the same sockets, so one socket per peer sees both.
    sc.legs[0].peer_rtcp = Some(pa);
    sc.legs[1].peer_rtcp = Some(pb);
    sc.legs[1].secure = LegSecurity {
        rx: SrtpKeying::new(1, &KEY_IN),
        tx: SrtpKeying::new(1, &KEY_OUT),
        ice: Some(IceParams {
            local_ufrag: IceToken::new(UFRAG).unwrap(),
            local_pwd: IceToken::new(PWD).unwrap(),
            remote_ufrag: IceToken::new("peer"),
        }),
        dtls: None,
    };
    t.publish(id, &sc).unwrap();
    // A plain call beside it.
    let (c, d) = (udp(), udp());
    let id2 = t.reserve().unwrap();
    let mut pc = SlotConfig::default();
    pc.legs[0].peer = Some(c.local_addr().unwrap());
    pc.legs[1].peer = Some(d.local_addr().unwrap());
    t.publish(id2, &pc).unwrap();
    assert!(wait_until(2000, || t.is_applied(id) && t.is_applied(id2)));
    let (ta, tb) = (t.ports(id, 0).rtp, t.ports(id, 1).rtp);
    let (tc, _) = (t.ports(id2, 0).rtp, t.ports(id2, 1).rtp);

    // Before ICE nominates, nothing goes to B (no consent, RFC 7675).
    a.send_to(&rtp(0xaaaa, 1), at(ta)).unwrap();
    assert!(
        wait_until(1000, || stats(&t, id, 0).drop_no_consent == 1),
        "{:?}",
        stats(&t, id, 0)
    );
    assert!(recv(&b).is_none(), "sent to B without consent");

    // A check signed with the wrong password is dropped, not answered.
    b.send_to(&check(1, b"wrong-password-0123456789", true), at(tb))
        .unwrap();
    assert!(wait_until(1000, || stats(&t, id, 1).drop_stun == 1));
    assert!(recv(&b).is_none(), "a bad check was answered");
    // A good one is answered with B's address, and nominates it.
    b.send_to(&check(2, PWD.as_bytes(), true), at(tb)).unwrap();
    let resp = recv(&b).expect("a Binding response");
    let m = Message::parse(&resp).unwrap();
    assert_eq!(m.class(), Class::Success);
    assert_eq!(m.transaction_id(), &[2u8; 12]);
    assert_eq!(m.xor_mapped_address(), Some(pb));
    assert!(m.check_integrity(PWD.as_bytes()) && m.check_fingerprint());

    // A → B: encrypted with the relay's key toward B.
    let mut out_ctx = ctx(&KEY_OUT);
    for seq in 2..12u16 {
        let plain = rtp(0xaaaa, seq);
        a.send_to(&plain, at(ta)).unwrap();
        let mut got = recv(&b).expect("SRTP at B");
        assert_eq!(got.len(), plain.len() + 10, "AES_CM_128_HMAC_SHA1_80 tag");
        assert_ne!(got[12..plain.len()], plain[12..], "encrypted");
        let n = out_ctx
            .unprotect_rtp(&mut got)
            .expect("authenticates with the relay's key");
        assert_eq!(&got[..n], &plain[..]);
    }
    // B → A: decrypted with B's key.
    let mut in_ctx = ctx(&KEY_IN);
    let mut last = Vec::new();
    for seq in 100..110u16 {
        let plain = rtp(0xbbbb, seq);
        last = protect(&mut in_ctx, &plain);
        b.send_to(&last, at(tb)).unwrap();
        assert_eq!(recv(&a).as_deref(), Some(&plain[..]), "plain RTP at A");
    }

    // SRTCP both ways on the RTCP ports (RFC 3711 §3.4): B's sender report
    // arrives at A plain, A's arrives at B protected with the relay's key.
    let sr = |ssrc: u32| {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[7u8; 20]);
        p
    };
    let (ta_rtcp, tb_rtcp) = (t.ports(id, 0).rtcp, t.ports(id, 1).rtcp);
    let plain_sr = sr(0xbbbb);
    let mut srtcp = vec![0u8; 128];
    srtcp[..plain_sr.len()].copy_from_slice(&plain_sr);
    let n = in_ctx.protect_rtcp(&mut srtcp, plain_sr.len()).unwrap();
    srtcp.truncate(n);
    b.send_to(&srtcp, at(tb_rtcp)).unwrap();
    assert_eq!(recv(&a).as_deref(), Some(&plain_sr[..]), "plain RTCP at A");
    let a_sr = sr(0xaaaa);
    a.send_to(&a_sr, at(ta_rtcp)).unwrap();
    let mut got = recv(&b).expect("SRTCP at B");
    assert!(got.len() >= a_sr.len() + 4 + 10, "index and tag appended");
    let n = out_ctx
        .unprotect_rtcp(&mut got)
        .expect("SRTCP with the relay's key");
    assert_eq!(&got[..n], &a_sr[..]);

    // Hostile input on B's port, each counted by its reason.
    let before = stats(&t, id, 1);
    b.send_to(&last, at(tb)).unwrap(); // replayed
    let mut bad_tag = protect(&mut in_ctx, &rtp(0xbbbb, 110));
    let n = bad_tag.len();
    bad_tag[n - 1] ^= 1;
    b.send_to(&bad_tag, at(tb)).unwrap();
    let mut garbled = protect(&mut in_ctx, &rtp(0xbbbb, 111));
    garbled[20] ^= 0xff; // payload bit flips break the tag too
    b.send_to(&garbled, at(tb)).unwrap();
    b.send_to(&last[..8], at(tb)).unwrap(); // truncated SRTP
    b.send_to(&check(3, PWD.as_bytes(), false)[..30], at(tb))
        .unwrap(); // truncated STUN
    b.send_to(&[0, 1, 0, 0, 0x21, 0x12, 0xa4], at(tb)).unwrap(); // garbled STUN
    b.send_to(
        &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
        at(tb),
    )
    .unwrap(); // DTLS, no DTLS leg
    b.send_to(&[100, 1, 2, 3], at(tb)).unwrap(); // no class (RFC 7983)
    let want = |s: &LegStats| {
        s.drop_srtp_replay == before.drop_srtp_replay + 1
            && s.drop_srtp_auth == before.drop_srtp_auth + 2
            && s.drop_srtp_malformed + s.drop_malformed
                == before.drop_srtp_malformed + before.drop_malformed + 1
            && s.drop_stun == before.drop_stun + 2
            && s.drop_dtls == before.drop_dtls + 1
            && s.drop_demux == before.drop_demux + 1
    };
    assert!(
        wait_until(2000, || want(&stats(&t, id, 1))),
        "drops by reason: {:?}",
        stats(&t, id, 1)
    );
    assert!(recv(&a).is_none(), "nothing hostile reached A");

    // Both calls forward on.
    let plain = rtp(0xbbbb, 112);
    b.send_to(&protect(&mut in_ctx, &plain), at(tb)).unwrap();
    assert_eq!(recv(&a).as_deref(), Some(&plain[..]));
    for seq in 0..5u16 {
        let p = rtp(0xcccc, seq);
        c.send_to(&p, at(tc)).unwrap();
        assert_eq!(recv(&d).as_deref(), Some(&p[..]), "the plain call");
    }

    // A changed SDES key (a re-offer) re-keys: the old key no longer works.
    sc.legs[1].secure.rx = SrtpKeying::new(1, &[0x33; 30]);
    t.publish(id, &sc).unwrap();
    assert!(wait_until(2000, || t.is_applied(id)));
    let auth0 = stats(&t, id, 1).drop_srtp_auth;
    b.send_to(&protect(&mut in_ctx, &rtp(0xbbbb, 113)), at(tb))
        .unwrap();
    assert!(wait_until(1000, || stats(&t, id, 1).drop_srtp_auth == auth0 + 1));
    let mut new_ctx = ctx(&[0x33; 30]);
    let plain = rtp(0xbbbb, 114);
    b.send_to(&protect(&mut new_ctx, &plain), at(tb)).unwrap();
    assert_eq!(recv(&a).as_deref(), Some(&plain[..]), "the new key");

    stop.store(true, Ordering::Relaxed);
    relay.join().unwrap();
}
