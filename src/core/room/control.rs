//! What the control plane reads of a room and may change in it: participants
//! (role, mute, deaf), the lock, sounds played, recordings. Every change goes
//! out as outputs like any change a call makes, so the API and the calls can
//! never disagree about a participant.

use std::time::Instant;

use super::super::control::ControlError;
use super::super::{Event, LeftReason, RecordingReport};
use super::{Ctx, Room, Stage};
use crate::ids::LegId;
use crate::media::contract::{MediaCommand, RecordSpec};
use crate::media::prompt::Sound;

/// A participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// joined with the moderator PIN (or made one through the API)
    Moderator,
    /// anyone else
    Participant,
}

/// One participant as the API lists it.
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
    /// a SIP call or a browser
    pub kind: super::LegKind,
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
    /// on hold
    pub held: bool,
    /// its place in the queue of raised hands (1: first), if raised
    pub hand: Option<usize>,
    /// dB on what it says and on what it hears
    pub volume: (i8, i8),
}

/// One room as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// name
    pub name: String,
    /// participants in it, whatever their stage
    pub participants: usize,
    /// locked by a moderator or the API
    pub locked: bool,
    /// ids of recordings of the room's mix that are running
    pub recording: Vec<String>,
    /// when its first call came (None: nobody there)
    pub started: Option<Instant>,
    /// created through the API (ends after its empty_timeout)
    pub dynamic: bool,
    /// raised hands, first raised first
    pub hands: Vec<LegId>,
}

/// A change to one participant; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantUpdate {
    /// mute or unmute
    pub muted: Option<bool>,
    /// deafen or not
    pub deaf: Option<bool>,
    /// make moderator or participant
    pub role: Option<Role>,
    /// whom it hears: everyone, or only these legs (an empty list: nobody)
    pub hears: Option<Audience>,
    /// who hears it: everyone, or only these legs (an empty list: nobody)
    pub heard_by: Option<Audience>,
    /// put on hold (music, not heard) or take off hold
    pub hold: Option<bool>,
    /// what it hears on hold (None: the room's music on hold)
    pub hold_music: Option<crate::media::prompt::Sound>,
    /// raise or lower its hand
    pub hand: Option<bool>,
    /// dB on what it says, to the others (−12..12)
    pub volume_in: Option<i8>,
    /// dB on what it hears of the room (−12..12)
    pub volume_out: Option<i8>,
}

/// Everyone, or only some legs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// the whole room
    All,
    /// these legs alone (none: nobody)
    Only(Vec<LegId>),
}

impl Audience {
    fn legs(&self) -> Option<Vec<LegId>> {
        match self {
            Audience::All => None,
            Audience::Only(l) => Some(l.clone()),
        }
    }
}

impl Room {
    /// The room as the API shows it.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.name().to_string(),
            participants: self.members.len(),
            locked: self.locked,
            recording: self.mix_recordings(),
            started: self.started,
            dynamic: self.dynamic,
            hands: self.hands.clone(),
        }
    }

    /// One participant as the API shows it.
    pub fn participant(&self, leg: LegId) -> Option<ParticipantInfo> {
        let p = self.parts.get(&leg)?;
        let (role, state) = match p.stage {
            Stage::Joined { moderator: true } => (Role::Moderator, "joined"),
            Stage::Joined { moderator: false } => (Role::Participant, "joined"),
            Stage::Pin { .. } => (Role::Participant, "pin"),
            Stage::Waiting => (Role::Participant, "waiting"),
            Stage::Refused => (Role::Participant, "leaving"),
            Stage::Dialing { moderator: true } => (Role::Moderator, "calling"),
            Stage::Dialing { moderator: false } => (Role::Participant, "calling"),
        };
        let state = if p.hangup_after_prompt.is_some() {
            "leaving"
        } else {
            state
        };
        Some(ParticipantInfo {
            id: leg,
            call_id: p.identity.call_id.clone(),
            from: p.identity.name.clone(),
            role,
            kind: p.identity.kind,
            state,
            muted: p.muted,
            deaf: p.deaf,
            talking: p.talking,
            joined: p.joined_at,
            held: p.held,
            hand: self.hands.iter().position(|l| *l == leg).map(|i| i + 1),
            volume: p.volume,
        })
    }

    /// Every participant, in order of arrival.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        self.members
            .iter()
            .filter_map(|&l| self.participant(l))
            .collect()
    }

    /// Mute, deafen or change the role of a participant. Demoting the last
    /// moderator may end the room, this participant too: it is then shown
    /// "leaving".
    pub fn update(
        &mut self,
        ctx: &mut Ctx,
        leg: LegId,
        up: ParticipantUpdate,
    ) -> Result<ParticipantInfo, ControlError> {
        if !self.parts.contains_key(&leg) {
            return Err(ControlError::NoSuchParticipant(leg));
        }
        // judged whole before any of it is carried out
        for listed in [&up.hears, &up.heard_by].into_iter().flatten() {
            if let Audience::Only(legs) = listed
                && let Some(&stranger) = legs.iter().find(|l| !self.parts.contains_key(l))
            {
                return Err(ControlError::NoSuchParticipant(stranger));
            }
        }
        if up.hold.is_some()
            && !self
                .parts
                .get(&leg)
                .is_some_and(|p| p.joined() && p.media_up)
        {
            return Err(ControlError::NotJoined(leg));
        }
        if let Some(m) = up.muted {
            self.set_muted(ctx, leg, m);
        }
        if let Some(d) = up.deaf {
            self.set_deaf(ctx, leg, d);
        }
        if let Some(h) = up.hold {
            self.set_hold(ctx, leg, h, up.hold_music.clone());
        }
        if let Some(h) = up.hand {
            self.set_hand(ctx, leg, h);
        }
        if up.volume_in.is_some() || up.volume_out.is_some() {
            self.set_volume(ctx, leg, up.volume_in, up.volume_out);
        }
        if up.hears.is_some() || up.heard_by.is_some() {
            let p = self
                .parts
                .get_mut(&leg)
                .ok_or(ControlError::NoSuchParticipant(leg))?;
            if let Some(h) = &up.hears {
                p.relation.hears = h.legs();
            }
            if let Some(h) = &up.heard_by {
                p.relation.heard_by = h.legs();
            }
            let relation = p.relation.clone();
            ctx.event(Event::Relation {
                leg,
                room: self.name().to_string(),
                hears: relation.hears.clone(),
                heard_by: relation.heard_by.clone(),
            });
            ctx.media(MediaCommand::Relate { leg, relation });
        }
        if let Some(role) = up.role {
            let p = self
                .parts
                .get_mut(&leg)
                .ok_or(ControlError::NoSuchParticipant(leg))?;
            if p.stage == Stage::Waiting && role == Role::Moderator {
                // promoting someone who waits for the moderator starts the room
                p.stage = Stage::Joined { moderator: true };
                self.bring_in(ctx, vec![leg]);
                self.release_waiting(ctx);
            } else {
                let Stage::Joined { moderator } = &mut p.stage else {
                    return Err(ControlError::NotJoined(leg));
                };
                let was = *moderator;
                *moderator = role == Role::Moderator;
                if was && role == Role::Participant {
                    self.moderator_gone(ctx);
                } else if !was && role == Role::Moderator {
                    // a moderated room starts when its first moderator is in
                    self.release_waiting(ctx);
                }
            }
        }
        let mut info = self
            .participant(leg)
            .ok_or(ControlError::NoSuchParticipant(leg))?;
        if ctx.hangups.iter().any(|(l, _)| *l == leg) {
            info.state = "leaving";
        }
        Ok(info)
    }

    /// Hang up one participant.
    pub fn kick(&mut self, ctx: &mut Ctx, leg: LegId) -> Result<(), ControlError> {
        if !self.parts.contains_key(&leg) {
            return Err(ControlError::NoSuchParticipant(leg));
        }
        tracing::info!(%leg, room = %self.name, "kicked through the API");
        ctx.hangups.push((leg, LeftReason::Kicked));
        Ok(())
    }

    /// Lock (moderators only from now on) or unlock.
    pub fn set_locked(&mut self, locked: bool) {
        self.locked = locked;
        tracing::info!(room = %self.name, locked, "room lock (API)");
    }

    /// Play a sound to one participant, or to everyone in the mix; how many it
    /// was played to.
    pub fn play_sound(
        &mut self,
        ctx: &mut Ctx,
        to: Option<LegId>,
        sound: &Sound,
    ) -> Result<usize, ControlError> {
        let targets = match to {
            Some(leg) if self.parts.contains_key(&leg) => vec![leg],
            Some(leg) => return Err(ControlError::NoSuchParticipant(leg)),
            None => self.joined(),
        };
        for &leg in &targets {
            if self.parts.get(&leg).is_some_and(|p| p.media_up) {
                ctx.media(MediaCommand::PlaySound {
                    leg,
                    sound: sound.clone(),
                });
            }
        }
        Ok(targets.len())
    }

    /// Play `sound` `plays` times to the whole room (mixed once, heard by
    /// everyone in the mix) or to one participant; its playback id.
    pub fn announce(
        &mut self,
        ctx: &mut Ctx,
        to: Option<LegId>,
        sound: &Sound,
        plays: u32,
    ) -> Result<u64, ControlError> {
        let id = ctx.rng.next_u64() >> 1;
        match to {
            None => ctx.media(MediaCommand::Announce {
                room: self.name().to_string(),
                id,
                sound: sound.clone(),
                plays,
            }),
            Some(leg) => {
                let p = self
                    .parts
                    .get(&leg)
                    .ok_or(ControlError::NoSuchParticipant(leg))?;
                if !p.media_up {
                    return Err(ControlError::NotJoined(leg));
                }
                for _ in 0..plays.max(1) {
                    ctx.media(MediaCommand::PlaySound {
                        leg,
                        sound: sound.clone(),
                    });
                }
            }
        }
        self.playbacks.insert(id, to);
        Ok(id)
    }

    /// Stop playback `id`.
    pub fn stop_playback(&mut self, ctx: &mut Ctx, id: u64) -> Result<(), ControlError> {
        match self.playbacks.get(&id).copied() {
            None => Err(ControlError::NoSuchPlayback(id)),
            Some(to) => {
                ctx.media(match to {
                    None => MediaCommand::StopAnnounce {
                        room: self.name().to_string(),
                        id,
                    },
                    Some(leg) => MediaCommand::Interrupt { leg },
                });
                self.playback_over(ctx, id, true);
                Ok(())
            }
        }
    }

    /// Playback `id` is over (played out, or `stopped`): reported once.
    pub fn playback_over(&mut self, ctx: &mut Ctx, id: u64, stopped: bool) {
        if let Some(to) = self.playbacks.remove(&id) {
            ctx.event(Event::Playback {
                id,
                room: self.name().to_string(),
                leg: to,
                stopped,
            });
        }
    }

    /// Whether playback `id` is this room's.
    pub fn plays(&self, id: u64) -> bool {
        self.playbacks.contains_key(&id)
    }

    /// Stop what plays to one participant and what is queued after it.
    pub fn stop_sound(&mut self, ctx: &mut Ctx, leg: LegId) -> Result<(), ControlError> {
        if !self.parts.contains_key(&leg) {
            return Err(ControlError::NoSuchParticipant(leg));
        }
        ctx.media(MediaCommand::Interrupt { leg });
        Ok(())
    }

    /// Start recording the room's mix, or one participant's own audio; returns
    /// its id (128 random bits: also its file name and URL).
    pub fn start_recording(
        &mut self,
        ctx: &mut Ctx,
        leg: Option<LegId>,
        spec: RecordSpec,
    ) -> Result<String, ControlError> {
        if let Some(l) = leg
            && !self.parts.contains_key(&l)
        {
            return Err(ControlError::NoSuchParticipant(l));
        }
        let dir = ctx.recording_dir.ok_or(ControlError::RecordingOff)?;
        let id = format!("{:016x}{:016x}", ctx.rng.next_u64(), ctx.rng.next_u64());
        self.recordings.insert(id.clone(), leg);
        self.speakers
            .insert(id.clone(), super::speakers::Speakers::new(ctx.now, leg));
        ctx.media(MediaCommand::Record {
            id: id.clone(),
            room: self.name().to_string(),
            leg,
            path: dir.join(format!("{id}.{}", spec.format.ext())),
            spec,
        });
        tracing::info!(room = %self.name, recording = %id, leg = ?leg.map(|l| l.0), format = spec.format.ext(), rate = spec.rate, channels = spec.channel_count(leg.is_some()), "recording started");
        Ok(id)
    }

    /// A room with `record = true` (or an NCCO's record) got its first call.
    pub(super) fn record_from_start(&mut self, ctx: &mut Ctx) {
        if let Err(e) = self.start_recording(ctx, None, RecordSpec::default()) {
            tracing::warn!(room = %self.name, error = %e, "record = true, but cannot record");
        }
    }

    /// Stop one of the room's recordings.
    pub fn stop_recording(&mut self, ctx: &mut Ctx, id: &str) -> Result<(), ControlError> {
        if !self.recordings.contains_key(id) {
            return Err(ControlError::NoSuchRecording(id.to_string()));
        }
        self.stop_recording_id(ctx, id);
        Ok(())
    }

    pub(super) fn stop_recording_id(&mut self, ctx: &mut Ctx, id: &str) {
        if self.recordings.contains_key(id) {
            ctx.media(MediaCommand::StopRecording {
                id: id.to_string(),
                room: self.name().to_string(),
            });
        }
    }

    /// Ids of the running recordings of the room's mix.
    pub fn mix_recordings(&self) -> Vec<String> {
        self.recordings
            .iter()
            .filter(|(_, leg)| leg.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether recording `id` is this room's and still running.
    pub fn records(&self, id: &str) -> bool {
        self.recordings.contains_key(id)
    }

    /// The media side finished recording `id` (or could not create it).
    pub fn recording_done(
        &mut self,
        ctx: &mut Ctx,
        id: &str,
        duration_ms: u64,
        bytes: u64,
        error: Option<String>,
    ) {
        let Some(leg) = self.recordings.remove(id) else {
            return;
        };
        if let Some(s) = self.speakers.remove(id)
            && error.is_none()
        {
            ctx.out.push_back(crate::core::Output::Speakers {
                id: id.to_string(),
                turns: s.finish(ctx.now),
            });
        }
        ctx.event(Event::Recording(RecordingReport {
            id: id.to_string(),
            room: self.name().to_string(),
            leg,
            duration_ms,
            bytes,
            error,
            recovered: false,
        }));
    }
}
