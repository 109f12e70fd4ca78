//! Media control through real io_uring workers over loopback: a leg
//! whose peer's DTMF is blocked, whose other media is blocked, or whose
//! G.711 is silenced (ng `block DTMF`, `block media`, `silence media`),
//! with the other direction untouched and the flags undone by a
//! reconfiguration. Every wait is bounded.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tern_dataplane::{start, RelayConfig};
use tern_shared::table::testing::TempTable;
use tern_shared::table::{SlotConfig, SlotTable};

const DTMF_PT: u8 = 101;

fn rtp(pt: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160u8).map(|i| i.wrapping_mul(3) ^ seq as u8));
    p
}

/// Publishes `cfg` and waits until the worker applied it.
fn apply(t: &SlotTable, id: u32, cfg: &SlotConfig) {
    t.publish(id, cfg).unwrap();
    assert!(wait_until(2000, || t.is_applied(id)), "config applied");
}

#[test]
fn block_dtmf_block_media_and_silence_act_on_one_direction() {
    let t = TempTable::new("dp-media-ctl", 30400, 30499, 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers: 1,
        bind_ip: "127.0.0.1".parse().unwrap(),
        pin: false,
    };
    let relay = start(cfg, t.clone(), stop.clone()).unwrap();
    let (a, b) = (udp(), udp());
    let id = t.reserve().unwrap();
    let mut sc = SlotConfig::default();
    sc.legs[0].peer = Some(a.local_addr().unwrap());
    sc.legs[1].peer = Some(b.local_addr().unwrap());
    sc.legs[0].dtmf_pt = Some(DTMF_PT);
    sc.legs[1].dtmf_pt = Some(DTMF_PT);
    apply(&t, id, &sc);
    let (ta, tb) = (t.ports(id, 0).rtp, t.ports(id, 1).rtp);
    let seq = std::cell::Cell::new(0u16);
    // A → B of payload type `pt`: what B got, if anything.
    let a_to_b = |pt: u8| {
        seq.set(seq.get() + 1);
        a.send_to(&rtp(pt, seq.get()), at(ta)).unwrap();
        recv(&b)
    };
    assert!(a_to_b(0).is_some() && a_to_b(DTMF_PT).is_some(), "plain");

    // block DTMF on A: A's events stop, its audio and B's events pass.
    sc.legs[0].block_dtmf = true;
    apply(&t, id, &sc);
    assert!(a_to_b(DTMF_PT).is_none(), "A's DTMF was blocked");
    assert!(a_to_b(0).is_some(), "A's audio passes");
    b.send_to(&rtp(DTMF_PT, 500), at(tb)).unwrap();
    assert!(recv(&a).is_some(), "B's DTMF passes");
    let rx = t.stats(id, 0).unwrap();
    assert_eq!(rx.drops_total(), 0, "blocking is no drop: {rx:?}");

    // block media on A (DTMF unblocked): the reverse.
    sc.legs[0].block_dtmf = false;
    sc.legs[0].block_media = true;
    apply(&t, id, &sc);
    assert!(a_to_b(0).is_none(), "A's audio was blocked");
    assert!(a_to_b(8).is_none(), "A's PCMA too");
    assert!(a_to_b(DTMF_PT).is_some(), "A's DTMF passes media blocking");

    // silence media on A: G.711 payloads become the codec's silence.
    sc.legs[0].block_media = false;
    sc.legs[0].silence_media = true;
    apply(&t, id, &sc);
    let g = a_to_b(0).expect("PCMU passes, silenced");
    assert!(
        g.len() == 172 && g[12..].iter().all(|&x| x == 0xff),
        "µ-law silence"
    );
    let g = a_to_b(8).expect("PCMA passes, silenced");
    assert!(g[12..].iter().all(|&x| x == 0xd5), "A-law silence");
    let sent = rtp(9, seq.get() + 1);
    let g = a_to_b(9).expect("G.722 passes");
    assert_eq!(&g[12..], &sent[12..], "other codecs unchanged");
    let d = a_to_b(DTMF_PT).expect("DTMF passes");
    assert_ne!(d[12], 0xff, "events are not silenced");

    // All off: everything passes as it came.
    sc.legs[0].silence_media = false;
    apply(&t, id, &sc);
    let sent = rtp(0, seq.get() + 1);
    assert_eq!(
        a_to_b(0).map(|g| g[12..].to_vec()),
        Some(sent[12..].to_vec())
    );

    stop.store(true, Ordering::Relaxed);
    relay.join().unwrap();
}
