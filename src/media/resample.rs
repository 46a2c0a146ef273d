//! Sample-rate conversion by whole factors between the rates media lives at:
//! 8 kHz (G.711), 16 kHz (G.722) and 48 kHz (Opus, the wideband mix), done only
//! at a leg's edge and in a recording's writer. A Blackman-windowed sinc with 32
//! taps per phase, cut off just below the lower rate's Nyquist frequency (3.7 kHz
//! for 8 kHz, 7.4 kHz for 16 kHz), applied in polyphase form: the upsampler
//! computes 32 products per output sample, the downsampler `32 * factor` and only
//! for the samples it keeps. History carries across frames so frame edges are
//! seamless; no allocation after construction unless the factor changes (the room
//! changed rate). Sound files at any rate come to 8 kHz by [`to_8k`], off the
//! media path.

/// Taps of each polyphase branch.
const PHASE_TAPS: usize = 32;

/// The low-pass for a conversion by `factor`, at the higher rate: cut off at
/// 92.5 % of the lower rate's Nyquist frequency.
fn design(factor: usize) -> Vec<f32> {
    windowed_sinc(PHASE_TAPS * factor, 0.4625 / factor as f64)
}

/// Blackman-windowed sinc low-pass with `taps` taps and cutoff `fc` (cycles/sample),
/// normalised to unity gain.
fn windowed_sinc(taps: usize, fc: f64) -> Vec<f32> {
    let m = (taps - 1) as f64;
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let x = n as f64 - m / 2.0;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / m).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * n as f64 / m).cos();
            sinc * w
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for v in &mut h {
        *v /= sum;
    }
    h.into_iter().map(|v| v as f32).collect()
}

/// Any rate → 8 kHz for sound files and speech loaded off the media path (an
/// MP3 at 44.1 kHz, speech at 22.05 kHz): a Blackman-windowed sinc at 3.7 kHz,
/// evaluated at each output instant (no rational ratio needed).
pub fn to_8k(input: &[i16], rate: u32) -> Vec<i16> {
    if rate == 8000 || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(rate) / 8000.0;
    // the cutoff is at the lower of the two Nyquist rates; 16 zero crossings a side
    let fc = 3700.0 / f64::from(rate.max(8000));
    let half = (16.0 / (2.0 * fc)).ceil() as i64;
    let m = (2 * half) as f64;
    let n_out = (input.len() as f64 / ratio) as usize;
    (0..n_out)
        .map(|j| {
            let t = j as f64 * ratio;
            let c = t.floor() as i64;
            let (mut acc, mut norm) = (0.0f64, 0.0f64);
            for k in (c - half + 1)..=(c + half) {
                let x = t - k as f64;
                let sinc = if x.abs() < 1e-9 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let n = x + m / 2.0;
                let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * n / m).cos()
                    + 0.08 * (4.0 * std::f64::consts::PI * n / m).cos();
                let h = sinc * w;
                norm += h;
                if let Some(&v) = usize::try_from(k).ok().and_then(|k| input.get(k)) {
                    acc += h * f64::from(v);
                }
            }
            (acc / norm.max(1e-9)).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// A rate raised by a whole factor (8 → 16, 16 → 48, 8 → 48 kHz).
#[derive(Debug, Clone)]
pub struct Upsampler {
    factor: usize,
    // phases[p * PHASE_TAPS + k] = h[k * factor + p] * factor (the gain restores
    // the level the zero-stuffing took)
    phases: Vec<f32>,
    hist: [f32; PHASE_TAPS],
}

impl Default for Upsampler {
    /// 8 → 48 kHz, the common case of a narrowband leg in a wideband room.
    fn default() -> Self {
        Upsampler::new(6)
    }
}

impl Upsampler {
    /// Raising the rate `factor` times.
    pub fn new(factor: usize) -> Upsampler {
        let factor = factor.max(1);
        let h = design(factor);
        let mut phases = vec![0f32; factor * PHASE_TAPS];
        for p in 0..factor {
            for k in 0..PHASE_TAPS {
                phases[p * PHASE_TAPS + k] = h[k * factor + p] * factor as f32;
            }
        }
        Upsampler {
            factor,
            phases,
            hist: [0.0; PHASE_TAPS],
        }
    }

    /// `input` raised into `out`, whose length is a whole multiple of
    /// `input.len()`: that multiple is the factor, and a factor other than the
    /// last starts afresh.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let Some(factor) = ratio(out.len(), input.len()) else {
            out.fill(0);
            return;
        };
        if factor != self.factor {
            *self = Upsampler::new(factor);
        }
        for (x, o) in input.iter().zip(out.chunks_exact_mut(factor)) {
            self.hist.copy_within(0..PHASE_TAPS - 1, 1);
            self.hist[0] = f32::from(*x);
            for (v, phase) in o.iter_mut().zip(self.phases.chunks_exact(PHASE_TAPS)) {
                let acc: f32 = phase.iter().zip(&self.hist).map(|(c, v)| c * v).sum();
                *v = acc.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }
}

/// A rate lowered by a whole factor (48 → 8, 48 → 16, 16 → 8 kHz).
#[derive(Debug, Clone)]
pub struct Downsampler {
    factor: usize,
    h: Vec<f32>,
    // ring of the last `h.len()` input samples, doubled so a window is one slice
    hist: Vec<f32>,
    pos: usize,
    // input samples since the last one kept
    phase: usize,
}

impl Default for Downsampler {
    /// 48 → 8 kHz.
    fn default() -> Self {
        Downsampler::new(6)
    }
}

impl Downsampler {
    /// Lowering the rate `factor` times.
    pub fn new(factor: usize) -> Downsampler {
        let factor = factor.max(1);
        let h = design(factor);
        Downsampler {
            factor,
            hist: vec![0.0; 2 * h.len()],
            h,
            pos: 0,
            phase: 0,
        }
    }

    /// `input`, whose length is a whole multiple of `out.len()`, lowered into
    /// `out`: that multiple is the factor, and a factor other than the last
    /// starts afresh.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let Some(factor) = ratio(input.len(), out.len()) else {
            out.fill(0);
            return;
        };
        if factor != self.factor {
            *self = Downsampler::new(factor);
        }
        self.phase = 0;
        for (o, chunk) in out.iter_mut().zip(input.chunks_exact(factor)) {
            for &x in chunk {
                self.push(x);
            }
            *o = self.output();
        }
    }

    /// Any number of input samples; the kept ones appended to `out` (a stream
    /// whose frames need not be whole multiples of the factor).
    pub fn extend(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &x in input {
            self.push(x);
            self.phase += 1;
            if self.phase == self.factor {
                self.phase = 0;
                out.push(self.output());
            }
        }
    }

    fn push(&mut self, x: i16) {
        let taps = self.h.len();
        self.pos = (self.pos + 1) % taps;
        self.hist[self.pos] = f32::from(x);
        self.hist[self.pos + taps] = f32::from(x);
    }

    fn output(&self) -> i16 {
        // newest sample at pos+taps, oldest at pos+1
        let taps = self.h.len();
        let window = &self.hist[self.pos + 1..=self.pos + taps];
        let acc: f32 = window
            .iter()
            .zip(self.h.iter().rev())
            .map(|(v, c)| v * c)
            .sum();
        acc.round().clamp(-32768.0, 32767.0) as i16
    }
}

/// `long / short` when it is a whole number of at least 1.
fn ratio(long: usize, short: usize) -> Option<usize> {
    (short > 0 && long >= short && long.is_multiple_of(short)).then(|| long / short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_rate_comes_to_8k_keeping_the_band_and_dropping_what_is_above() {
        for rate in [22_050u32, 44_100, 48_000] {
            let tone = |f: f64| -> Vec<i16> {
                (0..rate as usize)
                    .map(|i| {
                        (8000.0
                            * (2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate)).sin())
                            as i16
                    })
                    .collect()
            };
            let out = to_8k(&tone(1000.0), rate);
            assert!(
                (out.len() as i64 - 8000).abs() <= 1,
                "{rate}: {}",
                out.len()
            );
            let kept = crate::media::goertzel::power_db(&out[400..7600], 8000.0, 1000.0);
            assert!(
                (kept - 10.0 * (8000.0f64.powi(2) / 4.0).log10()).abs() < 1.0,
                "{rate}: {kept}"
            );
            // 5 kHz would alias to 3 kHz: it must be gone
            let out = to_8k(&tone(5000.0), rate);
            let alias = crate::media::goertzel::power_db(&out[400..7600], 8000.0, 3000.0);
            assert!(alias < kept - 50.0, "{rate}: alias {alias}");
        }
    }

    fn tone(rate: f32, f: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (10000.0 * (2.0 * std::f32::consts::PI * f * i as f32 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f32 {
        (x.iter().map(|&v| f32::from(v).powi(2)).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn every_factor_keeps_the_lower_band_both_ways_in_frames() {
        // (factor, low rate, a tone in band, a tone above the low rate's band)
        for (factor, low, f, above) in [
            (2usize, 8000.0f32, 1000.0f32, 6000.0f32),
            (3, 16000.0, 6000.0, 10000.0),
            (6, 8000.0, 1000.0, 10000.0),
        ] {
            let frame = (low / 50.0) as usize;
            let (mut up, mut down) = (Upsampler::new(factor), Downsampler::new(factor));
            let input = tone(low, f, 10 * frame);
            let mut wide = vec![0i16; input.len() * factor];
            for (i, o) in input.chunks(frame).zip(wide.chunks_mut(frame * factor)) {
                up.process(i, o);
            }
            let r = rms(&wide[2 * frame * factor..]) / rms(&input[2 * frame..]);
            assert!((0.9..1.1).contains(&r), "x{factor} up gain {r}");
            let mut narrow = vec![0i16; input.len()];
            for (i, o) in wide.chunks(frame * factor).zip(narrow.chunks_mut(frame)) {
                down.process(i, o);
            }
            let r = rms(&narrow[2 * frame..]) / rms(&input[2 * frame..]);
            assert!((0.9..1.1).contains(&r), "x{factor} round trip gain {r}");
            // what has no place at the lower rate is gone, not folded back
            let mut out = Vec::new();
            Downsampler::new(factor).extend(
                &tone(low * factor as f32, above, 10 * frame * factor),
                &mut out,
            );
            assert_eq!(out.len(), 10 * frame);
            assert!(
                rms(&out[frame..]) < 0.01 * 7071.0,
                "x{factor}: {}",
                rms(&out[frame..])
            );
        }
    }

    #[test]
    fn a_new_factor_starts_afresh() {
        // a room going from 48 to 16 kHz: the same resampler, a new factor
        let mut down = Downsampler::default();
        let mut out = vec![0i16; 160];
        down.process(&tone(48000.0, 1000.0, 960), &mut out);
        let mut out = vec![0i16; 320];
        for _ in 0..3 {
            down.process(&tone(48000.0, 1000.0, 960), &mut out);
        }
        let r = rms(&out[64..]) / 7071.0;
        assert!((0.9..1.1).contains(&r), "down gain {r}");
        let mut up = Upsampler::default();
        let mut wide = vec![0i16; 960];
        for _ in 0..3 {
            up.process(&tone(16000.0, 1000.0, 320), &mut wide);
        }
        let r = rms(&wide[192..]) / 7071.0;
        assert!((0.9..1.1).contains(&r), "up gain {r}");
        // not a whole factor: silence, not a panic
        up.process(&[1; 7], &mut wide[..10]);
        assert!(wide[..10].iter().all(|&v| v == 0));
    }

    #[test]
    fn passband_kept_stopband_removed() {
        let mut up = Upsampler::default();
        let input = tone(8000.0, 1000.0, 800);
        let mut out = vec![0i16; 4800];
        up.process(&input, &mut out);
        let r = rms(&out[960..]) / rms(&input[160..]);
        assert!((0.9..1.1).contains(&r), "up gain {r}");

        let mut down = Downsampler::default();
        let mut out = vec![0i16; 800];
        down.process(&tone(48000.0, 1000.0, 4800), &mut out);
        let r = rms(&out[160..]) / 7071.0;
        assert!((0.9..1.1).contains(&r), "down gain {r}");
        // 10 kHz would alias to 2 kHz without the filter
        let mut down = Downsampler::default();
        down.process(&tone(48000.0, 10000.0, 4800), &mut out);
        assert!(rms(&out[160..]) < 100.0, "alias {}", rms(&out[160..]));
    }
}
