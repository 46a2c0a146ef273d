//! Sample-rate conversion between the 8 kHz narrowband rate and the 48 kHz wideband
//! mixing rate (factor 6), done only at a leg's edge. A windowed-sinc low-pass
//! (Blackman, 192 taps at 48 kHz, cutoff 3.7 kHz) applied in polyphase form: the
//! upsampler computes 32 products per output sample, the downsampler 192 per output
//! sample and only for the samples it keeps. History carries across frames so frame
//! edges are seamless. No allocation after construction.

const FACTOR: usize = 6;
const TAPS: usize = 192;
const PHASE_TAPS: usize = TAPS / FACTOR;

fn design() -> Vec<f32> {
    windowed_sinc(TAPS, 3700.0 / 48000.0)
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

/// 16 kHz → 8 kHz for sound files loaded at start-up (not on the media path):
/// low-pass at 3.7 kHz, keep every other sample.
pub fn decimate_16k(input: &[i16]) -> Vec<i16> {
    let h = windowed_sinc(63, 3700.0 / 16000.0);
    let half = h.len() / 2;
    (0..input.len() / 2)
        .map(|o| {
            let centre = 2 * o;
            let acc: f32 = h
                .iter()
                .enumerate()
                .filter_map(|(k, c)| {
                    let idx = (centre + k).checked_sub(half)?;
                    input.get(idx).map(|&v| c * f32::from(v))
                })
                .sum();
            acc.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// 8 kHz ↔ 16 kHz in a stream, off the media path (a WebSocket leg at 16 kHz):
/// a 63-tap windowed sinc at 16 kHz, cutoff 3.7 kHz, with its history kept
/// across calls so frames join without a seam. One per direction.
#[derive(Debug, Clone)]
pub struct Halfband {
    h: Vec<f32>,
    ring: Vec<f32>,
    pos: usize,
}

impl Default for Halfband {
    fn default() -> Self {
        let h = windowed_sinc(63, 3700.0 / 16000.0);
        Halfband {
            ring: vec![0.0; h.len()],
            h,
            pos: 0,
        }
    }
}

impl Halfband {
    fn push(&mut self, x: f32) {
        self.pos = (self.pos + 1) % self.ring.len();
        self.ring[self.pos] = x;
    }

    fn output(&self, gain: f32) -> i16 {
        let n = self.ring.len();
        let acc: f32 = self
            .h
            .iter()
            .enumerate()
            .map(|(k, c)| c * self.ring[(self.pos + n - k) % n])
            .sum();
        (acc * gain).round().clamp(-32768.0, 32767.0) as i16
    }

    /// 16 kHz samples in, the 8 kHz ones appended to `out`.
    pub fn down(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for (i, &x) in input.iter().enumerate() {
            self.push(f32::from(x));
            if i % 2 == 1 {
                out.push(self.output(1.0));
            }
        }
    }

    /// 8 kHz samples in, the 16 kHz ones appended to `out`.
    pub fn up(&mut self, input: &[i16], out: &mut Vec<i16>) {
        for &x in input {
            self.push(f32::from(x));
            out.push(self.output(2.0));
            self.push(0.0);
            out.push(self.output(2.0));
        }
    }
}

/// 48 kHz → 16 kHz in a stream, off the media path (a 16 kHz recording of a
/// wideband room): a 96-tap windowed sinc at 48 kHz, cutoff 7.4 kHz, evaluated
/// for every third sample only.
#[derive(Debug, Clone)]
pub struct Third {
    h: Vec<f32>,
    // ring of the last taps, doubled so a window is one slice
    hist: Vec<f32>,
    pos: usize,
    phase: usize,
}

impl Default for Third {
    fn default() -> Self {
        let h = windowed_sinc(96, 7400.0 / 48000.0);
        Third {
            hist: vec![0.0; 2 * h.len()],
            h,
            pos: 0,
            phase: 0,
        }
    }
}

impl Third {
    /// 48 kHz samples in, the 16 kHz ones appended to `out`.
    pub fn down(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let taps = self.h.len();
        for &x in input {
            self.pos = (self.pos + 1) % taps;
            self.hist[self.pos] = f32::from(x);
            self.hist[self.pos + taps] = f32::from(x);
            self.phase = (self.phase + 1) % 3;
            if self.phase == 0 {
                let window = &self.hist[self.pos + 1..=self.pos + taps];
                let acc: f32 = window
                    .iter()
                    .zip(self.h.iter().rev())
                    .map(|(v, c)| v * c)
                    .sum();
                out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            }
        }
    }
}

/// 8 kHz → 48 kHz.
#[derive(Debug, Clone)]
pub struct Upsampler {
    // phases[p][k] = h[k * FACTOR + p] * FACTOR (gain restores the zero-stuffed level)
    phases: Vec<[f32; PHASE_TAPS]>,
    hist: [f32; PHASE_TAPS],
}

impl Default for Upsampler {
    fn default() -> Self {
        let h = design();
        let mut phases = vec![[0f32; PHASE_TAPS]; FACTOR];
        for (p, phase) in phases.iter_mut().enumerate() {
            for (k, c) in phase.iter_mut().enumerate() {
                *c = h[k * FACTOR + p] * FACTOR as f32;
            }
        }
        Upsampler {
            phases,
            hist: [0.0; PHASE_TAPS],
        }
    }
}

impl Upsampler {
    /// `out.len()` must be `6 * input.len()`.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        for (i, &x) in input.iter().enumerate() {
            self.hist.copy_within(0..PHASE_TAPS - 1, 1);
            self.hist[0] = f32::from(x);
            for (p, phase) in self.phases.iter().enumerate() {
                let acc: f32 = phase.iter().zip(&self.hist).map(|(c, v)| c * v).sum();
                out[i * FACTOR + p] = acc.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }
}

/// 48 kHz → 8 kHz.
#[derive(Debug, Clone)]
pub struct Downsampler {
    h: Vec<f32>,
    // ring of the last TAPS input samples, doubled so a window is one slice
    hist: Vec<f32>,
    pos: usize,
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler {
            h: design(),
            hist: vec![0.0; 2 * TAPS],
            pos: 0,
        }
    }
}

impl Downsampler {
    /// `input.len()` must be `6 * out.len()`.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        for (o, chunk) in out.iter_mut().zip(input.chunks_exact(FACTOR)) {
            for &x in chunk {
                self.pos = (self.pos + 1) % TAPS;
                self.hist[self.pos] = f32::from(x);
                self.hist[self.pos + TAPS] = f32::from(x);
            }
            // newest sample at pos+TAPS, oldest at pos+1
            let window = &self.hist[self.pos + 1..=self.pos + TAPS];
            let acc: f32 = window
                .iter()
                .zip(self.h.iter().rev())
                .map(|(v, c)| v * c)
                .sum();
            *o = acc.round().clamp(-32768.0, 32767.0) as i16;
        }
    }
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
    fn halfband_keeps_speech_band_both_ways_in_frames() {
        let (mut up, mut down) = (Halfband::default(), Halfband::default());
        let input = tone(8000.0, 1000.0, 1600);
        let mut wide = Vec::new();
        for f in input.chunks(160) {
            up.up(f, &mut wide);
        }
        assert_eq!(wide.len(), 3200);
        let r = rms(&wide[320..]) / rms(&input[160..]);
        assert!((0.9..1.1).contains(&r), "up gain {r}");
        let mut narrow = Vec::new();
        for f in wide.chunks(320) {
            down.down(f, &mut narrow);
        }
        assert_eq!(narrow.len(), 1600);
        let r = rms(&narrow[320..]) / rms(&input[160..]);
        assert!((0.9..1.1).contains(&r), "round trip gain {r}");
        // 6 kHz at 16 kHz has no place at 8 kHz
        let mut out = Vec::new();
        Halfband::default().down(&tone(16000.0, 6000.0, 3200), &mut out);
        assert!(rms(&out[160..]) < 0.01 * 7071.0, "{}", rms(&out[160..]));
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
