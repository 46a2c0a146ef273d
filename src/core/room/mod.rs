//! One conference: its participants, admission (PIN, moderator wait, lock,
//! limits), the in-call menu, roles, mute and deaf, recordings, the rules that
//! start and end it, and its timers. A room never sees a SIP message, SDP, a
//! transport or a port: signalling turns what a call does into calls on its
//! room (a participant arrives, its media is up, it typed a key, it left) and
//! carries out what the room decides (media commands and events go out as they
//! are; a hang-up is the signalling's to do: a BYE for a SIP leg, a close for a
//! browser leg). So a new kind of leg joins a room the same way, and a room is
//! addressed by its name alone.
//!
//! Here: the room's state, arrival, joining, leaving and ending. Beside it:
//! `admission` (PINs, the moderator wait), `menu` (the DTMF menu, hands),
//! `voice` (mute, deaf, hold, volumes, talker reports), `ncco` (a caller's
//! NCCO in its room), `control` (the API's view and changes), `speakers` (who
//! spoke when in a recording).
//!
//! Sans-IO like the rest of the core: a room's calls get a [`Ctx`] with the time,
//! the output queue and the timers; what it cannot do itself (end a call, count a
//! PIN attempt for flood control) it leaves in the context for the core.

mod admission;
mod control;
mod menu;
mod names;
mod ncco;
pub mod policy;
pub mod speakers;
pub mod spec;
mod voice;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub use control::{Audience, ParticipantInfo, ParticipantUpdate, Role, RoomInfo};
pub use menu::MenuKeys;
pub use policy::{DECOY_ROOM, RoomPolicy};

use super::pin;
use super::routing::CallOptions;
use super::timers::{CoreTimer, RoomTimer, TimerTable};
use super::{Event, LeftReason, Output};
use crate::ids::{LegId, RoomId};
use crate::media::contract::MediaCommand;
use crate::media::prompt::Prompt;
use crate::util::rng::Rng;

/// Longest a goodbye sequence of prompts may take before the call is ended anyway.
const HANGUP_AFTER_PROMPT: Duration = Duration::from_secs(15);
/// A participant's own recordings as they move with it to another room: ids,
/// and who spoke when in each.
pub type Stems = Vec<(String, Option<speakers::Speakers>)>;

/// A muted participant talking this long hears "you are muted" ...
pub const MUTED_TALK: Duration = Duration::from_secs(2);
/// ... at most once in this long.
pub const MUTED_REMIND: Duration = Duration::from_secs(30);

/// What a room's calls may use of the core, and what they leave for it.
pub struct Ctx<'a> {
    /// now
    pub now: Instant,
    /// outputs (media commands, events) as the room emits them
    pub out: &'a mut VecDeque<Output>,
    /// the core's timers (a room sets its own, keyed by its name)
    pub timers: &'a mut TimerTable<CoreTimer>,
    /// the menu's key sequences
    pub menu: &'a MenuKeys,
    /// where recordings go (None: recording is off)
    pub recording_dir: Option<&'a Path>,
    /// randomness (recording ids)
    pub rng: &'a mut Rng,
    /// calls the room ends, for the signalling to hang up once the room's call
    /// returns
    pub hangups: &'a mut Vec<(LegId, LeftReason)>,
    /// PIN attempts judged, by source: true when right (for flood control)
    pub attempts: &'a mut Vec<(IpAddr, bool)>,
}

impl Ctx<'_> {
    fn media(&mut self, cmd: MediaCommand) {
        self.out.push_back(Output::Media(cmd));
    }

    fn event(&mut self, ev: Event) {
        self.out.push_back(Output::Event(ev));
    }
}

/// Where a participant is in joining its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// typing a PIN; kept out of the mix
    Pin {
        /// digits so far (never logged)
        entered: String,
        /// wrong tries so far
        tries: u32,
    },
    /// in a moderated room before any moderator: music on hold, not mixed
    Waiting,
    /// answered only to be told the room is full, then hung up
    Refused,
    /// in the mix
    Joined {
        /// joined with the moderator PIN (or made one)
        moderator: bool,
    },
    /// an outbound call not answered yet
    Dialing {
        /// joins as moderator once answered
        moderator: bool,
    },
}

/// What kind of leg a participant is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegKind {
    /// a SIP call (phone, softphone, PBX, trunk)
    #[default]
    Sip,
    /// a browser (WebRTC, signalled by WHIP)
    WebRtc,
    /// a WebSocket server an NCCO `connect` streams the call to
    WebSocket,
    /// one end of a link between two rooms (it speaks the other room's mix)
    Link,
}

impl LegKind {
    /// The name the API and events use.
    pub fn as_str(self) -> &'static str {
        match self {
            LegKind::Sip => "sip",
            LegKind::WebRtc => "webrtc",
            LegKind::WebSocket => "websocket",
            LegKind::Link => "link",
        }
    }
}

/// Who a participant is, as its signalling tells the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// the caller (a SIP From URI, the target dialled, or a browser's name)
    pub name: String,
    /// its call's id (the SIP Call-ID), for listings
    pub call_id: String,
    /// the address it called from (PIN lockout per source)
    pub source: IpAddr,
    /// the kind of leg
    pub kind: LegKind,
}

/// One participant of a room.
#[derive(Debug, Clone)]
pub struct Participant {
    stage: Stage,
    identity: Identity,
    /// its media is up: what the room tells the media side reaches it
    media_up: bool,
    /// end the call when the queued prompts have played, and why
    hangup_after_prompt: Option<LeftReason>,
    /// not mixed (self-mute, a moderator's mute-all, the API)
    muted: bool,
    /// hears nothing of the room
    deaf: bool,
    /// talker detection says it is talking
    talking: bool,
    /// when it went into the mix
    joined_at: Option<Instant>,
    /// menu keys typed so far, and when the last came
    menu: (String, Option<Instant>),
    /// what its answer webhook (NCCO) said
    options: Option<CallOptions>,
    /// its NCCO's intro (speech, files) is to play, or playing, before it
    /// goes on to its stage
    intro_pending: bool,
    /// digits typed so far for its NCCO's `input`, while it collects them
    collecting: Option<String>,
    /// whom it hears and who hears it, where not everyone
    relation: crate::media::contract::Relation,
    /// the recording its NCCO's `record` started, while it runs
    call_recording: Option<String>,
    /// on hold (the API): hears music, is not heard
    held: bool,
    /// muted, and talking by the talker detection
    muted_talking: bool,
    /// when it was last told it is muted because it talked
    muted_told: Option<Instant>,
    /// dB on what it says and on what it hears (−12..12)
    volume: (i8, i8),
    /// its name, said on entry (`announce_names`)
    name: names::Name,
}

impl Participant {
    /// A participant in `stage`.
    pub fn new(stage: Stage, identity: Identity, options: Option<CallOptions>) -> Participant {
        Participant {
            stage,
            identity,
            media_up: false,
            hangup_after_prompt: None,
            muted: false,
            deaf: false,
            talking: false,
            joined_at: None,
            menu: (String::new(), None),
            intro_pending: options.as_ref().is_some_and(|o| !o.intro.is_empty()),
            collecting: None,
            relation: Default::default(),
            call_recording: None,
            held: false,
            muted_talking: false,
            muted_told: None,
            volume: (0, 0),
            name: names::Name::Unasked,
            options,
        }
    }

    /// In the mix and able to start the room: a moderator, or an NCCO caller
    /// with startOnEnter.
    fn starts_room(&self) -> bool {
        match self.stage {
            Stage::Joined { moderator } => {
                moderator || self.options.as_ref().is_some_and(|o| o.start_on_enter)
            }
            _ => false,
        }
    }

    fn joined(&self) -> bool {
        matches!(self.stage, Stage::Joined { .. })
    }
}

/// One conference.
#[derive(Debug)]
pub struct Room {
    name: RoomId,
    policy: RoomPolicy,
    /// in the configuration or created through the API (false: still running
    /// after a reload removed it, or the decoy; dropped once empty)
    defined: bool,
    /// created through the API (removed after its empty_timeout)
    dynamic: bool,
    /// the decoy for hidden unknown rooms: no PIN opens it, nothing is reported
    decoy: bool,
    /// participants in order of arrival
    members: Vec<LegId>,
    parts: HashMap<LegId, Participant>,
    locked: bool,
    started: Option<Instant>,
    empty_since: Option<Instant>,
    /// running recordings: id → whose audio (None: the room's mix)
    recordings: BTreeMap<String, Option<LegId>>,
    /// PIN failures per source
    guard: pin::Guard,
    /// raised hands, first raised first
    hands: Vec<LegId>,
    /// who spoke when, per running recording
    speakers: HashMap<String, speakers::Speakers>,
    /// playbacks running: id → to whom (None: the whole room, mixed once)
    playbacks: BTreeMap<u64, Option<LegId>>,
}

impl Room {
    /// A room defined by the configuration (or, `dynamic`, through the API).
    pub fn new(name: RoomId, policy: RoomPolicy, dynamic: bool) -> Room {
        Room {
            name,
            policy,
            defined: true,
            dynamic,
            decoy: false,
            members: Vec::new(),
            parts: HashMap::new(),
            locked: false,
            started: None,
            empty_since: None,
            recordings: BTreeMap::new(),
            guard: pin::Guard::default(),
            hands: Vec::new(),
            speakers: HashMap::new(),
            playbacks: BTreeMap::new(),
        }
    }

    /// The decoy that calls to unknown rooms are answered from.
    pub fn decoy() -> Room {
        let mut r = Room::new(RoomId::reserved(DECOY_ROOM), policy::decoy_policy(), false);
        r.defined = false;
        r.decoy = true;
        r
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Its id.
    pub fn id(&self) -> &RoomId {
        &self.name
    }

    /// Its configuration.
    pub fn policy(&self) -> &RoomPolicy {
        &self.policy
    }

    /// New configuration (a reload, which also makes a room created through
    /// the API a configured one when the file now names it); running calls keep
    /// going.
    pub fn set_policy(&mut self, policy: RoomPolicy) {
        self.policy = policy;
        self.defined = true;
        self.dynamic = false;
    }

    /// Created through the API just now: removed unless someone calls within
    /// its empty_timeout.
    pub fn created(&mut self, ctx: &mut Ctx) {
        self.start_empty_clock(ctx);
    }

    fn start_empty_clock(&mut self, ctx: &mut Ctx) {
        self.empty_since = Some(ctx.now);
        let at = ctx.now + self.policy.empty_timeout;
        ctx.timers.set(self.timer(RoomTimer::Empty), at);
    }

    /// A reload no longer defines it: it goes once empty.
    pub fn undefine(&mut self) {
        self.defined = false;
    }

    /// Whether it is defined (configuration, API), not just running.
    pub fn is_defined(&self) -> bool {
        self.defined
    }

    /// Created through the API.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Whether nothing keeps it: undefined, empty, and no recording of it is
    /// still being finished (its report must still go out).
    pub fn is_disposable(&self) -> bool {
        !self.defined && self.members.is_empty() && self.recordings.is_empty()
    }

    /// The decoy for hidden unknown rooms (never listed or reported).
    pub fn is_decoy(&self) -> bool {
        self.decoy
    }

    /// Whether anyone is in.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The legs that link this room to another, each with whom it is to (the
    /// other room of this node, or the bridge it dialled or was called from).
    pub fn link_legs(&self) -> Vec<(LegId, String)> {
        self.members
            .iter()
            .filter_map(|l| {
                let p = self.parts.get(l)?;
                (p.identity.kind == LegKind::Link).then(|| (*l, p.identity.name.clone()))
            })
            .collect()
    }

    /// Whether `leg` carries a link (another room's or bridge's mix).
    pub fn is_link(&self, leg: LegId) -> bool {
        self.parts
            .get(&leg)
            .is_some_and(|p| p.identity.kind == LegKind::Link)
    }

    /// Legs in the room, in order of arrival.
    pub fn members(&self) -> &[LegId] {
        &self.members
    }

    /// Whether `leg` is a participant.
    pub fn has(&self, leg: LegId) -> bool {
        self.parts.contains_key(&leg)
    }

    /// When its first call came (None: nobody is in).
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Locked by a moderator or the API.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Whether `leg` is admitted to the room (in the mix, or waiting for the
    /// moderator): what a ban spares.
    pub fn admitted(&self, leg: LegId) -> bool {
        !self.decoy
            && self
                .parts
                .get(&leg)
                .is_some_and(|p| matches!(p.stage, Stage::Joined { .. } | Stage::Waiting))
    }

    /// What `leg`'s NCCO asked for and could not have.
    pub fn call_errors(&self, leg: LegId) -> Vec<String> {
        self.parts
            .get(&leg)
            .and_then(|p| p.options.as_ref())
            .map(|o| o.errors.clone())
            .unwrap_or_default()
    }

    /// Whether a new participant's media starts out of the mix (typing a PIN,
    /// waiting, refused, hearing its intro, saying its name).
    pub fn isolated(&self, leg: LegId) -> bool {
        self.parts
            .get(&leg)
            .is_none_or(|p| !p.joined() || p.intro_pending)
            || self.wants_name(leg)
    }

    fn timer(&self, t: RoomTimer) -> CoreTimer {
        CoreTimer::Room(self.name.clone(), t)
    }

    /// The stage a new call arrives in, or why it is refused: a locked room
    /// without PINs admits nobody (nobody can prove to moderate), a full room
    /// refuses or, with `full_announce`, tells the caller.
    pub fn arrival(
        &self,
        routed: Option<&CallOptions>,
    ) -> Result<Stage, crate::sip::status::Reject> {
        use crate::sip::status::Reject;
        let p = &self.policy;
        if self.locked && !p.has_pin() {
            return Err(Reject::Forbidden("room locked"));
        }
        let full = self.callers() >= p.max_participants;
        if full && !p.full_announce {
            return Err(Reject::BusyHere("room full"));
        }
        Ok(if full {
            Stage::Refused
        } else if p.has_pin() {
            Stage::Pin {
                entered: String::new(),
                tries: 0,
            }
        } else if let Some(o) = routed {
            if !o.start_on_enter && !self.has_moderator() {
                Stage::Waiting
            } else {
                Stage::Joined { moderator: false }
            }
        } else if p.moderated && !self.has_moderator() {
            Stage::Waiting
        } else {
            Stage::Joined { moderator: false }
        })
    }

    /// A participant comes in (not yet with media); the first starts the room.
    pub fn join(&mut self, ctx: &mut Ctx, leg: LegId, part: Participant) {
        self.members.push(leg);
        self.parts.insert(leg, part);
        if self.members.len() == 1 {
            self.started = Some(ctx.now);
            self.empty_since = None;
            ctx.timers.cancel(&self.timer(RoomTimer::Empty));
            ctx.event(Event::RoomStarted {
                room: self.name().to_string(),
            });
            if self.policy.record {
                self.record_from_start(ctx);
            }
        }
    }

    /// Participants that count against `max_participants` (a link to another
    /// room does not).
    pub fn callers(&self) -> usize {
        self.parts
            .values()
            .filter(|p| p.identity.kind != LegKind::Link)
            .count()
    }

    /// A participant's media is up: it goes into the mix, waits with music, is
    /// told the room is full, or is asked for its PIN.
    pub fn media_up(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        p.media_up = true;
        self.start_call_recording(ctx, leg);
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if p.intro_pending {
            // the NCCO's talk/stream/wait first, heard alone; then the stage
            let intro = p
                .options
                .as_ref()
                .map(|o| o.intro.clone())
                .unwrap_or_default();
            for sound in intro {
                ctx.media(MediaCommand::PlaySound { leg, sound });
            }
            return;
        }
        self.proceed(ctx, leg);
    }

    /// A participant whose media is up (and whose intro has played) goes on by
    /// its stage.
    fn proceed(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        // an NCCO that goes on after its intro with input, or ends there
        if let Some(o) = &p.options {
            if o.hangup_after_intro {
                ctx.hangups.push((leg, LeftReason::Hangup));
                return;
            }
            if let Some(input) = o.input {
                p.collecting = Some(String::new());
                let at = ctx.now + input.timeout;
                ctx.timers.set(self.timer(RoomTimer::Input(leg)), at);
                return;
            }
        }
        let Some(p) = self.parts.get(&leg) else {
            return;
        };
        match p.stage {
            Stage::Refused => self.play_then_hang_up(
                ctx,
                leg,
                vec![Prompt::Full, Prompt::Goodbye],
                LeftReason::Refused,
            ),
            Stage::Waiting => self.start_waiting(ctx, leg),
            Stage::Joined { .. } if self.wants_name(leg) => self.ask_name(ctx, leg),
            Stage::Joined { .. } => {
                if p.options.as_ref().is_some_and(|o| !o.intro.is_empty()) {
                    // opened out of the mix for its intro: in now
                    ctx.media(MediaCommand::Join { leg });
                }
                self.on_joined(ctx, leg);
            }
            Stage::Pin { .. } => {
                self.play(ctx, leg, vec![Prompt::EnterPin]);
                // the prompt itself takes about 5 s
                let at = ctx.now + self.policy.pin_timeout + Duration::from_secs(5);
                ctx.timers.set(self.timer(RoomTimer::Pin(leg)), at);
            }
            Stage::Dialing { .. } => {}
        }
    }

    /// A participant goes to another room: it leaves this one as a caller who
    /// hangs up would (moderator gone, endOnExit, last one out), its timers
    /// here cancelled; its identity goes with it.
    pub fn move_out(&mut self, ctx: &mut Ctx, leg: LegId) -> Option<Identity> {
        let identity = self.parts.get(&leg)?.identity.clone();
        for t in [
            RoomTimer::Pin(leg),
            RoomTimer::Wait(leg),
            RoomTimer::Hangup(leg),
            RoomTimer::Input(leg),
            RoomTimer::RecordEnd(leg),
            RoomTimer::RecordSilence(leg),
            RoomTimer::MutedTalk(leg),
        ] {
            ctx.timers.cancel(&self.timer(t));
        }
        self.left(ctx, leg);
        Some(identity)
    }

    /// A participant comes in from another room, its media already up: it
    /// goes on by the stage this room's rules gave it.
    pub fn move_in(&mut self, ctx: &mut Ctx, leg: LegId, part: Participant) {
        self.join(ctx, leg, part);
        self.media_up(ctx, leg);
    }

    /// Whether a participant's media is up (it can be moved).
    pub fn media_is_up(&self, leg: LegId) -> bool {
        self.parts.get(&leg).is_some_and(|p| p.media_up)
    }

    /// A participant left (its call ended, whatever ended it).
    pub fn left(&mut self, ctx: &mut Ctx, leg: LegId) {
        self.set_hand(ctx, leg, false);
        self.playbacks.retain(|_, to| *to != Some(leg));
        let Some(p) = self.parts.remove(&leg) else {
            return;
        };
        self.members.retain(|l| *l != leg);
        if self.members.is_empty() {
            self.locked = false;
            self.closed(ctx);
        }
        if p.joined() && self.policy.announce_join_leave && p.identity.kind != LegKind::Link {
            for o in self.joined() {
                self.play(ctx, o, vec![Prompt::LeaveTone]);
            }
        }
        if let (true, names::Name::Said(Some(said))) = (p.joined(), &p.name) {
            self.announce_name(ctx, leg, said.clone(), false);
        }
        if p.stage == (Stage::Joined { moderator: true }) {
            self.moderator_gone(ctx);
        }
        // endOnExit: a caller who was in, or a call placed for the room that
        // never connected (an NCCO connect that failed)
        let placed = matches!(p.stage, Stage::Dialing { .. });
        if (p.joined() || placed)
            && p.options.as_ref().is_some_and(|o| o.end_on_exit)
            && !self.members.is_empty()
        {
            self.end(ctx, "endOnExit caller left");
        }
    }

    /// The last participant left.
    fn closed(&mut self, ctx: &mut Ctx) {
        self.started = None;
        let running: Vec<String> = self
            .recordings
            .iter()
            .filter(|(_, leg)| leg.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in running {
            self.stop_recording_id(ctx, &id);
        }
        ctx.event(Event::RoomClosed {
            room: self.name().to_string(),
        });
        if self.dynamic {
            self.start_empty_clock(ctx);
        }
    }

    /// Whether a room created through the API has been empty for its
    /// empty_timeout (its timer fired): then it is to be removed.
    pub fn expired(&self, now: Instant) -> bool {
        self.dynamic
            && self.members.is_empty()
            && self
                .empty_since
                .is_some_and(|since| since + self.policy.empty_timeout <= now)
    }

    /// One of the room's timers fired.
    pub fn on_timer(&mut self, ctx: &mut Ctx, t: RoomTimer) {
        match t {
            RoomTimer::Pin(leg) => {
                if self
                    .parts
                    .get(&leg)
                    .is_some_and(|p| matches!(p.stage, Stage::Pin { .. }))
                {
                    self.judge_pin(ctx, leg);
                }
            }
            RoomTimer::Wait(leg) => {
                if self
                    .parts
                    .get(&leg)
                    .is_some_and(|p| p.stage == Stage::Waiting)
                {
                    tracing::info!(%leg, room = %self.name, "waited too long for the moderator");
                    self.play_then_hang_up(
                        ctx,
                        leg,
                        vec![Prompt::NoModerator, Prompt::Goodbye],
                        LeftReason::Timeout,
                    );
                }
            }
            RoomTimer::End => {
                if !self.has_moderator() {
                    self.end(ctx, "moderator left");
                }
            }
            // the media side never reported the end of the prompts: hang up anyway
            RoomTimer::Hangup(leg) => self.prompt_done(ctx, leg),
            RoomTimer::Input(leg) => self.input_done(ctx, leg, true),
            RoomTimer::RecordEnd(leg) | RoomTimer::RecordSilence(leg) => {
                self.end_call_recording(ctx, leg)
            }
            RoomTimer::MutedTalk(leg) => self.tell_muted(ctx, leg),
            // the core removes the room when `expired` says so
            RoomTimer::Empty => {}
        }
    }

    /// The media side finished a participant's queued prompts.
    pub fn prompt_done(&mut self, ctx: &mut Ctx, leg: LegId) {
        let done: Vec<u64> = self
            .playbacks
            .iter()
            .filter(|(_, to)| **to == Some(leg))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.playback_over(ctx, id, false);
        }
        if let Some(why) = self.parts.get(&leg).and_then(|p| p.hangup_after_prompt) {
            ctx.hangups.push((leg, why));
            return;
        }
        if self.name_prompt_done(ctx, leg) {
            return;
        }
        if let Some(p) = self.parts.get_mut(&leg)
            && p.intro_pending
            && p.media_up
        {
            p.intro_pending = false;
            self.proceed(ctx, leg);
        }
    }

    /// End every call in the room, e.g. when its last moderator has left; with
    /// `announce_end`, after "the conference has ended".
    pub fn end(&mut self, ctx: &mut Ctx, why: &'static str) {
        tracing::info!(room = %self.name, legs = self.members.len(), reason = why, "ending the conference");
        let announce = self.policy.announce_end;
        for leg in self.members.clone() {
            let speak = announce
                && self.parts.get(&leg).is_some_and(|p| {
                    p.media_up && matches!(p.stage, Stage::Joined { .. } | Stage::Waiting)
                });
            if speak {
                self.play_then_hang_up(ctx, leg, vec![Prompt::Ended], LeftReason::Ended);
            } else {
                ctx.hangups.push((leg, LeftReason::Ended));
            }
        }
    }

    /// Shutdown: everyone in the mix or waiting hears "the conference has ended".
    pub fn announce_shutdown(&mut self, ctx: &mut Ctx) {
        for leg in self.members.clone() {
            let hears = self.parts.get(&leg).is_some_and(|p| {
                p.media_up && matches!(p.stage, Stage::Joined { .. } | Stage::Waiting)
            });
            if hears {
                ctx.media(MediaCommand::Interrupt { leg });
                self.play(ctx, leg, vec![Prompt::Ended]);
            }
        }
    }

    /// A moderator left (or lost the role): end the room, after its grace, when
    /// that was the last one and the room says so.
    fn moderator_gone(&mut self, ctx: &mut Ctx) {
        if self.has_moderator() || !self.policy.end_on_moderator_exit {
            return;
        }
        if self.policy.end_grace.is_zero() {
            self.end(ctx, "moderator left");
        } else {
            let at = ctx.now + self.policy.end_grace;
            ctx.timers.set(self.timer(RoomTimer::End), at);
        }
    }

    /// Whether a moderator is in now. (A caller whose NCCO says startOnEnter
    /// counts as one: Vonage's "this caller starts the conversation".)
    pub(crate) fn has_moderator(&self) -> bool {
        self.parts.values().any(Participant::starts_room)
    }

    /// Participants in the mix, in order of arrival.
    fn joined(&self) -> Vec<LegId> {
        self.members
            .iter()
            .copied()
            .filter(|l| self.parts.get(l).is_some_and(Participant::joined))
            .collect()
    }

    fn play(&self, ctx: &mut Ctx, leg: LegId, prompts: Vec<Prompt>) {
        ctx.media(MediaCommand::Play { leg, prompts });
    }

    /// Play `prompts` to a participant, then end its call when the media side
    /// reports them played, or after [`HANGUP_AFTER_PROMPT`] if it never does.
    fn play_then_hang_up(
        &mut self,
        ctx: &mut Ctx,
        leg: LegId,
        prompts: Vec<Prompt>,
        why: LeftReason,
    ) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        p.hangup_after_prompt = Some(why);
        self.play(ctx, leg, prompts);
        let at = ctx.now + HANGUP_AFTER_PROMPT;
        ctx.timers.set(self.timer(RoomTimer::Hangup(leg)), at);
    }
}

#[cfg(test)]
mod tests;
