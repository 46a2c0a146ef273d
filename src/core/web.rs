//! Browser participants as signalling holds them. A browser is signalled by
//! WHIP (RFC 9725) on the HTTP side, not by SIP: its offer is answered there, and
//! what reaches the core is a participant that has already proved its room and
//! role with a join token (the PIN was judged when the token was issued). So a
//! browser leg has no dialog, no transaction and no RTP port of ours; it is a
//! [`Leg`] of kind [`LegKind::WebRtc`] in the room like any other, and it ends
//! by its WHIP resource being deleted, by the room (kick, end), or by its media
//! transport reporting the browser gone.

use std::net::IpAddr;
use std::time::Instant;

use super::control::ControlError;
use super::leg::Leg;
use super::room::{Identity, LegKind, Participant, Room, Stage};
use super::{Core, Event, LeftReason, LegId, Output, pin};
use crate::media::contract::{MediaParams, TransportSpec};
use crate::sdp::{CodecKind, Direction};

/// A browser asking to join, its token checked and its offer answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebJoin {
    /// the room its token names
    pub room: String,
    /// its token's role
    pub moderator: bool,
    /// the name it gave
    pub name: String,
    /// where its HTTP request came from
    pub source: IpAddr,
    /// the codec its answer took
    pub codec: CodecKind,
    /// that codec's payload type
    pub pt: u8,
}

impl Room {
    /// The stage a browser with a valid token for this room arrives in: it
    /// needs no PIN, but a locked room admits moderators only, a full room
    /// nobody, and a moderated room holds participants until a moderator is in.
    pub fn web_arrival(&self, moderator: bool) -> Result<Stage, ControlError> {
        if self.is_locked() && !moderator {
            return Err(ControlError::RoomLocked(self.name().to_string()));
        }
        if self.callers() >= self.policy().max_participants {
            return Err(ControlError::RoomFull(self.name().to_string()));
        }
        Ok(if moderator {
            Stage::Joined { moderator: true }
        } else if self.policy().moderated && !self.has_moderator() {
            Stage::Waiting
        } else {
            Stage::Joined { moderator: false }
        })
    }
}

impl Core {
    /// A browser joins: a leg in its room, its media opened on the connection
    /// the driver staged for the returned id.
    pub fn web_join(&mut self, now: Instant, req: WebJoin) -> Result<LegId, ControlError> {
        if self.draining {
            return Err(ControlError::Draining);
        }
        let room = self
            .rooms
            .get(req.room.as_str())
            .filter(|r| r.is_defined())
            .ok_or_else(|| ControlError::NoSuchRoom(req.room.clone()))?;
        let stage = room.web_arrival(req.moderator)?;
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let call_id = format!("webrtc-{}", self.rng.token());
        let ssrc = self.rng.next_u64() as u32;
        let params = MediaParams {
            codec: req.codec,
            pt: req.pt,
            dtmf_pt: None,
            peer_direction: Direction::SendRecv,
            ssrc,
            ptime_ms: 20,
        };
        let leg = Leg::without_dialog(
            LegKind::WebRtc,
            &req.room,
            call_id.clone(),
            req.name.clone(),
            req.source,
            (params, TransportSpec::WebRtc),
        );
        self.insert_leg(id, leg);
        let identity = Identity {
            name: req.name.clone(),
            call_id: call_id.clone(),
            source: req.source,
            kind: LegKind::WebRtc,
        };
        let part = Participant::new(stage, identity, None);
        let room = req.room;
        self.with_room(now, &room, |r, ctx| r.join(ctx, id, part));
        self.out.push_back(Output::Event(Event::Joined {
            leg: id,
            room: room.clone(),
            call_id,
            from: req.name,
            to: room.clone(),
            outbound: false,
        }));
        tracing::info!(leg = %id, %room, moderator = req.moderator, "browser joined");
        self.sync_media(now, id);
        if req.moderator {
            self.with_room(now, &room, Room::release_waiting);
        }
        Ok(id)
    }

    /// A PIN (or none) typed into the join page for `room`: the role a join
    /// token may grant, judged as DTMF PINs are. An unknown room is answered
    /// like a wrong PIN when `hide_rooms` is on.
    pub fn web_pin(
        &mut self,
        now: Instant,
        room: &str,
        typed: &str,
        source: IpAddr,
    ) -> Result<bool, ControlError> {
        let hide = self.cfg.hide_rooms;
        let r = match self.rooms.get_mut(room).filter(|r| r.is_defined()) {
            Some(r) => r,
            None if hide => return Err(ControlError::WrongPin),
            None => return Err(ControlError::NoSuchRoom(room.to_string())),
        };
        let verdict = r.judge_typed_pin(typed, source, now);
        self.share(super::cluster::GuardNote::Pin {
            room: room.to_string(),
            src: source,
            right: verdict != pin::Verdict::Wrong,
        });
        match verdict {
            pin::Verdict::Moderator => Ok(true),
            pin::Verdict::Participant => Ok(false),
            pin::Verdict::Wrong => {
                self.failure(now, source);
                Err(ControlError::WrongPin)
            }
        }
    }

    /// Whether the room asks for a PIN (the join page's question); an unknown
    /// room asks for one when `hide_rooms` is on.
    pub fn web_room_asks_pin(&self, room: &str) -> Result<bool, ControlError> {
        match self.rooms.get(room).filter(|r| r.is_defined()) {
            Some(r) => Ok(r.policy().pin.is_some()),
            None if self.cfg.hide_rooms => Ok(true),
            None => Err(ControlError::NoSuchRoom(room.to_string())),
        }
    }

    /// A browser leaves (its WHIP resource deleted).
    pub fn web_leave(&mut self, now: Instant, leg: LegId) -> Result<(), ControlError> {
        if self
            .legs
            .get(&leg)
            .is_none_or(|l| l.kind != LegKind::WebRtc)
        {
            return Err(ControlError::NoSuchParticipant(leg));
        }
        self.end_leg(now, leg, false, LeftReason::Hangup);
        Ok(())
    }

    /// How many legs are SIP calls and how many browsers.
    pub fn legs_by_kind(&self) -> (usize, usize) {
        let web = self
            .legs
            .values()
            .filter(|l| l.kind == LegKind::WebRtc)
            .count();
        (self.legs.len() - web, web)
    }
}
