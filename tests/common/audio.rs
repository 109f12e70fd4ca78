//! Test audio for the transcoding tests: a two-tone signal, G.711 and
//! Opus RTP streams of it sent from a socket, what a socket received
//! decoded back, and the correlation between the two.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_codec::g711;
use tern_codec::opus::{OpusDecoder, OpusEncoder, OpusFmtp, MAX_FRAME};

/// Packets sent each way (20 ms each).
pub const PACKETS: usize = 50;

/// A two-tone test signal (440 Hz and 1020 Hz) at `rate` Hz, `n` samples.
pub fn tone(n: usize, rate: f64) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let v = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * 1020.0 * t).sin();
            (v * 12000.0) as i16
        })
        .collect()
}

/// The best normalized cross-correlation of `got` with `sent` over lags
/// 0..`max_lag` samples (`got` late), over at least half of `sent`.
pub fn correlation(sent: &[i16], got: &[i16], max_lag: usize) -> f64 {
    let mut best: f64 = 0.0;
    for lag in 0..max_lag.min(got.len()) {
        let n = sent.len().min(got.len() - lag);
        if n < sent.len() / 2 {
            break;
        }
        let (a, b) = (&sent[..n], &got[lag..lag + n]);
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let ea: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
        let eb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum();
        if ea > 0.0 && eb > 0.0 {
            best = best.max(dot / (ea * eb).sqrt());
        }
    }
    best
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    Pcmu,
    Pcma,
    Opus,
}

impl Enc {
    pub fn rate(self) -> f64 {
        match self {
            Enc::Opus => 48000.0,
            _ => 8000.0,
        }
    }
    pub fn frame(self) -> usize {
        (self.rate() / 50.0) as usize
    }
}

pub fn sdp(port: u16, enc: Enc) -> String {
    let m = match enc {
        Enc::Pcmu => {
            "0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16"
        }
        Enc::Pcma => {
            "8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16"
        }
        Enc::Opus => "111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1",
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {m}\r\na=sendrecv\r\n"
    )
}

pub fn pt_of(enc: Enc) -> u8 {
    match enc {
        Enc::Pcmu => 0,
        Enc::Pcma => 8,
        Enc::Opus => 111,
    }
}

/// The codecs of the `m=audio` section of `sdp`: `pt name/rate` in `m=`
/// order.
pub fn codecs(sdp: &str) -> Vec<String> {
    let m = sdp.lines().find(|l| l.starts_with("m=audio")).unwrap_or("");
    m.split(' ')
        .skip(3)
        .map(|pt| {
            let map = sdp
                .lines()
                .find_map(|l| l.strip_prefix(&format!("a=rtpmap:{pt} ")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| match pt {
                    "0" => "PCMU/8000".into(),
                    "8" => "PCMA/8000".into(),
                    _ => "?".into(),
                });
            format!("{pt} {map}")
        })
        .collect()
}

/// Sends [`PACKETS`] 20 ms packets of `pcm` in `enc` from `from` to `to`
/// (paced 5 ms apart).
pub fn send(from: &UdpSocket, to: SocketAddr, enc: Enc, pcm: &[i16]) {
    let mut opus = (enc == Enc::Opus).then(|| OpusEncoder::new(&OpusFmtp::default()).unwrap());
    let f = enc.frame();
    for (k, frame) in pcm.chunks(f).take(PACKETS).enumerate() {
        let mut p = vec![0x80, pt_of(enc) | if k == 0 { 0x80 } else { 0 }];
        p.extend((k as u16 + 1000).to_be_bytes());
        p.extend((k as u32 * f as u32).to_be_bytes());
        p.extend(0x7e57_0001u32.to_be_bytes());
        let mut payload = vec![0u8; 1500];
        let n = match enc {
            Enc::Pcmu => g711::ulaw_encode(frame, &mut payload),
            Enc::Pcma => g711::alaw_encode(frame, &mut payload),
            Enc::Opus => opus.as_mut().unwrap().encode(frame, &mut payload).unwrap(),
        };
        p.extend(&payload[..n]);
        from.send_to(&p, to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What one side received: payload types seen, and the audio decoded in
/// sequence order as `enc`.
#[derive(Debug, Default)]
pub struct Received {
    pub pts: Vec<u8>,
    pub ssrcs: Vec<u32>,
    pub pcm: Vec<i16>,
    pub packets: usize,
}

pub fn receive(sock: &UdpSocket, enc: Enc, for_ms: u64) -> Received {
    let mut got: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut r = Received::default();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_millis(for_ms);
    while Instant::now() < end {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        if n < 12 {
            continue;
        }
        let pt = buf[1] & 0x7f;
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if !r.pts.contains(&pt) {
            r.pts.push(pt);
        }
        if !r.ssrcs.contains(&ssrc) {
            r.ssrcs.push(ssrc);
        }
        if pt == pt_of(enc) {
            got.push((u16::from_be_bytes([buf[2], buf[3]]), buf[12..n].to_vec()));
        }
    }
    r.packets = got.len();
    // Sequence order from the first (wrap-safe for one call's worth).
    if let Some(&(s0, _)) = got.first() {
        got.sort_by_key(|(s, _)| s.wrapping_sub(s0));
    }
    let mut dec = (enc == Enc::Opus).then(|| OpusDecoder::new(1).unwrap());
    for (_, p) in &got {
        let mut out = vec![0i16; MAX_FRAME];
        let n = match enc {
            Enc::Pcmu => g711::ulaw_decode_into(p, &mut out),
            Enc::Pcma => g711::alaw_decode_into(p, &mut out),
            Enc::Opus => dec.as_mut().unwrap().decode(p, &mut out).unwrap_or(0),
        };
        r.pcm.extend(&out[..n]);
    }
    r
}

/// A linear sweep from 300 to 1500 Hz over `secs` at `rate` Hz (a test
/// prompt that correlates with nothing but itself).
pub fn sweep(secs: f64, rate: u32) -> Vec<i16> {
    let n = (secs * f64::from(rate)) as usize;
    let (f0, f1) = (300.0, 1500.0);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let ph = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * secs));
            (ph.sin() * 8000.0) as i16
        })
        .collect()
}

/// Writes `s` as a mono 16-bit WAV of `rate` Hz (hound).
pub fn write_wav(path: &std::path::Path, rate: u32, s: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in s {
        w.write_sample(x).unwrap();
    }
    w.finalize().unwrap();
}
