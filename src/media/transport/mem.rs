//! A leg whose RTP datagrams travel through memory: the test (or benchmark)
//! holds the other end of the port, queues what the "phone" sends and reads what
//! the bridge sent. So a room tick is exercised with no socket and no sleep.
//! Not for production legs: each datagram is a `Vec` behind a lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Recv;

/// The queues of one in-memory leg, shared by the bridge's side and the test's.
#[derive(Debug, Default)]
pub struct MemQueues {
    /// datagrams the peer sends, oldest first
    pub to_bridge: VecDeque<Vec<u8>>,
    /// RTP the bridge sent, oldest first
    pub from_bridge: Vec<Vec<u8>>,
    /// RTCP the bridge sent
    pub rtcp: Vec<Vec<u8>>,
}

/// One end of an in-memory leg (clones share the queues).
#[derive(Debug, Clone, Default)]
pub struct MemPort(Arc<Mutex<MemQueues>>);

impl PartialEq for MemPort {
    fn eq(&self, other: &MemPort) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MemPort {}

impl MemPort {
    /// A new pair of queues.
    pub fn new() -> MemPort {
        MemPort::default()
    }

    /// The queues.
    pub fn queues(&self) -> MutexGuard<'_, MemQueues> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The peer sends a datagram.
    pub fn push(&self, datagram: &[u8]) {
        self.queues().to_bridge.push_back(datagram.to_vec());
    }

    /// What the bridge sent since the last call.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.queues().from_bridge)
    }

    pub(super) fn recv(&self, buf: &mut [u8]) -> Recv {
        match self.queues().to_bridge.pop_front() {
            Some(d) if d.len() <= buf.len() => {
                buf[..d.len()].copy_from_slice(&d);
                Recv::Packet(d.len())
            }
            Some(_) => Recv::Dropped,
            None => Recv::Empty,
        }
    }

    pub(super) fn send(&self, pkt: &[u8]) {
        self.queues().from_bridge.push(pkt.to_vec());
    }

    pub(super) fn send_rtcp(&self, pkt: &[u8]) {
        self.queues().rtcp.push(pkt.to_vec());
    }
}
