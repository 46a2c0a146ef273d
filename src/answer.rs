//! The answer webhook client (Vonage's answer_url): for each inbound INVITE the
//! core parks, send the call's fields as Vonage does (`to`, `from`, `uuid`,
//! `conversation_uuid`, `endpoint_type`, and each `X-` SIP header as
//! `SipHeader_X-…`; in the query string by GET, Vonage's default, or as a JSON
//! body by POST), read the NCCO that comes back (from `fallback_answer_url` when
//! the first URL fails), and hand the core a [`RouteDecision`]. The NCCO's `conversation` action picks the room
//! and the caller's options exactly as Vonage documents them (`name`,
//! `startOnEnter`, `endOnExit`, `musicOnHoldUrl`, `record`, `canSpeak`, `canHear`,
//! `mute`, `eventUrl`). The actions before it that play to the caller (`talk`,
//! spoken by the local TTS engine; `stream`, a WAV or MP3 by URL or path;
//! `wait`) are made into sounds here, off the media path, and play to the caller
//! before it enters; an action that cannot be carried out is reported as an
//! `error` event and the next one runs. A timeout, an error status or an NCCO
//! without a usable conversation falls back as configured.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{AnswerFallback, AnswerMethod};
use crate::core::routing::{CallOptions, RouteDecision, RouteRequest};
use crate::ids::is_room_name;
use crate::media::prompt::Sound;
use crate::sounds::{SoundError, Sounds, levelled, plays};
use crate::util::is_http_url;

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
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// room
    pub name: String,
    /// options (music not yet loaded)
    pub options: CallOptions,
    /// musicOnHoldUrl
    pub music: Option<String>,
    /// the actions before it that play to the caller, in order
    pub intro: Vec<Intro>,
}

/// An action before the conversation that plays to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Intro {
    /// `talk`: speech
    Talk {
        /// plain text or SSML
        text: String,
        /// Vonage language code
        language: String,
        /// times played
        loops: u32,
        /// −1..1
        level: f64,
    },
    /// `stream`: a sound file by URL or absolute path
    Stream {
        /// streamUrl
        url: String,
        /// times played
        loops: u32,
        /// −1..1
        level: f64,
    },
    /// `wait`: silence
    Wait {
        /// seconds
        secs: f64,
    },
}

impl Intro {
    /// The action's name in the NCCO.
    pub fn name(&self) -> &'static str {
        match self {
            Intro::Talk { .. } => "talk",
            Intro::Stream { .. } => "stream",
            Intro::Wait { .. } => "wait",
        }
    }
}

/// `loop`: how many times (0, "until interrupted", plays once before a
/// conversation, which is what comes next).
fn loops(a: &Value) -> Result<u32, NccoError> {
    match a.get("loop") {
        None | Some(Value::Null) => Ok(1),
        Some(v) => number(v)
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .map(|n| n.clamp(1.0, 100.0) as u32)
            .ok_or(NccoError::BadField("loop")),
    }
}

/// `level`: −1..1 (0: as recorded).
fn level(a: &Value) -> Result<f64, NccoError> {
    match a.get("level") {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => number(v)
            .filter(|l| (-1.0..=1.0).contains(l))
            .ok_or(NccoError::BadField("level")),
    }
}

/// A string or the first of a list of strings (Vonage writes URLs both ways).
fn url_field(a: &Value, key: &'static str) -> Result<Option<String>, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(v)) => Ok(v.first().and_then(Value::as_str).map(str::to_string)),
        Some(_) => Err(NccoError::BadField(key)),
    }
}

/// A boolean; Vonage's own guides write them as strings (`"startOnEnter":
/// "false"`), which its platform takes, so they are taken here too.
fn flag(a: &Value, key: &'static str, default: bool) -> Result<bool, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(NccoError::BadField(key)),
    }
}

/// A number, or a string holding one (as the guides write them).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        v => v.as_f64(),
    }
}

/// The legacy `voiceName` of a talk action as the language it speaks.
fn voice_language(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "amy" | "emma" | "brian" | "russell" | "nicole" | "geraint" => "en-GB",
        "kimberly" | "salli" | "joey" | "justin" | "ivy" | "joanna" | "kendra" | "matthew" => {
            "en-US"
        }
        "raveena" | "aditi" => "en-IN",
        "hans" | "marlene" | "vicki" => "de-DE",
        "celine" | "mathieu" | "lea" => "fr-FR",
        "conchita" | "enrique" | "lucia" => "es-ES",
        "carla" | "giorgio" | "bianca" => "it-IT",
        "ricardo" | "vitoria" | "camila" => "pt-BR",
        "mizuki" | "takumi" => "ja-JP",
        "tatyana" | "maxim" => "ru-RU",
        _ => return None,
    })
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

/// Read the NCCO: its `conversation` action, the actions before it that play to
/// the caller, and what cannot be carried out (in `options.errors`).
pub fn parse_ncco(v: &Value) -> Result<Conversation, NccoError> {
    let actions = v.as_array().ok_or(NccoError::NotArray)?;
    let mut intro = Vec::new();
    let mut errors = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        match a.get("action").and_then(Value::as_str) {
            Some("conversation") => {
                let name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| is_room_name(n))
                    .ok_or(NccoError::BadName)?
                    .to_string();
                let music = url_field(a, "musicOnHoldUrl")?;
                let event_url = url_field(a, "eventUrl")?.filter(|u| is_http_url(u));
                for later in &actions[i + 1..] {
                    let what = later.get("action").and_then(Value::as_str).unwrap_or("?");
                    errors.push(format!(
                        "NCCO action {what} after the conversation is not run (the call ends with the conversation)"
                    ));
                }
                let options = CallOptions {
                    start_on_enter: flag(a, "startOnEnter", true)?,
                    end_on_exit: flag(a, "endOnExit", false)?,
                    music: None,
                    record: flag(a, "record", false)?,
                    can_speak: leg_list(a, "canSpeak")?,
                    can_hear: leg_list(a, "canHear")?,
                    mute: flag(a, "mute", false)?,
                    event_url,
                    intro: Vec::new(),
                    errors,
                };
                return Ok(Conversation {
                    name,
                    options,
                    music,
                    intro,
                });
            }
            Some("talk") => {
                let text = a
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or(NccoError::BadField("text"))?
                    .to_string();
                let language = a
                    .get("language")
                    .and_then(Value::as_str)
                    .or_else(|| {
                        a.get("voiceName")
                            .and_then(Value::as_str)
                            .and_then(voice_language)
                    })
                    .unwrap_or("en-US")
                    .to_string();
                intro.push(Intro::Talk {
                    text,
                    language,
                    loops: loops(a)?,
                    level: level(a)?,
                });
            }
            Some("stream") => {
                let url = url_field(a, "streamUrl")?.ok_or(NccoError::BadField("streamUrl"))?;
                intro.push(Intro::Stream {
                    url,
                    loops: loops(a)?,
                    level: level(a)?,
                });
            }
            Some("wait") => {
                let secs = match a.get("timeout") {
                    None | Some(Value::Null) => 10.0,
                    Some(t) => number(t)
                        .filter(|t| (0.1..=7200.0).contains(t))
                        .ok_or(NccoError::BadField("timeout"))?,
                };
                intro.push(Intro::Wait { secs });
            }
            Some(other) => {
                tracing::warn!(action = other, "NCCO action not supported: skipped");
                errors.push(format!("NCCO action {other} is not supported; skipped"));
            }
            None => return Err(NccoError::BadField("action")),
        }
    }
    Err(NccoError::NoConversation)
}

/// The webhook client, owned by the driver.
pub struct AnswerHook {
    client: reqwest::Client,
    urls: Arc<[String]>,
    method: AnswerMethod,
    timeout: Duration,
    fallback: AnswerFallback,
    sounds: Sounds,
    tx: mpsc::UnboundedSender<(u64, RouteDecision)>,
}

impl AnswerHook {
    /// A client for `[routing]` (its `answer_url` set); decisions come out of
    /// the returned channel.
    pub fn new(
        cfg: &crate::config::Routing,
        sounds: Sounds,
    ) -> (AnswerHook, mpsc::UnboundedReceiver<(u64, RouteDecision)>) {
        let timeout = Duration::from_millis(cfg.answer_timeout_ms);
        let urls: Arc<[String]> = cfg
            .answer_url
            .iter()
            .chain(&cfg.fallback_answer_url)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent("caucus")
            .build()
            .unwrap_or_default();
        (
            AnswerHook {
                client,
                urls,
                method: cfg.answer_method,
                timeout,
                fallback: cfg.answer_fallback,
                sounds,
                tx,
            },
            rx,
        )
    }

    /// Ask about one parked INVITE; the decision arrives on the channel.
    pub fn ask(&self, req: RouteRequest) {
        let (client, urls, method, timeout, fallback, tx) = (
            self.client.clone(),
            self.urls.clone(),
            self.method,
            self.timeout,
            self.fallback,
            self.tx.clone(),
        );
        let sounds = self.sounds.clone();
        tokio::spawn(async move {
            let mut decision = None;
            for url in urls.iter() {
                let ask = decide(&client, url, method, &req, &sounds);
                match tokio::time::timeout(timeout, ask).await {
                    Ok(Ok(d)) => {
                        decision = Some(d);
                        break;
                    }
                    Ok(Err(why)) => {
                        tracing::warn!(call_id = %crate::util::LogSafe(&req.call_id), %url, error = %why, "answer webhook failed")
                    }
                    Err(_) => {
                        tracing::warn!(call_id = %crate::util::LogSafe(&req.call_id), %url, "answer webhook timed out")
                    }
                }
            }
            let decision = decision.unwrap_or_else(|| fallback_of(fallback));
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

/// Why the answer webhook gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// no answer
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// an error status
    #[error("HTTP {0}")]
    Status(u16),
    /// an NCCO the bridge cannot run
    #[error("NCCO: {0}")]
    Ncco(#[from] NccoError),
}

/// The fields of the answer request, in order: Vonage's, then the `X-` headers.
pub fn answer_fields(req: &RouteRequest) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = [
        ("to", req.to.as_str()),
        ("from", req.from.as_str()),
        ("uuid", &req.token.to_string()),
        ("conversation_uuid", req.call_id.as_str()),
        ("call_id", req.call_id.as_str()),
        ("direction", "inbound"),
        ("endpoint_type", "sip"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (name, value) in &req.x_headers {
        f.push((format!("SipHeader_{name}"), value.clone()));
    }
    f
}

async fn decide(
    client: &reqwest::Client,
    url: &str,
    method: AnswerMethod,
    req: &RouteRequest,
    sounds: &Sounds,
) -> Result<RouteDecision, AnswerError> {
    let fields = answer_fields(req);
    let ask = match method {
        AnswerMethod::Get => client.get(url).query(&fields),
        AnswerMethod::Post => {
            let body: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            client.post(url).json(&body)
        }
    };
    let resp = ask.send().await?;
    if !resp.status().is_success() {
        return Err(AnswerError::Status(resp.status().as_u16()));
    }
    let ncco: Value = resp.json().await?;
    let (room, options) = prepare(parse_ncco(&ncco)?, sounds).await;
    Ok(RouteDecision::Room(room, Box::new(options)))
}

/// A conversation made ready to enter: its intro's sounds and its music made
/// (what cannot be made is in `errors`); the room's name and the options.
pub async fn prepare(conv: Conversation, sounds: &Sounds) -> (String, CallOptions) {
    let mut options = conv.options;
    for action in &conv.intro {
        match intro_sound(action, sounds).await {
            Ok((s, n)) => options.intro.extend(std::iter::repeat_n(s, n as usize)),
            Err(e) => {
                let what = action.name();
                tracing::warn!(action = what, error = %e, "NCCO action could not be carried out: the next one runs");
                options.errors.push(format!("{what}: {e}"));
            }
        }
    }
    if let Some(m) = &conv.music {
        match sounds.file(m).await {
            Ok(s) => options.music = Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "musicOnHoldUrl unusable: the room's music plays")
            }
        }
    }
    (conv.name, options)
}

/// The sound of one intro action (speech, a file, silence) at its level, and
/// how many times it plays.
async fn intro_sound(action: &Intro, sounds: &Sounds) -> Result<(Sound, u32), SoundError> {
    Ok(match action {
        Intro::Talk {
            text,
            language,
            loops,
            level,
        } => (
            levelled(sounds.speech(text, language).await?, *level).await?,
            plays(*loops),
        ),
        Intro::Stream { url, loops, level } => (
            levelled(sounds.file(url).await?, *level).await?,
            plays(*loops),
        ),
        // a tenth of a second of silence, shared, as many times as asked
        Intro::Wait { secs } => (
            crate::media::prompt::sound(vec![0i16; 800]),
            (secs * 10.0).round().max(1.0) as u32,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answer_fields_are_vonage_names_and_x_headers() {
        let req = RouteRequest {
            token: 12,
            from: "sip:alice@pbx".into(),
            to: "sip:board@bridge".into(),
            call_id: "abc".into(),
            x_headers: vec![("X-Account".into(), "42".into())],
        };
        let f = answer_fields(&req);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("uuid"), Some("12"));
        assert_eq!(get("to"), Some("sip:board@bridge"));
        assert_eq!(get("endpoint_type"), Some("sip"));
        assert_eq!(get("SipHeader_X-Account"), Some("42"));
    }

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
    fn actions_before_the_conversation_play_and_the_rest_are_reported() {
        let v = json!([
            {"action": "talk", "text": "Welcome to a conference call", "language": "en-GB", "loop": 2},
            {"action": "stream", "streamUrl": ["https://example.com/a.mp3"], "level": -0.5},
            {"action": "input", "type": ["dtmf"]},
            {"action": "wait", "timeout": 0.5},
            {"action": "conversation", "name": "board"},
            {"action": "talk", "text": "after"}
        ]);
        let c = parse_ncco(&v).unwrap();
        assert_eq!(
            c.intro,
            [
                Intro::Talk {
                    text: "Welcome to a conference call".into(),
                    language: "en-GB".into(),
                    loops: 2,
                    level: 0.0
                },
                Intro::Stream {
                    url: "https://example.com/a.mp3".into(),
                    loops: 1,
                    level: -0.5
                },
                Intro::Wait { secs: 0.5 },
            ]
        );
        assert_eq!(c.options.errors.len(), 2, "{:?}", c.options.errors);
        assert!(c.options.errors[0].contains("input"));
        assert!(c.options.errors[1].contains("after the conversation"));
        assert_eq!(
            parse_ncco(
                &json!([{"action": "stream", "streamUrl": "x", "level": 3}, {"action": "conversation", "name": "a"}])
            ),
            Err(NccoError::BadField("level"))
        );
    }

    #[test]
    fn the_guides_string_booleans_and_voice_names_are_taken() {
        let v = json!([
            {"action": "talk", "text": "Welcome to a Nexmo moderated conference", "voiceName": "Amy"},
            {"action": "conversation", "name": "nexmo-conference-moderated", "startOnEnter": "false",
             "endOnExit": "true", "record": "true", "musicOnHoldUrl": ["https://example.com/a.mp3"]}
        ]);
        let c = parse_ncco(&v).unwrap();
        assert!(!c.options.start_on_enter && c.options.end_on_exit && c.options.record);
        assert!(matches!(&c.intro[0], Intro::Talk { language, .. } if language == "en-GB"));
        assert_eq!(
            parse_ncco(&json!([{"action": "conversation", "name": "a", "record": "yes"}])),
            Err(NccoError::BadField("record"))
        );
        let c = parse_ncco(
            &json!([{"action": "stream", "streamUrl": "x", "loop": "2", "level": "0.5"},
                                    {"action": "conversation", "name": "a"}]),
        )
        .unwrap();
        assert_eq!(
            c.intro[0],
            Intro::Stream {
                url: "x".into(),
                loops: 2,
                level: 0.5
            }
        );
    }

    #[test]
    fn unusable_nccos_are_refused() {
        assert_eq!(parse_ncco(&json!({})), Err(NccoError::NotArray));
        assert_eq!(
            parse_ncco(&json!([{"action": "talk", "text": "hi"}])),
            Err(NccoError::NoConversation)
        );
        assert_eq!(
            parse_ncco(&json!([{"action": "talk"}, {"action": "conversation", "name": "a"}])),
            Err(NccoError::BadField("text"))
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
