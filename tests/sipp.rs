//! The shipped SIPp scenarios (and SIPp's stock `uac`/`uac_pcap`) against the real
//! binary on loopback. SIPp is Debian's `sip-tester`; the test command installs it.
//! Set CAUCUS_SKIP_SIPP=1 to skip these where SIPp cannot be installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Bridge, free_port};

const ROOMS: &str = "[[room]]\nname = \"demo\"\n[[room]]\nname = \"ringing\"\nanswer_after_ms = 5000\n\
[[room]]\nname = \"secret\"\npin = \"1234\"\npin_timeout_s = 5\n";

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp-scenarios")
}

fn have_sipp() -> bool {
    if std::env::var_os("CAUCUS_SKIP_SIPP").is_some() {
        eprintln!("CAUCUS_SKIP_SIPP set: skipping");
        return false;
    }
    let found = Command::new("sipp").arg("-v").output().is_ok();
    assert!(
        found,
        "sipp not found: run the README's test command (it installs sip-tester) or set CAUCUS_SKIP_SIPP=1"
    );
    true
}

/// Run sipp; `scenario` is `-sf FILE` or `-sn NAME`. Returns (exit code, stderr tail).
fn sipp(
    bridge: &Bridge,
    scenario: &[&str],
    service: &str,
    extra: &[&str],
    cwd: &Path,
) -> (i32, String) {
    let local = free_port().to_string();
    let media = free_port().to_string();
    let err_file = std::env::temp_dir().join(format!("sipp-err-{local}.log"));
    let out = Command::new("sipp")
        .current_dir(cwd)
        .arg(bridge.sip.to_string())
        .args(scenario)
        .args([
            "-s",
            service,
            "-i",
            "127.0.0.1",
            "-p",
            &local,
            "-mi",
            "127.0.0.1",
            "-mp",
            &media,
        ])
        .args([
            "-nostdin",
            "-timeout",
            "90s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
        ])
        .arg(&err_file)
        .args(extra)
        .output()
        .expect("running sipp");
    let errors = std::fs::read_to_string(&err_file).unwrap_or_default();
    let tail: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.code().unwrap_or(-1), format!("{errors}\n{tail}"))
}

fn shipped(name: &str) -> String {
    scenarios().join(name).display().to_string()
}

#[test]
fn shipped_scenarios_pass() {
    if !have_sipp() {
        return;
    }
    let bridge = Bridge::start(ROOMS);
    let dir = scenarios();
    for (file, service, extra) in [
        ("options.xml", "anything", vec!["-m", "1"]),
        ("uac_tone.xml", "demo", vec!["-m", "2", "-l", "2"]),
        ("uac_tone.xml", "demo", vec!["-m", "1", "-t", "t1"]),
        ("cancel.xml", "ringing", vec!["-m", "1"]),
        ("reinvite_hold.xml", "demo", vec!["-m", "1"]),
        ("pin_ok.xml", "secret", vec!["-m", "1"]),
        ("pin_wrong.xml", "secret", vec!["-m", "1"]),
    ] {
        let (code, log) = sipp(&bridge, &["-sf", &shipped(file)], service, &extra, &dir);
        assert_eq!(code, 0, "{file} {extra:?} failed:\n{log}");
        if file == "pin_ok.xml" {
            // the call stayed up; make sure it was because the PIN was taken
            let accepted = bridge.log_text().matches("PIN accepted").count();
            assert_eq!(accepted, 1, "SIPp's digits were not recognised");
        }
    }
    assert_eq!(bridge.log_text().matches("wrong PIN").count(), 3);
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn stock_uac_200_calls_at_20_per_second() {
    if !have_sipp() {
        return;
    }
    let bridge = Bridge::start(ROOMS);
    let (code, log) = sipp(
        &bridge,
        &["-sn", "uac"],
        "demo",
        &["-m", "200", "-r", "20"],
        &scenarios(),
    );
    assert_eq!(code, 0, "stock uac load failed:\n{log}");
    assert_eq!(bridge.terminate(), Some(0));
}

/// SIPp's stock `uac` from one address against a config written from the README's
/// key table, with no `[security]` section: flood control at its defaults must not
/// refuse a PBX's call rate.
#[test]
fn stock_uac_at_20_and_50_calls_per_second_with_default_flood_control() {
    if !have_sipp() {
        return;
    }
    let bridge = Bridge::start_untrusted(
        "port_min = 17000\nport_max = 17999\n",
        "[[room]]\nname = \"demo\"\nmax_participants = 1000\n",
    );
    for (rate, calls, pause_ms) in [("20", "200", "0"), ("50", "300", "5000")] {
        let (code, log) = sipp(
            &bridge,
            &["-sn", "uac"],
            "demo",
            &["-m", calls, "-r", rate, "-d", pause_ms],
            &scenarios(),
        );
        assert_eq!(code, 0, "stock uac at {rate}/s failed:\n{log}");
    }
    let log = bridge.log_text();
    assert!(!log.contains("banned"), "the PBX was banned");
    assert!(!log.contains("over its request limit"));
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn stock_uac_pcap_calls_complete() {
    if !have_sipp() {
        return;
    }
    let pcaps = Path::new("/usr/share/sip-tester");
    assert!(
        pcaps.join("g711a.pcap").exists(),
        "sip-tester pcaps missing"
    );
    // the stock scenario looks for pcap/g711a.pcap relative to its working directory
    let dir = std::env::temp_dir().join(format!("caucus-uac-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("pcap");
    if !link.exists() {
        std::os::unix::fs::symlink(pcaps, &link).unwrap();
    }
    let bridge = Bridge::start(ROOMS);
    let (code, log) = sipp(
        &bridge,
        &["-sn", "uac_pcap"],
        "demo",
        &["-m", "2", "-l", "2"],
        &dir,
    );
    assert_eq!(code, 0, "stock uac_pcap failed:\n{log}");
    assert_eq!(bridge.terminate(), Some(0));
}

/// A SIPp caller streaming its 440 Hz tone is heard by another caller in the room.
#[test]
fn sipp_audio_is_mixed_to_other_callers() {
    if !have_sipp() {
        return;
    }
    use caucus::sdp::CodecKind;
    use common::{Stream, Ua, db, goertzel};
    use std::time::Duration;
    let bridge = Bridge::start(ROOMS);
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "listener");
    assert_eq!(ua.call(""), 200);
    let heard = std::thread::scope(|s| {
        let listener = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(&ua, 2000.0, Duration::from_secs(5));
            st.heard
        });
        let (code, log) = sipp(
            &bridge,
            &["-sf", &shipped("uac_tone.xml")],
            "demo",
            &["-m", "1"],
            &scenarios(),
        );
        assert_eq!(code, 0, "{log}");
        listener.join().unwrap()
    });
    // the SIPp call streams for 3 s somewhere inside the listener's 5 s
    let best = heard
        .chunks(8000)
        .map(|sec| db(goertzel(sec, 8000.0, 440.0)) - db(goertzel(sec, 8000.0, 2000.0)))
        .fold(f64::MIN, f64::max);
    assert!(
        best > 30.0,
        "440 Hz from SIPp not heard: best {best:.1} dB over own-tone leak"
    );
    let best_level = heard
        .chunks(8000)
        .map(|sec| db(goertzel(sec, 8000.0, 440.0)))
        .fold(f64::MIN, f64::max);
    assert!(best_level > 50.0, "440 Hz too quiet: {best_level:.1} dB");
    assert_eq!(ua.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}
