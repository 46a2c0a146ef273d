//! Responses out and responses in: building a response to a request (RFC 3261
//! §8.2.6), sending it on its server transaction, rejections by [`Reject`], and
//! client transactions for the requests we send (§17.1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timers::{ClientTimer, CoreTimer, TxnTimer};
use super::transaction::{ClientTxn, ServerState, TxnKey};
use super::{Core, Output, Peer};

use crate::sip::headers::{NameAddr, Via};
use crate::sip::message::{Message, StartLine};
use crate::sip::status::{Reject, reason};
use crate::sip::{headers, message};

/// RFC 3261 §18.2.2: record where the request really came from in the top Via, and
/// fill `rport` (RFC 3581) when asked.
pub(super) fn received_via(via: &str, src: SocketAddr) -> String {
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

impl Core {
    /// Answer a message we could not parse, if it is a request with enough headers
    /// for a response to be routed back (RFC 3261 §8.2: 400, or 505 for the version).
    pub(super) fn reject_unparsable(&mut self, from: Peer, data: &[u8], status: u16) {
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

    pub(super) fn response(
        &self,
        req: &Message,
        from: Peer,
        code: u16,
        to_tag: Option<&str>,
    ) -> Message {
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

    pub(super) fn reply(
        &mut self,
        req: &Message,
        from: Peer,
        code: u16,
        extra: &[(&str, String)],
    ) -> Vec<u8> {
        self.reply_body(req, from, code, extra, Vec::new())
    }

    pub(super) fn reply_body(
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
    pub(super) fn reply_txn(
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
    pub(super) fn reject(
        &mut self,
        now: Instant,
        key: &TxnKey,
        req: &Message,
        from: Peer,
        r: Reject,
    ) {
        self.reply_txn(now, key, req, from, r.code(), &r.headers());
    }

    /// [`Core::reply_txn`] with a body.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply_txn_body(
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

    /// Send a non-INVITE request as a client transaction (RFC 3261 §17.1.2:
    /// Timer E retransmits over UDP, Timer F gives up).
    pub(super) fn start_client_txn(
        &mut self,
        now: Instant,
        branch: String,
        peer: Peer,
        data: Vec<u8>,
    ) {
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

    pub(super) fn on_response(&mut self, now: Instant, from: Peer, code: u16, msg: &Message) {
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
