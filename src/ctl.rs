//! `caucus ctl`: the control API from the command line, so admins need no curl.
//! The API address and token come from flags, the environment (`CAUCUS_API`,
//! `CAUCUS_TOKEN`), or the bridge's own configuration file (`--config`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::Config;

/// Where the API is and how to get in.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// API base URL (default: from --config, else http://127.0.0.1:8080)
    #[arg(long, env = "CAUCUS_API")]
    pub api: Option<String>,
    /// bearer token (default: from --config)
    #[arg(long, env = "CAUCUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// read the API address and token from this caucus configuration file
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// print the API's JSON as it is
    #[arg(long)]
    pub json: bool,
    /// what to do
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `caucus ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// List rooms.
    Rooms,
    /// Show one room.
    Room {
        /// room
        room: String,
    },
    /// Create a room at run time; KEY=VALUE pairs are `[[room]]` settings
    /// (e.g. pin=1234 moderated=true moderator_pin=99 empty_timeout_s=300).
    Create {
        /// room
        room: String,
        /// settings
        settings: Vec<String>,
    },
    /// End a room: every call gets a BYE.
    End {
        /// room
        room: String,
    },
    /// List a room's participants.
    Participants {
        /// room
        room: String,
    },
    /// Mute a participant.
    Mute {
        /// room
        room: String,
        /// participant id
        id: u64,
    },
    /// Unmute a participant.
    Unmute {
        /// room
        room: String,
        /// participant id
        id: u64,
    },
    /// Make a participant hear nothing (or hear again with --off).
    Deaf {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// hear again
        #[arg(long)]
        off: bool,
    },
    /// Set a participant's volumes in dB (−12..12).
    Volume {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// on what it says, to the others
        #[arg(long = "in", allow_hyphen_values = true)]
        speak: Option<i8>,
        /// on what it hears of the room
        #[arg(long = "out", allow_hyphen_values = true)]
        hear: Option<i8>,
    },
    /// Join two rooms: each hears the other.
    Link {
        /// room
        room: String,
        /// the other room: its name on this bridge, or sip:ROOM@IP:PORT on
        /// another (a trusted source)
        other: String,
    },
    /// Part two linked rooms.
    Unlink {
        /// room
        room: String,
        /// the other room
        other: String,
    },
    /// Send keys to a participant's phone (RFC 4733, or SIP INFO).
    Dtmf {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// 0-9 * # A-D
        digits: String,
    },
    /// Put a participant on hold (music, not heard), or back with --off.
    Hold {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// a file in `[api] play_dir` to hear instead of the room's music
        #[arg(long)]
        music: Option<String>,
        /// off hold
        #[arg(long)]
        off: bool,
    },
    /// Make a participant a moderator, or a participant again.
    Role {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// moderator or participant
        role: String,
    },
    /// Move a participant to another room (its call untouched).
    Move {
        /// room
        room: String,
        /// participant id
        id: u64,
        /// the room it goes to
        to: String,
        /// its role there (moderator or participant; default: that room's rules)
        #[arg(long)]
        role: Option<String>,
    },
    /// Coach: the participant is heard by the target alone (or by everyone
    /// again with --off).
    Coach {
        /// room
        room: String,
        /// the coach's participant id
        id: u64,
        /// the participant it coaches
        #[arg(required_unless_present = "off")]
        target: Option<u64>,
        /// end the coaching
        #[arg(long)]
        off: bool,
    },
    /// Hang up a participant.
    Kick {
        /// room
        room: String,
        /// participant id
        id: u64,
    },
    /// Lock a room (moderators only).
    Lock {
        /// room
        room: String,
    },
    /// Unlock a room.
    Unlock {
        /// room
        room: String,
    },
    /// Play a WAV file from `[api] play_dir` to the room or one participant.
    Play {
        /// room
        room: String,
        /// file name in play_dir (WAV or MP3); with --text, the words to speak
        file: String,
        /// speak FILE's text instead (TTS)
        #[arg(long)]
        text: bool,
        /// only to this participant
        #[arg(long)]
        participant: Option<u64>,
        /// times to play (0: until stopped)
        #[arg(long = "loop")]
        loops: Option<u32>,
        /// level in dB (-24..6)
        #[arg(long, allow_hyphen_values = true)]
        level: Option<f64>,
    },
    /// Stop a playback.
    StopPlay {
        /// room
        room: String,
        /// playback id
        id: String,
    },
    /// Start recording the room (or one participant's own audio).
    Record {
        /// room
        room: String,
        /// only this participant
        #[arg(long)]
        participant: Option<u64>,
        /// wav (default) or ogg (Opus)
        #[arg(long)]
        format: Option<String>,
        /// 8000 (default), 16000 or 48000 (WAV)
        #[arg(long)]
        rate: Option<u32>,
        /// one channel per participant (with --participant: what it says and
        /// what it hears)
        #[arg(long)]
        split: bool,
        /// channels of a room's split recording (1-32, default 8)
        #[arg(long)]
        max_channels: Option<u64>,
    },
    /// Stop a recording.
    StopRecording {
        /// room
        room: String,
        /// recording id
        id: String,
    },
    /// List recordings (room, participant, start, duration, size, state).
    Recordings,
    /// Download a recording.
    Download {
        /// recording id
        id: String,
        /// file to write
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Dial a participant into a room.
    Dial {
        /// room
        room: String,
        /// SIP URI to call
        to: String,
        /// moderator or participant
        #[arg(long)]
        role: Option<String>,
        /// From user to present
        #[arg(long)]
        caller_id: Option<String>,
        /// seconds to ring
        #[arg(long)]
        timeout_s: Option<u64>,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// configuration file
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// no token anywhere
    #[error("no API token: give --token, CAUCUS_TOKEN, or --config with [api] token")]
    NoToken,
    /// a KEY=VALUE that is not one
    #[error("\"{0}\": settings are KEY=VALUE")]
    Setting(String),
    /// HTTP failure
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// the API said no
    #[error("{status}: {error}: {detail}")]
    Api {
        /// HTTP status
        status: u16,
        /// error code
        error: String,
        /// explanation
        detail: String,
    },
    /// writing a download
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn endpoint(args: &CtlArgs) -> Result<(String, String), CtlError> {
    let cfg = match &args.config {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    let api = args.api.clone().unwrap_or_else(|| {
        let listen = cfg
            .as_ref()
            .map_or("127.0.0.1:8080".to_string(), |c| c.api.listen.to_string());
        format!("http://{listen}")
    });
    let token = match (&args.token, &cfg) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => match (&c.api.token, &c.api.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            (None, None) => return Err(CtlError::NoToken),
        },
        (None, None) => return Err(CtlError::NoToken),
    };
    Ok((api.trim_end_matches('/').to_string(), token))
}

/// A `[[room]]` value from the command line: a number, a boolean, a list
/// (comma-separated, for allowed_sources / allowed_callers) or a string.
fn setting_value(key: &str, v: &str) -> Value {
    if key.starts_with("allowed_") {
        return Value::from(v.split(',').map(str::to_string).collect::<Vec<_>>());
    }
    if key.ends_with("pin") {
        return Value::from(v);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Value::from(n);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::from(v),
    }
}

/// Run one subcommand; returns what to print.
pub async fn run(args: CtlArgs) -> Result<String, CtlError> {
    let (api, token) = endpoint(&args)?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = client
            .request(method, format!("{api}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    use CtlCommand as C;
    use reqwest::Method as M;
    let resp = match &args.command {
        C::Rooms => call(M::GET, "/v1/rooms".into(), None),
        C::Room { room } => call(M::GET, format!("/v1/rooms/{room}"), None),
        C::Create { room, settings } => {
            let mut body = json!({"name": room});
            for s in settings {
                let (k, v) = s
                    .split_once('=')
                    .ok_or_else(|| CtlError::Setting(s.clone()))?;
                body[k] = setting_value(k, v);
            }
            call(M::POST, "/v1/rooms".into(), Some(body))
        }
        C::End { room } => call(M::DELETE, format!("/v1/rooms/{room}"), None),
        C::Participants { room } => call(M::GET, format!("/v1/rooms/{room}/participants"), None),
        C::Mute { room, id } | C::Unmute { room, id } => call(
            M::PATCH,
            format!("/v1/rooms/{room}/participants/{id}"),
            Some(json!({"muted": matches!(args.command, C::Mute { .. })})),
        ),
        C::Deaf { room, id, off } => call(
            M::PATCH,
            format!("/v1/rooms/{room}/participants/{id}"),
            Some(json!({"deaf": !off})),
        ),
        C::Volume {
            room,
            id,
            speak,
            hear,
        } => call(
            M::PATCH,
            format!("/v1/rooms/{room}/participants/{id}"),
            Some(json!({"volume_in": speak, "volume_out": hear})),
        ),
        C::Link { room, other } => call(
            M::POST,
            format!("/v1/rooms/{room}/links"),
            Some(if other.starts_with("sip:") {
                json!({"uri": other})
            } else {
                json!({"room": other})
            }),
        ),
        C::Unlink { room, other } => call(
            M::DELETE,
            format!("/v1/rooms/{room}/links/{}", path_segment(other)),
            None,
        ),
        C::Dtmf { room, id, digits } => call(
            M::POST,
            format!("/v1/rooms/{room}/participants/{id}/dtmf"),
            Some(json!({"digits": digits})),
        ),
        C::Hold {
            room,
            id,
            music,
            off,
        } => call(
            M::PATCH,
            format!("/v1/rooms/{room}/participants/{id}"),
            Some(match (off, music) {
                (true, _) => json!({"hold": false}),
                (false, Some(m)) => json!({"hold": true, "hold_music": m}),
                (false, None) => json!({"hold": true}),
            }),
        ),
        C::Role { room, id, role } => call(
            M::PATCH,
            format!("/v1/rooms/{room}/participants/{id}"),
            Some(json!({"role": role})),
        ),
        C::Move { room, id, to, role } => call(
            M::POST,
            format!("/v1/rooms/{room}/participants/{id}/move"),
            Some(match role {
                Some(r) => json!({"room": to, "role": r}),
                None => json!({"room": to}),
            }),
        ),
        C::Coach {
            room,
            id,
            target,
            off,
        } => {
            let path = format!("/v1/rooms/{room}/participants/{id}/coach");
            match (off, target) {
                (false, Some(t)) => call(M::POST, path, Some(json!({"target": t}))),
                _ => call(M::DELETE, path, None),
            }
        }
        C::Kick { room, id } => call(
            M::DELETE,
            format!("/v1/rooms/{room}/participants/{id}"),
            None,
        ),
        C::Lock { room } => call(M::POST, format!("/v1/rooms/{room}/lock"), None),
        C::Unlock { room } => call(M::POST, format!("/v1/rooms/{room}/unlock"), None),
        C::Play {
            room,
            file,
            text,
            participant,
            loops,
            level,
        } => {
            let what = if *text { "text" } else { "file" };
            let mut body = json!({what: file, "participant": participant});
            if let Some(l) = loops {
                body["loop"] = json!(l);
            }
            if let Some(l) = level {
                body["level"] = json!(l);
            }
            call(M::POST, format!("/v1/rooms/{room}/play"), Some(body))
        }
        C::StopPlay { room, id } => call(M::DELETE, format!("/v1/rooms/{room}/play/{id}"), None),
        C::Record {
            room,
            participant,
            format,
            rate,
            split,
            max_channels,
        } => call(
            M::POST,
            format!("/v1/rooms/{room}/recordings"),
            Some(json!({
                "participant": participant,
                "format": format,
                "sample_rate": rate,
                "channels": if *split { "split" } else { "mix" },
                "max_channels": max_channels,
            })),
        ),
        C::StopRecording { room, id } => {
            call(M::DELETE, format!("/v1/rooms/{room}/recordings/{id}"), None)
        }
        C::Recordings => call(M::GET, "/v1/recordings".into(), None),
        C::Download { id, .. } => call(M::GET, format!("/v1/recordings/{id}"), None),
        C::Dial {
            room,
            to,
            role,
            caller_id,
            timeout_s,
        } => call(
            M::POST,
            format!("/v1/rooms/{room}/dial"),
            Some(json!({"to": to, "role": role, "caller_id": caller_id, "timeout_s": timeout_s})),
        ),
    }
    .await?;
    let status = resp.status();
    if !status.is_success() {
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        return Err(CtlError::Api {
            status: status.as_u16(),
            error: v["error"].as_str().unwrap_or("error").to_string(),
            detail: v["detail"].as_str().unwrap_or("").to_string(),
        });
    }
    if let C::Download { output, .. } = &args.command {
        let bytes = resp.bytes().await?;
        std::fs::write(output, &bytes)?;
        return Ok(format!(
            "{} bytes written to {}",
            bytes.len(),
            output.display()
        ));
    }
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok("ok".into());
    }
    let v: Value = resp.json().await?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    Ok(match &args.command {
        C::Rooms => rooms_table(&v),
        C::Participants { .. } => participants_table(&v),
        C::Recordings => recordings_table(&v),
        _ => serde_json::to_string_pretty(&v).unwrap_or_default(),
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], cols: &[&str]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| text(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(cols.iter().map(|c| c.to_uppercase()).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

fn rooms_table(v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    table(
        &rows,
        &["name", "participants", "locked", "recording", "started_at"],
    )
}

fn recordings_table(v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    table(
        &rows,
        &[
            "id",
            "room",
            "participant",
            "started_at",
            "duration_ms",
            "size",
            "state",
        ],
    )
}

fn participants_table(v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    table(
        &rows,
        &[
            "id",
            "from",
            "role",
            "state",
            "muted",
            "deaf",
            "talking",
            "joined_at",
        ],
    )
}

/// `s` as one URL path segment (a link's URI holds ':' '@' and maybe '/').
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_room_json() {
        assert_eq!(setting_value("pin", "0123"), Value::from("0123"));
        assert_eq!(setting_value("max_participants", "5"), Value::from(5));
        assert_eq!(setting_value("moderated", "true"), Value::Bool(true));
        assert_eq!(
            setting_value("allowed_sources", "10.0.0.0/8,::1"),
            json!(["10.0.0.0/8", "::1"])
        );
    }

    #[test]
    fn tables_line_up() {
        let v = json!([{"name": "demo", "participants": 3, "locked": false, "recording": [], "started_at": null}]);
        let t = rooms_table(&v);
        assert_eq!(
            t,
            "NAME  PARTICIPANTS  LOCKED  RECORDING  STARTED_AT\ndemo  3             false   -          -"
        );
    }
}
