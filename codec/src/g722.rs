//! ITU-T G.722 at 64 kbit/s through Debian's libspandsp (`libspandsp-dev`;
//! `g722_encode`/`g722_decode` of `<spandsp/g722.h>`, spandsp 0.0.6).
//!
//! Shapes: 16 kHz 16-bit linear audio, one byte per two samples (the two
//! sub-band codes of ITU-T G.722 §1.4), so a 20 ms frame is 320 samples ↔
//! 160 bytes. The RTP clock is 8000 although the codec samples at 16 kHz
//! (RFC 3551 §4.5.2): a 20 ms packet advances the timestamp by 160.
//!
//! The ITU-T G.722 conformance vectors (T3L*/T3H* of the G.722 test
//! sequences) are not available offline here; the tests check a round trip
//! of a two-tone signal instead (SNR > 30 dB after delay alignment).

use std::ffi::c_int;
use std::ptr::NonNull;

#[repr(C)]
struct EncState {
    _private: [u8; 0],
}

#[repr(C)]
struct DecState {
    _private: [u8; 0],
}

#[link(name = "spandsp")]
extern "C" {
    fn g722_encode_init(s: *mut EncState, rate: c_int, options: c_int) -> *mut EncState;
    fn g722_encode_free(s: *mut EncState) -> c_int;
    fn g722_encode(s: *mut EncState, g722_data: *mut u8, amp: *const i16, len: c_int) -> c_int;
    fn g722_decode_init(s: *mut DecState, rate: c_int, options: c_int) -> *mut DecState;
    fn g722_decode_free(s: *mut DecState) -> c_int;
    fn g722_decode(s: *mut DecState, amp: *mut i16, g722_data: *const u8, len: c_int) -> c_int;
}

/// Bit rate passed to spandsp: 64 kbit/s, mode 1 of ITU-T G.722 §1.
const RATE: c_int = 64000;

/// spandsp could not allocate a G.722 state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct G722InitError;

impl std::fmt::Display for G722InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("spandsp g722_*_init returned NULL")
    }
}

impl std::error::Error for G722InitError {}

/// A G.722 encoder: 16 kHz linear in, 64 kbit/s codes out (2 samples a
/// byte). Owns one spandsp `g722_encode_state_t`.
pub struct G722Encoder {
    state: NonNull<EncState>,
}

// The state is plain memory owned by this value; spandsp keeps no global
// or thread-local state for G.722.
unsafe impl Send for G722Encoder {}

impl G722Encoder {
    /// A fresh encoder (ITU-T G.722 reset state).
    ///
    /// # Errors
    /// [`G722InitError`] when spandsp cannot allocate its state.
    pub fn new() -> Result<Self, G722InitError> {
        // SAFETY: a NULL state asks spandsp to allocate one.
        let p = unsafe { g722_encode_init(std::ptr::null_mut(), RATE, 0) };
        NonNull::new(p)
            .map(|state| Self { state })
            .ok_or(G722InitError)
    }

    /// Encodes `pcm` (16 kHz) into `out`; takes the first
    /// `min(pcm.len(), 2 * out.len())` samples rounded down to an even
    /// count and returns the bytes written (half that).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = (pcm.len().min(out.len() * 2) & !1).min(c_int::MAX as usize);
        if n == 0 {
            return 0;
        }
        // SAFETY: `out` has room for n / 2 bytes, `pcm` holds n samples.
        let w = unsafe {
            g722_encode(
                self.state.as_ptr(),
                out.as_mut_ptr(),
                pcm.as_ptr(),
                n as c_int,
            )
        };
        usize::try_from(w).unwrap_or(0).min(out.len())
    }
}

impl Drop for G722Encoder {
    fn drop(&mut self) {
        // SAFETY: allocated by g722_encode_init, freed once.
        unsafe {
            g722_encode_free(self.state.as_ptr());
        }
    }
}

/// A G.722 decoder: 64 kbit/s codes in, 16 kHz linear out.
pub struct G722Decoder {
    state: NonNull<DecState>,
}

// As for the encoder.
unsafe impl Send for G722Decoder {}

impl G722Decoder {
    /// A fresh decoder.
    ///
    /// # Errors
    /// [`G722InitError`] when spandsp cannot allocate its state.
    pub fn new() -> Result<Self, G722InitError> {
        // SAFETY: a NULL state asks spandsp to allocate one.
        let p = unsafe { g722_decode_init(std::ptr::null_mut(), RATE, 0) };
        NonNull::new(p)
            .map(|state| Self { state })
            .ok_or(G722InitError)
    }

    /// Decodes `codes` into `out` (16 kHz); takes the first
    /// `min(codes.len(), out.len() / 2)` bytes and returns the samples
    /// written (twice that).
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let n = codes.len().min(out.len() / 2).min(c_int::MAX as usize / 2);
        if n == 0 {
            return 0;
        }
        // SAFETY: `out` has room for 2n samples, `codes` holds n bytes.
        let w = unsafe {
            g722_decode(
                self.state.as_ptr(),
                out.as_mut_ptr(),
                codes.as_ptr(),
                n as c_int,
            )
        };
        usize::try_from(w).unwrap_or(0).min(out.len())
    }
}

impl Drop for G722Decoder {
    fn drop(&mut self) {
        // SAFETY: allocated by g722_decode_init, freed once.
        unsafe {
            g722_decode_free(self.state.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, rate: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                    + 6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn twenty_ms_is_320_samples_and_160_bytes() {
        let mut e = G722Encoder::new().unwrap();
        let pcm = tone(320, 16000.0);
        let mut out = [0u8; 200];
        assert_eq!(e.encode(&pcm, &mut out), 160);
        let mut d = G722Decoder::new().unwrap();
        let mut back = [0i16; 400];
        assert_eq!(d.decode(&out[..160], &mut back), 320);
        // Short buffers bound the work instead of overrunning.
        assert_eq!(e.encode(&pcm, &mut out[..10]), 10);
        assert_eq!(d.decode(&out[..160], &mut back[..7]), 6);
        assert_eq!(e.encode(&pcm[..1], &mut out), 0);
    }

    #[test]
    fn a_two_tone_signal_round_trips_above_30_db() {
        let pcm = tone(16000, 16000.0);
        let mut e = G722Encoder::new().unwrap();
        let mut d = G722Decoder::new().unwrap();
        let mut back = Vec::new();
        let mut codes = [0u8; 160];
        let mut frame = [0i16; 320];
        for chunk in pcm.chunks(320) {
            let n = e.encode(chunk, &mut codes);
            let m = d.decode(&codes[..n], &mut frame);
            back.extend_from_slice(&frame[..m]);
        }
        assert_eq!(back.len(), pcm.len());
        // Find the codec's delay (QMF analysis + synthesis), then SNR.
        let skip = 800;
        let best = (0..64)
            .map(|lag| {
                let (mut s, mut n) = (0f64, 0f64);
                for i in skip..pcm.len() - 64 {
                    let x = f64::from(pcm[i]);
                    let y = f64::from(back[i + lag]);
                    s += x * x;
                    n += (x - y) * (x - y);
                }
                (10.0 * (s / n.max(1.0)).log10(), lag)
            })
            .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(best.0 > 30.0, "SNR {:.1} dB at lag {}", best.0, best.1);
    }
}
