//! A new INVITE (RFC 3261 §13.3): where it goes (room, decoy, answer webhook),
//! whether it is admitted, the leg it creates, ringing, and the 2xx.

use std::time::{Duration, Instant};

use super::leg::{Leg, LegState, PendingInvite};
use super::offer::{accepts_sdp, media_params, read_offer_and_session};
use super::room::{DECOY_ROOM, Identity, LegKind, Participant, Room, Stage};
use super::timers::{CoreTimer, LegTimer, TxnTimer};
use super::transaction::{ServerState, TxnKey};
use super::{Core, Event, LegId, Output, Peer, RoomId, routing};
use crate::sdes::SrtpMode;

use crate::sdp;
use crate::sdp::Direction;
use crate::sip::headers::{NameAddr, RequestHeaders, SipUri};
use crate::sip::message::{Message, StartLine};
use crate::sip::status::{ALLOW, Reject};
use crate::sip::{headers, message};
use crate::util::LogSafe;

impl Core {
    pub(super) fn on_invite(
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
        let (offer, session) = match read_offer_and_session(&msg, self.cfg.srtp, self.cfg.srtp_keys)
        {
            Ok(x) => x,
            Err(r) => return self.reject(now, &key, &msg, from, r),
        };
        // a call the webhook was asked about keeps the uuid it was asked with
        let mut asked_as = None;
        let decision = if self.cfg.answer_webhook {
            match self.decided.remove(&key) {
                Some((token, d)) => {
                    asked_as = Some(LegId(token));
                    Some(d)
                }
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
        // the webhook's answer, to be had again if the call waits for a claim
        let redo = decision.clone().zip(asked_as).map(|(d, t)| (t.0, d));
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
        // a room link from another bridge (its POST …/links {"uri"}): heeded
        // only from a trusted source; from anyone else it is an ordinary call
        let link = msg.header(super::dialout::LINK_HEADER).is_some() && self.flood.is_trusted(src);
        let allowed = match self.rooms.get(room.as_str()).filter(|r| r.is_defined()) {
            Some(r) if link || r.policy().admits(src, &caller) => true,
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
        // SRTP required by the bridge or the room: a plain offer (or none, which
        // would have us offer plain RTP) gets 488 (RFC 3264 §6)
        let secure = offer.as_ref().is_some_and(|(_, _, p)| p.srtp.is_some());
        let room_requires = self
            .rooms
            .get(room.as_str())
            .is_some_and(|r| r.policy().require_srtp);
        if !secure && !link && (self.cfg.srtp == SrtpMode::Require || room_requires) {
            tracing::info!(%room, "caller refused: SRTP required, not offered");
            return self.reject(now, &key, &msg, from, Reject::NotAcceptableHere);
        }
        // a caller a room's holder sent here to its satellite is admitted here
        let satellite_of = (room != DECOY_ROOM && !link)
            .then(|| super::cluster::cascade_holder(&msg))
            .flatten();
        if room != DECOY_ROOM
            && !link
            && satellite_of.is_none()
            && (self.claim_first(&room, (from, key.clone(), &msg), redo.clone())
                || self.cascade_first(now, &room, (from, key.clone(), &msg), redo))
        {
            return; // back through cluster::claimed or cascade_found
        }
        let arrival = match self.rooms.get(room.as_str()) {
            // no PIN, no wait, not counted against max_participants
            Some(_) if link => Ok(Stage::Joined { moderator: false }),
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
        let id = asked_as.unwrap_or_else(|| {
            self.next_leg += 1;
            LegId(self.next_leg - 1)
        });
        let remote_target = msg
            .header("Contact")
            .and_then(|c| NameAddr::parse(message::split_list(c)[0], "Contact").ok())
            .map(|n| n.uri)
            .unwrap_or_else(|| h.from.uri.clone());
        let local_tag = self.rng.token();
        let session_id = self.rng.next_u64() >> 1;
        let mut leg = Leg {
            kind: LegKind::Sip,
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
            self.success(now, src);
        }
        self.dialogs.insert((h.call_id.clone(), local_tag), id);
        self.insert_leg(id, leg);
        let identity = Identity {
            name: caller,
            call_id: h.call_id.clone(),
            source: src,
            kind: if link { LegKind::Link } else { LegKind::Sip },
        };
        if link {
            tracing::info!(leg = %id, %room, source = %src, "room link from another bridge");
        }
        let part = Participant::new(stage, identity, options);
        if room == DECOY_ROOM {
            self.rooms
                .entry(RoomId::reserved(DECOY_ROOM))
                .or_insert_with(Room::decoy);
        }
        self.with_room(now, &room, |r, ctx| r.join(ctx, id, part));
        tracing::info!(leg = %id, %room, call_id = %LogSafe(&h.call_id), "INVITE accepted");
        if let Some(holder) = satellite_of {
            self.satellite_joined(now, &room, holder, from.local);
        }
        // the answer announces the port: it goes out once the port is bound
        self.bind_media(id);
    }

    /// An inbound leg's port is bound: answer, or ring first.
    pub(super) fn proceed_invite(&mut self, now: Instant, id: LegId) {
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
        r.push("Contact", self.contact_for(from, &p.req));
        let data = r.to_bytes();
        if let Some(tx) = leg.invite_txn.as_ref().and_then(|k| self.server.get_mut(k)) {
            tx.last = Some(data.clone());
        }
        self.out.push_back(Output::Transmit { to: from, data });
        self.timers
            .set(CoreTimer::Leg(id, LegTimer::Answer), now + after);
    }

    /// Handle a parked INVITE again, now that its route is decided.
    pub(super) fn handle_parked(&mut self, now: Instant, p: routing::Parked) {
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

    /// Send the 2xx for a leg's pending INVITE (initial or re-INVITE).
    pub(super) fn answer(&mut self, now: Instant, id: LegId) {
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
        r.push("Contact", self.contact_for(peer, &req));
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
        let to = NameAddr::parse(&leg.local_uri, "To")
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
                room: room.clone(),
                call_id,
                from,
                to,
                outbound: false,
            }));
            // what its NCCO asked for and could not have, after it is known
            let errors = self
                .rooms
                .get(room.as_str())
                .map(|r| r.call_errors(id))
                .unwrap_or_default();
            self.connect(now, id, &room);
            for detail in errors {
                self.out.push_back(Output::Event(Event::Error {
                    leg: id,
                    room: room.clone(),
                    detail,
                }));
            }
        }
    }
}
