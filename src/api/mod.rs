//! The HTTP control API (axum): rooms, participants, lock, play, recordings,
//! metrics and its own OpenAPI document. Every request but `GET /metrics` (unless
//! `[api] metrics_auth`), `/healthz` and `/readyz` carries `Authorization: Bearer
//! TOKEN`, compared in constant time and never logged. Handlers only translate HTTP
//! to an [`ops::Op`] and back; the driver's task carries the op out on the core.
//!
//! The metrics listener (`[metrics] listen`) is a second, smaller router on the
//! same state: `/metrics`, `/healthz` (the process runs) and `/readyz` (new calls
//! are accepted), for Prometheus and load balancers, with or without the API.

mod calls;
pub mod forward;
pub mod ops;
mod recordings;
mod stream;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::core::LegId;
use crate::core::control::{ControlError, ParticipantUpdate, Role};
use crate::core::room::spec::RoomSpec;
use crate::media::prompt::Prompt;
use ops::{ApiCall, Op, Reply};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The bearer token, shared with the driver so that a reload can replace it
/// (`None`: no token configured).
#[derive(Clone, Default)]
pub struct TokenCell(Arc<RwLock<Option<Arc<[u8]>>>>);

impl TokenCell {
    /// A cell holding `token`.
    pub fn new(token: Option<String>) -> TokenCell {
        let cell = TokenCell::default();
        cell.set(token);
        cell
    }

    /// Replace the token.
    pub fn set(&self, token: Option<String>) {
        let value = token.map(|t| Arc::<[u8]>::from(t.into_bytes()));
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }

    /// Whether a token is configured.
    pub fn is_set(&self) -> bool {
        self.get().is_some()
    }

    fn get(&self) -> Option<Arc<[u8]>> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl std::fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCell(<redacted>)")
    }
}

/// Whether the bridge takes new calls now, published by the driver for
/// `/readyz` (false while it drains or overload control refuses calls).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    /// Publish the current state.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    /// The last state published.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the API needs from the configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// listen address
    pub listen: SocketAddr,
    /// bearer token
    pub token: TokenCell,
    /// `/metrics` needs the token too
    pub metrics_auth: bool,
    /// where `play` finds its files
    pub play_dir: Option<PathBuf>,
    /// where recordings are
    pub recording_dir: Option<PathBuf>,
    /// browser participants (None: no WebRTC socket)
    pub web: Option<Arc<web::WebState>>,
    /// the events, live, for `/v1/events`
    pub live: crate::events::LiveEvents,
    /// speech and sound files for `/v1/calls/{uuid}/talk` and `/stream`
    pub sounds: crate::sounds::Sounds,
    /// the room registry, when this node is one of a cluster
    pub cluster: Option<crate::cluster::Registry>,
}

impl std::fmt::Debug for crate::cluster::Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.me.id)
    }
}

#[derive(Clone)]
struct AppState {
    token: TokenCell,
    metrics_auth: bool,
    ready: Readiness,
    play_dir: Option<Arc<PathBuf>>,
    recording_dir: Option<Arc<PathBuf>>,
    core: mpsc::Sender<ApiCall>,
    web: Option<Arc<web::WebState>>,
    live: crate::events::LiveEvents,
    sounds: crate::sounds::Sounds,
    cluster: Option<Arc<forward::Forwarder>>,
}

impl AppState {
    /// Whether `given` is the API token (in constant time for equal lengths;
    /// unequal lengths fail at once, which tells only the length).
    fn is_api_token(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.token
            .get()
            .is_some_and(|t| bool::from(given.as_bytes().ct_eq(&t)))
    }
}

/// An API error: a status and `{error, detail}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }
    fn bad(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "detail": self.detail});
        (self.status, Json(body)).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, error) = match &e {
            ControlError::NoSuchRoom(_) => (StatusCode::NOT_FOUND, "no_such_room"),
            ControlError::InvalidRoomName(_) => (StatusCode::BAD_REQUEST, "invalid_room"),
            ControlError::NoSuchParticipant(_) => (StatusCode::NOT_FOUND, "no_such_participant"),
            ControlError::NoSuchRecording(_) => (StatusCode::NOT_FOUND, "no_such_recording"),
            ControlError::NoSuchPlayback(_) => (StatusCode::NOT_FOUND, "no_such_playback"),
            ControlError::RoomExists(_) => (StatusCode::CONFLICT, "room_exists"),
            ControlError::RecordingOff => (StatusCode::CONFLICT, "recording_off"),
            ControlError::NotJoined(_) => (StatusCode::CONFLICT, "not_joined"),
            ControlError::Draining => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ControlError::RecordingFailed(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "recording_failed")
            }
            ControlError::DialDenied(_) => (StatusCode::FORBIDDEN, "dial_denied"),
            ControlError::TooManyCalls(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_calls"),
            ControlError::BadDestination(_) => (StatusCode::BAD_REQUEST, "bad_destination"),
            ControlError::RoomFull(_) => (StatusCode::CONFLICT, "room_full"),
            ControlError::RoomLocked(_) => (StatusCode::FORBIDDEN, "room_locked"),
            ControlError::WrongPin => (StatusCode::FORBIDDEN, "wrong_pin"),
            ControlError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ControlError::BadDigits => (StatusCode::BAD_REQUEST, "bad_digits"),
            ControlError::NotForThisLeg(_) => (StatusCode::CONFLICT, "not_for_this_leg"),
        };
        ApiError::new(status, error, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

async fn call(st: &AppState, op: Op) -> Result<Reply, ApiError> {
    let (reply, rx) = oneshot::channel();
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the bridge is stopping",
        )
    };
    st.core
        .send(ApiCall { op, reply })
        .await
        .map_err(|_| gone())?;
    Ok(rx.await.map_err(|_| gone())??)
}

fn reply_json(r: Reply) -> Response {
    match r {
        Reply::Rooms(v) => Json(v).into_response(),
        Reply::Room(v) => Json(v).into_response(),
        Reply::Participants(v) => Json(v).into_response(),
        Reply::Participant(v) => Json(v).into_response(),
        Reply::Done => StatusCode::NO_CONTENT.into_response(),
        Reply::Links(rooms) => Json(serde_json::json!({"links": rooms})).into_response(),
        Reply::Playback(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({"id": format!("{id:016x}")})),
        )
            .into_response(),
        Reply::Dialing(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({"id": id.0, "state": "calling"})),
        )
            .into_response(),
        Reply::Recording(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({"id": id, "url": format!("/v1/recordings/{id}")})),
        )
            .into_response(),
        Reply::Flag(b) => Json(serde_json::json!({"value": b})).into_response(),
        Reply::Leg(id) => Json(serde_json::json!({"id": id.0})).into_response(),
        Reply::Calls(v) => {
            let now = std::time::Instant::now();
            Json(
                v.iter()
                    .map(|c| calls::call_json(c, now))
                    .collect::<Vec<_>>(),
            )
            .into_response()
        }
        Reply::Call(c) => Json(calls::call_json(&c, std::time::Instant::now())).into_response(),
        Reply::Metrics(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
    }
}

async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if (path == "/metrics" && !st.metrics_auth) || path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    if st.token.get().is_none() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "no_token",
            "no API token is configured ([api] token)",
        )
        .into_response();
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if st.is_api_token(given) {
        next.run(req).await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"caucus\""),
        );
        r
    }
}

async fn rooms(State(st): State<AppState>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Rooms).await?))
}

async fn room(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Room(room)).await?))
}

async fn create_room(State(st): State<AppState>, body: axum::body::Bytes) -> ApiResult {
    let r: RoomSpec = json_body(&body)?;
    r.check().map_err(|f| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            format!("{}: {}", f.key, f.reason),
        )
    })?;
    if r.music_on_hold.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            "music_on_hold: only rooms in the configuration file can have their own music",
        ));
    }
    let policy = r.policy(Prompt::MusicOnHold);
    let reply = call(&st, Op::CreateRoom(r.name, Box::new(policy))).await?;
    Ok((StatusCode::CREATED, reply_json(reply)).into_response())
}

async fn end_room(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::EndRoom(room)).await?))
}

async fn participants(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Participants(room)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    muted: Option<bool>,
    deaf: Option<bool>,
    role: Option<String>,
    hears: Option<serde_json::Value>,
    heard_by: Option<serde_json::Value>,
    hold: Option<bool>,
    hold_music: Option<String>,
    hand: Option<bool>,
    volume_in: Option<i8>,
    volume_out: Option<i8>,
}

/// `"all"`, `"none"` or a list of participant ids.
fn audience(v: serde_json::Value) -> Result<crate::core::control::Audience, ApiError> {
    use crate::core::control::Audience;
    match v {
        serde_json::Value::String(s) if s == "all" => Ok(Audience::All),
        serde_json::Value::String(s) if s == "none" => Ok(Audience::Only(Vec::new())),
        serde_json::Value::Array(ids) => ids
            .iter()
            .map(|i| i.as_u64().map(LegId))
            .collect::<Option<Vec<_>>>()
            .map(Audience::Only)
            .ok_or_else(|| ApiError::bad("hears / heard_by: a list of participant ids")),
        _ => Err(ApiError::bad(
            "hears / heard_by: \"all\", \"none\" or a list of participant ids",
        )),
    }
}

async fn update(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: Patch = json_body(&body)?;
    let role = match p.role.as_deref() {
        None => None,
        Some("moderator") => Some(Role::Moderator),
        Some("participant") => Some(Role::Participant),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "role \"{other}\": must be moderator or participant"
            )));
        }
    };
    if [p.volume_in, p.volume_out]
        .iter()
        .flatten()
        .any(|v| !(-12..=12).contains(v))
    {
        return Err(ApiError::bad("volume_in / volume_out: -12..12 dB"));
    }
    let hold_music = match p.hold_music {
        Some(file) => Some(play_file(&st, &file).await?),
        None => None,
    };
    let up = ParticipantUpdate {
        muted: p.muted,
        deaf: p.deaf,
        role,
        hears: p.hears.map(audience).transpose()?,
        heard_by: p.heard_by.map(audience).transpose()?,
        hold: p.hold,
        hold_music,
        hand: p.hand,
        volume_in: p.volume_in,
        volume_out: p.volume_out,
    };
    Ok(reply_json(
        call(&st, Op::Update(room, LegId(id), up)).await?,
    ))
}

/// A sound file from `[api] play_dir` (WAV, MP3, Ogg Vorbis or Opus; any rate), decoded and
/// resampled off the media thread, cached.
async fn play_file(st: &AppState, file: &str) -> Result<crate::media::prompt::Sound, ApiError> {
    let Some(dir) = st.play_dir.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "play_off",
            "playing files is not configured ([api] play_dir)",
        ));
    };
    if !plain_name(file) {
        return Err(ApiError::bad(
            "file: a file name in [api] play_dir (A-Z a-z 0-9 - _ .)",
        ));
    }
    let path = dir.join(file);
    st.sounds
        .file(&path.display().to_string())
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_file", e.to_string()))
}

/// A request's JSON body, or a 400 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DtmfBody {
    digits: String,
}

/// Keys to a participant's phone: RFC 4733 events, or SIP INFO when it
/// negotiated none.
async fn send_dtmf(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let d: DtmfBody = json_body(&body)?;
    Ok(reply_json(
        call(&st, Op::ParticipantDtmf(room, LegId(id), d.digits)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoachBody {
    target: u64,
}

/// Coaching (Twilio's coach, FreeSWITCH's relate): the participant is heard by
/// its target alone and hears everyone.
async fn coach(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    use crate::core::control::Audience;
    let c: CoachBody = json_body(&body)?;
    if c.target == id {
        return Err(ApiError::bad("a participant cannot coach itself"));
    }
    let up = ParticipantUpdate {
        hears: Some(Audience::All),
        heard_by: Some(Audience::Only(vec![LegId(c.target)])),
        ..ParticipantUpdate::default()
    };
    Ok(reply_json(
        call(&st, Op::Update(room, LegId(id), up)).await?,
    ))
}

/// The coaching ends: heard by everyone again.
async fn stop_coaching(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
) -> ApiResult {
    use crate::core::control::Audience;
    let up = ParticipantUpdate {
        heard_by: Some(Audience::All),
        ..ParticipantUpdate::default()
    };
    Ok(reply_json(
        call(&st, Op::Update(room, LegId(id), up)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    room: String,
    role: Option<String>,
}

async fn move_to(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let m: MoveBody = json_body(&body)?;
    let moderator = match m.role.as_deref() {
        None => None,
        Some("moderator") => Some(true),
        Some("participant") => Some(false),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "role \"{other}\": must be moderator or participant"
            )));
        }
    };
    Ok(reply_json(
        call(&st, Op::Move(room, LegId(id), m.room, moderator)).await?,
    ))
}

async fn kick(State(st): State<AppState>, Path((room, id)): Path<(String, u64)>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Kick(room, LegId(id))).await?))
}

async fn lock(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Lock(room, true)).await?))
}

async fn unlock(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Lock(room, false)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    file: Option<String>,
    text: Option<String>,
    language: Option<String>,
    r#loop: Option<u32>,
    level: Option<f64>,
    participant: Option<u64>,
}

/// A file name inside a directory: no separators, no `..`, nothing hidden.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

async fn play(
    State(st): State<AppState>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: PlayBody = json_body(&body)?;
    let to = p.participant.map(LegId);
    playback(&st, room, to, p).await
}

async fn play_to(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, u64)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p: PlayBody = json_body(&body)?;
    if p.participant.is_some_and(|x| x != id) {
        return Err(ApiError::bad("participant: the path names it"));
    }
    playback(&st, room, Some(LegId(id)), p).await
}

/// A file (WAV, MP3, Ogg; any rate) or speech, at `level` dB, `loop` times (0:
/// until stopped, at most 100), to the room or one participant.
async fn playback(st: &AppState, room: String, to: Option<LegId>, p: PlayBody) -> ApiResult {
    let level = p.level.unwrap_or(0.0);
    if !(-24.0..=6.0).contains(&level) {
        return Err(ApiError::bad("level: -24..6 dB"));
    }
    let made = match (&p.file, &p.text) {
        (Some(file), None) => play_file(st, file).await?,
        (None, Some(text)) => st
            .sounds
            .speech(text, p.language.as_deref().unwrap_or("en-US"))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "tts_failed",
                    e.to_string(),
                )
            })?,
        _ => return Err(ApiError::bad("one of file or text")),
    };
    // Vonage's level is a gain of 1 + level: dB brought to it
    let vonage = (10f64.powf(level / 20.0) - 1.0).clamp(-1.0, 1.0);
    let sound = crate::sounds::levelled(made, vonage)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let plays = crate::sounds::plays(p.r#loop.unwrap_or(1));
    Ok(reply_json(
        call(st, Op::Announce(room, to, sound, plays)).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    room: Option<String>,
    uri: Option<String>,
}

/// Join two rooms together: two of this node (`room`), or this one and a room
/// on another bridge (`uri`, dialled as a link leg).
async fn link(
    State(st): State<AppState>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: LinkBody = json_body(&body)?;
    match (b.room, b.uri) {
        (Some(other), None) => Ok((
            StatusCode::CREATED,
            reply_json(call(&st, Op::Link(room, other)).await?),
        )
            .into_response()),
        (None, Some(uri)) => {
            let req = crate::core::dialout::DialRequest {
                to: uri,
                moderator: false,
                caller_id: None,
                ring_timeout: std::time::Duration::from_secs(30),
                local: None,
                end_on_exit: false,
                limit: None,
                link: true,
                on_failure: None,
                flow: None,
            };
            Ok(reply_json(call(&st, Op::Dial(room, req)).await?))
        }
        _ => Err(ApiError::bad("one of room or uri")),
    }
}

async fn unlink(
    State(st): State<AppState>,
    Path((room, other)): Path<(String, String)>,
) -> ApiResult {
    Ok(reply_json(call(&st, Op::Unlink(room, other)).await?))
}

async fn links(State(st): State<AppState>, Path(room): Path<String>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Links(room)).await?))
}

async fn stop_play(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> ApiResult {
    let id = u64::from_str_radix(&id, 16).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_playback",
            "no such playback",
        )
    })?;
    Ok(reply_json(call(&st, Op::StopPlayback(room, id)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DialBody {
    to: String,
    role: Option<String>,
    caller_id: Option<String>,
    timeout_s: Option<u64>,
}

async fn dial(
    State(st): State<AppState>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: DialBody = json_body(&body)?;
    let moderator = match b.role.as_deref() {
        None | Some("participant") => false,
        Some("moderator") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "role \"{other}\": must be moderator or participant"
            )));
        }
    };
    let timeout = b.timeout_s.unwrap_or(30);
    if !(1..=300).contains(&timeout) {
        return Err(ApiError::bad("timeout_s must be 1..=300"));
    }
    let req = crate::core::dialout::DialRequest {
        to: b.to,
        moderator,
        caller_id: b.caller_id,
        ring_timeout: std::time::Duration::from_secs(timeout),
        // the driver's to choose
        local: None,
        end_on_exit: false,
        limit: None,
        link: false,
        on_failure: None,
        flow: None,
    };
    Ok(reply_json(call(&st, Op::Dial(room, req)).await?))
}

async fn metrics(State(st): State<AppState>) -> ApiResult {
    Ok(reply_json(call(&st, Op::Metrics).await?))
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready.get() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "not accepting new calls (draining or overloaded)\n",
        )
            .into_response()
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The router, with its authentication layer.
fn router(st: AppState) -> axum::Router {
    use axum::routing::{delete, patch};
    axum::Router::new()
        .route("/v1/rooms", get(rooms).post(create_room))
        .route("/v1/rooms/{room}", get(room).delete(end_room))
        .route("/v1/rooms/{room}/participants", get(participants))
        .route(
            "/v1/rooms/{room}/participants/{id}",
            patch(update).delete(kick),
        )
        .route("/v1/rooms/{room}/participants/{id}/move", post(move_to))
        .route("/v1/rooms/{room}/participants/{id}/dtmf", post(send_dtmf))
        .route(
            "/v1/rooms/{room}/participants/{id}/coach",
            post(coach).delete(stop_coaching),
        )
        .route("/v1/rooms/{room}/lock", post(lock))
        .route("/v1/rooms/{room}/unlock", post(unlock))
        .route("/v1/rooms/{room}/play", post(play))
        .route("/v1/rooms/{room}/play/{id}", delete(stop_play))
        .route("/v1/rooms/{room}/links", get(links).post(link))
        .route("/v1/rooms/{room}/links/{other}", delete(unlink))
        .route("/v1/rooms/{room}/participants/{id}/play", post(play_to))
        .route("/v1/rooms/{room}/dial", post(dial))
        .route("/v1/rooms/{room}/recordings", post(recordings::record))
        .route(
            "/v1/rooms/{room}/recordings/{id}",
            delete(recordings::stop_recording),
        )
        .route("/v1/calls", get(calls::list).post(calls::create))
        .route("/v1/calls/{uuid}", get(calls::one).put(calls::modify))
        .route(
            "/v1/calls/{uuid}/talk",
            put(calls::talk).delete(calls::stop_talk),
        )
        .route(
            "/v1/calls/{uuid}/stream",
            put(calls::stream).delete(calls::stop_stream),
        )
        .route("/v1/calls/{uuid}/dtmf", put(calls::dtmf))
        .route("/v1/recordings", get(recordings::list_recordings))
        .route("/v1/recordings/{id}", get(recordings::download))
        .route("/v1/recordings/{id}/speakers", get(recordings::speakers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/v1/events", get(stream::all))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            forward::cluster,
        ))
        .layer(axum::middleware::from_fn_with_state(st.clone(), auth))
        .merge(web::routes())
        .fallback(not_found)
        .with_state(st)
}

/// The metrics listener's router: metrics and health only.
fn metrics_router(st: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(st.clone(), auth))
        .with_state(st)
}

/// Bind the API's listener (at start-up, so a taken port fails the start).
pub async fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

fn state(settings: ApiSettings, ready: Readiness, core: mpsc::Sender<ApiCall>) -> AppState {
    AppState {
        token: settings.token,
        metrics_auth: settings.metrics_auth,
        ready,
        play_dir: settings.play_dir.map(Arc::new),
        recording_dir: settings.recording_dir.map(Arc::new),
        core,
        web: settings.web,
        live: settings.live,
        sounds: settings.sounds,
        cluster: settings
            .cluster
            .map(|r| Arc::new(forward::Forwarder::new(r))),
    }
}

/// Serve the API on `listener`; operations go to `core`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: ApiSettings,
    ready: Readiness,
    core: mpsc::Sender<ApiCall>,
) {
    let app = router(state(settings, ready, core));
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "API server stopped");
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listener`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    settings: ApiSettings,
    ready: Readiness,
    core: mpsc::Sender<ApiCall>,
) {
    let app = metrics_router(state(settings, ready, core));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(plain_name("hello.wav"));
        for bad in [
            "",
            "../x.wav",
            "/etc/passwd",
            ".hidden",
            "a/b.wav",
            "a b.wav",
        ] {
            assert!(!plain_name(bad), "{bad}");
        }
        assert!(recordings::recording_id("0123456789abcdef0123456789abcdef"));
        assert!(!recordings::recording_id(
            "0123456789abcdef0123456789abcdeF"
        ));
        assert!(!recordings::recording_id("../../etc/passwd"));
    }

    #[test]
    fn openapi_document_is_json_with_every_route() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = v["paths"].as_object().unwrap();
        for p in [
            "/v1/rooms",
            "/v1/rooms/{room}",
            "/v1/rooms/{room}/participants",
            "/v1/rooms/{room}/participants/{id}",
            "/v1/rooms/{room}/participants/{id}/move",
            "/v1/rooms/{room}/lock",
            "/v1/rooms/{room}/unlock",
            "/v1/rooms/{room}/play",
            "/v1/rooms/{room}/dial",
            "/v1/rooms/{room}/recordings",
            "/v1/rooms/{room}/recordings/{id}",
            "/v1/recordings",
            "/v1/recordings/{id}",
            "/metrics",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/v1/events",
            "/v1/rooms/{room}/join",
            "/v1/rooms/{room}/tokens",
            "/v1/rooms/{room}/whip",
            "/v1/whip/{id}",
            "/v1/rooms/{room}/roster",
            "/v1/rooms/{room}/events",
            "/v1/calls",
            "/v1/calls/{uuid}",
            "/v1/calls/{uuid}/talk",
            "/v1/calls/{uuid}/stream",
            "/v1/calls/{uuid}/dtmf",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }
}
