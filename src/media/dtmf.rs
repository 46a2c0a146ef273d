//! In-band DTMF detection (ITU-T Q.23/Q.24 frequencies) for legs that negotiated no
//! telephone-event: eight Goertzel filters over each 20 ms frame at 8 kHz, a digit
//! when exactly one row and one column tone stand out, carry most of the frame's
//! energy and agree in level (twist), for two frames running; reported once per key
//! press.

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Each tone at least about -36 dBFS (amplitude 500).
const MIN_POWER: f64 = 500.0 * 500.0 / 4.0;

/// Detector state for one leg.
#[derive(Debug, Default, Clone)]
pub struct InbandDetector {
    candidate: Option<char>,
    frames: u32,
    reported: bool,
    gap: u32,
}

fn strongest(p: &[f64; 4]) -> (usize, f64, f64) {
    let mut idx = 0;
    for i in 1..4 {
        if p[i] > p[idx] {
            idx = i;
        }
    }
    let second = (0..4)
        .filter(|&i| i != idx)
        .map(|i| p[i])
        .fold(0.0, f64::max);
    (idx, p[idx], second)
}

/// Goertzel coefficients 2·cos(2πf/8000) of the eight DTMF frequencies.
fn coefficients() -> [f32; 8] {
    let mut c = [0f32; 8];
    for (i, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
        c[i] = (2.0 * (2.0 * std::f64::consts::PI * f / 8000.0).cos()) as f32;
    }
    c
}

/// The key whose two tones dominate this 8 kHz frame, if any. Runs on every frame
/// of every leg without telephone-event, so: an energy gate first (a frame too quiet
/// to hold two tones at the minimum level costs one pass), then the eight Goertzel
/// filters side by side in one pass.
pub fn classify(frame: &[i16]) -> Option<char> {
    if frame.is_empty() {
        return None;
    }
    let mean_square = frame
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / frame.len() as f64;
    // two tones at MIN_POWER each carry 2 * 2 * MIN_POWER of mean square
    if mean_square < 4.0 * MIN_POWER {
        return None;
    }
    let coeff = coefficients();
    let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
    for &v in frame {
        let x = f32::from(v);
        for k in 0..8 {
            let s = x + coeff[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s;
        }
    }
    let n2 = (frame.len() as f64).powi(2);
    let power = |k: usize| {
        let (a, b, c) = (f64::from(s1[k]), f64::from(s2[k]), f64::from(coeff[k]));
        (a * a + b * b - c * a * b) / n2
    };
    let rows = [power(0), power(1), power(2), power(3)];
    let cols = [power(4), power(5), power(6), power(7)];
    let (r, pr, r2) = strongest(&rows);
    let (c, pc, c2) = strongest(&cols);
    if pr < MIN_POWER || pc < MIN_POWER {
        return None;
    }
    // the other frequencies of each group well below (6 dB), twist within 8 dB
    if r2 * 4.0 > pr || c2 * 4.0 > pc || pr / pc > 6.3 || pc / pr > 6.3 {
        return None;
    }
    // the two tones carry most of the signal (speech and music spread wider)
    if 2.0 * (pr + pc) < 0.75 * mean_square {
        return None;
    }
    Some(KEYS[r][c])
}

impl InbandDetector {
    /// Whether the last frame fed held a DTMF tone (it is then kept out of the mix:
    /// digits typed for the menu are not heard by the room).
    pub fn tone_present(&self) -> bool {
        self.candidate.is_some() && self.gap == 0
    }

    /// Feed one 20 ms frame at 8 kHz; returns a digit once per key press.
    pub fn feed(&mut self, frame: &[i16]) -> Option<char> {
        let key = classify(frame);
        match key {
            Some(k) if Some(k) == self.candidate => {
                self.frames += 1;
                self.gap = 0;
            }
            Some(k) => {
                self.candidate = Some(k);
                self.frames = 1;
                self.reported = false;
                self.gap = 0;
            }
            None => {
                self.gap += 1;
                if self.gap >= 2 {
                    self.candidate = None;
                    self.frames = 0;
                    self.reported = false;
                }
            }
        }
        if self.frames >= 2 && !self.reported {
            self.reported = true;
            return self.candidate;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms frames of a key (or silence for None), `count` of them.
    pub fn frames(key: Option<char>, start: usize, count: usize) -> Vec<Vec<i16>> {
        let (fr, fc) = match key {
            Some(k) => {
                let (r, c) = (0..4)
                    .flat_map(|r| (0..4).map(move |c| (r, c)))
                    .find(|&(r, c)| KEYS[r][c] == k)
                    .unwrap();
                (ROWS[r], COLS[c])
            }
            None => (0.0, 0.0),
        };
        (0..count)
            .map(|f| {
                (0..160)
                    .map(|i| {
                        let t = ((start + f) * 160 + i) as f64 / 8000.0;
                        let v = 6000.0
                            * ((2.0 * std::f64::consts::PI * fr * t).sin()
                                + (2.0 * std::f64::consts::PI * fc * t).sin());
                        v as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_key_once_per_press() {
        for k in "0123456789*#ABCD".chars() {
            let mut d = InbandDetector::default();
            let mut got = Vec::new();
            for f in frames(Some(k), 0, 5)
                .iter()
                .chain(frames(None, 5, 3).iter())
                .chain(frames(Some(k), 8, 4).iter())
            {
                got.extend(d.feed(f));
            }
            assert_eq!(got, vec![k, k], "key {k}");
            assert!(d.tone_present(), "key {k} still sounding");
            for f in frames(None, 12, 2) {
                d.feed(&f);
            }
            assert!(!d.tone_present(), "silence after key {k}");
        }
    }

    #[test]
    fn speech_like_tones_are_not_digits() {
        // a single tone, and a chord of three, are not DTMF
        let one: Vec<i16> = (0..160)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 770.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        assert_eq!(classify(&one), None);
        let chord: Vec<i16> = (0..160)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (4000.0
                    * ((2.0 * std::f64::consts::PI * 697.0 * t).sin()
                        + (2.0 * std::f64::consts::PI * 1209.0 * t).sin()
                        + (2.0 * std::f64::consts::PI * 400.0 * t).sin())) as i16
            })
            .collect();
        assert_eq!(classify(&chord), None);
    }
}
