//! Robustness over the wire against the real binary: dead legs hung up by the RTP
//! timeout, a peer that never ACKs, SIGTERM drain, SIGHUP and file-change reload
//! (a bad file rejected while calls go on), TCP connection limits, and a flood from
//! one source that does not stop another.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use caucus::sdp::CodecKind;
use caucus::sip::StartLine;
use common::{Bridge, Stream, Ua, free_port};

const DEMO: &str = "[[room]]\nname = \"demo\"\n";

fn kill(bridge: &Bridge, sig: &str) {
    Command::new("kill")
        .args([sig, &bridge.child.id().to_string()])
        .status()
        .unwrap();
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn a_leg_whose_rtp_stops_is_hung_up_within_the_timeout() {
    let bridge = Bridge::start_full("t1_ms = 100\n", "timeout_s = 2\n", DEMO);
    let mut quiet = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "q");
    let mut live = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "l");
    assert_eq!(quiet.call(""), 200);
    assert_eq!(live.call(""), 200);
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&quiet, 440.0, Duration::from_secs(1));
    let stopped = Instant::now();
    // the live one keeps talking (in a thread) while the quiet one waits for its BYE
    let done = std::sync::atomic::AtomicBool::new(false);
    let bye = std::thread::scope(|s| {
        s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                st.run(&live, 700.0, Duration::from_millis(200));
            }
        });
        let at = quiet.wait_for_bye(6.0);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        at
    });
    let after = bye
        .expect("no BYE for the leg that stopped sending")
        .duration_since(stopped);
    assert!(
        after >= Duration::from_millis(1900) && after <= Duration::from_secs(4),
        "BYE {after:?} after the last packet (timeout 2 s)"
    );
    // the talking leg is still up
    assert!(live.wait_for_bye(1.0).is_none(), "live leg was hung up");
    assert_eq!(live.hangup(), 200);
}

#[test]
fn a_peer_that_never_acks_gets_a_bye_at_32s() {
    // default T1 (500 ms): Timer H = 64*T1 = 32 s
    let bridge = Bridge::start_with("", DEMO);
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "noack");
    let port = ua.rtp.local_addr().unwrap().port();
    let body = common::sdp_offer(port, CodecKind::Pcmu, "");
    let inv = ua.request("INVITE", 1, &body, "z9hG4bKnoack1");
    ua.send_raw(inv.as_bytes());
    let sent = Instant::now();
    let mut oks = 0;
    let mut to_tag = String::new();
    let deadline = sent + Duration::from_secs(36);
    let mut bye_at = None;
    while Instant::now() < deadline {
        let Some(m) = ua.recv(Duration::from_millis(200)) else {
            continue;
        };
        match &m.start {
            StartLine::Response { code: 200, .. } => {
                oks += 1;
                to_tag = m.header("To").unwrap().to_string();
            }
            StartLine::Request { .. } if m.method() == Some(&caucus::sip::Method::Bye) => {
                bye_at = Some(sent.elapsed());
                break;
            }
            _ => {}
        }
    }
    let at = bye_at.expect("no BYE without an ACK");
    assert!(
        at >= Duration::from_secs(31) && at <= Duration::from_secs(33),
        "BYE at {at:?}, not 32 ± 1 s"
    );
    assert!(oks >= 5, "2xx retransmitted only {oks} times");
    assert!(to_tag.contains("tag="));
}

#[test]
fn sigterm_drains_new_calls_503_prompt_then_bye_and_exit_0() {
    let bridge = Bridge::start_with("t1_ms = 100\ndrain_timeout_s = 2\n", DEMO);
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "dr");
    assert_eq!(a.call(""), 200);
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&a, 440.0, Duration::from_millis(500));
    kill(&bridge, "-TERM");
    let began = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let mut late = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "late");
    assert_eq!(late.call(""), 503, "new call during drain");
    // the running call hears "the conference has ended" (the room is otherwise silent)
    let before = st.heard.len();
    st.run(&a, 0.0, Duration::from_millis(1200));
    let heard = &st.heard[before..];
    assert!(
        rms(heard) > 200.0,
        "no prompt during the drain (rms {:.0})",
        rms(heard)
    );
    let bye = a.wait_for_bye(3.0).expect("no BYE at the drain timeout");
    let after = bye.duration_since(began);
    assert!(
        after >= Duration::from_millis(1800) && after <= Duration::from_millis(3500),
        "BYE {after:?} after SIGTERM (drain 2 s)"
    );
    let mut bridge = bridge;
    let deadline = Instant::now() + Duration::from_secs(8);
    let code = loop {
        if let Some(st) = bridge.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "bridge did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn reload_by_sighup_and_by_file_change_keeps_calls_and_rejects_a_bad_file() {
    let bridge = Bridge::start(DEMO);
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "h1");
    assert_eq!(a.call(""), 200);
    let good = std::fs::read_to_string(&bridge.config).unwrap();
    // a broken file on SIGHUP: rejected with its place, the call goes on
    std::fs::write(
        &bridge.config,
        format!("{good}\n[[room]]\nname = \"x\"\nbogus = 1\n"),
    )
    .unwrap();
    kill(&bridge, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bridge.log_text().contains("reload rejected") {
        assert!(Instant::now() < deadline, "bad file not reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = bridge.log_text();
    let line = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(line.contains(".toml:") && line.contains("bogus"), "{line}");
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&a, 440.0, Duration::from_millis(300));
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "h2");
    assert_eq!(b.call(""), 200, "running config lost");
    // a good file with a new room, picked up by watching the file (no signal)
    std::fs::write(
        &bridge.config,
        format!("{good}\n[[room]]\nname = \"fresh\"\n"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let mut c = Ua::new(bridge.sip, "fresh", CodecKind::Pcmu, false, "h3");
        if c.call("") == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new room not picked up from the changed file"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(a.hangup(), 200, "call from before the reloads is gone");
    assert_eq!(b.hangup(), 200);
}

#[test]
fn tcp_connections_are_capped_per_source_and_idle_ones_closed() {
    let bridge = Bridge::start_with(
        "t1_ms = 100\ntcp_max_per_source = 3\ntcp_first_message_s = 1\n",
        DEMO,
    );
    let open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(bridge.sip).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // the fourth from the same address is closed at once
    let mut extra = TcpStream::connect(bridge.sip).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 16];
    assert_eq!(
        extra.read(&mut b).unwrap_or(0),
        0,
        "excess connection not closed"
    );
    // the silent ones are closed after the first-message deadline
    for mut s in open {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let started = Instant::now();
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
        assert!(
            started.elapsed() < Duration::from_millis(2900),
            "idle connection kept"
        );
    }
    // and the slots are free again
    let mut ua = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, true, "tcp1");
    assert_eq!(ua.call(""), 200);
    assert_eq!(ua.hangup(), 200);
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_invite_flood_from_one_source_leaves_another_source_working() {
    // The flooder's calls are valid calls to a real room: the ceiling (100 new
    // requests per 2 s) bounds how many it starts, and so how many RTP ports it
    // can hold of a range sized for a real deployment.
    let bridge = Bridge::start_full(
        "t1_ms = 100\n",
        "port_min = 18000\nport_max = 18999\n",
        "[security]\nflood_requests = 100\nflood_window_s = 2\nflood_ban_s = 300\n[[room]]\nname = \"demo\"\nmax_participants = 10000\n",
    );
    let dir = std::env::temp_dir().join(format!("caucus-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let target = bridge.sip.to_string();
    let flood_port = free_port();
    let good_port = free_port();
    // the flooder: stock uac as fast as SIPp goes, from 127.0.0.2
    let mut flooder = Command::new("sipp")
        .current_dir(&dir)
        .args([
            &target,
            "-sn",
            "uac",
            "-s",
            "demo",
            "-i",
            "127.0.0.2",
            "-p",
            &flood_port.to_string(),
            "-r",
            "5000",
            "-l",
            "20000",
            "-m",
            "100000",
            "-timeout",
            "25s",
            "-recv_timeout",
            "2000",
            "-nostdin",
            "-bg",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    let _ = flooder.wait();
    std::thread::sleep(Duration::from_secs(1));
    // the good source: 200 calls at 10/s from 127.0.0.3
    let good = Command::new("sipp")
        .current_dir(&dir)
        .args([
            &target,
            "-sn",
            "uac",
            "-s",
            "demo",
            "-i",
            "127.0.0.3",
            "-p",
            &good_port.to_string(),
            "-r",
            "10",
            "-m",
            "200",
            "-d",
            "500",
            "-timeout",
            "60s",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
            "-stf",
            "good.csv",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let rss = vm_rss_kib(bridge.child.id());
    let _ = Command::new("pkill")
        .args(["-f", "--", &format!("-p {flood_port} ")])
        .status();
    let ok = common::sipp_stat(&dir.join("good.csv"), "SuccessfulCall(C)");
    let failed = common::sipp_stat(&dir.join("good.csv"), "FailedCall(C)");
    eprintln!("good source: {ok} ok, {failed} failed; bridge RSS {rss} KiB; sipp exit {good:?}");
    assert!(
        ok >= 198,
        "only {ok} of 200 calls from the good source completed"
    );
    assert!(rss < 256 * 1024, "bridge memory {rss} KiB under the flood");
    assert!(
        bridge
            .log_text()
            .contains("flood: source over its request limit")
    );
}

#[test]
fn unknown_rooms_look_like_pin_rooms_to_a_scanner() {
    let bridge = Bridge::start(
        "[security]\ntrusted_sources = [\"127.0.0.0/8\"]\nhide_rooms = true\n[[room]]\nname = \"secret\"\npin = \"4321\"\n",
    );
    // INVITE, the responses up to the 200 (codes and header names), ACK, then a
    // second of what the caller hears
    let probe = |room: &str, name: &str| {
        let mut ua = Ua::new(bridge.sip, room, CodecKind::Pcmu, false, name);
        let port = ua.rtp.local_addr().unwrap().port();
        let body = common::sdp_offer(port, CodecKind::Pcmu, "");
        let inv = ua.request("INVITE", 1, &body, &format!("z9hG4bK{name}inv"));
        ua.send_raw(inv.as_bytes());
        let mut codes = Vec::new();
        let mut names: Vec<String> = Vec::new();
        while let Some(m) = ua.recv(Duration::from_secs(2)) {
            let StartLine::Response { code, .. } = m.start else {
                continue;
            };
            codes.push(code);
            if code >= 200 {
                if code == 200 {
                    names = m
                        .headers
                        .iter()
                        .map(|(n, _)| n.to_ascii_lowercase())
                        .collect();
                    let to = m.header("To").unwrap();
                    ua.to_tag = to.split("tag=").nth(1).unwrap().to_string();
                    let sd = caucus::sdp::SessionDescription::parse(&m.body).unwrap();
                    let (_, p) = caucus::sdp::select_audio(&sd, || None).unwrap();
                    ua.pt = p.pt;
                    ua.remote_rtp = Some(std::net::SocketAddr::new(
                        p.remote_ip.unwrap(),
                        p.remote_port,
                    ));
                    let ack = ua.request("ACK", 1, "", &format!("z9hG4bK{name}ack"));
                    ua.send_raw(ack.as_bytes());
                }
                break;
            }
        }
        let mut st = Stream::new(CodecKind::Pcmu);
        if ua.remote_rtp.is_some() {
            st.run(&ua, 0.0, Duration::from_millis(1500));
        }
        (codes, names, rms(&st.heard))
    };
    let (real_codes, real_names, real_rms) = probe("secret", "s1");
    let (fake_codes, fake_names, fake_rms) = probe("nosuchroom", "s2");
    assert_eq!(real_codes.last(), Some(&200));
    assert_eq!(real_codes, fake_codes, "status sequences differ");
    assert_eq!(real_names, fake_names, "200 headers differ");
    assert!(
        real_rms > 200.0 && fake_rms > 200.0,
        "no PIN prompt: {real_rms:.0} / {fake_rms:.0}"
    );
    // the decoy is not listed as a room anywhere
    assert!(!bridge.log_text().contains("nosuchroom\" started"));
}

#[test]
fn a_bad_content_length_on_tcp_gets_400_and_the_connection_closes() {
    let bridge = Bridge::start(DEMO);
    for cl in ["-5", "99999999"] {
        let mut s = TcpStream::connect(bridge.sip).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let local = s.local_addr().unwrap();
        let msg = format!(
            "INVITE sip:demo@{} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKcl{}\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:demo@127.0.0.1>\r\nCall-ID: cl-{cl}\r\nCSeq: 1 INVITE\r\nContent-Length: {cl}\r\n\r\n",
            bridge.sip,
            cl.len()
        );
        std::io::Write::write_all(&mut s, msg.as_bytes()).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("SIP/2.0 400"),
            "Content-Length {cl}: {text:?}"
        );
    }
}
