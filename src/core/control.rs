//! The control plane's view of the core: what the HTTP API reads (rooms,
//! participants, recordings) and what it may change (mute, deaf, role, kick, lock,
//! end, play, record, rooms created at run time). Still sans-IO: every change comes
//! out as [`Output`]s like any SIP-driven one, so the API and SIP can never disagree
//! about a leg.

use std::time::Instant;

use super::timers::{CoreTimer, RoomTimer};
use super::{
    Core, Event, LeftReason, LegId, MediaCommand, Output, RecordingReport, RoomPolicy, Stage,
};
use crate::media::prompt::Sound;

/// What the control plane may get wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// no room of that name
    #[error("no room \"{0}\"")]
    NoSuchRoom(String),
    /// no such participant in the room
    #[error("no participant {0} in this room")]
    NoSuchParticipant(LegId),
    /// a room of that name exists
    #[error("room \"{0}\" exists")]
    RoomExists(String),
    /// no such recording
    #[error("no recording \"{0}\"")]
    NoSuchRecording(String),
    /// `[recording] dir` is not set
    #[error("recording is not configured ([recording] dir)")]
    RecordingOff,
    /// the bridge is shutting down
    #[error("shutting down")]
    Draining,
    /// the recording's file could not be created
    #[error("cannot record: {0}")]
    RecordingFailed(String),
    /// dial-out refused by policy
    #[error("dial-out refused: {0}")]
    DialDenied(String),
    /// `max_outbound_calls` reached
    #[error("{0} outbound calls already (max_outbound_calls)")]
    TooManyCalls(usize),
    /// the target cannot be dialled
    #[error("bad destination: {0}")]
    BadDestination(String),
    /// the room has max_participants legs
    #[error("room \"{0}\" is full")]
    RoomFull(String),
    /// no RTP ports left
    #[error("no media ports left")]
    Unavailable,
    /// a change that does not apply to this leg now (still typing its PIN)
    #[error("participant {0} is not in the mix yet")]
    NotJoined(LegId),
}

/// A participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// joined with the moderator PIN (or made one through the API)
    Moderator,
    /// anyone else
    Participant,
}

/// One room as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// name
    pub name: String,
    /// legs in it, whatever their stage
    pub participants: usize,
    /// locked by a moderator or the API
    pub locked: bool,
    /// ids of recordings of the room's mix that are running
    pub recording: Vec<String>,
    /// when its first call came (None: nobody there)
    pub started: Option<Instant>,
    /// created through the API (ends after its empty_timeout)
    pub dynamic: bool,
}

/// One leg as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// leg id
    pub id: LegId,
    /// Call-ID of its dialog
    pub call_id: String,
    /// its From URI
    pub from: String,
    /// role
    pub role: Role,
    /// "calling", "pin", "waiting", "joined" or "leaving"
    pub state: &'static str,
    /// not heard by the room
    pub muted: bool,
    /// hears nothing of the room
    pub deaf: bool,
    /// talker detection says so
    pub talking: bool,
    /// when it went into the mix
    pub joined: Option<Instant>,
}

/// A recording the core started and has not seen finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// room
    pub room: String,
    /// one leg's own audio, or the room's mix
    pub leg: Option<LegId>,
}

/// A change to one participant; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParticipantUpdate {
    /// mute or unmute
    pub muted: Option<bool>,
    /// deafen or not
    pub deaf: Option<bool>,
    /// make moderator or participant
    pub role: Option<Role>,
}

impl Core {
    fn room_info(&self, name: &str) -> RoomInfo {
        RoomInfo {
            name: name.to_string(),
            participants: self.rooms.get(name).map_or(0, Vec::len),
            locked: self.locked.contains(name),
            recording: self
                .recordings
                .iter()
                .filter(|(_, r)| r.room == name && r.leg.is_none())
                .map(|(id, _)| id.clone())
                .collect(),
            started: self.started.get(name).copied(),
            dynamic: self.dynamic.contains_key(name),
        }
    }

    /// Every room: configured, created at run time, and any still running after a
    /// reload removed it from the file.
    pub fn room_list(&self) -> Vec<RoomInfo> {
        let mut names: Vec<&String> = self.cfg.rooms.keys().collect();
        names.extend(
            self.rooms
                .keys()
                .filter(|r| !self.cfg.rooms.contains_key(*r) && r.as_str() != super::DECOY_ROOM),
        );
        names.sort();
        names.into_iter().map(|n| self.room_info(n)).collect()
    }

    /// One room.
    pub fn room(&self, name: &str) -> Result<RoomInfo, ControlError> {
        if self.cfg.rooms.contains_key(name) || self.rooms.contains_key(name) {
            Ok(self.room_info(name))
        } else {
            Err(ControlError::NoSuchRoom(name.to_string()))
        }
    }

    /// Create a room at run time; it is removed after `policy.empty_timeout` with
    /// nobody in it (from now, or from when its last call ends).
    pub fn create_room(
        &mut self,
        now: Instant,
        name: &str,
        policy: RoomPolicy,
    ) -> Result<RoomInfo, ControlError> {
        if self.draining {
            return Err(ControlError::Draining);
        }
        if self.cfg.rooms.contains_key(name) || self.rooms.contains_key(name) {
            return Err(ControlError::RoomExists(name.to_string()));
        }
        let wait = policy.empty_timeout;
        self.cfg.rooms.insert(name.to_string(), policy.clone());
        self.dynamic.insert(name.to_string(), policy);
        self.empty_since.insert(name.to_string(), now);
        let key = CoreTimer::Room(name.to_string(), RoomTimer::Empty);
        self.timers.set(key, now + wait);
        tracing::info!(room = %name, "room created through the API");
        Ok(self.room_info(name))
    }

    /// End a room's calls (BYE to every leg); a room created through the API is
    /// removed as well.
    pub fn end_room_by_api(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        self.room(name)?;
        self.end_room(now, name, "ended through the API");
        if self.dynamic.remove(name).is_some() {
            self.cfg.rooms.remove(name);
            self.empty_since.remove(name);
        }
        Ok(())
    }

    /// The last call of a room ended.
    pub(super) fn room_closed(&mut self, now: Instant, room: &str) {
        self.started.remove(room);
        let running: Vec<String> = self
            .recordings
            .iter()
            .filter(|(_, r)| r.room == room && r.leg.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in running {
            self.stop_recording_id(&id);
        }
        self.out.push_back(Output::Event(Event::RoomClosed {
            room: room.to_string(),
        }));
        if let Some(p) = self.dynamic.get(room) {
            let wait = p.empty_timeout;
            self.empty_since.insert(room.to_string(), now);
            let key = CoreTimer::Room(room.to_string(), RoomTimer::Empty);
            self.timers.set(key, now + wait);
        }
    }

    /// Timer: remove an API room that is still empty after its empty_timeout.
    pub(super) fn empty_room_expired(&mut self, now: Instant, room: &str) {
        let Some(p) = self.dynamic.get(room) else {
            return;
        };
        let expired = !self.rooms.contains_key(room)
            && self
                .empty_since
                .get(room)
                .is_some_and(|since| *since + p.empty_timeout <= now);
        if expired {
            tracing::info!(%room, "room created through the API removed: empty for its empty_timeout");
            self.dynamic.remove(room);
            self.cfg.rooms.remove(room);
            self.empty_since.remove(room);
            self.locked.remove(room);
        }
    }

    fn members(&self, room: &str) -> Result<Vec<LegId>, ControlError> {
        self.room(room)?;
        Ok(self.rooms.get(room).cloned().unwrap_or_default())
    }

    fn member(&self, room: &str, id: LegId) -> Result<(), ControlError> {
        if self.members(room)?.contains(&id) {
            Ok(())
        } else {
            Err(ControlError::NoSuchParticipant(id))
        }
    }

    fn participant_info(&self, id: LegId) -> Option<ParticipantInfo> {
        let l = self.legs.get(&id)?;
        let from = crate::sip::headers::NameAddr::parse(&l.remote_uri, "From")
            .map(|n| n.uri)
            .unwrap_or_default();
        let (role, state) = match l.stage {
            Stage::Joined { moderator: true } => (Role::Moderator, "joined"),
            Stage::Joined { moderator: false } => (Role::Participant, "joined"),
            Stage::Pin { .. } => (Role::Participant, "pin"),
            Stage::Waiting => (Role::Participant, "waiting"),
            Stage::Refused => (Role::Participant, "leaving"),
            Stage::Dialing { moderator: true } => (Role::Moderator, "calling"),
            Stage::Dialing { moderator: false } => (Role::Participant, "calling"),
        };
        let state = if l.hangup_after_prompt.is_some() {
            "leaving"
        } else {
            state
        };
        Some(ParticipantInfo {
            id,
            call_id: l.call_id.clone(),
            from,
            role,
            state,
            muted: l.muted,
            deaf: l.deaf,
            talking: l.talking,
            joined: l.joined_at,
        })
    }

    /// The legs of a room.
    pub fn participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, ControlError> {
        Ok(self
            .members(room)?
            .into_iter()
            .filter_map(|id| self.participant_info(id))
            .collect())
    }

    /// One leg of a room.
    pub fn participant(&self, room: &str, id: LegId) -> Result<ParticipantInfo, ControlError> {
        self.member(room, id)?;
        self.participant_info(id)
            .ok_or(ControlError::NoSuchParticipant(id))
    }

    /// Mute, deafen or change the role of a leg.
    pub fn update_participant(
        &mut self,
        now: Instant,
        room: &str,
        id: LegId,
        up: ParticipantUpdate,
    ) -> Result<ParticipantInfo, ControlError> {
        self.member(room, id)?;
        if let Some(m) = up.muted {
            self.set_muted(id, m);
        }
        if let Some(d) = up.deaf {
            self.set_deaf(id, d);
        }
        if let Some(role) = up.role {
            let leg = self
                .legs
                .get_mut(&id)
                .ok_or(ControlError::NoSuchParticipant(id))?;
            if leg.stage == Stage::Waiting && role == Role::Moderator {
                // promoting someone who waits for the moderator starts the room
                leg.stage = Stage::Joined { moderator: true };
                self.bring_in(now, vec![id]);
                let members = self.rooms.get(room).cloned().unwrap_or_default();
                self.release_waiting(now, room, members);
                return self.participant(room, id);
            }
            let Stage::Joined { moderator } = &mut leg.stage else {
                return Err(ControlError::NotJoined(id));
            };
            let was = *moderator;
            *moderator = role == Role::Moderator;
            // as it is now: demoting the last moderator may end the room, this leg too
            let now_info = self.participant_info(id);
            if was && role == Role::Participant {
                self.moderator_gone(now, room);
            } else if !was && role == Role::Moderator {
                // a moderated room starts when its first moderator is in
                let members = self.rooms.get(room).cloned().unwrap_or_default();
                self.release_waiting(now, room, members);
            }
            if !self.legs.contains_key(&id) {
                return now_info
                    .map(|mut p| {
                        p.state = "leaving";
                        p
                    })
                    .ok_or(ControlError::NoSuchParticipant(id));
            }
        }
        self.participant(room, id)
    }

    /// Hang up one leg (BYE).
    pub fn kick(&mut self, now: Instant, room: &str, id: LegId) -> Result<(), ControlError> {
        self.member(room, id)?;
        tracing::info!(leg = %id, %room, "kicked through the API");
        self.end_leg(now, id, true, LeftReason::Kicked);
        Ok(())
    }

    /// Lock (moderators only from now on) or unlock a room.
    pub fn set_locked(&mut self, room: &str, locked: bool) -> Result<RoomInfo, ControlError> {
        self.room(room)?;
        if locked {
            self.locked.insert(room.to_string());
        } else {
            self.locked.remove(room);
        }
        tracing::info!(%room, locked, "room lock (API)");
        self.room(room)
    }

    /// Play a sound to one leg, or to every leg in the room's mix.
    pub fn play_sound(
        &mut self,
        room: &str,
        to: Option<LegId>,
        sound: &Sound,
    ) -> Result<usize, ControlError> {
        let targets = match to {
            Some(id) => {
                self.member(room, id)?;
                vec![id]
            }
            None => {
                self.members(room)?;
                self.joined_in(room)
            }
        };
        for &leg in &targets {
            if self.legs.get(&leg).is_some_and(|l| l.media_open) {
                self.out.push_back(Output::Media(MediaCommand::PlaySound {
                    leg,
                    sound: sound.clone(),
                }));
            }
        }
        Ok(targets.len())
    }

    /// Start recording a room's mix, or one leg's own audio; returns its id.
    pub fn start_recording(
        &mut self,
        room: &str,
        leg: Option<LegId>,
    ) -> Result<String, ControlError> {
        match leg {
            Some(id) => self.member(room, id)?,
            None => {
                self.room(room)?;
            }
        }
        let dir = self
            .cfg
            .recording_dir
            .clone()
            .ok_or(ControlError::RecordingOff)?;
        // 128 random bits: the id is also the file name and the URL
        let id = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        self.recordings.insert(
            id.clone(),
            Recording {
                room: room.to_string(),
                leg,
            },
        );
        self.out.push_back(Output::Media(MediaCommand::Record {
            id: id.clone(),
            room: room.to_string(),
            leg,
            path: dir.join(format!("{id}.wav")),
        }));
        tracing::info!(%room, recording = %id, leg = ?leg.map(|l| l.0), "recording started");
        Ok(id)
    }

    /// A room with `record = true` got its first call.
    pub(super) fn record_room_from_start(&mut self, room: &str) {
        if let Err(e) = self.start_recording(room, None) {
            tracing::warn!(%room, error = %e, "record = true, but cannot record");
        }
    }

    /// Stop a recording of this room.
    pub fn stop_recording(&mut self, room: &str, id: &str) -> Result<(), ControlError> {
        match self.recordings.get(id) {
            Some(r) if r.room == room => {
                self.stop_recording_id(id);
                Ok(())
            }
            _ => Err(ControlError::NoSuchRecording(id.to_string())),
        }
    }

    fn stop_recording_id(&mut self, id: &str) {
        if let Some(r) = self.recordings.get(id) {
            self.out
                .push_back(Output::Media(MediaCommand::StopRecording {
                    id: id.to_string(),
                    room: r.room.clone(),
                }));
        }
    }

    /// Whether a recording is still running (started and not yet reported done).
    pub fn recording_running(&self, id: &str) -> bool {
        self.recordings.contains_key(id)
    }

    /// The media side finished a recording's file (or could not create it).
    pub fn recording_done(
        &mut self,
        id: &str,
        duration_ms: u64,
        bytes: u64,
        error: Option<String>,
    ) {
        let Some(r) = self.recordings.remove(id) else {
            return;
        };
        self.out
            .push_back(Output::Event(Event::Recording(RecordingReport {
                id: id.to_string(),
                room: r.room,
                leg: r.leg,
                duration_ms,
                bytes,
                error,
                recovered: false,
            })));
    }

    /// The room's own event webhook, if it has one.
    pub fn event_url(&self, room: &str) -> Option<String> {
        self.cfg.rooms.get(room).and_then(|p| p.event_url.clone())
    }

    /// Talker detection changed for a leg.
    pub fn talking(&mut self, id: LegId, talking: bool) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.talking = talking;
        let room = leg.room.clone();
        self.out.push_back(Output::Event(Event::Talking {
            leg: id,
            room,
            talking,
        }));
    }

    pub(super) fn set_deaf(&mut self, id: LegId, deaf: bool) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.deaf = deaf;
        if leg.media_open {
            self.out
                .push_back(Output::Media(MediaCommand::Deaf { leg: id, deaf }));
        }
    }
}
