//! Overload control: whether new calls are refused (503 with Retry-After, and
//! OPTIONS and `/readyz` say so) to protect the calls already up. Judged before
//! quality drops, from the media workers' tick work against the 20 ms period
//! (with legs just placed counted at what their worker's legs cost, so that a
//! burst of INVITEs is judged before its audio arrives), and after the fact from
//! tick lateness. Hysteresis keeps it from flapping at the edge.

use std::collections::HashMap;

/// Refusal stops once the load is this far below the limit.
const HYSTERESIS: f64 = 0.85;

/// The two judgements and their limits.
pub struct Overload {
    /// a worker's load (1.0: its work fills the period) above which new calls
    /// are refused (0: never)
    limit: f64,
    /// a worker's tick-lateness p99 above which new calls are refused (0: never)
    late_limit_us: u64,
    by_load: bool,
    late_p99: HashMap<usize, u32>,
}

impl Overload {
    /// `[sip] overload_load_percent` and `overload_late_ms`.
    pub fn new(load_percent: u32, late_ms: u64) -> Overload {
        Overload {
            limit: f64::from(load_percent) / 100.0,
            late_limit_us: late_ms.saturating_mul(1000),
            by_load: false,
            late_p99: HashMap::new(),
        }
    }

    /// The media engine's load now.
    pub fn load(&mut self, load: f64) {
        if self.limit <= 0.0 {
            return;
        }
        self.by_load = if self.by_load {
            load > self.limit * HYSTERESIS
        } else {
            load > self.limit
        };
    }

    /// A worker's periodic lateness report.
    pub fn late(&mut self, worker: usize, p99_us: u32) {
        self.late_p99.insert(worker, p99_us);
    }

    /// Whether new calls are refused.
    pub fn refusing(&self) -> bool {
        self.by_load
            || (self.late_limit_us > 0
                && self
                    .late_p99
                    .values()
                    .any(|&l| u64::from(l) > self.late_limit_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_above_the_limit_until_well_below_it() {
        let mut o = Overload::new(70, 0);
        o.load(0.69);
        assert!(!o.refusing());
        o.load(0.71);
        assert!(o.refusing());
        o.load(0.65);
        assert!(o.refusing(), "stopped refusing inside the hysteresis");
        o.load(0.55);
        assert!(!o.refusing());
        let mut late = Overload::new(0, 100);
        late.load(5.0);
        assert!(!late.refusing(), "0 turns the load judgement off");
        late.late(1, 150_000);
        assert!(late.refusing());
        late.late(1, 2_000);
        assert!(!late.refusing());
    }
}
