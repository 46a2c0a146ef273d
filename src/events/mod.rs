//! The event webhook (Vonage's `event_url`): state changes POSTed as JSON, signed
//! with HMAC-SHA256, delivered in order per room and retried with backoff for
//! `[events] retry_for_s`. Delivery runs in its own task: a slow or dead receiver
//! holds back only later events of the same room, never signalling or media.
//!
//! The same events, numbered alike, are published live to the API's
//! Server-Sent Events streams ([`LiveEvent`]), whether or not a webhook is set.
//!
//! Signature (`[events] signing = "hmac"`): `X-Caucus-Signature: sha256=HEX` of
//! HMAC-SHA256(secret, `TIMESTAMP.BODY`), with the Unix time in
//! `X-Caucus-Timestamp`, so a receiver can refuse replays; or (`"jwt"`) an HS256
//! JWT (RFC 7519) in `Authorization: Bearer`, with `iat`, `jti` and the body's
//! SHA-256 in `payload_hash`, as Vonage signs its webhooks.
//!
//! Bodies: caucus's own types by default, names following Vonage's where one
//! exists (`uuid`, `conversation_uuid`, `status`, `timestamp`, `recording_url`,
//! `direction`); Vonage's call status events with `[events] format = "vonage"`
//! ([`vonage`]). The live streams always carry caucus's types.

pub mod vonage;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{EventFormat, Signing};
use crate::core::Event;
use crate::core::dialout::DialStatus;
use crate::util::rfc3339;
use crate::util::secret::{hex, to_hex};

/// Events waiting for delivery at most (all rooms); more are dropped and counted.
const QUEUE: usize = 100_000;
/// One delivery attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between attempts: first, and at most.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Rooms whose sequence numbers are remembered; beyond this the table starts over.
const SEQ_ROOMS: usize = 100_000;

/// Delivery counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// events delivered (2xx)
    pub delivered: AtomicU64,
    /// attempts that failed (and were retried)
    pub failed_attempts: AtomicU64,
    /// events given up after retrying for retry_for_s
    pub dropped: AtomicU64,
    /// events refused because the queue was full
    pub overflow: AtomicU64,
}

/// One event as the live streams carry it: its room and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// the room it belongs to
    pub room: String,
    /// the webhook's JSON body
    pub json: String,
}

/// The live streams' channel: events a slow reader falls behind on are skipped
/// for it (it is told how many), never held for the others.
pub type LiveEvents = tokio::sync::broadcast::Sender<Arc<LiveEvent>>;

/// A channel for [`LiveEvent`]s.
pub fn live_channel() -> LiveEvents {
    tokio::sync::broadcast::channel(1024).0
}

struct Outgoing {
    key: String,
    url: String,
    body: Arc<[u8]>,
    timestamp: u64,
}

/// The sending side, owned by the driver.
pub struct Webhooks {
    tx: mpsc::Sender<Outgoing>,
    default_url: Option<String>,
    /// per room: next sequence number, so receivers can check order
    seq: HashMap<String, u64>,
    /// counters shared with the delivery task
    pub stats: Arc<WebhookStats>,
    recording_base: String,
    live: LiveEvents,
    format: EventFormat,
    calls: vonage::Calls,
}

/// How deliveries are signed.
#[derive(Clone)]
struct Signer {
    key: Arc<[u8]>,
    how: Signing,
}

impl Webhooks {
    /// Start the delivery task. `recording_base` prefixes recording URLs
    /// (`http://API/v1/recordings/`).
    pub fn start(
        cfg: &crate::config::Events,
        recording_base: String,
        live: LiveEvents,
    ) -> Webhooks {
        let retry_for = Duration::from_secs(cfg.retry_for_s);
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent("caucus")
            .build()
            .unwrap_or_default();
        tokio::spawn(dispatch(
            rx,
            client,
            cfg.secret.as_ref().map(|s| Signer {
                key: Arc::<[u8]>::from(s.as_bytes()),
                how: cfg.signing,
            }),
            retry_for,
            stats.clone(),
        ));
        Webhooks {
            tx,
            default_url: cfg.url.clone(),
            seq: HashMap::new(),
            stats,
            recording_base,
            live,
            format: cfg.format,
            calls: vonage::Calls::default(),
        }
    }

    /// Queue an event for the room's URL (its own `event_url`, else `[events] url`),
    /// and publish it to the live streams.
    pub fn send(&mut self, ev: &Event, room_url: Option<String>) {
        let url = room_url.or_else(|| self.default_url.clone());
        let watched = self.live.receiver_count() > 0;
        if url.is_none() && !watched {
            return;
        }
        if room_of(ev) == crate::core::DECOY_ROOM {
            return; // a caller to a room that does not exist
        }
        let room = room_of(ev).to_string();
        if self.seq.len() >= SEQ_ROOMS && !self.seq.contains_key(&room) {
            // bounded memory with endless run-time room names: numbering restarts
            self.seq.clear();
        }
        let seq = self.seq.entry(room.clone()).or_insert(0);
        *seq += 1;
        let now = SystemTime::now();
        let body = payload(ev, *seq, now, &self.recording_base);
        if watched {
            let _ = self.live.send(Arc::new(LiveEvent {
                room: room.clone(),
                json: body.to_string(),
            }));
        }
        let Some(url) = url else {
            return;
        };
        let bodies = match self.format {
            EventFormat::Caucus => vec![body],
            EventFormat::Vonage => self.calls.payloads(ev, now, &self.recording_base),
        };
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for body in bodies {
            let out = Outgoing {
                key: room.clone(),
                url: url.clone(),
                body: serde_json::to_vec(&body).unwrap_or_default().into(),
                timestamp,
            };
            if self.tx.try_send(out).is_err() {
                self.stats.overflow.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room_of(ev), "event queue full: event dropped");
            }
        }
    }
}

/// The room an event belongs to.
pub fn room_of(ev: &Event) -> &str {
    match ev {
        Event::RoomStarted { room }
        | Event::Joined { room, .. }
        | Event::Left { room, .. }
        | Event::RoomClosed { room }
        | Event::RoomLost { room, .. }
        | Event::Muted { room, .. }
        | Event::Talking { room, .. }
        | Event::Dial { room, .. }
        | Event::Moved { room, .. }
        | Event::Relation { room, .. }
        | Event::Held { room, .. }
        | Event::Dtmf { room, .. }
        | Event::Hand { room, .. }
        | Event::Volume { room, .. }
        | Event::Playback { room, .. }
        | Event::Error { room, .. } => room,
        Event::Recording(r) => &r.room,
    }
}

/// The JSON body of an event.
pub fn payload(ev: &Event, seq: u64, now: SystemTime, recording_base: &str) -> Value {
    let timestamp = rfc3339(now);
    let mut v = match ev {
        Event::RoomStarted { room } => json!({
            "type": "room:started", "status": "started", "conversation_uuid": room,
        }),
        Event::RoomClosed { room } => json!({
            "type": "room:ended", "status": "completed", "conversation_uuid": room,
        }),
        Event::RoomLost { room, node } => json!({
            "type": "room:lost", "status": "failed", "conversation_uuid": room, "node": node,
        }),
        Event::Joined {
            leg,
            room,
            call_id,
            from,
            to,
            outbound,
        } => json!({
            "type": "participant:joined", "status": "joined", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "call_id": call_id,
            // the other party, whichever side placed the call
            "from": if *outbound { to } else { from }, "to": to,
            "direction": if *outbound { "outbound" } else { "inbound" },
        }),
        Event::Left {
            leg,
            room,
            call_id,
            reason,
        } => json!({
            "type": "participant:left", "status": "left", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "call_id": call_id, "reason": reason.as_str(),
        }),
        Event::Muted { leg, room, muted } => json!({
            "type": if *muted { "participant:muted" } else { "participant:unmuted" },
            "status": if *muted { "muted" } else { "unmuted" },
            "uuid": leg.0.to_string(), "conversation_uuid": room,
        }),
        Event::Talking { leg, room, talking } => json!({
            "type": if *talking { "participant:talking:started" } else { "participant:talking:stopped" },
            "status": if *talking { "talking" } else { "silent" },
            "uuid": leg.0.to_string(), "conversation_uuid": room,
        }),
        Event::Recording(r) => json!({
            "type": match (r.recovered, r.error.is_none()) {
                (true, _) => "recording:recovered",
                (false, true) => "recording:completed",
                (false, false) => "recording:failed",
            },
            "status": match (r.recovered, r.error.is_none()) {
                (true, _) => "recovered",
                (false, true) => "completed",
                (false, false) => "failed",
            },
            "recording_uuid": r.id, "conversation_uuid": r.room,
            "uuid": r.leg.map(|l| l.0.to_string()),
            "recording_url": format!("{recording_base}{}", r.id),
            "duration": r.duration_ms / 1000, "duration_ms": r.duration_ms, "size": r.bytes,
            "error": r.error,
        }),
        Event::Dial {
            leg,
            room,
            to,
            status,
            reason,
        } => json!({
            // every way of not connecting is a failure; status says which
            "type": match status {
                DialStatus::Ringing => "dial:ringing",
                DialStatus::Answered => "dial:answered",
                _ => "dial:failed",
            },
            "status": status.as_str(),
            "uuid": leg.0.to_string(), "conversation_uuid": room, "to": to,
            "direction": "outbound", "reason": reason,
        }),
        Event::Error { leg, room, detail } => json!({
            "type": "error", "status": "error", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "reason": detail,
        }),
        Event::Moved { leg, from, room } => json!({
            "type": "participant:moved", "status": "moved", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "conversation_uuid_from": from,
        }),
        Event::Playback {
            id,
            room,
            leg,
            stopped,
        } => json!({
            "type": "playback:done", "playback_id": format!("{id:016x}"),
            "conversation_uuid": room, "uuid": leg.map(|l| l.0.to_string()),
            "stopped": stopped,
        }),
        Event::Volume {
            leg,
            room,
            volume_in,
            volume_out,
        } => json!({
            "type": "participant:volume", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "volume_in": volume_in, "volume_out": volume_out,
        }),
        Event::Hand { leg, room, raised } => json!({
            "type": if *raised { "participant:hand:raised" } else { "participant:hand:lowered" },
            "uuid": leg.0.to_string(), "conversation_uuid": room,
        }),
        Event::Dtmf { leg, room, digit } => json!({
            "type": "participant:dtmf", "uuid": leg.0.to_string(),
            "conversation_uuid": room, "digit": digit.to_string(),
        }),
        Event::Held { leg, room, held } => json!({
            "type": if *held { "participant:held" } else { "participant:unheld" },
            "uuid": leg.0.to_string(), "conversation_uuid": room,
        }),
        Event::Relation {
            leg,
            room,
            hears,
            heard_by,
        } => {
            let ids = |l: &Option<Vec<crate::ids::LegId>>| match l {
                None => json!("all"),
                Some(v) => json!(v.iter().map(|l| l.0).collect::<Vec<_>>()),
            };
            json!({
                "type": "participant:relation", "uuid": leg.0.to_string(),
                "conversation_uuid": room, "hears": ids(hears), "heard_by": ids(heard_by),
            })
        }
    };
    v["timestamp"] = Value::String(timestamp);
    v["seq"] = Value::from(seq);
    v
}

/// `sha256=HEX` of HMAC-SHA256(secret, "TIMESTAMP.BODY").
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256=");
    for b in tag {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An HS256 JWT (RFC 7519) for one delivery: issued at `iat`, unique by `jti`,
/// bound to the body by its SHA-256 in `payload_hash`.
pub fn jwt(key: &[u8], iat: u64, body: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iat": iat, "jti": hex(16), "iss": "caucus",
        "payload_hash": to_hex(&Sha256::digest(body)),
    });
    let claims = b64.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{header}.{claims}.{sig}")
}

/// One queue per room; one delivery in flight per room, so a room's events
/// arrive in order while other rooms go on.
async fn dispatch(
    mut rx: mpsc::Receiver<Outgoing>,
    client: reqwest::Client,
    secret: Option<Signer>,
    retry_for: Duration,
    stats: Arc<WebhookStats>,
) {
    let mut queues: HashMap<String, VecDeque<Arc<Outgoing>>> = HashMap::new();
    let mut inflight: JoinSet<String> = JoinSet::new();
    let start = |inflight: &mut JoinSet<String>, o: Arc<Outgoing>| {
        let (client, secret, stats) = (client.clone(), secret.clone(), stats.clone());
        inflight.spawn(async move {
            deliver(&client, secret.as_ref(), &o, retry_for, &stats).await;
            o.key.clone()
        });
    };
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(o) = msg else { break };
                let o = Arc::new(o);
                let q = queues.entry(o.key.clone()).or_default();
                q.push_back(o.clone());
                if q.len() == 1 {
                    start(&mut inflight, o);
                }
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok(key) = done else { continue };
                if let Some(q) = queues.get_mut(&key) {
                    q.pop_front();
                    match q.front() {
                        Some(next) => start(&mut inflight, next.clone()),
                        None => { queues.remove(&key); }
                    }
                }
            }
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    secret: Option<&Signer>,
    o: &Outgoing,
    retry_for: Duration,
    stats: &WebhookStats,
) {
    let began = tokio::time::Instant::now();
    let mut backoff = BACKOFF_FIRST;
    loop {
        let mut req = client
            .post(&o.url)
            .header("Content-Type", "application/json")
            .header("X-Caucus-Timestamp", o.timestamp.to_string())
            .body(o.body.to_vec());
        match secret {
            Some(Signer {
                key,
                how: Signing::Hmac,
            }) => {
                req = req.header("X-Caucus-Signature", sign(key, o.timestamp, &o.body));
            }
            Some(Signer {
                key,
                how: Signing::Jwt,
            }) => {
                req = req.bearer_auth(jwt(key, o.timestamp, &o.body));
            }
            None => {}
        }
        let failure = match req.send().await {
            Ok(r) if r.status().is_success() => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if began.elapsed() + backoff > retry_for {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(room = %o.key, url = %o.url, error = %failure, "event undeliverable: dropped after retrying");
            return;
        }
        tracing::warn!(room = %o.key, url = %o.url, error = %failure, retry_in_ms = backoff.as_millis() as u64, "event delivery failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LeftReason, LegId};

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe", data "what do ya want for nothing?"
        let sig = sign(b"Jefe", 0, b"what do ya want for nothing?");
        assert!(sig.starts_with("sha256="));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0.what do ya want for nothing?");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("sha256={want}"));
        // and the RFC 4231 vector itself, for the primitive
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn payloads_use_vonage_names() {
        let ev = Event::Left {
            leg: LegId(7),
            room: "demo".into(),
            call_id: "c1".into(),
            reason: LeftReason::Kicked,
        };
        let v = payload(&ev, 3, SystemTime::UNIX_EPOCH, "http://x/v1/recordings/");
        assert_eq!(v["uuid"], "7");
        assert_eq!(v["conversation_uuid"], "demo");
        assert_eq!(v["status"], "left");
        assert_eq!(v["reason"], "kicked");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
    }
}
