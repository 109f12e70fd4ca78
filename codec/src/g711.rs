//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA), table-driven.
//!
//! Shapes: one 8-bit code per sample, 8 kHz, RTP clock 8000 (RFC 3551
//! §4.5.14); a 20 ms frame is 160 samples ↔ 160 bytes. Linear samples are
//! 16-bit two's complement PCM: G.711's 14-bit (µ-law) and 13-bit (A-law)
//! uniform values scaled by 4 and 8, so full scale is ±32124 (µ-law) and
//! ±32256 (A-law).
//!
//! Encoding looks the sample up in a 16 KiB (µ-law, indexed by the top 14
//! bits) or 8 KiB (A-law, top 13 bits) table built at compile time; decoding
//! is a 256-entry table. The tables follow G.711's segment definition
//! (Tables 1a/1b and 2a/2b): eight segments of sixteen steps, the step
//! doubling per segment, a polarity bit of 1 for positive values; the
//! transmitted µ-law character has its seven magnitude bits inverted, the
//! A-law character its even bits (XOR 0x55).

/// µ-law bias in 14-bit units (G.711 Table 2a's 33).
const ULAW_BIAS: i32 = 33;
/// Largest µ-law 14-bit magnitude before the bias (8159 + 33 = 8192).
const ULAW_CLIP: i32 = 8159;

const fn ulaw_encode14(x14: i32) -> u8 {
    let (mag, mask) = if x14 < 0 { (-x14, 0x7F) } else { (x14, 0xFF) };
    let mag = if mag > ULAW_CLIP { ULAW_CLIP } else { mag } + ULAW_BIAS;
    // Segment: position of the top bit of mag, 0 for mag < 64.
    let mut seg = 0;
    while seg < 8 && mag > (0x40 << seg) - 1 {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = (seg << 4) as u8 | ((mag >> (seg + 1)) & 0x0F) as u8;
    code ^ mask
}

const fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let q = (u & 0x0F) as i32;
    let seg = ((u >> 4) & 0x07) as i32;
    // G.711 Table 2a: reconstruction magnitude ((2q + 33) << seg) - 33 in
    // 14-bit units.
    let mag = ((2 * q + 33) << seg) - ULAW_BIAS;
    // The transmitted polarity bit is 1 for positive (0 once inverted).
    let v = if u & 0x80 == 0 { mag } else { -mag };
    (v * 4) as i16
}

const fn alaw_encode13(x13: i32) -> u8 {
    let (mag, mask) = if x13 >= 0 {
        (x13, 0xD5u8)
    } else {
        (-x13 - 1, 0x55u8)
    };
    let mut seg = 0;
    while seg < 8 && mag > (0x20 << seg) - 1 {
        seg += 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let q = if seg < 2 {
        (mag >> 1) & 0x0F
    } else {
        (mag >> seg) & 0x0F
    };
    ((seg << 4) as u8 | q as u8) ^ mask
}

const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let q = (a & 0x0F) as i32;
    let seg = ((a >> 4) & 0x07) as i32;
    // G.711 Table 1a: reconstruction magnitude 2q + 1 in segment 0,
    // (2q + 33) << (seg - 1) above, in 12-bit units; ×8 to 16 bits.
    let mag = if seg == 0 {
        2 * q + 1
    } else {
        (2 * q + 33) << (seg - 1)
    };
    let v = if a & 0x80 != 0 { mag } else { -mag };
    (v * 8) as i16
}

const fn build_ulaw_enc() -> [u8; 16384] {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        // Index i is the 14-bit sample (x >> 2) offset by 8192.
        t[i] = ulaw_encode14(i as i32 - 8192);
        i += 1;
    }
    t
}

const fn build_alaw_enc() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode13(i as i32 - 4096);
        i += 1;
    }
    t
}

const fn build_dec(ulaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if ulaw {
            ulaw_decode(i as u8)
        } else {
            alaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_ENC: [u8; 16384] = build_ulaw_enc();
static ALAW_ENC: [u8; 8192] = build_alaw_enc();
static ULAW_DEC: [i16; 256] = build_dec(true);
static ALAW_DEC: [i16; 256] = build_dec(false);

/// µ-law code of one 16-bit linear sample (G.711 Table 2a/2b). Values past
/// ±32124 clip to the outermost code.
#[inline]
pub fn ulaw_from_linear(x: i16) -> u8 {
    ULAW_ENC[((x >> 2) as i32 + 8192) as usize]
}

/// 16-bit linear value of one µ-law code (G.711 Table 2a/2b), ±32124 at
/// most; 0xFF is +0 and 0x7F is −0, both decode to 0.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_DEC[code as usize]
}

/// A-law code of one 16-bit linear sample (G.711 Table 1a/1b, even bits
/// inverted).
#[inline]
pub fn alaw_from_linear(x: i16) -> u8 {
    ALAW_ENC[((x >> 3) as i32 + 4096) as usize]
}

/// 16-bit linear value of one A-law code (G.711 Table 1a/1b), ±32256 at
/// most and never 0 (the smallest magnitude is 8).
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_DEC[code as usize]
}

/// Encodes `pcm` (8 kHz, one sample per code) into `out` as µ-law; writes
/// `min(pcm.len(), out.len())` codes and returns that count.
pub fn ulaw_encode(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &x) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = ulaw_from_linear(x);
    }
    n
}

/// Decodes µ-law `codes` into `out` (8 kHz linear); writes
/// `min(codes.len(), out.len())` samples and returns that count.
pub fn ulaw_decode_into(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = ulaw_to_linear(c);
    }
    n
}

/// Encodes `pcm` into `out` as A-law; same counts as [`ulaw_encode`].
pub fn alaw_encode(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &x) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = alaw_from_linear(x);
    }
    n
}

/// Decodes A-law `codes` into `out`; same counts as [`ulaw_decode_into`].
pub fn alaw_decode_into(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = alaw_to_linear(c);
    }
    n
}

/// µ-law code → A-law code without a trip through the linear domain's
/// tables at call time (G.711 §4 allows direct µ↔A conversion; this one
/// goes through the 16-bit value, so it is the composition of the two
/// tables above).
#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    alaw_from_linear(ulaw_to_linear(code))
}

/// A-law code → µ-law code; the composition of [`alaw_to_linear`] and
/// [`ulaw_from_linear`].
#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ulaw_from_linear(alaw_to_linear(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711 Table 2a, written from the standard's definition rather than
    /// the implementation: segment s (0..=7) and step q (0..=15) give the
    /// 14-bit reconstruction magnitude ((2q + 33)·2^s) − 33; the
    /// transmitted character is the polarity bit (1 = positive) then s and
    /// q with their bits inverted.
    fn itu_ulaw(code: u8) -> i32 {
        let c = !code;
        let (p, s, q) = (code >> 7, i32::from((c >> 4) & 7), i32::from(c & 15));
        let m = (2 * q + 33) * (1 << s) - 33;
        4 * if p == 1 { m } else { -m }
    }

    /// G.711 Table 1a: segment 0 reconstructs 2q + 1, segment s ≥ 1
    /// (2q + 33)·2^(s−1), in 12-bit units; even bits inverted (XOR 0x55).
    fn itu_alaw(code: u8) -> i32 {
        let c = code ^ 0x55;
        let (p, s, q) = (c >> 7, i32::from((c >> 4) & 7), i32::from(c & 15));
        let m = if s == 0 {
            2 * q + 1
        } else {
            (2 * q + 33) * (1 << (s - 1))
        };
        8 * if p == 1 { m } else { -m }
    }

    #[test]
    fn every_ulaw_code_decodes_to_the_standard_value() {
        for c in 0..=255u8 {
            assert_eq!(i32::from(ulaw_to_linear(c)), itu_ulaw(c), "code {c:#04x}");
        }
        // Known points: 0xFF = +0, 0x80 = +8031·4, 0x00 = −8031·4.
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
    }

    #[test]
    fn every_alaw_code_decodes_to_the_standard_value() {
        for c in 0..=255u8 {
            assert_eq!(i32::from(alaw_to_linear(c)), itu_alaw(c), "code {c:#04x}");
        }
        // 0xD5 is the smallest positive value (1 in 12-bit units: 0x80 ^ 0x55).
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
    }

    #[test]
    fn encode_of_each_decoded_value_round_trips() {
        for c in 0..=255u8 {
            // −0 (0x7F) has no linear value of its own: it encodes as +0.
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_from_linear(ulaw_to_linear(c)), want, "µ {c:#04x}");
            assert_eq!(alaw_from_linear(alaw_to_linear(c)), c, "A {c:#04x}");
        }
    }

    #[test]
    fn every_linear_value_lands_in_its_own_quantization_interval() {
        // For each 16-bit input, the chosen code's reconstruction is within
        // half a step (plus the table's 4 or 8 LSB input truncation) of it,
        // unless the input is past the outermost level (clipping).
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let cu = ulaw_from_linear(x);
            let s = i32::from(((!cu) >> 4) & 7);
            let half_step = 4 * (1 << (s + 1)) / 2;
            let e = (i32::from(ulaw_to_linear(cu)) - xi).abs();
            if xi.abs() <= 32124 {
                assert!(e <= half_step + 4, "µ x={x} err={e}");
            }
            let ca = alaw_from_linear(x);
            let s = i32::from(((ca ^ 0x55) >> 4) & 7);
            let half_step = 8 * (1 << s.max(1)) / 2;
            let e = (i32::from(alaw_to_linear(ca)) - xi).abs();
            if xi.abs() <= 32256 {
                assert!(e <= half_step + 8, "A x={x} err={e}");
            }
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(ulaw_from_linear(x));
            let a = alaw_to_linear(alaw_from_linear(x));
            assert!(u >= last_u && a >= last_a, "x={x}");
            last_u = u;
            last_a = a;
        }
    }

    #[test]
    fn ulaw_alaw_direct_conversion_matches_the_linear_path() {
        for c in 0..=255u8 {
            let a = ulaw_to_alaw(c);
            let d = (i32::from(alaw_to_linear(a)) - i32::from(ulaw_to_linear(c))).abs();
            // Within one A-law step of the segment.
            assert!(d <= 1024, "µ {c:#04x} → A {a:#04x}: {d}");
        }
        let pcm = [0i16, 1000, -1000, 32000, -32000];
        let mut u = [0u8; 5];
        let mut back = [0i16; 5];
        assert_eq!(ulaw_encode(&pcm, &mut u), 5);
        assert_eq!(ulaw_decode_into(&u, &mut back), 5);
        assert!(back.iter().zip(&pcm).all(|(a, b)| (a - b).abs() < 1100));
        assert_eq!(alaw_encode(&pcm, &mut u[..3]), 3);
    }
}
