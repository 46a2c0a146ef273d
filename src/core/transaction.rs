//! Transaction layer state (RFC 3261 §17) with RFC 6026's Accepted state: matching
//! keys (§17.2.3, with the RFC 2543 fallback), server transactions that absorb
//! retransmitted requests by repeating the last response, and the timers with their
//! RFC names. The state transitions live in [`super::Core`], which owns the timer
//! queue; this module holds the data and the timer arithmetic.

use std::time::Duration;

use crate::sip::headers::RequestHeaders;

use super::{LegId, Peer};

/// Timer values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate
    pub t1: Duration,
    /// maximum retransmit interval for non-INVITE requests and INVITE responses
    pub t2: Duration,
    /// maximum time a message stays in the network
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J and the 2xx retransmission limit.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
    /// Next retransmit interval: double, capped at T2 (Timers E and G).
    pub fn backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.t2)
    }
}

/// The timers the core runs, named as in RFC 3261.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// INVITE server: retransmit the final response (§17.2.1). For a 2xx this is the
    /// TU's retransmission (§13.3.1.4), keyed by the leg.
    G(TxnRef),
    /// INVITE server: give up waiting for the ACK (§17.2.1, §13.3.1.4).
    H(TxnRef),
    /// INVITE server: linger in Confirmed to absorb ACK retransmissions.
    I(TxnKey),
    /// non-INVITE server: linger in Completed to absorb request retransmissions.
    J(TxnKey),
    /// non-INVITE client: retransmit the request (§17.1.2.2).
    E(String),
    /// non-INVITE client: give up.
    F(String),
    /// non-INVITE client: linger in Completed.
    K(String),
    /// RFC 6026 §7.1: Accepted state ends; INVITE retransmissions no longer absorbed.
    L(TxnKey),
    /// the room's answer delay has passed: send the 200
    Answer(LegId, u64),
    /// no key pressed for the room's PIN timeout: judge what was typed
    PinTimeout(LegId, u64),
    /// the goodbye prompt should have ended by now: hang up regardless
    Hangup(LegId),
    /// the grace after the last moderator left is over: end the room
    EndRoom(String),
    /// a participant has waited for the moderator long enough
    WaitTimeout(LegId),
    /// a room created through the API may have been empty for its empty_timeout
    EmptyRoom(String),
    /// retransmit an outbound INVITE (RFC 3261 §17.1.1.2), per attempt
    A(LegId, u32),
    /// an outbound INVITE got no final response in 64*T1
    B(LegId, u32),
    /// an outbound call has rung for its timeout: CANCEL
    Ring(LegId),
    /// an answered outbound call reached `[dialout] max_duration_s`
    MaxDuration(LegId),
    /// the shutdown grace is over: BYE to every leg
    Drain,
    /// a session timer ran out without a refresh (RFC 4028 §10), per generation
    SessionExpiry(LegId, u64),
    /// our turn to refresh the session: generation, interval in seconds
    SessionRefresh(LegId, u64, u32),
}

/// What a G/H timer refers to: a 2xx held by a leg, or a non-2xx held by a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRef {
    /// 2xx to an INVITE (generation stops stale timers)
    Leg(LegId, u64),
    /// non-2xx final response to an INVITE
    Txn(TxnKey),
}

/// Server transaction key (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnKey {
    /// branch, or an RFC 2543 composite
    pub branch: String,
    /// top Via sent-by
    pub sent_by: String,
    /// INVITE for INVITE and its ACK, else the method
    pub method: String,
}

impl TxnKey {
    /// Key of a request; ACK maps to the INVITE it acknowledges.
    pub fn of(h: &RequestHeaders, method: &str) -> TxnKey {
        let via = h.top_via();
        let method = if method == "ACK" { "INVITE" } else { method }.to_string();
        let sent_by = format!(
            "{}:{}",
            via.host.to_ascii_lowercase(),
            via.port.unwrap_or(5060)
        );
        let branch = match via.rfc3261_branch() {
            Some(b) => b.to_string(),
            // RFC 2543 peers: Request-URI is not needed for the bridge's purposes;
            // Call-ID, CSeq number and From tag identify the transaction.
            None => format!(
                "2543;{};{};{}",
                h.call_id,
                h.cseq.seq,
                h.from.tag().unwrap_or("")
            ),
        };
        TxnKey {
            branch,
            sent_by,
            method,
        }
    }
}

/// State of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// no final response yet
    Proceeding,
    /// non-2xx final sent (INVITE), or final sent (non-INVITE)
    Completed,
    /// INVITE: ACK for the non-2xx arrived
    Confirmed,
    /// INVITE: 2xx sent (RFC 6026)
    Accepted,
}

/// A server transaction.
#[derive(Debug, Clone)]
pub struct ServerTxn {
    /// state
    pub state: ServerState,
    /// last response sent, repeated on retransmitted requests
    pub last: Option<Vec<u8>>,
    /// where responses go
    pub peer: Peer,
    /// the leg an INVITE created or targets
    pub leg: Option<LegId>,
    /// current Timer G interval
    pub interval: Duration,
}

/// A non-INVITE client transaction (the bridge's own BYE).
#[derive(Debug, Clone)]
pub struct ClientTxn {
    /// the request bytes
    pub request: Vec<u8>,
    /// where it goes
    pub peer: Peer,
    /// current Timer E interval
    pub interval: Duration,
    /// a final response arrived
    pub completed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let t = TimerConfig::default();
        let mut i = t.t1;
        let mut sched = vec![i];
        for _ in 0..5 {
            i = t.backoff(i);
            sched.push(i);
        }
        let ms: Vec<u128> = sched.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(t.timeout(), Duration::from_secs(32));
    }
}
