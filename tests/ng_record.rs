//! Call recording over ng against `tern relay --recording-dir`: A and B
//! stream PCMU noise (different seeds) through the relay; `start
//! recording` … `stop recording` writes `<call-id>.pcap`, `.wav` and
//! `.json` (the Call-ID percent-encoded). Checked: the WAV's left channel
//! correlates ≥ 0.95 with what A sent and the right with what B sent (and
//! not with the other party), its duration is within 100 ms of the time
//! recorded, every pcap payload is one a party sent, and the JSON parses
//! with the call's fields.
//!
//! Ports: relay media 20600-20699.

mod common;
use common::ng::NgClient;
use common::*;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tern_codec::g711;
use tern_dataplane::record::pcap;
use tern_ng::bencode::{bstr, Dict};

const CALL: &str = "rec/1@tern test";
const STEM: &str = "rec%2F1%40tern%20test";

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// A party: its socket, the relay port it sends to, its noise source and
/// what it sent by sequence number.
struct Party {
    s: UdpSocket,
    to: u16,
    seed: u32,
    seq: u16,
    ssrc: u32,
    sent: HashMap<u16, Vec<u8>>,
    /// Every µ-law code sent, in order (the reference signal).
    codes: Vec<u8>,
}

impl Party {
    fn send(&mut self) {
        let mut p = vec![0x80, 0];
        p.extend(self.seq.to_be_bytes());
        p.extend((u32::from(self.seq) * 160).to_be_bytes());
        p.extend(self.ssrc.to_be_bytes());
        for _ in 0..160 {
            self.seed = self
                .seed
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223);
            let x = ((self.seed >> 16) as i16) / 4;
            p.push(g711::ulaw_from_linear(x));
        }
        self.codes.extend_from_slice(&p[12..]);
        self.sent.insert(self.seq, p[12..].to_vec());
        self.s.send_to(&p, ("127.0.0.1", self.to)).unwrap();
        self.seq = self.seq.wrapping_add(1);
    }
}

/// Streams both parties for `ms` at 20 ms, draining what they receive.
fn stream(a: &mut Party, b: &mut Party, ms: u64) {
    let start = Instant::now();
    let mut k = 0u64;
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_millis(ms) {
        if Instant::now() >= start + Duration::from_millis(20 * k) {
            a.send();
            b.send();
            k += 1;
        }
        while a.s.recv(&mut buf).is_ok() {}
        while b.s.recv(&mut buf).is_ok() {}
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Normalized correlation of `x` with `y` shifted by `lag` (y[i + lag]
/// against x[i]), over their overlap.
fn corr(x: &[f64], y: &[f64], lag: usize) -> f64 {
    let n = x.len().min(y.len().saturating_sub(lag));
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (u, v) = (x[i], y[i + lag]);
        xy += u * v;
        xx += u * u;
        yy += v * v;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

fn best_corr(reference: &[f64], chan: &[f64], max_lag: usize) -> f64 {
    (0..max_lag)
        .map(|l| corr(reference, chan, l))
        .fold(0.0, f64::max)
}

#[test]
fn recording_writes_pcap_wav_and_json() {
    let dir: PathBuf = std::env::temp_dir().join(format!("tern-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let instance = format!("ng-record-{}", std::process::id());
    let ng = free_port();
    let dir_s = dir.to_string_lossy().to_string();
    let (mut tern, _) = spawn_relay(&instance, "20600-20699", ng, &["--recording-dir", &dir_s]);
    let mk = |seed: u32, ssrc: u32| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        Party {
            s,
            to: 0,
            seed,
            seq: 1000,
            ssrc,
            sent: HashMap::new(),
            codes: Vec::new(),
        }
    };
    let (mut a, mut b) = (mk(1, 0xaaaa_0001), mk(777, 0xbbbb_0002));
    let (pa, pb) = (
        a.s.local_addr().unwrap().port(),
        b.s.local_addr().unwrap().port(),
    );
    let mut c = NgClient::new(([127, 0, 0, 1], ng).into(), "ng-record");
    let (to_b, to_a) = c.offer_answer(CALL, &sdp(pa), &sdp(pb), &[]);
    a.to = to_a;
    b.to = to_b;
    stream(&mut a, &mut b, 300);
    let cmd = |name: &str| {
        Dict::new()
            .with("command", bstr(name))
            .with("call-id", bstr(CALL))
            .with("from-tag", bstr("A"))
    };
    let a_from = a.codes.len();
    let b_from = b.codes.len();
    c.ok(cmd("start recording"));
    let t0 = Instant::now();
    stream(&mut a, &mut b, 2000);
    c.ok(cmd("stop recording"));
    let recorded = t0.elapsed();
    // After the stop: not recorded.
    stream(&mut a, &mut b, 300);
    let json_path = dir.join(format!("{STEM}.json"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !json_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ok(Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr(CALL))
        .with("from-tag", bstr("A")));
    tern.stop();
    unlink_table(&instance);

    // JSON.
    let json = std::fs::read_to_string(&json_path).expect("the recording's JSON");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON parses");
    eprintln!("{json}");
    assert_eq!(v["call_id"], CALL);
    assert_eq!(
        (v["from_tag"].as_str(), v["to_tag"].as_str()),
        (Some("A"), Some("B"))
    );
    let stop = v["stop_unix_ms"].as_u64().unwrap();
    let start = v["start_unix_ms"].as_u64().unwrap();
    assert!(stop >= start);
    assert_eq!(v["legs"][0]["ssrcs"].as_array().map(|s| s.len()), Some(1));
    assert_eq!(v["legs"][0]["codecs"][0]["codec"], "PCMU/8000");
    let n0 = v["legs"][0]["rtp_packets"].as_u64().unwrap();
    let n1 = v["legs"][1]["rtp_packets"].as_u64().unwrap();
    // 2 s at 50 packets/s per leg, give or take the commands' latency.
    assert!((85..=105).contains(&n0), "leg 0 packets {n0}");
    assert!((85..=105).contains(&n1), "leg 1 packets {n1}");

    // pcap: every payload one its sender sent, from its address.
    let pc = std::fs::read(dir.join(format!("{STEM}.pcap"))).expect("the pcap");
    let recs = pcap::parse(&pc).expect("pcap parses");
    assert_eq!(recs.len() as u64, n0 + n1);
    for (_, src, dst, p) in &recs {
        let seq = u16::from_be_bytes([p[2], p[3]]);
        let party = if src.port() == pa { &a } else { &b };
        assert!(src.port() == pa || src.port() == pb, "source {src}");
        assert!(
            dst.port() == a.to || dst.port() == b.to,
            "destination {dst}"
        );
        assert_eq!(
            party.sent.get(&seq).map(Vec::as_slice),
            Some(&p[12..]),
            "payload of {seq}"
        );
    }

    // WAV: stereo 8 kHz, left = A, right = B, duration = recorded time.
    let wav = std::fs::read(dir.join(format!("{STEM}.wav"))).expect("the WAV");
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2);
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8000
    );
    let data = &wav[44..];
    let frames = data.len() / 4;
    let secs = frames as f64 / 8000.0;
    let want = recorded.as_secs_f64();
    eprintln!("WAV {secs:.3} s, recorded {want:.3} s");
    assert!(
        (secs - want).abs() <= 0.1,
        "WAV {secs:.3} s against {want:.3} s recorded"
    );
    let chan = |c: usize| -> Vec<f64> {
        data.chunks_exact(4)
            .map(|f| f64::from(i16::from_le_bytes([f[2 * c], f[2 * c + 1]])))
            .collect()
    };
    let (left, right) = (chan(0), chan(1));
    // The reference: what each party sent from the start command on,
    // searched at lags up to 200 ms either way.
    let refer = |codes: &[u8]| -> Vec<f64> {
        codes
            .iter()
            .map(|&c| f64::from(g711::ulaw_to_linear(c)))
            .collect()
    };
    let ra = refer(&a.codes[a_from.saturating_sub(1600)..]);
    let rb = refer(&b.codes[b_from.saturating_sub(1600)..]);
    let la = best_corr(&left, &ra, 3200);
    let rb_c = best_corr(&right, &rb, 3200);
    let cross = best_corr(&left, &rb, 3200);
    eprintln!("correlation: left~A {la:.3}, right~B {rb_c:.3}, left~B {cross:.3}");
    assert!(la >= 0.95, "left channel against A: {la}");
    assert!(rb_c >= 0.95, "right channel against B: {rb_c}");
    assert!(cross < 0.5, "left channel against B: {cross}");
    let _ = std::fs::remove_dir_all(&dir);
}
