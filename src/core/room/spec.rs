//! The `[[room]]` table: what a room is configured to be, as the file and the
//! API's room creation give it, its checks, and the [`RoomPolicy`] signalling
//! runs it by. Here, below both the configuration and the API, so that neither
//! has to import the other for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RoomPolicy;
use crate::core::pin;
use crate::ids::is_room_name;
use crate::media::prompt::Prompt;
use crate::util::cidr::Cidr;
use crate::util::is_http_url;

/// `[[room]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoomSpec {
    /// dialed as sip:NAME@host
    pub name: String,
    /// callers at most (1..=10000)
    #[serde(default = "default_max_participants")]
    pub max_participants: usize,
    /// ring (180) this long before answering, 0..=60000 ms
    #[serde(default)]
    pub answer_after_ms: u64,
    /// participant PIN, 1-16 digits
    #[serde(default)]
    pub pin: Option<pin::Pin>,
    /// moderator PIN, 1-16 digits
    #[serde(default)]
    pub moderator_pin: Option<pin::Pin>,
    /// tries before the call ends (1..=10)
    #[serde(default = "default_pin_retries")]
    pub pin_retries: u32,
    /// seconds without a key after which what was typed is judged (1..=120)
    #[serde(default = "default_pin_timeout")]
    pub pin_timeout_s: u64,
    /// failures from one source tolerated within the window (1..=1000)
    #[serde(default = "default_lockout_failures")]
    pub pin_lockout_failures: u32,
    /// the window, seconds (1..=86400)
    #[serde(default = "default_lockout_window")]
    pub pin_lockout_window_s: u64,
    /// how long a source stays locked out, seconds (1..=86400)
    #[serde(default = "default_lockout_time")]
    pub pin_lockout_time_s: u64,
    /// participants wait with music on hold until a moderator joins
    #[serde(default)]
    pub moderated: bool,
    /// end the room when its last moderator leaves (default: = moderated)
    #[serde(default)]
    pub end_on_moderator_exit: Option<bool>,
    /// "the conference has ended" before the BYE
    #[serde(default)]
    pub announce_end: bool,
    /// this room's music on hold (8 kHz mono 16-bit WAV); default: moh.wav
    #[serde(default)]
    pub music_on_hold: Option<std::path::PathBuf>,
    /// callers beyond max_participants hear "the conference is full" and a BYE
    /// instead of getting 486 Busy Here
    #[serde(default)]
    pub full_announce: bool,
    /// seconds between the last moderator leaving and the end (0..=3600)
    #[serde(default)]
    pub end_grace_s: u64,
    /// participants join muted
    #[serde(default)]
    pub start_muted: bool,
    /// callers must offer SRTP (SDES); a plain offer gets 488
    #[serde(default)]
    pub require_srtp: bool,
    /// noise suppression (RNNoise) on the mixed talkers
    #[serde(default = "yes")]
    pub denoise: bool,
    /// each mixed talker's loudness steered toward a common level
    #[serde(default = "yes")]
    pub level: bool,
    /// participants may speak (false: listen-only)
    #[serde(default = "yes")]
    pub participant_can_speak: bool,
    /// participants hear the room
    #[serde(default = "yes")]
    pub participant_can_hear: bool,
    /// "you are the first participant"
    #[serde(default)]
    pub announce_first: bool,
    /// "there are N participants" on joining
    #[serde(default)]
    pub announce_count: bool,
    /// tones when someone joins or leaves
    #[serde(default)]
    pub announce_join_leave: bool,
    /// callers say their name on entry; the room hears it when they join and leave
    #[serde(default)]
    pub announce_names: bool,
    /// seconds a participant may wait for the moderator (0: forever; ..=86400)
    #[serde(default)]
    pub wait_timeout_s: u64,
    /// source networks allowed to call ("192.0.2.0/24", "::1"); empty: any
    #[serde(default)]
    pub allowed_sources: Vec<String>,
    /// From-URI patterns allowed to call ("sip:*@pbx.example.com"); empty: any
    #[serde(default)]
    pub allowed_callers: Vec<String>,
    /// record the room's mix from its first call to its end (`[recording] dir`)
    #[serde(default)]
    pub record: bool,
    /// this room's events go here instead of `[events] url`
    #[serde(default)]
    pub event_url: Option<String>,
    /// rooms created through the API end this long after their last leg leaves
    /// (or after creation, when nobody calls); 1..=86400, default 60
    #[serde(default = "default_empty_timeout")]
    pub empty_timeout_s: u64,
}

/// A fault in one room's settings: the key (and list index) at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFault {
    /// the key
    pub key: &'static str,
    /// index within a list value
    pub index: Option<usize>,
    /// what is wrong
    pub reason: String,
}

impl RoomSpec {
    /// The checks one room must pass, in the file or created through the API.
    pub fn check(&self) -> Result<(), RoomFault> {
        let fault = |key: &'static str, reason: String| RoomFault {
            key,
            index: None,
            reason,
        };
        let check = |ok: bool, key: &'static str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(fault(key, reason.to_string()))
            }
        };
        check(
            is_room_name(&self.name),
            "name",
            "room name must be 1-64 characters of A-Z a-z 0-9 - _ .",
        )?;
        check(
            (1..=10_000).contains(&self.max_participants),
            "max_participants",
            "max_participants must be 1..=10000",
        )?;
        check(
            self.answer_after_ms <= 60_000,
            "answer_after_ms",
            "answer_after_ms must be 0..=60000",
        )?;
        for (key, pin) in [("pin", &self.pin), ("moderator_pin", &self.moderator_pin)] {
            check(
                pin.as_ref().is_none_or(|p| {
                    (1..=pin::MAX_PIN).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit())
                }),
                key,
                &format!("{key} must be 1-16 digits"),
            )?;
        }
        check(
            self.pin.is_none() || self.pin != self.moderator_pin,
            "moderator_pin",
            "moderator_pin must differ from pin",
        )?;
        check(
            !self.moderated || self.moderator_pin.is_some(),
            "moderated",
            "a moderated room needs a moderator_pin",
        )?;
        check(
            self.end_grace_s <= 3600,
            "end_grace_s",
            "end_grace_s must be 0..=3600",
        )?;
        check(
            self.wait_timeout_s <= 86_400,
            "wait_timeout_s",
            "wait_timeout_s must be 0..=86400",
        )?;
        check(
            (1..=86_400).contains(&self.empty_timeout_s),
            "empty_timeout_s",
            "empty_timeout_s must be 1..=86400",
        )?;
        check(
            self.event_url.as_deref().is_none_or(is_http_url),
            "event_url",
            "event_url must be an http:// or https:// URL",
        )?;
        for (k, c) in self.allowed_sources.iter().enumerate() {
            if Cidr::parse(c).is_none() {
                return Err(RoomFault {
                    key: "allowed_sources",
                    index: Some(k),
                    reason: format!("\"{c}\" is not ADDRESS or ADDRESS/PREFIX"),
                });
            }
        }
        let ranges: [(&'static str, u64, u64, u64); 5] = [
            ("pin_retries", self.pin_retries.into(), 1, 10),
            ("pin_timeout_s", self.pin_timeout_s, 1, 120),
            (
                "pin_lockout_failures",
                self.pin_lockout_failures.into(),
                1,
                1000,
            ),
            ("pin_lockout_window_s", self.pin_lockout_window_s, 1, 86_400),
            ("pin_lockout_time_s", self.pin_lockout_time_s, 1, 86_400),
        ];
        for (key, v, lo, hi) in ranges {
            check(
                (lo..=hi).contains(&v),
                key,
                &format!("{key} must be {lo}..={hi}"),
            )?;
        }
        Ok(())
    }

    /// What signalling needs of this room; `music` is the room's own music prompt.
    pub fn policy(&self, music: Prompt) -> RoomPolicy {
        let r = self;
        RoomPolicy {
            max_participants: r.max_participants,
            answer_after: Duration::from_millis(r.answer_after_ms),
            pin: r.pin.clone(),
            moderator_pin: r.moderator_pin.clone(),
            pin_retries: r.pin_retries,
            pin_timeout: Duration::from_secs(r.pin_timeout_s),
            lockout: pin::Lockout {
                failures: r.pin_lockout_failures,
                window: Duration::from_secs(r.pin_lockout_window_s),
                time: Duration::from_secs(r.pin_lockout_time_s),
            },
            moderated: r.moderated,
            end_on_moderator_exit: r.end_on_moderator_exit.unwrap_or(r.moderated),
            announce_end: r.announce_end,
            full_announce: r.full_announce,
            music,
            end_grace: Duration::from_secs(r.end_grace_s),
            start_muted: r.start_muted,
            require_srtp: r.require_srtp,
            treatment: crate::media::contract::Treatment {
                denoise: r.denoise,
                level: r.level,
            },
            participant_can_speak: r.participant_can_speak,
            participant_can_hear: r.participant_can_hear,
            announce_first: r.announce_first,
            announce_count: r.announce_count,
            announce_join_leave: r.announce_join_leave,
            announce_names: r.announce_names,
            wait_timeout: Duration::from_secs(r.wait_timeout_s),
            allowed_sources: r
                .allowed_sources
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
            allowed_callers: r.allowed_callers.clone(),
            record: r.record,
            event_url: r.event_url.clone(),
            empty_timeout: Duration::from_secs(r.empty_timeout_s),
        }
    }
}

fn default_empty_timeout() -> u64 {
    60
}

fn default_max_participants() -> usize {
    100
}

fn default_pin_retries() -> u32 {
    3
}

fn default_pin_timeout() -> u64 {
    10
}

fn default_lockout_failures() -> u32 {
    10
}

fn default_lockout_window() -> u64 {
    600
}

fn default_lockout_time() -> u64 {
    900
}

fn yes() -> bool {
    true
}
