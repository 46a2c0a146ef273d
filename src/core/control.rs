//! The control plane's view of the core: what the HTTP API reads (rooms,
//! participants, recordings) and what it may change (mute, deaf, role, kick, lock,
//! end, play, record, rooms created at run time). Still sans-IO: every change comes
//! out as [`Output`]s like any SIP-driven one, so the API and SIP can never disagree
//! about a leg.

use std::time::Instant;

use super::room::{Ctx, Room};
use super::{Core, LegId, RoomPolicy};
use crate::ids::RoomId;
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
    /// no such playback in the room
    #[error("no playback {0:016x} in this room")]
    NoSuchPlayback(u64),
    /// not a room name (1-64 of A-Z a-z 0-9 - _ .)
    #[error("\"{0}\" is not a room name")]
    InvalidRoomName(String),
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
    /// a PIN that opens nothing (or a room that is hidden)
    #[error("wrong PIN")]
    WrongPin,
    /// a locked room admits moderators only
    #[error("room \"{0}\" is locked")]
    RoomLocked(String),
    /// a change that does not apply to this leg now (still typing its PIN)
    #[error("participant {0} is not in the mix yet")]
    NotJoined(LegId),
    /// DTMF digits outside 0-9 * # A-D, none, or too many
    #[error("digits: 1-64 of 0-9 * # A-D")]
    BadDigits,
    /// something this kind of leg cannot do
    #[error("{0}")]
    NotForThisLeg(&'static str),
}

pub use super::room::{Audience, ParticipantInfo, ParticipantUpdate, Role, RoomInfo};

impl Core {
    /// Every room: configured, created at run time, and any still running after a
    /// reload removed it from the file.
    pub fn room_list(&self) -> Vec<RoomInfo> {
        self.rooms
            .values()
            .filter(|r| !r.is_decoy())
            .map(Room::info)
            .collect()
    }

    fn known_room(&self, name: &str) -> Result<&Room, ControlError> {
        self.rooms
            .get(name)
            .filter(|r| !r.is_decoy())
            .ok_or_else(|| ControlError::NoSuchRoom(name.to_string()))
    }

    /// One room.
    pub fn room(&self, name: &str) -> Result<RoomInfo, ControlError> {
        self.known_room(name).map(Room::info)
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
        if self.rooms.contains_key(name) {
            return Err(ControlError::RoomExists(name.to_string()));
        }
        let id = RoomId::parse(name).ok_or_else(|| ControlError::InvalidRoomName(name.into()))?;
        self.rooms.insert(id.clone(), Room::new(id, policy, true));
        self.with_room(now, name, Room::created);
        tracing::info!(room = %name, "room created through the API");
        self.room(name)
    }

    /// End a room's calls (BYE to every leg); a room created through the API is
    /// removed as well.
    pub fn end_room_by_api(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        self.known_room(name)?;
        self.with_room(now, name, |r, ctx| {
            r.end(ctx, "ended through the API");
            if r.is_dynamic() {
                r.undefine();
            }
        });
        Ok(())
    }

    /// A change a room makes through its context, for a room the API may see.
    pub(super) fn in_room<R>(
        &mut self,
        now: Instant,
        name: &str,
        f: impl FnOnce(&mut Room, &mut Ctx) -> Result<R, ControlError>,
    ) -> Result<R, ControlError> {
        self.known_room(name)?;
        self.with_room(now, name, f)
            .unwrap_or_else(|| Err(ControlError::NoSuchRoom(name.to_string())))
    }

    /// The participants of a room.
    pub fn participants(&self, room: &str) -> Result<Vec<ParticipantInfo>, ControlError> {
        Ok(self.known_room(room)?.participants())
    }

    /// One participant of a room.
    pub fn participant(&self, room: &str, id: LegId) -> Result<ParticipantInfo, ControlError> {
        self.known_room(room)?
            .participant(id)
            .ok_or(ControlError::NoSuchParticipant(id))
    }

    /// Mute, deafen or change the role of a participant.
    pub fn update_participant(
        &mut self,
        now: Instant,
        room: &str,
        id: LegId,
        up: ParticipantUpdate,
    ) -> Result<ParticipantInfo, ControlError> {
        self.in_room(now, room, |r, ctx| r.update(ctx, id, up))
    }

    /// Hang up one participant.
    pub fn kick(&mut self, now: Instant, room: &str, id: LegId) -> Result<(), ControlError> {
        self.in_room(now, room, |r, ctx| r.kick(ctx, id))
    }

    /// Lock (moderators only from now on) or unlock a room.
    pub fn set_locked(&mut self, room: &str, locked: bool) -> Result<RoomInfo, ControlError> {
        self.known_room(room)?;
        let r = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| ControlError::NoSuchRoom(room.to_string()))?;
        r.set_locked(locked);
        Ok(r.info())
    }

    /// Play a sound to one participant, or to everyone in the room's mix.
    pub fn play_sound(
        &mut self,
        now: Instant,
        room: &str,
        to: Option<LegId>,
        sound: &Sound,
    ) -> Result<usize, ControlError> {
        self.in_room(now, room, |r, ctx| r.play_sound(ctx, to, sound))
    }

    /// Play a sound to a room (mixed once) or to one participant; its playback id.
    pub fn announce(
        &mut self,
        now: Instant,
        room: &str,
        to: Option<LegId>,
        sound: &Sound,
        plays: u32,
    ) -> Result<u64, ControlError> {
        self.in_room(now, room, |r, ctx| r.announce(ctx, to, sound, plays))
    }

    /// Stop a room's playback.
    pub fn stop_playback(&mut self, now: Instant, room: &str, id: u64) -> Result<(), ControlError> {
        self.in_room(now, room, |r, ctx| r.stop_playback(ctx, id))
    }

    /// The media side played a room's announcement out.
    pub fn playback_done(&mut self, now: Instant, id: u64) {
        let Some(room) = self
            .rooms
            .iter()
            .find(|(_, r)| r.plays(id))
            .map(|(n, _)| n.to_string())
        else {
            return;
        };
        self.with_room(now, &room, |r, ctx| r.playback_over(ctx, id, false));
    }

    /// Start recording a room's mix, or one participant's own audio; returns its id.
    pub fn start_recording(
        &mut self,
        now: Instant,
        room: &str,
        leg: Option<LegId>,
        spec: crate::media::contract::RecordSpec,
    ) -> Result<String, ControlError> {
        self.in_room(now, room, |r, ctx| r.start_recording(ctx, leg, spec))
    }

    /// Stop a recording of this room.
    pub fn stop_recording(
        &mut self,
        now: Instant,
        room: &str,
        id: &str,
    ) -> Result<(), ControlError> {
        self.in_room(now, room, |r, ctx| r.stop_recording(ctx, id))
    }

    /// Whether a recording is still running (started and not yet reported done).
    pub fn recording_running(&self, id: &str) -> bool {
        self.rooms.values().any(|r| r.records(id))
    }

    /// The media side finished a recording's file (or could not create it).
    pub fn recording_done(
        &mut self,
        now: Instant,
        id: &str,
        duration_ms: u64,
        bytes: u64,
        error: Option<String>,
    ) {
        let Some(name) = self
            .rooms
            .values()
            .find(|r| r.records(id))
            .map(|r| r.id().clone())
        else {
            return;
        };
        self.with_room(now, name.as_str(), |r, ctx| {
            r.recording_done(ctx, id, duration_ms, bytes, error)
        });
    }

    /// The room's own event webhook, if it has one.
    pub fn event_url(&self, room: &str) -> Option<String> {
        self.rooms
            .get(room)
            .and_then(|r| r.policy().event_url.clone())
    }

    /// Talker detection changed for a leg.
    pub fn talking(&mut self, now: Instant, id: LegId, talking: bool) {
        self.with_leg_room(now, id, |r, ctx| r.talking(ctx, id, talking));
    }
}
