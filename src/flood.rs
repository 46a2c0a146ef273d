//! Flood control ahead of the SIP parser, in the manner of Kamailio's pike module:
//! each source address may send `requests` requests per `window`; one that sends
//! more is banned (its datagrams dropped unread, its TCP connections closed) for
//! `ban`. Trusted networks (a PBX trunk) are never counted. Sans-IO: time is an
//! argument. Memory is capped: at most [`MAX_SOURCES`] addresses are tracked, stale
//! ones are dropped first, and when every slot holds a live entry new sources are
//! let through uncounted rather than growing the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::core::Cidr;

/// Addresses tracked at most.
pub const MAX_SOURCES: usize = 65_536;

/// What to do with a request from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// handle it
    Allow,
    /// drop it: the source is banned
    Drop,
    /// drop it: the source has just gone over its limit and is banned from now
    Banned,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    window_start: Instant,
    count: u32,
    banned_until: Option<Instant>,
}

/// The limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodLimits {
    /// requests allowed per window (0: flood control off)
    pub requests: u32,
    /// the window
    pub window: Duration,
    /// how long a source that went over stays banned
    pub ban: Duration,
    /// never counted
    pub trusted: Vec<Cidr>,
}

/// Per-source counters and bans.
#[derive(Debug)]
pub struct FloodGuard {
    limits: FloodLimits,
    sources: HashMap<IpAddr, Source>,
    /// bans issued so far (for metrics)
    pub bans: u64,
    /// requests dropped so far (for metrics)
    pub dropped: u64,
}

impl FloodGuard {
    /// A guard with these limits.
    pub fn new(limits: FloodLimits) -> FloodGuard {
        FloodGuard {
            limits,
            sources: HashMap::new(),
            bans: 0,
            dropped: 0,
        }
    }

    /// New limits (config reload); counters and bans stay.
    pub fn set_limits(&mut self, limits: FloodLimits) {
        self.limits = limits;
    }

    /// Sources banned right now.
    pub fn banned(&self, now: Instant) -> usize {
        self.sources
            .values()
            .filter(|s| s.banned_until.is_some_and(|t| t > now))
            .count()
    }

    /// Whether a source is banned (without counting a request).
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Count one request from `ip`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let l = &self.limits;
        if l.requests == 0 || l.trusted.iter().any(|c| c.contains(ip)) {
            return Verdict::Allow;
        }
        let (window, ban, limit) = (l.window, l.ban, l.requests);
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.prune(now);
            if self.sources.len() >= MAX_SOURCES {
                return Verdict::Allow;
            }
        }
        let s = self.sources.entry(ip).or_insert(Source {
            window_start: now,
            count: 0,
            banned_until: None,
        });
        if let Some(until) = s.banned_until {
            if until > now {
                self.dropped += 1;
                return Verdict::Drop;
            }
            s.banned_until = None;
            s.count = 0;
            s.window_start = now;
        }
        if now.saturating_duration_since(s.window_start) >= window {
            s.window_start = now;
            s.count = 0;
        }
        s.count += 1;
        if s.count > limit {
            s.banned_until = Some(now + ban);
            self.bans += 1;
            self.dropped += 1;
            return Verdict::Banned;
        }
        Verdict::Allow
    }

    /// Drop entries whose window and ban are over.
    fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|t| t > now)
                || now.saturating_duration_since(s.window_start) < window
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(trusted: &[&str]) -> FloodGuard {
        FloodGuard::new(FloodLimits {
            requests: 16,
            window: Duration::from_secs(2),
            ban: Duration::from_secs(300),
            trusted: trusted.iter().filter_map(|c| Cidr::parse(c)).collect(),
        })
    }

    #[test]
    fn more_than_16_in_2s_bans_for_300s() {
        let mut g = guard(&[]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..16 {
            assert_eq!(
                g.check(ip, t0 + Duration::from_millis(i * 100)),
                Verdict::Allow
            );
        }
        assert_eq!(
            g.check(ip, t0 + Duration::from_millis(1700)),
            Verdict::Banned
        );
        assert_eq!(g.check(ip, t0 + Duration::from_secs(100)), Verdict::Drop);
        assert!(g.is_banned(ip, t0 + Duration::from_secs(299)));
        assert_eq!(g.check(ip, t0 + Duration::from_secs(302)), Verdict::Allow);
        // a steady 7 per second never trips it
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..700 {
            assert_eq!(
                g.check(other, t0 + Duration::from_millis(i * 143)),
                Verdict::Allow
            );
        }
    }

    #[test]
    fn trusted_sources_are_not_counted_and_memory_is_capped() {
        let mut g = guard(&["10.0.0.0/8"]);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.check("10.1.2.3".parse().unwrap(), t0), Verdict::Allow);
        }
        // a spray from many addresses fills the table no further than the cap
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xC633_0000u32 + i));
            g.check(ip, t0);
        }
        assert!(g.sources.len() <= MAX_SOURCES);
        // and stale entries make room again
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            g.check("203.0.113.9".parse().unwrap(), later),
            Verdict::Allow
        );
        assert!(g.sources.len() < 10);
    }
}
