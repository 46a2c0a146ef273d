//! Offer/answer for a leg (RFC 3264): reading an offer, what our SDP says, and
//! keeping the media side in line with what was negotiated (bind the port,
//! open, update), plus what the media side reports about a leg.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::leg::{Leg, Offer};
use super::session_timer::{self, SessionTimer};
use super::{Core, LeftReason, LegId, Output, PORT_COOL_OFF, Peer};

use crate::media::contract::{MediaCommand, MediaParams, TransportSpec, Treatment};
use crate::sdes::{KeySource, SrtpMode};
use crate::sdp;
use crate::sdp::{AudioParams, LocalSdp, SessionDescription};
use crate::sip::message::Message;
use crate::sip::status::Reject;

/// Media parameters and the RTP transport from an offer/answer. The remote
/// address is the c= IP literal; a hostname is never resolved: symmetric RTP
/// starts at the signalling source IP.
pub(super) fn media_params(
    p: &AudioParams,
    signalling_ip: IpAddr,
    ssrc: u32,
) -> (MediaParams, TransportSpec) {
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
    (
        params,
        TransportSpec::Rtp {
            remote,
            srtp: p.srtp,
        },
    )
}

/// What an INVITE or UPDATE asks for: its offer, if it has one, and the session
/// timer it asks for (RFC 4028), or how to refuse it. `srtp` is the bridge's
/// SRTP policy: off, offered keys are ignored and an SRTP-only offer is
/// refused; required, an offer without keys is (a room's own requirement is
/// the room's to judge).
pub(super) fn read_offer_and_session(
    msg: &Message,
    srtp: SrtpMode,
    keys: KeySource,
) -> Result<(Option<Offer>, Option<SessionTimer>), Reject> {
    let mut offer = read_offer(msg, keys)?;
    if let Some((sd, idx, params)) = &mut offer {
        match srtp {
            SrtpMode::Off if sd.media[*idx].proto.contains("SAVP") => {
                return Err(Reject::NotAcceptableHere);
            }
            SrtpMode::Off => params.srtp = None,
            SrtpMode::Require if params.srtp.is_none() => return Err(Reject::NotAcceptableHere),
            _ => {}
        }
    }
    let session = session_timer::negotiate(msg).map_err(|e| Reject::IntervalTooSmall(e.min_se))?;
    Ok((offer, session))
}

/// Read the SDP offer of an INVITE/UPDATE: None when there is no body (late
/// offer); the rejection when it is unacceptable. Our SDES key comes from `keys`.
pub(super) fn read_offer(msg: &Message, keys: KeySource) -> Result<Option<Offer>, Reject> {
    if msg.body.is_empty() {
        return Ok(None);
    }
    let ct = msg.header("Content-Type").unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    if !ct.eq_ignore_ascii_case("application/sdp") {
        return Err(Reject::UnsupportedMediaType);
    }
    let sd = SessionDescription::parse(&msg.body).map_err(|e| Reject::BadRequest(e.to_string()))?;
    let (idx, params) = sdp::select_audio(&sd, keys).map_err(|_| Reject::NotAcceptableHere)?;
    Ok(Some((sd, idx, params)))
}

/// Whether the request's Accept (if any) lets us answer with SDP (RFC 3261 §20.1).
pub(super) fn accepts_sdp(msg: &Message) -> bool {
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

impl Core {
    /// Bring a leg's media in line with what was negotiated: open it (out of the
    /// mix while its room says so) and tell the room, or update it.
    pub(super) fn sync_media(&mut self, now: Instant, id: LegId) {
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
        let treatment = self.treatment(&room, id);
        self.out.push_back(Output::Media(MediaCommand::Open {
            leg: id,
            room: room.clone(),
            params,
            transport,
            isolated,
            treatment,
        }));
        self.with_room(now, &room, |r, ctx| r.media_up(ctx, id));
    }

    /// Whether `offer`, a new offer (re-INVITE, UPDATE) on leg `id`, would take
    /// a leg of a `require_srtp` room to plain RTP: refused (488) as the first
    /// offer would have been.
    pub(super) fn downgrades(&self, id: LegId, offer: &Option<Offer>) -> bool {
        let Some((_, _, params)) = offer else {
            return false;
        };
        let Some(leg) = self.legs.get(&id) else {
            return false;
        };
        params.srtp.is_none()
            && leg.kind != super::LegKind::Link
            && self
                .rooms
                .get(leg.room.as_str())
                .is_some_and(|r| r.policy().require_srtp)
    }

    /// What room `room` does to leg `id`'s voice: its `denoise` and `level`,
    /// nothing for a link (the other room's mix, treated there), be it a pipe
    /// between rooms of this node or a SIP leg to another bridge.
    pub(super) fn treatment(&self, room: &str, id: LegId) -> Treatment {
        let pipe = self
            .legs
            .get(&id)
            .is_some_and(|l| l.kind == super::LegKind::Link);
        match self.rooms.get(room) {
            _ if pipe => Treatment::NONE,
            Some(r) if r.is_link(id) => Treatment::NONE,
            Some(r) => r.policy().treatment,
            None => Treatment::default(),
        }
    }

    /// Ask the driver to bind a leg's RTP (and RTCP) port; it answers with
    /// [`Core::media_bound`] before anything else happens.
    pub(super) fn bind_media(&mut self, id: LegId) {
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

    /// Where a leg whose signalling runs on `flow` binds its RTP, and what its SDP
    /// says: `[rtp] address` (when of the flow's family), else the flow's local
    /// address; `[rtp] advertise`, else the bound address unless it is a wildcard.
    pub(super) fn media_addr(&self, flow: Peer) -> (IpAddr, IpAddr) {
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

    pub(super) fn local_sdp(&self, leg: &Leg) -> LocalSdp {
        LocalSdp {
            addr: leg.media_addr.1,
            port: leg.port,
            session_id: leg.session_id,
            version: leg.sdp_version,
        }
    }

    /// Apply a new offer to a leg; returns our answer body.
    pub(super) fn renegotiate(
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
}
