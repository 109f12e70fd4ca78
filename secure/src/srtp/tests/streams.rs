//! Round trips for every suite, ROC and replay handling, persistence, the
//! stream table, and garbage in.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{pair, protect, protect_c, rtcp, rtp, unprotect, unprotect_c};
use crate::srtp::{SrtpError, StreamState, Suite, MAX_STREAMS};

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
