//! Noise suppression of one mixed talker: RNNoise (Valin, "A Hybrid DSP/Deep
//! Learning Approach to Real-Time Full-Band Speech Enhancement", 2018) by
//! nnnoiseless, its kept pure-Rust port, which allocates nothing per frame and
//! shares one model among all legs (each leg's state is ~15 KiB, made the first
//! time the leg is mixed). RNNoise works on 10 ms frames at 48 kHz; a room's
//! 20 ms frame at 8 or 16 kHz is raised to 48 kHz and lowered back with
//! `media::resample`, whose filters pass the band the codec carried.
//!
//! RNNoise delays its output by one 10 ms frame. The tick's frame is replaced in
//! place, so a talker's own frame and the one the room mixed stay the same
//! samples (mix-minus stays exact); a leg that was not denoised last tick (not
//! mixed, or over the worker's budget) holds a stale tail from its last
//! talkspurt, so its first 10 ms after a gap fade in from silence.

use std::sync::LazyLock;

use nnnoiseless::{DenoiseState, RnnModel};

use super::frame::MAX_FRAME;
use super::resample::{Downsampler, Upsampler};

/// RNNoise's frame: 10 ms at 48 kHz.
const HALF: usize = DenoiseState::FRAME_SIZE;
/// A tick at 48 kHz.
const WIDE: usize = 2 * HALF;
const _: () = assert!(WIDE == MAX_FRAME);

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
        }
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

    /// A tone is not noise: RNNoise passes it whole (the bridge's tone tests
    /// rely on it), at every rate.
    #[test]
    fn a_steady_tone_passes() {
        for rate in [8000usize, 16000, 48000] {
            let n = rate / 50;
            let mut d = Denoiser::default();
            let mut out = Vec::new();
            for t in 0..150u64 {
                let mut f: Vec<i16> = (0..n)
                    .map(|i| {
                        let x = (t as usize * n + i) as f64 / rate as f64;
                        (6000.0 * (2.0 * std::f64::consts::PI * 700.0 * x).sin()) as i16
                    })
                    .collect();
                d.process(&mut f, t);
                out.extend(f);
            }
            let level = rms_db(&out[out.len() / 2..]);
            let want = 20.0 * (6000.0 / 32768.0 / 2f64.sqrt()).log10();
            assert!(
                (level - want).abs() < 1.0,
                "{rate} Hz: {level:.1} dB, sent {want:.1}"
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
        let pick = |x: &[i16], frames: &[usize], lag: usize| -> Vec<i16> {
            frames
                .iter()
                .filter(|&&k| k >= 50 && (k + lag + 1) * 160 <= x.len())
                .flat_map(|&k| x[(k + lag) * 160..(k + lag + 1) * 160].to_vec())
                .collect()
        };
        let noise_in = rms_db(&pick(&noisy, &pause, 0));
        let noise_out = rms_db(&pick(&out, &pause, 1));
        let speech_in = rms_db(&pick(&clean, &talk, 0));
        let speech_out = rms_db(&pick(&out, &talk, 1));
        eprintln!(
            "noise {noise_in:.1} -> {noise_out:.1} dBFS, speech {speech_in:.1} -> {speech_out:.1} dBFS"
        );
        assert!(
            noise_in - noise_out >= 10.0,
            "noise {noise_in:.1} -> {noise_out:.1}"
        );
        assert!(
            (speech_in - speech_out).abs() <= 2.0,
            "speech {speech_in:.1} -> {speech_out:.1}"
        );
    }
}
