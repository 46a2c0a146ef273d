//! Vonage's call-control API on the same bearer token: `/v1/calls` lists and
//! places calls, `PUT /v1/calls/{uuid}` hangs up, mutes and earmuffs, and
//! `/talk`, `/stream` play speech and sound files into one call, `/dtmf` sends
//! it key presses (RFC 4733, or SIP INFO), with Vonage's
//! request and response bodies and its error shape (`type`, `title`, `detail`,
//! `instance`). A call's `uuid` is its participant id in the room API, its
//! `conversation_uuid` the room.
//!
//! `transfer` moves the call into another NCCO's conversation (its talk and
//! stream actions played first). What Vonage has and the bridge does not (an
//! outbound `answer_url`, endpoints other than `sip`) is refused with that
//! error shape, never ignored.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ops::{Op, Reply, wall};
use super::{ApiError, AppState, call};
use crate::core::LegId;
use crate::core::calls::{CallAction, CallInfo};
use crate::sounds::{levelled, plays};

/// An error in Vonage's shape.
#[derive(Debug)]
pub struct VonageError {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl VonageError {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> VonageError {
        VonageError {
            status,
            title,
            detail: detail.into(),
        }
    }
    fn bad(detail: impl Into<String>) -> VonageError {
        VonageError::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }
    fn unsupported(detail: impl Into<String>) -> VonageError {
        VonageError::new(StatusCode::NOT_IMPLEMENTED, "Not Supported", detail)
    }
}

impl IntoResponse for VonageError {
    fn into_response(self) -> Response {
        let slug = self.title.to_ascii_lowercase().replace(' ', "-");
        let body = json!({
            "type": format!("https://developer.vonage.com/api-errors/voice#{slug}"),
            "title": self.title,
            "detail": self.detail,
            "instance": crate::util::secret::hex(16),
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<ApiError> for VonageError {
    fn from(e: ApiError) -> VonageError {
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not Found",
            StatusCode::BAD_REQUEST => "Bad Request",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::TOO_MANY_REQUESTS => "Throttled",
            _ => "Unavailable",
        };
        VonageError::new(e.status, title, format!("{}: {}", e.error, e.detail))
    }
}

type CallResult = Result<Response, VonageError>;

/// A call id of the path: the leg's number.
fn uuid(s: &str) -> Result<LegId, VonageError> {
    s.parse()
        .map(LegId)
        .map_err(|_| VonageError::new(StatusCode::NOT_FOUND, "Not Found", format!("no call {s}")))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, VonageError> {
    serde_json::from_slice(body).map_err(|e| VonageError::bad(e.to_string()))
}

/// A call as Vonage's `GET /v1/calls/{uuid}` shows it.
pub fn call_json(c: &CallInfo, now: Instant) -> Value {
    let p = &c.participant;
    let kind = match p.kind {
        crate::core::LegKind::Sip => "sip",
        // Vonage's client SDKs (a browser among them) are its "app" endpoints
        crate::core::LegKind::WebRtc => "app",
        crate::core::LegKind::WebSocket => "websocket",
        crate::core::LegKind::Link => "link",
    };
    let status = match p.state {
        "calling" => "ringing",
        _ => "answered",
    };
    let (from, to) = if c.outbound {
        (String::new(), p.from.clone())
    } else {
        (p.from.clone(), c.to.clone())
    };
    let id = p.id.0.to_string();
    json!({
        "_links": {"self": {"href": format!("/v1/calls/{id}")}},
        "uuid": id,
        "conversation_uuid": c.room,
        "to": {"type": kind, "uri": to},
        "from": {"type": kind, "uri": from},
        "status": status,
        "direction": if c.outbound { "outbound" } else { "inbound" },
        "start_time": p.joined.map(|t| wall(t, now)),
        "duration": p.joined.map(|t| now.saturating_duration_since(t).as_secs().to_string()),
        "muted": p.muted,
        "earmuffed": p.deaf,
    })
}

/// The filters and paging of `GET /v1/calls`, as Vonage names them.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ListQuery {
    status: Option<String>,
    conversation_uuid: Option<String>,
    date_start: Option<String>,
    date_end: Option<String>,
    page_size: Option<usize>,
    record_index: Option<usize>,
    order: Option<String>,
}

/// The first 19 characters of a UTC RFC 3339 time (to the second), which
/// order as the times do.
fn to_second(t: &str, name: &str) -> Result<String, VonageError> {
    let b = t.as_bytes();
    let shaped = b.len() >= 20
        && t.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':';
    if !shaped {
        return Err(VonageError::bad(format!(
            "{name}: a UTC time such as 2026-01-31T09:00:00Z"
        )));
    }
    Ok(t[..19].to_string())
}

/// GET /v1/calls: the live calls, newest first unless `order=asc`, filtered by
/// `status`, `conversation_uuid` and start time, a page of `page_size` (1-100,
/// 10) from `record_index`.
pub(super) async fn list(
    State(st): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> CallResult {
    let page_size = q.page_size.unwrap_or(10);
    if !(1..=100).contains(&page_size) {
        return Err(VonageError::bad("page_size: 1-100"));
    }
    let asc = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(VonageError::bad("order: asc or desc")),
    };
    let start = q
        .date_start
        .as_deref()
        .map(|t| to_second(t, "date_start"))
        .transpose()?;
    let end = q
        .date_end
        .as_deref()
        .map(|t| to_second(t, "date_end"))
        .transpose()?;
    let Reply::Calls(calls) = call(&st, Op::Calls).await? else {
        return Err(VonageError::unsupported("unexpected reply"));
    };
    let now = Instant::now();
    let mut items: Vec<Value> = calls
        .iter()
        .map(|c| call_json(c, now))
        .filter(|v| q.status.as_deref().is_none_or(|s| v["status"] == s))
        .filter(|v| {
            q.conversation_uuid
                .as_deref()
                .is_none_or(|c| v["conversation_uuid"] == c)
        })
        .filter(|v| {
            let at = v["start_time"].as_str().map(|t| t.get(..19).unwrap_or(t));
            start.as_deref().is_none_or(|s| at.is_some_and(|t| t >= s))
                && end.as_deref().is_none_or(|e| at.is_some_and(|t| t <= e))
        })
        .collect();
    let key = |v: &Value| {
        (
            v["start_time"].as_str().unwrap_or("").to_string(),
            v["uuid"]
                .as_str()
                .and_then(|u| u.parse::<u64>().ok())
                .unwrap_or(0),
        )
    };
    items.sort_by_key(key);
    if !asc {
        items.reverse();
    }
    let count = items.len();
    let index = q.record_index.unwrap_or(0);
    let page: Vec<Value> = items.into_iter().skip(index).take(page_size).collect();
    let link = |i: usize| json!({"href": format!("/v1/calls?page_size={page_size}&record_index={i}&order={}", if asc { "asc" } else { "desc" })});
    let mut links = json!({"self": link(index), "first": link(0)});
    if index + page_size < count {
        links["next"] = link(index + page_size);
    }
    if index > 0 {
        links["prev"] = link(index.saturating_sub(page_size));
    }
    Ok(Json(json!({
        "count": count, "page_size": page_size, "record_index": index,
        "_links": links,
        "_embedded": {"calls": page},
    }))
    .into_response())
}

/// GET /v1/calls/{uuid}
pub(super) async fn one(State(st): State<AppState>, Path(id): Path<String>) -> CallResult {
    let Reply::Call(c) = call(&st, Op::Call(uuid(&id)?)).await? else {
        return Err(VonageError::unsupported("unexpected reply"));
    };
    Ok(Json(call_json(&c, Instant::now())).into_response())
}

#[derive(Deserialize)]
struct Modify {
    action: String,
    #[serde(default)]
    destination: Option<Value>,
}

/// PUT /v1/calls/{uuid}
pub(super) async fn modify(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CallResult {
    let leg = uuid(&id)?;
    let m: Modify = parse(&body)?;
    let action = match m.action.as_str() {
        "hangup" => CallAction::Hangup,
        "mute" => CallAction::Mute(true),
        "unmute" => CallAction::Mute(false),
        "earmuff" => CallAction::Earmuff(true),
        "unearmuff" => CallAction::Earmuff(false),
        "transfer" => return transfer(&st, leg, m.destination).await,
        other => {
            return Err(VonageError::bad(format!(
                "action \"{other}\": one of hangup, mute, unmute, earmuff, unearmuff, transfer"
            )));
        }
    };
    call(&st, Op::CallAction(leg, action)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `transfer` to `{"type": "ncco", "ncco": [...]}` or `{"type": "ncco", "url":
/// [URL]}` (the NCCO fetched by GET): the call moves into that NCCO's
/// conversation, its talk/stream/wait played first, or goes on by its
/// input, notify or connect as a call answered with it would.
async fn transfer(st: &AppState, leg: LegId, destination: Option<Value>) -> CallResult {
    let d = destination.ok_or_else(|| VonageError::bad("transfer: destination required"))?;
    if d.get("type").and_then(Value::as_str) != Some("ncco") {
        return Err(VonageError::unsupported(
            "transfer: only to an ncco destination",
        ));
    }
    let ncco = match (d.get("ncco"), d.get("url")) {
        (Some(n), _) => n.clone(),
        (None, Some(u)) => {
            let url = match u {
                Value::Array(v) => v.first().and_then(Value::as_str),
                Value::String(s) => Some(s.as_str()),
                _ => None,
            }
            .filter(|u| crate::util::is_http_url(u))
            .ok_or_else(|| VonageError::bad("destination.url: an http(s) URL"))?;
            fetch_ncco(url).await?
        }
        (None, None) => return Err(VonageError::bad("destination: ncco or url")),
    };
    // one that only joins a conversation moves the call before the answer;
    // one that collects digits, notifies or connects runs as an answer's does
    let plan =
        crate::answer::parse_plan(&ncco, true).map_err(|e| VonageError::bad(e.to_string()))?;
    if !matches!(plan.next, crate::answer::Next::Conversation(_)) {
        call(st, Op::TransferNcco(leg, ncco)).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let conv = crate::answer::parse_ncco(&ncco).map_err(|e| VonageError::bad(e.to_string()))?;
    let (room, options) = crate::answer::prepare(conv, &st.sounds).await;
    call(st, Op::Transfer(leg, room, Box::new(options))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An NCCO by GET, within the answer webhook's bounds.
async fn fetch_ncco(url: &str) -> Result<Value, VonageError> {
    let failed = |e: &dyn std::fmt::Display| {
        VonageError::new(
            StatusCode::BAD_GATEWAY,
            "Bad Gateway",
            format!("{url}: {e}"),
        )
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .user_agent("caucus")
        .build()
        .map_err(|e| failed(&e))?;
    let r = client.get(url).send().await.map_err(|e| failed(&e))?;
    if !r.status().is_success() {
        return Err(failed(&format!("HTTP {}", r.status().as_u16())));
    }
    r.json().await.map_err(|e| failed(&e))
}

/// Vonage's `loop` (0: until stopped) as plays, and `level` of talk and stream.
fn loop_level(l: Option<u32>, level: Option<f64>) -> Result<(u32, f64), VonageError> {
    let level = level.unwrap_or(0.0);
    if !(-1.0..=1.0).contains(&level) {
        return Err(VonageError::bad("level must be -1..1"));
    }
    Ok((plays(l.unwrap_or(1)), level))
}

fn unmade(leg: LegId, what: &'static str, e: crate::sounds::SoundError) -> VonageError {
    tracing::warn!(call = %leg, error = %e, "{what} into a call failed");
    VonageError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Sound Failed",
        e.to_string(),
    )
}

/// A sound made for `/talk` or `/stream`, at its level, played `loops` times.
async fn play(
    st: &AppState,
    leg: LegId,
    what: &'static str,
    made: Result<crate::media::prompt::Sound, crate::sounds::SoundError>,
    loops: u32,
    level: f64,
) -> Result<(), VonageError> {
    let s = levelled(made.map_err(|e| unmade(leg, what, e))?, level)
        .await
        .map_err(|e| unmade(leg, what, e))?;
    call(st, Op::CallPlay(leg, s, loops)).await?;
    Ok(())
}

#[derive(Deserialize)]
struct Talk {
    text: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default, rename = "loop")]
    loops: Option<u32>,
    #[serde(default)]
    level: Option<f64>,
}

/// PUT /v1/calls/{uuid}/talk
pub(super) async fn talk(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CallResult {
    let leg = uuid(&id)?;
    let t: Talk = parse(&body)?;
    let (loops, level) = loop_level(t.loops, t.level)?;
    let language = t.language.as_deref().unwrap_or("en-US");
    let spoken = st.sounds.speech(&t.text, language).await;
    play(&st, leg, "talk", spoken, loops, level).await?;
    Ok(Json(json!({"message": "Talk started", "uuid": id})).into_response())
}

#[derive(Deserialize)]
struct Stream {
    stream_url: Value,
    #[serde(default, rename = "loop")]
    loops: Option<u32>,
    #[serde(default)]
    level: Option<f64>,
}

/// PUT /v1/calls/{uuid}/stream
pub(super) async fn stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CallResult {
    let leg = uuid(&id)?;
    let s: Stream = parse(&body)?;
    let url = match &s.stream_url {
        Value::String(u) => u.clone(),
        Value::Array(v) => v
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| VonageError::bad("stream_url: a URL"))?
            .to_string(),
        _ => return Err(VonageError::bad("stream_url: a URL or a list of one")),
    };
    let (loops, level) = loop_level(s.loops, s.level)?;
    let file = st.sounds.file(&url).await;
    play(&st, leg, "stream", file, loops, level).await?;
    Ok(Json(json!({"message": "Stream started", "uuid": id})).into_response())
}

/// DELETE /v1/calls/{uuid}/talk
pub(super) async fn stop_talk(State(st): State<AppState>, Path(id): Path<String>) -> CallResult {
    call(&st, Op::CallStop(uuid(&id)?)).await?;
    Ok(Json(json!({"message": "Talk stopped", "uuid": id})).into_response())
}

/// DELETE /v1/calls/{uuid}/stream
pub(super) async fn stop_stream(State(st): State<AppState>, Path(id): Path<String>) -> CallResult {
    call(&st, Op::CallStop(uuid(&id)?)).await?;
    Ok(Json(json!({"message": "Stream stopped", "uuid": id})).into_response())
}

#[derive(Deserialize)]
struct Dtmf {
    digits: String,
}

/// PUT /v1/calls/{uuid}/dtmf
pub(super) async fn dtmf(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> CallResult {
    let d: Dtmf = parse(&body)?;
    call(&st, Op::CallDtmf(uuid(&id)?, d.digits)).await?;
    Ok(Json(json!({"message": "DTMF sent", "uuid": id})).into_response())
}

#[derive(Deserialize)]
struct Endpoint {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Deserialize)]
struct Create {
    to: Vec<Endpoint>,
    #[serde(default)]
    from: Option<Value>,
    #[serde(default)]
    ncco: Option<Value>,
    #[serde(default)]
    answer_url: Option<Value>,
    #[serde(default)]
    event_url: Option<Value>,
    #[serde(default)]
    ringing_timer: Option<u64>,
}

/// POST /v1/calls: call a SIP URI into the conversation of `ncco`.
pub(super) async fn create(State(st): State<AppState>, body: axum::body::Bytes) -> CallResult {
    let c: Create = parse(&body)?;
    let [to] = &c.to[..] else {
        return Err(VonageError::bad("to: exactly one endpoint"));
    };
    let uri = match (to.kind.as_str(), &to.uri) {
        ("sip", Some(u)) => u.clone(),
        ("sip", None) => return Err(VonageError::bad("to: a sip endpoint needs its uri")),
        (other, _) => {
            return Err(VonageError::unsupported(format!(
                "to: {other} endpoints are not supported; only sip"
            )));
        }
    };
    let Some(ncco) = &c.ncco else {
        return Err(match c.answer_url {
            Some(_) => VonageError::unsupported(
                "answer_url for outbound calls is not supported; give the ncco",
            ),
            None => VonageError::bad("ncco: required"),
        });
    };
    let conv = crate::answer::parse_ncco(ncco).map_err(|e| VonageError::bad(e.to_string()))?;
    if !conv.intro.is_empty() || !conv.options.errors.is_empty() {
        return Err(VonageError::unsupported(
            "an outbound call's ncco holds only its conversation here",
        ));
    }
    let event_url = match c.event_url {
        None => conv.options.event_url.clone(),
        Some(Value::Array(v)) => v.first().and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(VonageError::bad("event_url: a URL or a list of one")),
    };
    if event_url
        .as_deref()
        .is_some_and(|u| !crate::util::is_http_url(u))
    {
        return Err(VonageError::bad("event_url: an http(s) URL"));
    }
    let caller_id = c
        .from
        .as_ref()
        .and_then(|f| f.get("number").or_else(|| f.get("user")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let ring = c.ringing_timer.unwrap_or(60);
    if !(1..=120).contains(&ring) {
        return Err(VonageError::bad("ringing_timer must be 1..=120"));
    }
    let req = crate::core::dialout::DialRequest {
        to: uri,
        moderator: conv.options.start_on_enter && conv.options.end_on_exit,
        caller_id,
        ring_timeout: std::time::Duration::from_secs(ring),
        local: None,
        end_on_exit: false,
        limit: None,
        link: false,
        on_failure: None,
        flow: None,
    };
    let room = conv.name.clone();
    let Reply::Dialing(leg) = call(&st, Op::DialConversation(room.clone(), event_url, req)).await?
    else {
        return Err(VonageError::unsupported("unexpected reply"));
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "uuid": leg.0.to_string(), "status": "started", "direction": "outbound",
            "conversation_uuid": room,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_zero_plays_until_stopped_and_level_is_bounded() {
        assert_eq!(
            loop_level(Some(0), None).unwrap(),
            (crate::sounds::MAX_LOOPS, 0.0)
        );
        assert_eq!(loop_level(None, Some(-0.5)).unwrap(), (1, -0.5));
        assert!(loop_level(None, Some(2.0)).is_err());
        assert!(uuid("abc").is_err());
        assert_eq!(uuid("17").unwrap(), LegId(17));
    }
}
