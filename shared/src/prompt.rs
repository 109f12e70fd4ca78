//! Prompts for ng `play media` and the B2BUA's music on hold: a WAV file
//! loaded by the programmer (the ng process or the signaling plane) into
//! mono 16-bit PCM, and published next to the slot table as a prompt file
//! that the dataplane workers map by id ([`crate::table::MediaPlay::file`]).
//!
//! The programmer writes the file (to a temporary name, then renamed, so a
//! worker never maps a half-written one) before it publishes the slot
//! configuration naming it; the file is never changed after, since its id
//! is a hash of what it holds.
//!
//! Prompt file layout (little-endian):
//!
//! ```text
//! bytes 0..8    magic "TERNPRM1"
//! bytes 8..12   sample rate, Hz (u32): 8000, 16000 or 48000
//! bytes 12..16  samples (u32), at most MAX_PROMPT_MS of audio
//! bytes 16..    the samples, i16 each, mono
//! ```
//!
//! [`load_wav`] is pure code over bytes (fuzzed: `fuzz/fuzz_targets/
//! wav_prompt.rs`); only [`publish`] and [`PromptMap::open`] touch files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Longest prompt, ms (10 minutes): bounds the memory a file asks for.
pub const MAX_PROMPT_MS: u64 = 600_000;
/// Sample rates a prompt may have, Hz (tern-codec's resampler's).
pub const PROMPT_RATES: [u32; 3] = [8000, 16000, 48000];
/// Largest WAV file read, bytes: 10 minutes of 48 kHz stereo 32-bit, and
/// some room for chunks hound skips.
pub const MAX_WAV_BYTES: u64 = 48_000 * 8 * 600 + (1 << 20);

const MAGIC: &[u8; 8] = b"TERNPRM1";
const HEADER: usize = 16;

/// Why a prompt could not be loaded or mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptError {
    /// The file could not be read, written or mapped (the OS error text).
    Io(String),
    /// Not a WAV file hound can read, or truncated (hound's text).
    Wav(String),
    /// A sample format other than 8/16/24/32-bit integer or 32-bit float
    /// PCM, or no channels.
    Format(String),
    /// A sample rate other than 8, 16 or 48 kHz.
    Rate(u32),
    /// No samples.
    Empty,
    /// Longer than [`MAX_PROMPT_MS`] (or the file than [`MAX_WAV_BYTES`]).
    TooLong,
    /// A prompt file whose header or length does not match.
    BadFile,
}

impl std::fmt::Display for PromptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptError::Io(e) => write!(f, "cannot read the media file: {e}"),
            PromptError::Wav(e) => write!(f, "not a readable WAV file: {e}"),
            PromptError::Format(e) => write!(f, "unsupported WAV format: {e}"),
            PromptError::Rate(r) => write!(
                f,
                "unsupported WAV sample rate {r} Hz (8000, 16000 or 48000)"
            ),
            PromptError::Empty => write!(f, "the WAV file has no samples"),
            PromptError::TooLong => write!(f, "the media file is longer than 10 minutes"),
            PromptError::BadFile => write!(f, "bad prompt file"),
        }
    }
}

impl std::error::Error for PromptError {}

/// Mono 16-bit PCM at `rate` Hz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Sample rate, Hz: one of [`PROMPT_RATES`].
    pub rate: u32,
    /// The samples, mono.
    pub samples: Vec<i16>,
}

impl Prompt {
    /// Length, ms (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(self.rate.max(1))
    }

    /// The prompt's id: 64-bit FNV-1a over the rate and the samples, never
    /// 0, so the same audio is one file however often it is played.
    pub fn id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        };
        self.rate.to_le_bytes().into_iter().for_each(&mut eat);
        for s in &self.samples {
            s.to_le_bytes().into_iter().for_each(&mut eat);
        }
        h.max(1)
    }
}

/// Loads a WAV file's bytes (RIFF WAVE, PCM integer 8/16/24/32-bit or
/// 32-bit float, any channel count mixed down to mono by averaging) into
/// a [`Prompt`] at the file's rate.
///
/// # Errors
/// [`PromptError::Wav`] for bytes hound cannot read or a truncated data
/// chunk; [`PromptError::Format`], [`PromptError::Rate`],
/// [`PromptError::Empty`], [`PromptError::TooLong`] as named.
pub fn load_wav(bytes: &[u8]) -> Result<Prompt, PromptError> {
    if bytes.len() as u64 > MAX_WAV_BYTES {
        return Err(PromptError::TooLong);
    }
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| PromptError::Wav(e.to_string()))?;
    let spec = r.spec();
    if !PROMPT_RATES.contains(&spec.sample_rate) {
        return Err(PromptError::Rate(spec.sample_rate));
    }
    let ch = usize::from(spec.channels);
    if ch == 0 {
        return Err(PromptError::Format("no channels".into()));
    }
    let frames = u64::from(r.duration());
    if frames == 0 {
        return Err(PromptError::Empty);
    }
    if frames * 1000 / u64::from(spec.sample_rate) > MAX_PROMPT_MS {
        return Err(PromptError::TooLong);
    }
    // What the header claims is bounded above; a truncated data chunk
    // ends in an error below, not a short prompt.
    let mut out = Vec::with_capacity(frames as usize);
    let wav = |e: hound::Error| PromptError::Wav(e.to_string());
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            mix(r.samples::<f32>().map(|s| s.map(from_f32)), ch, &mut out).map_err(wav)?
        }
        (hound::SampleFormat::Int, b @ (8 | 16 | 24 | 32)) => {
            let shift = u32::from(b) - 8;
            let to16 = move |s: i32| -> i16 {
                match b {
                    8 => (s << 8) as i16,
                    16 => s as i16,
                    _ => (s >> (shift - 8)) as i16,
                }
            };
            mix(r.samples::<i32>().map(|s| s.map(to16)), ch, &mut out).map_err(wav)?
        }
        (f, b) => return Err(PromptError::Format(format!("{f:?} {b}-bit"))),
    }
    if out.len() as u64 != frames {
        return Err(PromptError::Wav("truncated data chunk".into()));
    }
    Ok(Prompt {
        rate: spec.sample_rate,
        samples: out,
    })
}

fn from_f32(f: f32) -> i16 {
    (f.clamp(-1.0, 1.0) * 32767.0) as i16
}

/// Averages each frame of `ch` interleaved samples into `out`.
fn mix(
    it: impl Iterator<Item = Result<i16, hound::Error>>,
    ch: usize,
    out: &mut Vec<i16>,
) -> Result<(), hound::Error> {
    let (mut acc, mut n) = (0i32, 0usize);
    for s in it {
        acc += i32::from(s?);
        n += 1;
        if n == ch {
            out.push((acc / ch as i32) as i16);
            (acc, n) = (0, 0);
        }
    }
    Ok(())
}

/// Where prompt `id` of the table at `table_path` lives: beside it, as
/// `<table path>.prompt-<id, 16 hex digits>`.
pub fn prompt_path(table_path: &Path, id: u64) -> PathBuf {
    let mut p = table_path.as_os_str().to_owned();
    p.push(format!(".prompt-{id:016x}"));
    PathBuf::from(p)
}

/// The prompt file's bytes (see the module documentation).
pub fn encode(p: &Prompt) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + 2 * p.samples.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&p.rate.to_le_bytes());
    b.extend_from_slice(&(p.samples.len() as u32).to_le_bytes());
    for s in &p.samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// Writes prompt `p` beside the table at `table_path` (unless a file of
/// its id and size is there already) and returns its id.
///
/// # Errors
/// [`PromptError::Io`] when it cannot be written.
pub fn publish(table_path: &Path, p: &Prompt) -> Result<u64, PromptError> {
    let id = p.id();
    let path = prompt_path(table_path, id);
    let size = (HEADER + 2 * p.samples.len()) as u64;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(id);
    }
    let io = |e: std::io::Error| PromptError::Io(e.to_string());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&encode(p)).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(id)
}

/// Reads the WAV file at `wav`, loads it ([`load_wav`]) and publishes it
/// ([`publish`]): `(id, duration ms)`.
///
/// # Errors
/// Those of the three steps; a file over [`MAX_WAV_BYTES`] is
/// [`PromptError::TooLong`] before it is read.
pub fn load_and_publish(table_path: &Path, wav: &Path) -> Result<(u64, u64), PromptError> {
    let io = |e: std::io::Error| PromptError::Io(format!("{}: {e}", wav.display()));
    if std::fs::metadata(wav).map_err(io)?.len() > MAX_WAV_BYTES {
        return Err(PromptError::TooLong);
    }
    let p = load_wav(&std::fs::read(wav).map_err(io)?)?;
    Ok((publish(table_path, &p)?, p.duration_ms()))
}

/// A prompt file mapped read-only (by a worker, when a play starts).
#[derive(Debug)]
pub struct PromptMap {
    map: memmap2::Mmap,
    rate: u32,
    len: usize,
}

impl PromptMap {
    /// Maps and checks the prompt file at `path`.
    ///
    /// # Errors
    /// [`PromptError::Io`] when it cannot be opened or mapped;
    /// [`PromptError::BadFile`] when its magic, rate or length is wrong.
    pub fn open(path: &Path) -> Result<PromptMap, PromptError> {
        let io = |e: std::io::Error| PromptError::Io(e.to_string());
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: prompt files are written under a temporary name and
        // renamed into place, never modified after (their name is a hash
        // of their contents), so the mapping does not change under us.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        let (rate, len) = check(&map).ok_or(PromptError::BadFile)?;
        Ok(PromptMap { map, rate, len })
    }

    /// Sample rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no samples (never, for a checked file).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies samples from `at` into `out`; returns how many (fewer at
    /// the end).
    pub fn read(&self, at: usize, out: &mut [i16]) -> usize {
        let at = at.min(self.len);
        let n = out.len().min(self.len - at);
        let b = &self.map[HEADER + 2 * at..HEADER + 2 * (at + n)];
        for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = i16::from_le_bytes([c[0], c[1]]);
        }
        n
    }
}

/// `(rate, samples)` of a prompt file's bytes, if they are one.
fn check(b: &[u8]) -> Option<(u32, usize)> {
    let h = b.get(..HEADER)?;
    if &h[..8] != MAGIC {
        return None;
    }
    let rate = u32::from_le_bytes(h[8..12].try_into().ok()?);
    let len = u32::from_le_bytes(h[12..16].try_into().ok()?) as usize;
    let ok = PROMPT_RATES.contains(&rate) && len > 0 && b.len() == HEADER + 2 * len;
    ok.then_some((rate, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(spec: hound::WavSpec, samples: &[i32]) -> Vec<u8> {
        let mut c = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
        for &s in samples {
            match spec.bits_per_sample {
                8 => w.write_sample(s as i8).unwrap(),
                16 => w.write_sample(s as i16).unwrap(),
                _ => w.write_sample(s).unwrap(),
            }
        }
        w.finalize().unwrap();
        c.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn mono_16_bit_loads_as_it_is() {
        let s: Vec<i32> = (0..800).map(|i| (i * 37 % 2000) - 1000).collect();
        let p = load_wav(&wav(spec(1, 8000, 16), &s)).unwrap();
        assert_eq!(p.rate, 8000);
        assert_eq!(p.samples, s.iter().map(|&x| x as i16).collect::<Vec<_>>());
        assert_eq!(p.duration_ms(), 100);
    }

    #[test]
    fn stereo_is_mixed_and_other_widths_scaled() {
        let p = load_wav(&wav(spec(2, 48000, 16), &[1000, 3000, -200, -400])).unwrap();
        assert_eq!((p.rate, p.samples), (48000, vec![2000, -300]));
        let p = load_wav(&wav(spec(1, 16000, 8), &[64, -64])).unwrap();
        assert_eq!(p.samples, vec![64 << 8, -64 << 8]);
        let p = load_wav(&wav(spec(1, 8000, 24), &[0x10_0000, -0x10_0000])).unwrap();
        assert_eq!(p.samples, vec![0x1000, -0x1000]);
    }

    #[test]
    fn truncated_and_wrong_files_are_errors() {
        let good = wav(spec(1, 8000, 16), &vec![5; 1600]);
        // Cut in the data chunk: the header claims more than is there.
        let cut = &good[..good.len() - 101];
        assert!(
            matches!(load_wav(cut), Err(PromptError::Wav(_))),
            "{:?}",
            load_wav(cut)
        );
        // Cut in the header.
        assert!(matches!(load_wav(&good[..20]), Err(PromptError::Wav(_))));
        assert!(matches!(
            load_wav(b"not a wav at all"),
            Err(PromptError::Wav(_))
        ));
        assert_eq!(
            load_wav(&wav(spec(1, 44100, 16), &[1, 2])),
            Err(PromptError::Rate(44100))
        );
        assert_eq!(
            load_wav(&wav(spec(1, 8000, 16), &[])),
            Err(PromptError::Empty)
        );
        // 10 minutes and a bit, claimed by the header of a short file.
        let mut long = wav(spec(1, 8000, 16), &[0; 4]);
        let claim = (8000u32 * 601 * 2).to_le_bytes();
        let at = long.len() - 8 - 4;
        long[at..at + 4].copy_from_slice(&claim);
        assert_eq!(load_wav(&long), Err(PromptError::TooLong));
    }

    #[test]
    fn published_file_maps_back() {
        let dir = std::env::temp_dir().join(format!("tern-prompt-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let table = dir.join("tern-x");
        let p = Prompt {
            rate: 16000,
            samples: (0..321).map(|i| i as i16 * 3 - 400).collect(),
        };
        let id = publish(&table, &p).unwrap();
        assert_eq!(id, p.id());
        assert_eq!(publish(&table, &p).unwrap(), id, "published once");
        let path = prompt_path(&table, id);
        assert!(path
            .to_string_lossy()
            .ends_with(&format!(".prompt-{id:016x}")));
        let m = PromptMap::open(&path).unwrap();
        assert_eq!((m.rate(), m.len()), (16000, 321));
        let mut out = [0i16; 100];
        assert_eq!(m.read(300, &mut out), 21);
        assert_eq!(&out[..21], &p.samples[300..]);
        assert_eq!(m.read(400, &mut out), 0);
        // A file cut short is refused.
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, &bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(PromptMap::open(&bad).unwrap_err(), PromptError::BadFile);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
