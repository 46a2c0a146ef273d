//! Configuration: the TOML file format, its defaults and its checks. Unknown keys and
//! bad types are rejected by serde (`deny_unknown_fields`); ranges and cross-field
//! rules are checked after, and every error is reported as `FILE:LINE:COL: reason`,
//! the position found from the TOML document's spans.

mod build;
mod check;
mod schema;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::MenuKeys;
pub use crate::core::room::spec::{RoomFault, RoomSpec};
pub use schema::{
    AnswerFallback, AnswerMethod, Api, Cluster, Dialout, EventFormat, Events, Log, LogFormat,
    Metrics, Recording, Routing, Rtp, Security, Signing, Sip, Trunk, Tts, WebRtc,
};
use schema::{default_rtp, default_sip};

/// Exit status for a configuration that cannot be used (sysexits.h EX_CONFIG), of
/// both `caucus check` and `caucus run`; the systemd unit does not restart on it.
pub const EX_CONFIG: u8 = 78;

/// The default configuration, compiled in: `caucus run` without `--config`.
pub const DEFAULT_TOML: &str = include_str!("../../conf/caucus.toml");

/// A configuration problem with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {reason}")]
pub struct ConfigError {
    /// file name as given
    pub file: String,
    /// 1-based line
    pub line: usize,
    /// 1-based column
    pub col: usize,
    /// what is wrong
    pub reason: String,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// directory of replacement prompts (every file of `sounds/` must be there)
    #[serde(default)]
    pub sounds_dir: Option<std::path::PathBuf>,
    /// SIP transport
    #[serde(default = "default_sip")]
    pub sip: Sip,
    /// media ports
    #[serde(default = "default_rtp")]
    pub rtp: Rtp,
    /// in-call menu keys
    #[serde(default)]
    pub menu: MenuKeys,
    /// rooms
    #[serde(default, rename = "room")]
    pub rooms: Vec<RoomSpec>,
    /// HTTP control API
    #[serde(default)]
    pub api: Api,
    /// event webhook
    #[serde(default)]
    pub events: Events,
    /// answer webhook
    #[serde(default)]
    pub routing: Routing,
    /// recordings
    #[serde(default)]
    pub recording: Recording,
    /// dial-out guards
    #[serde(default)]
    pub dialout: Dialout,
    /// digest credentials for dial-out
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<Trunk>,
    /// flood control
    #[serde(default)]
    pub security: Security,
    /// the metrics and health listener
    #[serde(default)]
    pub metrics: Metrics,
    /// logging
    #[serde(default)]
    pub log: Log,
    /// browser participants
    #[serde(default)]
    pub webrtc: WebRtc,
    /// speech for NCCO talk actions
    #[serde(default)]
    pub tts: Tts,
    /// one node of several (rooms placed by Redis)
    #[serde(default)]
    pub cluster: Option<Cluster>,
}

/// `[sip] advertise` split into host and port: an IP address (IPv6 in brackets)
/// or a host name, with or without `:PORT`.
pub fn parse_advertise(s: &str) -> Option<(String, Option<u16>)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        let host = match a.ip() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        return (a.port() != 0).then_some((host, Some(a.port())));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|_| (s.to_string(), None));
    }
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some((s.to_string(), None));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)),
        None => (s, None),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    name_ok.then(|| (host.to_string(), port))
}

impl Config {
    /// Parse and check a document; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(src).map_err(|e| {
            let reason = e.message().trim().replace('\n', " ");
            check::at(src, file, e.span().unwrap_or(0..0), reason)
        })?;
        check::all(&cfg, src, file)?;
        Ok(cfg)
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            line: 0,
            col: 0,
            reason: e.to_string(),
        })?;
        Config::parse(&src, &name)
    }

    /// The embedded default.
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_TOML, "conf/caucus.toml")
            .expect("the embedded default config is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::prompt::Prompt;

    #[test]
    fn default_is_valid() {
        let c = Config::default_config();
        assert_eq!(c.sip.listen, vec!["127.0.0.1:5060".parse().unwrap()]);
        assert_eq!((c.rtp.port_min, c.rtp.port_max), (20000, 20999));
        assert_eq!(c.rooms[0].name, "demo");
    }

    #[test]
    fn rooms_own_music_on_hold() {
        let moh = concat!(env!("CARGO_MANIFEST_DIR"), "/sounds/join.wav");
        let src = format!(
            "[[room]]\nname = \"a\"\nmusic_on_hold = \"{moh}\"\n[[room]]\nname = \"b\"\n[[room]]\nname = \"c\"\nmusic_on_hold = \"{moh}\"\n"
        );
        let c = Config::parse(&src, "t.toml").unwrap();
        let rooms = c.room_policies();
        assert_eq!(rooms["a"].music, Prompt::Music(0));
        assert_eq!(rooms["b"].music, Prompt::MusicOnHold);
        assert_eq!(rooms["c"].music, Prompt::Music(0));
        let p = c.prompts().unwrap();
        assert_eq!(
            p.get(Prompt::Music(0)).narrow.len(),
            p.get(Prompt::JoinTone).narrow.len()
        );
        let bad = Config::parse(
            "[[room]]\nname = \"a\"\nmusic_on_hold = \"/nonexistent.wav\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(
            bad.prompts()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent.wav")
        );
    }

    fn fails(src: &str) -> ConfigError {
        Config::parse(src, "t.toml").unwrap_err()
    }

    #[test]
    fn errors_name_line_and_reason() {
        let e = fails("[sip]\nlisten = \"127.0.0.1:5060\"\nbogus = 1\n");
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.reason.contains("bogus"), "{e}");

        let e = fails("[rtp]\nport_min = \"x\"\n");
        assert_eq!(e.line, 2, "{e}");

        let e = fails("[rtp]\nport_min = 70000\n");
        assert_eq!(e.line, 2, "{e}");

        let e = fails("[[room]]\nname = \"a\"\n\n[[room]]\nname = \"b\"\nmax_participants = 0\n");
        assert_eq!((e.line, e.col), (6, 20), "{e}");
        assert!(e.reason.contains("max_participants"), "{e}");

        let e = fails("[[room]]\nname = \"a\"\n[[room]]\nname = \"a\"\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.reason.contains("duplicate"), "{e}");
        assert_eq!(e.to_string(), format!("t.toml:4:8: {}", e.reason));

        let e = fails("[menu]\ntoggle_mute = \"*\"\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("prefix"), "{e}");

        let e = fails("[[room]]\nname = \"m\"\nmoderated = true\n");
        assert!(e.reason.contains("moderator_pin"), "{e}");
        let e = fails("[[room]]\nname = \"p\"\npin = \"12a\"\n");
        assert_eq!(e.line, 3, "{e}");
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let cfg = Config::parse(
            "[api]\ntoken = \"tok-0123456789abcdef\"\n[events]\nsecret = \"sec-0123456789abcdef\"\n\
             [[trunk]]\nname = \"t\"\nhost = \"127.0.0.1\"\nrealm = \"r\"\nusername = \"u\"\npassword = \"pw-hunter2\"\n\
             [[room]]\nname = \"p\"\npin = \"864209\"\nmoderator_pin = \"753197\"\n",
            "t.toml",
        )
        .unwrap();
        // the room table the core gets carries the PINs too
        let text = format!("{cfg:?} {:?}", cfg.room_policies());
        for secret in [
            "tok-0123456789abcdef",
            "sec-0123456789abcdef",
            "pw-hunter2",
            "864209",
            "753197",
        ] {
            assert!(!text.contains(secret), "{secret} in Debug output");
        }
        assert!(text.contains("<redacted>"));
    }
}
