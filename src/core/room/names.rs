//! Names said on entry (`[[room]] announce_names`, as Asterisk ConfBridge's
//! `announce_user_presence` with a recorded name): a caller about to join the
//! mix is asked to say its name after the tone, the media worker keeps three
//! seconds of what it says (in memory only, never on disk), and the room hears
//! "NAME has joined the conference" and, when it goes, "NAME has left the
//! conference". Links and browser legs (which have a name from their page)
//! are not asked.

use super::{Ctx, LegKind, Room};
use crate::ids::LegId;
use crate::media::contract::MediaCommand;
use crate::media::prompt::{Prompt, Sound};

/// How long a name may be said.
pub const NAME_MS: u32 = 3000;
/// A name quieter than this (mean absolute sample) is taken as nothing said.
const SILENT: u32 = 150;

/// Where a participant's spoken name stands.
#[derive(Debug, Clone, Default)]
pub enum Name {
    /// not asked (or the room does not ask)
    #[default]
    Unasked,
    /// hearing "say your name after the tone"
    Asking,
    /// saying it: the media worker keeps what it says
    Saying,
    /// said (None: it said nothing audible)
    Said(Option<Sound>),
}

impl Room {
    /// Whether `leg` must say its name before it goes into the mix.
    pub(super) fn wants_name(&self, leg: LegId) -> bool {
        self.policy.announce_names
            && self.parts.get(&leg).is_some_and(|p| {
                matches!(p.name, Name::Unasked | Name::Asking | Name::Saying)
                    && p.identity.kind == LegKind::Sip
            })
    }

    /// Ask for the name (once): the prompt and the tone, then
    /// [`Room::name_prompt_done`] starts keeping what it says.
    pub(super) fn ask_name(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if !matches!(p.name, Name::Unasked) {
            return;
        }
        p.name = Name::Asking;
        self.play(ctx, leg, vec![Prompt::SayName, Prompt::Beep]);
    }

    /// The prompt played out: true when it was the name prompt (the caller now
    /// says its name).
    pub(super) fn name_prompt_done(&mut self, ctx: &mut Ctx, leg: LegId) -> bool {
        let Some(p) = self.parts.get_mut(&leg) else {
            return false;
        };
        if !matches!(p.name, Name::Asking) {
            return false;
        }
        p.name = Name::Saying;
        ctx.media(MediaCommand::Capture { leg, ms: NAME_MS });
        true
    }

    /// What the caller said after the tone: kept as its name, and in it goes.
    pub fn name_said(&mut self, ctx: &mut Ctx, leg: LegId, samples: Vec<i16>) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if !matches!(p.name, Name::Saying) {
            return;
        }
        let said = trimmed(samples);
        tracing::info!(%leg, room = %self.name, said = said.is_some(), "name recorded");
        p.name = Name::Said(said.map(crate::media::prompt::sound));
        self.bring_in(ctx, vec![leg]);
    }

    /// "NAME has joined" (or left) to everyone else in the mix.
    pub(super) fn announce_name(&mut self, ctx: &mut Ctx, leg: LegId, sound: Sound, joined: bool) {
        let tail = if joined {
            Prompt::HasJoined
        } else {
            Prompt::HasLeft
        };
        for o in self.joined().into_iter().filter(|o| *o != leg) {
            ctx.media(MediaCommand::PlaySound {
                leg: o,
                sound: sound.clone(),
            });
            self.play(ctx, o, vec![tail]);
        }
    }
}

/// The name without the silence after it (the caller stops before the three
/// seconds are up); None when nothing audible was said.
fn trimmed(mut samples: Vec<i16>) -> Option<Vec<i16>> {
    let loud = |f: &[i16]| {
        f.iter().map(|s| u32::from(s.unsigned_abs())).sum::<u32>() / f.len().max(1) as u32 >= SILENT
    };
    let frames = samples.len() / 160;
    let last = (0..frames)
        .rev()
        .find(|&k| loud(&samples[k * 160..(k + 1) * 160]))?;
    // a little air after the last word
    samples.truncate(((last + 6) * 160).min(samples.len()));
    Some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_after_a_name_is_cut_and_silence_alone_is_no_name() {
        assert!(trimmed(vec![0; 24000]).is_none());
        let mut s = vec![0i16; 24000];
        for v in &mut s[1600..8000] {
            *v = 3000;
        }
        let t = trimmed(s).unwrap();
        assert_eq!(t.len(), 8000 + 5 * 160);
    }
}
