//! The command line: `check` on good and broken files, `--version`, `--help`.

use std::process::Command;

fn caucus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_caucus"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_shipped_config() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/caucus.toml");
    let out = caucus(&["check", conf]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_names_file_line_and_reason() {
    let dir = std::env::temp_dir();
    for (name, body, line, words) in [
        (
            "unknown-key.toml",
            "[sip]\nlisten = \"127.0.0.1:5060\"\nlisten_tls = 1\n",
            3,
            "listen_tls",
        ),
        (
            "bad-type.toml",
            "[rtp]\nport_min = \"low\"\n",
            2,
            "invalid type",
        ),
        (
            "range.toml",
            "[[room]]\nname = \"a\"\nmax_participants = 0\n",
            3,
            "max_participants",
        ),
        (
            "duplicate.toml",
            "[[room]]\nname = \"a\"\n\n[[room]]\nname = \"a\"\n",
            5,
            "duplicate room",
        ),
        (
            "realtime.toml",
            "[rtp]\nrealtime_priority = 120\n",
            2,
            "realtime_priority must be 0..=99",
        ),
        ("syntax.toml", "[sip\nlisten = 1\n", 1, ""),
    ] {
        let path = dir.join(format!("caucus-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, body).unwrap();
        let out = caucus(&["check", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        let prefix = format!("{}:{line}:", path.display());
        assert!(
            err.starts_with(&prefix),
            "{name}: expected {prefix}…, got {err}"
        );
        assert!(err.contains(words), "{name}: reason lacks {words:?}: {err}");
    }
    let out = caucus(&["check", "/nonexistent/caucus.toml"]);
    assert!(!out.status.success());
}

#[test]
fn version_and_help() {
    let out = caucus(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = caucus(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run") && help.contains("check"), "{help}");
}

/// The README's first command is `cargo run --release -- run`: with two binaries in
/// the package, that needs `default-run` naming the bridge. Read from cargo's own
/// view of the package (`cargo metadata`, no build: a `cargo run` here would build
/// the whole tree again without the dev-dependencies' features, for a minute and a
/// half, to learn the same thing), and the binary it names is the one the tests run.
#[test]
fn cargo_run_picks_the_bridge() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = &meta["packages"][0];
    assert_eq!(
        pkg["default_run"], "caucus",
        "default-run must name the bridge"
    );
    let bridge = pkg["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "caucus" && t["kind"][0] == "bin")
        .expect("a bin target named caucus");
    assert!(
        bridge["src_path"]
            .as_str()
            .unwrap()
            .ends_with("src/main.rs")
    );
    // and that binary is the bridge
    let out = caucus(&["check", "conf/caucus.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_warns_about_addresses_that_will_not_do() {
    let path = std::env::temp_dir().join(format!("caucus-cli-{}-nat.toml", std::process::id()));
    std::fs::write(
        &path,
        "[sip]\nlisten = \"0.0.0.0:5060\"\nadvertise = \"203.0.113.7\"\n",
    )
    .unwrap();
    let out = caucus(&["check", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: [sip] advertise is set but [rtp] advertise is not"),
        "{err}"
    );
    std::fs::write(&path, "[sip]\nadvertise = \"[2001:db8::1\"\n").unwrap();
    let out = caucus(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("advertise must be HOST"));
}
