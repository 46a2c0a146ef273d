//! The answer webhook client (Vonage's answer_url) and the NCCO interpreter of
//! each call it routes. For each inbound INVITE the core parks, it sends the
//! call's fields as Vonage does (`to`, `from`, `uuid`, `conversation_uuid`,
//! `endpoint_type`, and each `X-` SIP header as `SipHeader_X-…`; in the query
//! string by GET, Vonage's default, or as a JSON body by POST), reads the NCCO
//! that comes back (from `fallback_answer_url` when the first URL fails), and
//! runs it in order off the media path: `talk`, `stream` and `wait` made into
//! sounds the caller hears alone, `notify` sent (an NCCO it returns replaces the
//! rest), `record` noted (the caller's own audio, recorded while the rest
//! runs), up to the action the core carries out: `conversation` (a room),
//! `input` (digits collected in a room of the call's own; the result goes to
//! the action's eventUrl as Vonage's input event, and the NCCO that comes back,
//! or the rest of this one, goes on), `connect` to a SIP endpoint (dialled from
//! the call's own room), or the end (the call is hung up). An
//! action that cannot be carried out is reported as an `error` event and the
//! next one runs. A timeout or an error status of every URL falls back as
//! configured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{AnswerFallback, AnswerMethod};
use crate::core::LegId;
use crate::core::routing::{
    CallOptions, ConnectFailed, Continuation, InputResult, RouteDecision, RouteRequest,
};
use crate::media::prompt::Sound;
use crate::sounds::{SoundError, Sounds, levelled, plays};

mod ncco;

pub use ncco::{Conversation, Intro, NccoError, Next, Plan, parse_ncco, parse_plan};

/// What the webhook client hands the driver: a parked INVITE's route, or how
/// a call goes on after an NCCO `input`.
#[derive(Debug)]
pub enum HookResult {
    /// for [`crate::core::Core::route_decided`]
    Route(u64, RouteDecision),
    /// for [`crate::core::Core::ncco_continue`]
    Continue(LegId, Continuation),
}

/// A call waiting in its NCCO's `input`: where the result goes and what
/// follows.
#[derive(Debug, Clone)]
struct Pending {
    /// its room meanwhile (of its own)
    lobby: String,
    event_url: Option<String>,
    method: AnswerMethod,
    speech: bool,
    rest: Vec<Value>,
    from: String,
    to: String,
    call_id: String,
}

/// NCCO steps one answer may take through `notify` actions, at most.
const MAX_STEPS: usize = 10;
/// Calls waiting in an `input` remembered at most (an entry whose call never
/// reported its end cannot grow the table without bound).
const MAX_PENDING: usize = 100_000;

/// The webhook client, owned by the driver.
pub struct AnswerHook {
    client: reqwest::Client,
    urls: Arc<[String]>,
    method: AnswerMethod,
    timeout: Duration,
    fallback: AnswerFallback,
    sounds: Sounds,
    pending: Arc<Mutex<HashMap<LegId, Pending>>>,
    tx: mpsc::UnboundedSender<HookResult>,
}

impl AnswerHook {
    /// A client for `[routing]` (its `answer_url` set); decisions come out of
    /// the returned channel.
    pub fn new(
        cfg: &crate::config::Routing,
        sounds: Sounds,
    ) -> (AnswerHook, mpsc::UnboundedReceiver<HookResult>) {
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
                pending: Arc::new(Mutex::new(HashMap::new())),
                tx,
            },
            rx,
        )
    }

    fn runner(&self) -> Runner {
        Runner {
            client: self.client.clone(),
            sounds: self.sounds.clone(),
            pending: self.pending.clone(),
        }
    }

    /// Ask about one parked INVITE; the decision arrives on the channel.
    pub fn ask(&self, req: RouteRequest) {
        let (urls, method, timeout, fallback, tx) = (
            self.urls.clone(),
            self.method,
            self.timeout,
            self.fallback,
            self.tx.clone(),
        );
        let run = self.runner();
        tokio::spawn(async move {
            let mut decision = None;
            for url in urls.iter() {
                let ask = run.answer(url, method, &req);
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
            let _ = tx.send(HookResult::Route(req.token, decision));
        });
    }

    /// An `input` is complete: its result goes to the action's eventUrl, and
    /// the NCCO that comes back (or the rest of the old one) goes on.
    pub fn input_done(&self, result: InputResult) {
        let Some(p) = pending(&self.pending).remove(&result.leg) else {
            return;
        };
        let (run, tx, timeout) = (self.runner(), self.tx.clone(), self.timeout);
        tokio::spawn(async move {
            let leg = result.leg;
            let next = run.after_input(result, p, timeout).await;
            let _ = tx.send(HookResult::Continue(leg, next));
        });
    }

    /// A call in progress transferred to an NCCO that does more than join a
    /// conversation (an `input`, a `notify`, a `connect`): it runs as an
    /// answer's NCCO does, and the call goes on by it. `facts` are the call's
    /// from, to and conversation (Call-ID).
    pub fn transfer(&self, leg: LegId, ncco: Value, facts: (String, String, String)) {
        let (run, tx) = (self.runner(), self.tx.clone());
        pending(&self.pending).remove(&leg);
        tokio::spawn(async move {
            let lobby = format!("ncco-{}", crate::util::secret::hex(8));
            let outcome = run.run(ncco, &lobby, facts).await;
            let next = run.continuation(leg, lobby, outcome);
            let _ = tx.send(HookResult::Continue(leg, next));
        });
    }

    /// A synchronous `connect` did not connect: its event goes to the
    /// connect's eventUrl, and the NCCO that comes back takes the caller on
    /// (none, or an unusable one: the call ends, as an asynchronous connect's
    /// would). `facts` as for [`AnswerHook::transfer`].
    pub fn connect_failed(&self, f: ConnectFailed, facts: (String, String, String)) {
        let (run, tx, timeout) = (self.runner(), self.tx.clone(), self.timeout);
        pending(&self.pending).remove(&f.caller);
        tokio::spawn(async move {
            let leg = f.caller;
            let body = serde_json::json!({
                "status": f.status, "to": f.to, "from": facts.0,
                "uuid": leg.0.to_string(), "conversation_uuid": facts.2,
                "direction": "outbound",
                "timestamp": crate::util::rfc3339(std::time::SystemTime::now()),
            });
            let next =
                match tokio::time::timeout(timeout, post_json(&run.client, &f.url, &body)).await {
                    Ok(Ok(Some(ncco))) if ncco.as_array().is_some_and(|a| !a.is_empty()) => {
                        let lobby = format!("ncco-{}", crate::util::secret::hex(8));
                        let outcome = run.run(ncco, &lobby, facts).await;
                        run.continuation(leg, lobby, outcome)
                    }
                    Ok(Ok(_)) => Continuation::Hangup,
                    Ok(Err(e)) => {
                        tracing::warn!(%leg, error = %e, "connect eventUrl failed: the call ends");
                        Continuation::Hangup
                    }
                    Err(_) => {
                        tracing::warn!(%leg, "connect eventUrl timed out: the call ends");
                        Continuation::Hangup
                    }
                };
            let _ = tx.send(HookResult::Continue(leg, next));
        });
    }

    /// A call ended: nothing of its NCCO is kept.
    pub fn forget(&self, leg: LegId) {
        pending(&self.pending).remove(&leg);
    }
}

/// The table of calls waiting in an `input` (a panic elsewhere while it was
/// held leaves it usable: it holds no invariant across entries).
fn pending(
    table: &Mutex<HashMap<LegId, Pending>>,
) -> std::sync::MutexGuard<'_, HashMap<LegId, Pending>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

fn fallback_of(f: AnswerFallback) -> RouteDecision {
    match f {
        AnswerFallback::Rooms => RouteDecision::Fallback,
        AnswerFallback::Reject => RouteDecision::Reject,
    }
}

/// What an NCCO comes to, with its sounds made.
enum Outcome {
    /// into this conversation
    Room(String, CallOptions),
    /// collect digits (the intro first) in a room of its own
    Input(CallOptions, Pending),
    /// in a room of its own: play the intro, then hang up, or stay connected
    /// to the call its `connect` places
    End(CallOptions),
}

/// The part of the client a spawned task needs.
struct Runner {
    client: reqwest::Client,
    sounds: Sounds,
    pending: Arc<Mutex<HashMap<LegId, Pending>>>,
}

impl Runner {
    /// Ask one answer URL and run what it returns up to a conversation, an
    /// input or the end.
    async fn answer(
        &self,
        url: &str,
        method: AnswerMethod,
        req: &RouteRequest,
    ) -> Result<RouteDecision, AnswerError> {
        let ncco = fetch(&self.client, url, method, answer_fields(req)).await?;
        let ncco = ncco.ok_or(AnswerError::Ncco(NccoError::NotArray))?;
        let lobby = format!("ncco-{}", crate::util::secret::hex(8));
        let facts = (req.from.clone(), req.to.clone(), req.call_id.clone());
        let outcome = self.run(ncco, &lobby, facts).await?;
        Ok(self.decision(LegId(req.token), lobby, outcome))
    }

    fn keep(&self, leg: LegId, waiting: Pending) {
        let mut m = pending(&self.pending);
        if m.len() >= MAX_PENDING {
            m.clear();
        }
        m.insert(leg, waiting);
    }

    /// The core's route for an outcome; an input's continuation is kept for
    /// its result.
    fn decision(&self, leg: LegId, lobby: String, outcome: Outcome) -> RouteDecision {
        match outcome {
            Outcome::Room(room, options) => RouteDecision::Room(room, Box::new(options)),
            Outcome::Input(options, pending) => {
                self.keep(leg, pending);
                RouteDecision::Room(lobby, Box::new(options))
            }
            Outcome::End(options) => RouteDecision::Room(lobby, Box::new(options)),
        }
    }

    /// Run an NCCO: its sounds made, its `notify` actions sent, up to what the
    /// core carries out.
    async fn run(
        &self,
        mut ncco: Value,
        lobby: &str,
        (from, to, call_id): (String, String, String),
    ) -> Result<Outcome, AnswerError> {
        let mut options = CallOptions::default();
        for _ in 0..MAX_STEPS {
            let plan = parse_plan(&ncco, true)?;
            options.errors.extend(plan.errors);
            if plan.record.is_some() {
                options.record_call = plan.record;
            }
            add_intro(&mut options, &plan.intro, &self.sounds).await;
            match plan.next {
                Next::Conversation(conv) => {
                    let intro = std::mem::take(&mut options.intro);
                    let mut errors = std::mem::take(&mut options.errors);
                    let record = options.record_call.take();
                    let (room, mut o) = prepare(*conv, &self.sounds).await;
                    o.intro = intro;
                    o.record_call = record;
                    errors.append(&mut o.errors);
                    o.errors = errors;
                    return Ok(Outcome::Room(room, o));
                }
                Next::Input {
                    spec,
                    event_url,
                    method,
                    speech,
                    rest,
                } => {
                    options.input = Some(spec);
                    let pending = Pending {
                        lobby: lobby.to_string(),
                        event_url,
                        method,
                        speech,
                        rest,
                        from,
                        to,
                        call_id,
                    };
                    return Ok(Outcome::Input(options, pending));
                }
                Next::Notify {
                    payload,
                    event_url,
                    method,
                    rest,
                } => {
                    let fields = match &payload {
                        Value::Object(m) => m
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                                )
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    let sent = match method {
                        AnswerMethod::Post => post_json(&self.client, &event_url, &payload).await,
                        AnswerMethod::Get => fetch(&self.client, &event_url, method, fields).await,
                    };
                    ncco = match sent {
                        Ok(Some(v)) if v.as_array().is_some_and(|a| !a.is_empty()) => v,
                        Ok(_) => Value::Array(rest),
                        Err(e) => {
                            options.errors.push(format!("notify {event_url}: {e}"));
                            Value::Array(rest)
                        }
                    };
                }
                Next::Connect(spec) => {
                    options.connect = Some(spec);
                    options.end_on_exit = true;
                    return Ok(Outcome::End(options));
                }
                Next::End => {
                    options.hangup_after_intro = true;
                    return Ok(Outcome::End(options));
                }
            }
        }
        options
            .errors
            .push(format!("more than {MAX_STEPS} notify steps: the call ends"));
        options.hangup_after_intro = true;
        Ok(Outcome::End(options))
    }

    /// After an input: its result to the eventUrl (Vonage's input event), and
    /// the call goes on by what comes back, or by the rest of its NCCO.
    async fn after_input(&self, r: InputResult, p: Pending, timeout: Duration) -> Continuation {
        let mut body = serde_json::json!({
            "dtmf": {"digits": r.digits, "timed_out": r.timed_out},
            "speech": {"results": []},
            "from": p.from, "to": p.to, "uuid": r.leg.0.to_string(),
            "conversation_uuid": p.call_id,
            "timestamp": crate::util::rfc3339(std::time::SystemTime::now()),
        });
        if p.speech {
            body["speech"]["error"] =
                Value::String("ERR1: speech recognition is not available on this bridge".into());
        }
        let replaced = match &p.event_url {
            Some(url) => {
                let sent = match p.method {
                    AnswerMethod::Post => post_json(&self.client, url, &body),
                    AnswerMethod::Get => Box::pin(fetch(
                        &self.client,
                        url,
                        AnswerMethod::Get,
                        vec![
                            ("dtmf".into(), r.digits.clone()),
                            ("timed_out".into(), r.timed_out.to_string()),
                            ("uuid".into(), r.leg.0.to_string()),
                        ],
                    )),
                };
                match tokio::time::timeout(timeout, sent).await {
                    Ok(Ok(Some(v))) if v.as_array().is_some_and(|a| !a.is_empty()) => Some(v),
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => {
                        tracing::warn!(leg = %r.leg, error = %e, "input eventUrl failed: the NCCO goes on");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(leg = %r.leg, "input eventUrl timed out: the NCCO goes on");
                        None
                    }
                }
            }
            None => None,
        };
        let ncco = replaced.unwrap_or_else(|| Value::Array(p.rest.clone()));
        let facts = (p.from.clone(), p.to.clone(), p.call_id.clone());
        let outcome = self.run(ncco, &p.lobby, facts).await;
        self.continuation(r.leg, p.lobby, outcome)
    }

    /// How a call already in progress goes on by what its new NCCO came to
    /// (after an input, or a transfer): into a room (`lobby`, of its own,
    /// for an input or what plays before the end), or hung up.
    fn continuation(
        &self,
        leg: LegId,
        lobby: String,
        outcome: Result<Outcome, AnswerError>,
    ) -> Continuation {
        match outcome {
            Ok(Outcome::Room(room, o)) => Continuation::Room(room, Box::new(o)),
            Ok(Outcome::Input(o, pending)) => {
                self.keep(leg, pending);
                Continuation::Room(lobby, Box::new(o))
            }
            Ok(Outcome::End(o)) if o.intro.is_empty() && o.connect.is_none() => {
                Continuation::Hangup
            }
            Ok(Outcome::End(o)) => Continuation::Room(lobby, Box::new(o)),
            Err(e) => {
                tracing::warn!(%leg, error = %e, "the call's new NCCO is unusable: hung up");
                Continuation::Hangup
            }
        }
    }
}

/// The intro's sounds, added to `options` (what cannot be made, to its errors).
async fn add_intro(options: &mut CallOptions, intro: &[Intro], sounds: &Sounds) {
    options.barge_in |= intro.iter().any(Intro::barge_in);
    for action in intro {
        match intro_sound(action, sounds).await {
            Ok((s, n)) => options.intro.extend(std::iter::repeat_n(s, n as usize)),
            Err(e) => {
                let what = action.name();
                tracing::warn!(action = what, error = %e, "NCCO action could not be carried out: the next one runs");
                options.errors.push(format!("{what}: {e}"));
            }
        }
    }
}

/// GET (fields in the query) or POST (fields as a JSON object) to `url`; the
/// JSON that comes back, if any.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    method: AnswerMethod,
    fields: Vec<(String, String)>,
) -> Result<Option<Value>, AnswerError> {
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
    reply_json(ask.send().await?).await
}

fn post_json<'a>(
    client: &'a reqwest::Client,
    url: &'a str,
    body: &'a Value,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<Value>, AnswerError>> + Send + 'a>,
> {
    Box::pin(async move { reply_json(client.post(url).json(body).send().await?).await })
}

/// A 2xx's JSON (None for an empty or non-JSON body); an error status is an error.
async fn reply_json(resp: reqwest::Response) -> Result<Option<Value>, AnswerError> {
    if !resp.status().is_success() {
        return Err(AnswerError::Status(resp.status().as_u16()));
    }
    let bytes = resp.bytes().await?;
    Ok(serde_json::from_slice(&bytes).ok())
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

/// A conversation made ready to enter: its intro's sounds and its music made
/// (what cannot be made is in `errors`); the room's name and the options.
pub async fn prepare(conv: Conversation, sounds: &Sounds) -> (String, CallOptions) {
    let mut options = conv.options;
    add_intro(&mut options, &conv.intro, sounds).await;
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
            ..
        } => (
            levelled(sounds.speech(text, language).await?, *level).await?,
            plays(*loops),
        ),
        Intro::Stream {
            url, loops, level, ..
        } => (
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
}
