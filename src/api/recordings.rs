//! The recordings routes: start one (the room's mix, a participant's audio, or
//! their channels apart; WAV or Ogg Opus), stop it, list them, download one
//! (by its sidecar, never a path from the client), and its speakers sidecar as
//! JSON or WebVTT.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::ops::Op;
use super::{ApiError, ApiResult, AppState, call, json_body, reply_json};
use crate::core::LegId;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordBody {
    participant: Option<u64>,
    format: Option<String>,
    sample_rate: Option<u32>,
    channels: Option<String>,
    max_channels: Option<u64>,
}

pub(super) async fn record(
    State(st): State<AppState>,
    Path(room): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let b: RecordBody = if body.is_empty() {
        RecordBody::default()
    } else {
        json_body(&body)?
    };
    let spec = crate::media::contract::RecordSpec::parse(
        b.format.as_deref(),
        b.sample_rate,
        b.channels.as_deref(),
        b.max_channels,
    )
    .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(reply_json(
        call(&st, Op::Record(room, b.participant.map(LegId), spec)).await?,
    ))
}

pub(super) async fn stop_recording(
    State(st): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> ApiResult {
    Ok(reply_json(call(&st, Op::StopRecording(room, id)).await?))
}

/// A recording id: 32 lowercase hex digits (also its file name).
pub(super) fn recording_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

pub(super) async fn list_recordings(State(st): State<AppState>) -> ApiResult {
    let Some(dir) = st.recording_dir.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "recording_off",
            "recording is not configured ([recording] dir)",
        ));
    };
    let all = tokio::task::spawn_blocking(move || crate::media::record::list(&dir))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let v: Vec<serde_json::Value> = all
        .into_iter()
        .map(|m| {
            let url = format!("/v1/recordings/{}", m.id);
            let mut j = serde_json::to_value(m).unwrap_or_default();
            j["url"] = serde_json::Value::String(url);
            j
        })
        .collect();
    Ok(Json(v).into_response())
}

pub(super) async fn download(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_recording",
            "no such recording",
        )
    };
    let Some(dir) = st.recording_dir.clone() else {
        return Err(missing());
    };
    if !recording_id(&id) {
        return Err(missing());
    }
    let (format, bytes) = tokio::task::spawn_blocking(move || {
        let (path, meta) = crate::media::record::find(&dir, &id)?;
        Some((meta.format, std::fs::read(path).ok()?))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .ok_or_else(missing)?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(match format {
            crate::media::contract::RecordFormat::Wav => "audio/wav",
            crate::media::contract::RecordFormat::Ogg => "audio/ogg",
        }),
    );
    Ok((h, bytes).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SpeakersQuery {
    format: Option<String>,
}

/// Who spoke when in a recording: JSON, or WebVTT with `?format=vtt`.
pub(super) async fn speakers(
    State(st): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SpeakersQuery>,
) -> ApiResult {
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_speakers",
            "no such recording, or it is still running",
        )
    };
    let (Some(dir), true) = (st.recording_dir.clone(), recording_id(&id)) else {
        return Err(missing());
    };
    let path = dir.join(format!("{id}.speakers.json"));
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|_| missing())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| missing())?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(v).into_response()),
        Some("vtt") => {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/vtt; charset=utf-8"),
            );
            Ok((h, crate::core::room::speakers::to_vtt(&v)).into_response())
        }
        Some(_) => Err(ApiError::bad("format: json or vtt")),
    }
}
