//! The recording writer thread: drains the workers' frame rings, keeps
//! each recording's state, and moves its bytes to its three files.
//!
//! A recording is keyed by (slot, `record_id`): it starts with its first
//! frame and stops when the slot's configuration no longer records with
//! that id (`stop recording`, a new `start recording`, the call's end),
//! checked every [`CHECK_MS`]. The WAV trails the newest arrival by
//! [`WAV_LAG_US`] so late packets still land in place; at stop it is
//! completed and its header patched, and the JSON is written.
//!
//! A write error stops that recording only: counted per worker in the
//! table (`tern_record_failed_total`), logged, and its later frames
//! ignored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_shared::rtp::RtpPacket;
use tern_shared::table::{MediaCodec, SlotState, SlotTable};
use tracing::{info, warn};

use super::wav::{self, LegDecoder, Timeline, WAV_RATE};
use super::{file_stem, pcap, Frame, FrameRing, RecordConfig};

/// How often open recordings are compared with the table, ms.
pub const CHECK_MS: u64 = 100;
/// How far the WAV trails the newest arrival, µs.
pub const WAV_LAG_US: u64 = 300_000;

/// Where a recording's bytes go: a file, or in tests a failing writer.
pub trait Out: Write + Seek + Send {}
impl<T: Write + Seek + Send> Out for T {}

/// What a leg saw, for the JSON.
#[derive(Debug, Default, Clone)]
struct LegInfo {
    rtp: u64,
    rtcp: u64,
    ssrcs: Vec<u32>,
    codecs: Vec<(u8, &'static str)>,
}

fn codec_name(c: MediaCodec) -> &'static str {
    match c {
        MediaCodec::Pcmu => "PCMU/8000",
        MediaCodec::Pcma => "PCMA/8000",
        MediaCodec::G722 => "G722/8000",
        MediaCodec::Opus => "opus/48000",
        MediaCodec::OpusStereo => "opus/48000/2",
    }
}

/// One recording's state, sans-IO but for its outputs (any [`Out`]).
pub struct Recording {
    call_id: String,
    tags: [Option<String>; 2],
    start_us: u64,
    last_us: u64,
    legs: [LegInfo; 2],
    codecs: [tern_shared::table::LegMedia; 2],
    dec: [LegDecoder; 2],
    tl: Timeline,
    pcm: Vec<i16>,
    buf: Vec<u8>,
    pcap: Box<dyn Out>,
    wav: Box<dyn Out>,
    wav_bytes: u64,
}

impl Recording {
    /// A recording of `call_id` (its parties' tags if known) whose legs
    /// carry `media` (their payload types' codecs), writing to `pcap` and
    /// `wav`; writes both files' headers.
    ///
    /// Errors: the outputs' write errors.
    pub fn new(
        call_id: &str,
        tags: [Option<String>; 2],
        media: [tern_shared::table::LegMedia; 2],
        start_us: u64,
        mut pcap_out: Box<dyn Out>,
        mut wav_out: Box<dyn Out>,
    ) -> io::Result<Recording> {
        pcap_out.write_all(&pcap::file_header())?;
        wav_out.write_all(&wav::header(0, 2, WAV_RATE))?;
        Ok(Recording {
            call_id: call_id.into(),
            tags,
            start_us,
            last_us: start_us,
            legs: Default::default(),
            codecs: media,
            dec: Default::default(),
            tl: Timeline::default(),
            pcm: Vec::new(),
            buf: Vec::new(),
            pcap: pcap_out,
            wav: wav_out,
            wav_bytes: 0,
        })
    }

    /// Takes one frame: its pcap record, its audio on the timeline, its
    /// counts; writes the WAV up to [`WAV_LAG_US`] before it.
    ///
    /// Errors: the outputs' write errors.
    pub fn push(&mut self, f: &Frame) -> io::Result<()> {
        let leg = usize::from(f.leg & 1);
        let at = f.at_us.max(self.start_us);
        self.last_us = self.last_us.max(at);
        self.buf.clear();
        pcap::write_record(&mut self.buf, f.at_us, f.src, f.dst, f.bytes());
        self.pcap.write_all(&self.buf)?;
        let li = &mut self.legs[leg];
        if f.rtcp {
            li.rtcp += 1;
            return Ok(());
        }
        let Ok(p) = RtpPacket::new_checked(f.bytes()) else {
            return Ok(());
        };
        li.rtp += 1;
        if !li.ssrcs.contains(&p.ssrc()) && li.ssrcs.len() < 16 {
            li.ssrcs.push(p.ssrc());
        }
        let pt = p.payload_type() & 0x7f;
        if let Some(c) = self.codecs[leg].codec_of(pt) {
            if !li.codecs.iter().any(|(q, _)| *q == pt) {
                li.codecs.push((pt, codec_name(c)));
            }
            if self.dec[leg].decode(c, p.payload(), &mut self.pcm) {
                let pos = self.tl.position(
                    leg,
                    p.ssrc(),
                    p.timestamp(),
                    c.rtp_clock(),
                    at - self.start_us,
                );
                self.tl.place(leg, pos, &self.pcm);
            }
        }
        let upto = (self.last_us - self.start_us).saturating_sub(WAV_LAG_US) * u64::from(WAV_RATE)
            / 1_000_000;
        if upto > self.tl.written() + u64::from(WAV_RATE) / 10 {
            self.flush_wav(upto)?;
        }
        Ok(())
    }

    fn flush_wav(&mut self, upto: u64) -> io::Result<()> {
        self.buf.clear();
        self.tl.drain(upto, &mut self.buf);
        self.wav_bytes += self.buf.len() as u64;
        self.wav.write_all(&self.buf)
    }

    /// Completes the WAV (to the last placed sample, or the last
    /// arrival, whichever is later), patches its header, flushes both
    /// files; returns the JSON document, stopped at `stop_us`.
    ///
    /// Errors: the outputs' write and seek errors.
    pub fn finish(mut self, stop_us: u64) -> io::Result<String> {
        let by_arrival = (self.last_us - self.start_us) * u64::from(WAV_RATE) / 1_000_000;
        self.flush_wav(self.tl.end().max(by_arrival))?;
        self.wav.seek(SeekFrom::Start(0))?;
        self.wav
            .write_all(&wav::header(self.wav_bytes, 2, WAV_RATE))?;
        self.wav.flush()?;
        self.pcap.flush()?;
        let legs: Vec<serde_json::Value> = self
            .legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::json!({
                    "leg": i,
                    "role": if i == 0 { "caller" } else { "callee" },
                    "tag": self.tags[i],
                    "wav_channel": if i == 0 { "left" } else { "right" },
                    "rtp_packets": l.rtp,
                    "rtcp_packets": l.rtcp,
                    "ssrcs": l.ssrcs,
                    "codecs": l.codecs.iter().map(|(pt, n)| serde_json::json!({"pt": pt, "codec": n})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "call_id": self.call_id,
            "from_tag": self.tags[0],
            "to_tag": self.tags[1],
            "start_unix_ms": self.start_us / 1000,
            "stop_unix_ms": stop_us.max(self.last_us) / 1000,
            "wav_rate": WAV_RATE,
            "wav_seconds": self.wav_bytes as f64 / 4.0 / f64::from(WAV_RATE),
            "legs": legs,
        });
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
    }
}

/// Looks up the parties' tags of a Call-ID (ng knows them, the table does
/// not): from-tag and to-tag.
pub type TagLookup = Arc<dyn Fn(&str) -> [Option<String>; 2] + Send + Sync>;

struct Open {
    rec: Recording,
    stem: PathBuf,
    worker: u32,
}

/// The writer thread's handle.
#[derive(Debug)]
pub struct Writer {
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    /// Stops the thread after it finished every open recording.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Starts the writer over `rings` (one per worker, in worker order).
///
/// Errors: the directory cannot be created; the thread cannot be spawned.
pub fn start(
    cfg: &RecordConfig,
    table: Arc<SlotTable>,
    rings: Vec<Arc<FrameRing>>,
    tags: Option<TagLookup>,
) -> io::Result<Writer> {
    std::fs::create_dir_all(&cfg.dir)?;
    let dir = cfg.dir.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = std::thread::Builder::new()
        .name("tern-record".into())
        .spawn(move || run(&dir, &table, &rings, tags, &s))?;
    Ok(Writer {
        handle: Some(handle),
        stop,
    })
}

fn create(path: &Path) -> io::Result<Box<dyn Out>> {
    Ok(Box::new(BufWriter::with_capacity(
        64 * 1024,
        File::create(path)?,
    )))
}

fn run(
    dir: &Path,
    table: &SlotTable,
    rings: &[Arc<FrameRing>],
    tags: Option<TagLookup>,
    stop: &AtomicBool,
) {
    let mut open: HashMap<(u32, u32), Open> = HashMap::new();
    // Recordings stopped or failed: their late frames are ignored.
    let mut done: HashSet<(u32, u32)> = HashSet::new();
    let mut failed = vec![0u64; rings.len()];
    let mut last_check = Instant::now();
    let fail = |key: (u32, u32), o: &Open, e: &io::Error, failed: &mut Vec<u64>| {
        warn!(call_id = %o.rec.call_id, slot = key.0, "recording stopped: {e}");
        if let Some(n) = failed.get_mut(o.worker as usize) {
            *n += 1;
            table.set_worker_record_failed(o.worker, *n);
        }
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut n = 0;
        for (w, ring) in rings.iter().enumerate() {
            n += ring.pop(4096, |f| {
                let key = (f.slot, f.record_id);
                if done.contains(&key) {
                    return;
                }
                if !open.contains_key(&key) {
                    let call_id = table.call_id(f.slot).unwrap_or_default();
                    let media = table.read_config(f.slot).map(|(c, _)| [c.legs[0].media, c.legs[1].media]).unwrap_or_default();
                    let t = tags.as_ref().map(|t| t(&call_id)).unwrap_or_default();
                    let mut stem = file_stem(&call_id);
                    if open.values().any(|o| o.stem == dir.join(&stem)) || dir.join(format!("{stem}.json")).exists() {
                        stem = format!("{stem}-{}-{}", f.slot, f.record_id);
                    }
                    let stem = dir.join(stem);
                    let made = create(&stem.with_extension("pcap"))
                        .and_then(|p| Ok((p, create(&stem.with_extension("wav"))?)))
                        .and_then(|(p, wv)| Recording::new(&call_id, t, media, f.at_us, p, wv));
                    match made {
                        Ok(rec) => {
                            info!(call_id = %call_id, slot = f.slot, path = %stem.display(), "recording started");
                            open.insert(key, Open { rec, stem, worker: w as u32 });
                        }
                        Err(e) => {
                            warn!(call_id = %call_id, slot = f.slot, "recording not started: {e}");
                            if let Some(c) = failed.get_mut(w) {
                                *c += 1;
                                table.set_worker_record_failed(w as u32, *c);
                            }
                            done.insert(key);
                            return;
                        }
                    }
                }
                if let Some(o) = open.get_mut(&key) {
                    if let Err(e) = o.rec.push(f) {
                        if let Some(o) = open.remove(&key) {
                            fail(key, &o, &e, &mut failed);
                        }
                        done.insert(key);
                    }
                }
            });
        }
        if stopping || last_check.elapsed() >= Duration::from_millis(CHECK_MS) {
            last_check = Instant::now();
            let ended: Vec<(u32, u32)> = open
                .keys()
                .copied()
                .filter(|&(slot, id)| {
                    stopping
                        || table.state(slot) != SlotState::Active
                        || !table.read_config(slot).is_ok_and(|(c, _)| {
                            c.legs
                                .iter()
                                .any(|l| l.media.record && l.media.record_id == id)
                        })
                })
                .collect();
            for key in ended {
                let Some(o) = open.remove(&key) else { continue };
                done.insert(key);
                let (stem, worker, call_id) = (o.stem.clone(), o.worker, o.rec.call_id.clone());
                let res = o
                    .rec
                    .finish(unix_us())
                    .and_then(|json| std::fs::write(stem.with_extension("json"), json));
                match res {
                    Ok(()) => {
                        info!(call_id = %call_id, path = %stem.display(), "recording stopped")
                    }
                    Err(e) => {
                        warn!(call_id = %call_id, "recording not completed: {e}");
                        if let Some(c) = failed.get_mut(worker as usize) {
                            *c += 1;
                            table.set_worker_record_failed(worker, *c);
                        }
                    }
                }
            }
            // Bounded memory: old keys of freed slots are forgotten.
            if done.len() > 100_000 {
                done.clear();
            }
        }
        if stopping {
            return;
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    /// A seekable buffer that fails every write after `cap` bytes (a
    /// full disk).
    struct Tiny {
        cur: Cursor<Vec<u8>>,
        cap: usize,
        shared: Arc<Mutex<Vec<u8>>>,
    }
    impl Write for Tiny {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.cur.position() as usize + b.len() > self.cap {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = self.cur.write(b)?;
            *self.shared.lock().unwrap() = self.cur.get_ref().clone();
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Tiny {
        fn seek(&mut self, p: SeekFrom) -> io::Result<u64> {
            self.cur.seek(p)
        }
    }
    fn tiny(cap: usize) -> (Box<dyn Out>, Arc<Mutex<Vec<u8>>>) {
        let shared = Arc::new(Mutex::new(Vec::new()));
        (
            Box::new(Tiny {
                cur: Cursor::new(Vec::new()),
                cap,
                shared: shared.clone(),
            }),
            shared,
        )
    }

    fn rtp(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn frame(leg: u8, at_us: u64, pkt: &[u8]) -> Frame {
        let mut f = Frame {
            leg,
            at_us,
            len: pkt.len() as u16,
            ..Frame::default()
        };
        f.src = "127.0.0.1:4000".parse::<SocketAddr>().unwrap();
        f.dst = "127.0.0.1:20000".parse::<SocketAddr>().unwrap();
        f.data[..pkt.len()].copy_from_slice(pkt);
        f
    }

    fn pcmu_media() -> [tern_shared::table::LegMedia; 2] {
        let mut m = tern_shared::table::LegMedia::default();
        m.codecs[0] = Some((0, MediaCodec::Pcmu));
        [m, m]
    }

    #[test]
    fn two_legs_make_pcap_wav_and_json() {
        let (p, pbytes) = tiny(1 << 20);
        let (w, wbytes) = tiny(1 << 20);
        let t0 = 1_000_000_000;
        let mut r = Recording::new("c1", [Some("a".into()), None], pcmu_media(), t0, p, w).unwrap();
        // 1 s of caller audio, 20 ms packets; the callee starts at 500 ms.
        for i in 0..50u32 {
            let pkt = rtp(11, i as u16, i * 160, &[0x00; 160]);
            r.push(&frame(0, t0 + u64::from(i) * 20_000, &pkt)).unwrap();
            if i >= 25 {
                let pkt = rtp(22, i as u16, i * 160, &[0x80; 160]);
                r.push(&frame(1, t0 + u64::from(i) * 20_000 + 1_000, &pkt))
                    .unwrap();
            }
        }
        let json = r.finish(t0 + 1_000_000).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["call_id"], "c1");
        assert_eq!(v["from_tag"], "a");
        assert_eq!(v["legs"][0]["rtp_packets"], 50);
        assert_eq!(v["legs"][1]["rtp_packets"], 25);
        assert_eq!(v["legs"][1]["ssrcs"][0], 22);
        assert_eq!(v["legs"][0]["codecs"][0]["codec"], "PCMU/8000");
        let wavf = wbytes.lock().unwrap().clone();
        let data = u32::from_le_bytes([wavf[40], wavf[41], wavf[42], wavf[43]]) as usize;
        assert_eq!(data + 44, wavf.len());
        // 50 packets of 160 samples, the callee's last 1 ms late: 8008
        // frames of 4 bytes.
        assert_eq!(data, 8008 * 4);
        let frame_at = |i: usize| {
            let o = 44 + i * 4;
            (
                i16::from_le_bytes([wavf[o], wavf[o + 1]]),
                i16::from_le_bytes([wavf[o + 2], wavf[o + 3]]),
            )
        };
        let loud = tern_codec::g711::ulaw_to_linear(0x00);
        // Before 500 ms the right channel is silent, after it is not.
        assert_eq!(frame_at(100), (loud, 0));
        assert_eq!(frame_at(4100).1, tern_codec::g711::ulaw_to_linear(0x80));
        let recs = pcap::parse(&pbytes.lock().unwrap()).unwrap();
        assert_eq!(recs.len(), 75);
        assert_eq!(recs[0].3, rtp(11, 0, 0, &[0x00; 160]));
    }

    #[test]
    fn full_disk_is_an_error_not_a_panic() {
        let (p, _) = tiny(24 + 3 * 200);
        let (w, _) = tiny(1 << 20);
        let mut r = Recording::new("c2", [None, None], pcmu_media(), 0, p, w).unwrap();
        let mut err = None;
        for i in 0..10u32 {
            let pkt = rtp(1, i as u16, i * 160, &[0xff; 160]);
            if let Err(e) = r.push(&frame(0, u64::from(i) * 20_000, &pkt)) {
                err = Some((i, e));
                break;
            }
        }
        let (i, e) = err.expect("the tiny pcap fills up");
        // Records are 216 bytes: the third passes the 624-byte disk.
        assert_eq!(i, 2);
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        let (p, _) = tiny(10);
        assert!(Recording::new("c3", [None, None], pcmu_media(), 0, p, tiny(100).0).is_err());
    }
}
