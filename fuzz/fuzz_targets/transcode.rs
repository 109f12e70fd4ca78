//! The RTP transcoder on arbitrary bytes: the first byte picks one of
//! four configurations (PCMU + telephone-event → Opus 20 ms, Opus (stereo)
//! → PCMA 30 ms, G.722 → PCMU 40 ms, PCMA → G.722 10 ms); the rest is a
//! sequence of packets, each a length byte then that many bytes (so
//! sequences of valid and broken RTP, losses and jumps all occur).
//! `Transcoder::push` must never panic, and every packet it writes is
//! RTP version 2 with the configured SSRC and one of the configured
//! payload types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_codec::opus::OpusFmtp;
use tern_codec::packets::OutPackets;
use tern_codec::transcode::{Config, Transcoder};
use tern_codec::Codec;
use tern_shared::rtp::RtpPacket;

const SSRC: u32 = 0x5EED_0001;

fn config(pick: u8) -> Config {
    let opus = Codec::Opus { stereo: false };
    let (inputs, output, pt, ptime) = match pick % 4 {
        0 => (vec![(0, Codec::Pcmu)], opus, 111, 20),
        1 => (vec![(96, Codec::Opus { stereo: true }), (0, Codec::Pcmu)], Codec::Pcma, 8, 30),
        2 => (vec![(9, Codec::G722)], Codec::Pcmu, 0, 40),
        _ => (vec![(8, Codec::Pcma), (111, opus)], Codec::G722, 9, 10),
    };
    Config {
        inputs,
        input_dtmf: Some(101),
        output,
        output_pt: pt,
        output_ptime_ms: ptime,
        output_dtmf: if pick & 4 == 0 { Some(110) } else { None },
        opus_fmtp: OpusFmtp::parse(if pick & 8 == 0 { "useinbandfec=1" } else { "usedtx=1" }),
        ssrc: SSRC,
        first_seq: 0xFFF0,
        first_ts: 0xFFFF_F000,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = config(pick);
    let Ok(mut t) = Transcoder::new(&cfg) else {
        panic!("configuration {pick} refused");
    };
    let mut out = OutPackets::with_capacity(16, 16 * 1500);
    // Bounded: each round consumes at least one byte.
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        out.clear();
        let _ = t.push(pkt, &mut out);
        for p in out.iter() {
            let r = RtpPacket::new_checked(p).expect("output is RTP");
            assert_eq!(r.ssrc(), SSRC);
            assert!(r.payload_type() == cfg.output_pt || Some(r.payload_type()) == cfg.output_dtmf);
        }
    }
});
