//! ng `play media` / `stop media` with real media, against `tern relay`
//! and against rtpengine 10.5 (userspace `--table=-1`) with the same ng
//! commands: A streams PCMU silence to B through the relay; a WAV sweep
//! (written here with hound, 8 kHz mono) played to B replaces it, and
//! what B receives, decoded, correlates with the file. tern's stream at
//! B also stays one stream (one SSRC, sequence numbers +1, timestamps
//! +160) across the start and the end of the play, with and without the
//! `SSRC-rewrite` flag; `duration` is the
//! file's length; `stop media` ends a long play at once; a missing or
//! non-WAV file is an error with a reason.
//!
//! Ports: tern relay 31800-31849, rtpengine 31850-31899.

mod common;
use common::audio::{correlation, sweep, write_wav};
use common::ng::{ng_exchange, str_of, NgClient};
use common::rtpengine::{have_rtpengine, Rtpengine};
use common::*;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tern_ng::bencode::{bstr, int, Dict};

const RATE: u32 = 8000;
/// µ-law silence.
const SILENCE: u8 = 0xff;

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// One RTP packet B received.
#[derive(Debug, Clone)]
struct Rx {
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

impl Rx {
    fn silent(&self) -> bool {
        self.payload.iter().all(|&b| b == SILENCE || b == 0x7f)
    }
}

struct Call {
    a: UdpSocket,
    b: UdpSocket,
    relay_a: u16,
    seq: u16,
    got: Vec<Rx>,
}

impl Call {
    /// Streams `ms` of 20 ms PCMU silence from A, collecting what B gets.
    fn stream(&mut self, ms: u64) {
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let mut k = 0u64;
        while start.elapsed() < Duration::from_millis(ms) {
            if Instant::now() >= start + Duration::from_millis(20 * k) {
                self.seq = self.seq.wrapping_add(1);
                let mut p = vec![0x80, 0];
                p.extend(self.seq.to_be_bytes());
                p.extend((u32::from(self.seq) * 160).to_be_bytes());
                p.extend(0xa11c_e000u32.to_be_bytes());
                p.extend([SILENCE; 160]);
                self.a.send_to(&p, ("127.0.0.1", self.relay_a)).unwrap();
                k += 1;
            }
            while let Ok(n) = self.b.recv(&mut buf) {
                if n < 12 || buf[0] >> 6 != 2 || buf[1] & 0x7f != 0 {
                    continue;
                }
                self.got.push(Rx {
                    seq: u16::from_be_bytes([buf[2], buf[3]]),
                    ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                    ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                    payload: buf[12..n].to_vec(),
                });
            }
        }
    }

    /// The decoded audio of what B got from `from` on that is not
    /// silence.
    fn audio(&self, from: usize) -> Vec<i16> {
        self.got[from..]
            .iter()
            .filter(|r| !r.silent())
            .flat_map(|r| {
                r.payload
                    .iter()
                    .map(|&c| tern_codec::g711::ulaw_to_linear(c))
            })
            .collect()
    }

    fn loud_packets(&self, from: usize) -> usize {
        self.got[from..].iter().filter(|r| !r.silent()).count()
    }
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s
}

/// What one relay did.
struct Outcome {
    duration: i64,
    /// Correlation of B's audio during the play with the file.
    corr: f64,
    /// Packets of the play B received (of the 50 the file is).
    played: usize,
    /// B's stream from before the play to after it.
    stream: Vec<Rx>,
    /// Loud packets B received after `stop media` (beyond the first
    /// 100 ms).
    after_stop: usize,
    /// The error reasons of a missing and of a non-WAV file.
    errors: [String; 2],
}

fn play(call_id: &str, file: &Path, repeat: i64) -> Dict {
    Dict::new()
        .with("command", bstr("play media"))
        .with("call-id", bstr(call_id))
        .with("from-tag", bstr("B"))
        .with("file", bstr(file.to_string_lossy().as_bytes()))
        .with("repeat-times", int(repeat))
}

fn run(
    ng_addr: SocketAddr,
    prefix: &str,
    flags: &[&str],
    wav: &Path,
    junk: &Path,
    x: &[i16],
) -> Outcome {
    let call_id = format!("{prefix}-call");
    let (a, b) = (sock(), sock());
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut ng = NgClient::new(ng_addr, prefix);
    let (to_b, relay_a) = ng.offer_answer(&call_id, &sdp(pa), &sdp(pb), flags);
    // B sends once, so a learning relay knows where B is.
    b.send_to(
        &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
        ("127.0.0.1", to_b),
    )
    .unwrap();
    let mut call = Call {
        a,
        b,
        relay_a,
        seq: 100,
        got: Vec::new(),
    };
    call.stream(400);
    let before = call.got.len();
    let r = ng.ok(play(&call_id, wav, 1));
    let duration = r
        .get(b"duration".as_slice())
        .and_then(|v| v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)))
        .unwrap_or(-1);
    call.stream(1600);
    let y = call.audio(before.saturating_sub(5));
    let corr = correlation(x, &y, 1600);
    let played = call.loud_packets(before);
    let stream = call.got.clone();

    // A long play, stopped after 300 ms.
    ng.ok(play(&call_id, wav, 10));
    call.stream(300);
    ng.ok(Dict::new()
        .with("command", bstr("stop media"))
        .with("call-id", bstr(call_id.as_str()))
        .with("from-tag", bstr("B")));
    call.stream(100);
    let settled = call.got.len();
    call.stream(400);
    let after_stop = call.loud_packets(settled);

    // Bad files: an error with a reason, the call unharmed.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let errors = [Path::new("/nonexistent/tern-play-media.wav"), junk].map(|f| {
        let r = ng_exchange(
            &sock,
            ng_addr,
            &format!("{prefix}-bad-{}", f.display()),
            play(&call_id, f, 1),
        );
        assert_eq!(str_of(&r, "result"), "error", "{r:?}");
        str_of(&r, "error-reason")
    });
    ng.ok(Dict::new()
        .with("command", bstr("delete"))
        .with("call-id", bstr(call_id.as_str()))
        .with("from-tag", bstr("A")));
    Outcome {
        duration,
        corr,
        played,
        stream,
        after_stop,
        errors,
    }
}

fn files(tag: &str) -> (PathBuf, PathBuf, Vec<i16>) {
    let dir = std::env::temp_dir();
    let wav = dir.join(format!("tern-play-media-{tag}-{}.wav", std::process::id()));
    let junk = dir.join(format!(
        "tern-play-media-{tag}-{}.junk.wav",
        std::process::id()
    ));
    let x = sweep(1.0, RATE);
    write_wav(&wav, RATE, &x);
    std::fs::write(&junk, b"RIFF\x10\0\0\0WAVEnot really").unwrap();
    (wav, junk, x)
}

/// Removes the prompt files a relay of `instance` left beside its table.
fn unlink_prompts(instance: &str) {
    let table = tern_shared::table::table_path(instance);
    let (Some(dir), Some(name)) = (table.parent(), table.file_name()) else {
        return;
    };
    let prefix = format!("{}.prompt-", name.to_string_lossy());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[test]
fn played_file_reaches_the_far_side_as_rtpengines_does() {
    let (wav, junk, x) = files("t");
    let instance = format!("ng-play-media-{}", std::process::id());
    let ng = free_port();
    let (mut tern, _) = spawn_relay(&instance, "31800-31849", ng, &[]);
    let ours = run(
        ([127, 0, 0, 1], ng).into(),
        "play-media-t",
        &[],
        &wav,
        &junk,
        &x,
    );
    // With SSRC rewriting the play is a source switch of the rewriter.
    let rewritten = run(
        ([127, 0, 0, 1], ng).into(),
        "play-media-s",
        &["SSRC-rewrite"],
        &wav,
        &junk,
        &x,
    );
    tern.stop();
    unlink_prompts(&instance);
    unlink_table(&instance);
    eprintln!(
        "tern: duration {} ms, correlation {:.3}, {} packets played, {} loud after stop, errors {:?}",
        ours.duration, ours.corr, ours.played, ours.after_stop, ours.errors
    );
    assert_eq!(ours.duration, 1000, "the file's length, ms");
    assert!(ours.corr >= 0.9, "correlation {:.3}", ours.corr);
    assert!((48..=52).contains(&ours.played), "{} packets", ours.played);
    assert_eq!(ours.after_stop, 0, "stop media stops the play");
    assert!(
        ours.errors
            .iter()
            .all(|e| e.starts_with("Failed to start media playback from file")),
        "{:?}",
        ours.errors
    );
    assert!(rewritten.corr >= 0.9, "SSRC-rewrite: {:.3}", rewritten.corr);
    assert_eq!(rewritten.duration, 1000);
    // One stream at B across the play: one SSRC, +1, +160.
    for (what, s) in [("plain", &ours.stream), ("SSRC-rewrite", &rewritten.stream)] {
        assert!(s.len() > 80, "{what}: {} packets", s.len());
        assert!(
            s.iter().all(|r| r.ssrc == s[0].ssrc),
            "{what}: SSRC changed"
        );
        for w in s.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "{what}: sequence: {w:?}"
            );
            assert_eq!(
                w[1].ts,
                w[0].ts.wrapping_add(160),
                "{what}: timestamp at seq {}",
                w[1].seq
            );
        }
    }

    if !have_rtpengine() {
        let _ = std::fs::remove_file(&wav);
        let _ = std::fs::remove_file(&junk);
        return;
    }
    let rtpe = Rtpengine::start(&["127.0.0.1"], 31850, 31899, &[]);
    let theirs = run(rtpe.addr(), "play-media-r", &[], &wav, &junk, &x);
    drop(rtpe);
    let _ = std::fs::remove_file(&wav);
    let _ = std::fs::remove_file(&junk);
    let shape = |s: &[Rx]| {
        let mut ssrcs: Vec<u32> = s.iter().map(|r| r.ssrc).collect();
        ssrcs.dedup();
        let jumps = s
            .windows(2)
            .filter(|w| w[1].seq != w[0].seq.wrapping_add(1))
            .count();
        (ssrcs.len(), jumps)
    };
    eprintln!(
        "B's stream (SSRC runs, sequence jumps): tern {:?}, rtpengine {:?}",
        shape(&ours.stream),
        shape(&theirs.stream)
    );
    eprintln!(
        "rtpengine: duration {} ms, correlation {:.3}, {} packets played, {} loud after stop, errors {:?}",
        theirs.duration, theirs.corr, theirs.played, theirs.after_stop, theirs.errors
    );
    assert!(
        theirs.corr >= 0.9,
        "rtpengine's correlation {:.3}",
        theirs.corr
    );
    assert_eq!(ours.duration, theirs.duration, "duration differs");
    assert_eq!(theirs.after_stop, 0);
}
