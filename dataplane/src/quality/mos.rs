//! MOS from the E-model (ITU-T G.107), simplified for G.711 as ITU-T G.113
//! Appendix I allows: only delay, packet loss and jitter vary, every other
//! parameter at its G.107 default.
//!
//! ```text
//! R    = R0 − Is − Id − Ie_eff (+ A = 0)      with R0 − Is = 93.2 (G.107 defaults)
//! Ta   = one-way delay + jitter-buffer delay,  the latter estimated as 2 × jitter + 10 ms
//! Id   ≈ Idd = 0                                                       for Ta ≤ 100 ms
//!      = 25 · ((1 + X⁶)^⅙ − 3 · (1 + (X/3)⁶)^⅙ + 2),  X = log2(Ta / 100 ms)  otherwise
//!        (G.107 §7.3, eq. 7-27/7-28, mT = 100 ms, sT = 1; talker echo at its default)
//! Ie_eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)                  (G.107 eq. 7-29)
//!        G.711: Ie = 0, Bpl = 25.1 with packet-loss concealment, 4.3 without
//!        (G.113 Appendix I, Table I.3); random loss: BurstR = 1; Ppl in percent
//! MOS  = 1                                             for R ≤ 0
//!      = 1 + 0.035 R + R (R − 60) (100 − R) · 7·10⁻⁶  for 0 < R < 100 (G.107 Annex B)
//!      = 4.5                                           for R ≥ 100
//! ```
//!
//! With no impairment (`Ta` = 10 ms, no loss) R = 93.2 and MOS ≈ 4.41,
//! the G.711 ceiling. The MOS is clamped at 1 from below, since the cubic
//! dips to 0.99 near R = 3.

/// `R0 − Is` at the G.107 default parameters.
pub const R_DEFAULT: f64 = 93.2;

/// The codec-dependent E-model parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Codec {
    /// Equipment impairment factor `Ie`.
    pub ie: f64,
    /// Packet-loss robustness factor `Bpl`.
    pub bpl: f64,
}

/// G.711 with packet-loss concealment (G.113 Appendix I).
pub const G711_PLC: Codec = Codec { ie: 0.0, bpl: 25.1 };
/// G.711 without packet-loss concealment (G.113 Appendix I).
pub const G711_NO_PLC: Codec = Codec { ie: 0.0, bpl: 4.3 };

/// Sanitizes a measurement: NaN or negative reads as 0.
fn nonneg(v: f64) -> f64 {
    if v.is_nan() || v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The delay impairment `Idd` for a mouth-to-ear delay `ta_ms`, ms
/// (G.107 eq. 7-27/7-28).
pub fn delay_impairment(ta_ms: f64) -> f64 {
    let ta = nonneg(ta_ms);
    if ta <= 100.0 {
        return 0.0;
    }
    let x = (ta / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// The effective equipment impairment `Ie_eff` of `codec` at a random
/// loss of `loss_fraction` (0..=1) of packets (G.107 eq. 7-29, BurstR = 1).
pub fn loss_impairment(codec: Codec, loss_fraction: f64) -> f64 {
    let ppl = nonneg(loss_fraction).min(1.0) * 100.0;
    codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl)
}

/// The R factor of `codec` at a one-way network delay `one_way_delay_ms`
/// (ms; e.g. RTT / 2 from RTCP), a loss of `loss_fraction` (0..=1) and an
/// interarrival jitter `jitter_ms` (ms, RFC 3550 A.8), which adds a
/// jitter-buffer delay of 2 × jitter + 10 ms. NaN or negative inputs read
/// as 0; the loss is capped at 1.
///
/// Range: at most 93.2 (G.107's default R with no impairment), and not
/// bounded below: heavy loss or delay take it under 0 (100 % loss alone
/// gives 93.2 − 95 = −1.8, and `Idd` grows with the log of the delay).
/// [`mos_from_r`] reads every R ≤ 0 as MOS 1.
pub fn r_factor_with(
    codec: Codec,
    one_way_delay_ms: f64,
    loss_fraction: f64,
    jitter_ms: f64,
) -> f64 {
    let ta = nonneg(one_way_delay_ms) + 2.0 * nonneg(jitter_ms) + 10.0;
    R_DEFAULT - delay_impairment(ta) - loss_impairment(codec, loss_fraction)
}

/// [`r_factor_with`] for G.711 with packet-loss concealment.
pub fn r_factor(one_way_delay_ms: f64, loss_fraction: f64, jitter_ms: f64) -> f64 {
    r_factor_with(G711_PLC, one_way_delay_ms, loss_fraction, jitter_ms)
}

/// The MOS (1.0..=4.5) of an R factor (G.107 Annex B), clamped at 1.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

/// The E-model MOS of a G.711 call (with packet-loss concealment): see
/// [`r_factor`] for the inputs; ≈ 4.41 with no impairment.
pub fn mos_g711(one_way_delay_ms: f64, loss_fraction: f64, jitter_ms: f64) -> f64 {
    mos_from_r(r_factor(one_way_delay_ms, loss_fraction, jitter_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_impairment_is_about_4_4() {
        let m = mos_g711(0.0, 0.0, 0.0);
        assert!((m - 4.41).abs() < 0.01, "{m}");
        assert!((r_factor(0.0, 0.0, 0.0) - 93.2).abs() < 1e-9);
    }

    #[test]
    fn mos_falls_strictly_as_loss_rises() {
        let mut prev = f64::INFINITY;
        for pct in 0..=100 {
            let m = mos_g711(20.0, f64::from(pct) / 100.0, 5.0);
            assert!(m < prev, "loss {pct} %: {m} not below {prev}");
            prev = m;
        }
        // Known points: 1 % random loss with PLC costs about 3.6 R points,
        // 5 % about 15.
        assert!((loss_impairment(G711_PLC, 0.01) - 3.64).abs() < 0.01);
        assert!((loss_impairment(G711_PLC, 0.05) - 15.8).abs() < 0.1);
        // Without concealment loss hurts more.
        assert!(loss_impairment(G711_NO_PLC, 0.01) > 3.0 * loss_impairment(G711_PLC, 0.01));
    }

    #[test]
    fn mos_is_monotone_in_delay_and_jitter() {
        let mut prev = f64::INFINITY;
        for d in (0..=800).step_by(10) {
            let m = mos_g711(f64::from(d), 0.01, 0.0);
            assert!(m <= prev, "delay {d} ms");
            // Past 100 ms of mouth-to-ear delay it falls strictly.
            if d > 100 {
                assert!(m < prev, "delay {d} ms");
            }
            prev = m;
        }
        assert!(mos_g711(50.0, 0.0, 80.0) < mos_g711(50.0, 0.0, 10.0));
        // 400 ms one way is "many users dissatisfied" territory (R < 60).
        assert!(r_factor(400.0, 0.0, 0.0) < 70.0);
    }

    #[test]
    fn bad_inputs_do_not_escape_the_range() {
        for v in [f64::NAN, -1.0, f64::INFINITY, 1e12] {
            let m = mos_g711(v, v, v);
            assert!((1.0..=4.5).contains(&m), "{v}: {m}");
        }
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(3.0), 1.0, "the cubic's dip is clamped");
        assert_eq!(mos_from_r(120.0), 4.5);
    }
}
