//! Session timers as UAS (RFC 4028): a dialog whose peer asked for one is kept
//! alive by refreshes (re-INVITE or UPDATE); one nobody refreshes is ended with a
//! BYE before it expires (§10), so a peer that vanished without BYE does not hold
//! a leg for ever. An interval below our Min-SE gets 422 (§8.1). When the refresher
//! is us, we refresh with an UPDATE without a body at half the interval (§10).

use std::time::{Duration, Instant};

use super::timers::{CoreTimer, LegTimer};
use super::{Core, LeftReason, LegId};
use crate::sip::{Message, Method};

/// Our Min-SE: the RFC 4028 floor.
pub const MIN_SE: u32 = 90;

/// Who refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// the caller (our peer)
    Uac,
    /// the bridge
    Uas,
}

/// A negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// seconds
    pub interval: u32,
    /// who refreshes
    pub refresher: Refresher,
    /// the peer supports timer (so our 2xx may Require it)
    pub peer_supports: bool,
}

/// Why a request's Session-Expires is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    /// the Min-SE to answer 422 with
    pub min_se: u32,
}

fn supports_timer(msg: &Message) -> bool {
    msg.list("Supported")
        .iter()
        .chain(msg.list("k").iter())
        .any(|o| o.trim().eq_ignore_ascii_case("timer"))
}

/// Read the request's Session-Expires (`x`) and Min-SE; None when it asks for no
/// session timer.
pub fn negotiate(msg: &Message) -> Result<Option<SessionTimer>, TooSmall> {
    let Some(se) = msg.header("Session-Expires").or_else(|| msg.header("x")) else {
        return Ok(None);
    };
    let mut parts = se.split(';');
    let Ok(interval) = parts.next().unwrap_or("").trim().parse::<u32>() else {
        return Ok(None); // malformed: as if absent
    };
    let their_min = msg
        .header("Min-SE")
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if interval < MIN_SE {
        return Err(TooSmall {
            min_se: MIN_SE.max(their_min),
        });
    }
    let peer_supports = supports_timer(msg);
    let asked = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| v.trim().to_ascii_lowercase())
    });
    let refresher = match asked.as_deref() {
        Some("uas") => Refresher::Uas,
        Some("uac") => Refresher::Uac,
        // §9: we choose; a peer that does not support timers cannot refresh
        _ if peer_supports => Refresher::Uac,
        _ => Refresher::Uas,
    };
    Ok(Some(SessionTimer {
        interval,
        refresher,
        peer_supports,
    }))
}

impl SessionTimer {
    /// Headers for our 2xx (§9).
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let who = match self.refresher {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        };
        let mut h = vec![(
            "Session-Expires",
            format!("{};refresher={who}", self.interval),
        )];
        if self.peer_supports {
            h.push(("Require", "timer".into()));
        }
        h
    }
}

impl Core {
    /// A 2xx to an INVITE or UPDATE of this leg carried `timer`: (re)start it.
    pub(super) fn start_session_timer(&mut self, now: Instant, id: LegId, timer: SessionTimer) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.refresh_every = timer.interval;
        self.stop_session_timer(id);
        let interval = Duration::from_secs(u64::from(timer.interval));
        match timer.refresher {
            Refresher::Uac => {
                // §10: BYE at SE - min(32, SE/3) without a refresh
                let margin = Duration::from_secs(32).min(interval / 3);
                let key = CoreTimer::Leg(id, LegTimer::SessionExpiry);
                self.timers.set(key, now + interval - margin);
            }
            Refresher::Uas => {
                let key = CoreTimer::Leg(id, LegTimer::SessionRefresh);
                self.timers.set(key, now + interval / 2);
            }
        }
    }

    /// The leg's session timer is off (a refresh without Session-Expires, RFC
    /// 4028 §9), or about to be replaced.
    pub(super) fn stop_session_timer(&mut self, id: LegId) {
        self.timers
            .cancel(&CoreTimer::Leg(id, LegTimer::SessionExpiry));
        self.timers
            .cancel(&CoreTimer::Leg(id, LegTimer::SessionRefresh));
    }

    /// Timer: no refresh came in time.
    pub(super) fn session_expired(&mut self, now: Instant, id: LegId) {
        if self.legs.contains_key(&id) {
            tracing::info!(leg = %id, "session timer expired without a refresh: BYE");
            self.end_leg(now, id, true, LeftReason::Timeout);
        }
    }

    /// Timer: our turn to refresh (UPDATE without a body).
    pub(super) fn session_refresh(&mut self, now: Instant, id: LegId) {
        let Some(interval) = self.legs.get(&id).map(|l| l.refresh_every) else {
            return;
        };
        let extra = [("Session-Expires", format!("{interval};refresher=uas"))];
        self.send_in_dialog(now, id, Method::Update, &extra);
        let key = CoreTimer::Leg(id, LegTimer::SessionRefresh);
        self.timers
            .set(key, now + Duration::from_secs(u64::from(interval / 2)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(extra: &str) -> Message {
        Message::parse(
            format!(
                "INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:demo@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn negotiation_follows_rfc4028() {
        assert_eq!(negotiate(&msg("")), Ok(None));
        assert_eq!(
            negotiate(&msg("Session-Expires: 60\r\n")),
            Err(TooSmall { min_se: 90 })
        );
        let t = negotiate(&msg("Supported: timer\r\nSession-Expires: 1800\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(t.refresher, Refresher::Uac);
        assert!(t.response_headers().contains(&("Require", "timer".into())));
        let t = negotiate(&msg("Session-Expires: 600\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(
            t.refresher,
            Refresher::Uas,
            "a peer without timer support cannot refresh"
        );
        let t = negotiate(&msg("k: timer\r\nx: 300;refresher=uas\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!((t.interval, t.refresher), (300, Refresher::Uas));
    }
}
