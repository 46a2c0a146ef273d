//! Goertzel single-frequency detector: the power of one frequency in a block of
//! samples, for tone checks in tests and benchmarks (and in-band DTMF detection).

/// Power of `freq` Hz in `x` sampled at `rate` Hz, normalised by the block length
/// squared (a full-scale sine of amplitude A gives about A²/4).
pub fn power(x: &[i16], rate: f64, freq: f64) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

/// [`power`] in dB (10·log10), floored at -120 dB.
pub fn power_db(x: &[i16], rate: f64, freq: f64) -> f64 {
    10.0 * power(x, rate, freq).max(1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tone_and_rejects_others() {
        let x: Vec<i16> = (0..8000)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 700.0 * f64::from(i) / 8000.0).sin()) as i16
            })
            .collect();
        let on = power_db(&x, 8000.0, 700.0);
        let off = power_db(&x, 8000.0, 1100.0);
        assert!(
            (on - 10.0 * (8000.0f64.powi(2) / 4.0).log10()).abs() < 0.5,
            "{on}"
        );
        assert!(on - off > 60.0, "{on} vs {off}");
    }
}
