//! Browser participants on the HTTP listener: the join and admin pages, join
//! tokens, and WHIP (RFC 9725) signalling.
//!
//! - `POST /v1/rooms/{room}/join` exchanges the room's PIN (or none, or the
//!   moderator PIN) for a join token; the PIN is judged by the core, in the same
//!   per-source lockout as a PIN typed by DTMF. `GET` of it says whether the
//!   room asks for a PIN.
//! - `POST /v1/rooms/{room}/tokens` (API token) makes a token for an invitation.
//! - `POST /v1/rooms/{room}/whip` takes an SDP offer with a join token of that
//!   room (or the API token) and answers `201 Created` with the SDP answer and a
//!   `Location`; `DELETE` of the location leaves. `PATCH` of it (`{"muted"}`)
//!   mutes oneself.
//! - `GET /v1/rooms/{room}/roster` lists the room for a join token of it.
//!
//! Join and WHIP requests are rate-limited per source with a token bucket
//! sized for a reverse proxy (a meeting's browsers from one address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ops::{Op, Reply};
use super::{ApiError, ApiResult, AppState, call};
use crate::core::LegId;
use crate::core::control::ParticipantUpdate;
use crate::media::transport::webrtc::WebRtcHub;
use crate::util::secret::{JoinClaims, TokenKey};

/// The join page.
const INDEX_HTML: &str = include_str!("pages/index.html");
/// The admin page.
const ADMIN_HTML: &str = include_str!("pages/admin.html");
/// What both pages share: styles and the API helpers.
const CAUCUS_JS: &str = include_str!("pages/caucus.js");
const CAUCUS_CSS: &str = include_str!("pages/caucus.css");

/// What the browser side needs, made by the driver at start-up.
pub struct WebState {
    /// the shared WebRTC socket
    pub hub: Arc<WebRtcHub>,
    /// signs and checks join tokens
    pub key: TokenKey,
    /// how long a token from `/join` lasts, s
    pub join_ttl_s: u64,
    limiter: Limiter,
    /// WHIP resources: id → (leg, room)
    resources: Mutex<HashMap<String, (LegId, String)>>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState").field("hub", &self.hub).finish()
    }
}

impl WebState {
    /// The browser side over `hub`, tokens signed with `key`.
    pub fn new(hub: Arc<WebRtcHub>, key: TokenKey, join_ttl_s: u64, per_s: u32) -> WebState {
        WebState {
            hub,
            key,
            join_ttl_s,
            limiter: Limiter::new(per_s),
            resources: Mutex::new(HashMap::new()),
        }
    }

    fn resources(&self) -> std::sync::MutexGuard<'_, HashMap<String, (LegId, String)>> {
        self.resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A token bucket per source address: `per_s` a second, `10 × per_s` at once.
struct Limiter {
    per_s: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    fn new(per_s: u32) -> Limiter {
        Limiter {
            per_s: f64::from(per_s.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, src: IpAddr, now: Instant) -> bool {
        let burst = self.per_s * 10.0;
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() > 10_000 {
            // forget sources whose buckets have filled again
            b.retain(|_, (_, at)| {
                now.saturating_duration_since(*at).as_secs_f64() * self.per_s < burst
            });
        }
        let (tokens, at) = b.entry(src).or_insert((burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_s).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The browser side's state, or 503 when there is none.
pub(super) fn web_state(st: &AppState) -> Result<&Arc<WebState>, ApiError> {
    web(st)
}

/// That the request's token is the API token or a join token of `room`.
pub(super) fn check_caller(
    st: &AppState,
    w: &WebState,
    headers: &HeaderMap,
    room: &str,
) -> Result<(), ApiError> {
    caller(st, w, headers, room).map(|_| ())
}

fn web(st: &AppState) -> Result<&Arc<WebState>, ApiError> {
    st.web.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webrtc_off",
            "browser participants are not available",
        )
    })
}

fn limited(w: &WebState, src: IpAddr) -> Result<(), ApiError> {
    if w.limiter.allow(src, Instant::now()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address",
        ))
    }
}

/// Who a request's bearer token says it is.
enum Caller {
    /// the API token
    Admin,
    /// a join token
    Joiner(JoinClaims),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

/// The caller, if its token is the API token or a join token for `room`.
fn caller(
    st: &AppState,
    w: &WebState,
    headers: &HeaderMap,
    room: &str,
) -> Result<Caller, ApiError> {
    let given = bearer(headers).ok_or_else(|| unauthorized("a bearer token is needed"))?;
    if st.is_api_token(given) {
        return Ok(Caller::Admin);
    }
    let claims = w
        .key
        .verify(given, unix_now())
        .map_err(|e| unauthorized(&e.to_string()))?;
    if claims.room != room {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_room",
            "this token is for another room",
        ));
    }
    Ok(Caller::Joiner(claims))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    pin: Option<String>,
    name: Option<String>,
}

/// A display name: what was given, trimmed to 64 characters without control
/// characters, or "browser".
fn display_name(given: Option<&str>) -> String {
    let n: String = given
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let n = n.trim();
    if n.is_empty() {
        "browser".into()
    } else {
        n.to_string()
    }
}

fn token_json(w: &WebState, claims: &JoinClaims) -> Response {
    Json(serde_json::json!({
        "token": w.key.sign(claims),
        "role": if claims.moderator { "moderator" } else { "participant" },
        "name": claims.name,
        "room": claims.room,
        "expires_at": claims.expires_at,
    }))
    .into_response()
}

async fn join(
    State(st): State<AppState>,
    ConnectInfo(src): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let w = web(&st)?;
    limited(w, src.ip())?;
    let b: JoinBody = if body.is_empty() {
        JoinBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(e.to_string()))?
    };
    let pin = b.pin.unwrap_or_default();
    if pin.len() > 32 {
        return Err(ApiError::bad("pin: at most 32 characters"));
    }
    let moderator = match call(&st, Op::WebPin(room.clone(), pin, src.ip())).await? {
        Reply::Flag(m) => m,
        _ => false,
    };
    let claims = JoinClaims {
        room,
        moderator,
        name: display_name(b.name.as_deref()),
        expires_at: unix_now() + w.join_ttl_s,
    };
    Ok(token_json(w, &claims))
}

async fn asks_pin(
    State(st): State<AppState>,
    ConnectInfo(src): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
) -> ApiResult {
    let w = web(&st)?;
    limited(w, src.ip())?;
    let pin = matches!(
        call(&st, Op::WebAsksPin(room.clone())).await?,
        Reply::Flag(true)
    );
    Ok(Json(serde_json::json!({"room": room, "pin": pin})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    role: Option<String>,
    name: Option<String>,
    ttl_s: Option<u64>,
}

async fn make_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let w = web(&st)?;
    if !bearer(&headers).is_some_and(|t| st.is_api_token(t)) {
        return Err(unauthorized("the API token is needed"));
    }
    let b: TokenBody = serde_json::from_slice(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    let moderator = match b.role.as_deref() {
        None | Some("participant") => false,
        Some("moderator") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "role \"{other}\": must be moderator or participant"
            )));
        }
    };
    let ttl = b.ttl_s.unwrap_or(86_400);
    if !(60..=30 * 86_400).contains(&ttl) {
        return Err(ApiError::bad("ttl_s must be 60 to 2592000 (30 days)"));
    }
    // the room must exist (the core says so, or answers 404)
    call(&st, Op::Room(room.clone())).await?;
    let claims = JoinClaims {
        room,
        moderator,
        name: display_name(b.name.as_deref()),
        expires_at: unix_now() + ttl,
    };
    Ok((StatusCode::CREATED, token_json(w, &claims)).into_response())
}

async fn whip(
    State(st): State<AppState>,
    ConnectInfo(src): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
    offer: String,
) -> ApiResult {
    let w = web(&st)?.clone();
    limited(&w, src.ip())?;
    let who = caller(&st, &w, &headers, &room)?;
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !sdp_type.starts_with("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_sdp",
            "the offer must be Content-Type: application/sdp",
        ));
    }
    let (moderator, name) = match who {
        Caller::Admin => (true, "admin".to_string()),
        Caller::Joiner(c) => (c.moderator, c.name),
    };
    let answered = w
        .hub
        .answer(&offer, Instant::now())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_offer", e.to_string()))?;
    let req = crate::core::web::WebJoin {
        room: room.clone(),
        moderator,
        name,
        source: src.ip(),
        codec: answered.codec,
        pt: answered.pt,
    };
    let leg = match call(&st, Op::WebJoin(req, Box::new(answered.transport))).await? {
        Reply::Leg(leg) => leg,
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no leg",
            ));
        }
    };
    let id = format!("{}-{}", leg.0, crate::util::secret::hex(12));
    w.resources().insert(id.clone(), (leg, room));
    let location = format!("/v1/whip/{id}");
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answered.sdp,
    )
        .into_response())
}

/// The resource `id` names, if the request's token may act on it.
fn resource(
    st: &AppState,
    w: &WebState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(LegId, String), ApiError> {
    let Some((leg, room)) = w.resources().get(id).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such WHIP resource",
        ));
    };
    caller(st, w, headers, &room)?;
    Ok((leg, room))
}

async fn whip_delete(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let w = web(&st)?.clone();
    let (leg, _) = resource(&st, &w, &headers, &id)?;
    w.resources().remove(&id);
    // a leg already gone (kicked, timed out) is left all the same
    let _ = call(&st, Op::WebLeave(leg)).await;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfPatch {
    muted: bool,
}

async fn whip_patch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let w = web(&st)?.clone();
    let (leg, room) = resource(&st, &w, &headers, &id)?;
    let p: SelfPatch = serde_json::from_slice(&body).map_err(|e| ApiError::bad(e.to_string()))?;
    let up = ParticipantUpdate {
        muted: Some(p.muted),
        ..Default::default()
    };
    Ok(super::reply_json(
        call(&st, Op::Update(room, leg, up)).await?,
    ))
}

async fn roster(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> ApiResult {
    let w = web(&st)?.clone();
    caller(&st, &w, &headers, &room)?;
    let Reply::Participants(all) = call(&st, Op::Participants(room)).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no list",
        ));
    };
    // what one participant may see of the others: no call ids or addresses
    let v: Vec<serde_json::Value> = all
        .into_iter()
        .map(|p| {
            let shown = if p.kind == "sip" {
                "phone".to_string()
            } else {
                p.from
            };
            serde_json::json!({
                "id": p.id, "name": shown, "kind": p.kind, "role": p.role,
                "state": p.state, "muted": p.muted, "talking": p.talking,
            })
        })
        .collect();
    Ok(Json(v).into_response())
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn admin() -> Html<&'static str> {
    Html(ADMIN_HTML)
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CAUCUS_JS,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CAUCUS_CSS,
    )
        .into_response()
}

/// The browser routes (each checks its own token).
pub(super) fn routes() -> axum::Router<AppState> {
    use axum::routing::delete;
    axum::Router::new()
        .route("/", get(index))
        .route("/admin", get(admin))
        .route("/caucus.js", get(script))
        .route("/caucus.css", get(style))
        .route("/v1/rooms/{room}/join", post(join).get(asks_pin))
        .route("/v1/rooms/{room}/tokens", post(make_token))
        .route("/v1/rooms/{room}/whip", post(whip))
        .route("/v1/rooms/{room}/roster", get(roster))
        .route("/v1/rooms/{room}/events", get(super::stream::room))
        .route("/v1/whip/{id}", delete(whip_delete).patch(whip_patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let l = Limiter::new(2);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert!((0..20).all(|_| l.allow(src, t)));
        assert!(!l.allow(src, t));
        // another source is not held back
        assert!(l.allow("192.0.2.2".parse().unwrap(), t));
        // half a second later: one more
        let later = t + std::time::Duration::from_millis(500);
        assert!(l.allow(src, later));
        assert!(!l.allow(src, later));
    }

    #[test]
    fn names_are_trimmed_and_cleaned() {
        assert_eq!(display_name(None), "browser");
        assert_eq!(display_name(Some("  \u{7}Ada  ")), "Ada");
        assert_eq!(display_name(Some(&"x".repeat(100))).len(), 64);
    }
}
