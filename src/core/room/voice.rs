//! What a participant says and hears in the mix: mute (and the notice to
//! one who talks on mute), deaf, hold with music, volumes, and the talker
//! detection's reports (events, who spoke when in recordings, endOnSilence).

use super::{Ctx, MUTED_REMIND, MUTED_TALK, Room, RoomTimer};
use crate::core::Event;
use crate::ids::LegId;
use crate::media::contract::MediaCommand;
use crate::media::prompt::Prompt;

impl Room {
    /// Talker detection changed for a participant.
    pub fn talking(&mut self, ctx: &mut Ctx, leg: LegId, talking: bool) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if p.muted {
            // not a talker to anyone; after a while it hears that it is muted
            p.muted_talking = talking;
            let t = self.timer(RoomTimer::MutedTalk(leg));
            if talking {
                ctx.timers.set(t, ctx.now + MUTED_TALK);
            } else {
                ctx.timers.cancel(&t);
            }
            return;
        }
        p.talking = talking;
        let name = p.identity.name.clone();
        for s in self.speakers.values_mut() {
            s.talking(leg, &name, talking, ctx.now);
        }
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        // endOnSilence counts from the end of the last talk spurt
        let quiet = p
            .call_recording
            .as_ref()
            .and(p.options.as_ref())
            .and_then(|o| o.record_call.as_ref())
            .and_then(|r| r.end_on_silence);
        if let Some(quiet) = quiet {
            let t = self.timer(RoomTimer::RecordSilence(leg));
            if talking {
                ctx.timers.cancel(&t);
            } else {
                ctx.timers.set(t, ctx.now + quiet);
            }
        }
        ctx.event(Event::Talking {
            leg,
            room: self.name().to_string(),
            talking,
        });
    }

    /// A muted participant talked for [`MUTED_TALK`]: "you are muted", at most
    /// once per [`MUTED_REMIND`].
    pub(super) fn tell_muted(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let due = p
            .muted_told
            .is_none_or(|t| ctx.now.saturating_duration_since(t) >= MUTED_REMIND);
        if p.muted && p.muted_talking && p.joined() && due {
            p.muted_told = Some(ctx.now);
            self.play(ctx, leg, vec![Prompt::Muted]);
        }
    }

    pub(super) fn set_muted(&mut self, ctx: &mut Ctx, leg: LegId, muted: bool) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let changed = p.muted != muted;
        p.muted = muted;
        // a talker muted is a talker no more to the room (its detection goes
        // on, as a muted one's); one unmuted talks again at its next spurt
        let stopped = muted && std::mem::take(&mut p.talking);
        p.muted_talking = stopped;
        if !muted {
            ctx.timers.cancel(&self.timer(RoomTimer::MutedTalk(leg)));
        }
        if stopped {
            // its turn in the recordings ends here, not at the detector's hangover
            for s in self.speakers.values_mut() {
                s.cut(leg, ctx.now);
            }
            ctx.timers
                .set(self.timer(RoomTimer::MutedTalk(leg)), ctx.now + MUTED_TALK);
            ctx.event(Event::Talking {
                leg,
                room: self.name().to_string(),
                talking: false,
            });
        }
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if p.media_up {
            ctx.media(MediaCommand::Mute { leg, muted });
        }
        if changed {
            ctx.event(Event::Muted {
                leg,
                room: self.name().to_string(),
                muted,
            });
        }
    }

    /// Put a participant in the mix on hold (music, `sound` or the room's,
    /// and nobody hears it) or take it off hold, back into the mix.
    pub(super) fn set_hold(
        &mut self,
        ctx: &mut Ctx,
        leg: LegId,
        on: bool,
        sound: Option<crate::media::prompt::Sound>,
    ) {
        let music = self.policy.music;
        // `update` has refused a hold for one not in the mix
        let Some(p) = self
            .parts
            .get_mut(&leg)
            .filter(|p| p.joined() && p.media_up && p.held != on)
        else {
            return;
        };
        p.held = on;
        ctx.media(match (on, sound) {
            (true, Some(sound)) => MediaCommand::HoldSound { leg, sound },
            (true, None) => MediaCommand::Hold { leg, music },
            (false, _) => MediaCommand::Join { leg },
        });
        ctx.event(Event::Held {
            leg,
            room: self.name().to_string(),
            held: on,
        });
    }

    /// A participant's volumes (dB, −12..12): what it says, what it hears.
    pub(super) fn set_volume(
        &mut self,
        ctx: &mut Ctx,
        leg: LegId,
        speak: Option<i8>,
        hear: Option<i8>,
    ) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let was = p.volume;
        let (s, h) = (
            speak.unwrap_or(was.0).clamp(-12, 12),
            hear.unwrap_or(was.1).clamp(-12, 12),
        );
        p.volume = (s, h);
        if p.media_up {
            ctx.media(MediaCommand::Volume {
                leg,
                speak_db: s,
                hear_db: h,
            });
        }
        if p.volume != was {
            ctx.event(Event::Volume {
                leg,
                room: self.name().to_string(),
                volume_in: s,
                volume_out: h,
            });
        }
    }

    pub(super) fn set_deaf(&mut self, ctx: &mut Ctx, leg: LegId, deaf: bool) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        p.deaf = deaf;
        if p.media_up {
            ctx.media(MediaCommand::Deaf { leg, deaf });
        }
    }
}
