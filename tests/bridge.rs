//! End-to-end on loopback against the real binary: three callers with different
//! codecs and transports, each sending its own tone; a Goertzel detector checks that
//! each hears the other two at equal level and not itself.

mod common;

use std::time::Duration;

use caucus::sdp::CodecKind;
use common::{Bridge, Ua, db, goertzel};

const ROOMS: &str = "[[room]]\nname = \"demo\"\n[[room]]\nname = \"small\"\nmax_participants = 1\n";

type Caller = (CodecKind, bool, f64);

/// Call `room` with each caller (codec, over TCP, tone) and stream 3 s; the
/// callers and what each heard, at its codec's sampling rate.
fn talk(bridge: &Bridge, room: &str, callers: &[Caller]) -> (Vec<Ua>, Vec<Vec<i16>>) {
    let mut uas: Vec<Ua> = callers
        .iter()
        .enumerate()
        .map(|(i, (codec, tcp, _))| Ua::new(bridge.sip, room, *codec, *tcp, &format!("u{i}")))
        .collect();
    for ua in &mut uas {
        assert_eq!(ua.call(""), 200);
    }
    let parts: Vec<(&Ua, f64)> = uas.iter().zip(callers).map(|(ua, c)| (ua, c.2)).collect();
    let heard = common::converse(&parts, Duration::from_secs(3));
    for (i, (x, (codec, _, _))) in heard.iter().zip(callers).enumerate() {
        let rate = f64::from(codec.sample_rate());
        assert!(
            x.len() as f64 > rate * 2.0,
            "caller {i} heard only {} samples",
            x.len()
        );
    }
    (uas, heard)
}

/// Every caller hangs up (answered 200), then the bridge stops cleanly.
fn hang_up_all(uas: &mut [Ua], bridge: Bridge) {
    for ua in uas {
        assert_eq!(ua.hangup(), 200);
    }
    assert_eq!(bridge.terminate(), Some(0));
}

/// The level (dB) of `freq` in the last second of `x`: the loudest of its
/// three thirds, so that one packet lost or late on a loaded machine does not
/// count against the tone.
fn level(x: &[i16], codec: CodecKind, freq: f64) -> f64 {
    let rate = codec.sample_rate() as usize;
    let tail = &x[x.len() - rate..];
    tail.chunks(rate / 3)
        .filter(|w| w.len() >= rate / 4)
        .map(|w| db(goertzel(w, rate as f64, freq)))
        .fold(f64::MIN, f64::max)
}

/// Call `room` with each caller (codec, over TCP, tone), stream 3 s, and check
/// that each hears every other caller within 3 dB of one another, clearly, and
/// its own tone at least 30 dB below them.
fn call_and_check(bridge: &Bridge, room: &str, callers: &[Caller]) -> Vec<Ua> {
    let (uas, heard) = talk(bridge, room, callers);
    for (i, (codec, _, own)) in callers.iter().enumerate() {
        let x = &heard[i];
        let others: Vec<f64> = callers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| level(x, *codec, c.2))
            .collect();
        let own_db = level(x, *codec, *own);
        eprintln!("caller {i} ({codec:?}): others {others:?} dB, own {own_db:.1} dB");
        let loudest = others.iter().copied().fold(f64::MIN, f64::max);
        let weakest = others.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            loudest - weakest <= 3.0,
            "caller {i}: others not within 3 dB: {others:?}"
        );
        assert!(
            weakest - own_db >= 30.0,
            "caller {i}: own tone only {:.1} dB down",
            weakest - own_db
        );
        assert!(weakest > 40.0, "caller {i}: others too quiet: {others:?}");
    }
    uas
}

/// G.722 and G.711 only: the room mixes at 16 kHz, so one G.722 caller hears
/// the other's 6 kHz tone, which a G.711 caller cannot (its band ends at 4 kHz),
/// though it hears the same caller's 1 kHz.
#[test]
fn g722_callers_share_a_16k_room_with_g711() {
    let bridge = Bridge::start(ROOMS);
    let callers = [
        (CodecKind::G722, false, 6000.0),
        (CodecKind::G722, true, 1000.0),
        (CodecKind::Pcmu, false, 440.0),
    ];
    let (mut uas, heard) = talk(&bridge, "demo", &callers);
    let g722 = |i: usize, f: f64| level(&heard[i], CodecKind::G722, f);
    let pcmu = |f: f64| level(&heard[2], CodecKind::Pcmu, f);
    eprintln!(
        "G.722 a: 1k {:.1} 440 {:.1} own {:.1}; G.722 b: 6k {:.1} 440 {:.1}; PCMU: 1k {:.1} 2k {:.1}",
        g722(0, 1000.0),
        g722(0, 440.0),
        g722(0, 6000.0),
        g722(1, 6000.0),
        g722(1, 440.0),
        pcmu(1000.0),
        pcmu(2000.0)
    );
    assert!(g722(0, 1000.0) > 40.0 && g722(0, 440.0) > 40.0);
    assert!(g722(0, 6000.0) < 20.0, "a G.722 caller hears itself");
    assert!(g722(1, 6000.0) > 40.0, "6 kHz did not cross the room");
    assert!(g722(1, 440.0) > 40.0);
    assert!(pcmu(1000.0) > 40.0, "the G.711 caller does not hear G.722");
    // 6 kHz folded into an 8 kHz band would sound at 2 kHz
    assert!(
        pcmu(2000.0) < 30.0,
        "6 kHz folded back: {:.1} dB",
        pcmu(2000.0)
    );
    hang_up_all(&mut uas, bridge);
}

/// With an Opus caller the room mixes at 48 kHz: the G.722 caller's 6 kHz
/// reaches it, and is absent for the PCMU caller only for its band (it hears
/// the Opus caller).
#[test]
fn a_g722_callers_6k_reaches_opus_not_pcmu() {
    let bridge = Bridge::start(ROOMS);
    let callers = [
        (CodecKind::G722, false, 6000.0),
        (CodecKind::Opus, false, 1100.0),
        (CodecKind::Pcmu, false, 440.0),
    ];
    let (mut uas, heard) = talk(&bridge, "demo", &callers);
    let opus = |f: f64| level(&heard[1], CodecKind::Opus, f);
    let g722 = |f: f64| level(&heard[0], CodecKind::G722, f);
    let pcmu = |f: f64| level(&heard[2], CodecKind::Pcmu, f);
    eprintln!(
        "Opus: 6k {:.1} 440 {:.1}; G.722: 1.1k {:.1} 440 {:.1}; PCMU: 1.1k {:.1} 2k {:.1}",
        opus(6000.0),
        opus(440.0),
        g722(1100.0),
        g722(440.0),
        pcmu(1100.0),
        pcmu(2000.0)
    );
    assert!(opus(6000.0) > 40.0, "6 kHz did not reach the Opus caller");
    assert!(opus(440.0) > 40.0);
    assert!(g722(1100.0) > 40.0 && g722(440.0) > 40.0);
    assert!(pcmu(1100.0) > 40.0);
    assert!(
        pcmu(2000.0) < 30.0,
        "6 kHz folded back: {:.1} dB",
        pcmu(2000.0)
    );
    hang_up_all(&mut uas, bridge);
}

#[test]
fn three_codecs_hear_each_other_not_themselves() {
    let bridge = Bridge::start(ROOMS);
    let callers = [
        (CodecKind::Pcmu, false, 440.0),
        (CodecKind::Pcma, false, 700.0),
        (CodecKind::Opus, true, 1100.0),
    ];
    let mut uas = call_and_check(&bridge, "demo", &callers);
    let rtp_ports: Vec<u16> = uas.iter().map(|u| u.remote_rtp.unwrap().port()).collect();
    for ua in &mut uas {
        assert_eq!(ua.hangup(), 200);
    }
    // ports are freed: we can bind them ourselves once the media worker has let go
    for p in rtp_ports {
        let mut ok = false;
        for _ in 0..50 {
            if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ok, "RTP port {p} still bound after hang-up");
    }
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn full_room_and_unknown_room_are_refused() {
    let bridge = Bridge::start(ROOMS);
    let mut a = Ua::new(bridge.sip, "small", CodecKind::Pcmu, false, "a");
    assert_eq!(a.call(""), 200);
    let mut b = Ua::new(bridge.sip, "small", CodecKind::Pcmu, false, "b");
    assert_eq!(b.call(""), 486);
    let mut c = Ua::new(bridge.sip, "nosuch", CodecKind::Pcmu, true, "c");
    assert_eq!(c.call(""), 404);
    assert_eq!(a.hangup(), 200);
    // after the first caller left, the room takes a new one
    let mut d = Ua::new(bridge.sip, "small", CodecKind::Pcma, false, "d");
    assert_eq!(d.call(""), 200);
    drop(d);
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn sigterm_sends_bye_to_every_leg() {
    let bridge = Bridge::start(ROOMS);
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "a");
    assert_eq!(a.call(""), 200);
    let pid = bridge.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let bye = loop {
        let m = a.recv(Duration::from_secs(5)).expect("BYE on shutdown");
        if m.method().is_some() {
            break m;
        }
    };
    assert_eq!(bye.method(), Some(&caucus::sip::Method::Bye));
    // answer it so the bridge can finish its drain
    let via = bye.header("Via").unwrap();
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.header("From").unwrap(),
        bye.header("To").unwrap(),
        bye.header("Call-ID").unwrap(),
        bye.header("CSeq").unwrap()
    );
    a.send_raw(resp.as_bytes());
    assert_eq!(bridge.terminate(), Some(0));
}

/// A room grown past `shard_at` legs spreads over both workers; callers on
/// different workers hear each other (an Opus caller on one, so the shards mix at
/// different rates) and nobody hears themselves.
#[test]
fn a_room_spread_over_workers_is_one_room() {
    let bridge = Bridge::start_full("", "shard_at = 2\n", ROOMS);
    let callers = [
        (CodecKind::Pcmu, false, 440.0),
        (CodecKind::Pcma, false, 700.0),
        (CodecKind::Opus, true, 1100.0),
        (CodecKind::Pcmu, false, 1500.0),
    ];
    let mut uas = call_and_check(&bridge, "demo", &callers);
    assert!(bridge.log_text().contains("room spans media workers"));
    hang_up_all(&mut uas, bridge);
}

/// (policy, rt_priority) of each `media-N` thread of the bridge, from
/// /proc/PID/task/TID/stat (fields 41 and 40; 1 is SCHED_FIFO).
fn media_threads(pid: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = comm.trim();
        if !name.starts_with("media-") || name == "media-events" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // the fields after the command name, which is in parentheses
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // rest[0] is field 3 (state)
        out.push((
            rest[40 - 3 + 1].parse().unwrap(),
            rest[40 - 3].parse().unwrap(),
        ));
    }
    out
}

#[test]
fn media_workers_run_realtime_when_allowed() {
    let bridge = Bridge::start_full("", "realtime_priority = 7\n", ROOMS);
    std::thread::sleep(Duration::from_millis(300));
    let threads = media_threads(bridge.child.id());
    assert_eq!(threads.len(), 2, "two media workers: {threads:?}");
    if rustix::process::geteuid().is_root() {
        assert!(
            threads.iter().all(|&t| t == (1, 7)),
            "media workers not SCHED_FIFO 7: {threads:?}"
        );
    } else {
        // without the right the bridge says so and runs on
        assert!(bridge.log_text().contains("could not take SCHED_FIFO"));
    }
    let plain = Bridge::start_full("", "realtime_priority = 0\n", ROOMS);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        media_threads(plain.child.id()).iter().all(|&t| t == (0, 0)),
        "realtime_priority = 0 must leave ordinary scheduling"
    );
}
