//! Noise suppression of one mixed talker: RNNoise (Valin, "A Hybrid DSP/Deep
//! Learning Approach to Real-Time Full-Band Speech Enhancement", 2018) by
//! nnnoiseless, its kept pure-Rust port, which allocates nothing per frame and
//! shares one model among all legs (a talker's suppressor, RNNoise's state and
//! its 48 kHz buffers, is ~30 KiB, made the first time the leg is mixed). RNNoise works on 10 ms frames at 48 kHz; a room's
//! 20 ms frame at 8 or 16 kHz is raised to 48 kHz and lowered back with
//! `media::resample`, whose filters pass the band the codec carried.
//!
//! RNNoise delays its output by one 10 ms frame. The tick's frame is replaced in
//! place, so a talker's own frame and the one the room mixed stay the same
//! samples (mix-minus stays exact); a leg that was not denoised last tick (not
//! mixed, or over the worker's budget) holds a stale tail from its last
//! talkspurt, so its first 10 ms after a gap fade in from silence.
//!
//! A steady pure tone is not background noise but a signal someone meant (a
//! test tone, an alert, a tone-based tool); RNNoise, trained on speech and
//! noise, passes some and removes others (1.3 and 1.5 kHz by 25-50 dB). A
//! talker whose frames are each one sinusoid (its frequency from the recurrence
//! every sinusoid obeys, and a Goertzel filter there holding 90 % of the
//! frame's energy) for three ticks running is passed as it came, delayed like
//! RNNoise's output so that going in and out of that is seamless.

use std::sync::LazyLock;

use nnnoiseless::{DenoiseState, RnnModel};

use super::frame::MAX_FRAME;
use super::resample::{Downsampler, Upsampler};

/// RNNoise's frame: 10 ms at 48 kHz.
const HALF: usize = DenoiseState::FRAME_SIZE;
/// A tick at 48 kHz.
const WIDE: usize = 2 * HALF;
const _: () = assert!(WIDE == MAX_FRAME);

/// Share of a frame's energy at one frequency that makes it a pure tone.
const TONE_SHARE: f64 = 0.9;
/// Ticks in a row of pure tone (or not) that switch the bypass.
const TONE_TICKS: u8 = 3;

/// Whether `frame` is one sinusoid: its frequency from the three-term
/// recurrence every sinusoid obeys (x[n−1] + x[n+1] = 2cos(w)·x[n], solved in
/// least squares), and the share of the frame's energy a Goertzel filter
/// finds there.
fn is_tone(frame: &[i16]) -> bool {
    let n = frame.len();
    if n < 3 {
        return false;
    }
    let (mut cross, mut inner) = (0f64, 0f64);
    for k in 1..n - 1 {
        let x = f64::from(frame[k]);
        cross += x * (f64::from(frame[k - 1]) + f64::from(frame[k + 1]));
        inner += x * x;
    }
    let energy: f64 = frame.iter().map(|&x| f64::from(x).powi(2)).sum();
    // silence, or too quiet to matter
    if energy < n as f64 * 100.0 || inner <= 0.0 {
        return false;
    }
    let coeff = (cross / inner).clamp(-2.0, 2.0); // 2cos(w)
    let (mut s1, mut s2) = (0f64, 0f64);
    for &x in frame {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // a sinusoid of energy e over n samples gives power ≈ e·n/2
    2.0 * power / (n as f64 * energy) >= TONE_SHARE
}

/// The network's weights: built once, shared by every leg's state.
static MODEL: LazyLock<RnnModel> = LazyLock::new(RnnModel::default);

/// One talker's suppressor.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    up: Upsampler,
    down: Downsampler,
    wide: [i16; WIDE],
    input: [f32; WIDE],
    output: [f32; WIDE],
    // the tick it last ran, to tell a continuation from a fresh spurt
    last_tick: Option<u64>,
    // the input's last 10 ms at 48 kHz: the input as late as RNNoise's output
    dry: [f32; HALF],
    // passing a pure tone as it came, and the ticks in a row that say otherwise
    bypass: bool,
    against: u8,
}

impl Default for Denoiser {
    fn default() -> Self {
        Denoiser {
            state: DenoiseState::with_model(&MODEL),
            up: Upsampler::default(),
            down: Downsampler::default(),
            wide: [0; WIDE],
            input: [0.0; WIDE],
            output: [0.0; WIDE],
            last_tick: None,
            dry: [0.0; HALF],
            bypass: false,
            against: 0,
        }
    }
}

impl Denoiser {
    /// Denoise tick `tick`'s `frame` (20 ms at 8, 16 or 48 kHz) in place.
    pub fn process(&mut self, frame: &mut [i16], tick: u64) {
        let factor = WIDE / frame.len().max(1);
        if factor * frame.len() != WIDE {
            return; // not a 20 ms frame at a rate we mix at
        }
        let was_bypassed = self.bypass;
        if is_tone(frame) != self.bypass {
            self.against += 1;
            if self.against >= TONE_TICKS {
                self.bypass = !self.bypass;
                self.against = 0;
            }
        } else {
            self.against = 0;
        }
        if factor == 1 {
            for (f, &s) in self.input.iter_mut().zip(frame.iter()) {
                *f = f32::from(s);
            }
        } else {
            self.up.process(frame, &mut self.wide);
            for (f, &s) in self.input.iter_mut().zip(&self.wide) {
                *f = f32::from(s);
            }
        }
        for (o, i) in self
            .output
            .chunks_exact_mut(HALF)
            .zip(self.input.chunks_exact(HALF))
        {
            self.state.process_frame(o, i);
        }
        let resumed = self.last_tick.is_none_or(|t| t.wrapping_add(1) != tick);
        self.last_tick = Some(tick);
        if resumed {
            // the first half is the end of an earlier spurt: fade in over it
            for (k, o) in self.output[..HALF].iter_mut().enumerate() {
                *o *= k as f32 / HALF as f32;
            }
            self.dry.fill(0.0);
        }
        // the input delayed by RNNoise's frame, to stand in for its output
        // (crossfaded over the tick where the bypass turns)
        if self.bypass || was_bypassed {
            let (from, to) = match (was_bypassed, self.bypass) {
                (false, true) => (0.0, 1.0),
                (true, false) => (1.0, 0.0),
                _ => (1.0, 1.0),
            };
            for k in 0..WIDE {
                let dry = if k < HALF {
                    self.dry[k]
                } else {
                    self.input[k - HALF]
                };
                let mix = from + (to - from) * (k as f32 / WIDE as f32);
                self.output[k] = mix * dry + (1.0 - mix) * self.output[k];
            }
        }
        self.dry.copy_from_slice(&self.input[HALF..]);
        if factor == 1 {
            for (s, &o) in frame.iter_mut().zip(&self.output) {
                *s = o.round().clamp(-32768.0, 32767.0) as i16;
            }
        } else {
            for (w, &o) in self.wide.iter_mut().zip(&self.output) {
                *w = o.round().clamp(-32768.0, 32767.0) as i16;
            }
            self.down.process(&self.wide, frame);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Speech (the shipped prompts, espeak-ng at 8 kHz) with pauses between
    /// phrases, at `gain`.
    pub(crate) fn speech(gain: f32) -> Vec<i16> {
        let prompts: [&[u8]; 5] = [
            include_bytes!("../../sounds/enter-pin.wav"),
            include_bytes!("../../sounds/wait-moderator.wav"),
            include_bytes!("../../sounds/invalid-pin.wav"),
            include_bytes!("../../sounds/no-moderator.wav"),
            include_bytes!("../../sounds/all-muted.wav"),
        ];
        let mut out = Vec::new();
        for p in prompts {
            out.extend(
                p[44..]
                    .chunks_exact(2)
                    .map(|c| (f32::from(i16::from_le_bytes([c[0], c[1]])) * gain) as i16),
            );
            out.extend(std::iter::repeat_n(0, 2400)); // 0.3 s between phrases
        }
        out
    }

    /// White noise of amplitude `amp`, repeatable.
    pub(crate) fn noise(len: usize, amp: f32, seed: u32) -> Vec<i16> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (((s >> 16) as f32 / 32768.0 - 1.0) * amp) as i16
            })
            .collect()
    }

    pub(crate) fn rms_db(x: &[i16]) -> f64 {
        let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
        10.0 * (ms.max(1e-9) / (32768.0f64 * 32768.0)).log10()
    }

    /// Frames `frames` (20 ms at 8 kHz) of `x`, each `lag` frames later, from
    /// the first second on (the suppressor and leveller settle in it).
    pub(crate) fn frames_at(x: &[i16], frames: &[usize], lag: usize) -> Vec<i16> {
        frames
            .iter()
            .filter(|&&k| k >= 50 && (k + lag + 1) * 160 <= x.len())
            .flat_map(|&k| x[(k + lag) * 160..(k + lag + 1) * 160].to_vec())
            .collect()
    }

    /// The noise (dBFS, before and after) fell by 10 dB and more, and the
    /// speech stayed within 2 dB.
    pub(crate) fn assert_cleaner(noise: (f64, f64), speech: (f64, f64)) {
        let ((n0, n1), (s0, s1)) = (noise, speech);
        eprintln!("noise {n0:.1} -> {n1:.1} dBFS, speech {s0:.1} -> {s1:.1} dBFS");
        assert!(n0 - n1 >= 10.0, "noise {n0:.1} -> {n1:.1}");
        assert!((s0 - s1).abs() <= 2.0, "speech {s0:.1} -> {s1:.1}");
    }

    /// Frames (by index) where the clean speech is loud, and where it is silent.
    pub(crate) fn speech_and_pauses(clean: &[i16], n: usize) -> (Vec<usize>, Vec<usize>) {
        let (mut talk, mut pause) = (Vec::new(), Vec::new());
        for (k, f) in clean.chunks_exact(n).enumerate() {
            let db = rms_db(f);
            if db > -35.0 {
                talk.push(k);
            } else if f.iter().all(|&s| s == 0) {
                pause.push(k);
            }
        }
        (talk, pause)
    }

    /// A steady tone is passed whole at every rate and frequency, among them
    /// those RNNoise alone would remove; speech and noise are no tone.
    #[test]
    fn a_steady_tone_passes() {
        let clean = speech(0.5);
        let talk = clean.chunks_exact(160).filter(|f| is_tone(f)).count();
        assert!(
            talk * 20 < clean.len() / 160,
            "speech read as tone: {talk} frames"
        );
        assert!(
            noise(160 * 50, 1500.0, 1)
                .chunks_exact(160)
                .all(|f| !is_tone(f))
        );
        for (rate, freq) in [
            (8000usize, 700.0),
            (8000, 1500.0),
            (16000, 1300.0),
            (48000, 1500.0),
            (48000, 440.0),
        ] {
            let n = rate / 50;
            let mut d = Denoiser::default();
            let mut out = Vec::new();
            for t in 0..150u64 {
                let mut f: Vec<i16> = (0..n)
                    .map(|i| {
                        let x = (t as usize * n + i) as f64 / rate as f64;
                        (6000.0 * (2.0 * std::f64::consts::PI * freq * x).sin()) as i16
                    })
                    .collect();
                d.process(&mut f, t);
                out.extend(f);
            }
            let level = rms_db(&out[out.len() / 2..]);
            let want = 20.0 * (6000.0 / 32768.0 / 2f64.sqrt()).log10();
            assert!(
                (level - want).abs() < 1.0,
                "{freq} Hz at {rate} Hz: {level:.1} dB, sent {want:.1}"
            );
        }
    }

    /// Speech in white noise at 8 kHz: the noise heard between phrases falls by
    /// 10 dB and more, the speech stays within 2 dB.
    #[test]
    fn noise_falls_and_speech_stays() {
        let clean = speech(0.5);
        let noise = noise(clean.len(), 1500.0, 3);
        let noisy: Vec<i16> = clean
            .iter()
            .zip(&noise)
            .map(|(a, b)| a.saturating_add(*b))
            .collect();
        let mut d = Denoiser::default();
        let mut out = Vec::new();
        for (t, f) in noisy.chunks_exact(160).enumerate() {
            let mut f = f.to_vec();
            d.process(&mut f, t as u64);
            out.extend(f);
        }
        let (talk, pause) = speech_and_pauses(&clean, 160);
        // the output is late by RNNoise's 10 ms and the filters': compare
        // frames one tick on
        assert_cleaner(
            (
                rms_db(&frames_at(&noisy, &pause, 0)),
                rms_db(&frames_at(&out, &pause, 1)),
            ),
            (
                rms_db(&frames_at(&clean, &talk, 0)),
                rms_db(&frames_at(&out, &talk, 1)),
            ),
        );
    }
}
