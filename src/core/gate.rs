//! What new calls must pass before anything else: flood control (bans, request
//! ceilings, failures counted per source) and overload (the media side late).

use std::net::IpAddr;
use std::time::Instant;

use super::leg::LegState;
use super::{Core, LeftReason, LegId};

use crate::sip::message;

impl Core {
    /// The driver judged the bridge overloaded (media ticks running late), or no
    /// longer: while it is, new INVITEs get 503 with Retry-After.
    pub fn set_overloaded(&mut self, on: bool) {
        if on != self.overloaded {
            if on {
                tracing::warn!("overloaded: media ticks run late; new calls get 503");
            } else {
                tracing::info!("no longer overloaded: new calls accepted");
            }
        }
        self.overloaded = on;
    }

    /// Whether the driver should hand this message from `ip` to the core at all: a
    /// banned source is dropped unread unless it still holds calls, whose
    /// in-dialog requests (a BYE above all) are served.
    ///
    /// A source banned or over its request ceiling would see its new requests
    /// dropped after parsing anyway: those found new by a glance at their bytes
    /// are dropped before, so that a flood costs no parsing.
    pub fn reads_from(&mut self, ip: IpAddr, now: Instant, data: &[u8]) -> bool {
        let banned = self.flood.is_banned(ip, now);
        let read = if banned && self.legs_from.get(&ip).is_none_or(|n| *n == 0) {
            false
        } else if banned || self.flood.is_over_limit(ip, now) {
            !message::glance_is_new_request(data)
        } else {
            true
        };
        if !read {
            self.flood.dropped += 1;
        }
        read
    }

    /// Flood-control figures: (bans issued, requests dropped, sources banned now).
    pub fn flood_stats(&self, now: Instant) -> (u64, u64, usize) {
        (self.flood.bans, self.flood.dropped, self.flood.banned(now))
    }

    /// A failed attempt by `ip` (no such room, not allowed, wrong PIN, malformed):
    /// counted by flood control, which may ban the source for it.
    pub(super) fn failure(&mut self, now: Instant, ip: IpAddr) {
        self.share(super::cluster::GuardNote::Source {
            src: ip,
            right: false,
        });
        if self.flood.fail(ip, now) {
            self.ban(now, ip);
        }
    }

    /// A call `ip` started was admitted: counted for it by flood control.
    pub(super) fn success(&mut self, now: Instant, ip: IpAddr) {
        self.share(super::cluster::GuardNote::Source {
            src: ip,
            right: true,
        });
        self.flood.succeed(ip, now);
    }

    /// A source was just banned for its failures. Its calls not admitted to a room
    /// (typing a PIN, unanswered or not ACKed yet, in a hidden unknown room) end
    /// now, so a scanner holds no ports or media; its admitted calls go on (unless
    /// `ban_ends_calls`), and its in-dialog requests are still served.
    pub(super) fn ban(&mut self, now: Instant, ip: IpAddr) {
        let all = self.cfg.ban_ends_calls;
        let ids: Vec<LegId> = self
            .legs
            .iter()
            .filter(|(_, l)| l.peer.addr.ip() == ip && l.dial.is_none())
            .filter(|(id, l)| {
                all || l.state != LegState::Confirmed
                    || !self
                        .rooms
                        .get(l.room.as_str())
                        .is_some_and(|r| r.admitted(**id))
            })
            .map(|(id, _)| *id)
            .collect();
        tracing::warn!(source = %ip, ending = ids.len(), "flood: source banned for its failed attempts");
        for id in ids {
            self.end_leg(now, id, true, LeftReason::Refused);
        }
    }

    /// Whether a new call would be taken now: not draining, not overloaded.
    pub fn accepting_calls(&self) -> bool {
        !self.draining && !self.overloaded
    }
}
