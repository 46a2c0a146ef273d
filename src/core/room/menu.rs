//! The in-call DTMF menu (`[menu]`): key sequences for muting oneself, hearing
//! the menu or the count, and, for moderators, lecture mode, lock and end.

use std::time::Duration;

use super::{Ctx, Room, Stage};
use crate::ids::LegId;
use crate::media::prompt::Prompt;

/// Keys of a menu sequence must follow each other within this time.
const MENU_GAP: Duration = Duration::from_secs(3);

/// Key sequences of the in-call DTMF menu (`[menu]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MenuKeys {
    /// toggle own mute
    pub toggle_mute: String,
    /// hear the menu
    pub help: String,
    /// moderator: mute every participant (lecture mode)
    pub mute_all: String,
    /// moderator: unmute every participant
    pub unmute_all: String,
    /// moderator: lock or unlock the room
    pub lock: String,
    /// moderator: end the conference
    pub end: String,
    /// hear how many are in the room
    pub count: String,
    /// raise or lower one's hand (a queue per room, in the API and events)
    pub raise_hand: String,
    /// hear the room 3 dB louder (up to +12)
    pub listen_up: String,
    /// hear the room 3 dB softer (down to −12)
    pub listen_down: String,
}

impl Default for MenuKeys {
    fn default() -> Self {
        MenuKeys {
            toggle_mute: "*6".into(),
            help: "*0".into(),
            mute_all: "*1".into(),
            unmute_all: "*2".into(),
            lock: "*5".into(),
            end: "*9".into(),
            count: "*#".into(),
            raise_hand: "*7".into(),
            listen_up: "*3".into(),
            listen_down: "*8".into(),
        }
    }
}

/// What a menu key sequence does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuAction {
    ToggleMute,
    Help,
    MuteAll,
    UnmuteAll,
    Lock,
    End,
    Count,
    RaiseHand,
    ListenUp,
    ListenDown,
}

impl MenuKeys {
    /// Each binding's config key and key sequence.
    pub fn named(&self) -> [(&'static str, &String); 10] {
        [
            ("toggle_mute", &self.toggle_mute),
            ("help", &self.help),
            ("mute_all", &self.mute_all),
            ("unmute_all", &self.unmute_all),
            ("lock", &self.lock),
            ("end", &self.end),
            ("count", &self.count),
            ("raise_hand", &self.raise_hand),
            ("listen_up", &self.listen_up),
            ("listen_down", &self.listen_down),
        ]
    }

    pub(crate) fn bindings(&self) -> [(&str, MenuAction); 10] {
        use MenuAction::*;
        // in the order of `named`
        let actions = [
            ToggleMute, Help, MuteAll, UnmuteAll, Lock, End, Count, RaiseHand, ListenUp, ListenDown,
        ];
        let named = self.named();
        std::array::from_fn(|i| (named[i].1.as_str(), actions[i]))
    }
}

impl Room {
    /// Raise (to the end of the queue) or lower a participant's hand.
    pub(super) fn set_hand(&mut self, ctx: &mut Ctx, leg: LegId, up: bool) {
        let was = self.hands.contains(&leg);
        if was == up {
            return;
        }
        if up {
            self.hands.push(leg);
        } else {
            self.hands.retain(|l| *l != leg);
        }
        ctx.event(crate::core::Event::Hand {
            leg,
            room: self.name().to_string(),
            raised: up,
        });
    }

    /// A key from a participant in the mix: menu sequences start with the first
    /// key of a binding; anything else is ignored.
    pub(super) fn menu_key(&mut self, ctx: &mut Ctx, leg: LegId, digit: char, moderator: bool) {
        let Some(p) = self.parts.get_mut(&leg) else {
            return;
        };
        let (buf, at) = &mut p.menu;
        if at.is_some_and(|t| ctx.now.duration_since(t) > MENU_GAP) {
            buf.clear();
        }
        buf.push(digit);
        *at = Some(ctx.now);
        let bindings = ctx.menu.bindings();
        let hit = bindings
            .iter()
            .find(|(keys, _)| *keys == buf.as_str())
            .map(|b| b.1);
        if hit.is_some()
            || !bindings
                .iter()
                .any(|(keys, _)| keys.starts_with(buf.as_str()))
        {
            buf.clear();
        }
        let Some(action) = hit else { return };
        let was_muted = p.muted;
        tracing::info!(%leg, room = %self.name, ?action, "menu");
        let listen_only = !self.policy.participant_can_speak;
        match action {
            MenuAction::ToggleMute => {
                let muted = !was_muted || (listen_only && !moderator);
                self.set_muted(ctx, leg, muted);
                let said = if muted {
                    Prompt::Muted
                } else {
                    Prompt::Unmuted
                };
                self.play(ctx, leg, vec![said]);
            }
            MenuAction::Help => self.play(ctx, leg, vec![Prompt::Menu]),
            MenuAction::ListenUp | MenuAction::ListenDown => {
                let step = if action == MenuAction::ListenUp {
                    3
                } else {
                    -3
                };
                let hear = self.parts.get(&leg).map_or(0, |p| p.volume.1);
                self.set_volume(ctx, leg, None, Some(hear.saturating_add(step)));
                let tone = if step > 0 {
                    Prompt::JoinTone
                } else {
                    Prompt::LeaveTone
                };
                self.play(ctx, leg, vec![tone]);
            }
            MenuAction::RaiseHand => {
                let up = !self.hands.contains(&leg);
                self.set_hand(ctx, leg, up);
                self.play(ctx, leg, vec![Prompt::JoinTone]);
            }
            MenuAction::Count => {
                let n = self.joined().len();
                self.play(ctx, leg, Prompt::count(n));
            }
            MenuAction::MuteAll | MenuAction::UnmuteAll if moderator => {
                let muted = action == MenuAction::MuteAll;
                // listen-only participants stay muted
                for l in self.members.clone() {
                    if self
                        .parts
                        .get(&l)
                        .is_some_and(|p| p.stage == Stage::Joined { moderator: false })
                    {
                        self.set_muted(ctx, l, muted || listen_only);
                    }
                }
                let said = if muted {
                    Prompt::AllMuted
                } else {
                    Prompt::AllUnmuted
                };
                self.play(ctx, leg, vec![said]);
            }
            MenuAction::Lock if moderator => {
                self.locked = !self.locked;
                tracing::info!(room = %self.name, locked = self.locked, "room lock");
                let said = if self.locked {
                    Prompt::Locked
                } else {
                    Prompt::Unlocked
                };
                self.play(ctx, leg, vec![said]);
            }
            MenuAction::End if moderator => self.end(ctx, "ended by moderator"),
            _ => {} // a moderator's key pressed by a participant
        }
    }
}
