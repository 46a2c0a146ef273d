//! Live events as Server-Sent Events (the HTML5 EventSource format): the same
//! events the webhook gets, as they happen. `GET /v1/events` (API token) carries
//! every room's; `GET /v1/rooms/{room}/events` (a join token of the room, or
//! the API token) one room's, as a participant may see them: who comes and
//! goes, who talks, who is muted, without call ids or callers' addresses. A
//! reader that falls behind skips what it missed (told in a `lagged` event)
//! rather than holding anything back.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::{ApiResult, AppState};
use crate::events::LiveEvent;

/// What one room's stream shows of an event, if anything.
fn participant_view(room: &str, e: &LiveEvent) -> Option<(String, String)> {
    if e.room != room {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&e.json).ok()?;
    let kind = v["type"].as_str()?;
    if !(kind.starts_with("participant:") || kind.starts_with("room:")) {
        return None;
    }
    let shown = serde_json::json!({
        "type": kind, "status": v["status"], "uuid": v["uuid"],
        "conversation_uuid": v["conversation_uuid"], "timestamp": v["timestamp"], "seq": v["seq"],
    });
    Some((kind.to_string(), shown.to_string()))
}

/// Every event, as the webhook has it.
fn everything(e: &LiveEvent) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&e.json).ok()?;
    Some((
        v["type"].as_str().unwrap_or("event").to_string(),
        e.json.clone(),
    ))
}

fn events<F>(rx: Receiver<Arc<LiveEvent>>, view: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(&LiveEvent) -> Option<(String, String)> + Send + 'static,
{
    stream::unfold((rx, view), |(mut rx, view)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some((kind, data)) = view(&e) {
                        return Some((Ok(Event::default().event(kind).data(data)), (rx, view)));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default()
                        .event("lagged")
                        .data(format!("{{\"skipped\":{n}}}"));
                    return Some((Ok(ev), (rx, view)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

fn sse<S>(s: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /v1/events` (behind the API token's layer).
pub(super) async fn all(State(st): State<AppState>) -> Response {
    sse(events(st.live.subscribe(), everything))
}

/// `GET /v1/rooms/{room}/events`.
pub(super) async fn room(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> ApiResult {
    let w = super::web::web_state(&st)?.clone();
    super::web::check_caller(&st, &w, &headers, &room)?;
    let rx = st.live.subscribe();
    Ok(sse(events(rx, move |e| participant_view(&room, e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stream_shows_its_own_room_without_call_ids() {
        let e = LiveEvent {
            room: "demo".into(),
            json: r#"{"type":"participant:joined","uuid":"3","call_id":"abc@10.0.0.1","from":"sip:+4912345@pbx","conversation_uuid":"demo","status":"joined","seq":1,"timestamp":"t"}"#.into(),
        };
        let (kind, data) = participant_view("demo", &e).unwrap();
        assert_eq!(kind, "participant:joined");
        assert!(
            !data.contains("abc@") && !data.contains("+4912345"),
            "{data}"
        );
        assert!(participant_view("other", &e).is_none());
        let rec = LiveEvent {
            room: "demo".into(),
            json: r#"{"type":"recording:completed","recording_url":"x"}"#.into(),
        };
        assert!(participant_view("demo", &rec).is_none());
        assert_eq!(everything(&rec).unwrap().0, "recording:completed");
    }
}
