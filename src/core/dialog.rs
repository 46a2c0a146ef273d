//! Requests within a dialog (RFC 3261 §12.2): ACK, CANCEL (§9.2), BYE, re-INVITE
//! and UPDATE (RFC 3311), INFO with DTMF, and the requests we send in a dialog.

use std::time::Instant;

use super::leg::{Leg, LegState, PendingInvite};
use super::offer::{media_params, read_offer_and_session};
use super::timers::{CoreTimer, LegTimer};
use super::transaction::{ServerState, TxnKey};
use super::{Core, LeftReason, LegId, Peer, Transport};

use crate::sdp;
use crate::sdp::SessionDescription;
use crate::sip::headers::{NameAddr, RequestHeaders};
use crate::sip::message;
use crate::sip::message::{Message, Method, StartLine};
use crate::sip::status::{ALLOW, Reject};

/// A digit from an INFO body (`application/dtmf-relay` `Signal=5`, or
/// `application/dtmf` with the digit alone).
pub(super) fn dtmf_in_info(msg: &Message) -> Option<char> {
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

impl Core {
    pub(super) fn find_dialog(&self, h: &RequestHeaders) -> Option<LegId> {
        let tag = h.to.tag()?;
        let id = *self.dialogs.get(&(h.call_id.clone(), tag.to_string()))?;
        let leg = self.legs.get(&id)?;
        (leg.remote_tag == h.from.tag().unwrap_or("")).then_some(id)
    }

    pub(super) fn on_ack(&mut self, now: Instant, _from: Peer, h: &RequestHeaders, msg: &Message) {
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
            // an answer to our offer, which carried no key
            .and_then(|sd| sdp::select_audio(&sd, || None).ok());
        let Some((_, params)) = answer else {
            tracing::info!(leg = %id, "ACK carried no usable SDP answer: ending the call");
            self.end_leg(now, id, true, LeftReason::Error);
            return;
        };
        let leg = self.legs.get_mut(&id).expect("leg checked above");
        leg.media = Some(media_params(&params, leg.peer.addr.ip(), leg.ssrc));
        self.sync_media(now, id);
    }

    pub(super) fn on_cancel(
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
        if let Some(invite) = self
            .unpark(&invite_key)
            .or_else(|| self.unclaim(&invite_key))
        {
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

    pub(super) fn in_dialog(
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
                let (offer, session) =
                    match read_offer_and_session(&msg, self.cfg.srtp, self.cfg.srtp_keys) {
                        Ok(x) => x,
                        Err(r) => return self.reject(now, key, &msg, from, r),
                    };
                if self.downgrades(id, &offer) {
                    return self.reject(now, key, &msg, from, Reject::NotAcceptableHere);
                }
                let mut extra = vec![("Contact", self.contact_for(from, &msg))];
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

    pub(super) fn reinvite(
        &mut self,
        now: Instant,
        from: Peer,
        key: &TxnKey,
        id: LegId,
        msg: Message,
    ) {
        let leg = &self.legs[&id];
        if leg.ok.is_some() || leg.pending.is_some() {
            // the previous INVITE is not finished (RFC 3261 §14.2)
            return self.reject(now, key, &msg, from, Reject::ServerError(Some(1)));
        }
        let (offer, session) = match read_offer_and_session(&msg, self.cfg.srtp, self.cfg.srtp_keys)
        {
            Ok(x) => x,
            Err(r) => return self.reject(now, key, &msg, from, r),
        };
        if self.downgrades(id, &offer) {
            tracing::info!(leg = %id, "re-offer refused: the room requires SRTP");
            return self.reject(now, key, &msg, from, Reject::NotAcceptableHere);
        }
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

    /// Send a request within a leg's dialog (a session refresh), with the next CSeq.
    pub(super) fn send_in_dialog(
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
    pub(super) fn in_dialog_request(
        &mut self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        extra: &[(&str, String)],
    ) -> (String, Vec<u8>) {
        let (branch, m) = self.in_dialog_message(leg, method, cseq, extra);
        (branch, m.to_bytes())
    }

    /// Send a request with a body within a leg's dialog, with the next CSeq.
    pub(super) fn send_in_dialog_with_body(
        &mut self,
        now: Instant,
        id: LegId,
        method: Method,
        content_type: &str,
        body: Vec<u8>,
    ) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.local_cseq = leg.local_cseq.wrapping_add(1);
        let leg = leg.clone();
        let (branch, mut m) = self.in_dialog_message(&leg, method, leg.local_cseq, &[]);
        m.push("Content-Type", content_type);
        m.body = body;
        self.start_client_txn(now, branch, leg.peer, m.to_bytes());
    }

    fn in_dialog_message(
        &mut self,
        leg: &Leg,
        method: Method,
        cseq: u32,
        extra: &[(&str, String)],
    ) -> (String, Message) {
        let branch = format!("z9hG4bK{}", self.rng.token());
        let proto = leg.peer.transport.via_proto();
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
        (branch, m)
    }

    /// Our Contact in a response to `req` on flow `via`: a SIPS URI when the
    /// request's was and it came over TLS (RFC 5630 §3.1.3).
    pub(super) fn contact_for(&self, via: Peer, req: &Message) -> String {
        let sips = matches!(&req.start, StartLine::Request { uri, .. }
            if uri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")));
        if sips && matches!(via.transport, Transport::Tls(_)) {
            format!("<sips:caucus@{}>", self.cfg.sent_by(via))
        } else {
            self.contact(via)
        }
    }

    pub(super) fn contact(&self, via: Peer) -> String {
        let t = match via.transport {
            Transport::Udp => "",
            Transport::Tcp(_) => ";transport=tcp",
            Transport::Tls(_) => ";transport=tls",
        };
        format!("<sip:caucus@{}{t}>", self.cfg.sent_by(via))
    }
}
