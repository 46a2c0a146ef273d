//! Configuration: the TOML file format, its defaults and its checks. Unknown keys and
//! bad types are rejected by serde (`deny_unknown_fields`); ranges and cross-field
//! rules are checked after, and every error is reported as `FILE:LINE:COL: reason`,
//! the position found from the TOML document's spans.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::transaction::TimerConfig;
use crate::core::{Cidr, CoreConfig, MenuKeys, RoomPolicy};
use crate::media::prompt::{Prompt, PromptError, Prompts};

/// Exit status for a configuration that cannot be used (sysexits.h EX_CONFIG), of
/// both `caucus check` and `caucus run`; the systemd unit does not restart on it.
pub const EX_CONFIG: u8 = 78;

/// The default configuration, compiled in: `caucus run` without `--config`.
pub const DEFAULT_TOML: &str = include_str!("../conf/caucus.toml");

/// A configuration problem with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {reason}")]
pub struct ConfigError {
    /// file name as given
    pub file: String,
    /// 1-based line
    pub line: usize,
    /// 1-based column
    pub col: usize,
    /// what is wrong
    pub reason: String,
}

/// `[sip]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// UDP and TCP listen addresses: one, or a list (IPv4 and IPv6 together); a
    /// wildcard (0.0.0.0, [::]) answers on the address each request arrived on
    #[serde(default = "default_listen", deserialize_with = "one_or_more")]
    pub listen: Vec<SocketAddr>,
    /// `host[:port]` written in Via and Contact instead of the address a request
    /// arrived on (a public address behind NAT); an IPv6 address in brackets
    #[serde(default)]
    pub advertise: Option<String>,
    /// T1 in ms (RFC 3261 default 500)
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    /// T2 in ms (default 4000)
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    /// T4 in ms (default 5000)
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    /// Server / User-Agent header; no version unless you put one here
    #[serde(default = "default_ua")]
    pub user_agent: String,
    /// on SIGTERM, calls go on this long (new ones get 503) before their BYE
    #[serde(default)]
    pub drain_timeout_s: u64,
    /// and hear "the conference has ended" at its start
    #[serde(default = "yes")]
    pub drain_announce: bool,
    /// TCP connections at most
    #[serde(default = "default_tcp_max")]
    pub tcp_max_connections: usize,
    /// TCP connections from one address at most
    #[serde(default = "default_tcp_per_source")]
    pub tcp_max_per_source: usize,
    /// a TCP connection must send its first message within this
    #[serde(default = "default_tcp_first")]
    pub tcp_first_message_s: u64,
    /// and is closed after this long without a byte
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout_s: u64,
    /// new calls get 503 while a media worker's tick lateness p99 (over 5 s) is
    /// above this (0: never)
    #[serde(default = "default_overload_late")]
    pub overload_late_ms: u64,
    /// new calls get 503 while a media worker's tick work (legs just placed
    /// counted at what its legs cost) is above this share of the 20 ms period,
    /// so that calls already up keep their quality (0: never)
    #[serde(default = "default_overload_load")]
    pub overload_load_percent: u32,
}

fn default_overload_load() -> u32 {
    70
}

fn default_overload_late() -> u64 {
    100
}

fn default_tcp_max() -> usize {
    4096
}
fn default_tcp_per_source() -> usize {
    64
}
fn default_tcp_first() -> u64 {
    10
}
fn default_tcp_idle() -> u64 {
    600
}

/// `[security]`: flood control that judges what a source starts and how often it
/// fails, never the volume of calls it carries (see `core::flood`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// new out-of-dialog requests one source may send per window; the excess is
    /// dropped, never banned (0: no ceiling)
    #[serde(default = "default_flood_requests")]
    pub flood_requests: u32,
    /// the window of that ceiling, seconds
    #[serde(default = "default_flood_window")]
    pub flood_window_s: u64,
    /// failed attempts (no such room, not allowed, wrong PIN, malformed) a source
    /// may make within fail_window_s, beyond its successful calls (0: no bans)
    #[serde(default = "default_fail_limit")]
    pub fail_limit: u32,
    /// the failure window, seconds
    #[serde(default = "default_fail_window")]
    pub fail_window_s: u64,
    /// how long a source over fail_limit is banned
    #[serde(default = "default_flood_ban")]
    pub flood_ban_s: u64,
    /// a ban ends the source's admitted calls too (default: they go on)
    #[serde(default)]
    pub ban_ends_calls: bool,
    /// networks never counted or banned (trunks, the PBX, the SBC): CIDRs
    #[serde(default)]
    pub trusted_sources: Vec<String>,
    /// answer calls to unknown rooms like calls to PIN rooms (a PIN prompt no PIN
    /// satisfies), so a scanner cannot tell which rooms exist
    #[serde(default = "yes")]
    pub hide_rooms: bool,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            flood_requests: default_flood_requests(),
            flood_window_s: default_flood_window(),
            fail_limit: default_fail_limit(),
            fail_window_s: default_fail_window(),
            flood_ban_s: default_flood_ban(),
            ban_ends_calls: false,
            trusted_sources: Vec::new(),
            hide_rooms: true,
        }
    }
}

fn default_flood_requests() -> u32 {
    crate::core::flood::FloodLimits::default().requests
}
fn default_flood_window() -> u64 {
    crate::core::flood::FloodLimits::default().window.as_secs()
}
fn default_fail_limit() -> u32 {
    crate::core::flood::FloodLimits::default().fail_limit
}
fn default_fail_window() -> u64 {
    crate::core::flood::FloodLimits::default()
        .fail_window
        .as_secs()
}
fn default_flood_ban() -> u64 {
    crate::core::flood::FloodLimits::default().ban.as_secs()
}

/// `[rtp]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rtp {
    /// lowest RTP port
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    /// highest port (RTCP included)
    #[serde(default = "default_port_max")]
    pub port_max: u16,
    /// address RTP binds to; default: the address each call's signalling arrived
    /// on (the SIP listen address, or on a wildcard listener the one a request was
    /// sent to)
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// address written in SDP instead (a public address behind NAT)
    #[serde(default)]
    pub advertise: Option<IpAddr>,
    /// media worker threads; 0 = one per core
    #[serde(default)]
    pub workers: usize,
    /// loudest talkers mixed per room (1..=16); everyone else listens
    #[serde(default = "default_max_talkers")]
    pub max_talkers: usize,
    /// a leg whose peer sends no RTP this long is hung up (0: never)
    #[serde(default = "default_rtp_timeout")]
    pub timeout_s: u64,
    /// the same while the peer holds the call
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout_s: u64,
    /// SCHED_FIFO priority of the media workers (1..=99), so that a tick starts
    /// on time however busy the machine; 0: ordinary scheduling
    #[serde(default = "default_realtime_priority")]
    pub realtime_priority: u8,
    /// legs a room holds on one worker before it spreads over the others
    #[serde(default = "default_shard_at")]
    pub shard_at: usize,
}

fn default_shard_at() -> usize {
    crate::media::engine::SHARD_AT
}

fn default_realtime_priority() -> u8 {
    10
}

fn default_rtp_timeout() -> u64 {
    60
}
fn default_hold_timeout() -> u64 {
    3600
}

/// `[[room]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Room {
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
    pub pin: Option<crate::core::pin::Pin>,
    /// moderator PIN, 1-16 digits
    #[serde(default)]
    pub moderator_pin: Option<crate::core::pin::Pin>,
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

/// `[api]`: the HTTP control API; it starts only when a token is configured.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// listen address (default 127.0.0.1:8080)
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// bearer token every request must carry (16+ characters)
    #[serde(default, serialize_with = "fingerprint_opt")]
    pub token: Option<String>,
    /// or a file holding it (first line), e.g. a systemd credential
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// `GET /metrics` needs the token too (default: it does not)
    #[serde(default)]
    pub metrics_auth: bool,
    /// WAV files the `play` request may name (by file name) live here
    #[serde(default)]
    pub play_dir: Option<std::path::PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// one line of text per event (`key=value` fields)
    #[default]
    Text,
    /// one JSON object per line, fields (`leg`, `room`, `call_id`…) as keys
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// text or json (the command line's `--log-format` wins)
    #[serde(default)]
    pub format: LogFormat,
}

/// `[metrics]`: a listener for Prometheus and load balancers (`/metrics`,
/// `/healthz`, `/readyz`), with or without the control API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// listen address; the empty string turns the listener off
    #[serde(default = "default_metrics_listen", deserialize_with = "addr_or_off")]
    pub listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
}

/// An address, or `""` for none.
fn addr_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!("\"{s}\" is not ADDRESS:PORT (or \"\" for off)"))
    })
}

/// `[events]`: the event webhook (Vonage's event_url).
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// where events are POSTed (http or https); unset: no events
    #[serde(default)]
    pub url: Option<String>,
    /// HMAC-SHA256 key; the signature goes in `X-Caucus-Signature`
    #[serde(default, serialize_with = "fingerprint_opt")]
    pub secret: Option<String>,
    /// how long one event is retried before it is dropped (default 600 s)
    #[serde(default = "default_retry_for")]
    pub retry_for_s: u64,
}

/// What to do with a call when the answer webhook fails.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFallback {
    /// route by the Request-URI to the configured rooms
    #[default]
    Rooms,
    /// refuse the call with 503
    Reject,
}

/// `[routing]`: the answer webhook (Vonage's answer_url).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// POSTed for each inbound INVITE; returns an NCCO
    #[serde(default)]
    pub answer_url: Option<String>,
    /// when it fails or times out
    #[serde(default)]
    pub answer_fallback: AnswerFallback,
    /// how long to wait for it (default 3000 ms)
    #[serde(default = "default_answer_timeout")]
    pub answer_timeout_ms: u64,
}

/// `[recording]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// directory for recordings (created 0700); unset: recording is off
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
}

/// `[dialout]`: guards on calls the bridge places.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dialout {
    /// target URI patterns (`*` matches anything); empty: no dial-out at all
    #[serde(default)]
    pub allowed_destinations: Vec<String>,
    /// outbound calls at once
    #[serde(default = "default_max_outbound")]
    pub max_outbound_calls: usize,
    /// an outbound call is hung up after this long (default 14400 s)
    #[serde(default = "default_max_duration")]
    pub max_duration_s: u64,
}

impl Default for Dialout {
    fn default() -> Self {
        Dialout {
            allowed_destinations: Vec::new(),
            max_outbound_calls: default_max_outbound(),
            max_duration_s: default_max_duration(),
        }
    }
}

/// `[[trunk]]`: credentials for digest challenges from one host and realm.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// name (for logs)
    pub name: String,
    /// host (or host:port) of dial-out targets these credentials are for
    pub host: String,
    /// the realm the challenge must name
    pub realm: String,
    /// user name
    pub username: String,
    /// password (never logged)
    #[serde(serialize_with = "fingerprint")]
    pub password: String,
}

use crate::util::fingerprint;

fn fingerprint_opt<S: serde::Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(v) => fingerprint(v, s),
        None => s.serialize_none(),
    }
}

// Secrets never reach a log or a panic message through Debug.
impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("metrics_auth", &self.metrics_auth)
            .field("play_dir", &self.play_dir)
            .finish()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("retry_for_s", &self.retry_for_s)
            .finish()
    }
}

impl std::fmt::Debug for Trunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trunk")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: default_api_listen(),
            token: None,
            token_file: None,
            metrics_auth: false,
            play_dir: None,
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Events {
            url: None,
            secret: None,
            retry_for_s: default_retry_for(),
        }
    }
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            answer_url: None,
            answer_fallback: AnswerFallback::Rooms,
            answer_timeout_ms: default_answer_timeout(),
        }
    }
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

fn good_secret(t: &str) -> bool {
    (16..=256).contains(&t.len()) && t.bytes().all(|c| c.is_ascii_graphic())
}

pub use crate::util::is_http_url;

pub use crate::ids::is_room_name;

impl Room {
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
                    (1..=crate::core::pin::MAX_PIN).contains(&p.len())
                        && p.bytes().all(|c| c.is_ascii_digit())
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
            lockout: crate::core::pin::Lockout {
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
            participant_can_speak: r.participant_can_speak,
            participant_can_hear: r.participant_can_hear,
            announce_first: r.announce_first,
            announce_count: r.announce_count,
            announce_join_leave: r.announce_join_leave,
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
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_retry_for() -> u64 {
    600
}
fn default_answer_timeout() -> u64 {
    3000
}
fn default_max_outbound() -> usize {
    10
}
fn default_max_duration() -> u64 {
    14_400
}

fn yes() -> bool {
    true
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// directory of replacement prompts (every file of `sounds/` must be there)
    #[serde(default)]
    pub sounds_dir: Option<std::path::PathBuf>,
    /// SIP transport
    #[serde(default = "default_sip")]
    pub sip: Sip,
    /// media ports
    #[serde(default = "default_rtp")]
    pub rtp: Rtp,
    /// in-call menu keys
    #[serde(default)]
    pub menu: MenuKeys,
    /// rooms
    #[serde(default, rename = "room")]
    pub rooms: Vec<Room>,
    /// HTTP control API
    #[serde(default)]
    pub api: Api,
    /// event webhook
    #[serde(default)]
    pub events: Events,
    /// answer webhook
    #[serde(default)]
    pub routing: Routing,
    /// recordings
    #[serde(default)]
    pub recording: Recording,
    /// dial-out guards
    #[serde(default)]
    pub dialout: Dialout,
    /// digest credentials for dial-out
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    /// flood control
    #[serde(default)]
    pub security: Security,
    /// the metrics and health listener
    #[serde(default)]
    pub metrics: Metrics,
    /// logging
    #[serde(default)]
    pub log: Log,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5060))]
}

/// `"ADDR:PORT"` or `["ADDR:PORT", …]`.
fn one_or_more<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(SocketAddr),
        More(Vec<SocketAddr>),
    }
    match OneOrMore::deserialize(d) {
        Ok(OneOrMore::One(a)) => Ok(vec![a]),
        Ok(OneOrMore::More(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "listen: an address \"IP:PORT\" (IPv6 as \"[::1]:5060\") or a list of them",
        )),
    }
}

/// `[sip] advertise` split into host and port: an IP address (IPv6 in brackets)
/// or a host name, with or without `:PORT`.
pub fn parse_advertise(s: &str) -> Option<(String, Option<u16>)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        let host = match a.ip() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        return (a.port() != 0).then_some((host, Some(a.port())));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|_| (s.to_string(), None));
    }
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some((s.to_string(), None));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)),
        None => (s, None),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    name_ok.then(|| (host.to_string(), port))
}
fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}
fn default_ua() -> String {
    "caucus".into()
}
fn default_port_min() -> u16 {
    20000
}
fn default_port_max() -> u16 {
    20999
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
fn default_max_talkers() -> usize {
    4
}
fn default_max_participants() -> usize {
    100
}
fn default_sip() -> Sip {
    Sip {
        listen: default_listen(),
        advertise: None,
        t1_ms: default_t1(),
        t2_ms: default_t2(),
        t4_ms: default_t4(),
        user_agent: default_ua(),
        drain_timeout_s: 0,
        drain_announce: true,
        tcp_max_connections: default_tcp_max(),
        tcp_max_per_source: default_tcp_per_source(),
        tcp_first_message_s: default_tcp_first(),
        tcp_idle_timeout_s: default_tcp_idle(),
        overload_late_ms: default_overload_late(),
        overload_load_percent: default_overload_load(),
    }
}
fn default_rtp() -> Rtp {
    Rtp {
        port_min: default_port_min(),
        port_max: default_port_max(),
        address: None,
        advertise: None,
        workers: 0,
        max_talkers: default_max_talkers(),
        timeout_s: default_rtp_timeout(),
        hold_timeout_s: default_hold_timeout(),
        realtime_priority: default_realtime_priority(),
        shard_at: default_shard_at(),
    }
}

/// A path in the document, to find the span of the value at fault.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn locate(src: &str, path: &[Seg]) -> std::ops::Range<usize> {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(src) else {
        return 0..0;
    };
    let mut span = doc.span();
    let mut table = Some(doc.get_ref());
    let mut array: Option<&toml::de::DeArray> = None;
    for seg in path {
        let value = match (seg, table, array) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == *k)
                .map(|(key, v)| (key.span(), v)),
            (Seg::Index(i), _, Some(a)) => a.get(*i).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((key_span, v)) = value else { break };
        span = match v.get_ref() {
            DeValue::Table(_) | DeValue::Array(_) => key_span,
            _ => v.span(),
        };
        table = None;
        array = None;
        match v.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    span
}

fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

impl Config {
    /// Parse and check a document; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |span: std::ops::Range<usize>, reason: String| {
            let (line, col) = position(src, span.start);
            ConfigError {
                file: file.to_string(),
                line,
                col,
                reason,
            }
        };
        let cfg: Config = toml::from_str(src).map_err(|e| {
            let reason = e.message().trim().replace('\n', " ");
            err(e.span().unwrap_or(0..0), reason)
        })?;
        let check = |ok: bool, path: &[Seg], reason: &str| -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(err(locate(src, path), reason.to_string()))
            }
        };
        let s = &cfg.sip;
        check(
            (1..=10_000).contains(&s.t1_ms),
            &[Seg::Key("sip"), Seg::Key("t1_ms")],
            "t1_ms must be 1..=10000",
        )?;
        check(
            s.t2_ms >= s.t1_ms && s.t2_ms <= 60_000,
            &[Seg::Key("sip"), Seg::Key("t2_ms")],
            "t2_ms must be t1_ms..=60000",
        )?;
        check(
            (1..=60_000).contains(&s.t4_ms),
            &[Seg::Key("sip"), Seg::Key("t4_ms")],
            "t4_ms must be 1..=60000",
        )?;
        check(
            !s.listen.is_empty() && s.listen.iter().all(|a| a.port() != 0),
            &[Seg::Key("sip"), Seg::Key("listen")],
            "listen needs at least one address, each with a port",
        )?;
        check(
            s.listen
                .iter()
                .enumerate()
                .all(|(i, a)| !s.listen[..i].contains(a)),
            &[Seg::Key("sip"), Seg::Key("listen")],
            "listen names an address twice",
        )?;
        check(
            s.advertise
                .as_deref()
                .is_none_or(|a| parse_advertise(a).is_some()),
            &[Seg::Key("sip"), Seg::Key("advertise")],
            "advertise must be HOST or HOST:PORT (an IP address, IPv6 in brackets, or a DNS name)",
        )?;
        check(
            s.overload_load_percent <= 100,
            &[Seg::Key("sip"), Seg::Key("overload_load_percent")],
            "overload_load_percent must be 0..=100 (0: never)",
        )?;
        check(
            s.drain_timeout_s <= 3600,
            &[Seg::Key("sip"), Seg::Key("drain_timeout_s")],
            "drain_timeout_s must be 0..=3600",
        )?;
        for (key, v, lo, hi) in [
            (
                "tcp_max_connections",
                s.tcp_max_connections as u64,
                1,
                1_000_000,
            ),
            (
                "tcp_max_per_source",
                s.tcp_max_per_source as u64,
                1,
                1_000_000,
            ),
            ("tcp_first_message_s", s.tcp_first_message_s, 1, 3600),
            ("tcp_idle_timeout_s", s.tcp_idle_timeout_s, 1, 86_400),
        ] {
            check(
                (lo..=hi).contains(&v),
                &[Seg::Key("sip"), Seg::Key(key)],
                &format!("{key} must be {lo}..={hi}"),
            )?;
        }
        let sec = &cfg.security;
        check(
            (1..=3600).contains(&sec.flood_window_s),
            &[Seg::Key("security"), Seg::Key("flood_window_s")],
            "flood_window_s must be 1..=3600",
        )?;
        check(
            sec.flood_ban_s <= 86_400,
            &[Seg::Key("security"), Seg::Key("flood_ban_s")],
            "flood_ban_s must be 0..=86400",
        )?;
        check(
            (1..=3600).contains(&sec.fail_window_s),
            &[Seg::Key("security"), Seg::Key("fail_window_s")],
            "fail_window_s must be 1..=3600",
        )?;
        check(
            sec.fail_limit <= 100_000,
            &[Seg::Key("security"), Seg::Key("fail_limit")],
            "fail_limit must be 0..=100000",
        )?;
        for (k, c) in sec.trusted_sources.iter().enumerate() {
            check(
                Cidr::parse(c).is_some(),
                &[
                    Seg::Key("security"),
                    Seg::Key("trusted_sources"),
                    Seg::Index(k),
                ],
                &format!("\"{c}\" is not ADDRESS or ADDRESS/PREFIX"),
            )?;
        }
        check(
            s.user_agent
                .chars()
                .all(|c| c.is_ascii_graphic() || c == ' ')
                && !s.user_agent.is_empty(),
            &[Seg::Key("sip"), Seg::Key("user_agent")],
            "user_agent must be printable ASCII",
        )?;
        let r = &cfg.rtp;
        check(
            r.port_min >= 1024,
            &[Seg::Key("rtp"), Seg::Key("port_min")],
            "port_min must be 1024..=65534",
        )?;
        check(
            r.port_max > r.port_min && r.port_max - r.port_min >= 3,
            &[Seg::Key("rtp"), Seg::Key("port_max")],
            "port_max must exceed port_min by at least 3 (one RTP/RTCP pair)",
        )?;
        check(
            r.workers <= 256,
            &[Seg::Key("rtp"), Seg::Key("workers")],
            "workers must be 0..=256",
        )?;
        check(
            (1..=crate::media::engine::MAX_TALKERS).contains(&r.max_talkers),
            &[Seg::Key("rtp"), Seg::Key("max_talkers")],
            "max_talkers must be 1..=16",
        )?;
        check(
            r.realtime_priority <= 99,
            &[Seg::Key("rtp"), Seg::Key("realtime_priority")],
            "realtime_priority must be 0..=99 (0: ordinary scheduling)",
        )?;
        check(
            r.shard_at >= 1,
            &[Seg::Key("rtp"), Seg::Key("shard_at")],
            "shard_at must be at least 1",
        )?;
        for (key, seq) in cfg.menu.named() {
            let at = [Seg::Key("menu"), Seg::Key(key)];
            check(
                (1..=4).contains(&seq.len())
                    && seq
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#'),
                &at,
                &format!("{key} must be 1-4 keys of 0-9 * #"),
            )?;
            let clash = cfg.menu.named().iter().any(|(other, o)| {
                *other != key && (o.starts_with(seq.as_str()) || seq.starts_with(o.as_str()))
            });
            check(
                !clash,
                &at,
                &format!("{key} clashes with another menu key (one is a prefix of the other)"),
            )?;
        }
        let mut seen = HashSet::new();
        for (i, room) in cfg.rooms.iter().enumerate() {
            let at = |k| [Seg::Key("room"), Seg::Index(i), Seg::Key(k)];
            check(
                seen.insert(room.name.clone()),
                &at("name"),
                &format!("duplicate room \"{}\"", room.name),
            )?;
            if let Err(f) = room.check() {
                let mut path = vec![Seg::Key("room"), Seg::Index(i), Seg::Key(f.key)];
                if let Some(k) = f.index {
                    path.push(Seg::Index(k));
                }
                return Err(err(locate(src, &path), f.reason));
            }
        }
        let a = &cfg.api;
        check(
            a.token.as_ref().is_none_or(|t| good_secret(t)),
            &[Seg::Key("api"), Seg::Key("token")],
            "token must be 16-256 printable characters",
        )?;
        check(
            a.token.is_none() || a.token_file.is_none(),
            &[Seg::Key("api"), Seg::Key("token_file")],
            "give token or token_file, not both",
        )?;
        check(
            a.listen.port() != 0,
            &[Seg::Key("api"), Seg::Key("listen")],
            "listen needs a port",
        )?;
        check(
            cfg.metrics.listen.is_none_or(|m| m.port() != 0),
            &[Seg::Key("metrics"), Seg::Key("listen")],
            "listen needs a port",
        )?;
        check(
            cfg.metrics.listen.is_none_or(|m| m != a.listen),
            &[Seg::Key("metrics"), Seg::Key("listen")],
            "the metrics listener needs an address of its own (not [api] listen)",
        )?;
        let e = &cfg.events;
        check(
            e.url.as_deref().is_none_or(is_http_url),
            &[Seg::Key("events"), Seg::Key("url")],
            "url must be an http:// or https:// URL",
        )?;
        check(
            e.secret.as_ref().is_none_or(|t| good_secret(t)),
            &[Seg::Key("events"), Seg::Key("secret")],
            "secret must be 16-256 printable characters",
        )?;
        check(
            (10..=86_400).contains(&e.retry_for_s),
            &[Seg::Key("events"), Seg::Key("retry_for_s")],
            "retry_for_s must be 10..=86400",
        )?;
        let r = &cfg.routing;
        check(
            r.answer_url.as_deref().is_none_or(is_http_url),
            &[Seg::Key("routing"), Seg::Key("answer_url")],
            "answer_url must be an http:// or https:// URL",
        )?;
        check(
            (100..=30_000).contains(&r.answer_timeout_ms),
            &[Seg::Key("routing"), Seg::Key("answer_timeout_ms")],
            "answer_timeout_ms must be 100..=30000",
        )?;
        let d = &cfg.dialout;
        for (k, pat) in d.allowed_destinations.iter().enumerate() {
            check(
                pat.starts_with("sip:") || pat.starts_with("sips:"),
                &[
                    Seg::Key("dialout"),
                    Seg::Key("allowed_destinations"),
                    Seg::Index(k),
                ],
                "a destination pattern is a sip: URI pattern",
            )?;
        }
        check(
            (1..=10_000).contains(&d.max_outbound_calls),
            &[Seg::Key("dialout"), Seg::Key("max_outbound_calls")],
            "max_outbound_calls must be 1..=10000",
        )?;
        check(
            (1..=86_400).contains(&d.max_duration_s),
            &[Seg::Key("dialout"), Seg::Key("max_duration_s")],
            "max_duration_s must be 1..=86400",
        )?;
        for (i, t) in cfg.trunks.iter().enumerate() {
            for (key, v) in [
                ("name", &t.name),
                ("host", &t.host),
                ("realm", &t.realm),
                ("username", &t.username),
                ("password", &t.password),
            ] {
                check(
                    !v.is_empty() && !v.contains(['"', '\r', '\n']),
                    &[Seg::Key("trunk"), Seg::Index(i), Seg::Key(key)],
                    &format!("{key} must be non-empty, without quotes or line breaks"),
                )?;
            }
        }
        Ok(cfg)
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            line: 0,
            col: 0,
            reason: e.to_string(),
        })?;
        Config::parse(&src, &name)
    }

    /// The embedded default.
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TOML, "conf/caucus.toml")
            .expect("the embedded default config is valid")
    }

    /// The prompts: `sounds_dir` when set, else the ones compiled in; plus the
    /// rooms' own music, in the order of `Config::music_files`.
    pub fn prompts(&self) -> Result<Prompts, PromptError> {
        let mut p = match &self.sounds_dir {
            Some(dir) => Prompts::load(dir)?,
            None => Prompts::embedded(),
        };
        for f in self.music_files() {
            p.add_music(f)?;
        }
        Ok(p)
    }

    /// Distinct `music_on_hold` files, in room order (the order their prompts
    /// are loaded in, `Prompt::Music(i)`).
    pub fn music_files(&self) -> Vec<&std::path::Path> {
        let mut v: Vec<&std::path::Path> = Vec::new();
        for f in self.rooms.iter().filter_map(|r| r.music_on_hold.as_deref()) {
            if !v.contains(&f) {
                v.push(f);
            }
        }
        v
    }

    /// Flood-control limits.
    pub fn flood_limits(&self) -> crate::core::flood::FloodLimits {
        let s = &self.security;
        crate::core::flood::FloodLimits {
            requests: s.flood_requests,
            window: Duration::from_secs(s.flood_window_s),
            fail_limit: s.fail_limit,
            fail_window: Duration::from_secs(s.fail_window_s),
            ban: Duration::from_secs(s.flood_ban_s),
            trusted: s
                .trusted_sources
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
        }
    }

    /// RTP timeouts for the media engine.
    pub fn rtp_timeouts(&self) -> crate::media::contract::RtpTimeouts {
        crate::media::contract::RtpTimeouts {
            active: Duration::from_secs(self.rtp.timeout_s),
            hold: Duration::from_secs(self.rtp.hold_timeout_s),
        }
    }

    /// Room table for the core.
    pub fn room_policies(&self) -> HashMap<String, RoomPolicy> {
        self.room_policies_using(&self.music_files())
    }

    /// Room table for the core, with the music files loaded at start (`music`,
    /// in their load order): a room naming a file not among them gets the default
    /// music (new files need a restart).
    pub fn room_policies_using(&self, music: &[&std::path::Path]) -> HashMap<String, RoomPolicy> {
        self.rooms
            .iter()
            .map(|r| {
                let own = r
                    .music_on_hold
                    .as_deref()
                    .and_then(|f| music.iter().position(|m| *m == f))
                    .map_or(Prompt::MusicOnHold, |i| Prompt::Music(i as u16));
                (r.name.clone(), r.policy(own))
            })
            .collect()
    }

    /// Configuration of the signalling core.
    pub fn core(&self) -> CoreConfig {
        self.core_using(&self.music_files())
    }

    /// [`Config::core`] with the music files loaded at start (see
    /// [`Config::room_policies_using`]).
    pub fn core_using(&self, music: &[&std::path::Path]) -> CoreConfig {
        CoreConfig {
            sip_advertise: self.sip.advertise.as_deref().and_then(parse_advertise),
            rtp_address: self.rtp.address,
            rtp_advertise: self.rtp.advertise,
            rtp_ports: (self.rtp.port_min, self.rtp.port_max),
            rooms: self.room_policies_using(music),
            timers: TimerConfig {
                t1: Duration::from_millis(self.sip.t1_ms),
                t2: Duration::from_millis(self.sip.t2_ms),
                t4: Duration::from_millis(self.sip.t4_ms),
            },
            user_agent: self.sip.user_agent.clone(),
            menu: self.menu.clone(),
            recording_dir: self.recording.dir.clone(),
            dialout: crate::core::dialout::DialPolicy {
                allowed: self.dialout.allowed_destinations.clone(),
                max_calls: self.dialout.max_outbound_calls,
                max_duration: Duration::from_secs(self.dialout.max_duration_s),
                trunks: self
                    .trunks
                    .iter()
                    .map(|t| crate::core::dialout::TrunkCredentials {
                        host: t.host.clone(),
                        realm: t.realm.clone(),
                        username: t.username.clone(),
                        password: t.password.clone(),
                    })
                    .collect(),
            },
            answer_webhook: self.routing.answer_url.is_some(),
            hide_rooms: self.security.hide_rooms,
            flood: self.flood_limits(),
            ban_ends_calls: self.security.ban_ends_calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let c = Config::default_config();
        assert_eq!(c.sip.listen, vec!["127.0.0.1:5060".parse().unwrap()]);
        assert_eq!((c.rtp.port_min, c.rtp.port_max), (20000, 20999));
        assert_eq!(c.rooms[0].name, "demo");
    }

    #[test]
    fn rooms_own_music_on_hold() {
        let moh = concat!(env!("CARGO_MANIFEST_DIR"), "/sounds/join.wav");
        let src = format!(
            "[[room]]\nname = \"a\"\nmusic_on_hold = \"{moh}\"\n[[room]]\nname = \"b\"\n[[room]]\nname = \"c\"\nmusic_on_hold = \"{moh}\"\n"
        );
        let c = Config::parse(&src, "t.toml").unwrap();
        let rooms = c.room_policies();
        assert_eq!(rooms["a"].music, Prompt::Music(0));
        assert_eq!(rooms["b"].music, Prompt::MusicOnHold);
        assert_eq!(rooms["c"].music, Prompt::Music(0));
        let p = c.prompts().unwrap();
        assert_eq!(
            p.get(Prompt::Music(0)).narrow.len(),
            p.get(Prompt::JoinTone).narrow.len()
        );
        let bad = Config::parse(
            "[[room]]\nname = \"a\"\nmusic_on_hold = \"/nonexistent.wav\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(
            bad.prompts()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent.wav")
        );
    }

    fn fails(src: &str) -> ConfigError {
        Config::parse(src, "t.toml").unwrap_err()
    }

    #[test]
    fn errors_name_line_and_reason() {
        let e = fails("[sip]\nlisten = \"127.0.0.1:5060\"\nbogus = 1\n");
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.reason.contains("bogus"), "{e}");

        let e = fails("[rtp]\nport_min = \"x\"\n");
        assert_eq!(e.line, 2, "{e}");

        let e = fails("[rtp]\nport_min = 70000\n");
        assert_eq!(e.line, 2, "{e}");

        let e = fails("[[room]]\nname = \"a\"\n\n[[room]]\nname = \"b\"\nmax_participants = 0\n");
        assert_eq!((e.line, e.col), (6, 20), "{e}");
        assert!(e.reason.contains("max_participants"), "{e}");

        let e = fails("[[room]]\nname = \"a\"\n[[room]]\nname = \"a\"\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.reason.contains("duplicate"), "{e}");
        assert_eq!(e.to_string(), format!("t.toml:4:8: {}", e.reason));

        let e = fails("[menu]\ntoggle_mute = \"*\"\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("prefix"), "{e}");

        let e = fails("[[room]]\nname = \"m\"\nmoderated = true\n");
        assert!(e.reason.contains("moderator_pin"), "{e}");
        let e = fails("[[room]]\nname = \"p\"\npin = \"12a\"\n");
        assert_eq!(e.line, 3, "{e}");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = Config::parse(
            "[api]\ntoken = \"tok-0123456789abcdef\"\n[events]\nsecret = \"sec-0123456789abcdef\"\n\
             [[trunk]]\nname = \"t\"\nhost = \"127.0.0.1\"\nrealm = \"r\"\nusername = \"u\"\npassword = \"pw-hunter2\"\n\
             [[room]]\nname = \"p\"\npin = \"864209\"\nmoderator_pin = \"753197\"\n",
            "t.toml",
        )
        .unwrap();
        // the room table the core gets carries the PINs too
        let text = format!("{cfg:?} {:?}", cfg.room_policies());
        for secret in [
            "tok-0123456789abcdef",
            "sec-0123456789abcdef",
            "pw-hunter2",
            "864209",
            "753197",
        ] {
            assert!(!text.contains(secret), "{secret} in Debug output");
        }
        assert!(text.contains("<redacted>"));
    }
}
