//! Rooms placed across nodes (`[cluster]`): the core's side of the room
//! registry. The registry itself (leases in Redis, which nodes live) is the
//! driver's (`driver::cluster`); the core only asks and is told. A room this
//! node does not hold is claimed before its first call is admitted
//! ([`Output::Claim`]); calls for it wait for the answer, parked as they are
//! for the answer webhook. Held here: they are admitted. Held by another live
//! node: each gets `302 Moved Temporarily` with that node's Contact (RFC 3261
//! §21.3.3), which Kamailio follows, so every caller of a room lands on one
//! node. The registry unreachable: admitted here (a conference that works
//! beats one refused; the log says the room may be split). A held room that
//! empties is released ([`Output::Release`]).
//!
//! A room bigger than a node (`[cluster] cascade_at` callers here): the node
//! holding it sends further callers to a satellite node (one the registry
//! names, [`Output::Cascade`]) by 302 to `sip:ROOM@satellite;caucus-cascade=US`.
//! The satellite admits them into its own room of that name and links it to
//! ours by a room link (a SIP leg carrying each side's loudest talkers, Opus
//! first), so every participant hears one conference; the satellite's room
//! ends its link when its last caller leaves.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::room::Room;
use super::routing::{Parked, RouteDecision};
use super::transaction::TxnKey;
use super::{Core, Output, Peer};
use crate::sip::Message;
use crate::sip::status::Reject;

/// A source's PIN try or call attempt, shared with the other nodes so that N
/// nodes do not give a guesser N times the tries: each node counts the others'
/// in its own lockouts and bans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GuardNote {
    /// a PIN typed into `room` (by DTMF or on the join page)
    Pin {
        /// room
        room: String,
        /// the caller's address
        src: std::net::IpAddr,
        /// the right PIN
        right: bool,
    },
    /// a call attempt: admitted (right) or failed (no such room, not allowed,
    /// malformed)
    Source {
        /// the caller's address
        src: std::net::IpAddr,
        /// admitted
        right: bool,
    },
}

/// A room a dead node held, with what was running there: its recordings (ids)
/// and its outbound calls (leg id, target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lost {
    /// room
    pub room: String,
    /// the dead node's `node_id`
    pub node: String,
    /// recordings being written there
    pub recordings: Vec<String>,
    /// dial-outs ringing or answered there
    pub dialouts: Vec<(u64, String)>,
}

/// What the registry said of a claimed room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// this node holds it now
    Held,
    /// another live node holds it: its SIP URI (`sip:host:port`)
    Elsewhere(String),
    /// the registry could not be asked
    Unreachable,
}

/// A call waiting for a claim, with the answer webhook's decision it had.
type Waiting = (Parked, Option<(u64, RouteDecision)>);

/// The core's view of placement: what this node holds and the calls waiting
/// for a claim.
#[derive(Default)]
pub(super) struct Placement {
    held: HashSet<String>,
    waiting: HashMap<String, Vec<Waiting>>,
    /// a held room's satellite (`host:port`), and since when
    satellites: HashMap<String, (String, Instant)>,
    /// calls waiting for a satellite to be named
    cascading: HashMap<String, Vec<Waiting>>,
    /// rooms with no satellite to be had (no other node), until then
    no_satellite: HashMap<String, Instant>,
    /// rooms here that are another node's satellites: the holder's `host:port`
    satellite_of: HashMap<String, SocketAddr>,
}

/// The R-URI parameter that sends a caller to a satellite: its value is the
/// holder's `host:port`.
const CASCADE_PARAM: &str = "caucus-cascade=";
/// A satellite named but not linked yet is trusted this long.
const SATELLITE_GRACE: Duration = Duration::from_secs(15);
/// With no other node to cascade to, a room is not asked again for this long.
const NO_SATELLITE: Duration = Duration::from_secs(10);

/// The holder a caller was sent from to this node as a satellite, from the
/// Request-URI's `caucus-cascade` parameter.
pub(super) fn cascade_holder(msg: &Message) -> Option<SocketAddr> {
    let crate::sip::StartLine::Request { uri, .. } = &msg.start else {
        return None;
    };
    let at = uri.find(CASCADE_PARAM)? + CASCADE_PARAM.len();
    let v = &uri[at..];
    let end = v.find([';', '?', '>']).unwrap_or(v.len());
    v[..end].parse().ok()
}

/// Most calls waiting for claims at once (each claim is one Redis round trip).
const MAX_WAITING: usize = 10_000;

impl Core {
    /// Whether a call for `room` must wait for a claim first; if so it is
    /// parked (with the webhook's decision it already had) and the claim asked.
    pub(super) fn claim_first(
        &mut self,
        room: &str,
        call: (Peer, TxnKey, &Message),
        decided: Option<(u64, RouteDecision)>,
    ) -> bool {
        let p = &mut self.placement;
        if !self.cfg.cluster || p.held.contains(room) {
            return false;
        }
        let waiting: usize = p.waiting.values().map(Vec::len).sum();
        if waiting >= MAX_WAITING {
            return false;
        }
        if park(&mut p.waiting, room, call, decided) {
            self.out.push_back(Output::Claim {
                room: room.to_string(),
            });
        }
        true
    }

    /// A call for a held room that has `cascade_at` callers already: sent to
    /// the room's satellite (named by the registry first, the call waiting).
    /// False when it is to be admitted here.
    pub(super) fn cascade_first(
        &mut self,
        now: Instant,
        room: &str,
        call: (Peer, TxnKey, &Message),
        decided: Option<(u64, RouteDecision)>,
    ) -> bool {
        let at = if self.cfg.cluster {
            self.cfg.cascade_at
        } else {
            0
        };
        let Some(r) = self.rooms.get(room) else {
            return false;
        };
        if at == 0 || r.callers() < at {
            return false;
        }
        if self
            .placement
            .no_satellite
            .get(room)
            .is_some_and(|t| now < *t)
        {
            return false;
        }
        let (from, key, msg) = call;
        if let Some((sat, since)) = self.placement.satellites.get(room) {
            let linked = r
                .link_legs()
                .iter()
                .any(|(_, name)| name.ends_with(&format!("@{sat}")));
            if linked || now.saturating_duration_since(*since) < SATELLITE_GRACE {
                let contact = format!("<sip:{room}@{sat};{CASCADE_PARAM}{}>", from.local);
                self.reject(now, &key, msg, from, Reject::Moved(contact));
                return true;
            }
            // named, never linked: named again
            self.placement.satellites.remove(room);
        }
        if park(
            &mut self.placement.cascading,
            room,
            (from, key, msg),
            decided,
        ) {
            self.out.push_back(Output::Cascade {
                room: room.to_string(),
            });
        }
        true
    }

    /// The registry named a satellite for `room` (`host:port`), or there is
    /// none: the calls that waited go to it, or are admitted here.
    pub fn cascade_found(&mut self, now: Instant, room: &str, satellite: Option<String>) {
        match &satellite {
            Some(s) => {
                tracing::info!(%room, satellite = %s, "room over cascade_at: further callers go to a satellite");
                self.placement
                    .satellites
                    .insert(room.to_string(), (s.clone(), now));
            }
            None => {
                tracing::warn!(%room, "room over cascade_at and no other node to cascade to: admitted here");
                self.placement
                    .no_satellite
                    .insert(room.to_string(), now + NO_SATELLITE);
            }
        }
        for (p, decided) in self.placement.cascading.remove(room).unwrap_or_default() {
            self.resume(now, p, decided);
        }
    }

    /// A caller sent here as a satellite of `holder`'s room is in: the room
    /// here is linked to the holder's, once.
    pub(super) fn satellite_joined(
        &mut self,
        now: Instant,
        room: &str,
        holder: SocketAddr,
        local: SocketAddr,
    ) {
        let to = format!("sip:{room}@{holder}");
        self.placement.satellite_of.insert(room.to_string(), holder);
        let linked = self
            .rooms
            .get(room)
            .is_some_and(|r| r.link_legs().iter().any(|(_, n)| *n == to));
        if linked {
            return;
        }
        let req = super::dialout::DialRequest {
            to,
            moderator: false,
            caller_id: None,
            ring_timeout: Duration::from_secs(10),
            local: Some(local),
            end_on_exit: false,
            limit: None,
            link: true,
            on_failure: None,
            flow: None,
        };
        match self.dial(now, room, req) {
            Ok(leg) => {
                tracing::info!(%room, %holder, %leg, "satellite room: linking to the holder's")
            }
            Err(e) => {
                tracing::warn!(%room, %holder, error = %e, "satellite room cannot link to the holder's")
            }
        }
    }

    /// The registry's answer to a claim: the calls that waited for it go on.
    pub fn claimed(&mut self, now: Instant, room: &str, claim: Claim) {
        let calls = self.placement.waiting.remove(room).unwrap_or_default();
        match &claim {
            Claim::Held => {
                self.placement.held.insert(room.to_string());
            }
            Claim::Unreachable => {
                tracing::error!(%room, "room registry unreachable: the room is admitted here and may be split across nodes");
                self.placement.held.insert(room.to_string());
            }
            Claim::Elsewhere(uri) => {
                tracing::info!(%room, node = %uri, calls = calls.len(), "room held by another node: redirected");
            }
        }
        for (p, decided) in calls {
            match &claim {
                Claim::Elsewhere(uri) => {
                    let contact = format!("<{}>", room_uri(uri, room));
                    self.reject(now, &p.key, &p.msg, p.from, Reject::Moved(contact));
                }
                Claim::Held | Claim::Unreachable => self.resume(now, p, decided),
            }
        }
        if matches!(claim, Claim::Held) {
            self.release_if_empty(now, room);
        }
    }

    /// A call that waited goes through admission again, with the answer
    /// webhook's decision it had.
    fn resume(&mut self, now: Instant, p: Parked, decided: Option<(u64, RouteDecision)>) {
        if let Some(d) = decided {
            self.decided.insert(p.key.clone(), d);
        }
        self.handle_parked(now, p);
    }

    /// A held room without anyone in it is given back to the registry; a
    /// satellite room without callers ends its link to the holder.
    pub(super) fn release_if_empty(&mut self, now: Instant, room: &str) {
        if self.placement.satellite_of.contains_key(room) {
            let links = self
                .rooms
                .get(room)
                .filter(|r| r.callers() == 0)
                .map(|r| r.link_legs())
                .unwrap_or_default();
            if !links.is_empty() || self.rooms.get(room).is_none_or(Room::is_empty) {
                self.placement.satellite_of.remove(room);
            }
            for (leg, _) in links {
                self.end_leg(now, leg, true, super::LeftReason::Hangup);
            }
        }
        if !self.placement.held.contains(room) || self.placement.waiting.contains_key(room) {
            return;
        }
        if self.rooms.get(room).is_some_and(|r| !r.is_empty()) {
            return;
        }
        self.placement.held.remove(room);
        self.out.push_back(Output::Release {
            room: room.to_string(),
        });
    }

    /// A CANCEL for an INVITE that waits for a claim: dropped, handed back.
    pub(super) fn unclaim(&mut self, key: &TxnKey) -> Option<Message> {
        let p = &mut self.placement;
        for calls in p.waiting.values_mut().chain(p.cascading.values_mut()) {
            if let Some(i) = calls.iter().position(|(p, _)| p.key == *key) {
                return Some(calls.swap_remove(i).0.msg);
            }
        }
        None
    }

    /// Tell the other nodes of a PIN try or call attempt (a cluster's only;
    /// trusted sources are never counted, so never told).
    pub(super) fn share(&mut self, note: GuardNote) {
        let src = match &note {
            GuardNote::Pin { src, .. } | GuardNote::Source { src, .. } => *src,
        };
        let counted = match &note {
            GuardNote::Pin { .. } => true,
            GuardNote::Source { .. } => !self.flood.is_trusted(src),
        };
        if self.cfg.cluster && counted {
            self.out.push_back(Output::Guard(note));
        }
    }

    /// Another node's PIN try or call attempt, counted here as if made here
    /// (and not told again).
    pub fn guard_note(&mut self, now: Instant, note: GuardNote) {
        match note {
            GuardNote::Pin { room, src, right } => {
                if let Some(r) = self.rooms.get_mut(room.as_str()) {
                    r.note_pin(src, now, right);
                }
            }
            GuardNote::Source { src, right: true } => self.flood.succeed(src, now),
            GuardNote::Source { src, right: false } => {
                if self.flood.fail(src, now) {
                    tracing::warn!(source = %src, "banned for failures counted across the cluster");
                    self.ban(now, src);
                }
            }
        }
    }

    /// A node died holding a room: the room, its recordings and its dial-outs
    /// there reported as lost and failed (by the one node that noticed).
    pub fn room_lost(&mut self, lost: Lost) {
        let why = format!("its node {} died", lost.node);
        for id in lost.recordings {
            self.out.push_back(Output::Event(super::Event::Recording(
                super::RecordingReport {
                    id,
                    room: lost.room.clone(),
                    leg: None,
                    duration_ms: 0,
                    bytes: 0,
                    error: Some(why.clone()),
                    recovered: false,
                },
            )));
        }
        for (leg, to) in lost.dialouts {
            self.out.push_back(Output::Event(super::Event::Dial {
                leg: super::LegId(leg),
                room: lost.room.clone(),
                to,
                status: super::dialout::DialStatus::Failed,
                reason: Some(why.clone()),
            }));
        }
        self.out.push_back(Output::Event(super::Event::RoomLost {
            room: lost.room,
            node: lost.node,
        }));
    }

    /// Rooms this node holds in the registry.
    pub fn held_rooms(&self) -> Vec<String> {
        self.placement.held.iter().cloned().collect()
    }
}

/// Park a call for `room` in `table`; true when it is the room's first (the
/// question that ends the wait is to be asked).
fn park(
    table: &mut HashMap<String, Vec<Waiting>>,
    room: &str,
    (from, key, msg): (Peer, TxnKey, &Message),
    decided: Option<(u64, RouteDecision)>,
) -> bool {
    let first = !table.contains_key(room);
    let parked = Parked {
        from,
        key,
        msg: msg.clone(),
    };
    table
        .entry(room.to_string())
        .or_default()
        .push((parked, decided));
    first
}

/// The room's URI on a node: `sip:ROOM@host:port` from the node's `sip:host:port`.
fn room_uri(node: &str, room: &str) -> String {
    let rest = node.strip_prefix("sip:").unwrap_or(node);
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("sip:{room}@{hostport}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_uri_on_a_node() {
        assert_eq!(
            room_uri("sip:127.0.1.2:5060", "r1"),
            "sip:r1@127.0.1.2:5060"
        );
        assert_eq!(room_uri("sip:caucus@10.0.0.1", "r1"), "sip:r1@10.0.0.1");
    }
}
