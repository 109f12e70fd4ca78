use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use super::layout::*;
use super::types::*;
use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn params(lo: u16, hi: u16, workers: u32) -> TableParams {
    TableParams {
        port_lo: lo,
        port_hi: hi,
        workers,
        media_ip: "127.0.0.1".parse().unwrap(),
    }
}

fn inst(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

#[test]
fn layout_is_cache_line_sized() {
    assert_eq!(std::mem::size_of::<Header>() % 64, 0);
    assert_eq!(std::mem::size_of::<WorkerShared>(), 256);
    assert_eq!(std::mem::size_of::<SlotControl>(), 64);
    assert_eq!(std::mem::size_of::<LegCounters>(), 576);
    assert_eq!(SLOT_BYTES, 2432, "docs/ARCHITECTURE.md quotes this");
    // 120 bytes of fields, the interface count and list (layout 8).
    assert_eq!(
        std::mem::size_of::<Header>(),
        768,
        "docs/ARCHITECTURE.md quotes this"
    );
    assert_eq!(std::mem::size_of::<IfaceWords>(), 40);
    assert_eq!(LAYOUT_VERSION, 9);
}

#[test]
fn interfaces_round_trip_through_the_header() {
    let t = SlotTable::create_or_attach(&inst("ifaces"), params(40000, 40099, 1)).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // None named: the one interface is media_ip.
    assert_eq!(
        t.interfaces(),
        vec![LocalInterface {
            ip: ip("127.0.0.1"),
            advertised: ip("127.0.0.1")
        }]
    );
    let list = [
        LocalInterface {
            ip: ip("127.0.0.2"),
            advertised: ip("127.0.0.2"),
        },
        LocalInterface {
            ip: ip("127.0.0.3"),
            advertised: ip("203.0.113.7"),
        },
        LocalInterface {
            ip: ip("::1"),
            advertised: ip("2001:db8::7"),
        },
    ];
    t.set_interfaces(&list).unwrap();
    assert_eq!(t.interfaces(), list);
    // Another mapping of the same file reads the same list.
    let other = SlotTable::open(&inst("ifaces")).unwrap();
    assert_eq!(other.interfaces(), list);
    let many = vec![list[0]; MAX_INTERFACES + 1];
    assert!(matches!(
        t.set_interfaces(&many),
        Err(TableError::BadParams(_))
    ));
    assert_eq!(t.interfaces(), list, "a refused list changes nothing");
    t.unlink().unwrap();
}

#[test]
fn call_id_label_set_truncated_and_cleared() {
    let name = inst("label");
    let t = SlotTable::create_or_attach(&name, params(43000, 43007, 1)).unwrap();
    let id = t.reserve().unwrap();
    assert_eq!(t.call_id(id), None);
    t.set_call_id(id, "a84b4c76e66710@pc33.atlanta.com");
    assert_eq!(
        t.call_id(id).as_deref(),
        Some("a84b4c76e66710@pc33.atlanta.com")
    );
    // 70 bytes with a two-byte character across the 64-byte limit.
    let long = format!("{}é{}", "x".repeat(63), "y".repeat(5));
    t.set_call_id(id, &long);
    assert_eq!(t.call_id(id), Some("x".repeat(63)));
    t.set_call_id(id + 100, "ignored");
    assert_eq!(t.call_id(id + 100), None);
    t.publish(id, &SlotConfig::default()).unwrap();
    t.set_call_id(id, "c1");
    t.release(id).unwrap();
    assert_eq!(t.call_id(id), None);
    t.unlink().unwrap();
}

#[test]
fn quality_round_trips_and_resets() {
    let name = inst("quality");
    let t = SlotTable::create_or_attach(&name, params(43100, 43107, 1)).unwrap();
    let id = t.reserve().unwrap();
    assert_eq!(t.quality(id, 0), LegQuality::default());
    let q = LegQuality {
        expected: 1000,
        lost: -3,
        fraction_lost: 25,
        jitter_ms: 12.625,
        duplicates: 4,
        reordered: 7,
        rtt_ms: Some(0.0),
        peer_fraction_lost: Some(0),
        peer_jitter_ms: None,
        mos: Some(4.2),
        clock_rate: 48_000,
    };
    t.counters(id, 1).unwrap().set_quality(&q);
    assert_eq!(t.quality(id, 1), q);
    assert_eq!(t.counters(id, 1).unwrap().ssrc_in(), None);
    t.counters(id, 1).unwrap().set_ssrc_in(Some(0));
    assert_eq!(t.counters(id, 1).unwrap().ssrc_in(), Some(0));
    assert_eq!(t.quality(id, 0), LegQuality::default());
    t.publish(id, &SlotConfig::default()).unwrap();
    t.release(id).unwrap();
    t.finish_drain(id).unwrap();
    assert_eq!(t.quality(id, 1), LegQuality::default());
    assert_eq!(t.quality(9999, 0), LegQuality::default());
    t.unlink().unwrap();
}

/// A worker keeps publishing statistics whose every field derives from
/// one counter; a reader must never see a mix of two publications.
#[test]
fn quality_reader_never_sees_torn_statistics() {
    let name = inst("qtorn");
    let t = Arc::new(SlotTable::create_or_attach(&name, params(43400, 43403, 1)).unwrap());
    let id = t.reserve().unwrap();
    let make = |n: u64| LegQuality {
        expected: n,
        lost: n as i64,
        fraction_lost: n as u8,
        jitter_ms: n as f64,
        duplicates: n,
        reordered: n,
        rtt_ms: Some(n as f64),
        peer_fraction_lost: Some(n as u8),
        peer_jitter_ms: Some(n as f64),
        mos: Some(n as f64),
        clock_rate: n as u32,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = t.counters(id, 0).unwrap();
            let mut n = 1u64;
            while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                c.set_quality(&make(n));
                n += 1;
                // A worker publishes every 100 ms, not back to back:
                // leave readers a window.
                for _ in 0..50 {
                    std::hint::spin_loop();
                }
            }
            n
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut reads = 0u64;
    while std::time::Instant::now() < deadline && reads < 5_000_000 {
        // A miss (no consistent read while the writer publishes back to
        // back) is allowed; a torn read is not.
        let Some(q) = t.counters(id, 0).unwrap().try_quality() else {
            reads += 1;
            continue;
        };
        if q.expected != 0 {
            assert_eq!(q, make(q.expected), "torn read");
        }
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 1 && reads > 1);
    t.unlink().unwrap();
}

#[test]
fn dtmf_ring_keeps_the_last_sixteen() {
    let name = inst("dtmf");
    let t = SlotTable::create_or_attach(&name, params(43200, 43207, 1)).unwrap();
    let id = t.reserve().unwrap();
    let c = t.counters(id, 0).unwrap();
    assert!(t.dtmf_events(id, 0).is_empty());
    let ev = |n: u32| DtmfEvent {
        digit: dtmf_digit((n % 16) as u8).unwrap(),
        event: (n % 16) as u8,
        duration: 800 + n,
        rtp_timestamp: 0xffff_0000 + n * 160,
        at_ms: 1_700_000_000_000 + u64::from(n) * 250,
    };
    c.push_dtmf(&ev(0));
    c.push_dtmf(&DtmfEvent {
        event: 16,
        ..ev(99)
    }); // flash: not a key
    assert_eq!(t.dtmf_events(id, 0), vec![ev(0)]);
    for n in 1..40 {
        c.push_dtmf(&ev(n));
    }
    let got = t.dtmf_events(id, 0);
    assert_eq!(got, (24..40).map(ev).collect::<Vec<_>>());
    assert_eq!(got[7].digit, 'D');
    assert_eq!(got[2].digit, '*');
    assert!(t.dtmf_events(id, 1).is_empty());
    c.reset();
    assert!(t.dtmf_events(id, 0).is_empty());
    t.unlink().unwrap();
}

#[test]
fn worker_totals_keep_a_freed_slots_counters() {
    let name = inst("totals");
    let t = SlotTable::create_or_attach(&name, params(43300, 43315, 2)).unwrap();
    let id = t.reserve().unwrap();
    let w = t.worker_of(id);
    t.publish(id, &SlotConfig::default()).unwrap();
    let c = t.counters(id, 0).unwrap();
    c.count_rx(100, 1);
    c.count_rx(50, 2);
    c.count_drop(DropReason::Source);
    c.count_drop(DropReason::JitterOverflow);
    t.counters(id, 1)
        .unwrap()
        .count_drop(DropReason::JitterLate);
    t.counters(id, 1).unwrap().count_tx(150);
    t.set_worker_send_errors(w, 3);
    let live = t.worker_totals(w);
    assert_eq!(live.legs.rx_packets, 2);
    assert_eq!(live.legs.rx_bytes, 150);
    assert_eq!(live.legs.tx_bytes, 150);
    assert_eq!(live.legs.drop_source, 1);
    assert_eq!(live.legs.drops(DropReason::JitterLate), 1);
    assert_eq!(live.legs.drop_jitter_overflow, 1);
    assert_eq!(live.drops_total(), 6);
    // Draining: still counted once; freed: the counters are gone from
    // the slot but not from the totals.
    t.release(id).unwrap();
    assert_eq!(t.worker_totals(w), live);
    t.finish_drain(id).unwrap();
    assert_eq!(t.stats(id, 0).unwrap().rx_packets, 0);
    assert_eq!(t.worker_totals(w), live);
    assert!(
        t.finish_drain(id).is_err(),
        "a free slot is not retired twice"
    );
    assert_eq!(t.worker_totals(w), live);
    // The next call on the slot adds to them.
    let id2 = t.reserve().unwrap();
    t.counters(id2, 1).unwrap().count_rx(10, 3);
    let w2 = t.worker_of(id2);
    let other = t.worker_totals(w2);
    if w2 == w {
        assert_eq!(other.legs.rx_packets, 3);
    } else {
        assert_eq!(other.legs.rx_packets, 1);
        assert_eq!(t.worker_totals(w), live);
    }
    t.unlink().unwrap();
}

#[test]
fn dtmf_digits() {
    let s: String = (0..16).filter_map(dtmf_digit).collect();
    assert_eq!(s, "0123456789*#ABCD");
    assert_eq!(dtmf_digit(16), None);
}

#[test]
fn leg_config_round_trips() {
    let c = LegConfig {
        media: LegMedia::default(),
        peer: Some("10.1.2.3:4000".parse().unwrap()),
        peer_rtcp: Some("[2001:db8::1]:4001".parse().unwrap()),
        learning: Learning::Strict,
        direction: Direction::SendOnly,
        rewrite_ssrc: true,
        out_ssrc: 0xdead_beef,
        rtcp_mux: true,
        payload_types: 1 << 0 | 1 << 8 | 1 << 101 | 1 << 127,
        jitter: JitterSettings {
            enabled: true,
            target_ms: 60,
            max_ms: 200,
            adaptive: true,
        },
        dtmf_pt: Some(101),
        clock_rate: 48_000,
        secure: LegSecurity::default(),
        iface: 0x7f,
        block_dtmf: true,
        block_media: false,
        silence_media: true,
        play: None,
    };
    assert_eq!(LegConfig::decode(&c.encode()), c);
    // Each media-control bit on its own, beside the rest of the flags.
    for (d, m, s) in [
        (true, false, false),
        (false, true, false),
        (false, false, true),
    ] {
        let e = LegConfig {
            block_dtmf: d,
            block_media: m,
            silence_media: s,
            ..c
        };
        assert_eq!(LegConfig::decode(&e.encode()), e);
    }
    // The interface index shares word 5 with the RTCP peer and out SSRC.
    for i in [0u8, 1, 15] {
        let d = LegConfig { iface: i, ..c };
        let back = LegConfig::decode(&d.encode());
        assert_eq!(
            (back.iface, back.peer_rtcp, back.out_ssrc),
            (i, c.peer_rtcp, c.out_ssrc)
        );
    }
    for (pt, hz) in [(Some(0), 8000), (Some(127), 44_100), (None, 127_000)] {
        let d = LegConfig {
            dtmf_pt: pt,
            clock_rate: hz,
            ..c
        };
        assert_eq!(LegConfig::decode(&d.encode()), d);
    }
    assert_eq!(
        LegConfig::decode(&LegConfig::default().encode()),
        LegConfig::default()
    );
}

#[test]
fn changes_are_marked_per_slot_and_taken_per_worker() {
    // 150 slots over 2 workers: 0..75 and 75..150, sharing word 1.
    let name = inst("changed");
    let t = SlotTable::create_or_attach(&name, params(40000, 40599, 2)).unwrap();
    assert_eq!(t.capacity(), 150);
    assert_eq!(t.slots_of_worker(1), 75..150);
    let cfg = SlotConfig::default();
    let mut ids = Vec::new();
    while ids.len() < 150 {
        ids.push(t.reserve().unwrap());
    }
    for id in [3, 70, 80, 149] {
        t.publish(id, &cfg).unwrap();
    }
    t.release(74).unwrap();
    // Worker 1 takes its bits of the shared word, not worker 0's.
    let w1_mask = !((1u64 << (75 - 64)) - 1);
    assert_eq!(t.take_changed(1, w1_mask), 1 << (80 - 64));
    assert_eq!(t.take_changed(2, u64::MAX), 1 << (149 - 128));
    assert_eq!(t.take_changed(0, u64::MAX), 1 << 3);
    assert_eq!(t.take_changed(1, !w1_mask), 1 << (70 - 64) | 1 << (74 - 64));
    // Taken once; a word past the bitmap is empty.
    assert_eq!(t.take_changed(1, u64::MAX), 0);
    assert_eq!(t.take_changed(3, u64::MAX), 0);
    t.mark_changed(5);
    assert_eq!(t.take_changed(0, u64::MAX), 1 << 5);
    t.unlink().unwrap();
}

#[test]
fn reserve_publish_release_cycle() {
    let name = inst("cycle");
    let t = SlotTable::create_or_attach(&name, params(40000, 40015, 2)).unwrap();
    assert_eq!(t.capacity(), 4);
    assert_eq!(t.worker_of(0), 0);
    assert_eq!(t.worker_of(3), 1);
    assert_eq!(t.slots_of_worker(0), 0..2);
    assert_eq!(t.slots_of_worker(1), 2..4);
    let ids: Vec<u32> = (0..4).map(|_| t.reserve().unwrap()).collect();
    assert!(matches!(t.reserve(), Err(TableError::Full)));
    let id = ids[0];
    let bell = t.doorbell(t.worker_of(id));
    let mut cfg = SlotConfig::default();
    cfg.legs[0].peer = Some("127.0.0.1:5000".parse().unwrap());
    // A play request travels with the configuration (beside the secure
    // words), on the leg it is for.
    let mut events = [0u8; crate::table::MAX_PLAY_EVENTS];
    events[..2].copy_from_slice(&[4, 2]);
    cfg.legs[1].play = Some(crate::table::DtmfPlay {
        id: 3,
        events,
        count: 2,
        duration_ms: 100,
        pause_ms: 50,
        volume: 8,
    });
    // And the media services, in their own block.
    cfg.legs[0].media = LegMedia {
        record: true,
        record_id: 9,
        play: Some(crate::table::MediaPlay {
            id: 1,
            repeat: 2,
            file: 77,
        }),
        ..LegMedia::default()
    };
    t.publish(id, &cfg).unwrap();
    assert_eq!(t.state(id), SlotState::Active);
    assert_ne!(t.doorbell(t.worker_of(id)), bell);
    assert_eq!(t.read_config(id).unwrap().0, cfg);
    t.release(id).unwrap();
    assert!(t.release(id).is_err());
    assert!(t.publish(id, &cfg).is_err());
    t.finish_drain(id).unwrap();
    assert_eq!(t.state(id), SlotState::Free);
    assert_eq!(
        t.ports(1, 1),
        LegPorts {
            rtp: 40006,
            rtcp: 40007
        }
    );
    assert_eq!(t.slot_of_port(40007), Some((1, 1)));
    assert_eq!(t.slot_of_port(40016), None);
    t.unlink().unwrap();
}

#[test]
fn reattach_keeps_active_slots_and_refuses_other_versions() {
    let name = inst("reattach");
    let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
    let id = t.reserve().unwrap();
    t.publish(
        id,
        &SlotConfig {
            tag: 7,
            ..Default::default()
        },
    )
    .unwrap();
    t.counters(id, 1).unwrap().count_rx(100, 1);
    drop(t);
    let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
    assert_eq!(t.state(id), SlotState::Active);
    assert_eq!(t.read_config(id).unwrap().0.tag, 7);
    assert_eq!(t.stats(id, 1).unwrap().rx_bytes, 100);
    // Other parameters while a slot is active: refused.
    assert!(matches!(
        SlotTable::create_or_attach(&name, params(41000, 41199, 1)),
        Err(TableError::InUseWithOtherLayout(_))
    ));
    t.header()
        .version
        .store(LAYOUT_VERSION + 1, Ordering::Relaxed);
    assert!(matches!(
        SlotTable::open(&name),
        Err(TableError::VersionMismatch { .. })
    ));
    // Another layout whose dataplane runs (this process): refused.
    t.set_dataplane_pid(std::process::id());
    assert!(matches!(
        SlotTable::create_or_attach(&name, params(41000, 41099, 1)),
        Err(TableError::VersionMismatch { .. })
    ));
    // Whose dataplane is gone (no PID recorded): replaced.
    t.set_dataplane_pid(0);
    drop(t);
    let t = SlotTable::create_or_attach(&name, params(41000, 41099, 1)).unwrap();
    assert_eq!(t.state(id), SlotState::Free);
    t.unlink().unwrap();
}

#[test]
fn open_refuses_garbage() {
    let name = inst("garbage");
    std::fs::write(table_path(&name), vec![0u8; SLOTS_OFFSET + 10]).unwrap();
    assert!(matches!(
        SlotTable::open(&name),
        Err(TableError::NotATable(_))
    ));
    std::fs::remove_file(table_path(&name)).unwrap();
    assert!(matches!(SlotTable::open(&name), Err(TableError::Io(..))));
    assert!(SlotTable::open("../etc").is_err());
}

/// A writer keeps publishing configs whose every field derives from one
/// counter; readers must never see a mix of two configs.
#[test]
fn seqlock_reader_never_sees_torn_slot() {
    let name = inst("seqlock");
    let t = Arc::new(SlotTable::create_or_attach(&name, params(42000, 42003, 1)).unwrap());
    let id = t.reserve().unwrap();
    let make = |n: u32| {
        let mut c = SlotConfig {
            tag: u64::from(n),
            ..Default::default()
        };
        for (leg, l) in c.legs.iter_mut().enumerate() {
            l.peer = Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(n)),
                (n as u16).wrapping_add(leg as u16),
            ));
            l.out_ssrc = n;
            l.payload_types = u128::from(n) | u128::from(n) << 96;
            l.jitter.target_ms = n as u16;
            l.direction = Direction::from_u8((n % 4) as u8);
        }
        c
    };
    t.publish(id, &make(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1u32;
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                t.publish(id, &make(n)).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut reads = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(700);
    while std::time::Instant::now() < deadline && reads < 5_000_000 {
        let (c, _) = t.read_config(id).unwrap();
        let n = c.tag as u32;
        assert_eq!(c, make(n), "torn read at {n}");
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 1 && reads > 1);
    t.unlink().unwrap();
}

#[test]
fn reserve_takes_only_bound_slots_once_a_dataplane_started() {
    let name = inst("bound");
    let t = SlotTable::create_or_attach(&name, params(46000, 46015, 1)).unwrap();
    assert_eq!(t.capacity(), 4);
    // No dataplane yet: any free slot, no miss.
    let a = t.reserve_for(Owner::Ng).unwrap();
    assert_eq!(t.owner(a), Owner::Ng);
    t.release(a).unwrap();
    t.finish_drain(a).unwrap();
    assert_eq!(t.port_misses(), 0);

    let e = t.begin_epoch();
    assert_eq!(t.epoch(), e);
    // Nothing stamped: every free slot is a miss, and the answer is Full.
    assert!(matches!(t.reserve(), Err(TableError::Full)));
    assert_eq!(t.port_misses(), 4);
    // Only slot 2 is bound: it is the one handed out, every time.
    t.set_bound(2, e);
    assert!(t.is_bound(2) && !t.is_bound(1));
    let id = t.reserve_for(Owner::Sip).unwrap();
    assert_eq!((id, t.owner(id)), (2, Owner::Sip));
    // The search met 0..=3 unbound slots before slot 2.
    let m = t.port_misses();
    assert!((4..=7).contains(&m), "{m}");
    assert!(matches!(t.reserve(), Err(TableError::Full)));
    assert_eq!(t.port_misses(), m + 3);
    t.release(id).unwrap();
    t.finish_drain(id).unwrap();
    assert_eq!(t.reserve().unwrap(), 2);
    t.release(2).unwrap();
    t.finish_drain(2).unwrap();
    // A new epoch (the dataplane stopped or restarted) voids the stamps.
    t.begin_epoch();
    assert!(!t.is_bound(2));
    assert!(matches!(t.reserve(), Err(TableError::Full)));
    // Reclaim counter.
    t.count_reclaimed(3);
    assert_eq!(t.reclaimed(), 3);
    t.set_worker_unbound(0, 2);
    assert_eq!(t.worker_unbound(0), 2);
    t.unlink().unwrap();
}

#[test]
fn security_is_published_with_the_config_and_dtls_keys_die_with_the_call() {
    let name = inst("secure");
    let t = SlotTable::create_or_attach(&name, params(31000, 31099, 1)).unwrap();
    let id = t.reserve().unwrap();
    let mut cfg = SlotConfig::default();
    cfg.legs[1].secure = LegSecurity {
        rx: SrtpKeying::new(4, &[1u8; 28]),
        tx: SrtpKeying::new(4, &[2u8; 28]),
        ice: Some(IceParams {
            local_ufrag: IceToken::new("ufrag123").unwrap(),
            local_pwd: IceToken::new("pwd4567890123456789012ab").unwrap(),
            remote_ufrag: None,
        }),
        dtls: None,
    };
    t.publish(id, &cfg).unwrap();
    let (back, _) = t.read_config(id).unwrap();
    assert_eq!(back, cfg);
    assert!(back.legs[0].secure.is_plain());

    assert_eq!(t.dtls_keying(id, 0), None);
    let keys = (
        SrtpKeying::new(1, &[3u8; 30]).unwrap(),
        SrtpKeying::new(1, &[4u8; 30]).unwrap(),
    );
    t.set_dtls_keying(id, 0, Some(keys)).unwrap();
    assert_eq!(t.dtls_fingerprint(), None);
    t.set_dtls_fingerprint(&[0xcd; 32]);
    assert_eq!(t.dtls_fingerprint(), Some([0xcd; 32]));
    assert_eq!(t.dtls_keying(id, 0), Some(keys));
    assert_eq!(t.dtls_keying(id, 1), None);

    let c = t.counters(id, 1).unwrap();
    let st = SrtpStreamState {
        ssrc: 0x1234_5678,
        roc: 7,
        seq: 65_000,
        srtcp_index: 0x7fff_fffe,
    };
    c.set_srtp_state(SrtpDirection::Tx, st);
    assert_eq!(c.srtp_state(SrtpDirection::Tx), Some(st));
    assert_eq!(c.srtp_state(SrtpDirection::Rx), None);

    t.release(id).unwrap();
    t.finish_drain(id).unwrap();
    assert_eq!(t.dtls_keying(id, 0), None, "a freed slot keeps no keys");
    assert_eq!(
        t.counters(id, 1).unwrap().srtp_state(SrtpDirection::Tx),
        None
    );
    let _ = std::fs::remove_file(format!("/dev/shm/tern-{name}"));
}
