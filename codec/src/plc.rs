//! Packet-loss concealment for the waveform codecs (G.711, G.722) by pitch
//! repetition with fade, a simplified form of ITU-T G.711 Appendix I.
//!
//! Shapes: 16-bit linear mono at the codec's rate (8 kHz for G.711,
//! 16 kHz for G.722), any frame length. Opus has its own PLC and FEC
//! ([`crate::opus::OpusDecoder::conceal`]).
//!
//! What it does, and where it departs from Appendix I:
//! - It keeps the last 30 ms of good audio. At the first lost sample it
//!   estimates the pitch period by normalised autocorrelation of the last
//!   10 ms against lags of 2.5–15 ms (Appendix I searches 5–15 ms on a
//!   2:1 decimated signal).
//! - It repeats the last pitch period (Appendix I widens the repeated
//!   buffer to two and three periods as the loss grows; this one does not).
//! - Gain: 1 for the first 10 ms of a loss, then down 20 % of full per
//!   10 ms, silent after 60 ms (as Appendix I).
//! - The first good frame after a loss is cross-faded with the synthetic
//!   signal's continuation over a quarter period (at least 1 ms).

/// History kept, ms.
const HIST_MS: usize = 30;
/// Correlation window, ms.
const WINDOW_MS: usize = 10;

/// Concealment state for one stream; see the module doc.
pub struct Plc {
    rate: usize,
    /// Last good (or concealed) samples, oldest first, `hist_cap` at most.
    hist: Vec<i16>,
    hist_cap: usize,
    /// The repeated period, fixed at the start of a loss.
    period: Vec<i16>,
    /// Samples concealed in the current loss; 0 when the last frame was good.
    lost: usize,
}

impl Plc {
    /// A concealer for mono audio at `rate` Hz (8000 or 16000 in practice;
    /// any rate ≥ 1000 works, lower ones are taken as 1000).
    pub fn new(rate: u32) -> Self {
        let rate = (rate as usize).max(1000);
        let hist_cap = rate * HIST_MS / 1000;
        Self {
            rate,
            hist: Vec::with_capacity(hist_cap * 2),
            hist_cap,
            period: Vec::with_capacity(rate * 15 / 1000 + 1),
            lost: 0,
        }
    }

    /// Whether the last call was [`Plc::conceal`].
    pub fn in_loss(&self) -> bool {
        self.lost > 0
    }

    /// Records a good frame. After a loss, its start is first cross-faded
    /// from the synthetic continuation (so `frame` is modified in place).
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.lost > 0 && !self.period.is_empty() {
            let p = self.period.len();
            let n = (p / 4).max(self.rate / 1000).min(frame.len());
            for (i, s) in frame[..n].iter_mut().enumerate() {
                let synth = f32::from(self.period[(self.lost + i) % p]) * self.gain(self.lost + i);
                let w = (i + 1) as f32 / (n + 1) as f32;
                *s = (f32::from(*s) * w + synth * (1.0 - w)) as i16;
            }
        }
        self.lost = 0;
        self.remember(frame);
    }

    /// Fills `out` with concealment for lost audio of `out.len()` samples,
    /// continuing any loss already under way.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.lost == 0 {
            self.start_loss();
        }
        if self.period.is_empty() {
            out.fill(0);
        } else {
            let p = self.period.len();
            for (i, s) in out.iter_mut().enumerate() {
                let k = self.lost + i;
                *s = (f32::from(self.period[k % p]) * self.gain(k)) as i16;
            }
        }
        self.lost += out.len();
        // Concealed audio is history too, for a loss that resumes later.
        self.remember(out);
    }

    /// Forgets everything (a new source).
    pub fn reset(&mut self) {
        self.hist.clear();
        self.period.clear();
        self.lost = 0;
    }

    fn gain(&self, k: usize) -> f32 {
        let ms10 = self.rate / 100;
        if k < ms10 {
            1.0
        } else {
            let steps = (k - ms10) as f32 / ms10 as f32;
            (1.0 - 0.2 * steps).max(0.0)
        }
    }

    fn remember(&mut self, frame: &[i16]) {
        let tail = &frame[frame.len().saturating_sub(self.hist_cap)..];
        if self.hist.len() + tail.len() > self.hist.capacity() {
            let keep = self
                .hist_cap
                .saturating_sub(tail.len())
                .min(self.hist.len());
            let from = self.hist.len() - keep;
            self.hist.copy_within(from.., 0);
            self.hist.truncate(keep);
        }
        self.hist.extend_from_slice(tail);
    }

    fn start_loss(&mut self) {
        self.period.clear();
        let h = &self.hist[self.hist.len().saturating_sub(self.hist_cap)..];
        let w = self.rate * WINDOW_MS / 1000;
        let (pmin, pmax) = (self.rate * 25 / 10_000, self.rate * 15 / 1000);
        if h.len() < w + pmax {
            // Too little history for a pitch search: repeat what there is.
            let p = h.len().min(pmax);
            self.period.extend_from_slice(&h[h.len() - p..]);
            return;
        }
        let end = h.len();
        let x = &h[end - w..];
        let mut best = (f64::MIN, pmin);
        for p in pmin..=pmax {
            let y = &h[end - w - p..end - p];
            let (mut xy, mut yy) = (0f64, 0f64);
            for (&a, &b) in x.iter().zip(y) {
                xy += f64::from(a) * f64::from(b);
                yy += f64::from(b) * f64::from(b);
            }
            let score = xy / yy.sqrt().max(1.0);
            if score > best.0 {
                best = (score, p);
            }
        }
        let p = best.1;
        self.period.extend_from_slice(&h[end - p..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 200.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn a_short_loss_of_a_periodic_signal_is_filled_in_phase() {
        let mut plc = Plc::new(8000);
        for k in 0..5 {
            let mut f = tone(160, k * 160);
            plc.good(&mut f);
        }
        let mut out = vec![0i16; 80];
        plc.conceal(&mut out);
        assert!(plc.in_loss());
        // 200 Hz at 8 kHz has a 40-sample period: the repetition matches
        // the signal that was lost.
        let want = tone(80, 800);
        let err: f64 = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / 80.0;
        assert!(err < 200.0, "mean error {err}");
    }

    #[test]
    fn a_long_loss_fades_to_silence_by_60_ms() {
        let mut plc = Plc::new(8000);
        for k in 0..5 {
            let mut f = tone(160, k * 160);
            plc.good(&mut f);
        }
        let mut out = vec![0i16; 160];
        plc.conceal(&mut out);
        let first_peak = out[..80].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(first_peak > 7000, "{first_peak}");
        let mut out2 = vec![0i16; 160];
        plc.conceal(&mut out2);
        plc.conceal(&mut out2);
        // 50–60 ms: the last fifth of the gain.
        assert!(out2[80..].iter().any(|&s| s != 0));
        // 60 ms and beyond: silent.
        plc.conceal(&mut out2);
        assert!(out2.iter().all(|&s| s == 0));
        // Back to good audio: the frame is kept (modulo the cross-fade).
        let mut f = tone(160, 2000);
        let orig = f.clone();
        plc.good(&mut f);
        assert!(!plc.in_loss());
        assert_eq!(f[20..], orig[20..]);
    }

    #[test]
    fn no_history_conceals_with_silence_and_reset_forgets() {
        let mut plc = Plc::new(16000);
        let mut out = vec![5i16; 320];
        plc.conceal(&mut out);
        assert!(out.iter().all(|&s| s == 0));
        let mut f = vec![1000i16; 10];
        plc.good(&mut f);
        plc.reset();
        assert!(!plc.in_loss());
        let mut out = vec![5i16; 16];
        plc.conceal(&mut out);
        assert!(out.iter().all(|&s| s == 0));
    }
}
