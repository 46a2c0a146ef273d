//! Dial-out: the bridge as UAC. The INVITE client transaction (RFC 3261 §17.1.1:
//! Timers A and B, ACK for non-2xx in the transaction, ACK for 2xx by the dialog),
//! CANCEL on the ring timeout (§9.1), digest answers to 401/407 with a trunk's
//! credentials (§22.2, RFC 8760), and the answered leg joining its room with its
//! role. Toll-fraud guards live here too, so that no path reaches an INVITE
//! without them: dial-out is only ever started by the authenticated API, the target
//! must match `[dialout] allowed_destinations`, at most `max_outbound_calls` run at
//! once, each for at most `max_duration`, and the target host must be an IP
//! address (the bridge resolves no names it is given).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::control::ControlError;
use super::room::{Identity, LegKind, Participant, Room, Stage};
use super::timers::{CoreTimer, LegTimer};
use super::{Core, Event, Leg, LegId, LegState, Output, Peer, Transport, glob_match, media_params};
use crate::sdp::{self, Direction, SessionDescription};
use crate::sip::digest::{self, Challenge, Credentials};
use crate::sip::headers::{self, NameAddr, SipUri};
use crate::sip::{Message, Method, StartLine, message};
use crate::util::LogSafe;

/// `[dialout]` and `[[trunk]]` as the core needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialPolicy {
    /// target URI patterns; empty: no dial-out
    pub allowed: Vec<String>,
    /// outbound calls at once
    pub max_calls: usize,
    /// an answered outbound call is hung up after this long
    pub max_duration: Duration,
    /// digest credentials
    pub trunks: Vec<TrunkCredentials>,
}

/// One `[[trunk]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkCredentials {
    /// host or host:port of the targets it is for
    pub host: String,
    /// the realm a challenge must name
    pub realm: String,
    /// user
    pub username: String,
    /// password
    pub password: String,
}

impl std::fmt::Debug for TrunkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password
        write!(
            f,
            "Trunk({}@{} realm {})",
            self.username, self.host, self.realm
        )
    }
}

/// A dial request from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest {
    /// SIP URI to call
    pub to: String,
    /// joins as moderator
    pub moderator: bool,
    /// user part of our From
    pub caller_id: Option<String>,
    /// ring this long, then CANCEL
    pub ring_timeout: Duration,
    /// our address towards the target (the driver's choice: the listen address of
    /// its family, or on a wildcard listener the one the route to it leaves from)
    pub local: Option<SocketAddr>,
    /// the room ends when this call does, answered or not (an NCCO `connect`)
    pub end_on_exit: bool,
    /// hang up this long after the answer at most (an NCCO `connect`'s
    /// `limit`; never past `[dialout] max_duration_s`)
    pub limit: Option<Duration>,
    /// a link to a room on another bridge (`POST …/links {"uri"}`): the target
    /// must be in `[security] trusted_sources` (not `allowed_destinations`),
    /// the leg is a link in its room (no prompts, not counted, no time limit),
    /// and the INVITE says so (`X-Caucus-Link`) and offers Opus first
    pub link: bool,
    /// an NCCO `connect` with `eventType: synchronous`: if the call does not
    /// connect, the caller (this leg) stays and the event goes to this URL,
    /// whose NCCO takes the caller on
    pub on_failure: Option<(LegId, String)>,
    /// the flow to the target when it is not UDP: a TLS connection the driver
    /// opened (and verified) before the INVITE, for a `sips:` or
    /// `;transport=tls` target
    pub flow: Option<Transport>,
}

/// The header that marks an INVITE as a room link between bridges; heeded only
/// from `[security] trusted_sources`. Its value is the calling room's name.
pub const LINK_HEADER: &str = "X-Caucus-Link";

/// How a dial attempt stands (the webhook's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialStatus {
    /// 180/183 received
    Ringing,
    /// 2xx: in the room
    Answered,
    /// rejected (3xx-6xx), unreachable, or its SDP unusable
    Failed,
    /// not answered within its ring timeout
    Unanswered,
    /// cancelled before an answer (room ended, API, shutdown)
    Cancelled,
}

impl DialStatus {
    /// Name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            DialStatus::Ringing => "ringing",
            DialStatus::Answered => "answered",
            DialStatus::Failed => "failed",
            DialStatus::Unanswered => "unanswered",
            DialStatus::Cancelled => "cancelled",
        }
    }
}

/// The INVITE client transaction of an outbound leg.
#[derive(Debug, Clone)]
pub(super) struct Dial {
    target: String,
    branch: String,
    /// the INVITE as sent (Timer A retransmits it)
    invite: Vec<u8>,
    cseq: u32,
    interval: Duration,
    provisional: bool,
    ringing_reported: bool,
    answered: bool,
    auth_tried: bool,
    cancelling: Option<DialStatus>,
    ring_timeout: Duration,
    limit: Option<Duration>,
    /// ACK for the 2xx, re-sent when the 2xx is retransmitted
    ack: Option<Vec<u8>>,
    /// a room link to another bridge
    link: bool,
    /// a synchronous connect's caller and eventUrl
    on_failure: Option<(LegId, String)>,
}

fn valid_caller_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+-_.".contains(&c))
}

impl Core {
    /// Start an outbound call into `room`; returns its leg id. The leg shows in the
    /// room's participants as "calling" until it is answered.
    pub fn dial(
        &mut self,
        now: Instant,
        room: &str,
        req: DialRequest,
    ) -> Result<LegId, ControlError> {
        if self.draining {
            return Err(ControlError::Draining);
        }
        let full = self
            .rooms
            .get(room)
            .filter(|r| r.is_defined() && !r.is_decoy())
            .map(|r| !req.link && r.members().len() >= r.policy().max_participants)
            .ok_or_else(|| ControlError::NoSuchRoom(room.to_string()))?;
        let dp = &self.cfg.dialout;
        if req.link {
            // checked against the trusted sources below, once the host is known
        } else if dp.allowed.is_empty() {
            return Err(ControlError::DialDenied(
                "dial-out is off ([dialout] allowed_destinations is empty)".into(),
            ));
        } else if !dp.allowed.iter().any(|p| glob_match(p, &req.to)) {
            return Err(ControlError::DialDenied(format!(
                "{} matches no allowed_destinations pattern",
                req.to
            )));
        }
        let outbound = self.legs.values().filter(|l| l.dial.is_some()).count();
        if outbound >= dp.max_calls {
            return Err(ControlError::TooManyCalls(dp.max_calls));
        }
        let uri = SipUri::parse(&req.to)
            .map_err(|_| ControlError::BadDestination("not a sip: URI".into()))?;
        let tls = matches!(req.flow, Some(Transport::Tls(_)));
        if uri.scheme != "sip" && !(uri.scheme == "sips" && tls) {
            return Err(ControlError::BadDestination(
                "only sip: targets (UDP, or TLS by ;transport=tls) and sips: over TLS can be dialled"
                    .into(),
            ));
        }
        let ip: IpAddr = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                ControlError::BadDestination(
                    "the host must be an IP address (the bridge resolves no names)".into(),
                )
            })?;
        if req.link && !self.flood.is_trusted(ip) {
            return Err(ControlError::DialDenied(format!(
                "{ip}: a room link goes only to a bridge in [security] trusted_sources"
            )));
        }
        let caller = req.caller_id.clone().unwrap_or_else(|| "caucus".into());
        if !valid_caller_id(&caller) {
            return Err(ControlError::BadDestination(
                "caller_id: 1-64 of A-Z a-z 0-9 + - _ .".into(),
            ));
        }
        if full {
            return Err(ControlError::RoomFull(room.to_string()));
        }
        let Some(local) = req.local else {
            return Err(ControlError::BadDestination(
                "no SIP listen address of the target's address family".into(),
            ));
        };
        let port = self.ports.allocate(now).ok_or(ControlError::Unavailable)?;
        let default_port = if tls { 5061 } else { 5060 };
        let peer = Peer {
            transport: req.flow.unwrap_or(Transport::Udp),
            addr: SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
            local,
        };
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let local_tag = self.rng.token();
        let call_id = format!("{}@{}", self.rng.token(), local.ip());
        let ssrc = self.rng.next_u64() as u32;
        let session_id = self.rng.next_u64() >> 1;
        let leg = Leg {
            kind: LegKind::Sip,
            room: room.to_string(),
            call_id,
            local_tag,
            remote_tag: String::new(),
            remote_uri: format!("<{}>", req.to),
            local_uri: format!("<sip:{caller}@{}>", self.cfg.sent_by(peer)),
            remote_target: req.to.clone(),
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: 1,
            peer,
            state: LegState::Calling,
            invite_txn: None,
            ok: None,
            offer_in_ok: false,
            port,
            media_addr: self.media_addr(peer),
            bound: false,
            bind_failures: 0,
            sdp_version: 1,
            session_id,
            media: None,
            ssrc,
            media_open: false,
            pending: None,
            dial: Some(Box::new(Dial {
                target: req.to.clone(),
                branch: String::new(),
                invite: Vec::new(),
                cseq: 1,
                interval: self.cfg.timers.t1,
                provisional: false,
                ringing_reported: false,
                answered: false,
                auth_tried: false,
                cancelling: None,
                ring_timeout: req.ring_timeout,
                limit: req.limit,
                ack: None,
                link: req.link,
                on_failure: req.on_failure.clone(),
            })),
            session: None,
            refresh_every: 0,
        };
        self.insert_leg(id, leg);
        let identity = Identity {
            name: req.to.clone(),
            call_id: self.legs[&id].call_id.clone(),
            source: ip,
            // the SIP leg carries a link: the room treats it as one
            kind: if req.link {
                LegKind::Link
            } else {
                LegKind::Sip
            },
        };
        let stage = Stage::Dialing {
            moderator: req.moderator && !req.link,
        };
        let options = req.end_on_exit.then(|| super::routing::CallOptions {
            end_on_exit: true,
            ..Default::default()
        });
        let part = Participant::new(stage, identity, options);
        self.with_room(now, room, |r, ctx| r.join(ctx, id, part));
        tracing::info!(leg = %id, %room, to = %LogSafe(&req.to), "dialling out");
        // the INVITE's offer announces the port: it goes out once the port is bound
        self.bind_media(id);
        Ok(id)
    }

    /// An outbound leg's port is bound: send its INVITE and start ringing.
    pub(super) fn start_dial(&mut self, now: Instant, id: LegId) {
        let Some(ring) = self
            .legs
            .get(&id)
            .and_then(|l| l.dial.as_ref())
            .map(|d| d.ring_timeout)
        else {
            return;
        };
        self.send_invite(now, id, None);
        self.timers
            .set(CoreTimer::Leg(id, LegTimer::Ring), now + ring);
    }

    /// An outbound leg failed before its INVITE could go out.
    pub(super) fn dial_failed(&mut self, now: Instant, id: LegId, why: &str) {
        self.dial_over(now, id, DialStatus::Failed, why.to_string());
    }

    /// Send (or, with credentials, re-send) the INVITE of an outbound leg.
    fn send_invite(&mut self, now: Instant, id: LegId, authorization: Option<(&str, String)>) {
        let branch = format!("z9hG4bK{}", self.rng.token());
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let local = self.local_sdp(leg);
        let Some(d) = leg.dial.as_ref() else { return };
        let body = if d.link {
            sdp::offer_wideband(&local, Direction::SendRecv)
        } else {
            sdp::offer(&local, Direction::SendRecv)
        };
        let link = d.link.then(|| leg.room.clone());
        let cseq = if d.invite.is_empty() {
            d.cseq
        } else {
            d.cseq + 1
        };
        let target = d.target.clone();
        let mut m = uac_request(
            &self.cfg.sent_by(leg.peer),
            leg,
            Method::Invite,
            target,
            &branch,
            cseq,
            &leg.remote_uri,
        );
        m.body = body;
        m.push("Contact", self.contact(leg.peer));
        if let Some((name, value)) = authorization {
            m.push(name, value);
        }
        m.push("Allow", super::ALLOW);
        m.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(room) = link {
            m.push(LINK_HEADER, room);
        }
        m.push("Content-Type", "application/sdp");
        let data = m.to_bytes();
        let peer = leg.peer;
        let t1 = self.cfg.timers.t1;
        let leg = self.legs.get_mut(&id).expect("leg checked above");
        let d = leg.dial.as_mut().expect("outbound leg");
        self.dial_branches.remove(&d.branch);
        d.branch = branch.clone();
        d.invite = data.clone();
        d.cseq = cseq;
        d.interval = t1;
        d.provisional = false;
        leg.local_cseq = cseq;
        self.dial_branches.insert(branch, id);
        self.out.push_back(Output::Transmit { to: peer, data });
        // a new attempt (the auth retry) replaces the last one's timers
        self.timers.set(CoreTimer::Leg(id, LegTimer::A), now + t1);
        let b = now + self.cfg.timers.timeout();
        self.timers.set(CoreTimer::Leg(id, LegTimer::B), b);
    }

    /// Timer A: retransmit an INVITE nobody has answered yet (doubling, no cap).
    pub(super) fn timer_a(&mut self, now: Instant, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let peer = leg.peer;
        let Some(d) = leg.dial.as_mut() else { return };
        if d.provisional || d.answered {
            return;
        }
        d.interval *= 2;
        let (data, next) = (d.invite.clone(), d.interval);
        self.out.push_back(Output::Transmit { to: peer, data });
        self.timers.set(CoreTimer::Leg(id, LegTimer::A), now + next);
    }

    /// Timer B: no final response in 64*T1 (before any provisional, or after our
    /// CANCEL): the attempt has failed.
    pub(super) fn timer_b(&mut self, now: Instant, id: LegId) {
        let Some(d) = self.legs.get(&id).and_then(|l| l.dial.as_ref()) else {
            return;
        };
        if d.answered || (d.provisional && d.cancelling.is_none()) {
            return;
        }
        let status = match (d.provisional, d.cancelling) {
            (true, Some(s)) => s,
            _ => DialStatus::Failed,
        };
        self.dial_over(now, id, status, "408 no response".into());
    }

    /// The ring timeout: CANCEL an outbound call that is still unanswered.
    pub(super) fn ring_timeout(&mut self, now: Instant, id: LegId) {
        let unanswered = self
            .legs
            .get(&id)
            .and_then(|l| l.dial.as_ref())
            .is_some_and(|d| !d.answered && d.cancelling.is_none());
        if unanswered {
            tracing::info!(leg = %id, "no answer within the ring timeout: CANCEL");
            self.cancel_dial(now, id, DialStatus::Unanswered);
        }
    }

    /// Send CANCEL for an outbound INVITE (RFC 3261 §9.1) and wait for its 487.
    /// Before any provisional response a CANCEL may not be sent: it goes out
    /// when one arrives (or Timer B ends the attempt first).
    pub(super) fn cancel_dial(&mut self, now: Instant, id: LegId, why: DialStatus) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let peer = leg.peer;
        let Some(d) = leg.dial.as_mut() else { return };
        d.cancelling = Some(why);
        if !d.provisional {
            return;
        }
        let (branch, target, cseq) = (d.branch.clone(), d.target.clone(), d.cseq);
        let mut m = uac_request(
            &self.cfg.sent_by(leg.peer),
            leg,
            Method::Cancel,
            target,
            &branch,
            cseq,
            &leg.remote_uri,
        );
        m.push("User-Agent", self.cfg.user_agent.clone());
        let data = m.to_bytes();
        self.start_client_txn(now, branch, peer, data);
        // the 487 should follow; if it never does, Timer B ends the attempt
        let b = now + self.cfg.timers.timeout();
        self.timers.set(CoreTimer::Leg(id, LegTimer::B), b);
    }

    /// A response to one of our INVITEs (matched by its branch, from the address
    /// we sent it to).
    pub(super) fn on_dial_response(&mut self, now: Instant, from: Peer, code: u16, msg: &Message) {
        let Some(branch) = msg
            .header("Via")
            .and_then(|v| headers::Via::parse(message::split_list(v)[0]).ok())
            .and_then(|v| v.branch)
        else {
            return;
        };
        let Some(&id) = self.dial_branches.get(&branch) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if from.addr != leg.peer.addr {
            tracing::warn!(leg = %id, source = %from.addr, "response to our INVITE from elsewhere: ignored");
            return;
        }
        let room = leg.room.clone();
        let d = leg
            .dial
            .as_mut()
            .expect("dial_branches holds outbound legs");
        if d.answered {
            // a retransmitted 2xx: our ACK was lost
            if (200..300).contains(&code)
                && let Some(ack) = d.ack.clone()
            {
                self.out.push_back(Output::Transmit {
                    to: from,
                    data: ack,
                });
            }
            return;
        }
        if code < 200 {
            let first = !d.provisional;
            d.provisional = true;
            if first && let Some(why) = d.cancelling {
                // cancelled while nothing had come back yet
                self.cancel_dial(now, id, why);
                return;
            }
            if matches!(code, 180 | 183) && !d.ringing_reported {
                d.ringing_reported = true;
                let to = d.target.clone();
                self.out.push_back(Output::Event(Event::Dial {
                    leg: id,
                    room,
                    to,
                    status: DialStatus::Ringing,
                    reason: None,
                }));
            }
            return;
        }
        if code >= 300 {
            self.ack_failure(id, msg);
            if matches!(code, 401 | 407) && self.answer_challenge(now, id, code, msg) {
                return;
            }
            let reason = format!(
                "{code} {}",
                match &msg.start {
                    StartLine::Response { reason, .. } => reason.as_str(),
                    _ => "",
                }
            );
            let status = match d_cancelling(&self.legs, id) {
                Some(s) if code == 487 => s,
                _ => DialStatus::Failed,
            };
            self.dial_over(now, id, status, reason);
            return;
        }
        self.dial_answered(now, id, msg);
    }

    /// ACK a non-2xx final response, within the INVITE transaction (§17.1.1.3).
    fn ack_failure(&mut self, id: LegId, resp: &Message) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let Some(d) = leg.dial.as_ref() else { return };
        let to = resp.header("To").unwrap_or("");
        let m = uac_request(
            &self.cfg.sent_by(leg.peer),
            leg,
            Method::Ack,
            d.target.clone(),
            &d.branch,
            d.cseq,
            to,
        );
        let data = m.to_bytes();
        self.out.push_back(Output::Transmit { to: leg.peer, data });
    }

    /// Answer a 401/407 once, with the trunk whose host and realm match.
    fn answer_challenge(&mut self, now: Instant, id: LegId, code: u16, msg: &Message) -> bool {
        let Some(leg) = self.legs.get(&id) else {
            return false;
        };
        let Some(d) = leg.dial.as_ref() else {
            return false;
        };
        if d.auth_tried || d.cancelling.is_some() {
            return false;
        }
        let (hdr, answer) = if code == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = Challenge::best(msg.all(hdr)) else {
            tracing::info!(leg = %id, "challenge we cannot answer");
            return false;
        };
        let Ok(uri) = SipUri::parse(&d.target) else {
            return false;
        };
        let host_port = match uri.port {
            Some(p) => format!("{}:{p}", uri.host),
            None => uri.host.clone(),
        };
        // credentials only for the trunk's own host and realm: a target cannot
        // phish them with a challenge naming another realm
        let Some(trunk) = self
            .cfg
            .dialout
            .trunks
            .iter()
            .find(|t| {
                (t.host.eq_ignore_ascii_case(&host_port) || t.host.eq_ignore_ascii_case(&uri.host))
                    && t.realm == challenge.realm
            })
            .cloned()
        else {
            tracing::info!(leg = %id, realm = %LogSafe(&challenge.realm), "no trunk for this host and realm: not answering the challenge");
            return false;
        };
        let cnonce = self.rng.token();
        let value = digest::authorization(
            &challenge,
            &Credentials {
                username: &trunk.username,
                password: &trunk.password,
            },
            "INVITE",
            &d.target,
            &cnonce,
            1,
        );
        if let Some(d) = self.legs.get_mut(&id).and_then(|l| l.dial.as_mut()) {
            d.auth_tried = true;
        }
        tracing::info!(leg = %id, realm = %LogSafe(&challenge.realm), "answering the digest challenge");
        self.send_invite(now, id, Some((answer, value)));
        true
    }

    /// 2xx: the dialog is up; ACK it, bring the media up and the leg into its room.
    fn dial_answered(&mut self, now: Instant, id: LegId, msg: &Message) {
        let answer = SessionDescription::parse(&msg.body)
            .ok()
            // an answer: the key it takes is the one we offered (we offer none)
            .and_then(|sd| sdp::select_audio(&sd, || None).ok());
        let to = msg.header("To").unwrap_or("").to_string();
        let remote_tag = NameAddr::parse(&to, "To")
            .ok()
            .and_then(|n| n.tag().map(str::to_string))
            .unwrap_or_default();
        let contact = msg
            .header("Contact")
            .filter(|c| !headers::has_control(c))
            .and_then(|c| NameAddr::parse(message::split_list(c)[0], "Contact").ok())
            .map(|n| n.uri);
        let mut route_set = msg.list("Record-Route");
        // UAC route set: Record-Route reversed (RFC 3261 §12.1.2)
        route_set.reverse();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.remote_tag = remote_tag;
        leg.remote_uri = to;
        if let Some(c) = contact {
            leg.remote_target = c;
        }
        leg.route_set = route_set;
        leg.state = LegState::Confirmed;
        let d = leg.dial.as_mut().expect("outbound leg");
        d.answered = true;
        let target = d.target.clone();
        let cseq = d.cseq;
        let limit = d.limit;
        let link = d.link;
        let branch = format!("z9hG4bK{}", self.rng.token());
        let uri = leg.remote_target.clone();
        let mut m = uac_request(
            &self.cfg.sent_by(leg.peer),
            leg,
            Method::Ack,
            uri,
            &branch,
            cseq,
            &leg.remote_uri,
        );
        for r in &leg.route_set {
            m.push("Route", r.clone());
        }
        let ack = m.to_bytes();
        if let Some(d) = leg.dial.as_mut() {
            d.ack = Some(ack.clone());
        }
        let peer = leg.peer;
        self.out.push_back(Output::Transmit {
            to: peer,
            data: ack,
        });
        self.dialogs
            .insert((leg.call_id.clone(), leg.local_tag.clone()), id);
        let room = leg.room.clone();
        let call_id = leg.call_id.clone();
        let local = NameAddr::parse(&leg.local_uri, "From")
            .map(|n| n.uri)
            .unwrap_or_default();
        let Some((_, params)) = answer else {
            tracing::info!(leg = %id, "2xx without a usable SDP answer: BYE");
            self.out.push_back(Output::Event(Event::Dial {
                leg: id,
                room,
                to: target,
                status: DialStatus::Failed,
                reason: Some("no usable SDP answer".into()),
            }));
            self.end_leg(now, id, true, super::LeftReason::Error);
            return;
        };
        let leg = self.legs.get_mut(&id).expect("leg checked above");
        leg.media = Some(media_params(&params, peer.addr.ip(), leg.ssrc));
        let moderator = self
            .rooms
            .get_mut(room.as_str())
            .is_some_and(|r| r.answered(id));
        self.out.push_back(Output::Event(Event::Dial {
            leg: id,
            room: room.clone(),
            to: target.clone(),
            status: DialStatus::Answered,
            reason: None,
        }));
        self.out.push_back(Output::Event(Event::Joined {
            leg: id,
            room: room.clone(),
            call_id,
            from: local,
            to: target,
            outbound: true,
        }));
        self.sync_media(now, id);
        if moderator {
            self.with_room(now, &room, Room::release_waiting);
        }
        let max = limit.map_or(self.cfg.dialout.max_duration, |l| {
            l.min(self.cfg.dialout.max_duration)
        });
        // a link to a trusted bridge lasts until unlinked
        if !link {
            self.timers
                .set(CoreTimer::Leg(id, LegTimer::MaxDuration), now + max);
        }
        tracing::info!(leg = %id, %room, "outbound call answered");
    }

    /// An outbound attempt ended without a call: report it and drop the leg.
    fn dial_over(&mut self, now: Instant, id: LegId, status: DialStatus, reason: String) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let (room, to) = (
            leg.room.clone(),
            leg.dial
                .as_ref()
                .map(|d| d.target.clone())
                .unwrap_or_default(),
        );
        tracing::info!(leg = %id, %room, status = status.as_str(), reason = %LogSafe(&reason), "outbound call not connected");
        let sync = leg
            .dial
            .as_ref()
            .and_then(|d| d.on_failure.clone())
            .filter(|_| status != DialStatus::Cancelled);
        self.out.push_back(Output::Event(Event::Dial {
            leg: id,
            room: room.clone(),
            to: to.clone(),
            status,
            reason: Some(reason),
        }));
        if let Some((caller, url)) = sync {
            // the caller stays: the eventUrl's NCCO takes it on
            if let Some(r) = self.rooms.get_mut(room.as_str()) {
                r.keep_on_exit(id);
            }
            self.out
                .push_back(Output::ConnectFailed(super::routing::ConnectFailed {
                    caller,
                    url,
                    to,
                    status: status.as_str(),
                }));
        }
        self.end_leg(now, id, false, super::LeftReason::Error);
    }

    /// Timer: an answered outbound call has lasted `max_duration`.
    pub(super) fn max_duration(&mut self, now: Instant, id: LegId) {
        if self
            .legs
            .get(&id)
            .and_then(|l| l.dial.as_ref())
            .is_some_and(|d| d.answered)
        {
            tracing::warn!(leg = %id, "outbound call reached max_duration: BYE");
            self.end_leg(now, id, true, super::LeftReason::Timeout);
        }
    }

    /// Forget an outbound leg's transaction (it is ending).
    pub(super) fn forget_dial(&mut self, leg: &Leg) {
        if let Some(d) = &leg.dial {
            self.dial_branches.remove(&d.branch);
        }
    }
}

/// A request of ours in an outbound leg's INVITE transaction or dialog, with the
/// headers they all share (RFC 3261 §8.1.1): Via with `branch`, Max-Forwards, From
/// with our tag, `to`, Call-ID, CSeq.
fn uac_request(
    sent_by: &str,
    leg: &Leg,
    method: Method,
    uri: String,
    branch: &str,
    cseq: u32,
    to: &str,
) -> Message {
    let name = method.as_str().to_string();
    let mut m = Message {
        start: StartLine::Request { method, uri },
        headers: Vec::new(),
        body: Vec::new(),
    };
    m.push(
        "Via",
        format!(
            "SIP/2.0/{} {sent_by};branch={branch};rport",
            leg.peer.transport.via_proto()
        ),
    );
    m.push("Max-Forwards", "70");
    m.push("From", format!("{};tag={}", leg.local_uri, leg.local_tag));
    m.push("To", to.to_string());
    m.push("Call-ID", leg.call_id.clone());
    m.push("CSeq", format!("{cseq} {name}"));
    m
}

fn d_cancelling(legs: &std::collections::HashMap<LegId, Leg>, id: LegId) -> Option<DialStatus> {
    legs.get(&id)
        .and_then(|l| l.dial.as_ref())
        .and_then(|d| d.cancelling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_ids_are_plain() {
        assert!(valid_caller_id("+4930123"));
        assert!(!valid_caller_id("a\r\nVia: x"));
        assert!(!valid_caller_id(""));
    }

    #[test]
    fn trunk_debug_hides_the_password() {
        let t = TrunkCredentials {
            host: "127.0.0.1".into(),
            realm: "r".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
