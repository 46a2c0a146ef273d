//! Routing by answer webhook (Vonage's answer_url): an INVITE is parked (100
//! Trying already sent) while the driver asks the webhook, then admitted with the
//! room and per-call options the NCCO's `conversation` action gave, or by the
//! Request-URI (fallback), or refused with 503. The HTTP side lives in the driver;
//! here is only what the answer means for the call.

use std::time::{Duration, Instant};

use super::control::ControlError;
use super::{Core, LegId, Output, Peer, RoomPolicy};
use crate::core::transaction::TxnKey;
use crate::media::prompt::Sound;
use crate::sip::Message;

/// Parked INVITEs at most; more get 503 until answers come back.
pub(super) const MAX_PARKED: usize = 1024;

/// Per-call options from a `conversation` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOptions {
    /// the room starts when this caller joins (false: wait, with music, for one
    /// who does)
    pub start_on_enter: bool,
    /// the room ends when this caller leaves
    pub end_on_exit: bool,
    /// what this caller hears while waiting (None: the room's music)
    pub music: Option<Sound>,
    /// record the room
    pub record: bool,
    /// who hears this caller (canSpeak): None everyone, an empty list nobody
    /// (listen-only), else those legs
    pub heard_by: Option<Vec<LegId>>,
    /// whom this caller hears (canHear): None everyone, an empty list nobody
    /// (deaf), else those legs
    pub hears: Option<Vec<LegId>>,
    /// joins muted
    pub mute: bool,
    /// event webhook for a room this call creates
    pub event_url: Option<String>,
    /// what the NCCO's actions before its `conversation` play to the caller,
    /// in order, before it enters (`talk` speech, `stream` files, `wait` silence)
    pub intro: Vec<Sound>,
    /// a key during the intro stops it, and counts for an `input` after it
    /// (a `talk` or `stream` with `bargeIn`)
    pub barge_in: bool,
    /// actions that could not be carried out (reported as `error` events)
    pub errors: Vec<String>,
    /// after the intro, collect digits (an NCCO `input` action)
    pub input: Option<InputSpec>,
    /// after the intro, hang up (the NCCO ends there)
    pub hangup_after_intro: bool,
    /// bring this endpoint into the caller's room (an NCCO `connect`)
    pub connect: Option<ConnectSpec>,
    /// record this caller's own audio from when its media is up (an NCCO
    /// `record` action)
    pub record_call: Option<RecordCall>,
}

/// What an NCCO `record` action asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordCall {
    /// where its record event goes (else the room's event URL)
    pub event_url: Option<String>,
    /// this key ends it (`endOnKey`)
    pub end_on_key: Option<char>,
    /// it ends after this long at most (`timeOut`)
    pub timeout: Duration,
    /// it ends after this long without talking (`endOnSilence`, 3-10 s)
    pub end_on_silence: Option<Duration>,
    /// a beep when it starts (`beepStart`)
    pub beep: bool,
    /// format, and with `split`: what it says and what it hears apart
    pub spec: crate::media::contract::RecordSpec,
}

/// What an NCCO `connect` brings into the caller's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectSpec {
    /// a SIP endpoint, dialled
    Sip(SipTarget),
    /// a WebSocket server, given the call's audio and heard by it
    WebSocket(SocketTarget),
}

/// A SIP endpoint a `connect` dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// the SIP URI
    pub to: String,
    /// ring this long, then give up (`timeout`)
    pub ring_timeout: Duration,
    /// the user part of our From (`from`)
    pub caller_id: Option<String>,
    /// the call's length at most once answered (`limit`)
    pub limit: Option<Duration>,
    /// `eventType: synchronous`: when the call does not connect, its event
    /// goes to this `eventUrl`, and an NCCO that comes back takes the caller on
    /// (instead of the caller's call ending)
    pub sync_event_url: Option<String>,
}

/// A WebSocket server a `connect` streams the call to (Vonage's websocket
/// endpoint: 16-bit linear PCM frames of 20 ms both ways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketTarget {
    /// ws:// or wss:// URI
    pub uri: String,
    /// 8000 or 16000 (from `content-type: audio/l16;rate=…`)
    pub rate: u32,
    /// `headers`, a JSON object, sent in the first text frame
    pub headers: String,
}

/// What an NCCO `input` action of type dtmf collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// digits at most (1-20): the input ends when this many are in
    pub max_digits: usize,
    /// the input ends this long after the last key (or its start)
    pub timeout: Duration,
    /// `#` ends the input (and is not one of the digits)
    pub submit_on_hash: bool,
}

/// The outcome of an `input`: what was typed, and whether it ended by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputResult {
    /// the leg (the call's uuid)
    pub leg: LegId,
    /// the digits typed
    pub digits: String,
    /// ended by its timeout rather than by max digits or `#`
    pub timed_out: bool,
}

/// How an NCCO goes on after an `input` (from what its eventUrl returned).
#[derive(Debug, Clone, PartialEq)]
pub enum Continuation {
    /// into this conversation, with these options (intro, another input, …)
    Room(String, Box<CallOptions>),
    /// the NCCO ends: hang up
    Hangup,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            start_on_enter: true,
            end_on_exit: false,
            music: None,
            record: false,
            heard_by: None,
            hears: None,
            mute: false,
            event_url: None,
            intro: Vec::new(),
            barge_in: false,
            errors: Vec::new(),
            input: None,
            hangup_after_intro: false,
            connect: None,
            record_call: None,
        }
    }
}

/// What the answer webhook decided for a parked INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// into this room (created if it does not exist), with these options
    Room(String, Box<CallOptions>),
    /// the webhook failed: route by the Request-URI
    Fallback,
    /// the webhook failed and `answer_fallback = "reject"`: 503
    Reject,
}

/// An INVITE waiting for its route.
#[derive(Debug, Clone)]
pub(super) struct Parked {
    pub(super) from: Peer,
    pub(super) key: TxnKey,
    pub(super) msg: Message,
}

/// A synchronous `connect` that did not connect: its event goes to `url`,
/// whose NCCO takes `caller` on (the call ends without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailed {
    /// the caller whose NCCO connected
    pub caller: LegId,
    /// the connect's eventUrl
    pub url: String,
    /// the target dialled
    pub to: String,
    /// failed, unanswered (Vonage's status)
    pub status: &'static str,
}

/// What the driver must ask the answer webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    /// hand back with the decision; the leg's id (the call's `uuid`) once
    /// it is admitted
    pub token: u64,
    /// From URI
    pub from: String,
    /// To URI
    pub to: String,
    /// Call-ID
    pub call_id: String,
    /// the INVITE's `X-` headers, name and value, in order
    pub x_headers: Vec<(String, String)>,
}

impl Core {
    /// Park an INVITE until the webhook answers.
    pub(super) fn park(&mut self, from: Peer, key: TxnKey, msg: Message) {
        let token = self.next_leg;
        self.next_leg += 1;
        let h = crate::sip::headers::RequestHeaders::check(&msg);
        let (from_uri, to_uri, call_id) = match &h {
            Ok(h) => (h.from.uri.clone(), h.to.uri.clone(), h.call_id.clone()),
            Err(_) => return,
        };
        let x_headers = msg
            .headers
            .iter()
            .filter(|(n, _)| n.len() > 2 && n.as_bytes()[..2].eq_ignore_ascii_case(b"x-"))
            .cloned()
            .collect();
        self.parked.insert(token, Parked { from, key, msg });
        self.out.push_back(Output::Route(RouteRequest {
            token,
            from: from_uri,
            to: to_uri,
            call_id,
            x_headers,
        }));
    }

    /// The webhook's answer for a parked INVITE.
    pub fn route_decided(&mut self, now: Instant, token: u64, decision: RouteDecision) {
        let Some(p) = self.parked.remove(&token) else {
            return; // cancelled meanwhile
        };
        if let RouteDecision::Room(name, opts) = &decision
            && let Err(e) = self.conversation(now, name, opts.event_url.clone())
        {
            tracing::warn!(room = %name, error = %e, "cannot create the NCCO's room");
        }
        self.decided.insert(p.key.clone(), (token, decision));
        self.handle_parked(now, p);
    }

    /// An NCCO's conversation: the room of that name, created (open, as Vonage
    /// creates conversations) when the bridge has not seen it.
    pub fn conversation(
        &mut self,
        now: Instant,
        name: &str,
        event_url: Option<String>,
    ) -> Result<(), ControlError> {
        if self.rooms.contains_key(name) {
            return Ok(());
        }
        let mut policy = RoomPolicy::open(100, std::time::Duration::ZERO);
        policy.event_url = event_url;
        self.create_room(now, name, policy).map(drop)
    }

    /// Go on with a call after its NCCO's `input`: another room (or the same
    /// one again, with the next actions), or the end of the call.
    pub fn ncco_continue(&mut self, now: Instant, leg: LegId, next: Continuation) {
        let Ok(here) = self.room_of_leg(leg) else {
            return; // it hung up meanwhile
        };
        match next {
            Continuation::Hangup => self.end_leg(now, leg, true, super::LeftReason::Hangup),
            Continuation::Room(room, options) if room == here => {
                self.with_room(now, &room, |r, ctx| r.rerun(ctx, leg, *options));
                self.connect(now, leg, &room);
            }
            Continuation::Room(room, options) => {
                let moved = self
                    .conversation(now, &room, options.event_url.clone())
                    .and_then(|()| self.move_leg(now, leg, &room, None, Some(*options)));
                match moved {
                    Ok(()) => self.connect(now, leg, &room),
                    Err(e) => {
                        tracing::warn!(%leg, %room, error = %e, "the NCCO's conversation cannot take the call: hung up");
                        self.end_leg(now, leg, true, super::LeftReason::Refused);
                    }
                }
            }
        }
    }

    /// A CANCEL for an INVITE that is still parked: drop it and hand it back.
    pub(super) fn unpark(&mut self, key: &TxnKey) -> Option<Message> {
        let token = self
            .parked
            .iter()
            .find(|(_, p)| p.key == *key)
            .map(|(t, _)| *t)?;
        self.parked.remove(&token).map(|p| p.msg)
    }
}
