//! Transcoding driven over ng (issue 14), against `tern relay` and
//! against rtpengine 10.5 (userspace `--table=-1`) with the same
//! commands: an offerer with one codec, `codec: {transcode: [X]}`, and an
//! answerer that takes only X. What each side receives must be in its
//! own codec and decode to what the other side sent (correlation ≥ 0.99
//! for G.711 ↔ G.711, ≥ 0.9 through Opus), from both relays; and the
//! codecs the two relays put into the SDPs must be the same.
//!
//! Ports: tern relay 19000-19099, rtpengine 19100-19199.

mod common;
use common::ng::{str_of, NgClient};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_codec::g711;
use tern_codec::opus::{OpusDecoder, OpusEncoder, OpusFmtp, MAX_FRAME};
use tern_ng::bencode::{bstr, str_list, Dict};

/// Packets sent each way (20 ms each).
const PACKETS: usize = 50;

/// A two-tone test signal (440 Hz and 1020 Hz) at `rate` Hz, `n` samples.
fn tone(n: usize, rate: f64) -> Vec<i16> {
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
fn correlation(sent: &[i16], got: &[i16], max_lag: usize) -> f64 {
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
enum Enc {
    Pcmu,
    Pcma,
    Opus,
}

impl Enc {
    fn rate(self) -> f64 {
        match self {
            Enc::Opus => 48000.0,
            _ => 8000.0,
        }
    }
    fn frame(self) -> usize {
        (self.rate() / 50.0) as usize
    }
}

fn sdp(port: u16, enc: Enc) -> String {
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

fn pt_of(enc: Enc) -> u8 {
    match enc {
        Enc::Pcmu => 0,
        Enc::Pcma => 8,
        Enc::Opus => 111,
    }
}

/// The codecs of the `m=audio` section of `sdp`: `pt name/rate` in `m=`
/// order.
fn codecs(sdp: &str) -> Vec<String> {
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
fn send(from: &UdpSocket, to: SocketAddr, enc: Enc, pcm: &[i16]) {
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
struct Received {
    pts: Vec<u8>,
    ssrcs: Vec<u32>,
    pcm: Vec<i16>,
    packets: usize,
}

fn receive(sock: &UdpSocket, enc: Enc, for_ms: u64) -> Received {
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

/// What a relay did with one call: the codecs of the offer it sent the
/// answerer and of the answer it sent the offerer, and what each side
/// received.
#[derive(Debug)]
struct Outcome {
    offer: Vec<String>,
    answer: Vec<String>,
    at_b: Received,
    at_a: Received,
    corr_b: f64,
    corr_a: f64,
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// An offerer in `a_enc`, `transcode: [name]`, an answerer in `b_enc`;
/// each side sends the test tone in its own codec.
fn run(ng: SocketAddr, call: &str, a_enc: Enc, b_enc: Enc, name: &str) -> Outcome {
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut ng = NgClient::new(ng, call);
    let codec = Dict::new().with("transcode", str_list([name]));
    let r = ng.ok(Dict::new()
        .with("command", bstr("offer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("codec", codec.into_value())
        .with("sdp", bstr(sdp(pa, a_enc))));
    let offer = str_of(&r, "sdp");
    let to_b = common::ng::sdp_port(&r);
    let r = ng.ok(Dict::new()
        .with("command", bstr("answer"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A"))
        .with("to-tag", bstr("B"))
        .with("sdp", bstr(sdp(pb, b_enc))));
    let answer = str_of(&r, "sdp");
    let to_a = common::ng::sdp_port(&r);
    let relay = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (ta, tb) = (
        tone(PACKETS * a_enc.frame(), a_enc.rate()),
        tone(PACKETS * b_enc.frame(), b_enc.rate()),
    );
    send(&a, relay(to_a), a_enc, &ta);
    let at_b = receive(&b, b_enc, 600);
    send(&b, relay(to_b), b_enc, &tb);
    let at_a = receive(&a, a_enc, 600);
    ng.ok(Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr(call))
        .with("from-tag", bstr("A")));
    // Compare at the receiver's rate: the sent tone regenerated there.
    let (rb, ra) = (b_enc.rate(), a_enc.rate());
    let corr_b = correlation(
        &tone(at_b.pcm.len().min(PACKETS * b_enc.frame()), rb),
        &at_b.pcm,
        (rb / 10.0) as usize,
    );
    let corr_a = correlation(
        &tone(at_a.pcm.len().min(PACKETS * a_enc.frame()), ra),
        &at_a.pcm,
        (ra / 10.0) as usize,
    );
    Outcome {
        offer: codecs(&offer),
        answer: codecs(&answer),
        at_b,
        at_a,
        corr_b,
        corr_a,
    }
}

fn check(o: &Outcome, who: &str, a_enc: Enc, b_enc: Enc, min: f64) {
    eprintln!(
        "{who}: offer {:?} answer {:?}; B got {} packets pts {:?} corr {:.4}; A got {} pts {:?} corr {:.4}",
        o.offer, o.answer, o.at_b.packets, o.at_b.pts, o.corr_b, o.at_a.packets, o.at_a.pts, o.corr_a
    );
    assert_eq!(
        o.at_b.pts,
        [pt_of(b_enc)],
        "{who}: B receives its own codec only"
    );
    assert_eq!(
        o.at_a.pts,
        [pt_of(a_enc)],
        "{who}: A receives its own codec only"
    );
    assert_eq!(o.at_b.ssrcs.len(), 1, "{who}: one SSRC toward B");
    // 1 s sent each way; at most a frame held back by the resampler.
    assert!(
        o.at_b.packets >= PACKETS - 2,
        "{who}: B got {}",
        o.at_b.packets
    );
    assert!(
        o.at_a.packets >= PACKETS - 2,
        "{who}: A got {}",
        o.at_a.packets
    );
    assert!(o.corr_b >= min, "{who}: A→B correlation {:.4}", o.corr_b);
    assert!(o.corr_a >= min, "{who}: B→A correlation {:.4}", o.corr_a);
}

fn both(
    tag: &str,
    ports: &str,
    rtpe_ports: (u16, u16),
    a_enc: Enc,
    b_enc: Enc,
    name: &str,
    min: f64,
) {
    let instance = format!("ng-xc-{tag}-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, ports, ng, &[]);
    let ours = run(
        ([127, 0, 0, 1], ng).into(),
        &format!("xc-{tag}"),
        a_enc,
        b_enc,
        name,
    );
    tern.stop();
    unlink_table(&instance);
    check(&ours, "tern", a_enc, b_enc, min);
    if !have_rtpengine() {
        return;
    }
    let rtpe = Rtpengine::start(&["127.0.0.1"], rtpe_ports.0, rtpe_ports.1, &[]);
    let theirs = run(rtpe.addr(), &format!("xc-{tag}-r"), a_enc, b_enc, name);
    drop(rtpe);
    check(&theirs, "rtpengine", a_enc, b_enc, min);
    assert_eq!(
        ours.answer, theirs.answer,
        "answers toward the offerer differ"
    );
    assert_eq!(
        ours.offer, theirs.offer,
        "offers toward the answerer differ"
    );
}

#[test]
fn pcmu_offerer_pcma_answerer() {
    both(
        "g711",
        "19000-19049",
        (19100, 19149),
        Enc::Pcmu,
        Enc::Pcma,
        "PCMA",
        0.99,
    );
}

#[test]
fn opus_offerer_pcmu_answerer() {
    both(
        "opus",
        "19050-19099",
        (19150, 19199),
        Enc::Opus,
        Enc::Pcmu,
        "PCMU",
        0.9,
    );
}
