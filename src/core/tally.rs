//! Sliding-window tallies of failures against successes: the judgement behind
//! both the flood bans (per source address) and the PIN lockout (per room and
//! source). A key trips only when its failures within the window exceed the limit
//! *and* outnumber its successes in that window. That is what tells a PBX from a
//! scanner: hundreds of good calls from one PBX can carry a few callers who
//! mistype their PIN, while a scanner or a guesser has nothing but failures.
//!
//! The window is kept as [`SLOTS`] counters of a slot's width each (the window
//! divided by [`SLOTS`]), so a tally is a few dozen bytes whatever the rate, and
//! the window is exact to one slot. Sans-IO: time is an argument.

use std::time::{Duration, Instant};

/// Counters per window.
pub const SLOTS: usize = 8;

/// Failures and successes of one key over the last window.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// slot number (since the owner's origin) of the newest counters
    head: u64,
    fails: [u32; SLOTS],
    oks: [u32; SLOTS],
}

/// The slot `now` falls in, for a window of `window` counted from `origin`.
pub fn slot(origin: Instant, now: Instant, window: Duration) -> u64 {
    let width = (window.as_nanos() / SLOTS as u128).max(1);
    (now.saturating_duration_since(origin).as_nanos() / width) as u64
}

impl Tally {
    /// Move the window to `slot`, dropping counters that fell out of it.
    fn advance(&mut self, slot: u64) {
        if slot <= self.head {
            return;
        }
        let gap = slot - self.head;
        if gap >= SLOTS as u64 {
            self.fails = [0; SLOTS];
            self.oks = [0; SLOTS];
        } else {
            for s in self.head + 1..=slot {
                let i = (s % SLOTS as u64) as usize;
                self.fails[i] = 0;
                self.oks[i] = 0;
            }
        }
        self.head = slot;
    }

    fn index(&self) -> usize {
        (self.head % SLOTS as u64) as usize
    }

    /// Count a failure in `slot`; true when the key is now over `limit`: more
    /// than `limit` failures in the window, and more failures than successes.
    pub fn fail(&mut self, slot: u64, limit: u32) -> bool {
        self.advance(slot);
        let i = self.index();
        self.fails[i] = self.fails[i].saturating_add(1);
        let (fails, oks) = self.sums();
        fails > limit && fails > oks
    }

    /// Count a success in `slot`.
    pub fn succeed(&mut self, slot: u64) {
        self.advance(slot);
        let i = self.index();
        self.oks[i] = self.oks[i].saturating_add(1);
    }

    /// Failures and successes in the window ending at the newest slot.
    pub fn sums(&self) -> (u32, u32) {
        let add = |v: &[u32; SLOTS]| v.iter().fold(0u32, |a, &b| a.saturating_add(b));
        (add(&self.fails), add(&self.oks))
    }

    /// Whether nothing was counted in the window that ends at `slot`.
    pub fn is_quiet(&self, slot: u64) -> bool {
        slot >= self.head + SLOTS as u64 || self.sums() == (0, 0)
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.fails = [0; SLOTS];
        self.oks = [0; SLOTS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_on_failures_that_outnumber_successes() {
        let (t0, w) = (Instant::now(), Duration::from_secs(10));
        let at = |ms: u64| slot(t0, t0 + Duration::from_millis(ms), w);
        let mut scanner = Tally::default();
        for i in 0..20 {
            assert!(!scanner.fail(at(i), 20));
        }
        assert!(scanner.fail(at(20), 20), "the 21st failure trips it");
        // a PBX: many good calls, a few mistyped PINs, in the same window
        let mut pbx = Tally::default();
        for i in 0..300 {
            pbx.succeed(at(i * 30));
        }
        for i in 0..40 {
            assert!(!pbx.fail(at(i * 200), 20), "failure {i} tripped a busy PBX");
        }
        // failures spread wider than the window never add up
        let mut slow = Tally::default();
        for i in 0..100 {
            assert!(!slow.fail(at(i * 1000), 20));
        }
        assert!(slow.is_quiet(at(200_000)));
    }
}
