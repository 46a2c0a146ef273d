//! A leg as signalling holds it: its dialog state (RFC 3261 §12), the INVITE
//! being answered, its RTP port and media, and how a leg ends (media closed,
//! port freed, BYE or a final response, its room told).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::transaction::TxnKey;
use super::{Core, Event, LeftReason, LegId, Output, Peer, dialout, session_timer};

use crate::media::contract::{MediaCommand, MediaParams, TransportSpec};
use crate::sdp::{AudioParams, SessionDescription};
use crate::sip::message::{Message, Method};
use crate::sip::status::Reject;
use crate::util::LogSafe;

/// What a leg is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LegState {
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
pub(super) struct Leg {
    /// a SIP call, or a browser (no dialog: nothing to send it but media)
    pub(super) kind: super::LegKind,
    pub(super) room: String,
    pub(super) call_id: String,
    pub(super) local_tag: String,
    pub(super) remote_tag: String,
    /// From of the INVITE (the peer's identity), with tag
    pub(super) remote_uri: String,
    /// To of the INVITE (our identity), without tag
    pub(super) local_uri: String,
    pub(super) remote_target: String,
    pub(super) route_set: Vec<String>,
    pub(super) remote_cseq: u32,
    pub(super) local_cseq: u32,
    pub(super) peer: Peer,
    pub(super) state: LegState,
    /// server transaction of the INVITE being answered (initial or re-INVITE)
    pub(super) invite_txn: Option<TxnKey>,
    /// 2xx awaiting ACK: (bytes, CSeq, retransmit interval)
    pub(super) ok: Option<(Vec<u8>, u32, Duration)>,
    /// we sent the offer in a 2xx and wait for the answer in ACK
    pub(super) offer_in_ok: bool,
    pub(super) port: u16,
    /// where the leg's RTP is bound, and the address SDP gives for it
    pub(super) media_addr: (IpAddr, IpAddr),
    /// its RTP port is bound (the answer or offer may announce it)
    pub(super) bound: bool,
    /// ports tried for it that could not be bound
    pub(super) bind_failures: u16,
    pub(super) sdp_version: u64,
    pub(super) session_id: u64,
    /// negotiated media and where it goes
    pub(super) media: Option<(MediaParams, TransportSpec)>,
    pub(super) ssrc: u32,
    pub(super) media_open: bool,
    /// the INVITE being answered and its offer, kept until the 2xx is built
    pub(super) pending: Option<Box<PendingInvite>>,
    /// the INVITE client transaction of an outbound leg
    pub(super) dial: Option<Box<dialout::Dial>>,
    /// session timer the INVITE/UPDATE being answered asked for (RFC 4028)
    pub(super) session: Option<session_timer::SessionTimer>,
    /// our refreshes go at this interval, s (we are the refresher)
    pub(super) refresh_every: u32,
}

/// An offer: the description, the index of the audio m-line we take, its parameters.
pub(super) type Offer = (SessionDescription, usize, AudioParams);

#[derive(Debug, Clone)]
pub(super) struct PendingInvite {
    pub(super) req: Message,
    pub(super) offer: Option<Offer>,
}

impl Leg {
    /// A leg signalled outside SIP (a browser by WHIP, a WebSocket server of an
    /// NCCO `connect`): no dialog, no transaction, no RTP port of ours, its
    /// media ready to open as `media` says.
    pub(super) fn without_dialog(
        kind: super::LegKind,
        room: &str,
        call_id: String,
        name: String,
        source: IpAddr,
        media: (MediaParams, TransportSpec),
    ) -> Leg {
        let addr = std::net::SocketAddr::new(source, 0);
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        Leg {
            kind,
            room: room.to_string(),
            call_id,
            local_tag: String::new(),
            remote_tag: String::new(),
            remote_uri: name,
            local_uri: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: 0,
            peer: Peer {
                transport: super::Transport::Udp,
                addr,
                local: addr,
            },
            state: LegState::Confirmed,
            invite_txn: None,
            ok: None,
            offer_in_ok: false,
            port: 0,
            media_addr: (unspecified, unspecified),
            bound: true,
            bind_failures: 0,
            sdp_version: 1,
            session_id: 0,
            ssrc: media.0.ssrc,
            media: Some(media),
            media_open: false,
            pending: None,
            dial: None,
            session: None,
            refresh_every: 0,
        }
    }
}

impl Core {
    pub(super) fn insert_leg(&mut self, id: LegId, leg: Leg) {
        *self.legs_from.entry(leg.peer.addr.ip()).or_default() += 1;
        self.legs.insert(id, leg);
    }

    pub(super) fn remove_leg(&mut self, id: LegId) -> Option<Leg> {
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

    /// Remove a leg: media closed, port freed, room left; BYE sent if asked.
    pub(super) fn end_leg(&mut self, now: Instant, id: LegId, send_bye: bool, why: LeftReason) {
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
        let send_bye = send_bye && leg.kind == super::LegKind::Sip;
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
        if leg.kind == super::LegKind::Link {
            self.link_leg_ended(now, id);
        }
    }

    pub(super) fn end_all(&mut self, now: Instant) {
        let ids: Vec<LegId> = self.legs.keys().copied().collect();
        for id in ids {
            self.end_leg(now, id, true, LeftReason::Ended);
        }
    }

    pub(super) fn send_bye(&mut self, now: Instant, leg: &Leg) {
        let (branch, data) =
            self.in_dialog_request(leg, Method::Bye, leg.local_cseq.wrapping_add(1), &[]);
        // In-dialog requests go back on the flow the INVITE came from (RFC 5626-style
        // flow reuse): the bridge never resolves or trusts a Contact address.
        self.start_client_txn(now, branch, leg.peer, data);
    }
}
