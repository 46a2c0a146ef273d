//! What a room is configured to be (the `[[room]]` table as signalling needs it:
//! admission, PINs, moderation, rights, announcements), and the decoy room that
//! calls to unknown rooms are answered from when rooms are hidden.

use std::net::IpAddr;
use std::time::Duration;

use super::super::pin;
use crate::media::prompt::Prompt;
use crate::util::cidr::{Cidr, glob_match};

/// Where calls to unknown rooms go when rooms are hidden: a name no room can have
/// (room names are checked), so no PIN ever matches there.
pub const DECOY_ROOM: &str = "(unknown)";
/// Tries a decoy caller gets: the default of a real room.
pub(crate) const DECOY_RETRIES: u32 = 3;

/// What a room needs to be known to signalling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// callers at most
    pub max_participants: usize,
    /// ring this long (180) before answering
    pub answer_after: Duration,
    /// participant PIN (digits); callers must type it, or the moderator PIN, and '#'
    pub pin: Option<pin::Pin>,
    /// moderator PIN
    pub moderator_pin: Option<pin::Pin>,
    /// tries before the call is ended
    pub pin_retries: u32,
    /// silence after which what was typed is judged as if '#' followed
    pub pin_timeout: Duration,
    /// guessing lockout per source address
    pub lockout: pin::Lockout,
    /// participants wait (music on hold, not mixed) until a moderator is in
    pub moderated: bool,
    /// what waiting participants hear
    pub music: Prompt,
    /// a caller beyond max_participants is answered, told the room is full and
    /// hung up, instead of getting 486
    pub full_announce: bool,
    /// the room ends when its last moderator leaves
    pub end_on_moderator_exit: bool,
    /// say "the conference has ended" before the BYE when a room ends
    pub announce_end: bool,
    /// ... this long after
    pub end_grace: Duration,
    /// participants join muted (they can unmute with the menu)
    pub start_muted: bool,
    /// a call without SRTP is refused (488)
    pub require_srtp: bool,
    /// noise suppression and levelling of the talkers (`denoise`, `level`)
    pub treatment: crate::media::contract::Treatment,
    /// participants may speak (false: listen-only, the menu cannot unmute)
    pub participant_can_speak: bool,
    /// participants hear the room (false: they are heard but hear nothing)
    pub participant_can_hear: bool,
    /// tell the first caller they are first
    pub announce_first: bool,
    /// tell each caller how many are in the room when they join
    pub announce_count: bool,
    /// a tone to the room when someone joins or leaves
    pub announce_join_leave: bool,
    /// callers say their name on entry, heard by the room on join and leave
    pub announce_names: bool,
    /// participants waiting for a moderator longer than this are hung up (0: never)
    pub wait_timeout: Duration,
    /// source networks allowed to call (empty: any)
    pub allowed_sources: Vec<Cidr>,
    /// caller-ID (From URI) patterns allowed to call, `*` matching anything (empty: any)
    pub allowed_callers: Vec<String>,
    /// record the room's mix while it runs
    pub record: bool,
    /// the room's own event webhook
    pub event_url: Option<String>,
    /// a room created at run time is removed this long after it was last empty
    pub empty_timeout: Duration,
}

impl RoomPolicy {
    /// An open room (no PIN) with these limits.
    pub fn open(max_participants: usize, answer_after: Duration) -> RoomPolicy {
        RoomPolicy {
            max_participants,
            answer_after,
            pin: None,
            moderator_pin: None,
            pin_retries: 3,
            pin_timeout: Duration::from_secs(10),
            lockout: pin::Lockout {
                failures: 10,
                window: Duration::from_secs(600),
                time: Duration::from_secs(900),
            },
            moderated: false,
            music: Prompt::MusicOnHold,
            full_announce: false,
            end_on_moderator_exit: false,
            announce_end: false,
            end_grace: Duration::ZERO,
            start_muted: false,
            require_srtp: false,
            treatment: crate::media::contract::Treatment::FULL,
            participant_can_speak: true,
            participant_can_hear: true,
            announce_first: false,
            announce_count: false,
            announce_join_leave: false,
            announce_names: false,
            wait_timeout: Duration::ZERO,
            allowed_sources: Vec::new(),
            allowed_callers: Vec::new(),
            record: false,
            event_url: None,
            empty_timeout: Duration::from_secs(60),
        }
    }

    /// Whether this source and caller may call the room.
    pub fn admits(&self, src: IpAddr, caller: &str) -> bool {
        (self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|c| c.contains(src)))
            && (self.allowed_callers.is_empty()
                || self.allowed_callers.iter().any(|p| glob_match(p, caller)))
    }

    /// Whether callers type a PIN (the participant's or the moderator's).
    pub fn has_pin(&self) -> bool {
        self.pin.is_some() || self.moderator_pin.is_some()
    }
}

/// The decoy room's policy: asks for a PIN like any PIN room.
pub(crate) fn decoy_policy() -> RoomPolicy {
    let mut p = RoomPolicy::open(usize::MAX, Duration::ZERO);
    // never compared: a decoy room matches no PIN
    p.pin = Some("".into());
    p
}
