//! A participant moved to another room without touching its SIP or WebRTC
//! session (breakout rooms, Vonage's `transfer`): out of the old room as a
//! caller who left, into the new one by that room's admission rules for the
//! role given, its media moved between mixes on the worker that holds it. An
//! NCCO `connect` is the same room machinery: the caller's room dials the
//! target (or reaches a WebSocket server, `core::socket`) and ends with either
//! call.

use std::time::Instant;

use super::control::ControlError;
use super::room::{Participant, Room, Stage};
use super::routing::{CallOptions, ConnectSpec};
use super::{Core, Event, LegId, Output};
use crate::media::contract::MediaCommand;
use crate::sip::status::Reject;

impl Core {
    /// Move leg `id` to room `to`: as a moderator (`Some(true)`), or by the
    /// room's rules for a participant, with an NCCO's options when a transfer
    /// brings them. The leg must be in the mix or waiting in its room.
    pub fn move_leg(
        &mut self,
        now: Instant,
        id: LegId,
        to: &str,
        moderator: Option<bool>,
        options: Option<CallOptions>,
    ) -> Result<(), ControlError> {
        let from = self.room_of_leg(id)?;
        if from == to && options.is_none() {
            return Ok(());
        }
        if !self
            .rooms
            .get(from.as_str())
            .is_some_and(|r| r.media_is_up(id))
        {
            return Err(ControlError::NotJoined(id));
        }
        let target = self
            .rooms
            .get(to)
            .filter(|r| r.is_defined() && !r.is_decoy())
            .ok_or_else(|| ControlError::NoSuchRoom(to.to_string()))?;
        let stage = match moderator {
            Some(true) => Stage::Joined { moderator: true },
            _ => match target.arrival(options.as_ref()) {
                Ok(Stage::Refused) | Err(Reject::BusyHere(_)) => {
                    return Err(ControlError::RoomFull(to.to_string()));
                }
                Err(_) => return Err(ControlError::RoomLocked(to.to_string())),
                Ok(stage) => stage,
            },
        };
        let isolated = !matches!(stage, Stage::Joined { .. })
            || options.as_ref().is_some_and(|o| !o.intro.is_empty());
        let (identity, stems) = self
            .with_room(now, &from, |r, ctx| {
                let stems = r.take_stems(id);
                r.move_out(ctx, id).map(|i| (i, stems))
            })
            .flatten()
            .ok_or(ControlError::NoSuchParticipant(id))?;
        if let Some(leg) = self.legs.get_mut(&id) {
            leg.room = to.to_string();
        }
        self.out.push_back(Output::Media(MediaCommand::Move {
            leg: id,
            room: to.to_string(),
            isolated,
            treatment: self.treatment(to, id),
        }));
        let starts = moderator == Some(true);
        let part = Participant::new(stage, identity, options);
        self.with_room(now, to, |r, ctx| {
            r.adopt_stems(id, stems);
            r.move_in(ctx, id, part)
        });
        if starts {
            self.with_room(now, to, Room::release_waiting);
        }
        self.out.push_back(Output::Event(Event::Moved {
            leg: id,
            from: from.clone(),
            room: to.to_string(),
        }));
        // what its NCCO asked for and could not have
        let errors = self
            .rooms
            .get(to)
            .map(|r| r.call_errors(id))
            .unwrap_or_default();
        for detail in errors {
            self.out.push_back(Output::Event(Event::Error {
                leg: id,
                room: to.to_string(),
                detail,
            }));
        }
        tracing::info!(leg = %id, %from, room = %to, "participant moved");
        Ok(())
    }

    /// An NCCO `connect`: the caller's room dials the target, and ends when
    /// either call does. A dial the guards refuse ends the call with an
    /// `error` event saying why.
    pub(super) fn connect(&mut self, now: Instant, id: LegId, room: &str) {
        let Some(spec) = self.rooms.get(room).and_then(|r| r.connect_spec(id)) else {
            return;
        };
        let spec = match spec {
            ConnectSpec::Sip(spec) => spec,
            ConnectSpec::WebSocket(target) => {
                self.connect_socket(now, id, room, target);
                return;
            }
        };
        let local = self.legs.get(&id).map(|l| l.peer.local);
        let req = super::dialout::DialRequest {
            to: spec.to.clone(),
            moderator: true,
            caller_id: spec.caller_id,
            ring_timeout: spec.ring_timeout,
            local,
            end_on_exit: true,
            limit: spec.limit,
            link: false,
            on_failure: spec.sync_event_url.clone().map(|u| (id, u)),
            flow: None,
        };
        if let Err(e) = self.dial(now, room, req) {
            tracing::warn!(leg = %id, %room, error = %e, "NCCO connect refused: the call ends");
            self.out.push_back(Output::Event(Event::Error {
                leg: id,
                room: room.to_string(),
                detail: format!("connect {}: {e}", spec.to),
            }));
            self.end_leg(now, id, true, super::LeftReason::Refused);
        }
    }
}
