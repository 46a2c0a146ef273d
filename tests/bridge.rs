//! End-to-end on loopback against the real binary: three callers with different
//! codecs and transports, each sending its own tone; a Goertzel detector checks that
//! each hears the other two at equal level and not itself.

mod common;

use std::time::Duration;

use caucus::sdp::CodecKind;
use common::{Bridge, Stream, Ua, db, goertzel};

const ROOMS: &str = "[[room]]\nname = \"demo\"\n[[room]]\nname = \"small\"\nmax_participants = 1\n";

type Caller = (CodecKind, bool, f64);

/// Call `room` with each caller (codec, over TCP, tone), stream 3 s, and check
/// that each hears every other caller within 3 dB of one another, clearly, and
/// its own tone at least 30 dB below them.
fn call_and_check(bridge: &Bridge, room: &str, callers: &[Caller]) -> Vec<Ua> {
    let mut uas: Vec<Ua> = callers
        .iter()
        .enumerate()
        .map(|(i, (codec, tcp, _))| Ua::new(bridge.sip, room, *codec, *tcp, &format!("u{i}")))
        .collect();
    for ua in &mut uas {
        assert_eq!(ua.call(""), 200);
    }
    let heard: Vec<Vec<i16>> = std::thread::scope(|s| {
        let handles: Vec<_> = uas
            .iter()
            .zip(callers.iter())
            .map(|(ua, (codec, _, f))| {
                s.spawn(move || {
                    let mut st = Stream::new(*codec);
                    st.run(ua, *f, Duration::from_secs(3));
                    st.heard
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (codec, _, own)) in callers.iter().enumerate() {
        let rate = f64::from(codec.clock_rate());
        let x = &heard[i];
        assert!(
            x.len() as f64 > rate * 2.0,
            "caller {i} heard only {} samples",
            x.len()
        );
        // the last second, after jitter buffers and codecs settled
        let tail = &x[x.len() - rate as usize..];
        let others: Vec<f64> = callers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| db(goertzel(tail, rate, c.2)))
            .collect();
        let own_db = db(goertzel(tail, rate, *own));
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
    for ua in &mut uas {
        assert_eq!(ua.hangup(), 200);
    }
    assert_eq!(bridge.terminate(), Some(0));
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
