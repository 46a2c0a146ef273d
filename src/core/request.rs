//! Requests in: parse, check (RFC 3261 §8.2), count for flood control, and hand
//! each to its transaction, its dialog, or the handling of a new request.

use std::time::{Duration, Instant};

use super::timers::{CoreTimer, TxnTimer};
use super::transaction::{ServerState, ServerTxn, TxnKey};
use super::{Core, Output, Peer, flood};

use crate::sip::headers;
use crate::sip::headers::{RequestHeaders, SipUri, UriError};
use crate::sip::message::{Message, Method, StartLine};
use crate::sip::status::{ALLOW, Reject};

impl Core {
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

    pub(super) fn on_request(&mut self, now: Instant, from: Peer, msg: Message) {
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
    pub(super) fn knows(&self, key: &TxnKey, h: &RequestHeaders, method: &Method) -> bool {
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
}
