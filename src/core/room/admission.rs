//! Getting into the mix: the PIN (typed by DTMF and judged in constant time,
//! with the lockout per source), the moderated wait (music on hold until a
//! moderator, or an NCCO caller with startOnEnter, is in), and what joining
//! sets off: the participant's rights, announcements, and the NCCO's options.

use super::super::{LeftReason, pin};
use super::policy::DECOY_RETRIES;
use super::{Ctx, Room, Stage};
use crate::ids::LegId;
use crate::media::contract::MediaCommand;
use crate::media::prompt::Prompt;

impl Room {
    /// A DTMF digit from a participant (RFC 4733, SIP INFO or in-band): PIN
    /// entry, or the menu.
    pub fn dtmf(&mut self, ctx: &mut Ctx, leg: LegId, digit: char) {
        self.barge_in(ctx, leg);
        if self.record_key(ctx, leg, digit) || self.input_key(ctx, leg, digit) {
            return;
        }
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let Stage::Pin { entered, .. } = &mut p.stage else {
            if let Stage::Joined { moderator } = p.stage {
                // a key in the conference, to the app (never one of a PIN or
                // of an NCCO input, which go elsewhere above)
                ctx.event(crate::core::Event::Dtmf {
                    leg,
                    room: self.name().to_string(),
                    digit,
                });
                self.menu_key(ctx, leg, digit, moderator);
            }
            return;
        };
        if p.hangup_after_prompt.is_some() {
            return;
        }
        if digit == '#' {
            return self.judge_pin(ctx, leg);
        }
        if entered.len() < pin::MAX_PIN {
            entered.push(digit);
        }
        let at = ctx.now + self.policy.pin_timeout;
        ctx.timers.set(self.timer(super::RoomTimer::Pin(leg)), at);
    }

    /// Judge what a participant typed: in, try again, or hang up after the last
    /// try. A locked-out source is told exactly what a wrong PIN is told.
    pub(super) fn judge_pin(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let Stage::Pin { entered, .. } = &mut p.stage else {
            return;
        };
        let typed = std::mem::take(entered);
        let src = p.identity.source;
        ctx.timers.cancel(&self.timer(super::RoomTimer::Pin(leg)));
        let policy = &self.policy;
        let verdict = if self.decoy || self.guard.locked(self.name.as_str(), src, ctx.now) {
            pin::Verdict::Wrong
        } else {
            pin::judge(
                &typed,
                policy.pin.as_deref(),
                policy.moderator_pin.as_deref(),
            )
        };
        if verdict != pin::Verdict::Wrong {
            let moderator = verdict == pin::Verdict::Moderator;
            self.guard
                .succeed(self.name.as_str(), src, ctx.now, policy.lockout);
            ctx.attempts.push((src, true));
            tracing::info!(%leg, room = %self.name, moderator, "PIN accepted");
            return self.admit(ctx, leg, moderator);
        }
        let (retries, rule) = if self.decoy {
            (DECOY_RETRIES, None)
        } else {
            (policy.pin_retries, Some(policy.lockout))
        };
        let Some(Stage::Pin { tries, .. }) = self.parts.get_mut(&leg).map(|p| &mut p.stage) else {
            return;
        };
        *tries += 1;
        let tries = *tries;
        if let Some(rule) = rule
            && self.guard.fail(self.name.as_str(), src, ctx.now, rule)
        {
            tracing::warn!(room = %self.name, source = %src, "PIN guessing: source locked out");
        }
        tracing::info!(%leg, room = %self.name, tries, "wrong PIN");
        ctx.attempts.push((src, false));
        // the caller may have typed over the last prompt: answer at once
        ctx.media(MediaCommand::Interrupt { leg });
        if tries >= retries {
            self.play_then_hang_up(
                ctx,
                leg,
                vec![Prompt::InvalidPin, Prompt::Goodbye],
                LeftReason::PinFailed,
            );
        } else {
            self.play(ctx, leg, vec![Prompt::InvalidPin, Prompt::EnterPin]);
        }
    }

    /// Another node's PIN try of this room from `src`, counted in this room's
    /// lockout as a try here would be.
    pub fn note_pin(&mut self, src: std::net::IpAddr, now: std::time::Instant, right: bool) {
        if self.decoy {
            return;
        }
        let rule = self.policy.lockout;
        if right {
            self.guard.succeed(self.name.as_str(), src, now, rule);
        } else if self.guard.fail(self.name.as_str(), src, now, rule) {
            tracing::warn!(room = %self.name, source = %src, "PIN guessing across the cluster: source locked out");
        }
    }

    /// A PIN typed into the join page (to be exchanged for a join token): judged
    /// as a PIN typed by DTMF is, in the same per-source lockout.
    pub fn judge_typed_pin(
        &mut self,
        typed: &str,
        src: std::net::IpAddr,
        now: std::time::Instant,
    ) -> pin::Verdict {
        let policy = &self.policy;
        let verdict = if self.decoy || self.guard.locked(self.name.as_str(), src, now) {
            pin::Verdict::Wrong
        } else {
            pin::judge(
                typed,
                policy.pin.as_deref(),
                policy.moderator_pin.as_deref(),
            )
        };
        if verdict == pin::Verdict::Wrong {
            if !self.decoy
                && self
                    .guard
                    .fail(self.name.as_str(), src, now, policy.lockout)
            {
                tracing::warn!(room = %self.name, source = %src, "PIN guessing: source locked out");
            }
            tracing::info!(room = %self.name, source = %src, "wrong PIN on the join page");
        } else {
            self.guard
                .succeed(self.name.as_str(), src, now, policy.lockout);
        }
        verdict
    }

    /// A participant passed its PIN (or needed none): into the mix, or to wait
    /// for the moderator; a moderator brings everyone waiting in.
    fn admit(&mut self, ctx: &mut Ctx, leg: LegId, moderator: bool) {
        if !moderator && self.locked {
            // a locked room admits moderators only
            return self.play_then_hang_up(
                ctx,
                leg,
                vec![Prompt::Locked, Prompt::Goodbye],
                LeftReason::Refused,
            );
        }
        let wait = self.policy.moderated && !moderator && !self.has_moderator();
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        if wait {
            p.stage = Stage::Waiting;
            if p.media_up {
                self.start_waiting(ctx, leg);
            }
            return;
        }
        p.stage = Stage::Joined { moderator };
        self.bring_in(ctx, vec![leg]);
        if moderator {
            self.release_waiting(ctx);
        }
    }

    /// A dialled participant answered: in (as its role says), or waiting for a
    /// moderator. Whether it is a moderator, who then brings everyone waiting
    /// in with [`Room::release_waiting`] once its media is up.
    pub fn answered(&mut self, leg: LegId) -> bool {
        let wait_for_moderator = self.policy.moderated && !self.has_moderator();
        let Some(p) = self.parts.get_mut(&leg) else {
            return false;
        };
        let Stage::Dialing { moderator } = p.stage else {
            return false;
        };
        // a link to another bridge's room is in at once, as any link is
        p.stage = if wait_for_moderator && !moderator && p.identity.kind != super::LegKind::Link {
            Stage::Waiting
        } else {
            Stage::Joined { moderator }
        };
        moderator
    }

    /// A moderator is in: everyone waiting for one joins the mix.
    pub fn release_waiting(&mut self, ctx: &mut Ctx) {
        let mut joining = Vec::new();
        for m in &self.members {
            if let Some(p) = self.parts.get_mut(m)
                && p.stage == Stage::Waiting
            {
                p.stage = Stage::Joined { moderator: false };
                joining.push(*m);
            }
        }
        tracing::info!(room = %self.name, waiting = joining.len(), "moderator in: the conference starts");
        self.bring_in(ctx, joining);
    }

    /// Participants whose stage is now Joined go into the mix (those with media
    /// up).
    pub(super) fn bring_in(&mut self, ctx: &mut Ctx, legs: Vec<LegId>) {
        for leg in legs {
            // one still hearing its NCCO's intro goes in when that has played
            if self
                .parts
                .get(&leg)
                .is_some_and(|p| p.media_up && !p.intro_pending)
            {
                if self.wants_name(leg) {
                    // in once it has said its name (names::name_said)
                    self.ask_name(ctx, leg);
                    continue;
                }
                ctx.media(MediaCommand::Join { leg });
                self.on_joined(ctx, leg);
            }
        }
    }

    /// A participant is in the mix with its media up: apply its role and rights,
    /// announce it, and let it start the room if its NCCO says so.
    pub(super) fn on_joined(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let (Stage::Joined { moderator }, true) = (&p.stage, p.media_up) else {
            return;
        };
        let moderator = *moderator;
        if p.joined_at.is_none() {
            p.joined_at = Some(ctx.now);
        }
        if p.identity.kind == super::LegKind::Link {
            // another room's voice, not a caller: no prompts, no tones, no rules
            return;
        }
        let policy = self.policy.clone();
        if !moderator {
            if policy.start_muted || !policy.participant_can_speak {
                self.set_muted(ctx, leg, true);
            }
            if !policy.participant_can_hear {
                self.set_deaf(ctx, leg, true);
            }
        }
        let others: Vec<LegId> = self.joined().into_iter().filter(|l| *l != leg).collect();
        if policy.announce_first && others.is_empty() {
            self.play(ctx, leg, vec![Prompt::First]);
        } else if policy.announce_count {
            self.play(ctx, leg, Prompt::count(others.len() + 1));
        }
        if policy.announce_join_leave {
            for o in others {
                self.play(ctx, o, vec![Prompt::JoinTone]);
            }
        }
        if let Some(super::names::Name::Said(Some(said))) =
            self.parts.get(&leg).map(|p| p.name.clone())
        {
            self.announce_name(ctx, leg, said, true);
        }
        self.apply_call_options(ctx, leg);
        let starts = self
            .parts
            .get(&leg)
            .is_some_and(|p| p.options.is_some() && p.starts_room());
        let waiting = self.parts.values().any(|p| p.stage == Stage::Waiting);
        if starts && waiting {
            self.release_waiting(ctx);
        }
    }

    /// A participant starts waiting for the moderator: told so, then music (its
    /// own, if its NCCO gave one).
    pub(super) fn start_waiting(&mut self, ctx: &mut Ctx, leg: LegId) {
        self.play(ctx, leg, vec![Prompt::WaitModerator]);
        let own = self
            .parts
            .get(&leg)
            .and_then(|p| p.options.as_ref())
            .and_then(|o| o.music.clone());
        ctx.media(match own {
            Some(sound) => MediaCommand::HoldSound { leg, sound },
            None => MediaCommand::Hold {
                leg,
                music: self.policy.music,
            },
        });
        let wait = self.policy.wait_timeout;
        if !wait.is_zero() {
            ctx.timers
                .set(self.timer(super::RoomTimer::Wait(leg)), ctx.now + wait);
        }
    }

    /// Apply a participant's NCCO options once it is in the mix.
    fn apply_call_options(&mut self, ctx: &mut Ctx, leg: LegId) {
        let Some(o) = self.parts.get(&leg).and_then(|p| p.options.clone()) else {
            return;
        };
        let nobody = |l: &Option<Vec<LegId>>| l.as_ref().is_some_and(Vec::is_empty);
        if o.mute || nobody(&o.heard_by) {
            self.set_muted(ctx, leg, true);
        }
        if nobody(&o.hears) {
            self.set_deaf(ctx, leg, true);
        }
        let some = |l: &Option<Vec<LegId>>| l.clone().filter(|l| !l.is_empty());
        let relation = crate::media::contract::Relation {
            hears: some(&o.hears),
            heard_by: some(&o.heard_by),
        };
        if !relation.is_default() {
            if let Some(p) = self.parts.get_mut(&leg) {
                p.relation = relation.clone();
            }
            ctx.media(MediaCommand::Relate { leg, relation });
        }
        if o.record && !self.recordings.values().any(Option::is_none) {
            self.record_from_start(ctx);
        }
    }
}
