//! NCCOs read (Vonage's NCCO reference): the actions that play to the caller
//! (`talk`, `stream`, `wait`), a `record` among them, what comes after them
//! (`conversation`, `input`, `notify`, `connect`, or the end of the call), and
//! what cannot be carried out, reported
//! rather than skipped in silence. Booleans and numbers are taken as Vonage's
//! own guides write them, strings included.

use serde_json::Value;

use crate::config::AnswerMethod;
use crate::core::LegId;
use crate::core::routing::{
    CallOptions, ConnectSpec, InputSpec, RecordCall, SipTarget, SocketTarget,
};
use crate::ids::is_room_name;
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
        /// a key stops it (`bargeIn`)
        barge_in: bool,
    },
    /// `stream`: a sound file by URL or absolute path
    Stream {
        /// streamUrl
        url: String,
        /// times played
        loops: u32,
        /// −1..1
        level: f64,
        /// a key stops it (`bargeIn`)
        barge_in: bool,
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

    /// Whether a key stops it (`bargeIn`).
    pub fn barge_in(&self) -> bool {
        match self {
            Intro::Talk { barge_in, .. } | Intro::Stream { barge_in, .. } => *barge_in,
            Intro::Wait { .. } => false,
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

/// canSpeak / canHear: a list of leg UUIDs (the participant ids, as strings
/// or numbers). Absent: everyone; an empty list (or one naming no leg this
/// bridge could have): nobody; otherwise those legs.
fn leg_list(a: &Value, key: &'static str) -> Result<Option<Vec<LegId>>, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(v)) => Ok(Some(
            v.iter()
                .filter_map(|u| match u {
                    Value::String(s) => s.trim().parse().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                })
                .map(LegId)
                .collect(),
        )),
        Some(_) => Err(NccoError::BadField(key)),
    }
}

/// What an NCCO's actions come to after those that play to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// `conversation`: into a room (the call ends with it)
    Conversation(Box<Conversation>),
    /// `input` of DTMF: collect, send the digits to `event_url`, go on with
    /// what it returns or with `rest`
    Input {
        /// maxDigits, timeOut, submitOnHash
        spec: InputSpec,
        /// where the result goes
        event_url: Option<String>,
        /// how
        method: AnswerMethod,
        /// speech was asked for too (answered with an error: no recogniser)
        speech: bool,
        /// the actions after it
        rest: Vec<Value>,
    },
    /// `notify`: send `payload` to `event_url`; an NCCO returned replaces `rest`
    Notify {
        /// the JSON sent
        payload: Value,
        /// where
        event_url: String,
        /// how
        method: AnswerMethod,
        /// the actions after it
        rest: Vec<Value>,
    },
    /// `connect` to a SIP endpoint: the caller's room dials it; the call ends
    /// with either side
    Connect(ConnectSpec),
    /// the NCCO ends: the call is hung up
    End,
}

/// An NCCO read up to its first action that needs more than playing: the
/// sounds before it, what could not be carried out, and that action.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// played to the caller first, in order
    pub intro: Vec<Intro>,
    /// actions that cannot be carried out, for `error` events
    pub errors: Vec<String>,
    /// what comes next
    pub next: Next,
    /// a `record` action among them: the caller's audio, recorded meanwhile
    pub record: Option<RecordCall>,
}

fn method(a: &Value) -> Result<AnswerMethod, NccoError> {
    match a.get("eventMethod").and_then(Value::as_str) {
        None => Ok(AnswerMethod::Post),
        Some(m) if m.eq_ignore_ascii_case("post") => Ok(AnswerMethod::Post),
        Some(m) if m.eq_ignore_ascii_case("get") => Ok(AnswerMethod::Get),
        Some(_) => Err(NccoError::BadField("eventMethod")),
    }
}

/// A number field in `lo..=hi`, in the action or its `dtmf` object (Vonage's
/// current and legacy places for input settings).
/// Field `key` of `a`: absent (or null) is None, else a number in `range`.
fn ranged(
    a: &Value,
    key: &'static str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, NccoError> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => number(v)
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or(NccoError::BadField(key)),
    }
}

fn input_number(
    a: &Value,
    key: &'static str,
    default: f64,
    lo: f64,
    hi: f64,
) -> Result<f64, NccoError> {
    let v = a
        .get("dtmf")
        .and_then(|d| d.get(key))
        .or_else(|| a.get(key));
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => number(v)
            .filter(|n| (lo..=hi).contains(n))
            .ok_or(NccoError::BadField(key)),
    }
}

fn input(a: &Value, rest: &[Value]) -> Result<Next, NccoError> {
    let types: Vec<&str> = match a.get("type") {
        None | Some(Value::Null) => vec!["dtmf"],
        Some(Value::Array(v)) => v.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(_) => return Err(NccoError::BadField("type")),
    };
    let dtmf_flags = a.get("dtmf").unwrap_or(&Value::Null);
    let submit_on_hash = match dtmf_flags.get("submitOnHash") {
        Some(_) => flag(dtmf_flags, "submitOnHash", false)?,
        None => flag(a, "submitOnHash", false)?,
    };
    let spec = InputSpec {
        max_digits: input_number(a, "maxDigits", 4.0, 1.0, 20.0)? as usize,
        timeout: std::time::Duration::from_secs_f64(
            input_number(a, "timeOut", 3.0, 0.0, 10.0)?.max(0.5),
        ),
        submit_on_hash,
    };
    Ok(Next::Input {
        spec,
        event_url: url_field(a, "eventUrl")?.filter(|u| is_http_url(u)),
        method: method(a)?,
        speech: types.contains(&"speech"),
        rest: rest.to_vec(),
    })
}

/// A `record` action: what it asks for, and what of it is not carried out.
fn record_action(a: &Value) -> Result<(Option<RecordCall>, Vec<String>), NccoError> {
    let mut unsupported = Vec::new();
    let format = match a.get("format").and_then(Value::as_str) {
        None | Some("wav") => "wav",
        Some("ogg") => "ogg",
        Some(other) => {
            // nothing is lost for want of an encoder: the call is recorded as WAV
            unsupported.push(format!(
                "record: format {other} is not supported; recorded as wav"
            ));
            "wav"
        }
    };
    // split "conversation": what the caller says and what it hears, apart
    let split = match a.get("split") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "conversation" => true,
        Some(_) => return Err(NccoError::BadField("split")),
    };
    if let Some(c) = a.get("channels")
        && c.as_u64() != Some(2)
        && split
    {
        unsupported.push(
            "record: a call's split recording has 2 channels (spoken, heard); channels ignored"
                .into(),
        );
    }
    let spec = crate::media::contract::RecordSpec::parse(
        Some(format),
        None,
        split.then_some("split"),
        None,
    )
    .map_err(|_| NccoError::BadField("format"))?;
    let end_on_silence =
        ranged(a, "endOnSilence", 3.0..=10.0)?.map(std::time::Duration::from_secs_f64);
    let end_on_key = match a.get("endOnKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.chars().count() == 1 && "0123456789*#".contains(k.as_str()) => {
            k.chars().next()
        }
        Some(_) => return Err(NccoError::BadField("endOnKey")),
    };
    let secs = ranged(a, "timeOut", 3.0..=7200.0)?.unwrap_or(7200.0);
    Ok((
        Some(RecordCall {
            event_url: url_field(a, "eventUrl")?.filter(|u| is_http_url(u)),
            end_on_key,
            timeout: std::time::Duration::from_secs_f64(secs),
            end_on_silence,
            beep: flag(a, "beepStart", false)?,
            spec,
        }),
        unsupported,
    ))
}

/// A `connect` action: a SIP endpoint to dial or a WebSocket server to stream
/// to, or why it cannot be (an endpoint of another type).
fn connect(a: &Value) -> Result<Result<ConnectSpec, String>, NccoError> {
    let Some(e) = a
        .get("endpoint")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    else {
        return Err(NccoError::BadField("endpoint"));
    };
    match e.get("type").and_then(Value::as_str).unwrap_or("?") {
        "sip" => sip_endpoint(a, e).map(Ok),
        "websocket" => Ok(socket_endpoint(e)),
        kind => Ok(Err(format!(
            "connect: {kind} endpoints are not supported (sip and websocket only)"
        ))),
    }
}

fn sip_endpoint(a: &Value, e: &Value) -> Result<ConnectSpec, NccoError> {
    let to = e
        .get("uri")
        .and_then(Value::as_str)
        .ok_or(NccoError::BadField("endpoint.uri"))?
        .to_string();
    let secs = ranged(a, "timeout", 3.0..=120.0)?.unwrap_or(60.0);
    let caller_id = a.get("from").and_then(Value::as_str).map(|f| {
        f.trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or(f)
            .to_string()
    });
    let limit = ranged(a, "limit", 1.0..=7200.0)?.map(std::time::Duration::from_secs_f64);
    let sync_event_url = (a.get("eventType").and_then(Value::as_str) == Some("synchronous"))
        .then(|| url_field(a, "eventUrl"))
        .transpose()?
        .flatten()
        .filter(|u| is_http_url(u));
    Ok(ConnectSpec::Sip(SipTarget {
        to,
        ring_timeout: std::time::Duration::from_secs_f64(secs),
        caller_id,
        limit,
        sync_event_url,
    }))
}

/// A websocket endpoint: its URI, its rate from `content-type`
/// (`audio/l16;rate=8000|16000`), its headers; or why it cannot be streamed to.
fn socket_endpoint(e: &Value) -> Result<ConnectSpec, String> {
    let uri = e
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("ws://") || u.starts_with("wss://"))
        .ok_or("connect: a websocket endpoint needs a ws:// or wss:// uri")?;
    let kind = e
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("audio/l16;rate=8000")
        .to_ascii_lowercase()
        .replace(' ', "");
    let rate = match kind.as_str() {
        "audio/l16;rate=8000" => 8000,
        "audio/l16;rate=16000" => 16000,
        other => {
            return Err(format!(
                "connect: websocket content-type {other} is not supported (audio/l16;rate=8000 or 16000)"
            ));
        }
    };
    let headers = match e.get("headers") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(h @ Value::Object(_)) => h.to_string(),
        Some(_) => return Err("connect: websocket headers must be an object".into()),
    };
    Ok(ConnectSpec::WebSocket(SocketTarget {
        uri: uri.to_string(),
        rate,
        headers,
    }))
}

/// Read an NCCO up to its first `conversation`, `input` or `notify` (or its
/// end). With `interactive` false (a call placed or moved by the API), `input`
/// and `notify` are reported as not carried out and skipped.
pub fn parse_plan(v: &Value, interactive: bool) -> Result<Plan, NccoError> {
    let actions = v.as_array().ok_or(NccoError::NotArray)?;
    let mut intro = Vec::new();
    let mut errors = Vec::new();
    let mut record = None;
    for (i, a) in actions.iter().enumerate() {
        let rest = &actions[i + 1..];
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
                for later in rest {
                    let what = later.get("action").and_then(Value::as_str).unwrap_or("?");
                    errors.push(format!(
                        "NCCO action {what} after the conversation is not run (the call ends with the conversation)"
                    ));
                }
                let options = CallOptions {
                    start_on_enter: flag(a, "startOnEnter", true)?,
                    end_on_exit: flag(a, "endOnExit", false)?,
                    record: flag(a, "record", false)?,
                    heard_by: leg_list(a, "canSpeak")?,
                    hears: leg_list(a, "canHear")?,
                    mute: flag(a, "mute", false)?,
                    event_url,
                    ..CallOptions::default()
                };
                let conv = Conversation {
                    name,
                    options,
                    music,
                    intro: Vec::new(),
                };
                return Ok(Plan {
                    intro,
                    errors,
                    next: Next::Conversation(Box::new(conv)),
                    record,
                });
            }
            Some("connect") if interactive => match connect(a)? {
                Ok(spec) => {
                    if matches!(&spec, ConnectSpec::WebSocket(_))
                        && a.get("eventType").and_then(Value::as_str) == Some("synchronous")
                    {
                        errors.push(
                            "connect: eventType synchronous is carried out for SIP endpoints only"
                                .into(),
                        );
                    }
                    return Ok(Plan {
                        intro,
                        errors,
                        next: Next::Connect(spec),
                        record,
                    });
                }
                Err(why) => {
                    tracing::warn!(%why, "NCCO connect not carried out: skipped");
                    errors.push(why);
                }
            },
            Some("input") if interactive => {
                let next = input(a, rest)?;
                return Ok(Plan {
                    intro,
                    errors,
                    next,
                    record,
                });
            }
            Some("notify") if interactive => {
                let payload = a
                    .get("payload")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default()));
                match url_field(a, "eventUrl")?.filter(|u| is_http_url(u)) {
                    Some(event_url) => {
                        let next = Next::Notify {
                            payload,
                            event_url,
                            method: method(a)?,
                            rest: rest.to_vec(),
                        };
                        return Ok(Plan {
                            intro,
                            errors,
                            next,
                            record,
                        });
                    }
                    None => errors.push("notify: eventUrl missing or not an http(s) URL".into()),
                }
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
                    barge_in: flag(a, "bargeIn", false)?,
                });
            }
            Some("stream") => {
                let url = url_field(a, "streamUrl")?.ok_or(NccoError::BadField("streamUrl"))?;
                intro.push(Intro::Stream {
                    url,
                    loops: loops(a)?,
                    level: level(a)?,
                    barge_in: flag(a, "bargeIn", false)?,
                });
            }
            Some("record") => {
                let (spec, mut unsupported) = record_action(a)?;
                errors.append(&mut unsupported);
                if spec.is_some() {
                    record = spec;
                }
            }
            Some("wait") => {
                let secs = ranged(a, "timeout", 0.1..=7200.0)?.unwrap_or(10.0);
                intro.push(Intro::Wait { secs });
            }
            Some(other) => {
                tracing::warn!(action = other, "NCCO action not supported: skipped");
                errors.push(format!("NCCO action {other} is not supported; skipped"));
            }
            None => return Err(NccoError::BadField("action")),
        }
    }
    Ok(Plan {
        intro,
        errors,
        next: Next::End,
        record,
    })
}

/// Read an NCCO that must lead to a conversation (a call placed or moved by
/// the API): its conversation, the actions before it that play to the caller,
/// and what cannot be carried out (in `options.errors`).
pub fn parse_ncco(v: &Value) -> Result<Conversation, NccoError> {
    let plan = parse_plan(v, false)?;
    let Next::Conversation(mut c) = plan.next else {
        return Err(NccoError::NoConversation);
    };
    c.intro = plan.intro;
    c.options.record_call = plan.record;
    let mut errors = plan.errors;
    errors.append(&mut c.options.errors);
    c.options.errors = errors;
    Ok(*c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(
            (c.options.heard_by.clone(), c.options.hears.clone()),
            (None, Some(vec![]))
        );
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
                    level: 0.0,
                    barge_in: false
                },
                Intro::Stream {
                    url: "https://example.com/a.mp3".into(),
                    loops: 1,
                    level: -0.5,
                    barge_in: false
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
                level: 0.5,
                barge_in: false
            }
        );
    }

    #[test]
    fn connect_takes_sip_and_websocket_endpoints_and_reports_others() {
        let plan =
            |e: Value| parse_plan(&json!([{"action": "connect", "endpoint": [e]}]), true).unwrap();
        let p = plan(json!({"type": "websocket", "uri": "wss://bot.example/s",
                            "content-type": "audio/l16;rate=16000", "headers": {"a": 1}}));
        assert_eq!(
            p.next,
            Next::Connect(ConnectSpec::WebSocket(SocketTarget {
                uri: "wss://bot.example/s".into(),
                rate: 16000,
                headers: r#"{"a":1}"#.into(),
            }))
        );
        let p = plan(json!({"type": "websocket", "uri": "ws://bot.example/s"}));
        assert!(matches!(
            p.next,
            Next::Connect(ConnectSpec::WebSocket(SocketTarget { rate: 8000, .. }))
        ));
        for bad in [
            json!({"type": "websocket", "uri": "http://bot.example/s"}),
            json!({"type": "websocket", "uri": "ws://b/s", "content-type": "audio/pcmu"}),
            json!({"type": "phone", "number": "447700900000"}),
            json!({"type": "app", "user": "alice"}),
        ] {
            let p = plan(bad.clone());
            assert_eq!((p.next.clone(), p.errors.len()), (Next::End, 1), "{bad}");
        }
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
