//! Loudness levelling of a mixed talker and the limiter on a room's mix.
//!
//! The leveller steers each talker's gain slowly toward a target loudness
//! within ±12 dB: −26 LUFS, telephony's nominal active speech level (−26 dBov,
//! the level ITU-T P.800 tests play speech at), not EBU R 128's −23 LUFS for
//! broadcast programmes, which would push hot phones' peaks into the limiter. Loudness is measured
//! as ITU-R BS.1770 does: K-weighting (its high shelf and high pass, designed
//! for the room's rate by the bilinear transform), mean square, −0.691 dB;
//! averaged over about 1.5 s of speech (close to R 128's 3 s short-term
//! loudness, quicker to settle on a new talker). Only frames that are speech
//! move it: frames more than 20 dB under the talker's level (pauses, breaths)
//! and frames under −60 LUFS are gated out, and the gain holds through them,
//! so a pause does not pump the noise up. The gain moves at most 4 dB/s and is
//! interpolated across each frame, so a change is never heard as a step.
//!
//! The limiter keeps the sum of the talkers from clipping: it follows the
//! mix's peak with an instant attack and a 0.5 s release, one gain for the
//! whole tick, so that everyone who hears the room's mix still shares its
//! encode. Under −1 dBFS it is unity and costs one pass over the sum.

/// Target loudness, LUFS.
pub const TARGET_LUFS: f64 = -26.0;
/// The furthest the gain goes either way, dB.
pub const RANGE_DB: f64 = 12.0;
/// Gain change per 20 ms tick at most (4 dB/s).
const SLEW_DB: f64 = 0.08;
/// Smoothing of the loudness estimate per gated tick (τ ≈ 75 ticks = 1.5 s).
const ALPHA: f64 = 1.0 / 75.0;
/// Frames this far under the estimate are not speech.
const RELATIVE_GATE_DB: f64 = 20.0;
/// Nor are frames under this.
const ABSOLUTE_GATE_LUFS: f64 = -60.0;
/// The limiter's ceiling: −1 dBFS.
const CEILING: f32 = 0.891 * 32767.0;
/// The limiter's release per tick: 0.5 s from full reduction back toward unity.
const RELEASE: f32 = 0.04;

/// A biquad in direct form I, on samples scaled to ±1.
#[derive(Debug, Clone, Copy, Default)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// BS.1770's K-weighting at `rate`: its two analogue prototypes (a high shelf
/// of +4 dB above 1.7 kHz, a high pass at 38 Hz) through the bilinear transform.
fn k_weighting(rate: u32) -> [Biquad; 2] {
    let fs = f64::from(rate);
    // stage 1: the head's high shelf
    let (f0, gain_db, q) = (
        1_681.974_450_955_533,
        3.999_843_853_973_347,
        0.707_175_236_955_419_6,
    );
    let k = (std::f64::consts::PI * f0 / fs).tan();
    let vh = 10f64.powf(gain_db / 20.0);
    let vb = vh.powf(0.499_666_774_154_541_6);
    let a0 = 1.0 + k / q + k * k;
    let shelf = Biquad {
        b: [
            (vh + vb * k / q + k * k) / a0,
            2.0 * (k * k - vh) / a0,
            (vh - vb * k / q + k * k) / a0,
        ],
        a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        ..Biquad::default()
    };
    // stage 2: the RLB high pass
    let (f0, q) = (38.135_470_876_024_44, 0.500_327_037_323_877_3);
    let k = (std::f64::consts::PI * f0 / fs).tan();
    let a0 = 1.0 + k / q + k * k;
    let high_pass = Biquad {
        b: [1.0, -2.0, 1.0],
        a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        ..Biquad::default()
    };
    [shelf, high_pass]
}

/// One talker's leveller.
#[derive(Debug, Clone)]
pub struct Leveller {
    rate: u32,
    k: [Biquad; 2],
    // loudness estimate (mean square of the K-weighted signal); None before
    // the first speech
    mean_square: Option<f64>,
    gain_db: f64,
    // the linear gain the last frame ended at
    applied: f32,
}

impl Default for Leveller {
    fn default() -> Self {
        Leveller {
            rate: 0,
            k: k_weighting(8000),
            mean_square: None,
            gain_db: 0.0,
            applied: 1.0,
        }
    }
}

/// `10 log10(mean square) − 0.691`: BS.1770's loudness of a mean square.
fn lufs(ms: f64) -> f64 {
    -0.691 + 10.0 * ms.max(1e-12).log10()
}

impl Leveller {
    /// The gain it applies now, dB.
    pub fn gain_db(&self) -> f64 {
        self.gain_db
    }

    /// Measure `frame` (20 ms at `rate`), move the gain, apply it in place.
    pub fn process(&mut self, frame: &mut [i16], rate: u32) {
        if rate != self.rate {
            // the room changed rate: the filters' state is of the old one
            self.rate = rate;
            self.k = k_weighting(rate);
        }
        let mut sum = 0.0;
        for &s in frame.iter() {
            let x = f64::from(s) / 32768.0;
            let shelved = self.k[0].run(x);
            let y = self.k[1].run(shelved);
            sum += y * y;
        }
        let ms = sum / frame.len().max(1) as f64;
        let level = lufs(ms);
        let speech = level > ABSOLUTE_GATE_LUFS
            && self
                .mean_square
                .is_none_or(|m| level > lufs(m) - RELATIVE_GATE_DB);
        if speech {
            let m = self.mean_square.map_or(ms, |m| m + ALPHA * (ms - m));
            self.mean_square = Some(m);
            let want = (TARGET_LUFS - lufs(m)).clamp(-RANGE_DB, RANGE_DB);
            self.gain_db += (want - self.gain_db).clamp(-SLEW_DB, SLEW_DB);
        }
        let to = 10f64.powf(self.gain_db / 20.0) as f32;
        ramp(frame, self.applied, to);
        self.applied = to;
    }
}

/// Scale `frame` by a gain going linearly from `from` to `to`, saturating.
fn ramp(frame: &mut [i16], from: f32, to: f32) {
    if from == 1.0 && to == 1.0 {
        return;
    }
    let step = (to - from) / frame.len().max(1) as f32;
    let mut g = from;
    for s in frame {
        g += step;
        *s = (f32::from(*s) * g).round().clamp(-32768.0, 32767.0) as i16;
    }
}

/// A room mix's limiter: one gain per tick for everyone who hears the mix.
#[derive(Debug, Clone, Copy)]
pub struct Limiter {
    gain: f32,
    from: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            gain: 1.0,
            from: 1.0,
        }
    }
}

impl Limiter {
    /// Follow a sum `acc`: the first of a tick (`fresh`) moves on from the
    /// last tick's gain; a later one (another block of the same tick) can only
    /// lower this tick's. After it, [`Limiter::mix_minus`] scales every mix
    /// taken from the sum.
    pub fn follow(&mut self, acc: &[i32], fresh: bool) {
        let peak = acc.iter().fold(0i32, |m, &v| m.max(v.saturating_abs())) as f32;
        let base = if fresh {
            self.from = self.gain;
            (self.gain + RELEASE * (1.0 - self.gain) + 1e-3).min(1.0)
        } else {
            self.gain
        };
        self.gain = if peak * base > CEILING {
            CEILING / peak
        } else {
            base
        };
    }

    /// Whether this tick's mixes are scaled at all.
    pub fn active(&self) -> bool {
        self.gain < 1.0 || self.from < 1.0
    }

    /// `out = saturate((acc − own) × gain)`, the gain ramped across the frame
    /// from the last tick's; what [`super::mixer::mix_minus`] gives when not
    /// active.
    pub fn mix_minus(&self, acc: &[i32], own: Option<&[i16]>, out: &mut [i16]) {
        if !self.active() {
            super::mixer::mix_minus(acc, own, out);
            return;
        }
        let step = (self.gain - self.from) / out.len().max(1) as f32;
        let mut g = self.from;
        for (k, (o, &a)) in out.iter_mut().zip(acc).enumerate() {
            g += step;
            let v = a - own.map_or(0, |f| i32::from(f[k]));
            *o = (v as f32 * g).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::denoise::tests::{rms_db, speech, speech_and_pauses};

    fn tone(rate: u32, f: f64, amp: f64, t: usize) -> Vec<i16> {
        let n = rate as usize / 50;
        (0..n)
            .map(|i| {
                let x = (t * n + i) as f64 / f64::from(rate);
                (amp * (2.0 * std::f64::consts::PI * f * x).sin()) as i16
            })
            .collect()
    }

    /// A 1 kHz sine at −20 dBFS RMS reads −20 LUFS (the −0.691 offsets the
    /// K-weighting's gain at 1 kHz), BS.1770's reference, at each rate.
    #[test]
    fn k_weighted_loudness_of_the_reference_tone() {
        for rate in [8000, 16000, 48000] {
            let mut k = k_weighting(rate);
            let amp = 0.1 * 2f64.sqrt();
            let mut sum = 0.0;
            let n = rate as usize;
            for i in 0..n {
                let x =
                    amp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin();
                let shelved = k[0].run(x);
                let y = k[1].run(shelved);
                if i >= n / 2 {
                    sum += y * y;
                }
            }
            let l = lufs(sum / (n / 2) as f64);
            assert!((l - -20.0).abs() < 0.3, "{rate} Hz: {l:.2} LUFS");
        }
    }

    /// Two talkers 20 dB apart end within 4 dB of each other after 5 s of
    /// speech, and the gain holds through the pauses.
    #[test]
    fn talkers_20_db_apart_meet() {
        let (loud, quiet) = (speech(1.0), speech(0.1));
        let mut a = Leveller::default();
        let mut b = Leveller::default();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for (fa, fb) in loud.chunks_exact(160).zip(quiet.chunks_exact(160)) {
            let (mut fa, mut fb) = (fa.to_vec(), fb.to_vec());
            a.process(&mut fa, 8000);
            b.process(&mut fb, 8000);
            oa.extend(fa);
            ob.extend(fb);
        }
        let (talk, _) = speech_and_pauses(&loud, 160);
        // after 5 s
        let late: Vec<usize> = talk.into_iter().filter(|&k| k >= 250).collect();
        let level = |x: &[i16]| {
            rms_db(
                &late
                    .iter()
                    .flat_map(|&k| x[k * 160..(k + 1) * 160].to_vec())
                    .collect::<Vec<_>>(),
            )
        };
        let (la, lb) = (level(&oa), level(&ob));
        let (ia, ib) = (level(&loud), level(&quiet));
        eprintln!(
            "in {ia:.1} / {ib:.1} dBFS, out {la:.1} / {lb:.1} dBFS, gains {:.1} / {:.1} dB",
            a.gain_db(),
            b.gain_db()
        );
        assert!((ia - ib - 20.0).abs() < 0.5);
        assert!((la - lb).abs() <= 4.0, "{la:.1} vs {lb:.1}");
    }

    /// Through a pause (silence, or noise far under the speech) the gain
    /// holds: nothing pumps.
    #[test]
    fn a_pause_holds_the_gain() {
        let mut l = Leveller::default();
        for t in 0..200 {
            l.process(&mut tone(8000, 400.0, 600.0, t), 8000);
        }
        let held = l.gain_db();
        assert!(held > 5.0, "a quiet talker is raised: {held:.1}");
        for t in 0..250 {
            l.process(&mut tone(8000, 400.0, 30.0, t), 8000);
            l.process(&mut vec![0; 160], 8000);
        }
        assert_eq!(l.gain_db(), held);
    }

    /// A sum that would clip is brought under −1 dBFS at once, and released
    /// slowly; a sum under it passes as it is.
    #[test]
    fn the_limiter_stops_clipping() {
        let mut lim = Limiter::default();
        let quiet = vec![10_000i32; 160];
        lim.follow(&quiet, true);
        assert!(!lim.active());
        let loud: Vec<i32> = (0..160)
            .map(|i| if i % 2 == 0 { 60_000 } else { -60_000 })
            .collect();
        lim.follow(&loud, true);
        lim.follow(&loud, true);
        let mut out = vec![0i16; 160];
        lim.mix_minus(&loud, None, &mut out);
        let peak = out.iter().map(|v| i32::from(*v).abs()).max().unwrap();
        assert!(peak <= CEILING as i32 + 1, "{peak}");
        assert!(peak > 28_000, "{peak}");
        lim.follow(&quiet, true);
        assert!(lim.active(), "released slowly");
        for _ in 0..200 {
            lim.follow(&quiet, true);
        }
        assert!(!lim.active(), "back to unity");
    }
}
