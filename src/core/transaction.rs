//! Transaction layer state (RFC 3261 §17) with RFC 6026's Accepted state: matching
//! keys (§17.2.3, with the RFC 2543 fallback), server transactions that absorb
//! retransmitted requests by repeating the last response, and the timers with their
//! RFC names (`super::timers`). The state transitions live in [`super::Core`],
//! which owns the timers; this module holds the data and the timer arithmetic.

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
