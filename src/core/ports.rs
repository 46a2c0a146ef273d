//! RTP port allocation (numbers only; the media driver binds them). RTP takes the
//! even port and RTCP the odd one above it (RFC 3550 §11). Allocation rotates through
//! the range so that a port just released is the last to be handed out again: the
//! media worker closes a socket up to one tick after signalling frees its number.

use std::collections::BTreeSet;

/// The configured range.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    next: u16,
    used: BTreeSet<u16>,
    retired: BTreeSet<u16>,
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
            retired: BTreeSet::new(),
        }
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        if self.max <= self.min {
            return 0;
        }
        usize::from(self.max - self.min).div_ceil(2)
    }

    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        self.used.len()
    }

    /// Take a free RTP port.
    pub fn allocate(&mut self) -> Option<u16> {
        for _ in 0..self.capacity() {
            let p = self.next;
            self.next = if u32::from(p) + 2 >= u32::from(self.max) {
                self.min
            } else {
                p + 2
            };
            if self.used.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// Return a port.
    pub fn release(&mut self, port: u16) {
        if !self.retired.contains(&port) {
            self.used.remove(&port);
        }
    }

    /// Never hand this port out again (it could not be bound).
    pub fn retire(&mut self, port: u16) {
        self.retired.insert(port);
        self.used.insert(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_exhausts() {
        let mut p = PortPool::new(20001, 20009);
        assert_eq!(p.capacity(), 4);
        let got: Vec<u16> = (0..4).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(got, vec![20002, 20004, 20006, 20008]);
        assert_eq!(p.allocate(), None);
        p.release(20004);
        assert_eq!(p.allocate(), Some(20004));
        assert_eq!(p.in_use(), 4);
        // a retired port stays out of rotation after its leg ends
        p.retire(20006);
        p.release(20006);
        p.release(20002);
        assert_eq!(p.allocate(), Some(20002));
        assert_eq!(p.allocate(), None);
    }
}
