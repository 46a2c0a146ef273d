//! The answer webhook client (Vonage's answer_url): for each inbound INVITE the
//! core parks, POST the call's from/to/ids, read the NCCO that comes back, and hand
//! the core a [`RouteDecision`]. The NCCO's `conversation` action picks the room
//! and the caller's options exactly as Vonage documents them (`name`,
//! `startOnEnter`, `endOnExit`, `musicOnHoldUrl`, `record`, `canSpeak`, `canHear`,
//! `mute`, `eventUrl`); other actions are logged and skipped. A timeout, an error
//! status or an NCCO without a usable conversation falls back as configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::AnswerFallback;
use crate::core::routing::{CallOptions, RouteDecision, RouteRequest};
use crate::ids::is_room_name;
use crate::media::prompt::{Sound, parse_wav, sound};
use crate::util::is_http_url;

/// Music files fetched and kept, at most.
const MUSIC_CACHE: usize = 64;
/// A music file is at most this large (10 minutes at 16 kHz).
const MUSIC_MAX_BYTES: usize = 20 << 20;

/// Why an NCCO cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NccoError {
    /// not a JSON array of actions
    #[error("an NCCO is a JSON array of actions")]
    NotArray,
    /// no conversation action
    #[error("no conversation action")]
    NoConversation,
    /// conversation name missing or not a room name
    #[error("conversation name missing or invalid")]
    BadName,
    /// a field of the wrong type
    #[error("{0} has the wrong type")]
    BadField(&'static str),
}

/// What a `conversation` action asks for; `music` is still a URL or path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// room
    pub name: String,
    /// options (music not yet loaded)
    pub options: CallOptions,
    /// musicOnHoldUrl
    pub music: Option<String>,
}

fn flag(a: &Value, key: &'static str, default: bool) -> Result<bool, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(NccoError::BadField(key)),
    }
}

/// canSpeak / canHear: a list of leg UUIDs in Vonage. An empty list means
/// "nobody"; a non-empty one is taken as "everyone", since the bridge mixes one
/// room rather than per-leg routes.
fn leg_list(a: &Value, key: &'static str) -> Result<bool, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Array(v)) => {
            if !v.is_empty() {
                tracing::info!(
                    key,
                    "per-leg audio routes are not supported: taken as the whole room"
                );
            }
            Ok(!v.is_empty())
        }
        Some(_) => Err(NccoError::BadField(key)),
    }
}

/// Read the NCCO's `conversation` action.
pub fn parse_ncco(v: &Value) -> Result<Conversation, NccoError> {
    let actions = v.as_array().ok_or(NccoError::NotArray)?;
    for a in actions {
        match a.get("action").and_then(Value::as_str) {
            Some("conversation") => {
                let name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| is_room_name(n))
                    .ok_or(NccoError::BadName)?
                    .to_string();
                let music = match a.get("musicOnHoldUrl") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(v)) => v.first().and_then(Value::as_str).map(str::to_string),
                    Some(_) => return Err(NccoError::BadField("musicOnHoldUrl")),
                };
                let event_url = match a.get("eventUrl") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(v)) => v.first().and_then(Value::as_str).map(str::to_string),
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(NccoError::BadField("eventUrl")),
                }
                .filter(|u| is_http_url(u));
                let options = CallOptions {
                    start_on_enter: flag(a, "startOnEnter", true)?,
                    end_on_exit: flag(a, "endOnExit", false)?,
                    music: None,
                    record: flag(a, "record", false)?,
                    can_speak: leg_list(a, "canSpeak")?,
                    can_hear: leg_list(a, "canHear")?,
                    mute: flag(a, "mute", false)?,
                    event_url,
                };
                return Ok(Conversation {
                    name,
                    options,
                    music,
                });
            }
            Some(other) => {
                tracing::info!(action = other, "NCCO action not supported: skipped");
            }
            None => return Err(NccoError::BadField("action")),
        }
    }
    Err(NccoError::NoConversation)
}

/// The webhook client, owned by the driver.
pub struct AnswerHook {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    fallback: AnswerFallback,
    music: Arc<Mutex<HashMap<String, Sound>>>,
    tx: mpsc::UnboundedSender<(u64, RouteDecision)>,
}

impl AnswerHook {
    /// A client for `url`; decisions come out of the returned channel.
    pub fn new(
        url: String,
        timeout: Duration,
        fallback: AnswerFallback,
    ) -> (AnswerHook, mpsc::UnboundedReceiver<(u64, RouteDecision)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("caucus")
            .build()
            .unwrap_or_default();
        (
            AnswerHook {
                client,
                url,
                timeout,
                fallback,
                music: Arc::new(Mutex::new(HashMap::new())),
                tx,
            },
            rx,
        )
    }

    /// Ask about one parked INVITE; the decision arrives on the channel.
    pub fn ask(&self, req: RouteRequest) {
        let (client, url, timeout, fallback, music, tx) = (
            self.client.clone(),
            self.url.clone(),
            self.timeout,
            self.fallback,
            self.music.clone(),
            self.tx.clone(),
        );
        tokio::spawn(async move {
            let asked = tokio::time::timeout(timeout, decide(&client, &url, &req, &music)).await;
            let decision = match asked {
                Ok(Ok(d)) => d,
                Ok(Err(why)) => {
                    tracing::warn!(call_id = %crate::util::LogSafe(&req.call_id), error = %why, "answer webhook failed: fallback");
                    fallback_of(fallback)
                }
                Err(_) => {
                    tracing::warn!(call_id = %crate::util::LogSafe(&req.call_id), "answer webhook timed out: fallback");
                    fallback_of(fallback)
                }
            };
            let _ = tx.send((req.token, decision));
        });
    }
}

fn fallback_of(f: AnswerFallback) -> RouteDecision {
    match f {
        AnswerFallback::Rooms => RouteDecision::Fallback,
        AnswerFallback::Reject => RouteDecision::Reject,
    }
}

async fn decide(
    client: &reqwest::Client,
    url: &str,
    req: &RouteRequest,
    cache: &Mutex<HashMap<String, Sound>>,
) -> Result<RouteDecision, String> {
    let body = json!({
        "from": req.from, "to": req.to, "uuid": req.call_id,
        "conversation_uuid": req.call_id, "call_id": req.call_id,
        "direction": "inbound",
    });
    let resp = client
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let ncco: Value = resp.json().await.map_err(|e| e.to_string())?;
    let conv = parse_ncco(&ncco).map_err(|e| e.to_string())?;
    let mut options = conv.options;
    if let Some(m) = &conv.music {
        match music(client, m, cache).await {
            Ok(s) => options.music = Some(s),
            Err(e) => {
                tracing::warn!(url = %m, error = %e, "musicOnHoldUrl unusable: the room's music plays")
            }
        }
    }
    Ok(RouteDecision::Room(conv.name, Box::new(options)))
}

/// A music file by URL (http/https) or local path (absolute, or file://), fetched
/// once and kept.
async fn music(
    client: &reqwest::Client,
    url: &str,
    cache: &Mutex<HashMap<String, Sound>>,
) -> Result<Sound, String> {
    if let Some(s) = cache.lock().map_err(|e| e.to_string())?.get(url) {
        return Ok(s.clone());
    }
    let bytes = if is_http_url(url) {
        let r = client.get(url).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status().as_u16()));
        }
        r.bytes().await.map_err(|e| e.to_string())?.to_vec()
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url).to_string();
        if !path.starts_with('/') {
            return Err("a local music file needs an absolute path".into());
        }
        tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    if bytes.len() > MUSIC_MAX_BYTES {
        return Err("larger than 20 MiB".into());
    }
    let s = sound(parse_wav(&bytes, url).map_err(|e| e.to_string())?);
    let mut c = cache.lock().map_err(|e| e.to_string())?;
    if c.len() >= MUSIC_CACHE {
        c.clear();
    }
    c.insert(url.to_string(), s.clone());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_action_with_vonage_names() {
        let v = json!([
            {"action": "talk", "text": "Welcome"},
            {"action": "conversation", "name": "board", "startOnEnter": false, "endOnExit": true,
             "musicOnHoldUrl": ["https://example.com/moh.wav"], "record": true, "canHear": [],
             "eventUrl": ["https://example.com/ev"]}
        ]);
        let c = parse_ncco(&v).unwrap();
        assert_eq!(c.name, "board");
        assert!(!c.options.start_on_enter && c.options.end_on_exit && c.options.record);
        assert!(c.options.can_speak && !c.options.can_hear);
        assert_eq!(c.music.as_deref(), Some("https://example.com/moh.wav"));
        assert_eq!(
            c.options.event_url.as_deref(),
            Some("https://example.com/ev")
        );
    }

    #[test]
    fn unusable_nccos_are_refused() {
        assert_eq!(parse_ncco(&json!({})), Err(NccoError::NotArray));
        assert_eq!(
            parse_ncco(&json!([{"action": "talk"}])),
            Err(NccoError::NoConversation)
        );
        assert_eq!(
            parse_ncco(&json!([{"action": "conversation", "name": "../x"}])),
            Err(NccoError::BadName)
        );
        assert_eq!(
            parse_ncco(&json!([{"action": "conversation", "name": "a", "mute": "yes"}])),
            Err(NccoError::BadField("mute"))
        );
    }
}
