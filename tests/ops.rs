//! Operating the bridge: health for load balancers (OPTIONS, `/healthz`,
//! `/readyz`) through a drain, the metrics listener without an API token, log
//! formats and levels.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use caucus::sdp::CodecKind;
use caucus::sip::{Message, StartLine};
use common::http::request;
use common::{Bridge, Ua};

const DEMO: &str = "[[room]]\nname = \"demo\"\n";

/// An OPTIONS probe as Kamailio's dispatcher sends it; returns the status and
/// the Retry-After header.
fn options(bridge: SocketAddr, n: u32) -> (u16, Option<String>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = s.local_addr().unwrap();
    let m = format!(
        "OPTIONS sip:{bridge} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n}\r\nMax-Forwards: 70\r\nFrom: <sip:dispatcher@127.0.0.1>;tag=p{n}\r\nTo: <sip:{bridge}>\r\nCall-ID: probe-{n}-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port()
    );
    s.send_to(m.as_bytes(), bridge).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = s.recv_from(&mut buf).expect("an answer to OPTIONS");
    let r = Message::parse(&buf[..len]).unwrap();
    let StartLine::Response { code, .. } = r.start else {
        panic!("not a response")
    };
    (code, r.header("Retry-After").map(str::to_string))
}

#[test]
fn health_and_options_say_503_through_a_drain() {
    let bridge = Bridge::start_with("t1_ms = 100\ndrain_timeout_s = 4\n", DEMO);
    // no API token is configured: the metrics listener serves anyway
    let m = request(bridge.metrics, "GET", "/metrics", None, None);
    assert_eq!(m.status, 200);
    common::http::valid_prometheus(&m.text()).unwrap();
    assert_eq!(
        request(bridge.metrics, "GET", "/healthz", None, None).status,
        200
    );
    assert_eq!(
        request(bridge.metrics, "GET", "/readyz", None, None).status,
        200
    );
    assert_eq!(options(bridge.sip, 1).0, 200);
    // a call keeps the drain going for its 4 s
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "drained");
    assert_eq!(ua.call(""), 200);
    let pid = bridge.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, after) = options(bridge.sip, 2);
    assert_eq!(code, 503, "OPTIONS during the drain");
    assert!(after.is_some(), "503 without Retry-After");
    let ready = request(bridge.metrics, "GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "/readyz during the drain");
    assert!(ready.header("retry-after").is_some());
    assert_eq!(
        request(bridge.metrics, "GET", "/healthz", None, None).status,
        200
    );
    assert!(
        ua.wait_for_bye(8.0).is_some(),
        "no BYE at the end of the drain"
    );
}

fn spawn_with(
    args: &[&str],
    config: &std::path::Path,
    rust_log: &str,
) -> (std::process::Child, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!(
        "caucus-ops-{}-{}.log",
        std::process::id(),
        args.join("_").replace(['-', ' '], "")
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_caucus"))
        .args(args)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    (child, log)
}

/// Wait until `log` holds `what`, or `secs` pass; returns its text.
fn wait_log(log: &std::path::Path, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_log_lines_plain_text_files_and_the_level_flag_wins() {
    // a text log to a file: no escape sequences, whatever RUST_LOG says
    let bridge = Bridge::start(DEMO);
    // a caller whose From URI carries a BEL: its value is logged ("joined")
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "bell");
    let port = ua.rtp.local_addr().unwrap().port();
    let body = common::sdp_offer(port, CodecKind::Pcmu, "");
    let inv = ua
        .request("INVITE", 1, &body, "z9hG4bKbell")
        .replace("From: <sip:ua@", "From: <sip:u\u{7}a@");
    ua.send_raw(inv.as_bytes());
    let ok = ua.final_response(Duration::from_secs(5)).unwrap();
    assert!(matches!(ok.start, StartLine::Response { code: 200, .. }));
    let to = ok.header("To").unwrap();
    ua.to_tag = to.split("tag=").nth(1).unwrap().to_string();
    let ack = ua
        .request("ACK", 1, "", "z9hG4bKbellack")
        .replace("From: <sip:ua@", "From: <sip:u\u{7}a@");
    ua.send_raw(ack.as_bytes());
    ua.cseq = 2;
    assert_eq!(ua.hangup(), 200);
    let text = wait_log(&bridge.log, "leg ended", 5);
    assert!(text.contains("joined"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a log file");
    assert!(
        !text.contains('\u{7}'),
        "a peer's control byte reached the log raw"
    );
    assert!(
        text.contains("\\x07"),
        "the peer's control byte is not shown escaped"
    );
    let config = bridge.config.clone();
    drop(bridge);

    // --log-format json: one JSON object per line, leg/room/call_id as keys
    let (mut child, log) = spawn_with(&["--log-format", "json"], &config, "caucus=info");
    let cfg = std::fs::read_to_string(&config).unwrap();
    let port: u16 = cfg
        .split("listen = \"127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let sip = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = wait_log(&log, "caucus listening", 10);
    assert!(ready.contains("caucus listening"), "{ready}");
    let mut ua = Ua::new(sip, "demo", CodecKind::Pcmu, false, "json");
    assert_eq!(ua.call(""), 200);
    assert_eq!(ua.hangup(), 200);
    let text = wait_log(&log, "leg ended", 5);
    let _ = child.kill();
    let _ = child.wait();
    let mut joined = None;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        if v["message"] == "joined" {
            joined = Some(v);
        }
    }
    let joined = joined.expect("no joined line");
    assert_eq!(joined["room"], "demo");
    assert!(
        joined["leg"].is_string() && joined["call_id"].is_string(),
        "{joined}"
    );

    // --log-level wins over RUST_LOG
    let (mut child, log) = spawn_with(&["--log-level", "info"], &config, "error");
    let text = wait_log(&log, "caucus listening", 10);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("caucus listening"),
        "--log-level lost to RUST_LOG: {text}"
    );
}

#[test]
fn a_reload_applies_token_and_rooms_and_names_what_needs_a_restart() {
    let token_a = "reload-token-aaaaaaaaaaaa";
    let token_b = "reload-token-bbbbbbbbbbbb";
    let api_port = common::free_port();
    let api = SocketAddr::from(([127, 0, 0, 1], api_port));
    let rest = format!("[api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken = \"{token_a}\"\n{DEMO}");
    let bridge = Bridge::start(&rest);
    assert_eq!(
        request(api, "GET", "/v1/rooms", Some(token_a), None).status,
        200
    );
    let cfg = std::fs::read_to_string(&bridge.config).unwrap();
    let changed = cfg
        .replace(token_a, token_b)
        .replace("t1_ms = 100", "t1_ms = 200")
        .replace(
            "[[room]]\nname = \"demo\"\n",
            "[[room]]\nname = \"demo\"\n[[room]]\nname = \"added\"\n",
        );
    std::fs::write(&bridge.config, changed).unwrap();
    let pid = bridge.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let log = wait_log(&bridge.log, "configuration reloaded", 5);
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("needs a restart"))
        .collect();
    assert!(
        warned.iter().any(|l| l.contains("[sip] t1_ms")),
        "the unapplied key is not named: {warned:?}"
    );
    assert!(
        !warned
            .iter()
            .any(|l| l.contains("token") || l.contains("room")),
        "{warned:?}"
    );
    assert_eq!(
        request(api, "GET", "/v1/rooms", Some(token_a), None).status,
        401
    );
    let rooms = request(api, "GET", "/v1/rooms", Some(token_b), None);
    assert_eq!(rooms.status, 200);
    assert!(rooms.text().contains("\"added\""), "{}", rooms.text());
    let mut ua = Ua::new(bridge.sip, "added", CodecKind::Pcmu, false, "added");
    assert_eq!(ua.call(""), 200);
    assert_eq!(ua.hangup(), 200);
}

/// Every `_total` series of a Prometheus text, by its full name with labels.
fn totals(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next().unwrap_or("").ends_with("_total"))
        .filter_map(|(series, v)| Some((series.to_string(), v.parse().ok()?)))
        .collect()
}

#[test]
fn counters_never_fall_when_a_call_ends() {
    let bridge = Bridge::start(DEMO);
    let scrape = || request(bridge.metrics, "GET", "/metrics", None, None).text();
    let a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "mono-a");
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "mono-b");
    let mut a = a;
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    // stream until a worker report (every 5 s) counts the packets
    let before = std::thread::scope(|s| {
        s.spawn(|| common::Stream::new(CodecKind::Pcmu).run(&b, 700.0, Duration::from_secs(6)));
        common::Stream::new(CodecKind::Pcmu).run(&a, 440.0, Duration::from_secs(6));
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let t = scrape();
            let received: f64 = totals(&t)
                .iter()
                .filter(|(k, _)| k.starts_with("caucus_rtp_packets_received_total"))
                .map(|(_, v)| v)
                .sum();
            if received > 100.0 || Instant::now() > deadline {
                return t;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(
        before.contains("# TYPE caucus_rtp_packets_received_total counter"),
        "{before}"
    );
    assert!(before.contains("caucus_build_info{version=\""), "{before}");
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(before.contains(&format!("\n{name} ")), "{name} missing");
    }
    assert!(
        !before.contains("stat=\""),
        "a metric mixes quantities under a label"
    );
    // one call ends; the other goes on until the next report
    assert_eq!(b.hangup(), 200);
    common::Stream::new(CodecKind::Pcmu).run(&a, 440.0, Duration::from_secs(6));
    let after = scrape();
    let (old, new) = (totals(&before), totals(&after));
    let received: f64 = old
        .iter()
        .filter(|(k, _)| k.starts_with("caucus_rtp_packets_received_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(received > 100.0, "no RTP counted before the call ended");
    for (series, v) in &old {
        let now = new.get(series).copied().unwrap_or(0.0);
        assert!(
            now >= *v,
            "{series} fell from {v} to {now} when a call ended"
        );
    }
    assert_eq!(a.hangup(), 200);
}

/// The notify messages systemd would get, read from a socket the test binds.
struct NotifySocket {
    sock: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let path = std::env::temp_dir().join(format!("caucus-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Wait up to `secs` for a message containing `what`; returns it.
    fn wait(&mut self, what: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(m.clone());
                if m.contains(what) {
                    return Some(m);
                }
            }
        }
        None
    }
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let mut ns = NotifySocket::bind();
    let path = ns.path.display().to_string();
    let bridge = Bridge::start_env(
        "t1_ms = 100\ndrain_timeout_s = 30\n",
        DEMO,
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    assert!(
        ns.wait("READY=1", 10).is_some(),
        "no READY=1: {:?}",
        ns.seen
    );
    assert!(
        ns.wait("WATCHDOG=1", 3).is_some(),
        "no WATCHDOG=1: {:?}",
        ns.seen
    );
    // media workers ticking (a call up) keep the pings coming
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "watched");
    assert_eq!(ua.call(""), 200);
    ns.seen.clear();
    assert!(
        ns.wait("WATCHDOG=1", 3).is_some(),
        "no WATCHDOG=1 with a call up"
    );
    let pid = bridge.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let reloading = ns.wait("RELOADING=1", 5).expect("no RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(
        ns.wait("READY=1", 5).is_some(),
        "no READY=1 after the reload"
    );
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let stopping = ns.wait("STOPPING=1", 5).expect("no STOPPING=1");
    // the 30 s drain asks for more than TimeoutStopSec=30 gives
    let usec: u64 = stopping
        .lines()
        .chain(
            ns.wait("EXTEND_TIMEOUT_USEC=", 3)
                .as_deref()
                .unwrap_or("")
                .lines(),
        )
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("no EXTEND_TIMEOUT_USEC");
    assert!(usec > 30_000_000, "the drain is not covered: {usec} µs");
    let _ = std::fs::remove_file(&ns.path);
}

/// The shipped unit, with the binary's path made real, passes systemd's own check.
#[test]
fn the_systemd_unit_verifies() {
    let which = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        which.is_ok(),
        "systemd-analyze not found: run the README's test command (it installs systemd)"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/caucus.service"
    ))
    .unwrap();
    for key in ["Type=notify", "WatchdogSec=", "RestartPreventExitStatus=78"] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
    assert!(
        !unit.contains("Environment=RUST_LOG"),
        "the unit overrides the log level"
    );
    let dir = std::env::temp_dir().join(format!("caucus-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("caucus.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/caucus", env!("CARGO_BIN_EXE_caucus")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    assert!(
        !err.contains("caucus.service"),
        "warnings about the unit: {err}"
    );
}
