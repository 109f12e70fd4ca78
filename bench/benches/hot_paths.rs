//! Per-packet and per-message costs of tern's hot paths:
//! `cargo bench -p tern-bench` (one group: `cargo bench -p tern-bench -- rtp`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tern_dataplane::ssrc::{map_rtcp, SsrcRewriter};
use tern_ng::bencode::decode_dict;
use tern_shared::rtp::RtpPacket;
use tern_shared::table::{SlotConfig, SlotTable, TableParams};

fn rtp_packet(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut b = [0u8; 172];
    b[0] = 0x80;
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    b[8..12].copy_from_slice(&ssrc.to_be_bytes());
    b
}

fn rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    let pkt = rtp_packet(1, 0x1234_5678);
    g.bench_function("view_checked", |b| {
        b.iter(|| {
            let p = RtpPacket::new_checked(black_box(&pkt[..])).unwrap();
            black_box((
                p.sequence_number(),
                p.ssrc(),
                p.payload_type(),
                p.payload().len(),
            ))
        })
    });
    let mut buf = pkt;
    let mut rw = SsrcRewriter::new(0xCAFE_F00D);
    let mut seq = 0u16;
    g.bench_function("view_and_ssrc_rewrite", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            let mut p = RtpPacket::new_checked(black_box(&mut buf[..])).unwrap();
            rw.rewrite_rtp(&mut p);
            black_box(p.ssrc())
        })
    });
    g.finish();
}

/// SR with one report block, then SDES with one chunk (CNAME "tern").
fn rtcp_compound(sender: u32, about: u32) -> Vec<u8> {
    let mut v = vec![0x81, 200, 0, 12];
    v.extend(sender.to_be_bytes());
    v.extend([0u8; 20]); // NTP, RTP ts, counts
    v.extend(about.to_be_bytes());
    v.extend([0u8; 20]); // loss, jitter, LSR, DLSR
    v.extend([0x81, 202, 0, 3]);
    v.extend(sender.to_be_bytes());
    v.extend([1, 4, b't', b'e', b'r', b'n', 0, 0]);
    v
}

fn rtcp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtcp");
    g.throughput(Throughput::Elements(1));
    // Both directions have seen RTP, so both mappings apply.
    let (x_in, y_in) = (0x1111_1111, 0x2222_2222);
    let mut toward_y = SsrcRewriter::new(0xAAAA_AAAA);
    let mut toward_x = SsrcRewriter::new(0xBBBB_BBBB);
    let mut p = rtp_packet(1, x_in);
    toward_y.rewrite_rtp(&mut RtpPacket::new_checked(&mut p[..]).unwrap());
    let mut p = rtp_packet(1, y_in);
    toward_x.rewrite_rtp(&mut RtpPacket::new_checked(&mut p[..]).unwrap());
    let pkt = rtcp_compound(x_in, 0xBBBB_BBBB);
    g.bench_function("map_ssrcs_sr_sdes", |b| {
        b.iter_batched_ref(
            || pkt.clone(),
            |buf| {
                map_rtcp(buf, Some(&toward_y), Some(&toward_x)).unwrap();
                black_box(buf[4])
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn table(c: &mut Criterion) {
    let instance = format!("bench-{}", std::process::id());
    let t = SlotTable::create_or_attach(
        &instance,
        TableParams {
            port_lo: 40000,
            port_hi: 40000 + 4 * 1024 - 1,
            workers: 1,
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    )
    .expect("slot table in /dev/shm");
    let id = t.reserve().unwrap();
    t.publish(id, &SlotConfig::default()).unwrap();
    let mut g = c.benchmark_group("table");
    g.bench_function("read_config_seqlock", |b| {
        b.iter(|| black_box(t.read_config(black_box(id)).unwrap()))
    });
    g.bench_function("config_seq", |b| {
        b.iter(|| black_box(t.config_seq(black_box(id))))
    });
    // Port-pool allocation: reserve (random start, CAS), release, drain.
    g.bench_function("reserve_release_drain", |b| {
        b.iter(|| {
            let s = t.reserve().unwrap();
            t.release(s).unwrap();
            t.finish_drain(s).unwrap();
            black_box(s)
        })
    });
    // The same with the table 90% full: the random scan meets taken slots.
    let held: Vec<u32> = (0..t.capacity() * 9 / 10 - 1)
        .map(|_| t.reserve().unwrap())
        .collect();
    g.bench_function("reserve_release_drain_90pct_full", |b| {
        b.iter(|| {
            let s = t.reserve().unwrap();
            t.release(s).unwrap();
            t.finish_drain(s).unwrap();
            black_box(s)
        })
    });
    g.finish();
    for s in held.into_iter().chain([id]) {
        let _ = t.release(s);
        let _ = t.finish_drain(s);
    }
    let _ = t.unlink();
}

const OFFER: &str = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=tester\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 2000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn ng_offer() -> Vec<u8> {
    // Keys in Kamailio's order (unsorted), as the rtpengine module sends.
    let mut m = b"d3:sdp".to_vec();
    m.extend(format!("{}:{}", OFFER.len(), OFFER).as_bytes());
    m.extend(b"5:flagsl13:trust-addresse7:replacel6:origin18:session-connectione");
    m.extend(b"13:received-froml3:IP412:198.51.100.1e7:call-id24:a84b4c76e66710@pc33.test");
    m.extend(b"8:from-tag10:1928301774");
    m.extend(b"7:command5:offere");
    m
}

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n";

fn invite() -> Vec<u8> {
    let mut m = INVITE.as_bytes().to_vec();
    m.extend(format!("Content-Length: {}\r\n\r\n{}", OFFER.len(), OFFER).as_bytes());
    m
}

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("control");
    g.throughput(Throughput::Elements(1));
    let offer = ng_offer();
    assert!(decode_dict(&offer).is_ok());
    g.bench_function("bencode_decode_offer", |b| {
        b.iter(|| black_box(decode_dict(black_box(&offer)).unwrap().len()))
    });
    let inv = invite();
    assert!(tern_signaling::msg::parse(&inv).is_ok());
    g.bench_function("sip_parse_invite", |b| {
        b.iter(|| black_box(tern_signaling::msg::parse(black_box(&inv)).is_ok()))
    });
    g.finish();
}

/// What the worker adds per accepted RTP packet for RFC 3550 statistics
/// (header read + `RtpStats::on_rtp`), and per publish (every 100 ms per
/// slot with traffic: `quality()` + E-model MOS + `set_quality`).
fn quality(c: &mut Criterion) {
    use std::time::{Duration, Instant};
    use tern_dataplane::quality::mos::mos_g711;
    use tern_dataplane::quality::stats::RtpStats;
    let mut g = c.benchmark_group("quality");
    g.throughput(Throughput::Elements(1));
    let mut pkt = rtp_packet(1, 0x1234_5678);
    let mut stats = RtpStats::new();
    let t0 = Instant::now();
    let mut k = 0u32;
    g.bench_function("rtp_stats_on_rtp", |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            pkt[4..8].copy_from_slice(&(k * 160).to_be_bytes());
            let p = RtpPacket::new_checked(black_box(&pkt[..])).unwrap();
            let now = t0 + Duration::from_micros(u64::from(k) * 20_000 + u64::from(k % 7) * 300);
            black_box(stats.on_rtp(
                p.sequence_number(),
                p.timestamp(),
                p.ssrc(),
                8000,
                true,
                now,
            ))
        })
    });
    let t = SlotTable::create_or_attach(
        &format!("bench-q-{}", std::process::id()),
        TableParams {
            port_lo: 50000,
            port_hi: 50003,
            workers: 1,
            media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
    )
    .unwrap();
    let counters = t.counters(0, 0).unwrap();
    g.bench_function("publish_quality_with_mos", |b| {
        b.iter(|| {
            let mut q = stats.quality();
            let loss = q.lost.max(0) as f64 / q.expected.max(1) as f64;
            q.mos = Some(mos_g711(0.0, loss, q.jitter_ms));
            counters.set_quality(black_box(&q));
        })
    });
    g.finish();
    let _ = t.unlink();
}

criterion_group!(benches, rtp, rtcp, table, control, quality);
criterion_main!(benches);
