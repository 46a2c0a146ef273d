//! Flood control that judges behaviour, not volume. The core counts only what a
//! source starts: out-of-dialog requests that match no transaction it knows.
//! Requests inside a dialog (ACK, BYE, INFO, re-INVITE, UPDATE), retransmissions,
//! CANCELs of a known INVITE and responses are never counted, so a PBX or a proxy
//! carrying a whole company's calls is judged by how many calls it *starts*.
//!
//! Two rules per source address:
//! - a ceiling on new out-of-dialog requests per window (`flood_requests` per
//!   `flood_window_s`), set above what one node can serve: the excess is dropped
//!   (the sender retransmits), never banned;
//! - *failures* (a request naming no room or one the caller may not call, a wrong
//!   PIN, a malformed request, a method the bridge does not serve) against
//!   successes (calls admitted to a room): more than `fail_limit` failures within
//!   `fail_window_s`, outnumbering the successes there, bans the source for
//!   `flood_ban_s` (see [`super::tally`]). A scanner has no successes and is banned
//!   at its 21st failure; a PBX whose callers mistype PINs is not.
//!
//! A banned source's new requests are dropped unread; what the ban does to its
//! calls is the core's business ([`super::Core`]). Trusted networks are never
//! counted. Memory is capped: at most [`MAX_SOURCES`] addresses are tracked, quiet
//! ones are dropped first, and when every slot holds a live entry new sources are
//! let through uncounted rather than growing the table. Sans-IO: time is an
//! argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Cidr;
use super::tally::{self, Tally};

/// Addresses tracked at most.
pub const MAX_SOURCES: usize = 65_536;

/// What to do with a new out-of-dialog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// handle it
    Allow,
    /// drop it: the source is banned
    Banned,
    /// drop it: the source is over its request ceiling this window; `first` on
    /// the first drop of the window (to log once)
    OverLimit {
        /// first drop in this window
        first: bool,
    },
}

#[derive(Debug, Clone)]
struct Source {
    window_start: Instant,
    count: u32,
    tally: Tally,
    banned_until: Option<Instant>,
}

/// The limits (`[security]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodLimits {
    /// new out-of-dialog requests allowed per window (0: no ceiling)
    pub requests: u32,
    /// the window of that ceiling
    pub window: Duration,
    /// failures tolerated within `fail_window` (0: no bans)
    pub fail_limit: u32,
    /// the failure window
    pub fail_window: Duration,
    /// how long a banned source stays banned
    pub ban: Duration,
    /// never counted, never banned
    pub trusted: Vec<Cidr>,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            requests: 10_000,
            window: Duration::from_secs(1),
            fail_limit: 20,
            fail_window: Duration::from_secs(10),
            ban: Duration::from_secs(300),
            trusted: Vec::new(),
        }
    }
}

/// Per-source counters and bans.
#[derive(Debug)]
pub struct FloodGuard {
    limits: FloodLimits,
    sources: HashMap<IpAddr, Source>,
    /// origin of the failure tallies' slots
    origin: Option<Instant>,
    /// bans issued so far (for metrics)
    pub bans: u64,
    /// requests dropped so far: banned sources' and those over the ceiling
    pub dropped: u64,
}

impl FloodGuard {
    /// A guard with these limits.
    pub fn new(limits: FloodLimits) -> FloodGuard {
        FloodGuard {
            limits,
            sources: HashMap::new(),
            origin: None,
            bans: 0,
            dropped: 0,
        }
    }

    /// New limits (config reload); counters and bans stay.
    pub fn set_limits(&mut self, limits: FloodLimits) {
        self.limits = limits;
    }

    /// Whether `ip` is never counted (`[security] trusted_sources`).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted(ip)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted.iter().any(|c| c.contains(ip))
    }

    /// Sources banned right now.
    pub fn banned(&self, now: Instant) -> usize {
        self.sources
            .values()
            .filter(|s| s.banned_until.is_some_and(|t| t > now))
            .count()
    }

    /// Whether a source is banned now (nothing is counted).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Whether a source has gone over its request ceiling in its current window
    /// (nothing is counted).
    pub fn is_over_limit(&self, ip: IpAddr, now: Instant) -> bool {
        let l = &self.limits;
        l.requests > 0
            && self.sources.get(&ip).is_some_and(|s| {
                s.count > l.requests && now.saturating_duration_since(s.window_start) < l.window
            })
    }

    fn slot(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        tally::slot(origin, now, self.limits.fail_window)
    }

    /// The entry of `ip`, made if there is room; None when the table is full of
    /// live entries (the source then goes uncounted).
    fn source(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Source> {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.prune(now);
            if self.sources.len() >= MAX_SOURCES {
                return None;
            }
        }
        Some(self.sources.entry(ip).or_insert(Source {
            window_start: now,
            count: 0,
            tally: Tally::default(),
            banned_until: None,
        }))
    }

    /// Count one new out-of-dialog request from `ip`.
    pub fn request(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.trusted(ip) {
            return Verdict::Allow;
        }
        let (limit, window) = (self.limits.requests, self.limits.window);
        let Some(s) = self.source(ip, now) else {
            return Verdict::Allow;
        };
        let verdict = match s.banned_until {
            Some(until) if until > now => Verdict::Banned,
            _ => {
                if s.banned_until.take().is_some() {
                    s.tally.clear();
                }
                if now.saturating_duration_since(s.window_start) >= window {
                    s.window_start = now;
                    s.count = 0;
                }
                s.count = s.count.saturating_add(1);
                if limit > 0 && s.count > limit {
                    Verdict::OverLimit {
                        first: s.count == limit + 1,
                    }
                } else {
                    Verdict::Allow
                }
            }
        };
        if verdict != Verdict::Allow {
            self.dropped += 1;
        }
        verdict
    }

    /// A failure of `ip`'s (see the module header); true when it bans the source
    /// from now.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.trusted(ip) || self.limits.fail_limit == 0 {
            return false;
        }
        let (limit, ban) = (self.limits.fail_limit, self.limits.ban);
        let slot = self.slot(now);
        let Some(s) = self.source(ip, now) else {
            return false;
        };
        if s.banned_until.is_some_and(|t| t > now) {
            return false;
        }
        let banned = s.tally.fail(slot, limit) && !ban.is_zero();
        if banned {
            s.banned_until = Some(now + ban);
            s.tally.clear();
            self.bans += 1;
        }
        banned
    }

    /// A success of `ip`'s: a call it started was admitted to a room.
    pub fn succeed(&mut self, ip: IpAddr, now: Instant) {
        if self.trusted(ip) {
            return;
        }
        let slot = self.slot(now);
        if let Some(s) = self.source(ip, now) {
            s.tally.succeed(slot);
        }
    }

    /// Drop entries with nothing left to remember.
    fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        let slot = self.slot(now);
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| t > now)
                || now.saturating_duration_since(s.window_start) < window
                || !s.tally.is_quiet(slot)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(trusted: &[&str]) -> FloodGuard {
        FloodGuard::new(FloodLimits {
            requests: 100,
            window: Duration::from_secs(1),
            trusted: trusted.iter().filter_map(|c| Cidr::parse(c)).collect(),
            ..FloodLimits::default()
        })
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn failures_ban_and_volume_does_not() {
        let mut g = guard(&[]);
        let t0 = Instant::now();
        let pbx: IpAddr = "192.0.2.1".parse().unwrap();
        // a burst over the ceiling is dropped, logged once, and never banned
        let mut over = Vec::new();
        for i in 0..150 {
            over.push(g.request(pbx, ms(t0, i)));
        }
        assert!(over[..100].iter().all(|v| *v == Verdict::Allow));
        assert_eq!(over[100], Verdict::OverLimit { first: true });
        assert_eq!(over[101], Verdict::OverLimit { first: false });
        assert_eq!(g.request(pbx, ms(t0, 1000)), Verdict::Allow);
        assert!(!g.is_banned(pbx, ms(t0, 1000)));
        // a scanner: failures only
        let scanner: IpAddr = "192.0.2.9".parse().unwrap();
        for i in 0..20 {
            assert!(!g.fail(scanner, ms(t0, i)));
        }
        assert!(g.fail(scanner, ms(t0, 20)));
        assert_eq!(g.bans, 1);
        assert_eq!(g.request(scanner, ms(t0, 30)), Verdict::Banned);
        assert!(g.is_banned(scanner, ms(t0, 299_000)));
        assert_eq!(g.request(scanner, ms(t0, 301_000)), Verdict::Allow);
        // the PBX's callers mistype PINs among hundreds of good calls
        for i in 0..300 {
            g.succeed(pbx, ms(t0, 2000 + i * 30));
            if i % 10 == 0 {
                assert!(!g.fail(pbx, ms(t0, 2000 + i * 30)));
            }
        }
        assert!(!g.is_banned(pbx, ms(t0, 12_000)));
    }

    #[test]
    fn trusted_sources_are_not_counted_and_memory_is_capped() {
        let mut g = guard(&["10.0.0.0/8"]);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.request("10.1.2.3".parse().unwrap(), t0), Verdict::Allow);
            assert!(!g.fail("10.1.2.3".parse().unwrap(), t0));
        }
        // a spray from many addresses fills the table no further than the cap
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC633_0000u32 + i));
            g.request(ip, t0);
        }
        assert!(g.sources.len() <= MAX_SOURCES);
        // and stale entries make room again
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            g.request("203.0.113.9".parse().unwrap(), later),
            Verdict::Allow
        );
        assert!(g.sources.len() < 10);
    }
}
