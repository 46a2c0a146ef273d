//! A leg whose RTP datagrams are exchanged with a task off the media thread: a
//! gateway that carries the leg's audio somewhere RTP does not go (a WebSocket
//! server of an NCCO `connect`). The gateway makes and reads plain RTP, so the
//! leg above is the same as a phone's.
//!
//! Two lock-free single-producer rings ([`rtrb`]) of fixed slots, one each way:
//! a datagram is copied into a slot by value, so neither side takes a lock or
//! allocates per packet. A ring that is full drops the datagram (the gateway
//! paces what it sends, one packet per 20 ms, so only a stalled peer fills one).
//! Either side dropping its end is seen by the other as the leg gone. Two legs'
//! ends can also be crossed ([`crossed`]): rooms linked on one node, each
//! leg the other's peer.

use super::Recv;

/// The largest datagram a slot holds: RTP header and 20 ms of 8 kHz L16 with
/// room to spare.
pub const SLOT: usize = 512;
/// Datagrams a ring holds (a third of a second of audio).
const RING: usize = 16;

/// One datagram.
#[derive(Clone, Copy)]
pub struct Slot {
    len: u16,
    data: [u8; SLOT],
}

impl Slot {
    fn of(datagram: &[u8]) -> Option<Slot> {
        let len = datagram.len();
        (len <= SLOT).then(|| {
            let mut s = Slot {
                len: len as u16,
                data: [0; SLOT],
            };
            s.data[..len].copy_from_slice(datagram);
            s
        })
    }

    /// The datagram's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// The media worker's end.
pub struct PipePort {
    inbound: rtrb::Consumer<Slot>,
    outbound: rtrb::Producer<Slot>,
}

impl std::fmt::Debug for PipePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipePort")
            .field("gone", &self.gone())
            .finish()
    }
}

/// The gateway's end.
pub struct PipeEnd {
    inbound: rtrb::Producer<Slot>,
    outbound: rtrb::Consumer<Slot>,
}

/// A new pipe: the leg's end and the gateway's.
pub fn pipe() -> (PipePort, PipeEnd) {
    let (in_tx, in_rx) = rtrb::RingBuffer::new(RING);
    let (out_tx, out_rx) = rtrb::RingBuffer::new(RING);
    (
        PipePort {
            inbound: in_rx,
            outbound: out_tx,
        },
        PipeEnd {
            inbound: in_tx,
            outbound: out_rx,
        },
    )
}

/// Two legs' ends, each the other's peer (a link between rooms): what one
/// sends the other receives, with no task between them.
pub fn crossed() -> (PipePort, PipePort) {
    let (a_tx, a_rx) = rtrb::RingBuffer::new(RING);
    let (b_tx, b_rx) = rtrb::RingBuffer::new(RING);
    (
        PipePort {
            inbound: b_rx,
            outbound: a_tx,
        },
        PipePort {
            inbound: a_rx,
            outbound: b_tx,
        },
    )
}

impl PipePort {
    pub(super) fn recv(&mut self, buf: &mut [u8]) -> Recv {
        match self.inbound.pop() {
            Ok(s) if s.bytes().len() <= buf.len() => {
                let d = s.bytes();
                buf[..d.len()].copy_from_slice(d);
                Recv::Packet(d.len())
            }
            Ok(_) => Recv::Dropped,
            Err(_) => Recv::Empty,
        }
    }

    pub(super) fn send(&mut self, pkt: &[u8]) {
        if let Some(s) = Slot::of(pkt) {
            let _ = self.outbound.push(s);
        }
    }

    /// Whether the gateway is gone.
    pub fn gone(&self) -> bool {
        self.inbound.is_abandoned()
    }
}

impl PipeEnd {
    /// Hand the leg a datagram; false when the ring is full or too long a one.
    pub fn push(&mut self, datagram: &[u8]) -> bool {
        Slot::of(datagram).is_some_and(|s| self.inbound.push(s).is_ok())
    }

    /// The next datagram the leg sent.
    pub fn pop(&mut self) -> Option<Slot> {
        self.outbound.pop().ok()
    }

    /// Whether the leg is gone (its media closed).
    pub fn gone(&self) -> bool {
        self.outbound.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_cross_both_ways_and_a_dropped_end_is_seen() {
        let (mut port, mut end) = pipe();
        let mut buf = [0u8; 1500];
        assert_eq!(port.recv(&mut buf), Recv::Empty);
        assert!(end.push(&[1, 2, 3]));
        assert_eq!(port.recv(&mut buf), Recv::Packet(3));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        port.send(&[9; 100]);
        assert_eq!(end.pop().map(|s| s.bytes().len()), Some(100));
        assert!(!end.push(&[0; SLOT + 1]));
        for _ in 0..RING {
            assert!(end.push(&[0; 10]));
        }
        assert!(!end.push(&[0; 10]), "a full ring refuses");
        assert!(!end.gone() && !port.gone());
        drop(port);
        assert!(end.gone());
        let (port, end) = pipe();
        drop(end);
        assert!(port.gone());
        let (mut a, mut b) = crossed();
        a.send(&[7; 20]);
        assert_eq!(b.recv(&mut buf), Recv::Packet(20));
        b.send(&[8; 30]);
        assert_eq!(a.recv(&mut buf), Recv::Packet(30));
    }
}
