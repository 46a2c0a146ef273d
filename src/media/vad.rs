//! Talker detection per leg: frame energy against an adaptive threshold, with attack
//! and hangover so that a talker is not cut between words. The threshold follows the
//! leg's noise floor (a slow minimum tracker) and never goes below an absolute floor,
//! so steady line noise is not speech and quiet speakers still count. Everything is
//! integer arithmetic on the frame the mixer already has; no allocation.

/// Absolute floor: -50 dBFS mean square (RMS ≈ 104).
const FLOOR: u64 = 104 * 104;
/// Speech must be this far above the noise floor: 9 dB ≈ ×8 in power.
const OVER_NOISE: u64 = 8;
/// Frames above threshold before "talking" (40 ms).
const ATTACK: u32 = 2;
/// Frames below threshold before "stopped" (400 ms).
const HANGOVER: u32 = 20;
/// How late "talking" is reported after a spurt begins, in milliseconds.
pub const ATTACK_MS: u64 = ATTACK as u64 * 20;
/// How late "stopped" is reported after it ends, in milliseconds.
pub const HANGOVER_MS: u64 = HANGOVER as u64 * 20;

/// State of one leg's detector.
#[derive(Debug, Clone)]
pub struct TalkDetector {
    noise: u64,
    above: u32,
    below: u32,
    talking: bool,
    /// smoothed energy (mean square), used to rank talkers
    pub level: u64,
}

impl Default for TalkDetector {
    fn default() -> Self {
        TalkDetector {
            noise: FLOOR,
            above: 0,
            below: 0,
            talking: false,
            level: 0,
        }
    }
}

/// Mean square of a frame.
pub fn energy(frame: &[i16]) -> u64 {
    if frame.is_empty() {
        return 0;
    }
    // Eight independent lanes so that the compiler vectorises the loop (a single
    // running sum is a dependency chain it must keep in order). A square is at most
    // 2^30, so a u32 lane holds it exactly and a u64 lane holds any frame's sum.
    let mut lanes = [0u64; 8];
    let chunks = frame.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (lane, &s) in lanes.iter_mut().zip(c) {
            let s = i32::from(s);
            *lane += u64::from((s * s) as u32);
        }
    }
    let sum: u64 = lanes.iter().sum::<u64>()
        + tail
            .iter()
            .map(|&s| u64::from((i32::from(s) * i32::from(s)) as u32))
            .sum::<u64>();
    sum / frame.len() as u64
}

impl TalkDetector {
    /// Whether the leg is talking now.
    pub fn talking(&self) -> bool {
        self.talking
    }

    /// Talking, or loud enough lately to be heard above the absolute floor: a
    /// leg whose audio the mixer must go on measuring.
    pub fn active(&self) -> bool {
        self.talking || self.level > FLOOR
    }

    /// Feed one frame's energy; returns Some(new state) when it changes.
    pub fn update(&mut self, e: u64) -> Option<bool> {
        self.level = (self.level * 3 + e) / 4;
        // noise floor: falls fast to quieter frames; rises slowly (~0.4 dB/s) between
        // words and very slowly (~0.03 dB/s) during speech, so a steady hum is learnt
        // as noise within minutes while a long tone or monologue is not cut off
        if e < self.noise {
            self.noise = (self.noise + e) / 2;
        } else {
            let rate = if self.talking { 8192 } else { 512 };
            self.noise += self.noise / rate + 1;
        }
        self.noise = self.noise.max(FLOOR / 4);
        let threshold = (self.noise * OVER_NOISE).max(FLOOR);
        if e > threshold {
            self.above += 1;
            self.below = 0;
        } else {
            self.below += 1;
            self.above = 0;
        }
        let next = if self.talking {
            self.below < HANGOVER
        } else {
            self.above >= ATTACK
        };
        (next != self.talking).then(|| {
            self.talking = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amp: f64) -> Vec<i16> {
        (0..160)
            .map(|i| (amp * (i as f64 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn attack_hangover_and_noise() {
        let mut d = TalkDetector::default();
        let quiet = energy(&tone(20.0));
        let loud = energy(&tone(3000.0));
        for _ in 0..50 {
            assert_eq!(d.update(quiet), None);
        }
        assert_eq!(d.update(loud), None);
        assert_eq!(d.update(loud), Some(true));
        for _ in 0..HANGOVER - 1 {
            assert_eq!(d.update(quiet), None);
        }
        assert_eq!(d.update(quiet), Some(false));
        // steady loud noise stops counting as speech once the floor has risen to it
        let mut d = TalkDetector::default();
        let hum = energy(&tone(1000.0));
        let mut states = Vec::new();
        for _ in 0..60_000 {
            if let Some(s) = d.update(hum) {
                states.push(s);
            }
        }
        assert_eq!(states, vec![true, false]);
    }
}
