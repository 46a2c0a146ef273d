//! Legs seen as calls, the way Vonage's call-control API names them: a call's
//! `uuid` is its leg id (the participant id of the room API), its
//! `conversation_uuid` the room it is in. Lookups by leg, so that `/v1/calls`
//! needs no room name.

use std::time::Instant;

use super::control::{ControlError, ParticipantInfo, ParticipantUpdate};
use super::{Core, LegId};
use crate::media::contract::MediaCommand;

/// One call: its room, both ends, and the participant it is in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// the room (conversation)
    pub room: String,
    /// the called side's URI (the dialled target for a call the bridge placed)
    pub to: String,
    /// the bridge placed it
    pub outbound: bool,
    /// as the room lists it
    pub participant: ParticipantInfo,
}

/// What `PUT /v1/calls/{uuid}` can change on a call in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAction {
    /// end it
    Hangup,
    /// the room does not hear it (or does again)
    Mute(bool),
    /// it does not hear the room (or does again)
    Earmuff(bool),
}

impl Core {
    /// The room a leg is in.
    pub(super) fn room_of_leg(&self, id: LegId) -> Result<String, ControlError> {
        self.legs
            .get(&id)
            .map(|l| l.room.clone())
            .filter(|r| r != super::DECOY_ROOM)
            .ok_or(ControlError::NoSuchParticipant(id))
    }

    /// One call by its uuid.
    pub fn call(&self, id: LegId) -> Result<CallInfo, ControlError> {
        let room = self.room_of_leg(id)?;
        let participant = self.participant(&room, id)?;
        let leg = self
            .legs
            .get(&id)
            .ok_or(ControlError::NoSuchParticipant(id))?;
        let outbound = leg.dial.is_some();
        let uri = |u: &str| {
            crate::sip::headers::NameAddr::parse(u, "To")
                .map(|n| n.uri)
                .unwrap_or_else(|_| u.to_string())
        };
        let to = match (outbound, leg.kind) {
            (true, _) => leg.remote_target.clone(),
            (false, super::LegKind::WebRtc | super::LegKind::WebSocket | super::LegKind::Link) => {
                room.clone()
            }
            (false, super::LegKind::Sip) => uri(&leg.local_uri),
        };
        Ok(CallInfo {
            room,
            to,
            outbound,
            participant,
        })
    }

    /// Every call, in leg order.
    pub fn calls(&self) -> Vec<CallInfo> {
        let mut ids: Vec<LegId> = self.legs.keys().copied().collect();
        ids.sort_by_key(|l| l.0);
        ids.into_iter()
            .filter_map(|id| self.call(id).ok())
            .collect()
    }

    /// Hang up, mute or earmuff a call.
    pub fn call_action(
        &mut self,
        now: Instant,
        id: LegId,
        action: CallAction,
    ) -> Result<(), ControlError> {
        let room = self.room_of_leg(id)?;
        let up = |muted, deaf| ParticipantUpdate {
            muted,
            deaf,
            ..Default::default()
        };
        match action {
            CallAction::Hangup => self.kick(now, &room, id),
            CallAction::Mute(m) => self
                .update_participant(now, &room, id, up(Some(m), None))
                .map(drop),
            CallAction::Earmuff(d) => self
                .update_participant(now, &room, id, up(None, Some(d)))
                .map(drop),
        }
    }

    /// Play a sound to one call, `times` times over.
    pub fn call_play(
        &mut self,
        now: Instant,
        id: LegId,
        sound: &crate::media::prompt::Sound,
        times: u32,
    ) -> Result<(), ControlError> {
        let room = self.room_of_leg(id)?;
        for _ in 0..times.max(1) {
            self.play_sound(now, &room, Some(id), sound)?;
        }
        Ok(())
    }

    /// Send key presses to a SIP call: RFC 4733 events when it negotiated
    /// telephone-event, else one SIP INFO per digit (`application/dtmf-relay`).
    pub fn call_dtmf(&mut self, now: Instant, id: LegId, digits: &str) -> Result<(), ControlError> {
        self.room_of_leg(id)?;
        let codes: Option<Vec<u8>> = digits
            .chars()
            .map(crate::media::rtp::TelephoneEvent::code)
            .collect();
        let codes = codes
            .filter(|c| (1..=crate::media::rtp::DtmfSender::MAX_QUEUED).contains(&c.len()))
            .ok_or(ControlError::BadDigits)?;
        let leg = self
            .legs
            .get(&id)
            .ok_or(ControlError::NoSuchParticipant(id))?;
        if leg.kind != super::LegKind::Sip {
            return Err(ControlError::NotForThisLeg(
                "a browser or WebSocket takes no DTMF",
            ));
        }
        if leg.state != super::LegState::Confirmed {
            return Err(ControlError::NotForThisLeg(
                "the call is not established yet",
            ));
        }
        let events = leg.media.as_ref().is_some_and(|(p, _)| p.dtmf_pt.is_some());
        if events {
            self.out
                .push_back(super::Output::Media(MediaCommand::SendDtmf {
                    leg: id,
                    events: codes,
                }));
        } else {
            for d in digits.chars() {
                let body = format!("Signal={}\r\nDuration=160\r\n", d.to_ascii_uppercase());
                self.send_in_dialog_with_body(
                    now,
                    id,
                    crate::sip::Method::Info,
                    "application/dtmf-relay",
                    body.into_bytes(),
                );
            }
        }
        Ok(())
    }

    /// Stop what is playing to one call (and what is queued after it).
    pub fn call_stop_sound(&mut self, now: Instant, id: LegId) -> Result<(), ControlError> {
        let room = self.room_of_leg(id)?;
        self.in_room(now, &room, |r, ctx| r.stop_sound(ctx, id))
    }
}
