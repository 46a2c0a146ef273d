//! Carrying out what the core asks (bytes to peers, commands to the media
//! engine, route questions to the answer webhook, events to the log, metrics
//! and webhooks), and bringing what the media workers report back in.

use std::time::Instant as StdInstant;

use tokio::time::Instant;

use super::{Driver, overload};
use crate::api::ops::Reply;
use crate::core::{Core, Event, Output, Transport};
use crate::media::contract::{MediaCommand, MediaEvent};
use crate::metrics::Metrics;
use crate::util::LogSafe;

fn now() -> StdInstant {
    Instant::now().into_std()
}

impl Driver {
    /// Carry out every output the core has queued, then answer the API call
    /// that caused them (so that it sees what they did).
    pub(super) async fn carry_out(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { to, data } => {
                    self.metrics.sent(&data);
                    match to.transport {
                        Transport::Udp => {
                            if let Some(sock) = self.udp.for_local(to.local) {
                                let _ = sock.send(&data, to.addr, to.local).await;
                            }
                        }
                        Transport::Tcp(id) | Transport::Tls(id) => {
                            if let Some(c) = self.conns.get(&id) {
                                let _ = c.tx.try_send(data);
                            }
                        }
                    }
                }
                Output::Media(MediaCommand::Bind { leg, addr }) => {
                    let ok = match self.media.apply(MediaCommand::Bind { leg, addr }) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(%leg, %addr, error = %e, "RTP port cannot be bound");
                            false
                        }
                    };
                    self.core.media_bound(now(), leg, ok);
                }
                Output::Media(cmd) => self.media_command(cmd),
                Output::Speakers { id, turns } => {
                    if let Some(dir) = self.running.recording.dir.clone() {
                        let body = crate::core::room::speakers::to_json(&id, &turns).to_string();
                        tokio::task::spawn_blocking(move || {
                            let path = dir.join(format!("{id}.speakers.json"));
                            if let Err(e) = std::fs::write(&path, body) {
                                tracing::warn!(recording = %id, error = %e, "who-spoke-when sidecar not written");
                            }
                        });
                    }
                }
                Output::Socket(req) => {
                    tokio::spawn(super::websocket::run(req, self.sockets.clone()));
                }
                Output::RecordingHook { id, url } => {
                    self.recording_hooks.insert(id, url);
                }
                Output::Input(result) => self.answer_hook.input_done(result),
                Output::ConnectFailed(f) => {
                    // (the caller may have hung up meanwhile)
                    if let Ok(c) = self.core.call(f.caller) {
                        let p = c.participant;
                        self.answer_hook
                            .connect_failed(f, (p.from, c.to, p.call_id));
                    }
                }
                Output::Claim { room } => match &self.cluster {
                    Some(c) => {
                        let _ = c.send(super::cluster::Ask::Claim(room));
                    }
                    None => self
                        .core
                        .claimed(now(), &room, crate::core::cluster::Claim::Held),
                },
                Output::Cascade { room } => match &self.cluster {
                    Some(c) => {
                        let _ = c.send(super::cluster::Ask::Cascade(room));
                    }
                    None => self.core.cascade_found(now(), &room, None),
                },
                Output::Guard(note) => {
                    if let Some(c) = &self.cluster {
                        let _ = c.send(super::cluster::Ask::Publish(note));
                    }
                }
                Output::Release { room } => {
                    if let Some(c) = &self.cluster {
                        let _ = c.send(super::cluster::Ask::Release(room));
                    }
                }
                Output::Route(req) if self.routes_by_hook => self.answer_hook.ask(req),
                Output::Route(req) => self.core.route_decided(
                    now(),
                    req.token,
                    crate::core::routing::RouteDecision::Fallback,
                ),
                Output::Event(ev) => {
                    if let Event::Left { leg, .. } = &ev {
                        self.answer_hook.forget(*leg);
                    }
                    self.note_dialout(&ev);
                    log_event(&ev);
                    self.metrics.event(&ev);
                    let hook = match &ev {
                        Event::Recording(r) => self.recording_hooks.remove(&r.id),
                        _ => None,
                    };
                    let url = hook.or_else(|| self.core.event_url(crate::events::room_of(&ev)));
                    self.webhooks.send(&ev, url);
                }
            }
        }
        if let Some((reply, result)) = self.deferred.take() {
            let result = match result {
                Ok(Reply::Recording(id)) if !self.core.recording_running(&id) => {
                    Err(crate::core::control::ControlError::RecordingFailed(
                        "the file could not be created (see the log)".into(),
                    ))
                }
                r => r,
            };
            let _ = reply.send(result);
        }
    }

    /// A dial-out ringing or answered is noted in the cluster's registry (the
    /// others report it failed if this node dies); one that ended, forgotten.
    fn note_dialout(&mut self, ev: &Event) {
        use crate::core::dialout::DialStatus;
        let Some(c) = &self.cluster else { return };
        let (leg, value) = match ev {
            Event::Dial {
                leg,
                room,
                to,
                status,
                ..
            } => match status {
                DialStatus::Ringing | DialStatus::Answered => {
                    self.dialouts.insert(*leg);
                    (*leg, Some(format!("{room} {to}")))
                }
                _ => {
                    self.dialouts.remove(leg);
                    (*leg, None)
                }
            },
            Event::Left { leg, .. } if self.dialouts.remove(leg) => (*leg, None),
            _ => return,
        };
        let _ = c.send(super::cluster::Ask::Work(format!("dial:{}", leg.0), value));
    }

    /// A media command; one that fails ends its leg, or reports its recording
    /// as failed.
    fn media_command(&mut self, cmd: MediaCommand) {
        let leg = match &cmd {
            MediaCommand::Open { leg, .. } => Some(*leg),
            _ => None,
        };
        let recording = match &cmd {
            MediaCommand::Record { id, room, .. } => {
                if let Some(c) = &self.cluster {
                    // reported failed by the others if this node dies
                    let _ = c.send(super::cluster::Ask::Work(
                        format!("rec:{id}"),
                        Some(room.clone()),
                    ));
                }
                Some(id.clone())
            }
            _ => None,
        };
        if let Err(e) = self.media.apply(cmd) {
            tracing::warn!(error = %e, "media setup failed");
            if let Some(leg) = leg {
                self.core.media_failed(now(), leg);
            }
            if let Some(id) = recording {
                self.core
                    .recording_done(now(), &id, 0, 0, Some(e.to_string()));
            }
        }
    }
}

/// What the media workers report, carried into the core (and metrics, logs).
pub(super) fn media_event(
    core: &mut Core,
    metrics: &mut Metrics,
    overload: &mut overload::Overload,
    ev: MediaEvent,
) {
    let now = now();
    match ev {
        // digits may be a PIN: never logged
        MediaEvent::Dtmf { leg, digit } => core.dtmf(now, leg, digit),
        MediaEvent::PromptDone { leg } => core.prompt_done(now, leg),
        // a name said on entry: kept in memory, never logged or written
        MediaEvent::Captured { leg, samples } => core.name_said(now, leg, samples),
        MediaEvent::PlaybackDone { id } => core.playback_done(now, id),
        MediaEvent::Talking { leg, talking } => core.talking(now, leg, talking),
        MediaEvent::RtpTimeout { leg } => core.rtp_timeout(now, leg),
        MediaEvent::RecordingDone(end) => {
            if let Some(e) = &end.error {
                tracing::error!(recording = %end.id, error = %e, "recording stopped by an error; the call goes on");
            }
            core.recording_done(now, &end.id, end.duration_ms, end.bytes, end.error.clone());
        }
        MediaEvent::TickStats(st) => {
            metrics.tick_stats(&st);
            overload.late(st.worker, st.late_p99_us);
            tracing::info!(
                target: "caucus::media::stats",
                worker = st.worker,
                ticks = st.ticks,
                legs = st.legs,
                late_p50_us = st.late_p50_us,
                late_p99_us = st.late_p99_us,
                late_max_us = st.late_max_us,
                busy_us = st.busy_us,
                busy_max_us = st.busy_max_us,
                offcpu_us = st.offcpu_us,
                offcpu_max_us = st.offcpu_max_us,
                late_hist = %LateHist(&st.late_hist),
                "media tick stats"
            );
        }
    }
}

/// A lateness histogram in a log line: `start_us:ticks` pairs, comma-separated.
struct LateHist<'a>(&'a [(u32, u32)]);

impl std::fmt::Display for LateHist<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, (start, n)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{start}:{n}")?;
        }
        Ok(())
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::RoomStarted { room } => tracing::info!(%room, "room started"),
        Event::Joined {
            leg,
            room,
            call_id,
            from,
            to,
            outbound,
        } => {
            tracing::info!(%leg, %room, call_id = %LogSafe(call_id), from = %LogSafe(from), to = %LogSafe(to), outbound, "joined")
        }
        Event::Left {
            leg,
            room,
            call_id,
            reason,
        } => {
            tracing::info!(%leg, %room, call_id = %LogSafe(call_id), reason = reason.as_str(), "left")
        }
        Event::RoomClosed { room } => tracing::info!(%room, "room closed"),
        Event::RoomLost { room, node } => {
            tracing::warn!(%room, %node, "room lost with its node");
        }
        Event::Muted { leg, room, muted } => tracing::info!(%leg, %room, muted, "mute"),
        Event::Talking { leg, room, talking } => tracing::debug!(%leg, %room, talking, "talker"),
        Event::Recording(r) => tracing::info!(
            recording = %r.id,
            room = %r.room,
            duration_ms = r.duration_ms,
            bytes = r.bytes,
            error = r.error.as_deref().unwrap_or(""),
            "recording finished"
        ),
        Event::Dial {
            leg,
            room,
            to,
            status,
            reason,
        } => {
            tracing::info!(%leg, %room, to = %LogSafe(to), status = status.as_str(), reason = %LogSafe(reason.as_deref().unwrap_or("")), "dial-out")
        }
        Event::Moved { leg, from, room } => tracing::info!(%leg, %room, from = %from, "moved"),
        Event::Held { leg, room, held } => tracing::info!(%leg, %room, held, "hold"),
        Event::Hand { leg, room, raised } => tracing::info!(%leg, %room, raised, "hand"),
        Event::Playback {
            id,
            room,
            leg,
            stopped,
        } => {
            tracing::info!(playback = %format!("{id:016x}"), %room, leg = ?leg.map(|l| l.0), stopped, "playback done")
        }
        Event::Volume {
            leg,
            room,
            volume_in,
            volume_out,
        } => tracing::info!(%leg, %room, volume_in, volume_out, "volume"),
        // the digit itself stays out of the log, as every key does
        Event::Dtmf { leg, room, .. } => tracing::debug!(%leg, %room, "key in the conference"),
        Event::Relation {
            leg,
            room,
            hears,
            heard_by,
        } => tracing::info!(%leg, %room, ?hears, ?heard_by, "who hears whom changed"),
        Event::Error { leg, room, detail } => {
            tracing::warn!(%leg, %room, detail = %LogSafe(detail), "NCCO action not carried out")
        }
    }
}
