//! Fixed-ratio resampling between 8, 16 and 48 kHz with rubato's
//! synchronous FFT resampler (`FftFixedInOut`), mono, in 10 ms chunks.
//!
//! Shapes: 16-bit linear mono in and out. A chunk is 10 ms: 80 samples at
//! 8 kHz, 160 at 16 kHz, 480 at 48 kHz, so a 20 ms frame is two chunks and
//! every RTP ptime that is a multiple of 10 ms maps to whole chunks. The
//! resampler delays its output by [`Resampler::delay`] output samples
//! (half a chunk: 5 ms); equal rates are a copy with no delay.

use rubato::Resampler as _;

/// The rates this module converts between, Hz.
pub const RATES: [u32; 3] = [8000, 16000, 48000];

/// Why a [`Resampler`] could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResampleError {
    /// A rate is not one of [`RATES`].
    UnsupportedRate(u32),
    /// rubato refused the configuration (its message).
    Rubato(String),
}

impl std::fmt::Display for ResampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResampleError::UnsupportedRate(r) => write!(f, "unsupported sample rate {r} Hz"),
            ResampleError::Rubato(m) => write!(f, "rubato: {m}"),
        }
    }
}

impl std::error::Error for ResampleError {}

/// A streaming mono resampler from `from` Hz to `to` Hz.
///
/// [`Resampler::process`] takes any number of input samples, converts every
/// whole 10 ms chunk and keeps the rest (under one chunk) for the next call,
/// so output length per call is a multiple of [`Resampler::chunk_out`].
pub struct Resampler {
    inner: Option<rubato::FftFixedInOut<f32>>,
    chunk_in: usize,
    chunk_out: usize,
    /// Input carried between calls, always < `chunk_in` samples.
    carry: Vec<i16>,
    fin: Vec<Vec<f32>>,
    fout: Vec<Vec<f32>>,
}

impl Resampler {
    /// A resampler from `from` to `to` Hz (each one of [`RATES`]).
    ///
    /// # Errors
    /// [`ResampleError::UnsupportedRate`] for another rate;
    /// [`ResampleError::Rubato`] if rubato refuses.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        for r in [from, to] {
            if !RATES.contains(&r) {
                return Err(ResampleError::UnsupportedRate(r));
            }
        }
        let chunk_in = from as usize / 100;
        let chunk_out = to as usize / 100;
        let inner = if from == to {
            None
        } else {
            let r = rubato::FftFixedInOut::<f32>::new(from as usize, to as usize, chunk_in, 1)
                .map_err(|e| ResampleError::Rubato(e.to_string()))?;
            // Rates that are multiples of 100 Hz give exactly 10 ms chunks.
            if r.input_frames_next() != chunk_in || r.output_frames_next() != chunk_out {
                return Err(ResampleError::Rubato(format!(
                    "chunks of {}→{} samples, wanted {chunk_in}→{chunk_out}",
                    r.input_frames_next(),
                    r.output_frames_next()
                )));
            }
            Some(r)
        };
        Ok(Self {
            inner,
            chunk_in,
            chunk_out,
            carry: Vec::with_capacity(chunk_in),
            fin: vec![vec![0.0; chunk_in]],
            fout: vec![vec![0.0; chunk_out]],
        })
    }

    /// Input samples per chunk (10 ms at `from`).
    pub fn chunk_in(&self) -> usize {
        self.chunk_in
    }

    /// Output samples per chunk (10 ms at `to`).
    pub fn chunk_out(&self) -> usize {
        self.chunk_out
    }

    /// Output delay in output samples: 0 for equal rates, else rubato's
    /// `output_delay` (half an output chunk).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Input samples waiting for a whole chunk (< [`Resampler::chunk_in`]).
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Converts `input` and appends the output to `out`: one
    /// [`Resampler::chunk_out`] per whole chunk of carried plus new input.
    /// Allocates only when `out` lacks the capacity. Returns the samples
    /// appended.
    pub fn process(&mut self, mut input: &[i16], out: &mut Vec<i16>) -> usize {
        let before = out.len();
        while !input.is_empty() {
            let take = (self.chunk_in - self.carry.len()).min(input.len());
            self.carry.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.carry.len() == self.chunk_in {
                self.run_chunk(out);
                self.carry.clear();
            }
        }
        out.len() - before
    }

    fn run_chunk(&mut self, out: &mut Vec<i16>) {
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(&self.carry);
            return;
        };
        for (f, &s) in self.fin[0].iter_mut().zip(&self.carry) {
            *f = f32::from(s) / 32768.0;
        }
        match r.process_into_buffer(&self.fin, &mut self.fout, None) {
            Ok((_, n)) => out.extend(self.fout[0][..n].iter().map(|&f| to_i16(f))),
            // Buffers are sized by the constructor; should rubato still
            // refuse, the chunk becomes silence rather than a panic.
            Err(_) => out.resize(out.len() + self.chunk_out, 0),
        }
    }

    /// Drops carried input and returns the filter to silence (after a
    /// talkspurt gap or a source change).
    pub fn reset(&mut self) {
        self.carry.clear();
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
    }
}

fn to_i16(f: f32) -> i16 {
    (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    /// Correlation of `a` against `b` shifted by `lag` (b later).
    fn corr(a: &[i16], b: &[i16], lag: usize) -> f64 {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for i in 0..a.len().min(b.len().saturating_sub(lag)) {
            let (x, y) = (f64::from(a[i]), f64::from(b[i + lag]));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt().max(1.0)
    }

    #[test]
    fn every_pair_of_rates_keeps_a_tone_after_its_delay() {
        for from in RATES {
            for to in RATES {
                let mut r = Resampler::new(from, to).unwrap();
                assert_eq!(r.chunk_in(), from as usize / 100);
                let input = sine(from, 1000.0, from as usize / 2);
                let mut out = Vec::with_capacity(to as usize);
                // Feed in odd pieces to exercise the carry.
                for piece in input.chunks(97) {
                    r.process(piece, &mut out);
                }
                assert_eq!(out.len(), input.len() / r.chunk_in() * r.chunk_out());
                assert!(r.pending() < r.chunk_in());
                let want = sine(to, 1000.0, out.len());
                let d = r.delay();
                let c = corr(&want[..out.len() - d - 100], &out, d);
                assert!(c > 0.99, "{from}→{to}: corr {c} at delay {d}");
            }
        }
    }

    #[test]
    fn the_reported_delay_is_where_an_impulse_comes_out() {
        for (from, to) in [
            (8000, 48000),
            (48000, 8000),
            (16000, 8000),
            (8000, 16000),
            (48000, 16000),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            let mut input = vec![0i16; from as usize / 10];
            input[0] = 20000;
            let mut out = Vec::new();
            r.process(&input, &mut out);
            let peak = (0..out.len())
                .max_by_key(|&i| out[i].unsigned_abs())
                .unwrap();
            assert_eq!(peak, r.delay(), "{from}→{to}");
        }
    }

    #[test]
    fn other_rates_are_refused_and_reset_clears_the_carry() {
        assert_eq!(
            Resampler::new(44100, 48000).err(),
            Some(ResampleError::UnsupportedRate(44100))
        );
        let mut r = Resampler::new(8000, 48000).unwrap();
        assert_eq!(r.delay(), 240);
        let mut out = Vec::new();
        assert_eq!(r.process(&[1; 50], &mut out), 0);
        assert_eq!(r.pending(), 50);
        r.reset();
        assert_eq!(r.pending(), 0);
        assert_eq!(r.process(&[0; 80], &mut out), 480);
    }
}
