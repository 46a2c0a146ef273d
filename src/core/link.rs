//! Rooms joined together on one node (Voximplant's "join conferences
//! together"): a link is two legs, one in each room, whose media cross inside
//! the media engine (`MediaCommand::CrossPipes`): what one room's leg is sent
//! (its room's mix minus what that leg brought in) is what the other room's leg
//! says there. Mix-minus is what keeps it clean: each side hears the other
//! room's talkers once, and never its own coming back. A link carries the
//! loudest talkers of each side, as any mix does. Its legs are not callers: no
//! PIN, no prompts or join tones, not counted against `max_participants`; one
//! ending (unlinked, its room ended) ends the other.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::control::ControlError;
use super::leg::Leg;
use super::room::{Identity, LegKind, Participant, Stage};
use super::{Core, LeftReason, LegId, Output};
use crate::media::contract::{MediaCommand, MediaParams, TransportSpec};
use crate::sdp::{CodecKind, Direction};

impl Core {
    /// Join rooms `a` and `b`; the legs in `a` and in `b`.
    pub fn link_rooms(
        &mut self,
        now: Instant,
        a: &str,
        b: &str,
    ) -> Result<(LegId, LegId), ControlError> {
        if self.draining {
            return Err(ControlError::Draining);
        }
        for r in [a, b] {
            if !self
                .rooms
                .get(r)
                .is_some_and(|r| r.is_defined() && !r.is_decoy())
            {
                return Err(ControlError::NoSuchRoom(r.to_string()));
            }
        }
        if a == b || self.link_between(a, b).is_some() {
            return Err(ControlError::RoomExists(format!("{a}+{b}")));
        }
        let (la, lb) = (LegId(self.next_leg), LegId(self.next_leg + 1));
        self.next_leg += 2;
        self.out
            .push_back(Output::Media(MediaCommand::CrossPipes { a: la, b: lb }));
        for (leg, here, there) in [(la, a, b), (lb, b, a)] {
            let params = MediaParams {
                codec: CodecKind::L16,
                pt: super::socket::L16_PT,
                dtmf_pt: None,
                peer_direction: Direction::SendRecv,
                ssrc: self.rng.next_u64() as u32,
                ptime_ms: 20,
            };
            let name = format!("link:{there}");
            let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let call_id = format!("link-{}", self.rng.token());
            let l = Leg::without_dialog(
                LegKind::Link,
                here,
                call_id.clone(),
                name.clone(),
                local,
                (params, TransportSpec::Pipe),
            );
            self.insert_leg(leg, l);
            let identity = Identity {
                name,
                call_id,
                source: local,
                kind: LegKind::Link,
            };
            let part = Participant::new(Stage::Joined { moderator: false }, identity, None);
            self.with_room(now, here, |r, ctx| r.join(ctx, leg, part));
            self.sync_media(now, leg);
        }
        self.links.insert(la, lb);
        self.links.insert(lb, la);
        tracing::info!(%a, %b, "rooms linked");
        Ok((la, lb))
    }

    /// Part room `a` from `b`: a room of this node, or the URI of a link to
    /// another bridge (which gets its BYE).
    pub fn unlink_rooms(&mut self, now: Instant, a: &str, b: &str) -> Result<(), ControlError> {
        if let Some(leg) = self.link_between(a, b) {
            self.end_leg(now, leg, false, LeftReason::Kicked);
            return Ok(());
        }
        let leg = self
            .rooms
            .get(a)
            .and_then(|r| r.link_legs().into_iter().find(|(_, to)| to == b))
            .map(|(l, _)| l)
            .ok_or_else(|| ControlError::NoSuchRoom(format!("{a}+{b}")))?;
        self.end_leg(now, leg, true, LeftReason::Kicked);
        Ok(())
    }

    /// What `a` is linked to: rooms of this node by name, other bridges' rooms
    /// by the URI dialled (or the From of the bridge that called).
    pub fn links_of(&self, a: &str) -> Vec<String> {
        let Some(room) = self.rooms.get(a) else {
            return Vec::new();
        };
        room.link_legs()
            .into_iter()
            .map(
                |(l, to)| match self.links.get(&l).and_then(|p| self.legs.get(p)) {
                    Some(peer) => peer.room.clone(),
                    None => to,
                },
            )
            .collect()
    }

    /// The link leg in `a` whose other end is in `b`.
    fn link_between(&self, a: &str, b: &str) -> Option<LegId> {
        self.links.iter().find_map(|(l, peer)| {
            let here = self.legs.get(l)?;
            let there = self.legs.get(peer)?;
            (here.room == a && there.room == b).then_some(*l)
        })
    }

    /// A link leg ended (unlinked, kicked, its room ended): its other end too.
    pub(super) fn link_leg_ended(&mut self, now: Instant, leg: LegId) {
        if let Some(peer) = self.links.remove(&leg) {
            self.links.remove(&peer);
            self.end_leg(now, peer, false, LeftReason::Kicked);
        }
    }
}
