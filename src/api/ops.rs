//! What an API request asks of the core, carried to the driver's task (which owns
//! the core) over a channel, and carried out there by [`execute`]: the HTTP side
//! never holds signalling state, so no lock is shared with SIP.

use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::core::calls::{CallAction, CallInfo};
use crate::core::control::{ControlError, ParticipantInfo, ParticipantUpdate, Role, RoomInfo};
use crate::core::{Core, LegId, RoomPolicy};
use crate::media::prompt::Sound;

/// One operation on the core.
#[derive(Debug)]
pub enum Op {
    /// GET /v1/rooms
    Rooms,
    /// GET /v1/rooms/{room}
    Room(String),
    /// POST /v1/rooms
    CreateRoom(String, Box<RoomPolicy>),
    /// DELETE /v1/rooms/{room}
    EndRoom(String),
    /// GET /v1/rooms/{room}/participants
    Participants(String),
    /// PATCH /v1/rooms/{room}/participants/{id}
    Update(String, LegId, ParticipantUpdate),
    /// DELETE /v1/rooms/{room}/participants/{id}
    Kick(String, LegId),
    /// POST /v1/rooms/{room}/participants/{id}/move: to a room, as moderator
    /// (Some(true)) or by its rules
    Move(String, LegId, String, Option<bool>),
    /// PUT /v1/calls/{uuid} transfer: into an NCCO's conversation (created
    /// when new) with its options
    Transfer(LegId, String, Box<crate::core::routing::CallOptions>),
    /// a call in progress goes on by an NCCO that does more than join a
    /// conversation (run by the driver's NCCO runner)
    TransferNcco(LegId, serde_json::Value),
    /// POST /v1/rooms/{room}/lock | unlock
    Lock(String, bool),
    /// a playback with an id: to the room (mixed once) or one participant,
    /// this many times
    Announce(String, Option<LegId>, Sound, u32),
    /// DELETE /v1/rooms/{room}/play/{id}
    StopPlayback(String, u64),
    /// POST /v1/rooms/{a}/links
    Link(String, String),
    /// DELETE /v1/rooms/{a}/links/{b}
    Unlink(String, String),
    /// GET /v1/rooms/{a}/links
    Links(String),
    /// POST /v1/rooms/{room}/recordings
    Record(String, Option<LegId>, crate::media::contract::RecordSpec),
    /// DELETE /v1/rooms/{room}/recordings/{id}
    StopRecording(String, String),
    /// POST /v1/rooms/{room}/dial
    Dial(String, crate::core::dialout::DialRequest),
    /// GET /metrics: the core's and the driver's figures
    Metrics,
    /// POST /v1/rooms/{room}/join: the role a typed PIN grants
    WebPin(String, String, std::net::IpAddr),
    /// GET /v1/rooms/{room}/join: whether the room asks for a PIN
    WebAsksPin(String),
    /// POST /v1/rooms/{room}/whip: a browser joins on its answered connection
    /// (carried out by the driver, which stages the connection for the media)
    WebJoin(
        crate::core::web::WebJoin,
        Box<crate::media::transport::WebRtc>,
    ),
    /// DELETE /v1/whip/{id}
    WebLeave(LegId),
    /// GET /v1/calls
    Calls,
    /// GET /v1/calls/{uuid}
    Call(LegId),
    /// PUT /v1/calls/{uuid}: hangup, mute, earmuff
    CallAction(LegId, CallAction),
    /// PUT /v1/calls/{uuid}/talk | stream: a sound, played this many times
    CallPlay(LegId, Sound, u32),
    /// DELETE /v1/calls/{uuid}/talk | stream
    CallStop(LegId),
    /// PUT /v1/calls/{uuid}/dtmf
    CallDtmf(LegId, String),
    /// DTMF to a participant of a room (the room checked first)
    ParticipantDtmf(String, LegId, String),
    /// POST /v1/calls: dial into an NCCO's conversation (created when new),
    /// with the event URL of a room it creates
    DialConversation(String, Option<String>, crate::core::dialout::DialRequest),
}

/// What an operation comes to.
pub type OpResult = Result<Reply, ControlError>;

/// An operation with its reply channel.
#[derive(Debug)]
pub struct ApiCall {
    /// what to do
    pub op: Op,
    /// where the answer goes
    pub reply: oneshot::Sender<OpResult>,
}

/// A room as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomJson {
    /// name
    pub name: String,
    /// legs in it
    pub participants: usize,
    /// locked
    pub locked: bool,
    /// running recordings of its mix
    pub recording: Vec<String>,
    /// RFC 3339, or null when nobody is in
    pub started_at: Option<String>,
    /// created through the API
    pub dynamic: bool,
    /// participant ids with a raised hand, first raised first
    pub hands: Vec<u64>,
}

/// A participant as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ParticipantJson {
    /// leg id
    pub id: u64,
    /// Call-ID
    pub call_id: String,
    /// From URI
    pub from: String,
    /// "moderator" or "participant"
    pub role: &'static str,
    /// "sip", "webrtc" or "websocket"
    pub kind: &'static str,
    /// "pin", "waiting", "joined", "leaving"
    pub state: &'static str,
    /// muted
    pub muted: bool,
    /// deaf
    pub deaf: bool,
    /// on hold
    pub hold: bool,
    /// place in the queue of raised hands (1: first), null when not raised
    pub hand: Option<usize>,
    /// dB on what it says, to the others
    pub volume_in: i8,
    /// dB on what it hears
    pub volume_out: i8,
    /// talking
    pub talking: bool,
    /// RFC 3339, or null before it is in the mix
    pub joined_at: Option<String>,
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub enum Reply {
    /// rooms
    Rooms(Vec<RoomJson>),
    /// one room
    Room(RoomJson),
    /// participants
    Participants(Vec<ParticipantJson>),
    /// one participant
    Participant(ParticipantJson),
    /// done, nothing to say
    Done,
    /// a playback started: its id
    Playback(u64),
    /// rooms a room is linked to
    Links(Vec<String>),
    /// a recording started
    Recording(String),
    /// an outbound call started
    Dialing(LegId),
    /// Prometheus text of the core's gauges
    Metrics(String),
    /// a PIN's role (moderator or not), or whether a room asks for a PIN
    Flag(bool),
    /// a browser leg joined
    Leg(LegId),
    /// calls (Vonage's view of legs)
    Calls(Vec<CallInfo>),
    /// one call
    Call(Box<CallInfo>),
}

/// Wall-clock time of a core instant, as RFC 3339 UTC.
pub fn wall(t: Instant, now: Instant) -> String {
    let at = SystemTime::now()
        .checked_sub(now.saturating_duration_since(t))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    rfc3339(at)
}

pub use crate::util::rfc3339;

fn room_json(r: RoomInfo, now: Instant) -> RoomJson {
    RoomJson {
        name: r.name,
        participants: r.participants,
        locked: r.locked,
        recording: r.recording,
        started_at: r.started.map(|t| wall(t, now)),
        dynamic: r.dynamic,
        hands: r.hands.iter().map(|l| l.0).collect(),
    }
}

fn participant_json(p: ParticipantInfo, now: Instant) -> ParticipantJson {
    ParticipantJson {
        id: p.id.0,
        call_id: p.call_id,
        from: p.from,
        role: match p.role {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
        },
        kind: p.kind.as_str(),
        state: p.state,
        muted: p.muted,
        deaf: p.deaf,
        hold: p.held,
        hand: p.hand,
        volume_in: p.volume.0,
        volume_out: p.volume.1,
        talking: p.talking,
        joined_at: p.joined.map(|t| wall(t, now)),
    }
}

/// Carry out one operation on the core (in the driver's task).
pub fn execute(core: &mut Core, now: Instant, op: Op) -> Result<Reply, ControlError> {
    Ok(match op {
        Op::Rooms => Reply::Rooms(
            core.room_list()
                .into_iter()
                .map(|r| room_json(r, now))
                .collect(),
        ),
        Op::Room(name) => Reply::Room(room_json(core.room(&name)?, now)),
        Op::CreateRoom(name, policy) => {
            Reply::Room(room_json(core.create_room(now, &name, *policy)?, now))
        }
        Op::EndRoom(name) => {
            core.end_room_by_api(now, &name)?;
            Reply::Done
        }
        Op::Participants(room) => Reply::Participants(
            core.participants(&room)?
                .into_iter()
                .map(|p| participant_json(p, now))
                .collect(),
        ),
        Op::Update(room, id, up) => Reply::Participant(participant_json(
            core.update_participant(now, &room, id, up)?,
            now,
        )),
        Op::Kick(room, id) => {
            core.kick(now, &room, id)?;
            Reply::Done
        }
        Op::Move(room, id, to, moderator) => {
            // the participant must be in the room the path names
            core.participant(&room, id)?;
            core.move_leg(now, id, &to, moderator, None)?;
            Reply::Participant(participant_json(core.participant(&to, id)?, now))
        }
        Op::Transfer(id, to, options) => {
            core.conversation(now, &to, options.event_url.clone())?;
            core.move_leg(now, id, &to, None, Some(*options))?;
            Reply::Done
        }
        Op::Lock(room, locked) => Reply::Room(room_json(core.set_locked(&room, locked)?, now)),
        Op::Announce(room, leg, sound, plays) => {
            Reply::Playback(core.announce(now, &room, leg, &sound, plays)?)
        }
        Op::StopPlayback(room, id) => {
            core.stop_playback(now, &room, id)?;
            Reply::Done
        }
        Op::Link(a, b) => {
            core.link_rooms(now, &a, &b)?;
            Reply::Links(core.links_of(&a))
        }
        Op::Unlink(a, b) => {
            core.unlink_rooms(now, &a, &b)?;
            Reply::Done
        }
        Op::Links(a) => {
            core.room(&a)?;
            Reply::Links(core.links_of(&a))
        }
        Op::Record(room, leg, spec) => {
            Reply::Recording(core.start_recording(now, &room, leg, spec)?)
        }
        Op::StopRecording(room, id) => {
            core.stop_recording(now, &room, &id)?;
            Reply::Done
        }
        Op::Dial(room, req) => Reply::Dialing(core.dial(now, &room, req)?),
        Op::Metrics => Reply::Metrics(core_metrics(core, now)),
        Op::WebPin(room, pin, source) => Reply::Flag(core.web_pin(now, &room, &pin, source)?),
        Op::WebAsksPin(room) => Reply::Flag(core.web_room_asks_pin(&room)?),
        Op::WebJoin(req, _) => Reply::Leg(core.web_join(now, req)?),
        // the driver runs the NCCO; without one there is nothing to run it
        Op::TransferNcco(..) => {
            return Err(ControlError::NotForThisLeg(
                "an NCCO transfer needs the driver's NCCO runner",
            ));
        }
        Op::WebLeave(leg) => {
            core.web_leave(now, leg)?;
            Reply::Done
        }
        Op::Calls => Reply::Calls(core.calls()),
        Op::Call(leg) => Reply::Call(Box::new(core.call(leg)?)),
        Op::CallAction(leg, action) => {
            core.call_action(now, leg, action)?;
            Reply::Done
        }
        Op::CallPlay(leg, sound, times) => {
            core.call_play(now, leg, &sound, times)?;
            Reply::Done
        }
        Op::CallStop(leg) => {
            core.call_stop_sound(now, leg)?;
            Reply::Done
        }
        Op::CallDtmf(leg, digits) => {
            core.call_dtmf(now, leg, &digits)?;
            Reply::Done
        }
        Op::ParticipantDtmf(room, leg, digits) => {
            core.participant(&room, leg)?;
            core.call_dtmf(now, leg, &digits)?;
            Reply::Done
        }
        Op::DialConversation(room, event_url, req) => {
            core.conversation(now, &room, event_url)?;
            Reply::Dialing(core.dial(now, &room, req)?)
        }
    })
}

fn core_metrics(core: &Core, now: Instant) -> String {
    let rooms = core.room_list();
    let running = rooms.iter().filter(|r| r.participants > 0).count();
    let legs: usize = rooms.iter().map(|r| r.participants).sum();
    let (bans, dropped, banned) = core.flood_stats(now);
    let series: [(&str, &str, &str, u64); 8] = [
        (
            "gauge",
            "caucus_rooms",
            "Rooms defined (configured and created through the API).",
            rooms.len() as u64,
        ),
        (
            "gauge",
            "caucus_rooms_active",
            "Rooms with at least one call.",
            running as u64,
        ),
        (
            "gauge",
            "caucus_participants",
            "Legs in rooms, whatever their stage.",
            legs as u64,
        ),
        (
            "gauge",
            "caucus_rtp_ports_in_use",
            "RTP/RTCP port pairs held by legs.",
            core.ports_in_use() as u64,
        ),
        (
            "gauge",
            "caucus_rtp_ports_retired",
            "RTP/RTCP port pairs resting after another program held them.",
            core.ports_retired(now) as u64,
        ),
        (
            "counter",
            "caucus_flood_bans_total",
            "Sources banned for their failed attempts.",
            bans,
        ),
        (
            "counter",
            "caucus_flood_dropped_total",
            "Requests dropped by flood control (banned sources, over the request ceiling).",
            dropped,
        ),
        (
            "gauge",
            "caucus_flood_banned_sources",
            "Sources banned now.",
            banned as u64,
        ),
    ];
    let mut s = String::new();
    for (kind, name, help, value) in series {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    let (sip, web) = core.legs_by_kind();
    s.push_str(&format!(
        "# HELP caucus_legs Legs by kind: SIP calls and browsers (WebRTC).\n# TYPE caucus_legs gauge\ncaucus_legs{{kind=\"sip\"}} {sip}\ncaucus_legs{{kind=\"webrtc\"}} {web}\n"
    ));
    s
}
