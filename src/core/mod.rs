//! The sans-IO signalling core: SIP requests in, responses, requests, media commands
//! and events out. It owns transactions (RFC 3261 §17), dialogs (§12), each leg's
//! INVITE session and offer/answer state (§13, §14, RFC 3264, RFC 3311), and room
//! membership. It never reads a clock, touches a socket or draws global randomness:
//! `now` is an argument, the RNG is seeded by the caller, and everything to do is
//! queued as [`Output`] for a driver to carry out. That is what lets the tests fire
//! Timer H at 32 s without waiting 32 s.

pub mod control;
pub mod dialout;
pub mod flood;
pub mod pin;
pub mod ports;
pub mod room;
pub mod routing;
pub mod session_timer;
pub mod tally;
pub mod timers;
pub mod transaction;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::media::contract::{MediaCommand, MediaParams, TransportSpec};
use crate::sdp::{self, AudioParams, Direction, LocalSdp, SessionDescription};
use crate::sip::headers::{self, NameAddr, RequestHeaders, SipUri, UriError, Via};
use crate::sip::message::{self, Message, Method, StartLine};
use crate::util::LogSafe;

use ports::PortPool;
use timers::{ClientTimer, CoreTimer, LegTimer, RoomTimer, TimerTable, TxnTimer};
use transaction::{ClientTxn, ServerState, ServerTxn, TimerConfig, TxnKey};

pub use crate::sip::status::ALLOW;
use crate::sip::status::{Reject, reason};

pub use crate::ids::{LegId, RoomId};

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// the shared UDP socket
    Udp,
    /// one TCP connection, by the driver's id
    Tcp(u64),
}

/// The other end of a flow: transport, its address, and ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// transport
    pub transport: Transport,
    /// the peer's address
    pub addr: SocketAddr,
    /// our address on this flow: where the peer's message arrived (on a wildcard
    /// listener, the destination address it carried), which Via, Contact and SDP
    /// name unless an advertised address is configured
    pub local: SocketAddr,
}

impl Peer {
    fn reliable(&self) -> bool {
        matches!(self.transport, Transport::Tcp(_))
    }
}

pub use crate::util::cidr::{Cidr, glob_match};
use room::{Ctx, Identity, Participant, Room, Stage};
pub use room::{DECOY_ROOM, MenuKeys, RoomPolicy};

/// A port another program holds rests this long before it is tried again.
const PORT_COOL_OFF: Duration = Duration::from_secs(60);

/// Core configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// host (an IPv6 address in brackets) and port written in Via and Contact
    /// instead of the flow's local address (`[sip] advertise`: a public address
    /// behind NAT); no port: the flow's local port
    pub sip_advertise: Option<(String, Option<u16>)>,
    /// address RTP binds to (`[rtp] address`); None: the call's local address
    pub rtp_address: Option<IpAddr>,
    /// address written in SDP (`[rtp] advertise`); None: the bound address, or
    /// the call's local address when RTP binds a wildcard
    pub rtp_advertise: Option<IpAddr>,
    /// RTP range
    pub rtp_ports: (u16, u16),
    /// rooms by name
    pub rooms: HashMap<String, RoomPolicy>,
    /// T1/T2/T4
    pub timers: TimerConfig,
    /// Server/User-Agent header value
    pub user_agent: String,
    /// in-call menu keys
    pub menu: MenuKeys,
    /// where recordings go (None: recording is off)
    pub recording_dir: Option<std::path::PathBuf>,
    /// dial-out guards and credentials
    pub dialout: dialout::DialPolicy,
    /// ask the answer webhook (the driver's) where each INVITE goes
    pub answer_webhook: bool,
    /// unknown rooms are answered like PIN rooms (no 404 to learn from)
    pub hide_rooms: bool,
    /// flood control (`[security]`)
    pub flood: flood::FloodLimits,
    /// a ban ends the banned source's admitted calls too (by default they go on)
    pub ban_ends_calls: bool,
}

impl CoreConfig {
    /// `host:port` naming us on a flow: the advertised address, else the flow's
    /// local one.
    fn sent_by(&self, flow: Peer) -> String {
        match &self.sip_advertise {
            Some((host, port)) => format!("{host}:{}", port.unwrap_or(flow.local.port())),
            None => flow.local.to_string(),
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// send bytes on a flow
    Transmit {
        /// destination
        to: Peer,
        /// a whole SIP message
        data: Vec<u8>,
    },
    /// a media change
    Media(MediaCommand),
    /// something worth logging or reporting
    Event(Event),
    /// ask the answer webhook where this INVITE goes; answer with
    /// [`Core::route_decided`]
    Route(routing::RouteRequest),
}

/// State changes for logs, metrics and webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// a room's first call arrived
    RoomStarted {
        /// room
        room: String,
    },
    /// a leg is answered and in the room (possibly still typing its PIN)
    Joined {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// Call-ID
        call_id: String,
        /// the caller's From URI
        from: String,
    },
    /// a leg left
    Left {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// Call-ID
        call_id: String,
        /// why
        reason: LeftReason,
    },
    /// the room's last leg left and its state was dropped
    RoomClosed {
        /// room
        room: String,
    },
    /// a leg was muted or unmuted (menu, moderator, API)
    Muted {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// muted now
        muted: bool,
    },
    /// talker detection on a leg changed
    Talking {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// talking now
        talking: bool,
    },
    /// a recording's file is complete (or ended by an error)
    Recording(RecordingReport),
    /// an outbound call progressed
    Dial {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// target URI
        to: String,
        /// ringing, answered, failed, unanswered, cancelled
        status: dialout::DialStatus,
        /// status line or why, when it did not connect
        reason: Option<String>,
    },
}

/// A finished recording, as reported to the event webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingReport {
    /// recording id (its URL is /v1/recordings/ID)
    pub id: String,
    /// room
    pub room: String,
    /// whose audio: the room mix (None) or one leg's
    pub leg: Option<LegId>,
    /// audio length
    pub duration_ms: u64,
    /// file size
    pub bytes: u64,
    /// why it stopped early, if it did
    pub error: Option<String>,
    /// cut by a crash of the bridge and closed at its next start
    pub recovered: bool,
}

/// Why a leg left its room (the webhook's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// the caller hung up (BYE) or cancelled
    Hangup,
    /// kicked through the API
    Kicked,
    /// the room ended (moderator left or ended it, API, shutdown)
    Ended,
    /// no ACK, waited too long for the moderator
    Timeout,
    /// wrong PIN too often
    PinFailed,
    /// the room was full or locked
    Refused,
    /// media could not be set up, or a bad SDP answer
    Error,
}

impl LeftReason {
    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftReason::Hangup => "hangup",
            LeftReason::Kicked => "kicked",
            LeftReason::Ended => "ended",
            LeftReason::Timeout => "timeout",
            LeftReason::PinFailed => "pin_failed",
            LeftReason::Refused => "refused",
            LeftReason::Error => "error",
        }
    }
}

/// What a leg is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LegState {
    /// INVITE received, not answered yet
    Ringing,
    /// 2xx sent, waiting for its ACK
    WaitAck,
    /// established
    Confirmed,
    /// our INVITE is out (dial-out), no 2xx yet
    Calling,
}

#[derive(Debug, Clone)]
struct Leg {
    room: String,
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// From of the INVITE (the peer's identity), with tag
    remote_uri: String,
    /// To of the INVITE (our identity), without tag
    local_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    peer: Peer,
    state: LegState,
    /// server transaction of the INVITE being answered (initial or re-INVITE)
    invite_txn: Option<TxnKey>,
    /// 2xx awaiting ACK: (bytes, CSeq, retransmit interval)
    ok: Option<(Vec<u8>, u32, Duration)>,
    /// we sent the offer in a 2xx and wait for the answer in ACK
    offer_in_ok: bool,
    port: u16,
    /// where the leg's RTP is bound, and the address SDP gives for it
    media_addr: (IpAddr, IpAddr),
    /// its RTP port is bound (the answer or offer may announce it)
    bound: bool,
    /// ports tried for it that could not be bound
    bind_failures: u16,
    sdp_version: u64,
    session_id: u64,
    /// negotiated media and where it goes
    media: Option<(MediaParams, TransportSpec)>,
    ssrc: u32,
    media_open: bool,
    /// the INVITE being answered and its offer, kept until the 2xx is built
    pending: Option<Box<PendingInvite>>,
    /// the INVITE client transaction of an outbound leg
    dial: Option<Box<dialout::Dial>>,
    /// session timer the INVITE/UPDATE being answered asked for (RFC 4028)
    session: Option<session_timer::SessionTimer>,
    /// our refreshes go at this interval, s (we are the refresher)
    refresh_every: u32,
}

/// The configured rooms by id. The configuration's checks have refused any
/// name that is not a room name; one that got through anyway is left out.
fn configured_rooms(
    rooms: HashMap<String, RoomPolicy>,
) -> impl Iterator<Item = (RoomId, RoomPolicy)> {
    rooms
        .into_iter()
        .filter_map(|(name, policy)| match RoomId::parse(&name) {
            Some(id) => Some((id, policy)),
            None => {
                tracing::error!(room = %LogSafe(&name), "not a room name: room left out");
                None
            }
        })
}

/// An offer: the description, the index of the audio m-line we take, its parameters.
type Offer = (SessionDescription, usize, AudioParams);

#[derive(Debug, Clone)]
struct PendingInvite {
    req: Message,
    offer: Option<Offer>,
}

pub use crate::util::rng::Rng;

/// The core.
pub struct Core {
    cfg: CoreConfig,
    rng: Rng,
    ports: PortPool,
    server: HashMap<TxnKey, ServerTxn>,
    client: HashMap<String, ClientTxn>,
    legs: HashMap<LegId, Leg>,
    dialogs: HashMap<(String, String), LegId>,
    /// every room defined (configuration, API) or still running, by name
    rooms: BTreeMap<RoomId, Room>,
    timers: TimerTable<CoreTimer>,
    next_leg: u64,
    out: VecDeque<Output>,
    draining: bool,
    /// branch of each outbound INVITE
    dial_branches: HashMap<String, LegId>,
    /// INVITEs waiting for the answer webhook, by token
    parked: HashMap<u64, routing::Parked>,
    /// the media side is late: new calls get 503
    overloaded: bool,
    /// the webhook's decisions, taken by the INVITE when it is handled again
    decided: HashMap<TxnKey, routing::RouteDecision>,
    /// flood control: what each source starts, its failures and bans
    flood: flood::FloodGuard,
    /// legs held per signalling source address (a banned source with calls is
    /// still read, for its in-dialog requests)
    legs_from: HashMap<IpAddr, u32>,
}

impl Core {
    /// A core with this configuration and RNG seed.
    pub fn new(mut cfg: CoreConfig, seed: u64) -> Core {
        let rooms = configured_rooms(std::mem::take(&mut cfg.rooms))
            .map(|(id, policy)| (id.clone(), Room::new(id, policy, false)))
            .collect();
        let ports = PortPool::new(cfg.rtp_ports.0, cfg.rtp_ports.1);
        let flood = flood::FloodGuard::new(cfg.flood.clone());
        Core {
            flood,
            legs_from: HashMap::new(),
            cfg,
            rng: Rng::new(seed),
            ports,
            server: HashMap::new(),
            client: HashMap::new(),
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            rooms,
            timers: TimerTable::default(),
            next_leg: 1,
            out: VecDeque::new(),
            draining: false,
            dial_branches: HashMap::new(),
            parked: HashMap::new(),
            overloaded: false,
            decided: HashMap::new(),
        }
    }

    /// A configuration reload: what of the core's configuration can change
    /// under running calls (rooms, flood control, the menu, dial-out). New calls
    /// see it; calls in progress keep going.
    pub fn reconfigure(&mut self, new: CoreConfig) {
        self.set_rooms(new.rooms);
        self.flood.set_limits(new.flood);
        self.cfg.ban_ends_calls = new.ban_ends_calls;
        self.cfg.hide_rooms = new.hide_rooms;
        self.cfg.menu = new.menu;
        self.cfg.dialout = new.dialout;
    }

    /// Replace the room table: new calls see it; calls in progress keep going,
    /// in a room the file no longer names until it empties. A room created
    /// through the API outlives a reload unless the file now defines its name.
    fn set_rooms(&mut self, mut rooms: HashMap<String, RoomPolicy>) {
        for (name, room) in &mut self.rooms {
            match rooms.remove(name.as_str()) {
                Some(policy) => room.set_policy(policy),
                None if room.is_dynamic() => {}
                None => room.undefine(),
            }
        }
        self.rooms.retain(|_, r| !r.is_disposable());
        for (id, policy) in configured_rooms(rooms) {
            self.rooms.insert(id.clone(), Room::new(id, policy, false));
        }
    }

    /// Run `f` on a room with the core's context, then carry out what it left
    /// for the core: PIN attempts counted by flood control, calls to end; a room
    /// nothing keeps any more goes. None: no such room.
    fn with_room<R>(
        &mut self,
        now: Instant,
        name: &str,
        f: impl FnOnce(&mut Room, &mut Ctx) -> R,
    ) -> Option<R> {
        let room = self.rooms.get_mut(name)?;
        let mut hangups = Vec::new();
        let mut attempts = Vec::new();
        let mut ctx = Ctx {
            now,
            out: &mut self.out,
            timers: &mut self.timers,
            menu: &self.cfg.menu,
            recording_dir: self.cfg.recording_dir.as_deref(),
            rng: &mut self.rng,
            hangups: &mut hangups,
            attempts: &mut attempts,
        };
        let r = f(room, &mut ctx);
        for (src, right) in attempts {
            if right {
                self.flood.succeed(src, now);
            } else {
                self.failure(now, src);
            }
        }
        for (leg, why) in hangups {
            self.end_leg(now, leg, true, why);
        }
        if self.rooms.get(name).is_some_and(Room::is_disposable) {
            self.rooms.remove(name);
        }
        Some(r)
    }

    /// [`Core::with_room`] on the room a leg is in.
    fn with_leg_room<R>(
        &mut self,
        now: Instant,
        id: LegId,
        f: impl FnOnce(&mut Room, &mut Ctx) -> R,
    ) -> Option<R> {
        let name = self.legs.get(&id)?.room.clone();
        self.with_room(now, &name, f)
    }
    /// Next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Core::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Legs currently held.
    pub fn leg_count(&self) -> usize {
        self.legs.len()
    }

    /// Rooms with at least one leg.
    pub fn active_rooms(&self) -> Vec<String> {
        self.rooms
            .values()
            .filter(|r| !r.is_empty())
            .map(|r| r.name().to_string())
            .collect()
    }

    /// RTP port pairs in use.
    pub fn ports_in_use(&self) -> usize {
        self.ports.in_use()
    }

    /// RTP port pairs resting after another program held them.
    pub fn ports_retired(&self, now: Instant) -> usize {
        self.ports.retired(now)
    }

    /// True when no transaction or leg remains (drain finished).
    pub fn is_idle(&self) -> bool {
        self.legs.is_empty() && self.client.values().all(|c| c.completed)
    }

    fn send(&mut self, to: Peer, msg: &Message) {
        self.out.push_back(Output::Transmit {
            to,
            data: msg.to_bytes(),
        });
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            self.fire(now, t);
        }
    }

    fn fire(&mut self, now: Instant, t: CoreTimer) {
        let tc = self.cfg.timers;
        match t {
            CoreTimer::Leg(id, LegTimer::G) => {
                let Some(leg) = self.legs.get_mut(&id) else {
                    return;
                };
                let Some((bytes, _, interval)) = &mut leg.ok else {
                    return;
                };
                *interval = tc.backoff(*interval);
                let next = *interval;
                let data = bytes.clone();
                let peer = leg.peer;
                self.out.push_back(Output::Transmit { to: peer, data });
                self.timers.set(CoreTimer::Leg(id, LegTimer::G), now + next);
            }
            CoreTimer::Leg(id, LegTimer::H) => {
                if self.legs.get(&id).is_some_and(|l| l.ok.is_some()) {
                    tracing::warn!(leg = %id, "no ACK for 2xx within 64*T1: ending the call");
                    self.end_leg(now, id, true, LeftReason::Timeout);
                }
            }
            CoreTimer::Txn(key, TxnTimer::G) => {
                let Some(tx) = self.server.get_mut(&key) else {
                    return;
                };
                if tx.state != ServerState::Completed {
                    return;
                }
                tx.interval = tc.backoff(tx.interval);
                let next = tx.interval;
                if let Some(data) = tx.last.clone() {
                    let to = tx.peer;
                    self.out.push_back(Output::Transmit { to, data });
                }
                self.timers
                    .set(CoreTimer::Txn(key, TxnTimer::G), now + next);
            }
            CoreTimer::Txn(key, TxnTimer::H) => {
                if self
                    .server
                    .get(&key)
                    .is_some_and(|t| t.state == ServerState::Completed)
                {
                    self.server.remove(&key);
                }
            }
            CoreTimer::Txn(key, TxnTimer::I | TxnTimer::J | TxnTimer::L) => {
                self.server.remove(&key);
            }
            CoreTimer::Client(branch, ClientTimer::E) => {
                let Some(c) = self.client.get_mut(&branch) else {
                    return;
                };
                if c.completed {
                    return;
                }
                c.interval = tc.backoff(c.interval);
                let next = c.interval;
                let (to, data) = (c.peer, c.request.clone());
                self.out.push_back(Output::Transmit { to, data });
                self.timers
                    .set(CoreTimer::Client(branch, ClientTimer::E), now + next);
            }
            CoreTimer::Client(branch, ClientTimer::F) => {
                if self.client.get(&branch).is_some_and(|c| !c.completed) {
                    tracing::info!(%branch, "BYE got no response within 64*T1");
                    self.client.remove(&branch);
                }
            }
            CoreTimer::Client(branch, ClientTimer::K) => {
                self.client.remove(&branch);
            }
            CoreTimer::Leg(id, LegTimer::Answer) => {
                if self
                    .legs
                    .get(&id)
                    .is_some_and(|l| l.state == LegState::Ringing)
                {
                    self.answer(now, id);
                }
            }
            CoreTimer::Room(room, RoomTimer::Empty) => {
                if self.rooms.get(&room).is_some_and(|r| r.expired(now)) {
                    tracing::info!(%room, "room created through the API removed: empty for its empty_timeout");
                    self.rooms.remove(&room);
                }
            }
            CoreTimer::Room(room, t) => {
                self.with_room(now, room.as_str(), |r, ctx| r.on_timer(ctx, t));
            }
            CoreTimer::Leg(id, LegTimer::A) => self.timer_a(now, id),
            CoreTimer::Leg(id, LegTimer::B) => self.timer_b(now, id),
            CoreTimer::Leg(id, LegTimer::Ring) => self.ring_timeout(now, id),
            CoreTimer::Leg(id, LegTimer::MaxDuration) => self.max_duration(now, id),
            CoreTimer::Drain => self.end_all(now),
            CoreTimer::Leg(id, LegTimer::SessionExpiry) => self.session_expired(now, id),
            CoreTimer::Leg(id, LegTimer::SessionRefresh) => self.session_refresh(now, id),
        }
    }

    /// A DTMF digit from a leg (RFC 4733, SIP INFO or in-band).
    pub fn dtmf(&mut self, now: Instant, id: LegId, digit: char) {
        self.with_leg_room(now, id, |r, ctx| r.dtmf(ctx, id, digit));
    }
    /// The media side finished a leg's queued prompts.
    pub fn prompt_done(&mut self, now: Instant, id: LegId) {
        self.with_leg_room(now, id, |r, ctx| r.prompt_done(ctx, id));
    }
    /// Bring a leg's media in line with what was negotiated: open it (out of the
    /// mix while its room says so) and tell the room, or update it.
    fn sync_media(&mut self, now: Instant, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let Some((params, transport)) = leg.media.clone() else {
            return;
        };
        if leg.media_open {
            self.out.push_back(Output::Media(MediaCommand::Update {
                leg: id,
                params,
                transport,
            }));
            return;
        }
        leg.media_open = true;
        let room = leg.room.clone();
        let isolated = self.rooms.get(room.as_str()).is_none_or(|r| r.isolated(id));
        self.out.push_back(Output::Media(MediaCommand::Open {
            leg: id,
            room: room.clone(),
            params,
            transport,
            isolated,
        }));
        self.with_room(now, &room, |r, ctx| r.media_up(ctx, id));
    }
    /// The media side heard no RTP from a leg for its timeout: the peer is gone
    /// (crashed, unplugged) without a BYE.
    pub fn rtp_timeout(&mut self, now: Instant, leg: LegId) {
        if self.legs.contains_key(&leg) {
            tracing::warn!(leg = %leg, "no RTP for the RTP timeout: ending the call");
            self.end_leg(now, leg, true, LeftReason::Timeout);
        }
    }

    /// The media side could not set up a leg (port taken by another process, codec
    /// failure): end it.
    pub fn media_failed(&mut self, now: Instant, leg: LegId) {
        if let Some(l) = self.legs.get(&leg) {
            // Whoever holds that port (another program, an ephemeral socket) may keep
            // it: take it out of the rotation rather than hand it to the next call.
            tracing::warn!(leg = %leg, port = l.port, "RTP port unusable: rests for a cool-off");
            self.ports.retire(l.port, now + PORT_COOL_OFF);
            self.end_leg(now, leg, true, LeftReason::Error);
        }
    }

    /// The driver judged the bridge overloaded (media ticks running late), or no
    /// longer: while it is, new INVITEs get 503 with Retry-After.
    pub fn set_overloaded(&mut self, on: bool) {
        if on != self.overloaded {
            if on {
                tracing::warn!("overloaded: media ticks run late; new calls get 503");
            } else {
                tracing::info!("no longer overloaded: new calls accepted");
            }
        }
        self.overloaded = on;
    }

    /// Whether the driver should hand this message from `ip` to the core at all: a
    /// banned source is dropped unread unless it still holds calls, whose
    /// in-dialog requests (a BYE above all) are served.
    ///
    /// A source banned or over its request ceiling would see its new requests
    /// dropped after parsing anyway: those found new by a glance at their bytes
    /// are dropped before, so that a flood costs no parsing.
    pub fn reads_from(&mut self, ip: IpAddr, now: Instant, data: &[u8]) -> bool {
        let banned = self.flood.is_banned(ip, now);
        let read = if banned && self.legs_from.get(&ip).is_none_or(|n| *n == 0) {
            false
        } else if banned || self.flood.is_over_limit(ip, now) {
            !message::glance_is_new_request(data)
        } else {
            true
        };
        if !read {
            self.flood.dropped += 1;
        }
        read
    }

    /// Flood-control figures: (bans issued, requests dropped, sources banned now).
    pub fn flood_stats(&self, now: Instant) -> (u64, u64, usize) {
        (self.flood.bans, self.flood.dropped, self.flood.banned(now))
    }

    fn insert_leg(&mut self, id: LegId, leg: Leg) {
        *self.legs_from.entry(leg.peer.addr.ip()).or_default() += 1;
        self.legs.insert(id, leg);
    }

    fn remove_leg(&mut self, id: LegId) -> Option<Leg> {
        let leg = self.legs.remove(&id)?;
        let ip = leg.peer.addr.ip();
        if let Some(n) = self.legs_from.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.legs_from.remove(&ip);
            }
        }
        Some(leg)
    }

    /// A failed attempt by `ip` (no such room, not allowed, wrong PIN, malformed):
    /// counted by flood control, which may ban the source for it.
    fn failure(&mut self, now: Instant, ip: IpAddr) {
        if self.flood.fail(ip, now) {
            self.ban(now, ip);
        }
    }

    /// A source was just banned for its failures. Its calls not admitted to a room
    /// (typing a PIN, unanswered or not ACKed yet, in a hidden unknown room) end
    /// now, so a scanner holds no ports or media; its admitted calls go on (unless
    /// `ban_ends_calls`), and its in-dialog requests are still served.
    fn ban(&mut self, now: Instant, ip: IpAddr) {
        let all = self.cfg.ban_ends_calls;
        let ids: Vec<LegId> = self
            .legs
            .iter()
            .filter(|(_, l)| l.peer.addr.ip() == ip && l.dial.is_none())
            .filter(|(id, l)| {
                all || l.state != LegState::Confirmed
                    || !self
                        .rooms
                        .get(l.room.as_str())
                        .is_some_and(|r| r.admitted(**id))
            })
            .map(|(id, _)| *id)
            .collect();
        tracing::warn!(source = %ip, ending = ids.len(), "flood: source banned for its failed attempts");
        for id in ids {
            self.end_leg(now, id, true, LeftReason::Refused);
        }
    }

    /// Whether a new call would be taken now: not draining, not overloaded.
    pub fn accepting_calls(&self) -> bool {
        !self.draining && !self.overloaded
    }

    /// Begin graceful shutdown: refuse new calls and BYE every leg.
    pub fn shutdown(&mut self, now: Instant) {
        self.drain(now, Duration::ZERO, false);
    }

    /// Graceful shutdown: new INVITEs get 503 from now on; every leg in a room hears
    /// "the conference has ended" (when `announce`) and gets its BYE after `grace`.
    pub fn drain(&mut self, now: Instant, grace: Duration, announce: bool) {
        self.draining = true;
        if grace.is_zero() {
            return self.end_all(now);
        }
        if announce {
            let names: Vec<RoomId> = self.rooms.keys().cloned().collect();
            for name in names {
                self.with_room(now, name.as_str(), Room::announce_shutdown);
            }
        }
        self.timers.set(CoreTimer::Drain, now + grace);
    }

    fn end_all(&mut self, now: Instant) {
        let ids: Vec<LegId> = self.legs.keys().copied().collect();
        for id in ids {
            self.end_leg(now, id, true, LeftReason::Ended);
        }
    }

    /// A datagram or TCP frame arrived.
    pub fn handle_message(&mut self, now: Instant, from: Peer, data: &[u8]) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                let ip = from.addr.ip();
                // a keep-alive (RFC 5626 §3.5.1 CRLFs) or a response is no attempt
                let attempt = !data.starts_with(b"SIP/") && !data.trim_ascii().is_empty();
                if attempt {
                    if self.flood.is_banned(ip, now) {
                        return;
                    }
                    self.failure(now, ip);
                }
                self.reject_unparsable(from, data, e.status());
                return;
            }
        };
        match &msg.start {
            StartLine::Request { .. } => self.on_request(now, from, msg),
            StartLine::Response { code, .. } => {
                let code = *code;
                self.on_response(now, from, code, &msg);
            }
        }
    }

    /// Answer a message we could not parse, if it is a request with enough headers
    /// for a response to be routed back (RFC 3261 §8.2: 400, or 505 for the version).
    fn reject_unparsable(&mut self, from: Peer, data: &[u8], status: u16) {
        let text = String::from_utf8_lossy(data);
        if text.starts_with("SIP/") || text.starts_with("ACK ") {
            return; // never answer a response or an ACK
        }
        let mut resp = Message {
            start: StartLine::Response {
                code: status,
                reason: reason(status).to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        // copy the headers a response needs, by name, from the raw lines
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        for line in head.split("\r\n").skip(1) {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let n = n.trim();
            let name = match n.to_ascii_lowercase().as_str() {
                "via" | "v" => "Via",
                "from" | "f" => "From",
                "to" | "t" => "To",
                "call-id" | "i" => "Call-ID",
                "cseq" => "CSeq",
                _ => continue,
            };
            resp.push(name, v.trim());
        }
        if resp.header("Via").is_none() {
            return;
        }
        resp.push("Server", self.cfg.user_agent.clone());
        self.send(from, &resp);
    }

    fn response(&self, req: &Message, from: Peer, code: u16, to_tag: Option<&str>) -> Message {
        let mut r = Message {
            start: StartLine::Response {
                code,
                reason: reason(code).to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut first = true;
        for v in req.all("Via") {
            for el in message::split_list(v) {
                if first {
                    r.push("Via", received_via(el, from.addr));
                    first = false;
                } else {
                    r.push("Via", el);
                }
            }
        }
        for name in ["From", "Call-ID", "CSeq"] {
            if let Some(v) = req.header(name) {
                r.push(name, v);
            }
        }
        if let Some(to) = req.header("To") {
            let has_tag = NameAddr::parse(to, "To")
                .map(|n| n.tag().is_some())
                .unwrap_or(true);
            match to_tag {
                Some(tag) if !has_tag && code > 100 => r.push("To", format!("{to};tag={tag}")),
                _ => r.push("To", to),
            }
        }
        r.push("Server", self.cfg.user_agent.clone());
        r
    }

    fn reply(&mut self, req: &Message, from: Peer, code: u16, extra: &[(&str, String)]) -> Vec<u8> {
        self.reply_body(req, from, code, extra, Vec::new())
    }

    fn reply_body(
        &mut self,
        req: &Message,
        from: Peer,
        code: u16,
        extra: &[(&str, String)],
        body: Vec<u8>,
    ) -> Vec<u8> {
        let tag = self.rng.token();
        let mut r = self.response(req, from, code, Some(&tag));
        for (n, v) in extra {
            r.push(n, v.clone());
        }
        r.body = body;
        let data = r.to_bytes();
        self.out.push_back(Output::Transmit {
            to: from,
            data: data.clone(),
        });
        data
    }

    /// Send a final response through a server transaction and move it on.
    fn reply_txn(
        &mut self,
        now: Instant,
        key: &TxnKey,
        req: &Message,
        from: Peer,
        code: u16,
        extra: &[(&str, String)],
    ) {
        self.reply_txn_body(now, key, req, from, code, extra, Vec::new());
    }

    /// Refuse a request through its server transaction.
    fn reject(&mut self, now: Instant, key: &TxnKey, req: &Message, from: Peer, r: Reject) {
        self.reply_txn(now, key, req, from, r.code(), &r.headers());
    }

    /// [`Core::reply_txn`] with a body.
    #[allow(clippy::too_many_arguments)]
    fn reply_txn_body(
        &mut self,
        now: Instant,
        key: &TxnKey,
        req: &Message,
        from: Peer,
        code: u16,
        extra: &[(&str, String)],
        body: Vec<u8>,
    ) {
        let data = self.reply_body(req, from, code, extra, body);
        let tc = self.cfg.timers;
        let invite = key.method == "INVITE";
        if let Some(tx) = self.server.get_mut(key) {
            tx.last = Some(data);
            tx.state = ServerState::Completed;
        }
        if invite {
            if !from.reliable() {
                self.timers
                    .set(CoreTimer::Txn(key.clone(), TxnTimer::G), now + tc.t1);
            }
            self.timers
                .set(CoreTimer::Txn(key.clone(), TxnTimer::H), now + tc.timeout());
        } else {
            let j = if from.reliable() {
                Duration::ZERO
            } else {
                tc.timeout()
            };
            self.timers
                .set(CoreTimer::Txn(key.clone(), TxnTimer::J), now + j);
        }
    }

    fn on_request(&mut self, now: Instant, from: Peer, msg: Message) {
        let method = msg
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        let ip = from.addr.ip();
        let h = match RequestHeaders::check(&msg) {
            Ok(h) => h,
            Err(e) => {
                if method != Method::Ack {
                    if self.flood.is_banned(ip, now) {
                        return;
                    }
                    self.failure(now, ip);
                    tracing::debug!(error = %e, "malformed request");
                    let r = Reject::BadRequest(e.to_string());
                    self.reply(&msg, from, r.code(), &r.headers());
                }
                return;
            }
        };
        let key = TxnKey::of(&h, method.as_str());
        if !self.knows(&key, &h, &method) {
            // what this source starts counts against it; what continues a
            // transaction or dialog never does
            match self.flood.request(ip, now) {
                flood::Verdict::Allow => {}
                flood::Verdict::Banned => return,
                flood::Verdict::OverLimit { first } => {
                    if first {
                        tracing::warn!(source = %ip, "flood: source over its request limit; excess requests dropped this window");
                    }
                    return;
                }
            }
        }
        if let Method::Other(_) = method {
            let r = Reject::NotImplemented;
            self.reply(&msg, from, r.code(), &r.headers());
            return;
        }
        if !headers::cseq_matches(&method, &h.cseq) {
            if method != Method::Ack {
                self.failure(now, ip);
                let r = Reject::BadRequest("CSeq method mismatch".into());
                self.reply(&msg, from, r.code(), &r.headers());
            }
            return;
        }
        if method == Method::Ack {
            if let Some(tx) = self.server.get_mut(&key) {
                if tx.state == ServerState::Completed {
                    tx.state = ServerState::Confirmed;
                    let i = if from.reliable() {
                        Duration::ZERO
                    } else {
                        self.cfg.timers.t4
                    };
                    self.timers.set(CoreTimer::Txn(key, TxnTimer::I), now + i);
                    return;
                }
                if tx.state != ServerState::Accepted {
                    return;
                }
            }
            self.on_ack(now, from, &h, &msg);
            return;
        }
        if let Some(tx) = self.server.get(&key) {
            // retransmission: repeat what we last said (or 100 while proceeding)
            if let Some(data) = tx.last.clone() {
                self.out.push_back(Output::Transmit { to: tx.peer, data });
            } else if method == Method::Invite {
                self.reply(&msg, from, 100, &[]);
            }
            return;
        }
        self.server.insert(
            key.clone(),
            ServerTxn {
                state: ServerState::Proceeding,
                last: None,
                peer: from,
                leg: None,
                interval: self.cfg.timers.t1,
            },
        );
        if method == Method::Cancel {
            self.on_cancel(now, from, &key, &h, &msg);
            return;
        }
        if method == Method::Invite {
            self.reply(&msg, from, 100, &[]);
        }
        // Request-URI scheme (RFC 3261 §8.2.2.1)
        let StartLine::Request { uri, .. } = &msg.start else {
            return;
        };
        let ruri = match SipUri::parse(uri) {
            Ok(u) => u,
            Err(UriError::UnsupportedScheme) => {
                return self.reject(now, &key, &msg, from, Reject::UnsupportedUriScheme);
            }
            Err(UriError::Malformed) => {
                self.failure(now, ip);
                return self.reject(
                    now,
                    &key,
                    &msg,
                    from,
                    Reject::BadRequest("malformed Request-URI".into()),
                );
            }
        };
        // Require (RFC 3261 §8.2.2.3): we support no extension that a peer can require
        let required = msg.list("Require");
        if !required.is_empty() {
            let r = Reject::BadExtension(required.join(", "));
            return self.reject(now, &key, &msg, from, r);
        }
        if h.to.tag().is_some() {
            self.in_dialog(now, from, &key, &h, msg, method);
            return;
        }
        match method {
            Method::Invite => self.on_invite(now, from, key, &h, &ruri, msg),
            // a proxy's probe (Kamailio's dispatcher): 503 while no call would be
            // taken, so that it sends the INVITEs elsewhere
            Method::Options if !self.accepting_calls() => {
                let after = if self.draining { 30 } else { 10 };
                self.reject(now, &key, &msg, from, Reject::Unavailable(Some(after)))
            }
            Method::Options => {
                let extra = [
                    ("Allow", ALLOW.to_string()),
                    ("Accept", "application/sdp".to_string()),
                    ("Supported", "timer".to_string()),
                ];
                self.reply_txn(now, &key, &msg, from, 200, &extra)
            }
            Method::Bye | Method::Update | Method::Info => {
                self.reject(now, &key, &msg, from, Reject::NoSuchCall)
            }
            _ => self.reject(now, &key, &msg, from, Reject::MethodNotAllowed),
        }
    }

    /// Whether a request continues something the core holds: a server transaction
    /// (retransmission, ACK of a final response), a dialog (ACK of a 2xx, BYE,
    /// re-INVITE, INFO, UPDATE…), or the INVITE a CANCEL names.
    fn knows(&self, key: &TxnKey, h: &RequestHeaders, method: &Method) -> bool {
        if self.server.contains_key(key) {
            return true;
        }
        if *method == Method::Cancel {
            let invite = TxnKey {
                method: "INVITE".into(),
                ..key.clone()
            };
            return self.server.contains_key(&invite);
        }
        h.to.tag().is_some() && self.find_dialog(h).is_some()
    }

    fn on_invite(
        &mut self,
        now: Instant,
        from: Peer,
        key: TxnKey,
        h: &RequestHeaders,
        ruri: &SipUri,
        msg: Message,
    ) {
        if self.draining {
            return self.reject(now, &key, &msg, from, Reject::Unavailable(Some(30)));
        }
        if self.overloaded {
            // more calls would degrade every room
            return self.reject(now, &key, &msg, from, Reject::Unavailable(Some(10)));
        }
        if !accepts_sdp(&msg) {
            // the answer must carry SDP, which the peer says it cannot take (§21.4.7)
            return self.reject(now, &key, &msg, from, Reject::NotAcceptable);
        }
        let offer = match read_offer(&msg) {
            Ok(o) => o,
            Err(r) => return self.reject(now, &key, &msg, from, r),
        };
        let session = match session_timer::negotiate(&msg) {
            Ok(t) => t,
            Err(e) => {
                let r = Reject::IntervalTooSmall(e.min_se);
                return self.reject(now, &key, &msg, from, r);
            }
        };
        let decision = if self.cfg.answer_webhook {
            match self.decided.remove(&key) {
                Some(d) => Some(d),
                None if self.parked.len() < routing::MAX_PARKED => {
                    // asked of the answer webhook; back in route_decided
                    self.park(from, key, msg);
                    return;
                }
                None => return self.reject(now, &key, &msg, from, Reject::Unavailable(Some(5))),
            }
        } else {
            None
        };
        let (room, options) = match decision {
            Some(routing::RouteDecision::Reject) => {
                return self.reject(now, &key, &msg, from, Reject::Unavailable(None));
            }
            Some(routing::RouteDecision::Room(name, opts)) => (name, Some(*opts)),
            Some(routing::RouteDecision::Fallback) | None => {
                (ruri.user.clone().unwrap_or_default(), None)
            }
        };
        let src = from.addr.ip();
        let caller = h.from.uri.clone();
        let allowed = match self.rooms.get(room.as_str()).filter(|r| r.is_defined()) {
            Some(r) if r.policy().admits(src, &caller) => true,
            Some(_) => {
                tracing::info!(%room, source = %src, "caller not allowed");
                false
            }
            None => false,
        };
        if !allowed {
            self.failure(now, src);
            if self.flood.is_banned(src, now) {
                // this very attempt got the source banned: no answer, and the
                // transaction goes (its retransmissions are dropped unread)
                self.server.remove(&key);
                return;
            }
        }
        let room = match allowed {
            true => room,
            // Nothing for a scanner to learn: an unknown room (or one this caller
            // may not call) is answered like a room with a PIN, and no PIN opens it.
            false if self.cfg.hide_rooms => DECOY_ROOM.to_string(),
            false => return self.reject(now, &key, &msg, from, Reject::NotFound),
        };
        let arrival = match self.rooms.get(room.as_str()) {
            Some(r) => r.arrival(options.as_ref()),
            None => Room::decoy().arrival(options.as_ref()),
        };
        let stage = match arrival {
            Ok(stage) => stage,
            Err(r) => return self.reject(now, &key, &msg, from, r),
        };
        let Some(port) = self.ports.allocate(now) else {
            tracing::warn!(%room, "RTP port range exhausted");
            return self.reject(now, &key, &msg, from, Reject::Unavailable(Some(5)));
        };
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let remote_target = msg
            .header("Contact")
            .and_then(|c| NameAddr::parse(message::split_list(c)[0], "Contact").ok())
            .map(|n| n.uri)
            .unwrap_or_else(|| h.from.uri.clone());
        let local_tag = self.rng.token();
        let session_id = self.rng.next_u64() >> 1;
        let mut leg = Leg {
            room: room.clone(),
            call_id: h.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: h.from.tag().unwrap_or("").to_string(),
            remote_uri: msg.header("From").unwrap_or("").to_string(),
            local_uri: msg.header("To").unwrap_or("").to_string(),
            remote_target,
            route_set: msg.list("Record-Route"),
            remote_cseq: h.cseq.seq,
            local_cseq: (self.rng.next_u64() % 10_000) as u32 + 1,
            peer: from,
            state: LegState::Ringing,
            invite_txn: Some(key.clone()),
            ok: None,
            offer_in_ok: false,
            port,
            media_addr: self.media_addr(from),
            bound: false,
            bind_failures: 0,
            sdp_version: 1,
            session_id,
            media: None,
            ssrc: 0,
            media_open: false,
            pending: None,
            dial: None,
            session,
            refresh_every: 0,
        };
        let ssrc = self.rng.next_u64() as u32;
        match &offer {
            Some((_, _, params)) => leg.media = Some(media_params(params, from.addr.ip(), ssrc)),
            None => leg.offer_in_ok = true,
        }
        leg.pending = Some(Box::new(PendingInvite { req: msg, offer }));
        leg.ssrc = ssrc;
        if let Some(tx) = self.server.get_mut(&key) {
            tx.leg = Some(id);
        }
        if matches!(stage, Stage::Joined { .. } | Stage::Waiting) {
            self.flood.succeed(src, now);
        }
        self.dialogs.insert((h.call_id.clone(), local_tag), id);
        self.insert_leg(id, leg);
        let identity = Identity {
            name: caller,
            call_id: h.call_id.clone(),
            source: src,
        };
        let part = Participant::new(stage, identity, options);
        if room == DECOY_ROOM {
            self.rooms
                .entry(RoomId::reserved(DECOY_ROOM))
                .or_insert_with(Room::decoy);
        }
        self.with_room(now, &room, |r, ctx| r.join(ctx, id, part));
        tracing::info!(leg = %id, %room, call_id = %LogSafe(&h.call_id), "INVITE accepted");
        // the answer announces the port: it goes out once the port is bound
        self.bind_media(id);
    }

    /// Ask the driver to bind a leg's RTP (and RTCP) port; it answers with
    /// [`Core::media_bound`] before anything else happens.
    fn bind_media(&mut self, id: LegId) {
        if let Some(leg) = self.legs.get(&id) {
            let addr = SocketAddr::new(leg.media_addr.0, leg.port);
            self.out
                .push_back(Output::Media(MediaCommand::Bind { leg: id, addr }));
        }
    }

    /// The driver bound a leg's RTP port (`ok`), or could not: the port is held by
    /// another program. The call goes on with the next free port, and the busy one
    /// rests for a cool-off before it is tried again; when no port of the range
    /// can be bound the call is refused (503) or, for a dial-out, fails.
    pub fn media_bound(&mut self, now: Instant, id: LegId, ok: bool) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.bound {
            return;
        }
        let outbound = leg.dial.is_some();
        if ok {
            leg.bound = true;
            return if outbound {
                self.start_dial(now, id)
            } else {
                self.proceed_invite(now, id)
            };
        }
        let busy = leg.port;
        leg.bind_failures = leg.bind_failures.saturating_add(1);
        let tries = leg.bind_failures;
        tracing::warn!(leg = %id, port = busy, "RTP port in use by another program: skipped, and retried after a cool-off");
        // each try retires a port, so this ends once the range has none left
        self.ports.retire(busy, now + PORT_COOL_OFF);
        if let (Some(port), Some(leg)) = (self.ports.allocate(now), self.legs.get_mut(&id)) {
            leg.port = port;
            return self.bind_media(id);
        }
        tracing::warn!(leg = %id, tries, "no RTP port could be bound");
        if outbound {
            self.dial_failed(now, id, "no RTP port could be bound");
        } else {
            self.end_leg(now, id, true, LeftReason::Error);
        }
    }

    /// An inbound leg's port is bound: answer, or ring first.
    fn proceed_invite(&mut self, now: Instant, id: LegId) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let after = self
            .rooms
            .get(leg.room.as_str())
            .map_or(Duration::ZERO, |r| r.policy().answer_after);
        if after.is_zero() {
            return self.answer(now, id);
        }
        let Some(p) = &leg.pending else { return };
        let from = leg.peer;
        let mut r = self.response(&p.req, from, 180, Some(&leg.local_tag));
        r.push("Contact", self.contact(from));
        let data = r.to_bytes();
        if let Some(tx) = leg.invite_txn.as_ref().and_then(|k| self.server.get_mut(k)) {
            tx.last = Some(data.clone());
        }
        self.out.push_back(Output::Transmit { to: from, data });
        self.timers
            .set(CoreTimer::Leg(id, LegTimer::Answer), now + after);
    }

    /// Handle a parked INVITE again, now that its route is decided.
    fn handle_parked(&mut self, now: Instant, p: routing::Parked) {
        let Ok(h) = RequestHeaders::check(&p.msg) else {
            return;
        };
        let StartLine::Request { uri, .. } = &p.msg.start else {
            return;
        };
        let Ok(ruri) = SipUri::parse(uri) else { return };
        let msg = p.msg.clone();
        self.on_invite(now, p.from, p.key, &h, &ruri, msg);
    }

    fn contact(&self, via: Peer) -> String {
        let t = if via.reliable() { ";transport=tcp" } else { "" };
        format!("<sip:caucus@{}{t}>", self.cfg.sent_by(via))
    }

    /// Where a leg whose signalling runs on `flow` binds its RTP, and what its SDP
    /// says: `[rtp] address` (when of the flow's family), else the flow's local
    /// address; `[rtp] advertise`, else the bound address unless it is a wildcard.
    fn media_addr(&self, flow: Peer) -> (IpAddr, IpAddr) {
        let local = flow.local.ip().to_canonical();
        let bind = self
            .cfg
            .rtp_address
            .filter(|a| a.is_ipv4() == local.is_ipv4())
            .unwrap_or(local);
        let shown =
            self.cfg
                .rtp_advertise
                .unwrap_or(if bind.is_unspecified() { local } else { bind });
        (bind, shown)
    }

    fn local_sdp(&self, leg: &Leg) -> LocalSdp {
        LocalSdp {
            addr: leg.media_addr.1,
            port: leg.port,
            session_id: leg.session_id,
            version: leg.sdp_version,
        }
    }

    /// Send the 2xx for a leg's pending INVITE (initial or re-INVITE).
    fn answer(&mut self, now: Instant, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let Some(pending) = leg.pending.take() else {
            return;
        };
        let PendingInvite { req, offer } = *pending;
        let body = {
            let local = self.local_sdp(&self.legs[&id]);
            match &offer {
                Some((sd, idx, params)) => {
                    sdp::answer(sd, *idx, params, &local, params.peer_direction.answer())
                }
                None => sdp::offer(&local, Direction::SendRecv),
            }
        };
        let leg = &self.legs[&id];
        let peer = leg.peer;
        let mut r = self.response(&req, peer, 200, Some(&leg.local_tag));
        r.push("Contact", self.contact(peer));
        for rr in req.all("Record-Route") {
            r.push("Record-Route", rr);
        }
        r.push("Allow", ALLOW);
        r.push("Supported", "timer");
        let session = self.legs.get_mut(&id).and_then(|l| l.session.take());
        if let Some(t) = &session {
            for (name, value) in t.response_headers() {
                r.push(name, value);
            }
        }
        r.push("Content-Type", "application/sdp");
        r.body = body;
        let data = r.to_bytes();
        let cseq = headers::CSeq::parse(req.header("CSeq").unwrap_or(""))
            .map(|c| c.seq)
            .unwrap_or(0);
        // media first, so the first RTP finds its socket bound
        let leg = self.legs.get_mut(&id).expect("leg checked above");
        leg.offer_in_ok = offer.is_none();
        let first = leg.state == LegState::Ringing;
        leg.state = LegState::WaitAck;
        self.timers.cancel(&CoreTimer::Leg(id, LegTimer::Answer));
        leg.ok = Some((data.clone(), cseq, self.cfg.timers.t1));
        let key = leg.invite_txn.take();
        let (room, call_id) = (leg.room.clone(), leg.call_id.clone());
        let from = NameAddr::parse(&leg.remote_uri, "From")
            .map(|n| n.uri)
            .unwrap_or_default();
        self.sync_media(now, id);
        self.out.push_back(Output::Transmit {
            to: peer,
            data: data.clone(),
        });
        if let Some(key) = key {
            if let Some(tx) = self.server.get_mut(&key) {
                tx.state = ServerState::Accepted;
                tx.last = Some(data);
            }
            let l = CoreTimer::Txn(key, TxnTimer::L);
            self.timers.set(l, now + self.cfg.timers.timeout());
        }
        let tc = self.cfg.timers;
        if !peer.reliable() {
            self.timers
                .set(CoreTimer::Leg(id, LegTimer::G), now + tc.t1);
        }
        self.timers
            .set(CoreTimer::Leg(id, LegTimer::H), now + tc.timeout());
        match session {
            Some(t) => self.start_session_timer(now, id, t),
            // a refresh without Session-Expires turns the timer off (RFC 4028 §9)
            None => self.stop_session_timer(id),
        }
        if first {
            self.out.push_back(Output::Event(Event::Joined {
                leg: id,
                room,
                call_id,
                from,
            }));
        }
    }

    fn find_dialog(&self, h: &RequestHeaders) -> Option<LegId> {
        let tag = h.to.tag()?;
        let id = *self.dialogs.get(&(h.call_id.clone(), tag.to_string()))?;
        let leg = self.legs.get(&id)?;
        (leg.remote_tag == h.from.tag().unwrap_or("")).then_some(id)
    }

    fn on_ack(&mut self, now: Instant, _from: Peer, h: &RequestHeaders, msg: &Message) {
        let Some(id) = self.find_dialog(h) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.ok.as_ref().is_none_or(|o| o.1 != h.cseq.seq) {
            return; // stale or duplicate ACK
        }
        leg.ok = None;
        leg.state = LegState::Confirmed;
        self.timers.cancel(&CoreTimer::Leg(id, LegTimer::G));
        self.timers.cancel(&CoreTimer::Leg(id, LegTimer::H));
        if !leg.offer_in_ok {
            return;
        }
        leg.offer_in_ok = false;
        // late offer: the answer is in the ACK (RFC 3264 §5, RFC 3261 §13.2.1)
        let answer = SessionDescription::parse(&msg.body)
            .ok()
            .and_then(|sd| sdp::select_audio(&sd).ok());
        let Some((_, params)) = answer else {
            tracing::info!(leg = %id, "ACK carried no usable SDP answer: ending the call");
            self.end_leg(now, id, true, LeftReason::Error);
            return;
        };
        let leg = self.legs.get_mut(&id).expect("leg checked above");
        leg.media = Some(media_params(&params, leg.peer.addr.ip(), leg.ssrc));
        self.sync_media(now, id);
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        from: Peer,
        key: &TxnKey,
        _h: &RequestHeaders,
        msg: &Message,
    ) {
        let invite_key = TxnKey {
            method: "INVITE".into(),
            ..key.clone()
        };
        if let Some(invite) = self.unpark(&invite_key) {
            self.reply_txn(now, key, msg, from, 200, &[]);
            return self.reject(now, &invite_key, &invite, from, Reject::RequestTerminated);
        }
        let Some(inv) = self.server.get(&invite_key).cloned() else {
            return self.reject(now, key, msg, from, Reject::NoSuchCall);
        };
        self.reply_txn(now, key, msg, from, 200, &[]);
        if inv.state != ServerState::Proceeding {
            return; // already answered: CANCEL has no effect (RFC 3261 §9.2)
        }
        let Some(id) = inv.leg else { return };
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let Some(p) = leg.pending.as_ref() else {
            return;
        };
        let req = p.req.clone();
        let peer = leg.peer;
        self.reject(now, &invite_key, &req, peer, Reject::RequestTerminated);
        self.end_leg(now, id, false, LeftReason::Hangup);
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        from: Peer,
        key: &TxnKey,
        h: &RequestHeaders,
        msg: Message,
        method: Method,
    ) {
        let Some(id) = self.find_dialog(h) else {
            return self.reject(now, key, &msg, from, Reject::NoSuchCall);
        };
        let leg = self.legs.get_mut(&id).expect("dialog maps to a live leg");
        if h.cseq.seq <= leg.remote_cseq && method != Method::Cancel {
            // RFC 3261 §12.2.2: lower CSeq is out of order
            return self.reject(now, key, &msg, from, Reject::ServerError(None));
        }
        leg.remote_cseq = h.cseq.seq;
        match method {
            Method::Bye => {
                self.reply_txn(now, key, &msg, from, 200, &[]);
                self.end_leg(now, id, false, LeftReason::Hangup);
            }
            Method::Invite => self.reinvite(now, from, key, id, msg),
            Method::Update => {
                let offer = match read_offer(&msg) {
                    Ok(o) => o,
                    Err(r) => return self.reject(now, key, &msg, from, r),
                };
                let session = match session_timer::negotiate(&msg) {
                    Ok(t) => t,
                    Err(e) => {
                        let r = Reject::IntervalTooSmall(e.min_se);
                        return self.reject(now, key, &msg, from, r);
                    }
                };
                let mut extra = vec![("Contact", self.contact(from))];
                if let Some(t) = &session {
                    extra.extend(t.response_headers());
                    self.start_session_timer(now, id, *t);
                }
                let Some((sd, idx, params)) = offer else {
                    return self.reply_txn(now, key, &msg, from, 200, &extra);
                };
                let body = self.renegotiate(now, id, &params, &sd, idx);
                extra.push(("Content-Type", "application/sdp".to_string()));
                self.reply_txn_body(now, key, &msg, from, 200, &extra, body);
            }
            Method::Info => {
                self.reply_txn(now, key, &msg, from, 200, &[]);
                if let Some(d) = dtmf_in_info(&msg) {
                    self.dtmf(now, id, d);
                }
            }
            Method::Options => {
                self.reply_txn(now, key, &msg, from, 200, &[("Allow", ALLOW.into())])
            }
            _ => self.reject(now, key, &msg, from, Reject::MethodNotAllowed),
        }
    }

    /// Apply a new offer to a leg; returns our answer body.
    fn renegotiate(
        &mut self,
        now: Instant,
        id: LegId,
        params: &AudioParams,
        sd: &SessionDescription,
        idx: usize,
    ) -> Vec<u8> {
        let leg = self.legs.get_mut(&id).expect("caller checked");
        leg.sdp_version += 1;
        leg.media = Some(media_params(params, leg.peer.addr.ip(), leg.ssrc));
        let local = self.local_sdp(&self.legs[&id]);
        self.sync_media(now, id);
        sdp::answer(sd, idx, params, &local, params.peer_direction.answer())
    }

    fn reinvite(&mut self, now: Instant, from: Peer, key: &TxnKey, id: LegId, msg: Message) {
        let leg = &self.legs[&id];
        if leg.ok.is_some() || leg.pending.is_some() {
            // the previous INVITE is not finished (RFC 3261 §14.2)
            return self.reject(now, key, &msg, from, Reject::ServerError(Some(1)));
        }
        let offer = match read_offer(&msg) {
            Ok(o) => o,
            Err(r) => return self.reject(now, key, &msg, from, r),
        };
        let session = match session_timer::negotiate(&msg) {
            Ok(t) => t,
            Err(e) => {
                let r = Reject::IntervalTooSmall(e.min_se);
                return self.reject(now, key, &msg, from, r);
            }
        };
        if let Some(tx) = self.server.get_mut(key) {
            tx.leg = Some(id);
        }
        if let Some(l) = self.legs.get_mut(&id) {
            l.session = session;
        }
        let leg = self.legs.get_mut(&id).expect("checked above");
        leg.invite_txn = Some(key.clone());
        if let Some(target) = msg
            .header("Contact")
            .and_then(|c| NameAddr::parse(message::split_list(c)[0], "Contact").ok())
        {
            leg.remote_target = target.uri;
        }
        leg.sdp_version += 1;
        match &offer {
            Some((_, _, params)) => {
                let p = media_params(params, from.addr.ip(), leg.ssrc);
                leg.media = Some(p);
            }
            None => leg.offer_in_ok = true,
        }
        leg.pending = Some(Box::new(PendingInvite { req: msg, offer }));
        self.answer(now, id);
    }

    /// Remove a leg: media closed, port freed, room left; BYE sent if asked.
    fn end_leg(&mut self, now: Instant, id: LegId, send_bye: bool, why: LeftReason) {
        if send_bye
            && let Some(l) = self.legs.get(&id)
            && l.state == LegState::Calling
        {
            let to = l.remote_target.clone();
            let room = l.room.clone();
            self.cancel_dial(now, id, dialout::DialStatus::Cancelled);
            self.out.push_back(Output::Event(Event::Dial {
                leg: id,
                room,
                to,
                status: dialout::DialStatus::Cancelled,
                reason: Some("ended before an answer".into()),
            }));
        }
        let Some(leg) = self.remove_leg(id) else {
            return;
        };
        self.forget_dial(&leg);
        self.dialogs
            .remove(&(leg.call_id.clone(), leg.local_tag.clone()));
        if leg.media_open {
            self.out
                .push_back(Output::Media(MediaCommand::Close { leg: id }));
        }
        self.ports.release(leg.port);
        if send_bye && !matches!(leg.state, LegState::Ringing | LegState::Calling) {
            self.send_bye(now, &leg);
        } else if send_bye && leg.state == LegState::Ringing {
            // not answered yet: refuse the INVITE instead
            if let (Some(p), Some(key)) = (&leg.pending, &leg.invite_txn) {
                let req = p.req.clone();
                let key = key.clone();
                self.reject(now, &key, &req, leg.peer, Reject::Unavailable(None));
            }
        }
        // reported before anything it sets off (the room closing, others ended)
        if !matches!(leg.state, LegState::Ringing | LegState::Calling) {
            self.out.push_back(Output::Event(Event::Left {
                leg: id,
                room: leg.room.clone(),
                call_id: leg.call_id.clone(),
                reason: why,
            }));
        }
        tracing::info!(leg = %id, room = %leg.room, call_id = %LogSafe(&leg.call_id), reason = why.as_str(), "leg ended");
        self.with_room(now, &leg.room, |r, ctx| r.left(ctx, id));
    }

    fn send_bye(&mut self, now: Instant, leg: &Leg) {
        let (branch, data) =
            self.in_dialog_request(leg, Method::Bye, leg.local_cseq.wrapping_add(1), &[]);
        // In-dialog requests go back on the flow the INVITE came from (RFC 5626-style
        // flow reuse): the bridge never resolves or trusts a Contact address.
        self.start_client_txn(now, branch, leg.peer, data);
    }

    /// Send a request within a leg's dialog (a session refresh), with the next CSeq.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: LegId,
        method: Method,
        extra: &[(&str, String)],
    ) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.local_cseq = leg.local_cseq.wrapping_add(1);
        let leg = leg.clone();
        let (branch, data) = self.in_dialog_request(&leg, method, leg.local_cseq, extra);
        self.start_client_txn(now, branch, leg.peer, data);
    }

    /// A request in a leg's dialog (RFC 3261 §12.2.1.1): a fresh branch and the bytes.
    fn in_dialog_request(
        &mut self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        extra: &[(&str, String)],
    ) -> (String, Vec<u8>) {
        let branch = format!("z9hG4bK{}", self.rng.token());
        let proto = if leg.peer.reliable() { "TCP" } else { "UDP" };
        let name = method.as_str().to_string();
        let mut m = Message {
            start: StartLine::Request {
                method,
                uri: leg.remote_target.clone(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        m.push(
            "Via",
            format!(
                "SIP/2.0/{proto} {};branch={branch};rport",
                self.cfg.sent_by(leg.peer)
            ),
        );
        m.push("Max-Forwards", "70");
        // UAS route set: Record-Route in order (RFC 3261 §12.1.1)
        for r in &leg.route_set {
            m.push("Route", r.clone());
        }
        m.push("From", format!("{};tag={}", leg.local_uri, leg.local_tag));
        m.push("To", leg.remote_uri.clone());
        m.push("Call-ID", leg.call_id.clone());
        m.push("CSeq", format!("{cseq} {name}"));
        m.push("User-Agent", self.cfg.user_agent.clone());
        for (n, v) in extra {
            m.push(n, v.clone());
        }
        (branch, m.to_bytes())
    }

    /// Send a non-INVITE request as a client transaction (RFC 3261 §17.1.2:
    /// Timer E retransmits over UDP, Timer F gives up).
    fn start_client_txn(&mut self, now: Instant, branch: String, peer: Peer, data: Vec<u8>) {
        self.out.push_back(Output::Transmit {
            to: peer,
            data: data.clone(),
        });
        let tc = self.cfg.timers;
        self.client.insert(
            branch.clone(),
            ClientTxn {
                request: data,
                peer,
                interval: tc.t1,
                completed: false,
            },
        );
        if !peer.reliable() {
            let e = CoreTimer::Client(branch.clone(), ClientTimer::E);
            self.timers.set(e, now + tc.t1);
        }
        self.timers.set(
            CoreTimer::Client(branch, ClientTimer::F),
            now + tc.timeout(),
        );
    }

    fn on_response(&mut self, now: Instant, from: Peer, code: u16, msg: &Message) {
        let invite = msg
            .header("CSeq")
            .and_then(|c| headers::CSeq::parse(c).ok())
            .is_some_and(|c| c.method == "INVITE");
        if invite {
            return self.on_dial_response(now, from, code, msg);
        }
        let Some(via) = msg
            .header("Via")
            .and_then(|v| Via::parse(message::split_list(v)[0]).ok())
        else {
            return;
        };
        let Some(branch) = via.branch else { return };
        let Some(c) = self.client.get_mut(&branch) else {
            return;
        };
        if code < 200 || c.completed {
            return;
        }
        c.completed = true;
        let k = if c.peer.reliable() {
            Duration::ZERO
        } else {
            self.cfg.timers.t4
        };
        self.timers
            .set(CoreTimer::Client(branch, ClientTimer::K), now + k);
    }
}

/// Media parameters and the RTP transport from an offer/answer. The remote
/// address is the c= IP literal; a hostname is never resolved: symmetric RTP
/// starts at the signalling source IP.
fn media_params(p: &AudioParams, signalling_ip: IpAddr, ssrc: u32) -> (MediaParams, TransportSpec) {
    let ip = p.remote_ip.unwrap_or(signalling_ip);
    let params = MediaParams {
        codec: p.codec,
        pt: p.pt,
        dtmf_pt: p.dtmf_pt,
        peer_direction: p.peer_direction,
        ssrc,
        ptime_ms: p.ptime_ms,
    };
    let remote = Some(SocketAddr::new(ip, p.remote_port));
    (params, TransportSpec::Rtp { remote })
}

/// RFC 3261 §18.2.2: record where the request really came from in the top Via, and
/// fill `rport` (RFC 3581) when asked.
fn received_via(via: &str, src: SocketAddr) -> String {
    let mut out = String::with_capacity(via.len() + 40);
    let mut parts = via.split(';');
    out.push_str(parts.next().unwrap_or(""));
    let mut has_received = false;
    for p in parts {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("rport") {
            out.push_str(&format!(";rport={}", src.port()));
        } else if name.eq_ignore_ascii_case("received") {
            has_received = true;
            out.push_str(&format!(";received={}", src.ip()));
        } else {
            out.push(';');
            out.push_str(p);
        }
    }
    if !has_received {
        out.push_str(&format!(";received={}", src.ip()));
    }
    out
}

/// Read the SDP offer of an INVITE/UPDATE: None when there is no body (late
/// offer); the rejection when it is unacceptable.
fn read_offer(msg: &Message) -> Result<Option<Offer>, Reject> {
    if msg.body.is_empty() {
        return Ok(None);
    }
    let ct = msg.header("Content-Type").unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    if !ct.eq_ignore_ascii_case("application/sdp") {
        return Err(Reject::UnsupportedMediaType);
    }
    let sd = SessionDescription::parse(&msg.body).map_err(|e| Reject::BadRequest(e.to_string()))?;
    let (idx, params) = sdp::select_audio(&sd).map_err(|_| Reject::NotAcceptableHere)?;
    Ok(Some((sd, idx, params)))
}

/// Whether the request's Accept (if any) lets us answer with SDP (RFC 3261 §20.1).
fn accepts_sdp(msg: &Message) -> bool {
    let accepted = msg.list("Accept");
    if msg.header("Accept").is_none() {
        return true;
    }
    accepted.iter().any(|a| {
        let t = a
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        t == "application/sdp" || t == "application/*" || t == "*/*"
    })
}

/// A digit from an INFO body (`application/dtmf-relay` `Signal=5`, or
/// `application/dtmf` with the digit alone).
fn dtmf_in_info(msg: &Message) -> Option<char> {
    let ct = msg.header("Content-Type")?.to_ascii_lowercase();
    let body = std::str::from_utf8(&msg.body).ok()?;
    let raw = if ct.starts_with("application/dtmf-relay") {
        body.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Signal=")
                    .or_else(|| l.trim().strip_prefix("Signal ="))
            })?
            .trim()
    } else if ct.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let c = raw.chars().next()?;
    (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')).then_some(c)
}

#[cfg(test)]
mod tests;
