//! The transcoder end to end over RTP bytes: PCMU→PCMA, G.711→Opus→G.711
//! and G.722→PCMA of a 1 kHz + 440 Hz tone, a ptime change, loss
//! concealment (PLC and Opus FEC), silence gaps, telephone-event across
//! clock rates, and typed errors for bad input.

use tern_codec::dtmf::TelephoneEvent;
use tern_codec::g711;
use tern_codec::g722::{G722Decoder, G722Encoder};
use tern_codec::opus::{OpusDecoder, OpusEncoder, OpusFmtp, MAX_FRAME, MAX_PACKET};
use tern_codec::packets::OutPackets;
use tern_codec::transcode::{Config, ConfigError, TranscodeError, Transcoder};
use tern_codec::Codec;
use tern_shared::rtp::RtpPacket;

const SSRC_OUT: u32 = 0x1234_5678;

fn tone(rate: u32, n: usize, parts: &[(f64, f64)]) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            parts
                .iter()
                .map(|&(hz, a)| a * (2.0 * std::f64::consts::PI * hz * t).sin())
                .sum::<f64>() as i16
        })
        .collect()
}

const TWO_TONE: &[(f64, f64)] = &[(1000.0, 8000.0), (440.0, 6000.0)];

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, (u8::from(marker) << 7) | pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn cfg(inputs: Vec<(u8, Codec)>, output: Codec, pt: u8, ptime: u32) -> Config {
    Config {
        inputs,
        input_dtmf: None,
        output,
        output_pt: pt,
        output_ptime_ms: ptime,
        output_dtmf: None,
        opus_fmtp: OpusFmtp::default(),
        ssrc: SSRC_OUT,
        first_seq: 65530,
        first_ts: 0xFFFF_FF00,
    }
}

/// Input packets of `pcm` (at the codec's rate) in `ms` ms frames.
fn packetize(codec: Codec, pt: u8, pcm: &[i16], ms: usize, fmtp: &OpusFmtp) -> Vec<Vec<u8>> {
    let n = codec.sample_rate() as usize * ms / 1000;
    let ticks = (codec.rtp_clock() as usize * ms / 1000) as u32;
    let mut g722 = G722Encoder::new().unwrap();
    let mut opus = OpusEncoder::new(fmtp).unwrap();
    pcm.chunks_exact(n)
        .enumerate()
        .map(|(i, f)| {
            let mut buf = [0u8; MAX_PACKET];
            let len = match codec {
                Codec::Pcmu => g711::ulaw_encode(f, &mut buf),
                Codec::Pcma => g711::alaw_encode(f, &mut buf),
                Codec::G722 => g722.encode(f, &mut buf),
                Codec::Opus { .. } => opus.encode(f, &mut buf).unwrap(),
            };
            rtp(
                pt,
                1000 + i as u16,
                5000 + ticks * i as u32,
                0xAAAA,
                i == 0,
                &buf[..len],
            )
        })
        .collect()
}

/// Runs every packet through `t`, returning each output packet's bytes.
fn run(t: &mut Transcoder, input: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = OutPackets::with_capacity(8, 8 * 1500);
    let mut all = Vec::new();
    for p in input {
        out.clear();
        t.push(p, &mut out).unwrap();
        all.extend(out.iter().map(<[u8]>::to_vec));
    }
    all
}

/// Decodes output packets of `codec` to linear PCM at its rate.
fn decode(codec: Codec, packets: &[Vec<u8>]) -> Vec<i16> {
    let mut g722 = G722Decoder::new().unwrap();
    let mut opus = OpusDecoder::new(1).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; MAX_FRAME];
    for p in packets {
        let r = RtpPacket::new_checked(p.as_slice()).unwrap();
        let pl = r.payload();
        let n = match codec {
            Codec::Pcmu => g711::ulaw_decode_into(pl, &mut buf),
            Codec::Pcma => g711::alaw_decode_into(pl, &mut buf),
            Codec::G722 => g722.decode(pl, &mut buf),
            Codec::Opus { .. } => opus.decode(pl, &mut buf).unwrap(),
        };
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

/// Best normalised cross-correlation of `got` against `want` over lags
/// 0..max_lag (got later), skipping `skip` samples of start-up; with the lag.
fn best_corr(want: &[i16], got: &[i16], skip: usize, max_lag: usize) -> (f64, usize) {
    let mut best = (f64::MIN, 0);
    for lag in 0..max_lag {
        let n = want.len().min(got.len().saturating_sub(lag));
        if n <= skip + 100 {
            break;
        }
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for i in skip..n {
            let (x, y) = (f64::from(want[i]), f64::from(got[i + lag]));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        let c = ab / (aa * bb).sqrt().max(1.0);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

fn header(p: &[u8]) -> (bool, u8, u16, u32, u32) {
    let r = RtpPacket::new_checked(p).unwrap();
    (
        r.marker(),
        r.payload_type(),
        r.sequence_number(),
        r.timestamp(),
        r.ssrc(),
    )
}

/// Output sequence numbers +1, timestamps +ticks, own SSRC, M first only.
fn assert_rtp_rules(out: &[Vec<u8>], pt: u8, ticks: u32) {
    for (i, p) in out.iter().enumerate() {
        let (m, ppt, seq, ts, ssrc) = header(p);
        assert_eq!(ppt, pt);
        assert_eq!(ssrc, SSRC_OUT);
        assert_eq!(seq, 65530u16.wrapping_add(i as u16), "packet {i}");
        assert_eq!(
            ts,
            0xFFFF_FF00u32.wrapping_add(ticks * i as u32),
            "packet {i}"
        );
        assert_eq!(m, i == 0, "marker of packet {i}");
    }
}

#[test]
fn pcmu_to_pcma_keeps_the_tone_and_writes_its_own_header() {
    let pcm = tone(8000, 8000, TWO_TONE);
    let input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, 20)).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 50);
    assert_rtp_rules(&out, 8, 160);
    let got = decode(Codec::Pcma, &out);
    let (c, lag) = best_corr(&pcm, &got, 0, 10);
    eprintln!("PCMU→PCMA: corr {c:.4} at lag {lag}");
    assert!(c >= 0.99 && lag == 0, "corr {c} at lag {lag}");
    assert_eq!(t.stats().packets_in, 50);
    assert_eq!(t.stats().packets_out, 50);
}

#[test]
fn g711_to_opus_and_back_keeps_the_tone() {
    let pcm = tone(8000, 16000, TWO_TONE);
    let input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    let opus = Codec::Opus { stereo: false };
    let mut a = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], opus, 111, 20)).unwrap();
    let mid = run(&mut a, &input);
    assert_rtp_rules(&mid, 111, 960);
    // 2 s in, 2 s out: the resampler delays the signal, not the count.
    assert_eq!(mid.len(), 100);
    let mut b = Transcoder::new(&cfg(vec![(111, opus)], Codec::Pcmu, 0, 20)).unwrap();
    let back = run(&mut b, &mid);
    let got = decode(Codec::Pcmu, &back);
    // Two resamplers (5 ms each) and Opus's look-ahead: tens of ms.
    let (c, lag) = best_corr(&pcm, &got, 800, 800);
    eprintln!("PCMU→Opus→PCMU: corr {c:.4} at lag {lag} samples (8 kHz)");
    assert!(c >= 0.95, "PCMU→Opus→PCMU corr {c} at lag {lag}");
    // The Opus leg on its own, at 48 kHz.
    let want48 = tone(48000, 96000, TWO_TONE);
    let got48 = decode(opus, &mid);
    let (c48, lag48) = best_corr(&want48, &got48, 4800, 2400);
    eprintln!("PCMU→Opus: corr {c48:.4} at lag {lag48} samples (48 kHz)");
    assert!(c48 >= 0.95, "PCMU→Opus corr {c48} at lag {lag48}");
}

#[test]
fn g722_to_pcma_resamples_16_to_8_khz() {
    let pcm16 = tone(16000, 16000, TWO_TONE);
    let input = packetize(Codec::G722, 9, &pcm16, 20, &OpusFmtp::default());
    let mut t = Transcoder::new(&cfg(vec![(9, Codec::G722)], Codec::Pcma, 8, 20)).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 50);
    assert_rtp_rules(&out, 8, 160);
    let got = decode(Codec::Pcma, &out);
    let (c, lag) = best_corr(&tone(8000, 8000, TWO_TONE), &got, 400, 200);
    eprintln!("G.722→PCMA: corr {c:.4} at lag {lag}");
    assert!(c >= 0.98, "G.722→PCMA corr {c} at lag {lag}");
}

#[test]
fn a_ptime_change_repacketizes_and_keeps_the_audio() {
    let pcm = tone(8000, 8000, TWO_TONE);
    let input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    for (ptime, packets) in [(30u32, 33usize), (40, 25), (10, 100)] {
        let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, ptime)).unwrap();
        assert_eq!(t.frame_samples(), 8 * ptime as usize);
        let out = run(&mut t, &input);
        assert_eq!(out.len(), packets, "ptime {ptime}");
        assert_rtp_rules(&out, 8, 8 * ptime);
        for p in &out {
            assert_eq!(p.len(), 12 + 8 * ptime as usize);
        }
        let (c, _) = best_corr(&pcm, &decode(Codec::Pcma, &out), 0, 1);
        assert!(c >= 0.99, "ptime {ptime}: corr {c}");
    }
    // Opus 20 ms in, 40 ms out.
    let opus = Codec::Opus { stereo: false };
    let mut a = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], opus, 96, 40)).unwrap();
    let out = run(&mut a, &input);
    assert_eq!(out.len(), 25);
    assert_rtp_rules(&out, 96, 1920);
    let dec = OpusDecoder::new(1).unwrap();
    let r = RtpPacket::new_checked(out[3].as_slice()).unwrap();
    assert_eq!(dec.samples_in(r.payload()).unwrap(), 1920);
}

#[test]
fn a_lost_g711_packet_is_concealed_and_the_timeline_continues() {
    let pcm = tone(8000, 8000, &[(500.0, 10000.0)]);
    let mut input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    input.remove(20);
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, 20)).unwrap();
    let out = run(&mut t, &input);
    // All 50 frames come out: 49 decoded and one concealed.
    assert_eq!(out.len(), 50);
    assert_rtp_rules(&out, 8, 160);
    assert_eq!(t.stats().concealed, 1);
    let got = decode(Codec::Pcma, &out);
    let lost = &got[20 * 160..21 * 160];
    let want = &pcm[20 * 160..21 * 160];
    let sig: f64 = want.iter().map(|&s| f64::from(s).powi(2)).sum();
    let err: f64 = lost
        .iter()
        .zip(want)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    eprintln!("G.711 PLC: error/signal energy {:.3}", err / sig);
    // Much closer than the silence a relay without PLC would play.
    assert!(err < 0.25 * sig, "concealment error {err} vs signal {sig}");
}

#[test]
fn a_lost_opus_packet_is_recovered_from_in_band_fec() {
    let pcm = tone(48000, 48000, TWO_TONE);
    let fmtp = OpusFmtp::parse("useinbandfec=1");
    let opus = Codec::Opus { stereo: false };
    let mut input = packetize(opus, 111, &pcm, 20, &fmtp);
    input.remove(25);
    let mut t = Transcoder::new(&cfg(vec![(111, opus)], Codec::Pcmu, 0, 20)).unwrap();
    let out = run(&mut t, &input);
    assert_eq!(t.stats().concealed, 1);
    assert_eq!(t.stats().fec_recovered, 1);
    // 49 decoded and 1 recovered.
    assert_eq!(out.len(), 50);
    assert_rtp_rules(&out, 0, 160);
    let (c, lag) = best_corr(
        &tone(8000, 8000, TWO_TONE),
        &decode(Codec::Pcmu, &out),
        400,
        400,
    );
    eprintln!("Opus with one loss (FEC)→PCMU: corr {c:.4} at lag {lag}");
    assert!(c >= 0.9, "corr {c} at lag {lag}");
}

#[test]
fn a_silence_gap_moves_the_output_timestamp_and_sets_the_marker() {
    let pcm = tone(8000, 8000, TWO_TONE);
    let mut input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    // Packets 10.. come 1 s (8000 ticks) later, with no sequence gap.
    for p in &mut input[10..] {
        let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) + 8000;
        p[4..8].copy_from_slice(&ts.to_be_bytes());
    }
    let opus = Codec::Opus { stereo: false };
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], opus, 111, 20)).unwrap();
    let out = run(&mut t, &input);
    let hs: Vec<_> = out.iter().map(|p| header(p)).collect();
    // Sequence numbers stay contiguous.
    for w in hs.windows(2) {
        assert_eq!(w[1].2, w[0].2.wrapping_add(1));
    }
    // Exactly one jump: 48000 ticks more than a frame, M on the packet after.
    let jumps: Vec<_> = hs
        .windows(2)
        .filter(|w| w[1].3.wrapping_sub(w[0].3) != 960)
        .collect();
    assert_eq!(jumps.len(), 1, "{hs:?}");
    assert_eq!(jumps[0][1].3.wrapping_sub(jumps[0][0].3), 960 + 48000);
    assert!(jumps[0][1].0);
    assert_eq!(hs.iter().filter(|h| h.0).count(), 2);
}

#[test]
fn telephone_events_pass_through_rescaled_to_48_khz() {
    let pcm = tone(8000, 1600, TWO_TONE);
    let mut input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    // An event starting at the 5th packet's timestamp, three updates, the
    // last with E (sent three times, RFC 4733 §2.5.1.4), interleaved.
    let ev_ts = 5000 + 4 * 160;
    let seq0 = 1000 + input.len() as u16;
    for (k, dur) in [(0u16, 160u16), (1, 320), (2, 480), (3, 480), (4, 480)] {
        let e = TelephoneEvent {
            event: 7,
            end: k >= 2,
            volume: 10,
            duration: dur,
        };
        let mut pl = [0u8; 4];
        e.write(&mut pl);
        input.push(rtp(101, seq0 + k, ev_ts, 0xAAAA, k == 0, &pl));
    }
    let opus = Codec::Opus { stereo: false };
    let mut c = cfg(vec![(0, Codec::Pcmu)], opus, 111, 20);
    c.input_dtmf = Some(101);
    c.output_dtmf = Some(110);
    let mut t = Transcoder::new(&c).unwrap();
    let out = run(&mut t, &input);
    let events: Vec<_> = out.iter().filter(|p| header(p).1 == 110).collect();
    assert_eq!(events.len(), 5);
    let audio: Vec<_> = out.iter().filter(|p| header(p).1 == 111).collect();
    // The event started where audio packet 4 (0-based) would start in the
    // output clock: first_ts + 4 × 960.
    let want_ts = 0xFFFF_FF00u32.wrapping_add(4 * 960);
    for (k, p) in events.iter().enumerate() {
        let (m, _, _, ts, ssrc) = header(p);
        assert_eq!(ts, want_ts, "event packet {k}");
        assert_eq!(ssrc, SSRC_OUT);
        assert_eq!(m, k == 0);
        let r = RtpPacket::new_checked(p.as_slice()).unwrap();
        let e = TelephoneEvent::parse(r.payload()).unwrap();
        assert_eq!(e.event, 7);
        assert_eq!(e.volume, 10);
        assert_eq!(e.end, k >= 2);
        assert_eq!(e.duration, [960, 1920, 2880, 2880, 2880][k]);
    }
    // Events share the audio's sequence space: all numbers distinct, in order.
    let seqs: Vec<u16> = out.iter().map(|p| header(p).2).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1));
    }
    assert!(audio.len() >= 9);
    // Without an output PT, events are dropped and counted; without an
    // input PT they are an unknown payload type.
    let mut c = cfg(vec![(0, Codec::Pcmu)], opus, 111, 20);
    c.input_dtmf = Some(101);
    let mut t = Transcoder::new(&c).unwrap();
    let mut out = OutPackets::with_capacity(4, 6000);
    t.push(&input[10], &mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(t.stats().dtmf_dropped, 1);
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], opus, 111, 20)).unwrap();
    assert_eq!(
        t.push(&input[10], &mut out),
        Err(TranscodeError::UnknownPayloadType(101))
    );
}

#[test]
fn bad_input_gets_a_typed_error_and_late_packets_are_dropped() {
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, 20)).unwrap();
    let mut out = OutPackets::with_capacity(1, 400);
    assert!(matches!(
        t.push(&[0x80, 0], &mut out),
        Err(TranscodeError::Rtp(_))
    ));
    assert!(matches!(
        t.push(&[0x40; 20], &mut out),
        Err(TranscodeError::Rtp(_))
    ));
    assert_eq!(
        t.push(&rtp(18, 1, 0, 1, false, &[0; 10]), &mut out),
        Err(TranscodeError::UnknownPayloadType(18))
    );
    assert_eq!(
        t.push(&rtp(0, 1, 0, 1, false, &[0; 961]), &mut out),
        Err(TranscodeError::PayloadTooLong(961))
    );
    // 40 ms in, 20 ms out, room for one packet: the second does not fit.
    assert_eq!(
        t.push(&rtp(0, 1, 0, 1, false, &[0xFF; 320]), &mut out),
        Err(TranscodeError::OutputFull)
    );
    assert_eq!(out.len(), 1);
    out.clear();
    // A duplicate and an older packet are dropped quietly.
    t.push(&rtp(0, 2, 320, 1, false, &[0xFF; 160]), &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    t.push(&rtp(0, 2, 320, 1, false, &[0xFF; 160]), &mut out)
        .unwrap();
    t.push(&rtp(0, 0, 0, 1, false, &[0xFF; 160]), &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(t.stats().late, 2);
    // Far behind (a sequence restart, RFC 3550 §A.1): taken, not dropped.
    out.clear();
    t.push(
        &rtp(0, 2u16.wrapping_sub(500), 480, 1, false, &[0xFF; 160]),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert!(header(out.get(0).unwrap()).0);
    assert_eq!(t.stats().resyncs, 1);
    out.clear();
    // A new SSRC restarts the input side; the output keeps its own SSRC
    // and sequence.
    out.clear();
    t.push(&rtp(0, 9000, 777_777, 2, false, &[0xFF; 160]), &mut out)
        .unwrap();
    let (m, _, seq, _, ssrc) = header(out.get(0).unwrap());
    assert!(m);
    assert_eq!(ssrc, SSRC_OUT);
    // (The frame that did not fit used no sequence number.)
    assert_eq!(seq, 65530u16.wrapping_add(3));
    assert_eq!(t.stats().resyncs, 2);
}

#[test]
fn bad_configurations_are_refused() {
    let opus = Codec::Opus { stereo: false };
    let bad = |c: Config| Transcoder::new(&c).err();
    assert_eq!(
        bad(cfg(vec![], Codec::Pcma, 8, 20)),
        Some(ConfigError::NoInputs)
    );
    assert_eq!(
        bad(cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, 25)),
        Some(ConfigError::BadPtime(25))
    );
    assert_eq!(
        bad(cfg(vec![(0, Codec::Pcmu)], opus, 96, 30)),
        Some(ConfigError::BadPtime(30))
    );
    assert_eq!(
        bad(cfg(
            vec![(0, Codec::Pcmu), (0, Codec::Pcma)],
            Codec::Pcma,
            8,
            20
        )),
        Some(ConfigError::BadPayloadType(0))
    );
    assert_eq!(
        bad(cfg(vec![(200, Codec::Pcmu)], Codec::Pcma, 8, 20)),
        Some(ConfigError::BadPayloadType(200))
    );
    let mut c = cfg(vec![(0, Codec::Pcmu)], Codec::Pcma, 8, 20);
    c.output_dtmf = Some(8);
    assert_eq!(bad(c), Some(ConfigError::BadPayloadType(8)));
    // Stereo Opus in, mono PCMA out.
    let mut t = Transcoder::new(&cfg(
        vec![(111, Codec::Opus { stereo: true })],
        Codec::Pcma,
        8,
        20,
    ))
    .unwrap();
    let input = packetize(
        opus,
        111,
        &tone(48000, 9600, TWO_TONE),
        20,
        &OpusFmtp::default(),
    );
    assert_eq!(run(&mut t, &input).len(), 10);
}

#[test]
fn opus_dtx_leaves_silence_unsent_and_marks_the_next_talkspurt() {
    let mut pcm = tone(8000, 8000, TWO_TONE);
    // 0.2 s of tone, 0.6 s of silence, 0.2 s of tone.
    pcm[1600..6400].fill(0);
    let input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    let opus = Codec::Opus { stereo: false };
    let mut c = cfg(vec![(0, Codec::Pcmu)], opus, 111, 20);
    c.opus_fmtp = OpusFmtp::parse("usedtx=1");
    let mut t = Transcoder::new(&c).unwrap();
    let out = run(&mut t, &input);
    let s = t.stats();
    assert!(s.dtx_skipped >= 10, "{s:?}");
    assert_eq!(s.packets_out, out.len() as u64);
    assert_eq!(s.packets_out + s.dtx_skipped, 50);
    // Sequence numbers stay contiguous; the timestamp jumps over the
    // skipped frames, and the packet after a skip has M.
    for w in out.windows(2) {
        let (a, b) = (header(&w[0]), header(&w[1]));
        assert_eq!(b.2, a.2.wrapping_add(1));
        let dt = b.3.wrapping_sub(a.3);
        assert!(dt % 960 == 0 && dt >= 960);
        assert_eq!(b.0, dt > 960, "marker after a gap of {dt}");
    }
}

#[test]
fn pcmu_to_g722_uses_the_8000_rtp_clock() {
    let pcm = tone(8000, 8000, TWO_TONE);
    let input = packetize(Codec::Pcmu, 0, &pcm, 20, &OpusFmtp::default());
    let mut t = Transcoder::new(&cfg(vec![(0, Codec::Pcmu)], Codec::G722, 9, 20)).unwrap();
    assert_eq!(t.frame_samples(), 320);
    let out = run(&mut t, &input);
    assert_eq!(out.len(), 50);
    // 20 ms = 160 ticks and 160 bytes, although 320 samples (RFC 3551 §4.5.2).
    assert_rtp_rules(&out, 9, 160);
    assert!(out.iter().all(|p| p.len() == 12 + 160));
    let (c, lag) = best_corr(
        &tone(16000, 16000, TWO_TONE),
        &decode(Codec::G722, &out),
        800,
        400,
    );
    assert!(c >= 0.98, "PCMU→G.722 corr {c} at lag {lag}");
}

#[test]
fn a_change_of_input_codec_restarts_the_timeline_without_an_output_jump() {
    let opus = Codec::Opus { stereo: false };
    let mut t = Transcoder::new(&cfg(
        vec![(0, Codec::Pcmu), (111, opus)],
        Codec::Pcma,
        8,
        20,
    ))
    .unwrap();
    let mut input = packetize(
        Codec::Pcmu,
        0,
        &tone(8000, 1600, TWO_TONE),
        20,
        &OpusFmtp::default(),
    );
    // Then Opus from the same source, its own sequence and 48 kHz clock.
    let tail = packetize(
        opus,
        111,
        &tone(48000, 9600, TWO_TONE),
        20,
        &OpusFmtp::default(),
    );
    input.extend(tail.into_iter().enumerate().map(|(k, mut p)| {
        p[2..4].copy_from_slice(&(2000 + k as u16).to_be_bytes());
        p
    }));
    let out = run(&mut t, &input);
    assert_eq!(t.stats().resyncs, 1);
    // 10 PCMU packets and 10 Opus ones, on one output timeline: the
    // output timestamp never steps back and the sequence never skips.
    assert_eq!(out.len(), 20);
    let hs: Vec<_> = out.iter().map(|p| header(p)).collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].2, w[0].2.wrapping_add(1));
        assert_eq!(w[1].3.wrapping_sub(w[0].3), 160);
    }
    // M again on the first packet after the switch.
    assert!(hs[0].0 && hs[10].0);
    assert_eq!(hs.iter().filter(|h| h.0).count(), 2);
}
