//! WebSocket legs as signalling holds them: an NCCO `connect` to a websocket
//! endpoint (Vonage's Voice API WebSockets) puts a leg in the caller's room
//! whose media goes to and comes from a WebSocket server. The connection is the
//! driver's (a gateway task turning the leg's RTP into 20 ms binary frames of
//! 16-bit PCM and back); here is the leg: placed while the server is being
//! reached, in the room once it accepts, gone when it closes. Like a `connect`
//! to SIP, the room ends with either side.

use std::time::Instant;

use super::leg::Leg;
use super::room::{Identity, LegKind, Participant, Stage};
use super::routing::{CallOptions, SocketTarget};
use super::{Core, Event, LeftReason, LegId, Output, Room};
use crate::media::contract::{MediaParams, TransportSpec};
use crate::sdp::{CodecKind, Direction};

/// The payload type of the gateway's RTP (dynamic; it never appears in SDP).
pub const L16_PT: u8 = 96;

/// A WebSocket server to reach for leg `leg`; answer with [`Core::socket_up`]
/// or [`Core::socket_down`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRequest {
    /// the WebSocket leg
    pub leg: LegId,
    /// the call whose NCCO asked for it
    pub caller: LegId,
    /// the caller's Call-ID (Vonage's conversation)
    pub conversation: String,
    /// the caller's URI
    pub from: String,
    /// where, at what rate, with what headers
    pub target: SocketTarget,
}

impl Core {
    /// An NCCO `connect` to a websocket: the leg is placed in the caller's
    /// room and the driver asked to reach the server.
    pub(super) fn connect_socket(
        &mut self,
        now: Instant,
        caller: LegId,
        room: &str,
        target: SocketTarget,
    ) {
        let Some(c) = self.legs.get(&caller) else {
            return;
        };
        let (conversation, from, source) =
            (c.call_id.clone(), c.remote_uri.clone(), c.peer.addr.ip());
        let id = LegId(self.next_leg);
        self.next_leg += 1;
        let call_id = format!("websocket-{}", self.rng.token());
        let params = MediaParams {
            codec: CodecKind::L16,
            pt: L16_PT,
            dtmf_pt: None,
            peer_direction: Direction::SendRecv,
            ssrc: self.rng.next_u64() as u32,
            ptime_ms: 20,
        };
        let mut leg = Leg::without_dialog(
            LegKind::WebSocket,
            room,
            call_id.clone(),
            target.uri.clone(),
            source,
            (params, TransportSpec::Pipe),
        );
        leg.remote_target = target.uri.clone();
        self.insert_leg(id, leg);
        let identity = Identity {
            name: target.uri.clone(),
            call_id,
            source,
            kind: LegKind::WebSocket,
        };
        let options = CallOptions {
            end_on_exit: true,
            ..Default::default()
        };
        let part = Participant::new(Stage::Dialing { moderator: true }, identity, Some(options));
        self.with_room(now, room, |r, ctx| r.join(ctx, id, part));
        tracing::info!(leg = %id, %room, uri = %crate::util::LogSafe(&target.uri), "connecting to a WebSocket");
        self.out.push_back(Output::Socket(SocketRequest {
            leg: id,
            caller,
            conversation,
            from,
            target,
        }));
    }

    /// The WebSocket server of leg `id` accepted, and its pipe is staged with
    /// the media engine: the leg is in. False when the leg is gone meanwhile
    /// (the caller hung up): the driver closes the connection.
    pub fn socket_up(&mut self, now: Instant, id: LegId) -> bool {
        let Some(leg) = self.legs.get(&id).filter(|l| l.kind == LegKind::WebSocket) else {
            return false;
        };
        let (room, call_id, uri) = (
            leg.room.clone(),
            leg.call_id.clone(),
            leg.remote_target.clone(),
        );
        let moderator = self
            .rooms
            .get_mut(room.as_str())
            .is_some_and(|r| r.answered(id));
        self.out.push_back(Output::Event(Event::Joined {
            leg: id,
            room: room.clone(),
            call_id,
            from: room.clone(),
            to: uri,
            outbound: true,
        }));
        self.sync_media(now, id);
        if moderator {
            self.with_room(now, &room, Room::release_waiting);
        }
        tracing::info!(leg = %id, %room, "WebSocket connected");
        true
    }

    /// The WebSocket of leg `id` could not be reached (`why`, reported as an
    /// `error` of the `caller`), or closed (`None`): the leg ends, and with it
    /// the caller's room.
    pub fn socket_down(&mut self, now: Instant, id: LegId, caller: LegId, why: Option<String>) {
        let Some(leg) = self.legs.get(&id).filter(|l| l.kind == LegKind::WebSocket) else {
            return;
        };
        let room = leg.room.clone();
        let reason = match why {
            Some(why) => {
                tracing::warn!(leg = %id, %room, error = %why, "WebSocket connect failed: the call ends");
                self.out.push_back(Output::Event(Event::Error {
                    leg: caller,
                    room: room.clone(),
                    detail: format!("connect {}: {why}", leg.remote_target),
                }));
                LeftReason::Refused
            }
            None => LeftReason::Hangup,
        };
        self.end_leg(now, id, false, reason);
    }
}
