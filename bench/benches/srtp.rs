//! Per-packet cost of SRTP protect and unprotect of a 172-octet RTP packet
//! (12-octet header, 160 octets of PCMU: 20 ms at 8 kHz) under
//! `AES_CM_128_HMAC_SHA1_80` and `AEAD_AES_128_GCM`:
//! `cargo bench -p tern-bench --bench srtp`.
//!
//! With `--features libsrtp` the same operations also run through libsrtp2
//! (the `srtp` crate), after checking that each side reads what the other
//! wrote.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tern_secure::srtp::{Context, Suite};

const SSRC: u32 = 0x1234_5678;
const PLAIN_LEN: usize = 172;
/// Room for the longest tag.
const BUF_LEN: usize = PLAIN_LEN + 16;

fn rtp_packet(seq: u16) -> [u8; BUF_LEN] {
    let mut b = [0u8; BUF_LEN];
    b[0] = 0x80;
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    b[8..12].copy_from_slice(&SSRC.to_be_bytes());
    for (i, x) in b[12..PLAIN_LEN].iter_mut().enumerate() {
        *x = 0xd5 ^ i as u8;
    }
    b
}

fn master(suite: Suite) -> Vec<u8> {
    (0..suite.master_len() as u8)
        .map(|i| i.wrapping_mul(29) ^ 0x6b)
        .collect()
}

fn context(suite: Suite) -> Context {
    let m = master(suite);
    let (key, salt) = m.split_at(suite.key_len());
    Context::new(suite, key, salt).expect("context")
}

fn tern(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
        let mut tx = context(suite);
        let mut seq = 0u16;
        g.bench_function(format!("tern/protect/{}", suite.name()), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let mut buf = rtp_packet(seq);
                black_box(
                    tx.protect_rtp(black_box(&mut buf), PLAIN_LEN)
                        .expect("protect"),
                )
            })
        });
        let mut tx = context(suite);
        let mut rx = context(suite);
        let mut seq = 0u16;
        g.bench_function(format!("tern/unprotect/{}", suite.name()), |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let mut buf = rtp_packet(seq);
                    let n = tx.protect_rtp(&mut buf, PLAIN_LEN).expect("protect");
                    (buf, n)
                },
                |(buf, n)| black_box(rx.unprotect_rtp(&mut buf[..*n]).expect("unprotect")),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

#[cfg(feature = "libsrtp")]
mod libsrtp {
    use super::*;
    use srtp::{CryptoPolicy, Session, StreamPolicy};

    fn policy(suite: Suite) -> CryptoPolicy {
        match suite {
            Suite::AesCm128HmacSha1_80 => CryptoPolicy::aes_cm_128_hmac_sha1_80(),
            Suite::AeadAes128Gcm => CryptoPolicy::aes_gcm_128_16_auth(),
            _ => unreachable!("not benched"),
        }
    }

    fn session(suite: Suite, inbound: bool) -> Session {
        let key = master(suite);
        let p = StreamPolicy {
            rtp: policy(suite),
            rtcp: policy(suite),
            key: &key,
            ..Default::default()
        };
        if inbound {
            Session::with_inbound_template(p).expect("libsrtp inbound")
        } else {
            Session::with_outbound_template(p).expect("libsrtp outbound")
        }
    }

    /// tern and libsrtp2 read each other's packets, and write the same
    /// bytes for the same packet.
    fn cross_check(suite: Suite) {
        let mut ours_tx = context(suite);
        let mut ours_rx = context(suite);
        let mut theirs_tx = session(suite, false);
        let mut theirs_rx = session(suite, true);
        for seq in [1u16, 2, 3] {
            let plain = rtp_packet(seq);
            let mut ours = plain;
            let n = ours_tx.protect_rtp(&mut ours, PLAIN_LEN).expect("protect");
            let mut theirs = plain[..PLAIN_LEN].to_vec();
            theirs_tx.protect(&mut theirs).expect("libsrtp protect");
            assert_eq!(&ours[..n], &theirs[..], "{suite}: same SRTP bytes");
            let mut v = ours[..n].to_vec();
            theirs_rx.unprotect(&mut v).expect("libsrtp unprotect");
            assert_eq!(&v[..], &plain[..PLAIN_LEN]);
            let m = ours_rx.unprotect_rtp(&mut theirs[..]).expect("unprotect");
            assert_eq!(&theirs[..m], &plain[..PLAIN_LEN]);
        }
    }

    pub fn bench(c: &mut Criterion) {
        let mut g = c.benchmark_group("srtp");
        g.throughput(Throughput::Elements(1));
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
            cross_check(suite);
            let mut tx = session(suite, false);
            let mut buf: Vec<u8> = Vec::with_capacity(PLAIN_LEN + 256);
            let mut seq = 0u16;
            g.bench_function(format!("libsrtp/protect/{}", suite.name()), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    buf.clear();
                    buf.extend_from_slice(&rtp_packet(seq)[..PLAIN_LEN]);
                    tx.protect(black_box(&mut buf)).expect("libsrtp protect");
                    black_box(buf.len())
                })
            });
            let mut tx = session(suite, false);
            let mut rx = session(suite, true);
            let mut seq = 0u16;
            g.bench_function(format!("libsrtp/unprotect/{}", suite.name()), |b| {
                b.iter_batched_ref(
                    || {
                        seq = seq.wrapping_add(1);
                        let mut v = Vec::with_capacity(PLAIN_LEN + 256);
                        v.extend_from_slice(&rtp_packet(seq)[..PLAIN_LEN]);
                        tx.protect(&mut v).expect("libsrtp protect");
                        v
                    },
                    |v| {
                        rx.unprotect(v).expect("libsrtp unprotect");
                        black_box(v.len())
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        g.finish();
    }
}

#[cfg(feature = "libsrtp")]
criterion_group!(benches, tern, libsrtp::bench);
#[cfg(not(feature = "libsrtp"))]
criterion_group!(benches, tern);
criterion_main!(benches);
