//! A participant's NCCO in its room: what plays before it goes on (and a key
//! barging in on it), the digits of an `input`, the caller's own recording of
//! a `record` (its key, its timeout, its silence), the `connect` it asks for,
//! and the own recordings that move with it to another room (Vonage's NCCO
//! reference for the actions).

use super::{Ctx, Room, RoomTimer, Stems};
use crate::core::routing::CallOptions;
use crate::core::{Event, Output};
use crate::ids::LegId;
use crate::media::contract::MediaCommand;
use crate::media::prompt::Prompt;

impl Room {
    /// A synchronous connect's call did not connect: the room does not end
    /// with it (the connect's eventUrl decides what the caller does next).
    pub fn keep_on_exit(&mut self, leg: LegId) {
        if let Some(o) = self.parts.get_mut(&leg).and_then(|p| p.options.as_mut()) {
            o.end_on_exit = false;
        }
    }

    /// A participant's NCCO goes on in this room with new options (the actions
    /// after an `input`): its intro plays alone, then it goes on by them.
    pub fn rerun(&mut self, ctx: &mut Ctx, leg: LegId, options: CallOptions) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        p.intro_pending = !options.intro.is_empty();
        p.collecting = None;
        p.options = Some(options);
        ctx.timers.cancel(&self.timer(RoomTimer::Input(leg)));
        ctx.media(MediaCommand::Interrupt { leg });
        self.media_up(ctx, leg);
    }

    /// An NCCO `record`: the caller's own audio, from now (with a beep if asked),
    /// until its key, its timeout or the end of the call.
    pub(super) fn start_call_recording(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(rec) = self
            .parts
            .get(&leg)
            .filter(|p| p.call_recording.is_none())
            .and_then(|p| p.options.as_ref())
            .and_then(|o| o.record_call.clone())
        else {
            return;
        };
        let id = match self.start_recording(ctx, Some(leg), rec.spec) {
            Ok(id) => id,
            Err(e) => {
                ctx.event(Event::Error {
                    leg,
                    room: self.name().to_string(),
                    detail: format!("record: {e}"),
                });
                return;
            }
        };
        if let Some(url) = rec.event_url {
            ctx.out.push_back(Output::RecordingHook {
                id: id.clone(),
                url,
            });
        }
        if rec.beep {
            self.play(ctx, leg, vec![Prompt::JoinTone]);
        }
        ctx.timers
            .set(self.timer(RoomTimer::RecordEnd(leg)), ctx.now + rec.timeout);
        if let Some(quiet) = rec.end_on_silence {
            ctx.timers
                .set(self.timer(RoomTimer::RecordSilence(leg)), ctx.now + quiet);
        }
        if let Some(p) = self.parts.get_mut(&leg) {
            p.call_recording = Some(id);
        }
    }

    /// The NCCO `record` of a participant ends (its key, its timeout).
    pub(super) fn end_call_recording(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(id) = self
            .parts
            .get_mut(&leg)
            .and_then(|p| p.call_recording.take())
        else {
            return;
        };
        ctx.timers.cancel(&self.timer(RoomTimer::RecordEnd(leg)));
        ctx.timers
            .cancel(&self.timer(RoomTimer::RecordSilence(leg)));
        // reported (and forgotten) when the media side has closed its file
        self.stop_recording_id(ctx, &id);
    }

    /// The key that ends a participant's NCCO `record` (consumed), if it is one.
    pub(super) fn record_key(&mut self, ctx: &mut Ctx, leg: LegId, digit: char) -> bool {
        let ends = self.parts.get(&leg).is_some_and(|p| {
            p.call_recording.is_some()
                && p.options
                    .as_ref()
                    .and_then(|o| o.record_call.as_ref())
                    .and_then(|r| r.end_on_key)
                    == Some(digit)
        });
        if ends {
            self.end_call_recording(ctx, leg);
        }
        ends
    }

    /// The recordings of one participant's own audio, handed to the room it
    /// moves to (the media moves them with the leg), with who spoke when in them.
    pub fn take_stems(&mut self, leg: LegId) -> Stems {
        let ids: Vec<String> = self
            .recordings
            .iter()
            .filter(|(_, l)| **l == Some(leg))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .map(|id| {
                self.recordings.remove(&id);
                let turns = self.speakers.remove(&id);
                (id, turns)
            })
            .collect()
    }

    /// Take over a moved participant's own recordings.
    pub fn adopt_stems(&mut self, leg: LegId, stems: Stems) {
        for (id, turns) in stems {
            if let Some(t) = turns {
                self.speakers.insert(id.clone(), t);
            }
            self.recordings.insert(id, Some(leg));
        }
    }

    /// A key for a participant's NCCO `input`: kept, or the input is complete
    /// (max digits, or `#` with submitOnHash). False when it collects nothing.
    pub(super) fn input_key(&mut self, ctx: &mut Ctx, leg: LegId, digit: char) -> bool {
        let Some(p) = self.parts.get_mut(&leg) else {
            return false;
        };
        let (Some(typed), Some(spec)) = (
            p.collecting.as_mut(),
            p.options.as_ref().and_then(|o| o.input),
        ) else {
            return false;
        };
        let done = if digit == '#' && spec.submit_on_hash {
            true
        } else {
            typed.push(digit);
            typed.len() >= spec.max_digits
        };
        if done {
            self.input_done(ctx, leg, false);
        } else {
            let at = ctx.now + spec.timeout;
            ctx.timers.set(self.timer(RoomTimer::Input(leg)), at);
        }
        true
    }

    /// The input is complete: its digits go out for the NCCO's eventUrl.
    pub(super) fn input_done(&mut self, ctx: &mut Ctx, leg: LegId, timed_out: bool) {
        let Some(digits) = self.parts.get_mut(&leg).and_then(|p| p.collecting.take()) else {
            return;
        };
        ctx.timers.cancel(&self.timer(RoomTimer::Input(leg)));
        ctx.out
            .push_back(Output::Input(crate::core::routing::InputResult {
                leg,
                digits,
                timed_out,
            }));
    }

    /// What a participant's NCCO `connect` dials, if it has one.
    pub fn connect_spec(&self, leg: LegId) -> Option<crate::core::routing::ConnectSpec> {
        self.parts
            .get(&leg)
            .and_then(|p| p.options.as_ref())
            .and_then(|o| o.connect.clone())
    }

    /// A key while an intro with `bargeIn` plays: the intro stops and the call
    /// goes on (the key then counts for an input that follows).
    pub(super) fn barge_in(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if p.intro_pending && p.media_up && p.options.as_ref().is_some_and(|o| o.barge_in) {
            p.intro_pending = false;
            ctx.media(MediaCommand::Interrupt { leg });
            self.proceed(ctx, leg);
        }
    }
}
