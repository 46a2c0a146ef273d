//! What the rest of the bridge is built from a configuration: the core's
//! configuration (rooms, timers, flood control, dial-out), the prompts with the
//! rooms' own music, the media side's RTP timeouts.

use std::collections::HashMap;
use std::time::Duration;

use super::{Config, parse_advertise};
use crate::core::transaction::TimerConfig;
use crate::core::{CoreConfig, RoomPolicy};
use crate::media::prompt::{Prompt, PromptError, Prompts};
use crate::util::cidr::Cidr;

impl Config {
    /// The prompts: `sounds_dir` when set, else the ones compiled in; plus the
    /// rooms' own music, in the order of `Config::music_files`.
    pub fn prompts(&self) -> Result<Prompts, PromptError> {
        let mut p = match &self.sounds_dir {
            Some(dir) => Prompts::load(dir)?,
            None => Prompts::embedded(),
        };
        for f in self.music_files() {
            p.add_music(f)?;
        }
        Ok(p)
    }

    /// Distinct `music_on_hold` files, in room order (the order their prompts
    /// are loaded in, `Prompt::Music(i)`).
    pub fn music_files(&self) -> Vec<&std::path::Path> {
        let mut v: Vec<&std::path::Path> = Vec::new();
        for f in self.rooms.iter().filter_map(|r| r.music_on_hold.as_deref()) {
            if !v.contains(&f) {
                v.push(f);
            }
        }
        v
    }

    /// Flood-control limits.
    pub fn flood_limits(&self) -> crate::core::flood::FloodLimits {
        let s = &self.security;
        crate::core::flood::FloodLimits {
            requests: s.flood_requests,
            window: Duration::from_secs(s.flood_window_s),
            fail_limit: s.fail_limit,
            fail_window: Duration::from_secs(s.fail_window_s),
            ban: Duration::from_secs(s.flood_ban_s),
            trusted: s
                .trusted_sources
                .iter()
                .filter_map(|c| Cidr::parse(c))
                .collect(),
        }
    }

    /// RTP timeouts for the media engine.
    pub fn rtp_timeouts(&self) -> crate::media::contract::RtpTimeouts {
        crate::media::contract::RtpTimeouts {
            active: Duration::from_secs(self.rtp.timeout_s),
            hold: Duration::from_secs(self.rtp.hold_timeout_s),
        }
    }

    /// Room table for the core.
    pub fn room_policies(&self) -> HashMap<String, RoomPolicy> {
        self.room_policies_using(&self.music_files())
    }

    /// Room table for the core, with the music files loaded at start (`music`,
    /// in their load order): a room naming a file not among them gets the default
    /// music (new files need a restart).
    pub fn room_policies_using(&self, music: &[&std::path::Path]) -> HashMap<String, RoomPolicy> {
        self.rooms
            .iter()
            .map(|r| {
                let own = r
                    .music_on_hold
                    .as_deref()
                    .and_then(|f| music.iter().position(|m| *m == f))
                    .map_or(Prompt::MusicOnHold, |i| Prompt::Music(i as u16));
                (r.name.clone(), r.policy(own))
            })
            .collect()
    }

    /// Configuration of the signalling core.
    pub fn core(&self) -> CoreConfig {
        self.core_using(&self.music_files())
    }

    /// [`Config::core`] with the music files loaded at start (see
    /// [`Config::room_policies_using`]).
    pub fn core_using(&self, music: &[&std::path::Path]) -> CoreConfig {
        CoreConfig {
            sip_advertise: self.sip.advertise.as_deref().and_then(parse_advertise),
            rtp_address: self.rtp.address,
            rtp_advertise: self.rtp.advertise,
            rtp_ports: (self.rtp.port_min, self.rtp.port_max),
            rtp_reserved: vec![self.webrtc.listen.port()],
            rooms: self.room_policies_using(music),
            timers: TimerConfig {
                t1: Duration::from_millis(self.sip.t1_ms),
                t2: Duration::from_millis(self.sip.t2_ms),
                t4: Duration::from_millis(self.sip.t4_ms),
            },
            user_agent: self.sip.user_agent.clone(),
            menu: self.menu.clone(),
            recording_dir: self.recording.dir.clone(),
            dialout: crate::core::dialout::DialPolicy {
                allowed: self.dialout.allowed_destinations.clone(),
                max_calls: self.dialout.max_outbound_calls,
                max_duration: Duration::from_secs(self.dialout.max_duration_s),
                trunks: self
                    .trunks
                    .iter()
                    .map(|t| crate::core::dialout::TrunkCredentials {
                        host: t.host.clone(),
                        realm: t.realm.clone(),
                        username: t.username.clone(),
                        password: t.password.clone(),
                    })
                    .collect(),
            },
            answer_webhook: self.routing.answer_url.is_some(),
            hide_rooms: self.security.hide_rooms,
            srtp: self.sip.srtp,
            srtp_keys: crate::sdes::MasterKey::random,
            flood: self.flood_limits(),
            ban_ends_calls: self.security.ban_ends_calls,
            cluster: self.cluster.is_some(),
            cascade_at: self.cluster.as_ref().map_or(0, |k| k.cascade_at),
        }
    }
}
