//! Configuration reload (SIGHUP, or the file changed on disk). What can change
//! under running calls is applied: rooms, flood control (`[security]`), the menu,
//! dial-out and trunks, and the API token. Every other changed key is named in a
//! warning and keeps its running value until a restart, so the log never says
//! "reloaded" about a listen address that did not move.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::core::Core;

/// Keys (or key prefixes) that a reload applies.
const APPLIES: [&str; 7] = [
    "room",
    "security.",
    "menu.",
    "dialout.",
    "trunk",
    "api.token",
    "api.token_file",
];

/// `section.key` paths of every value, tables flattened, arrays of tables
/// (`[[room]]`, `[[trunk]]`) kept whole.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn values(cfg: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        flatten("", &v, &mut out);
    }
    out
}

/// Keys whose effective value (defaults applied) differs between two configs.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (values(old), values(new));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn applies(key: &str) -> bool {
    APPLIES
        .iter()
        .any(|p| key == p.trim_end_matches('.') || key.starts_with(p) && p.ends_with('.'))
}

/// `sip.listen` as the file spells it: `[sip] listen`.
fn spelled(key: &str) -> String {
    match key.split_once('.') {
        Some((section, rest)) => format!("[{section}] {rest}"),
        None => key.to_string(),
    }
}

/// Reload `path` over `running` (the configuration in effect, updated here);
/// `music` is the music files loaded at start, in load order. A rejected file is
/// logged and changes nothing.
pub(super) fn reload(
    core: &mut Core,
    running: &mut Config,
    music: &[PathBuf],
    path: Option<&PathBuf>,
    http: &super::http::Http,
) {
    let Some(path) = path else {
        tracing::info!("reload: running on the embedded config, nothing to reload");
        return;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; keeping the running configuration");
            return;
        }
    };
    let changed = changed_keys(running, &new);
    let mut kept = Vec::new();
    for key in changed.iter().filter(|k| !applies(k)) {
        tracing::warn!(key = %spelled(key), "reload: this key changed but needs a restart; the running value is kept");
        kept.push(key.clone());
    }
    let mut token_changed = false;
    if changed.iter().any(|k| k.starts_with("api.token")) {
        match super::http::api_token(&new) {
            Ok(t) => {
                http.token.set(t);
                token_changed = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: the new API token cannot be used; the old one stays")
            }
        }
    }
    let music: Vec<&Path> = music.iter().map(PathBuf::as_path).collect();
    for r in &new.rooms {
        if let Some(f) = r.music_on_hold.as_deref()
            && !music.contains(&f)
        {
            tracing::warn!(room = %r.name, file = %f.display(), "reload: a new music_on_hold file needs a restart; the room plays the default music until then");
        }
    }
    core.reconfigure(new.core_using(&music));
    running.rooms = new.rooms.clone();
    running.security = new.security.clone();
    running.menu = new.menu.clone();
    running.dialout = new.dialout.clone();
    running.trunks = new.trunks.clone();
    if token_changed {
        running.api.token = new.api.token.clone();
        running.api.token_file = new.api.token_file.clone();
    }
    let applied: Vec<String> = changed
        .iter()
        .filter(|k| applies(k) && (token_changed || !k.starts_with("api.")))
        .map(|k| spelled(k))
        .collect();
    tracing::info!(
        rooms = new.rooms.len(),
        applied = %applied.join(", "),
        needs_restart = kept.len(),
        "configuration reloaded; running calls keep going"
    );
}

/// The file's modification time (and size), to notice edits.
pub fn modified(path: Option<&PathBuf>) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path?).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_and_sorted_by_what_applies() {
        let old = Config::parse(
            "[sip]\nlisten = \"127.0.0.1:5060\"\n[[room]]\nname = \"a\"\n[api]\ntoken = \"0123456789abcdef0\"\n",
            "a.toml",
        )
        .unwrap();
        let new = Config::parse(
            "[sip]\nlisten = \"127.0.0.1:5070\"\nt1_ms = 500\n[rtp]\nport_min = 30000\nport_max = 30999\n[[room]]\nname = \"b\"\n[security]\nfail_limit = 5\n[api]\ntoken = \"0123456789abcdef1\"\n",
            "b.toml",
        )
        .unwrap();
        let keys = changed_keys(&old, &new);
        // t1_ms = 500 is the default: not a change
        assert_eq!(
            keys,
            vec![
                "api.token",
                "room",
                "rtp.port_max",
                "rtp.port_min",
                "security.fail_limit",
                "sip.listen"
            ]
        );
        let kept: Vec<String> = keys
            .iter()
            .filter(|k| !applies(k))
            .map(|k| spelled(k))
            .collect();
        assert_eq!(
            kept,
            vec!["[rtp] port_max", "[rtp] port_min", "[sip] listen"]
        );
        // secrets are compared by digest: the token itself is in no value
        let text = format!("{:?}", values(&new));
        assert!(!text.contains("0123456789abcdef1"));
    }
}
