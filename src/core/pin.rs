//! PIN checking for rooms that have one: constant-time comparison, and the lockout
//! of sources that keep guessing (per room and source address, a sliding window of
//! failures against successes). A locked-out source is told exactly what a wrong PIN is told, so a
//! guesser learns nothing. PINs are never logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::tally::{self, Tally};

/// A room's PIN. Its `Debug` never shows the digits, so a PIN cannot reach a log
/// or a panic message through a `{:?}` of the room or its policy.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Pin(String);

// Compared across configuration reloads by a digest, never written out.
impl serde::Serialize for Pin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::util::fingerprint(&self.0, s)
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::ops::Deref for Pin {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Pin {
    fn from(digits: &str) -> Pin {
        Pin(digits.to_owned())
    }
}

/// Longest PIN accepted from config or keypad.
pub const MAX_PIN: usize = 16;

/// Sources remembered before stale ones are dropped.
const MAX_RECORDS: usize = 4096;

/// Lockout rule: more than `failures` within `window` locks for `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// failures tolerated within the window
    pub failures: u32,
    /// sliding window
    pub window: Duration,
    /// how long a source stays locked out
    pub time: Duration,
}

/// What a caller typed, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// the participant PIN
    Participant,
    /// the moderator PIN
    Moderator,
    /// neither (or the source is locked out)
    Wrong,
}

/// Compare in time that depends on neither the content nor the length of `typed`.
pub fn same(typed: &str, pin: &str) -> bool {
    let mut a = [0u8; MAX_PIN];
    let mut b = [0u8; MAX_PIN];
    let (ta, tb) = (typed.as_bytes(), pin.as_bytes());
    a[..ta.len().min(MAX_PIN)].copy_from_slice(&ta[..ta.len().min(MAX_PIN)]);
    b[..tb.len().min(MAX_PIN)].copy_from_slice(&tb[..tb.len().min(MAX_PIN)]);
    let len_ok = (ta.len() as u32).ct_eq(&(tb.len() as u32));
    bool::from(a.ct_eq(&b) & len_ok)
}

/// Judge what was typed against a room's PINs. A room with only a moderator PIN
/// lets participants in with an empty entry (just `#`, or the timeout).
pub fn judge(typed: &str, pin: Option<&str>, moderator_pin: Option<&str>) -> Verdict {
    // evaluate both comparisons every time: no early exit to time
    let m = moderator_pin.is_some_and(|p| same(typed, p));
    let p = match pin {
        Some(p) => same(typed, p),
        None => typed.is_empty(),
    };
    if m {
        Verdict::Moderator
    } else if p {
        Verdict::Participant
    } else {
        Verdict::Wrong
    }
}

#[derive(Debug, Default)]
struct Record {
    tally: Tally,
    locked_until: Option<Instant>,
}

/// Failures and successes per (room, source): a source is locked out of a room
/// when its wrong PINs there outnumber its right ones and exceed the rule's
/// limit (see [`super::tally`]), so a PBX that carries a meeting's callers is not
/// locked out because a few of them mistype.
#[derive(Debug, Default)]
pub struct Guard {
    records: HashMap<(String, IpAddr), Record>,
    origin: Option<Instant>,
}

impl Guard {
    /// Whether this source is locked out of this room now.
    pub fn locked(&self, room: &str, src: IpAddr, now: Instant) -> bool {
        self.records
            .get(&(room.to_string(), src))
            .and_then(|r| r.locked_until)
            .is_some_and(|t| now < t)
    }

    fn record(&mut self, room: &str, src: IpAddr, now: Instant, window: Duration) -> &mut Record {
        if self.records.len() >= MAX_RECORDS && !self.records.contains_key(&(room.to_string(), src))
        {
            // many sources guessing: keep only what still matters, so memory stays
            // bounded under a distributed guessing attack
            self.expire(now, window);
        }
        self.records.entry((room.to_string(), src)).or_default()
    }

    fn slot(&mut self, now: Instant, window: Duration) -> u64 {
        tally::slot(*self.origin.get_or_insert(now), now, window)
    }

    /// Record a failure; returns true if the source just became locked out.
    pub fn fail(&mut self, room: &str, src: IpAddr, now: Instant, rule: Lockout) -> bool {
        let slot = self.slot(now, rule.window);
        let r = self.record(room, src, now, rule.window);
        if r.locked_until.is_some_and(|t| now < t) {
            return false;
        }
        if r.tally.fail(slot, rule.failures) {
            r.locked_until = Some(now + rule.time);
            r.tally.clear();
            return true;
        }
        false
    }

    /// Record a right PIN from this source.
    pub fn succeed(&mut self, room: &str, src: IpAddr, now: Instant, rule: Lockout) {
        let slot = self.slot(now, rule.window);
        self.record(room, src, now, rule.window).tally.succeed(slot);
    }

    /// Forget records that no longer matter.
    fn expire(&mut self, now: Instant, rule_window: Duration) {
        let slot = self.slot(now, rule_window);
        self.records
            .retain(|_, r| r.locked_until.is_some_and(|t| now < t) || !r.tally.is_quiet(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_judge() {
        assert!(same("1234", "1234"));
        assert!(!same("123", "1234"));
        assert!(!same("12345", "1234"));
        assert!(!same("", "1234"));
        assert_eq!(judge("9", Some("1"), Some("9")), Verdict::Moderator);
        assert_eq!(judge("1", Some("1"), Some("9")), Verdict::Participant);
        assert_eq!(judge("2", Some("1"), None), Verdict::Wrong);
        // only a moderator PIN: participants just press #
        assert_eq!(judge("", None, Some("9")), Verdict::Participant);
        assert_eq!(judge("9", None, Some("9")), Verdict::Moderator);
        assert_eq!(judge("5", None, Some("9")), Verdict::Wrong);
    }

    #[test]
    fn lockout_after_threshold_for_its_time() {
        let rule = Lockout {
            failures: 3,
            window: Duration::from_secs(60),
            time: Duration::from_secs(300),
        };
        let mut g = Guard::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!g.fail("r", ip, t0 + Duration::from_secs(i), rule));
        }
        assert!(!g.locked("r", ip, t0 + Duration::from_secs(3)));
        assert!(g.fail("r", ip, t0 + Duration::from_secs(4), rule));
        assert!(g.locked("r", ip, t0 + Duration::from_secs(5)));
        assert!(!g.locked("other", ip, t0 + Duration::from_secs(5)));
        assert!(!g.locked("r", ip, t0 + Duration::from_secs(305)));
        // stale records go once many sources have failed; live ones stay
        let mut g = Guard::default();
        for i in 0..MAX_RECORDS as u32 {
            g.fail("r", IpAddr::from((i + 1).to_be_bytes()), t0, rule);
        }
        assert_eq!(g.records.len(), MAX_RECORDS);
        let later = t0 + Duration::from_secs(1000);
        assert!(!g.fail("r", ip, later, rule));
        assert_eq!(g.records.len(), 1, "stale sources kept");
        assert!(g.records.contains_key(&("r".to_string(), ip)));
        // failures spread wider than the window never lock
        let mut g = Guard::default();
        for i in 0..10 {
            assert!(!g.fail("r", ip, t0 + Duration::from_secs(61 * i), rule));
        }
    }
}
