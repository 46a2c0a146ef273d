//! The core's timers, keyed by their owner and purpose (the idea of quinn-proto's
//! `TimerTable`): setting a key replaces its pending expiry and cancelling removes
//! it, so no generation counter is needed to tell a stale timer from a live one.
//! Timer names follow RFC 3261 §17 (A, B, E–L) and RFC 4028; the rest belong to a
//! leg or a room. Sans-IO: instants are arguments.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Instant;

use super::transaction::TxnKey;
use crate::ids::{LegId, RoomId};

/// A server transaction's timers (§17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnTimer {
    /// INVITE server: retransmit the non-2xx final response (§17.2.1)
    G,
    /// INVITE server: give up waiting for the ACK of a non-2xx
    H,
    /// INVITE server: linger in Confirmed to absorb ACK retransmissions
    I,
    /// non-INVITE server: linger in Completed to absorb request retransmissions
    J,
    /// RFC 6026 §7.1: the Accepted state ends
    L,
}

/// A non-INVITE client transaction's timers (§17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientTimer {
    /// retransmit the request
    E,
    /// give up
    F,
    /// linger in Completed
    K,
}

/// A leg's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegTimer {
    /// retransmit the 2xx until its ACK (§13.3.1.4, as Timer G)
    G,
    /// no ACK for the 2xx within 64·T1: end the call (as Timer H)
    H,
    /// the room's answer delay has passed: send the 200
    Answer,
    /// retransmit an outbound INVITE (§17.1.1.2)
    A,
    /// an outbound INVITE got no final response in 64·T1
    B,
    /// an outbound call has rung for its timeout: CANCEL
    Ring,
    /// an answered outbound call reached `[dialout] max_duration_s`
    MaxDuration,
    /// a session timer ran out without a refresh (RFC 4028 §10)
    SessionExpiry,
    /// our turn to refresh the session (RFC 4028 §7.4)
    SessionRefresh,
}

/// A room's timers, some for one of its participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomTimer {
    /// the grace after the last moderator left is over: end the room
    End,
    /// a room created through the API may have been empty for its empty_timeout
    Empty,
    /// no key pressed for the PIN timeout: judge what was typed
    Pin(LegId),
    /// a participant has waited for the moderator long enough
    Wait(LegId),
    /// the goodbye prompt should have ended by now: hang up regardless
    Hangup(LegId),
    /// an NCCO input got no key for its timeOut: it is complete
    Input(LegId),
    /// an NCCO record reached its timeOut: it ends
    RecordEnd(LegId),
    /// an NCCO record heard no talking for its endOnSilence: it ends
    RecordSilence(LegId),
    /// a muted participant has been talking for a while: tell it it is muted
    MutedTalk(LegId),
}

/// Every timer of the core, by owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CoreTimer {
    /// a server transaction's
    Txn(TxnKey, TxnTimer),
    /// a client transaction's, by branch
    Client(String, ClientTimer),
    /// a leg's
    Leg(LegId, LegTimer),
    /// a room's, by name
    Room(RoomId, RoomTimer),
    /// the shutdown grace is over: BYE to every leg
    Drain,
}

/// Pending timers, ordered by expiry, at most one per key.
#[derive(Debug)]
pub struct TimerTable<K> {
    by_time: BTreeMap<(Instant, u64), K>,
    by_key: HashMap<K, (Instant, u64)>,
    seq: u64,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            by_time: BTreeMap::new(),
            by_key: HashMap::new(),
            seq: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> TimerTable<K> {
    /// Expire `key` at `at`, replacing what it was set to.
    pub fn set(&mut self, key: K, at: Instant) {
        self.seq += 1;
        let slot = (at, self.seq);
        if let Some(old) = self.by_key.insert(key.clone(), slot) {
            self.by_time.remove(&old);
        }
        self.by_time.insert(slot, key);
    }

    /// Forget `key`.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&old);
        }
    }

    /// The earliest expiry.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.keys().next().map(|(t, _)| *t)
    }

    /// The earliest timer due at `now`, taken out.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let entry = self.by_time.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let key = entry.remove();
        self.by_key.remove(&key);
        Some(key)
    }

    /// Timers pending.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when none is pending.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_replaces_and_cancel_removes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = TimerTable::default();
        t.set("a", t0 + s(5));
        t.set("b", t0 + s(3));
        t.set("a", t0 + s(1)); // replaces a's 5 s
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + s(1)));
        assert_eq!(t.pop_due(t0 + s(2)), Some("a"));
        assert_eq!(t.pop_due(t0 + s(2)), None);
        t.cancel(&"b");
        assert!(t.is_empty());
        assert_eq!(t.pop_due(t0 + s(10)), None);
    }
}
