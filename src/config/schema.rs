//! The file's sections as types, with their defaults: what serde reads (unknown
//! keys refused), and how secrets print (never in clear).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::util::fingerprint;

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
    /// SIP over TLS listen addresses (RFC 3261 §26.2; 5061 by custom): none, one
    /// or a list; needs `tls_certificate` and `tls_key`
    #[serde(default, deserialize_with = "one_or_more")]
    pub tls_listen: Vec<SocketAddr>,
    /// the server's certificate chain, PEM, leaf first (read again on SIGHUP)
    #[serde(default)]
    pub tls_certificate: Option<std::path::PathBuf>,
    /// its private key, PEM (read again on SIGHUP)
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// SRTP by SDES (RFC 4568): `off` (keys in offers ignored, an SRTP-only
    /// offer refused), `offer` (taken when offered), `require` (a plain offer
    /// gets 488)
    #[serde(default)]
    pub srtp: crate::sdes::SrtpMode,
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

pub(super) fn default_overload_load() -> u32 {
    70
}

pub(super) fn default_overload_late() -> u64 {
    100
}

pub(super) fn default_tcp_max() -> usize {
    4096
}

pub(super) fn default_tcp_per_source() -> usize {
    64
}

pub(super) fn default_tcp_first() -> u64 {
    10
}

pub(super) fn default_tcp_idle() -> u64 {
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

pub(super) fn default_flood_requests() -> u32 {
    crate::core::flood::FloodLimits::default().requests
}

pub(super) fn default_flood_window() -> u64 {
    crate::core::flood::FloodLimits::default().window.as_secs()
}

pub(super) fn default_fail_limit() -> u32 {
    crate::core::flood::FloodLimits::default().fail_limit
}

pub(super) fn default_fail_window() -> u64 {
    crate::core::flood::FloodLimits::default()
        .fail_window
        .as_secs()
}

pub(super) fn default_flood_ban() -> u64 {
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

pub(super) fn default_shard_at() -> usize {
    crate::media::engine::SHARD_AT
}

pub(super) fn default_realtime_priority() -> u8 {
    10
}

pub(super) fn default_rtp_timeout() -> u64 {
    60
}

pub(super) fn default_hold_timeout() -> u64 {
    3600
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

pub(super) fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
}

/// An address, or `""` for none.
pub(super) fn addr_or_off<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
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
    /// the bodies' shape: caucus's own types, or Vonage's call status events
    #[serde(default)]
    pub format: EventFormat,
    /// how `secret` signs a delivery: HMAC headers, or an HS256 JWT bearer token
    #[serde(default)]
    pub signing: Signing,
}

/// `[events] format`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventFormat {
    /// `participant:joined`, `room:ended`, … (what the live streams carry)
    #[default]
    Caucus,
    /// Vonage Voice API call events: `started`, `ringing`, `answered`,
    /// `completed`, …, `record`
    Vonage,
}

/// `[events] signing`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// `X-Caucus-Signature: sha256=…` over `TIMESTAMP.BODY`
    #[default]
    Hmac,
    /// `Authorization: Bearer JWT`, HS256, with the body's SHA-256 in
    /// `payload_hash` (Vonage's signed webhooks)
    Jwt,
}

/// The HTTP method of the answer webhook.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
pub enum AnswerMethod {
    /// the call's fields in the query string (Vonage's default)
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// the call's fields as a JSON body
    #[serde(rename = "POST")]
    Post,
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
    /// asked for each inbound INVITE; returns an NCCO
    #[serde(default)]
    pub answer_url: Option<String>,
    /// GET (the call's fields in the query) or POST (a JSON body)
    #[serde(default)]
    pub answer_method: AnswerMethod,
    /// asked when `answer_url` fails or times out, before `answer_fallback`
    #[serde(default)]
    pub fallback_answer_url: Option<String>,
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
    /// dial-out over TLS to this host trusts only the CA certificates in this
    /// PEM file (unset: Mozilla's roots)
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

pub(super) fn fingerprint_opt<S: serde::Serializer>(
    secret: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
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
            .field("format", &self.format)
            .field("signing", &self.signing)
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
            format: EventFormat::Caucus,
            signing: Signing::Hmac,
        }
    }
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            answer_url: None,
            answer_method: AnswerMethod::Get,
            fallback_answer_url: None,
            answer_fallback: AnswerFallback::Rooms,
            answer_timeout_ms: default_answer_timeout(),
        }
    }
}

/// `[webrtc]`: browser participants (WHIP on the HTTP listener, media on one
/// UDP port for every browser).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebRtc {
    /// the UDP port every browser's media uses (default 127.0.0.1:20443)
    #[serde(default = "default_webrtc_listen")]
    pub listen: SocketAddr,
    /// the address written in the host candidate instead of the bound one (a
    /// public address behind NAT, or the machine's address with a wildcard bind)
    #[serde(default)]
    pub public_address: Option<IpAddr>,
    /// join tokens are signed with a key made from this (16+ characters), so
    /// they survive a restart; without it a key is made at start-up
    #[serde(default, serialize_with = "fingerprint_opt")]
    pub token_secret: Option<String>,
    /// a token `POST /v1/rooms/{room}/join` gives is good this long
    #[serde(default = "default_join_ttl")]
    pub join_ttl_s: u64,
    /// WHIP and join requests one source may make per second, sustained (with
    /// ten times as many at once): sized for a reverse proxy, through which a
    /// whole meeting's browsers come from one address
    #[serde(default = "default_join_rate")]
    pub requests_per_s: u32,
}

impl Default for WebRtc {
    fn default() -> Self {
        WebRtc {
            listen: default_webrtc_listen(),
            public_address: None,
            token_secret: None,
            join_ttl_s: default_join_ttl(),
            requests_per_s: default_join_rate(),
        }
    }
}

/// `[cluster]`: this node as one of several behind Kamailio, rooms placed by a
/// registry in Redis. Absent: a single node, no Redis.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// the registry (`redis://host:port/db`)
    #[serde(serialize_with = "fingerprint_url")]
    pub redis_url: String,
    /// this node's name among the others (1-64 of A-Z a-z 0-9 - _)
    pub node_id: String,
    /// where other nodes send this node's callers (`sip:host:port`): the
    /// Contact of the 302 for a room held here
    pub sip_uri: String,
    /// where other nodes forward API calls for rooms held here
    /// (`http://host:port`; default: from `[api] listen`)
    #[serde(default)]
    pub api_url: Option<String>,
    /// a dead node's rooms are free again after this long (seconds, 2-300)
    #[serde(default = "default_lease")]
    pub lease_s: u64,
    /// callers of one room on this node beyond which further ones go to a
    /// satellite node linked to it (0: never)
    #[serde(default)]
    pub cascade_at: usize,
}

pub(super) fn default_lease() -> u64 {
    10
}

/// A URL without its password (`redis://:secret@host` → `redis://:***@host`).
fn fingerprint_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    s.serialize_str(&shown)
}

/// `[tts]`: the text-to-speech engine NCCO `talk` actions are spoken with.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tts {
    /// program and arguments; the text comes on standard input, a WAV must go
    /// to standard output; `{voice}` is replaced by the voice name
    #[serde(default = "default_tts_command")]
    pub command: Vec<String>,
}

impl Default for Tts {
    fn default() -> Self {
        Tts {
            command: default_tts_command(),
        }
    }
}

pub(super) fn default_tts_command() -> Vec<String> {
    ["espeak-ng", "--stdout", "--stdin", "-v", "{voice}"]
        .into_iter()
        .map(String::from)
        .collect()
}

pub(super) fn default_webrtc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20443))
}

pub(super) fn default_join_ttl() -> u64 {
    3600
}

pub(super) fn default_join_rate() -> u32 {
    20
}

pub(super) fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

pub(super) fn default_retry_for() -> u64 {
    600
}

pub(super) fn default_answer_timeout() -> u64 {
    3000
}

pub(super) fn default_max_outbound() -> usize {
    10
}

pub(super) fn default_max_duration() -> u64 {
    14_400
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 5060))]
}

/// `"ADDR:PORT"` or `["ADDR:PORT", …]`.
pub(super) fn one_or_more<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SocketAddr>, D::Error> {
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

pub(super) fn default_t1() -> u64 {
    500
}

pub(super) fn default_t2() -> u64 {
    4000
}

pub(super) fn default_t4() -> u64 {
    5000
}

pub(super) fn default_ua() -> String {
    "caucus".into()
}

pub(super) fn default_port_min() -> u16 {
    20000
}

pub(super) fn default_port_max() -> u16 {
    20999
}

pub(super) fn default_max_talkers() -> usize {
    4
}

pub(super) fn default_sip() -> Sip {
    Sip {
        listen: default_listen(),
        advertise: None,
        tls_listen: Vec::new(),
        tls_certificate: None,
        tls_key: None,
        srtp: crate::sdes::SrtpMode::default(),
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

pub(super) fn default_rtp() -> Rtp {
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
