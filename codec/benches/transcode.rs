//! Cost of one 20 ms frame through the transcoder, per direction:
//! `cargo bench -p tern-codec --bench transcode`.
//!
//! Each iteration pushes one RTP packet (20 ms of a 1 kHz + 440 Hz tone)
//! and receives the output packet(s); sequence numbers and timestamps
//! advance as on a live stream, so no iteration looks like a loss.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tern_codec::g711;
use tern_codec::opus::{OpusEncoder, OpusFmtp, MAX_PACKET};
use tern_codec::packets::OutPackets;
use tern_codec::transcode::{Config, Transcoder};
use tern_codec::Codec;

const OPUS: Codec = Codec::Opus { stereo: false };

fn tone(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                + 6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect()
}

/// 50 payloads (1 s) of `codec`, 20 ms each.
fn payloads(codec: Codec) -> Vec<Vec<u8>> {
    let rate = codec.sample_rate();
    let pcm = tone(rate, rate as usize);
    let n = rate as usize / 50;
    let mut enc = OpusEncoder::new(&OpusFmtp::default()).unwrap();
    pcm.chunks_exact(n)
        .map(|f| {
            let mut b = [0u8; MAX_PACKET];
            let len = match codec {
                Codec::Pcmu => g711::ulaw_encode(f, &mut b),
                Codec::Pcma => g711::alaw_encode(f, &mut b),
                _ => enc.encode(f, &mut b).unwrap(),
            };
            b[..len].to_vec()
        })
        .collect()
}

fn bench_pair(c: &mut Criterion, name: &str, from: (u8, Codec), to: (u8, Codec)) {
    let mut t = Transcoder::new(&Config {
        inputs: vec![from],
        input_dtmf: None,
        output: to.1,
        output_pt: to.0,
        output_ptime_ms: 20,
        output_dtmf: None,
        opus_fmtp: OpusFmtp::default(),
        ssrc: 0x1234_5678,
        first_seq: 1,
        first_ts: 0,
    })
    .unwrap();
    let pl = payloads(from.1);
    let ticks = from.1.rtp_clock() / 50;
    let mut out = OutPackets::with_capacity(8, 8 * 1500);
    let mut pkt = Vec::with_capacity(1500);
    let mut i = 0u32;
    let mut g = c.benchmark_group("transcode");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter(|| {
            let p = &pl[i as usize % pl.len()];
            pkt.clear();
            pkt.extend_from_slice(&[0x80, from.0]);
            pkt.extend_from_slice(&(i as u16).to_be_bytes());
            pkt.extend_from_slice(&i.wrapping_mul(ticks).to_be_bytes());
            pkt.extend_from_slice(&0xAAAA_u32.to_be_bytes());
            pkt.extend_from_slice(p);
            i = i.wrapping_add(1);
            out.clear();
            t.push(black_box(&pkt), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn transcode(c: &mut Criterion) {
    bench_pair(c, "pcmu_to_pcma_20ms", (0, Codec::Pcmu), (8, Codec::Pcma));
    bench_pair(c, "pcma_to_pcmu_20ms", (8, Codec::Pcma), (0, Codec::Pcmu));
    bench_pair(c, "pcmu_to_opus_20ms", (0, Codec::Pcmu), (111, OPUS));
    bench_pair(c, "opus_to_pcmu_20ms", (111, OPUS), (0, Codec::Pcmu));
}

criterion_group!(benches, transcode);
criterion_main!(benches);
