//! Who spoke when in a recording: the turns of each talker, from the talker
//! detection the mixer already runs, kept while the recording runs and handed
//! to the driver (which writes them beside the WAV) when it ends. The detector
//! reports a talk spurt [`ATTACK`] after it begins and [`HANGOVER`] after it
//! ends (so that words are not cut apart); both are taken back out here, so a
//! turn is when the talking was.

use std::time::{Duration, Instant};

use crate::ids::LegId;

/// How late the detector says "talking" (its attack).
pub const ATTACK: Duration = Duration::from_millis(crate::media::vad::ATTACK_MS);
/// How late it says "stopped" (its hangover).
pub const HANGOVER: Duration = Duration::from_millis(crate::media::vad::HANGOVER_MS);

/// One talk spurt, in milliseconds from the start of the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// the participant
    pub leg: LegId,
    /// its name (From URI, or the name a browser gave)
    pub name: String,
    /// when it began talking
    pub start_ms: u64,
    /// when it stopped
    pub end_ms: u64,
}

/// The turns of one running recording.
#[derive(Debug, Clone)]
pub struct Speakers {
    started: Instant,
    // a participant's own recording hears only that participant
    only: Option<LegId>,
    open: Vec<(LegId, String, Instant)>,
    turns: Vec<Turn>,
}

impl Speakers {
    pub(super) fn new(started: Instant, only: Option<LegId>) -> Speakers {
        Speakers {
            started,
            only,
            open: Vec::new(),
            turns: Vec::new(),
        }
    }

    fn at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The detector changed its mind about `leg` at `now`.
    pub(super) fn talking(&mut self, leg: LegId, name: &str, talking: bool, now: Instant) {
        if self.only.is_some_and(|o| o != leg) {
            return;
        }
        if talking {
            if !self.open.iter().any(|(l, ..)| *l == leg) {
                let began = now.checked_sub(ATTACK).unwrap_or(now).max(self.started);
                self.open.push((leg, name.to_string(), began));
            }
        } else {
            let ended = now.checked_sub(HANGOVER).unwrap_or(now);
            self.close(leg, ended);
        }
    }

    /// `leg` stopped being heard at `now` (muted while it talked): its turn
    /// ends there.
    pub(super) fn cut(&mut self, leg: LegId, now: Instant) {
        self.close(leg, now);
    }

    fn close(&mut self, leg: LegId, ended: Instant) {
        if let Some(i) = self.open.iter().position(|(l, ..)| *l == leg) {
            let (leg, name, began) = self.open.swap_remove(i);
            let (start_ms, end_ms) = (self.at(began), self.at(ended.max(began)));
            self.turns.push(Turn {
                leg,
                name,
                start_ms,
                end_ms,
            });
        }
    }

    /// The recording ended at `now`: every turn, in order of start.
    pub(super) fn finish(mut self, now: Instant) -> Vec<Turn> {
        let open: Vec<LegId> = self.open.iter().map(|(l, ..)| *l).collect();
        for leg in open {
            self.close(leg, now);
        }
        self.turns.sort_by_key(|t| (t.start_ms, t.leg));
        self.turns
    }
}

/// The sidecar `ID.speakers.json`: `{"recording", "speakers": [{"participant",
/// "name", "start", "end"}]}`, times in seconds from the recording's start.
pub fn to_json(id: &str, turns: &[Turn]) -> serde_json::Value {
    let secs = |ms: u64| (ms as f64) / 1000.0;
    serde_json::json!({
        "recording": id,
        "speakers": turns.iter().map(|t| serde_json::json!({
            "participant": t.leg.0, "name": t.name,
            "start": secs(t.start_ms), "end": secs(t.end_ms),
        })).collect::<Vec<_>>(),
    })
}

/// The same as WebVTT (a cue per turn, the speaker's name as its voice).
pub fn to_vtt(sidecar: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let stamp = |s: f64| {
        let ms = (s * 1000.0).round().max(0.0) as u64;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let mut out = String::from("WEBVTT\n");
    let turns = sidecar["speakers"].as_array().cloned().unwrap_or_default();
    for (i, t) in turns.iter().enumerate() {
        // a voice's name may not hold '>' or a line break
        let name: String = t["name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .filter(|c| !matches!(c, '>' | '\n' | '\r'))
            .collect();
        let _ = write!(
            out,
            "\n{}\n{} --> {}\n<v {name}>participant {}\n",
            i + 1,
            stamp(t["start"].as_f64().unwrap_or(0.0)),
            stamp(t["end"].as_f64().unwrap_or(0.0)),
            t["participant"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_when_the_talking_was_not_when_the_detector_said_so() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Speakers::new(t0, None);
        // A talks 1.00-3.00 s, reported at 1.04 and 3.40; B from 2.5 s until the end
        s.talking(LegId(1), "a", true, ms(1040));
        s.talking(LegId(2), "b", true, ms(2540));
        s.talking(LegId(1), "a", false, ms(3400));
        let turns = s.finish(ms(5000));
        assert_eq!(
            turns
                .iter()
                .map(|t| (t.leg.0, t.start_ms, t.end_ms))
                .collect::<Vec<_>>(),
            [(1, 1000, 3000), (2, 2500, 5000)]
        );
        let json = to_json("r1", &turns);
        assert_eq!(json["speakers"][0]["start"], 1.0);
        let vtt = to_vtt(&json);
        assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
        assert!(
            vtt.contains("00:00:01.000 --> 00:00:03.000\n<v a>participant 1"),
            "{vtt}"
        );
        let mut own = Speakers::new(t0, Some(LegId(2)));
        own.talking(LegId(1), "a", true, ms(100));
        assert!(
            own.finish(ms(200)).is_empty(),
            "another's talk in one's own recording"
        );
    }
}
