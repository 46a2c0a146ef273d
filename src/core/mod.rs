//! The sans-IO signalling core: SIP requests in, responses, requests, media commands
//! and events out. It owns transactions (RFC 3261 §17), dialogs (§12), each leg's
//! INVITE session and offer/answer state (§13, §14, RFC 3264, RFC 3311), and room
//! membership. It never reads a clock, touches a socket or draws global randomness:
//! `now` is an argument, the RNG is seeded by the caller, and everything to do is
//! queued as [`Output`] for a driver to carry out. That is what lets the tests fire
//! Timer H at 32 s without waiting 32 s.

pub mod calls;
pub mod cluster;
pub mod control;
mod dialog;
pub mod dialout;
pub mod flood;
mod gate;
mod invite;
mod leg;
mod link;
mod offer;
mod output;
pub mod pin;
pub mod ports;
mod reply;
mod request;
pub mod room;
pub mod routing;
pub mod session_timer;
pub mod socket;
pub mod tally;
pub mod timers;
pub mod transaction;
mod transfer;
pub mod web;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::sip::message::Message;
use crate::util::LogSafe;

use ports::PortPool;
use timers::{ClientTimer, CoreTimer, LegTimer, RoomTimer, TimerTable, TxnTimer};
use transaction::{ClientTxn, ServerState, ServerTxn, TimerConfig, TxnKey};

pub use crate::sip::status::ALLOW;

pub use crate::ids::{LegId, RoomId};
use leg::{Leg, LegState};
use offer::media_params;
pub use output::{Event, LeftReason, Output, RecordingReport};

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// the shared UDP socket
    Udp,
    /// one TCP connection, by the driver's id
    Tcp(u64),
    /// one TLS connection, by the driver's id (RFC 3261 §26.2)
    Tls(u64),
}

impl Transport {
    /// The transport as a Via names it (RFC 3261 §20.42).
    pub fn via_proto(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
            Transport::Tls(_) => "TLS",
        }
    }
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
        matches!(self.transport, Transport::Tcp(_) | Transport::Tls(_))
    }
}

pub use crate::util::cidr::{Cidr, glob_match};
use room::{Ctx, Room};
pub use room::{DECOY_ROOM, LegKind, MenuKeys, RoomPolicy};

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
    /// ports of that range other listeners hold (the WebRTC port)
    pub rtp_reserved: Vec<u16>,
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
    /// SRTP by SDES: ignored, taken when offered, or required
    pub srtp: crate::sdes::SrtpMode,
    /// where our SDES keys come from (the OS's random source, in the driver)
    pub srtp_keys: crate::sdes::KeySource,
    /// flood control (`[security]`)
    pub flood: flood::FloodLimits,
    /// a ban ends the banned source's admitted calls too (by default they go on)
    pub ban_ends_calls: bool,
    /// one node of several (`[cluster]`): rooms are claimed in the registry
    pub cluster: bool,
    /// `[cluster] cascade_at`: callers of a held room beyond this many go to a
    /// satellite node (0: never)
    pub cascade_at: usize,
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
    /// the webhook's decisions, taken by the INVITE when it is handled again,
    /// with the token it was asked under (the leg's id to be)
    decided: HashMap<TxnKey, (u64, routing::RouteDecision)>,
    /// flood control: what each source starts, its failures and bans
    flood: flood::FloodGuard,
    /// legs held per signalling source address (a banned source with calls is
    /// still read, for its in-dialog requests)
    legs_from: HashMap<IpAddr, u32>,
    /// rooms joined together: each link leg and its other end
    links: HashMap<LegId, LegId>,
    /// the rooms this node holds in the cluster's registry, and calls waiting
    /// for a claim
    placement: cluster::Placement,
}

impl Core {
    /// A core with this configuration and RNG seed.
    pub fn new(mut cfg: CoreConfig, seed: u64) -> Core {
        let rooms = configured_rooms(std::mem::take(&mut cfg.rooms))
            .map(|(id, policy)| (id.clone(), Room::new(id, policy, false)))
            .collect();
        let mut ports = PortPool::new(cfg.rtp_ports.0, cfg.rtp_ports.1);
        for &p in &cfg.rtp_reserved {
            ports.reserve(p);
        }
        let flood = flood::FloodGuard::new(cfg.flood.clone());
        Core {
            flood,
            legs_from: HashMap::new(),
            links: HashMap::new(),
            placement: cluster::Placement::default(),
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
            self.share(cluster::GuardNote::Pin {
                room: name.to_string(),
                src,
                right,
            });
            if right {
                self.success(now, src);
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
        self.release_if_empty(now, name);
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
    /// What a leg said when asked for its name.
    pub fn name_said(&mut self, now: Instant, id: LegId, samples: Vec<i16>) {
        self.with_leg_room(now, id, |r, ctx| r.name_said(ctx, id, samples));
    }
    /// The media side finished a leg's queued prompts.
    pub fn prompt_done(&mut self, now: Instant, id: LegId) {
        self.with_leg_room(now, id, |r, ctx| r.prompt_done(ctx, id));
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
}

#[cfg(test)]
mod tests;
