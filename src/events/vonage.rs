//! Events in the shapes of Vonage's Voice API webhooks (`[events] format =
//! "vonage"`), so an application written against Vonage reads them unchanged:
//! per call (leg) the status events `started`, `ringing`, `answered`,
//! `completed` (with `start_time`, `end_time`, `duration`, `direction`), the ways
//! an outbound call fails (`busy`, `rejected`, `failed`, `timeout`,
//! `cancelled`), `record` when a recording is complete, and `transfer` when a
//! call moves to another conversation. Field names and
//! value types follow Vonage's webhook reference (durations are strings of whole
//! seconds, times RFC 3339 in UTC).
//!
//! `uuid` is the leg's participant id in the control API (`/v1/calls/{uuid}` and
//! `/v1/rooms/{room}/participants/{uuid}` name the same call) and
//! `conversation_uuid` is the room's name. Events about the room rather than a
//! call (started, ended, mute, talking) carry a `type` and no `status`, so an
//! application switching on `status` sees only call events.
//!
//! The bridge answers an inbound call as soon as it routes it, so `started`,
//! `ringing` and `answered` of an inbound call are sent together when it is
//! answered.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::core::dialout::DialStatus;
use crate::core::{Event, LegId};
use crate::util::rfc3339;

/// What the status events of a call need to repeat, from its first to its last.
#[derive(Debug, Clone)]
struct Call {
    from: String,
    to: String,
    outbound: bool,
    start: SystemTime,
}

/// The calls seen so far, for the fields of their later events.
#[derive(Debug, Default)]
pub struct Calls {
    calls: HashMap<LegId, Call>,
}

/// Calls remembered at most; a leak of entries (a leg whose end was never
/// reported) cannot grow without bound.
const CALLS_MAX: usize = 200_000;

impl Calls {
    fn remember(&mut self, leg: LegId, call: Call) {
        if self.calls.len() >= CALLS_MAX {
            self.calls.clear();
        }
        self.calls.insert(leg, call);
    }

    /// The Vonage-shaped bodies of one event (none, one or several), in order.
    pub fn payloads(&mut self, ev: &Event, now: SystemTime, recording_base: &str) -> Vec<Value> {
        let ts = rfc3339(now);
        let status = |status: &str, leg: LegId, room: &str, c: &Call| {
            json!({
                "status": status, "uuid": leg.0.to_string(), "conversation_uuid": room,
                "from": c.from, "to": c.to,
                "direction": if c.outbound { "outbound" } else { "inbound" },
                "timestamp": ts,
            })
        };
        match ev {
            Event::Joined {
                leg,
                room,
                from,
                to,
                outbound,
                ..
            } => {
                let known = self.calls.get(leg).map(|c| c.start);
                let call = Call {
                    from: from.clone(),
                    to: to.clone(),
                    outbound: *outbound,
                    start: known.unwrap_or(now),
                };
                self.remember(*leg, call.clone());
                if *outbound {
                    // its progress was told by the dial events
                    return Vec::new();
                }
                let mut answered = status("answered", *leg, room, &call);
                answered["start_time"] = Value::String(ts.clone());
                vec![
                    status("started", *leg, room, &call),
                    status("ringing", *leg, room, &call),
                    answered,
                ]
            }
            Event::Dial {
                leg,
                room,
                to,
                status: st,
                reason,
            } => {
                let mut out = Vec::new();
                let call = match self.calls.get(leg) {
                    Some(c) => c.clone(),
                    None => {
                        let c = Call {
                            from: String::new(),
                            to: to.clone(),
                            outbound: true,
                            start: now,
                        };
                        self.remember(*leg, c.clone());
                        out.push(status("started", *leg, room, &c));
                        c
                    }
                };
                let name = match st {
                    DialStatus::Ringing => "ringing",
                    DialStatus::Answered => "answered",
                    DialStatus::Unanswered => "timeout",
                    DialStatus::Cancelled => "cancelled",
                    DialStatus::Failed => failure(reason.as_deref()),
                };
                let mut v = status(name, *leg, room, &call);
                if *st == DialStatus::Answered {
                    v["start_time"] = Value::String(ts.clone());
                }
                if !matches!(st, DialStatus::Ringing | DialStatus::Answered) {
                    v["detail"] = json!(reason);
                    self.calls.remove(leg);
                }
                out.push(v);
                out
            }
            Event::Left {
                leg, room, reason, ..
            } => {
                let call = self.calls.remove(leg).unwrap_or(Call {
                    from: String::new(),
                    to: String::new(),
                    outbound: false,
                    start: now,
                });
                let secs = now.duration_since(call.start).unwrap_or_default().as_secs();
                let mut v = status("completed", *leg, room, &call);
                v["start_time"] = Value::String(rfc3339(call.start));
                v["end_time"] = Value::String(ts.clone());
                v["duration"] = Value::String(secs.to_string());
                v["reason"] = Value::String(reason.as_str().to_string());
                vec![v]
            }
            Event::Recording(r) => {
                let start = now
                    .checked_sub(std::time::Duration::from_millis(r.duration_ms))
                    .unwrap_or(now);
                let mut v = json!({
                    "start_time": rfc3339(start), "end_time": ts,
                    "recording_url": format!("{recording_base}{}", r.id),
                    "recording_uuid": r.id, "size": r.bytes,
                    "conversation_uuid": r.room, "timestamp": ts,
                });
                if let Some(l) = r.leg {
                    v["uuid"] = Value::String(l.0.to_string());
                }
                if let Some(e) = &r.error {
                    v["error"] = Value::String(e.clone());
                }
                vec![v]
            }
            Event::Error { leg, room, detail } => vec![json!({
                "type": "error", "uuid": leg.0.to_string(), "conversation_uuid": room,
                "reason": detail, "timestamp": ts,
            })],
            Event::RoomStarted { room } => vec![json!({
                "type": "conversation:started", "conversation_uuid": room, "timestamp": ts,
            })],
            Event::RoomClosed { room } => vec![json!({
                "type": "conversation:ended", "conversation_uuid": room, "timestamp": ts,
            })],
            // no Vonage counterpart: caucus's own type, in Vonage's shape
            Event::RoomLost { room, node } => vec![json!({
                "type": "room:lost", "conversation_uuid": room, "node": node, "timestamp": ts,
            })],
            Event::Muted { leg, room, muted } => vec![json!({
                "type": if *muted { "member:muted" } else { "member:unmuted" },
                "uuid": leg.0.to_string(), "conversation_uuid": room, "timestamp": ts,
            })],
            // Vonage's transfer event: a leg went from one conversation to another
            Event::Moved { leg, from, room } => vec![json!({
                "type": "transfer", "uuid": leg.0.to_string(),
                "conversation_uuid_from": from, "conversation_uuid_to": room,
                "timestamp": ts,
            })],
            // a receiver written for Vonage has no use for a talker stream, and
            // Vonage reports no change of canHear / canSpeak
            Event::Talking { .. }
            | Event::Relation { .. }
            | Event::Held { .. }
            | Event::Dtmf { .. }
            | Event::Hand { .. }
            | Event::Volume { .. }
            | Event::Playback { .. } => Vec::new(),
        }
    }
}

/// Vonage's name for how an outbound call failed, from its final status line.
fn failure(reason: Option<&str>) -> &'static str {
    let code = reason
        .and_then(|r| r.split_whitespace().next())
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(486 | 600) => "busy",
        Some(403 | 603) => "rejected",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::LeftReason;
    use std::time::Duration;

    #[test]
    fn an_inbound_call_is_started_ringing_answered_completed() {
        let mut calls = Calls::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let joined = Event::Joined {
            leg: LegId(4),
            room: "board".into(),
            call_id: "c".into(),
            from: "sip:alice@example.com".into(),
            to: "sip:board@bridge".into(),
            outbound: false,
        };
        let v = calls.payloads(&joined, t0, "");
        let st: Vec<_> = v.iter().map(|e| e["status"].as_str().unwrap()).collect();
        assert_eq!(st, ["started", "ringing", "answered"]);
        assert_eq!(v[2]["direction"], "inbound");
        assert_eq!(v[2]["to"], "sip:board@bridge");
        let left = Event::Left {
            leg: LegId(4),
            room: "board".into(),
            call_id: "c".into(),
            reason: LeftReason::Hangup,
        };
        let v = calls.payloads(&left, t0 + Duration::from_secs(75), "");
        assert_eq!(v[0]["status"], "completed");
        assert_eq!(v[0]["duration"], "75");
        assert_eq!(v[0]["start_time"], "1970-01-01T00:16:40.000Z");
        assert_eq!(v[0]["from"], "sip:alice@example.com");
        assert!(calls.calls.is_empty());
    }

    #[test]
    fn outbound_failures_have_vonage_names() {
        let mut calls = Calls::default();
        let dial = |status, reason: Option<&str>| Event::Dial {
            leg: LegId(9),
            room: "r".into(),
            to: "sip:bob@pbx".into(),
            status,
            reason: reason.map(str::to_string),
        };
        let now = SystemTime::UNIX_EPOCH;
        let v = calls.payloads(&dial(DialStatus::Ringing, None), now, "");
        assert_eq!(v[0]["status"], "started");
        assert_eq!(v[1]["status"], "ringing");
        assert_eq!(v[1]["direction"], "outbound");
        let v = calls.payloads(&dial(DialStatus::Failed, Some("486 Busy Here")), now, "");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["status"], "busy");
        let v = calls.payloads(&dial(DialStatus::Failed, Some("603 Decline")), now, "");
        assert_eq!(v[1]["status"], "rejected", "a new attempt starts again");
        let v = calls.payloads(&dial(DialStatus::Unanswered, None), now, "");
        assert_eq!(v[1]["status"], "timeout");
        assert!(calls.calls.is_empty());
    }

    #[test]
    fn room_events_carry_no_status() {
        let mut calls = Calls::default();
        let v = calls.payloads(
            &Event::RoomStarted { room: "r".into() },
            SystemTime::UNIX_EPOCH,
            "",
        );
        assert!(v[0].get("status").is_none());
        assert_eq!(v[0]["type"], "conversation:started");
    }
}
