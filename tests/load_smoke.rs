//! The load benchmark runs end to end in a small quick mode: calls are set up, media
//! flows, the probe leg hears the talkers and not itself. No timing is asserted: CI
//! machines are noisy, the figures belong in benches/PERFORMANCE.md.

use std::process::Command;

/// Run `caucus-load` with `args` against the test build of the bridge; returns its
/// JSON report, after checking that it exited 0.
fn load(name: &str, args: &[&str]) -> String {
    let json = std::env::temp_dir().join(format!("caucus-load-{name}-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_caucus-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .args(["--bridge", env!("CARGO_BIN_EXE_caucus")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&json).unwrap()
}

#[test]
fn load_tool_quick_mode_works() {
    let report = load(
        "quick",
        &[
            "--quick",
            "--participants",
            "60",
            "--hold",
            "3",
            "--shape",
            "all",
        ],
    );
    assert_eq!(
        report.matches("\"setup_failures\":0,").count(),
        3,
        "{report}"
    );
    assert_eq!(report.matches("\"probe_ok\":true").count(), 3, "{report}");
    for shape in ["1x60", "12x5", "2x50"] {
        assert!(
            report.contains(&format!("\"shape\":\"{shape}\"")),
            "{report}"
        );
    }
}

/// The ramp mode sets calls up while the others stream (overload control on);
/// at this size nothing is refused and the probe hears the room.
#[test]
fn load_tool_ramp_mode_works() {
    let report = load(
        "ramp",
        &[
            "--participants",
            "50",
            "--shape",
            "fifty",
            "--hold",
            "2",
            "--ramp",
            "50",
        ],
    );
    assert!(
        report.contains("\"setup_failures\":0,\"refused\":0,"),
        "{report}"
    );
    assert!(report.contains("\"probe_ok\":true"), "{report}");
}
