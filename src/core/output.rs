//! What the core asks of its driver ([`Output`]) and what it reports
//! ([`Event`]): transmissions, media commands, route requests, and the events
//! that become logs, metrics and webhooks.

use super::{LegId, Peer, dialout, routing};

use crate::media::contract::MediaCommand;

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
    /// an NCCO `input` action is complete: the digits go to its eventUrl, and
    /// what comes back continues the call through [`Core::ncco_continue`]
    Input(routing::InputResult),
    /// reach a WebSocket server for a leg (an NCCO `connect`); answer with
    /// [`Core::socket_up`] or [`Core::socket_down`]
    Socket(super::socket::SocketRequest),
    /// who spoke when in recording `id`, now complete: written beside it
    Speakers {
        /// the recording
        id: String,
        /// its turns, in order of start
        turns: Vec<super::room::speakers::Turn>,
    },
    /// claim this room in the cluster's registry before its first call is
    /// admitted; answer with [`Core::claimed`]
    Claim {
        /// room
        room: String,
    },
    /// a held room is over `cascade_at`: name another node for its further
    /// callers; answer with [`Core::cascade_found`]
    Cascade {
        /// room
        room: String,
    },
    /// a synchronous `connect` did not connect: ask its eventUrl for the
    /// caller's next NCCO (through [`Core::ncco_continue`])
    ConnectFailed(routing::ConnectFailed),
    /// tell the cluster's other nodes of a PIN try or call attempt; theirs
    /// come back through [`Core::guard_note`]
    Guard(super::cluster::GuardNote),
    /// this node no longer holds the room (it emptied): release its lease
    Release {
        /// room
        room: String,
    },
    /// recording `id` (an NCCO `record`) reports to this URL when complete,
    /// instead of the room's
    RecordingHook {
        /// the recording
        id: String,
        /// its event URL
        url: String,
    },
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
        /// the calling side's URI (the bridge's own for a call it placed)
        from: String,
        /// the called side's URI (the dialled target for a call it placed)
        to: String,
        /// the bridge placed the call
        outbound: bool,
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
    /// the node that held the room died (its lease in the cluster's registry
    /// lapsed): its calls, dial-outs and recordings there are gone; new callers
    /// start the room afresh on a live node
    RoomLost {
        /// room
        room: String,
        /// the dead node's `node_id`
        node: String,
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
    /// a participant went to another room (a move or a transfer)
    Moved {
        /// leg
        leg: LegId,
        /// the room it left
        from: String,
        /// the room it is in now
        room: String,
    },
    /// a participant in the conference typed a key (not in a PIN, nor in an
    /// NCCO input)
    Dtmf {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// 0-9, *, #, A-D
        digit: char,
    },
    /// a playback (an announcement to the room or to one participant) ended
    Playback {
        /// its id
        id: u64,
        /// room
        room: String,
        /// to whom (None: the whole room)
        leg: Option<LegId>,
        /// stopped by the API, not played out
        stopped: bool,
    },
    /// a participant's volumes changed (the API, its own menu keys)
    Volume {
        /// leg
        leg: LegId,
        /// dB on what it says
        volume_in: i8,
        /// dB on what it hears
        volume_out: i8,
        /// room
        room: String,
    },
    /// a participant raised or lowered its hand (`*7`, the API)
    Hand {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// raised now
        raised: bool,
    },
    /// a participant was put on hold or taken off it (the API)
    Held {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// on hold now
        held: bool,
    },
    /// whom a participant hears, or who hears it, changed (the API's `hears`
    /// and `heard_by`, coaching)
    Relation {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// whom it hears (None: everyone)
        hears: Option<Vec<LegId>>,
        /// who hears it (None: everyone)
        heard_by: Option<Vec<LegId>>,
    },
    /// something a call's NCCO asked for could not be carried out (the call
    /// went on with the next action)
    Error {
        /// leg
        leg: LegId,
        /// room
        room: String,
        /// what and why
        detail: String,
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
