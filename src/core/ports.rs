//! RTP port allocation (numbers only; the media driver binds them, before any
//! answer or offer announces them). RTP takes the even port and RTCP the odd one
//! above it (RFC 3550 §11). Allocation rotates through the range so that a port just
//! released is the last to be handed out again: the media worker closes a socket up
//! to one tick after signalling frees its number. A port that could not be bound
//! (another program holds it) is retired until a cool-off ends, then tried again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The configured range.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    next: u16,
    used: BTreeSet<u16>,
    /// ports of the range another listener of ours holds (the WebRTC port)
    reserved: BTreeSet<u16>,
    /// ports resting after a failed bind, until when
    retired: BTreeMap<u16, Instant>,
}

impl PortPool {
    /// Ports `min..=max`; pairs start on even ports.
    pub fn new(min: u16, max: u16) -> PortPool {
        let min = min + (min % 2);
        PortPool {
            min,
            max,
            next: min,
            used: BTreeSet::new(),
            reserved: BTreeSet::new(),
            retired: BTreeMap::new(),
        }
    }

    /// Never hand out the pair holding `port` (another listener binds it).
    pub fn reserve(&mut self, port: u16) {
        self.reserved.insert(port - port % 2);
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        if self.max <= self.min {
            return 0;
        }
        usize::from(self.max - self.min).div_ceil(2)
    }

    /// Pairs held by legs.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    /// Pairs resting after a failed bind.
    pub fn retired(&self, now: Instant) -> usize {
        self.retired.values().filter(|&&t| t > now).count()
    }

    /// Take a free RTP port.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        self.retired.retain(|_, until| *until > now);
        for _ in 0..self.capacity() {
            let p = self.next;
            self.next = if u32::from(p) + 2 >= u32::from(self.max) {
                self.min
            } else {
                p + 2
            };
            if !self.retired.contains_key(&p) && !self.reserved.contains(&p) && self.used.insert(p)
            {
                return Some(p);
            }
        }
        None
    }

    /// Return a port.
    pub fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }

    /// A port that could not be bound: out of use, and not handed out again
    /// before `until`.
    pub fn retire(&mut self, port: u16, until: Instant) {
        self.used.remove(&port);
        self.retired.insert(port, until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_never_handed_out() {
        let mut p = PortPool::new(20000, 20009);
        p.reserve(20005);
        let now = Instant::now();
        let got: Vec<u16> = std::iter::from_fn(|| p.allocate(now)).collect();
        assert_eq!(got, [20000, 20002, 20006, 20008]);
    }

    #[test]
    fn rotates_and_exhausts() {
        let t0 = Instant::now();
        let mut p = PortPool::new(20001, 20009);
        assert_eq!(p.capacity(), 4);
        let got: Vec<u16> = (0..4).map(|_| p.allocate(t0).unwrap()).collect();
        assert_eq!(got, vec![20002, 20004, 20006, 20008]);
        assert_eq!(p.allocate(t0), None);
        p.release(20004);
        assert_eq!(p.allocate(t0), Some(20004));
        assert_eq!(p.in_use(), 4);
        // a retired port is out of use (not counted) and out of rotation during
        // its cool-off, then back
        let cool = t0 + std::time::Duration::from_secs(60);
        p.retire(20006, cool);
        assert_eq!((p.in_use(), p.retired(t0)), (3, 1));
        p.release(20006);
        p.release(20002);
        assert_eq!(p.allocate(t0), Some(20002));
        assert_eq!(p.allocate(t0), None);
        assert_eq!(p.allocate(cool), Some(20006));
        assert_eq!(p.retired(cool), 0);
    }
}
