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

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::routing::{Parked, RouteDecision};
use super::transaction::TxnKey;
use super::{Core, Output, Peer};
use crate::sip::Message;
use crate::sip::status::Reject;

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
    /// on: `[cluster]` is configured
    pub(super) on: bool,
    held: HashSet<String>,
    waiting: HashMap<String, Vec<Waiting>>,
}

impl Placement {
    /// Placement for a node in a cluster (`on`) or alone.
    pub(super) fn new(on: bool) -> Placement {
        Placement {
            on,
            ..Placement::default()
        }
    }
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
        if !p.on || p.held.contains(room) {
            return false;
        }
        let waiting: usize = p.waiting.values().map(Vec::len).sum();
        if waiting >= MAX_WAITING {
            return false;
        }
        let (from, key, msg) = call;
        let first = !p.waiting.contains_key(room);
        p.waiting.entry(room.to_string()).or_default().push((
            Parked {
                from,
                key,
                msg: msg.clone(),
            },
            decided,
        ));
        if first {
            self.out.push_back(Output::Claim {
                room: room.to_string(),
            });
        }
        true
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
                Claim::Held | Claim::Unreachable => {
                    if let Some(d) = decided {
                        self.decided.insert(p.key.clone(), d);
                    }
                    self.handle_parked(now, p);
                }
            }
        }
        if matches!(claim, Claim::Held) {
            self.release_if_empty(room);
        }
    }

    /// A held room without anyone in it is given back to the registry.
    pub(super) fn release_if_empty(&mut self, room: &str) {
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
        for calls in self.placement.waiting.values_mut() {
            if let Some(i) = calls.iter().position(|(p, _)| p.key == *key) {
                return Some(calls.swap_remove(i).0.msg);
            }
        }
        None
    }

    /// A node died holding `room`: reported (by the one node that noticed).
    pub fn room_lost(&mut self, room: &str, node: &str) {
        self.out.push_back(Output::Event(super::Event::RoomLost {
            room: room.to_string(),
            node: node.to_string(),
        }));
    }

    /// Rooms this node holds in the registry.
    pub fn held_rooms(&self) -> Vec<String> {
        self.placement.held.iter().cloned().collect()
    }
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
