//! The control API against the real binary on loopback: authentication, rooms and
//! participants, mute / deaf / kick judged on the audio each caller hears, play,
//! recording (the file analysed for the callers' tones), run-time rooms, metrics
//! and the event webhook (signed, in order, surviving a receiver that is down).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use caucus::sdp::CodecKind;
use caucus::sip::Method;
use common::http::{self, Receiver, request, signed, valid_prometheus};
use common::{Bridge, Stream, Ua, db, free_port, goertzel};

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "hook-secret-0123456789";

struct Rig {
    bridge: Bridge,
    api: SocketAddr,
    dir: std::path::PathBuf,
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("caucus-api-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rig(name: &str, events_url: &str, rooms: &str) -> Rig {
    let port = free_port();
    let dir = tmpdir(name);
    let cfg = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\nplay_dir = \"{play}\"\n\
         [events]\nurl = \"{events_url}\"\nsecret = \"{SECRET}\"\n\
         [recording]\ndir = \"{rec}\"\n{rooms}",
        play = dir.display(),
        rec = dir.join("rec").display(),
    );
    let bridge = Bridge::start(&cfg);
    Rig {
        bridge,
        api: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    }
}

impl Rig {
    fn get(&self, path: &str) -> http::Response {
        request(self.api, "GET", path, Some(TOKEN), None)
    }
    fn send(&self, method: &str, path: &str, body: &str) -> http::Response {
        request(self.api, method, path, Some(TOKEN), Some(body))
    }
}

/// Everyone streams their tone for `secs`; returns what each heard in that time.
fn phase(uas: &[&Ua], streams: &mut [Stream], freqs: &[f64], secs: u64) -> Vec<Vec<i16>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = uas
            .iter()
            .zip(streams.iter_mut())
            .zip(freqs)
            .map(|((ua, st), f)| {
                s.spawn(move || {
                    let before = st.heard.len();
                    st.run(ua, *f, Duration::from_secs(secs));
                    st.heard[before..].to_vec()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Level of `f` in the last second heard (8 kHz).
fn level(x: &[i16], f: f64) -> f64 {
    db(goertzel(&x[x.len().saturating_sub(8000)..], 8000.0, f))
}

fn bye_within(ua: &mut Ua, st: &mut Stream, f: f64, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        st.run(ua, f, Duration::from_millis(100));
        while let Some(m) = ua.recv(Duration::from_millis(20)) {
            if m.method() == Some(&Method::Bye) {
                return true;
            }
        }
    }
    false
}

#[test]
fn api_controls_rooms_participants_recordings_and_reports_events() {
    let hooks = Receiver::start(0);
    let r = rig("main", &hooks.url(), "[[room]]\nname = \"demo\"\n");

    // no token, a wrong one: 401 with the error shape; metrics are open
    for token in [None, Some("wrong-token-0123456789")] {
        let resp = request(r.api, "GET", "/v1/rooms", token, None);
        assert_eq!(resp.status, 401);
        assert_eq!(resp.json()["error"], "unauthorized");
    }
    assert_eq!(request(r.api, "GET", "/metrics", None, None).status, 200);

    let freqs = [440.0, 700.0, 1100.0];
    let mut uas: Vec<Ua> = (0..3)
        .map(|i| {
            Ua::new(
                r.bridge.sip,
                "demo",
                CodecKind::Pcmu,
                false,
                &format!("a{i}"),
            )
        })
        .collect();
    for ua in &mut uas {
        assert_eq!(ua.call(""), 200);
    }
    let rooms = r.get("/v1/rooms").json();
    let demo = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["participants"], 3);
    assert!(demo["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.get("/v1/rooms/nope").status, 404);

    let parts = r.get("/v1/rooms/demo/participants").json();
    let parts = parts.as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let id_of = |ua: &Ua| {
        parts
            .iter()
            .find(|p| p["call_id"] == ua.call_id.as_str())
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let ids: Vec<u64> = uas.iter().map(id_of).collect();
    assert!(
        parts
            .iter()
            .all(|p| p["role"] == "participant" && p["muted"] == false)
    );

    // record the room while everyone talks
    let rec = r.send("POST", "/v1/rooms/demo/recordings", "{}");
    assert_eq!(rec.status, 201, "{}", rec.text());
    let rec_id = rec.json()["id"].as_str().unwrap().to_string();
    assert!(r.get("/v1/rooms/demo").json()["recording"][0] == rec_id.as_str());

    let mut streams: Vec<Stream> = (0..3).map(|_| Stream::new(CodecKind::Pcmu)).collect();
    let refs: Vec<&Ua> = uas.iter().collect();
    let heard = phase(&refs, &mut streams, &freqs, 3);
    for (i, h) in heard.iter().enumerate() {
        for (j, f) in freqs.iter().enumerate() {
            let l = level(h, *f);
            if i == j {
                assert!(l < 40.0, "caller {i} hears itself at {l:.1} dB");
            } else {
                assert!(l > 50.0, "caller {i} hears {f} Hz at only {l:.1} dB");
            }
        }
    }
    let stop = request(
        r.api,
        "DELETE",
        &format!("/v1/rooms/demo/recordings/{rec_id}"),
        Some(TOKEN),
        None,
    );
    assert_eq!(stop.status, 204);

    // mute caller 0: the others stop hearing 440 Hz
    let m = r.send(
        "PATCH",
        &format!("/v1/rooms/demo/participants/{}", ids[0]),
        r#"{"muted": true}"#,
    );
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.json()["muted"], true);
    // deafen caller 2: it hears silence, and is still heard
    let d = r.send(
        "PATCH",
        &format!("/v1/rooms/demo/participants/{}", ids[2]),
        r#"{"deaf": true}"#,
    );
    assert_eq!(d.json()["deaf"], true);
    let heard = phase(&refs, &mut streams, &freqs, 2);
    assert!(level(&heard[1], 440.0) < 30.0, "muted caller still heard");
    assert!(level(&heard[1], 1100.0) > 50.0, "deaf caller not heard");
    assert!(level(&heard[2], 700.0) < 30.0, "deaf caller hears the room");
    assert!(level(&heard[2], 440.0) < 30.0, "deaf caller hears the room");

    // bad requests get the error shape
    let bad = r.send(
        "PATCH",
        &format!("/v1/rooms/demo/participants/{}", ids[0]),
        r#"{"role": "king"}"#,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "bad_request");
    assert_eq!(
        r.send(
            "PATCH",
            "/v1/rooms/demo/participants/999999",
            r#"{"muted":true}"#
        )
        .status,
        404
    );

    // play a file to the room: caller 1 hears 1500 Hz
    common::write_wav(&r.dir.join("beep.wav"), 8000, 1, 1500.0, 2.0);
    let p = r.send(
        "POST",
        "/v1/rooms/demo/play",
        r#"{"file": "beep.wav", "loop": 0, "level": -6}"#,
    );
    assert_eq!(p.status, 201, "{}", p.text());
    let play_id = p.json()["id"].as_str().unwrap().to_string();
    let heard = phase(&refs, &mut streams, &freqs, 1);
    // heard by everyone in the mix (the muted caller too), not by the deaf one
    for h in &heard[..2] {
        assert!(
            level(h, 1500.0) > 50.0,
            "the announcement is not heard by all"
        );
    }
    assert!(
        level(&heard[2], 1500.0) < 30.0,
        "the deaf caller hears the announcement"
    );
    // looped until stopped: still heard after its 2 s, gone once deleted
    let heard = phase(&refs, &mut streams, &freqs, 2);
    assert!(
        level(&heard[1], 1500.0) > 50.0,
        "the looped announcement stopped"
    );
    let d = r.send("DELETE", &format!("/v1/rooms/demo/play/{play_id}"), "");
    assert_eq!(d.status, 204, "{}", d.text());
    let heard = phase(&refs, &mut streams, &freqs, 1);
    // (what was in flight when the DELETE was answered aside)
    let after = &heard[1][heard[1].len().min(1600)..];
    assert!(
        db(goertzel(after, 8000.0, 1500.0)) < 30.0,
        "the announcement goes on after DELETE: {:.1} dB",
        db(goertzel(after, 8000.0, 1500.0))
    );
    assert_eq!(
        r.send("DELETE", &format!("/v1/rooms/demo/play/{play_id}"), "")
            .status,
        404
    );
    assert!(
        hooks.wait_for(Duration::from_secs(3), |evs| evs
            .iter()
            .any(|e| e["type"] == "playback:done"
                && e["playback_id"] == play_id.as_str()
                && e["stopped"] == true)),
        "no playback:done"
    );
    assert_eq!(
        r.send(
            "POST",
            "/v1/rooms/demo/play",
            r#"{"file": "../../etc/passwd"}"#
        )
        .status,
        400
    );

    // the recording: both callers' tones in its first seconds, downloadable with
    // the token only
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .any(|e| e["type"] == "recording:completed")),
        "no recording event"
    );
    let url = format!("/v1/recordings/{rec_id}");
    assert_eq!(request(r.api, "GET", &url, None, None).status, 401);
    let wav = r.get(&url);
    assert_eq!(wav.status, 200);
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    let samples = caucus::media::prompt::parse_wav(&wav.body, "rec.wav").unwrap();
    assert!(
        samples.len() >= 8000 * 2,
        "recording is {} samples",
        samples.len()
    );
    let tail = &samples[samples.len() - 8000..];
    for f in freqs {
        let l = db(goertzel(tail, 8000.0, f));
        assert!(l > 50.0, "recording lacks {f} Hz ({l:.1} dB)");
    }
    use std::os::unix::fs::PermissionsExt;
    let file = r.dir.join("rec").join(format!("{rec_id}.wav"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // kick caller 1: BYE
    let k = request(
        r.api,
        "DELETE",
        &format!("/v1/rooms/demo/participants/{}", ids[1]),
        Some(TOKEN),
        None,
    );
    assert_eq!(k.status, 204);
    assert!(
        bye_within(&mut uas[1], &mut streams[1], 700.0, 3),
        "kicked caller got no BYE"
    );

    // metrics: valid Prometheus text with the SIP counters
    let metrics = request(r.api, "GET", "/metrics", None, None).text();
    valid_prometheus(&metrics).unwrap();
    assert!(metrics.contains("caucus_sip_requests_received_total{method=\"INVITE\"} 3"));
    assert!(metrics.contains("caucus_participants 2"));
    assert!(metrics.contains("caucus_calls_ended_total{reason=\"kicked\"} 1"));

    // the rest hang up: room ends
    uas[0].hangup();
    uas[2].hangup();
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .any(|e| e["type"] == "room:ended")),
        "no room:ended event"
    );
    let all = hooks.hooks.lock().unwrap().clone();
    for h in &all {
        assert!(signed(h, SECRET), "unsigned or badly signed event");
    }
    let demo: Vec<serde_json::Value> = all
        .iter()
        .map(|h| h.json())
        .filter(|e| e["conversation_uuid"] == "demo")
        .collect();
    let seqs: Vec<u64> = demo.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let kinds: Vec<&str> = demo.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "out of order: {seqs:?} {kinds:?}"
    );
    assert_eq!(kinds.first(), Some(&"room:started"));
    assert_eq!(kinds.last(), Some(&"room:ended"));
    assert_eq!(
        kinds.iter().filter(|k| **k == "participant:joined").count(),
        3
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "participant:left").count(),
        3
    );
    assert!(kinds.contains(&"participant:muted"));
    let kicked = demo
        .iter()
        .find(|e| e["type"] == "participant:left" && e["reason"] == "kicked");
    assert!(kicked.is_some(), "{kinds:?}");
    let done = demo
        .iter()
        .find(|e| e["type"] == "recording:completed")
        .unwrap();
    assert!(
        done["recording_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/recordings/{rec_id}"))
    );
    assert!(done["duration"].as_u64().unwrap() >= 2);
    assert!(!r.bridge.log_text().contains(TOKEN), "token in the log");
}

#[test]
fn rooms_created_at_run_time_lock_end_and_expire() {
    let hooks = Receiver::start(0);
    let r = rig("rooms", &hooks.url(), "");
    let bad = r.send("POST", "/v1/rooms", r#"{"name": "x y"}"#);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "invalid_room");
    assert_eq!(
        r.send("POST", "/v1/rooms", r#"{"name": "ok", "colour": 1}"#)
            .status,
        400
    );
    let c = r.send(
        "POST",
        "/v1/rooms",
        r#"{"name": "adhoc", "empty_timeout_s": 2, "max_participants": 5}"#,
    );
    assert_eq!(c.status, 201, "{}", c.text());
    assert_eq!(c.json()["dynamic"], true);
    assert_eq!(
        r.send("POST", "/v1/rooms", r#"{"name": "adhoc"}"#).status,
        409
    );

    // callers can dial it; locked, they are refused; ending it BYEs them
    let mut a = Ua::new(r.bridge.sip, "adhoc", CodecKind::Pcmu, false, "x1");
    assert_eq!(a.call(""), 200);
    assert_eq!(
        r.send("POST", "/v1/rooms/adhoc/lock", "").json()["locked"],
        true
    );
    let mut b = Ua::new(r.bridge.sip, "adhoc", CodecKind::Pcmu, false, "x2");
    assert_eq!(b.call(""), 403);
    assert_eq!(
        r.send("POST", "/v1/rooms/adhoc/unlock", "").json()["locked"],
        false
    );
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&a, 440.0, Duration::from_millis(300));
    let e = request(r.api, "DELETE", "/v1/rooms/adhoc", Some(TOKEN), None);
    assert_eq!(e.status, 204);
    assert!(bye_within(&mut a, &mut st, 440.0, 3), "no BYE on room end");
    assert_eq!(
        r.get("/v1/rooms/adhoc").status,
        404,
        "ended API room still listed"
    );

    // an API room nobody calls is removed after its empty_timeout
    let c = r.send(
        "POST",
        "/v1/rooms",
        r#"{"name": "brief", "empty_timeout_s": 1}"#,
    );
    assert_eq!(c.status, 201);
    assert_eq!(r.get("/v1/rooms/brief").status, 200);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        r.get("/v1/rooms/brief").status,
        404,
        "empty room not removed"
    );
    let mut late = Ua::new(r.bridge.sip, "brief", CodecKind::Pcmu, false, "x3");
    assert_eq!(late.call(""), 404);

    // a room that was used is removed its empty_timeout after the last call
    r.send(
        "POST",
        "/v1/rooms",
        r#"{"name": "used", "empty_timeout_s": 1}"#,
    );
    let mut u = Ua::new(r.bridge.sip, "used", CodecKind::Pcmu, false, "x4");
    assert_eq!(u.call(""), 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.get("/v1/rooms/used").status, 200, "removed while in use");
    assert_eq!(u.hangup(), 200);
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(r.get("/v1/rooms/used").status, 404);
    let openapi = r.get("/openapi.json");
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/v1/rooms"].is_object());
}

#[test]
fn events_queued_while_the_receiver_is_down_arrive_in_order() {
    // nobody listens on this port for the first 10 s
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let r = rig("down", &url, "[[room]]\nname = \"demo\"\n");
    let mut a = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "d1");
    assert_eq!(a.call(""), 200);
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&a, 440.0, Duration::from_millis(300));
    assert_eq!(a.hangup(), 200);
    std::thread::sleep(Duration::from_secs(10));
    // the receiver comes back, refusing the first attempt for good measure
    let refused = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let rf = refused.clone();
    let hooks = Receiver::start_with(
        port,
        Arc::new(move |_| {
            if rf.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 1 {
                (503, String::new())
            } else {
                (200, String::new())
            }
        }),
    );
    assert!(
        hooks.wait_for(Duration::from_secs(45), |evs| evs
            .iter()
            .any(|e| e["type"] == "room:ended")),
        "events did not arrive after the receiver came back"
    );
    let all = hooks.hooks.lock().unwrap().clone();
    // what was accepted (the 503'd copies are retried), in order
    let accepted: Vec<serde_json::Value> = all.iter().skip(1).map(|h| h.json()).collect();
    let kinds: Vec<&str> = accepted
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|k| !k.starts_with("participant:talking"))
        .collect();
    assert_eq!(
        kinds,
        [
            "room:started",
            "participant:joined",
            "participant:left",
            "room:ended"
        ]
    );
    assert!(all.iter().all(|h| signed(h, SECRET)));
    std::thread::sleep(Duration::from_millis(300));
    let metrics = request(r.api, "GET", "/metrics", None, None).text();
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
    };
    assert!(value("caucus_webhook_events_total{result=\"delivered\"}") >= 4);
    assert!(value("caucus_webhook_events_total{result=\"failed_attempt\"}") >= 1);
    assert_eq!(value("caucus_webhook_events_total{result=\"dropped\"}"), 0);
}

fn ctl(r: &Rig, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caucus"))
        .arg("ctl")
        .arg("--api")
        .arg(format!("http://{}", r.api))
        .args(args)
        .env("CAUCUS_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn ctl_drives_the_api() {
    let hooks = Receiver::start(0);
    let r = rig("ctl", &hooks.url(), "[[room]]\nname = \"demo\"\n");
    let mut a = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "c1");
    assert_eq!(a.call(""), 200);
    let (ok, out) = ctl(&r, &["rooms"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("demo ") && l.contains(" 1 ")),
        "{out}"
    );
    let (ok, out) = ctl(&r, &["participants", "demo"]);
    assert!(ok && out.contains("sip:ua@127.0.0.1"), "{out}");
    let id = r.get("/v1/rooms/demo/participants").json()[0]["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let (ok, out) = ctl(&r, &["mute", "demo", &id]);
    assert!(ok && out.contains("\"muted\": true"), "{out}");
    let (ok, out) = ctl(&r, &["create", "side", "pin=0042", "empty_timeout_s=30"]);
    assert!(ok && out.contains("\"dynamic\": true"), "{out}");
    let (ok, out) = ctl(&r, &["kick", "demo", "424242"]);
    assert!(!ok && out.contains("404"), "{out}");
    let (ok, out) = ctl(&r, &["kick", "demo", &id]);
    assert!(ok, "{out}");
    // a wrong token is an error, not a crash
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caucus"))
        .args([
            "ctl",
            "--api",
            &format!("http://{}", r.api),
            "--token",
            "nope-nope-nope-nope",
            "rooms",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn answer_webhook_ncco_waits_with_music_and_ends_on_exit() {
    // the application: callers to "wait" wait for the host; "lead" starts and ends
    // the conversation; anything else is an error (so the fallback routes it)
    let app = Receiver::start_with(
        0,
        Arc::new(|hook: &http::Hook| {
            let v = hook.params();
            let to = v["to"].as_str().unwrap_or("");
            if to.starts_with("sip:wait@") {
                (
                    200,
                    r#"[{"action":"talk","text":"hello"},{"action":"conversation","name":"board","startOnEnter":false}]"#.into(),
                )
            } else if to.starts_with("sip:lead@") {
                (
                    200,
                    r#"[{"action":"conversation","name":"board","startOnEnter":true,"endOnExit":true}]"#.into(),
                )
            } else {
                (500, String::new())
            }
        }),
    );
    let hooks = Receiver::start(0);
    let r = rig(
        "ncco",
        &hooks.url(),
        &format!(
            "[routing]\nanswer_url = \"http://{}/answer\"\nanswer_timeout_ms = 2000\n[[room]]\nname = \"demo\"\n",
            app.addr
        ),
    );
    let mut w = Ua::new(r.bridge.sip, "wait", CodecKind::Pcmu, false, "w");
    assert_eq!(w.call(""), 200);
    let mut ws = Stream::new(CodecKind::Pcmu);
    ws.run(&w, 700.0, Duration::from_secs(3));
    let waiting = &ws.heard[ws.heard.len() - 8000..];
    assert!(
        rms(waiting) > 300.0,
        "no music while waiting (rms {:.0})",
        rms(waiting)
    );
    let parts = r.get("/v1/rooms/board/participants").json();
    assert_eq!(parts[0]["state"], "waiting");

    let mut l = Ua::new(r.bridge.sip, "lead", CodecKind::Pcmu, false, "l");
    assert_eq!(l.call(""), 200);
    let mut ls = Stream::new(CodecKind::Pcmu);
    let heard = {
        let refs = [&w, &l];
        let mut streams = [ws, ls];
        let h = phase(&refs, &mut streams, &[700.0, 440.0], 3);
        [ws, ls] = streams;
        h
    };
    assert!(
        level(&heard[0], 440.0) > 50.0,
        "waiting caller does not hear the host"
    );
    assert!(
        level(&heard[1], 700.0) > 50.0,
        "host does not hear the caller"
    );
    // the host leaves: endOnExit ends the conversation for the other caller
    assert_eq!(l.hangup(), 200);
    assert!(
        bye_within(&mut w, &mut ws, 700.0, 3),
        "no BYE after the endOnExit caller left"
    );
    let _ = ls;

    // the webhook fails for "demo": the TOML room takes the call (answer_fallback = rooms)
    let mut d = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "d");
    assert_eq!(d.call(""), 200);
    assert_eq!(app.events().len(), 3);
}

#[test]
fn answer_webhook_down_with_reject_fallback_gives_503() {
    let dead = free_port();
    let hooks = Receiver::start(0);
    let r = rig(
        "reject",
        &hooks.url(),
        &format!(
            "[routing]\nanswer_url = \"http://127.0.0.1:{dead}/answer\"\nanswer_fallback = \"reject\"\nanswer_timeout_ms = 500\n[[room]]\nname = \"demo\"\n"
        ),
    );
    let mut a = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "r");
    assert_eq!(a.call(""), 503);
}

#[test]
fn record_true_records_the_room_and_a_participant_stem_on_request() {
    let hooks = Receiver::start(0);
    let r = rig(
        "record",
        &hooks.url(),
        "[[room]]\nname = \"taped\"\nrecord = true\n",
    );
    let mut a = Ua::new(r.bridge.sip, "taped", CodecKind::Pcmu, false, "ra");
    let mut b = Ua::new(r.bridge.sip, "taped", CodecKind::Pcmu, false, "rb");
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    let room = r.get("/v1/rooms/taped").json();
    assert_eq!(room["recording"].as_array().unwrap().len(), 1, "{room}");
    let id_b = r
        .get("/v1/rooms/taped/participants")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["call_id"] == b.call_id.as_str())
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let stem = r.send(
        "POST",
        "/v1/rooms/taped/recordings",
        &format!(r#"{{"participant": {id_b}}}"#),
    );
    assert_eq!(stem.status, 201, "{}", stem.text());
    let stem_id = stem.json()["id"].as_str().unwrap().to_string();
    let refs = [&a, &b];
    let mut streams = [Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu)];
    phase(&refs, &mut streams, &[440.0, 700.0], 3);
    // everyone leaves: the room's recording ends with the room, the stem with its leg
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .filter(|e| e["type"] == "recording:completed")
            .count()
            == 2),
        "recordings did not complete"
    );
    for e in hooks
        .events()
        .iter()
        .filter(|e| e["type"] == "recording:completed")
    {
        let id = e["recording_uuid"].as_str().unwrap();
        let wav = r.get(&format!("/v1/recordings/{id}"));
        assert_eq!(wav.status, 200);
        let x = caucus::media::prompt::parse_wav(&wav.body, "r.wav").unwrap();
        // the loudest whole second of each (a last frame alone would be judged
        // with a 50 Hz resolution, where a tone leaks into its neighbours)
        let peak = |f: f64| {
            x.chunks_exact(8000)
                .map(|c| db(goertzel(c, 8000.0, f)))
                .fold(f64::MIN, f64::max)
        };
        if id == stem_id {
            assert!(peak(700.0) > 50.0, "stem lacks its own tone");
            assert!(peak(440.0) < 30.0, "stem holds the other caller");
            assert_eq!(e["uuid"], id_b.to_string());
        } else {
            assert!(
                peak(700.0) > 50.0 && peak(440.0) > 50.0,
                "room mix lacks a caller"
            );
        }
    }
}

#[test]
fn a_full_disk_stops_the_recording_with_an_event_and_the_call_goes_on() {
    // a 64 KiB tmpfs as the recording directory (needs root to mount; skipped if not)
    let hooks = Receiver::start(0);
    let dir = tmpdir("fulldisk");
    let small = dir.join("rec");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a small tmpfs here (not root?): skipped");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let port = free_port();
    let cfg = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[events]\nurl = \"{}\"\n\
         [recording]\ndir = \"{}\"\n[[room]]\nname = \"demo\"\n",
        hooks.url(),
        small.display()
    );
    let bridge = Bridge::start(&cfg);
    let api = SocketAddr::from(([127, 0, 0, 1], port));
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "fd1");
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "fd2");
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    let rec = request(
        api,
        "POST",
        "/v1/rooms/demo/recordings",
        Some(TOKEN),
        Some("{}"),
    );
    assert_eq!(rec.status, 201, "{}", rec.text());
    // 16 KB/s of audio: the disk is full after about 4 s
    let refs = [&a, &b];
    let mut streams = [Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu)];
    phase(&refs, &mut streams, &[440.0, 700.0], 6);
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .any(|e| e["type"] == "recording:failed")),
        "no recording:failed event"
    );
    let ev = hooks
        .events()
        .into_iter()
        .find(|e| e["type"] == "recording:failed")
        .unwrap();
    assert!(ev["error"].as_str().is_some_and(|e| !e.is_empty()), "{ev}");
    // the call goes on: they still hear each other, nobody got a BYE
    let heard = phase(&refs, &mut streams, &[440.0, 700.0], 2);
    assert!(level(&heard[0], 700.0) > 50.0 && level(&heard[1], 440.0) > 50.0);
    assert!(a.wait_for_bye(0.2).is_none());
    // what reached the disk is a valid WAV
    let id = rec.json()["id"].as_str().unwrap().to_string();
    let wav = std::fs::read(small.join(format!("{id}.wav"))).unwrap();
    let x = caucus::media::prompt::parse_wav(&wav, "r.wav").unwrap();
    assert!(x.len() > 8000, "only {} samples kept", x.len());
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    drop(bridge);
}

#[test]
fn a_recording_cut_by_kill_9_is_reported_and_listed_at_the_next_start() {
    let hooks = Receiver::start(0);
    let mut r = rig(
        "crash",
        &hooks.url(),
        "[[room]]\nname = \"rec\"\nrecord = true\n",
    );
    let mut ua = Ua::new(r.bridge.sip, "rec", CodecKind::Pcmu, false, "crashed");
    assert_eq!(ua.call(""), 200);
    Stream::new(CodecKind::Pcmu).run(&ua, 440.0, Duration::from_secs(3));
    let live = r.get("/v1/recordings").json();
    assert_eq!(live[0]["state"], "recording", "{live}");
    // kill -9: the writer never closes the file
    r.bridge.child.kill().unwrap();
    r.bridge.child.wait().unwrap();
    let config = r.bridge.config.clone();
    let log = std::fs::File::create(r.dir.join("second.log")).unwrap();
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_caucus"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    let recovered = hooks.wait_for(Duration::from_secs(20), |evs| {
        evs.iter().any(|e| e["type"] == "recording:recovered")
    });
    let listed = r.get("/v1/recordings").json();
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        recovered,
        "no recording:recovered event: {:?}",
        hooks.events()
    );
    let rec = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["room"] == "rec")
        .unwrap_or_else(|| panic!("not listed: {listed}"));
    assert_eq!(rec["state"], "recovered", "{rec}");
    assert!(rec["duration_ms"].as_u64().unwrap() >= 2000, "{rec}");
    let id = rec["id"].as_str().unwrap();
    let wav = std::fs::read(r.dir.join("rec").join(format!("{id}.wav"))).unwrap();
    let samples = caucus::media::prompt::parse_wav(&wav, "rec.wav").expect("a valid WAV");
    assert!(samples.len() >= 16000);
}

#[test]
fn a_recordings_speakers_sidecar_lists_each_talkers_turns() {
    // A talks 1.5 s, then B 1.5 s after a pause; the sidecar of the room's
    // recording has one turn each, where they talked, against the times the
    // test UAs started and stopped their tones (7 ms apart on an idle machine;
    // 250 ms allowed, for a CI machine running other tests' calls meanwhile)
    let hooks = Receiver::start(0);
    let r = rig("speakers", &hooks.url(), "[[room]]\nname = \"demo\"\n");
    let mut a = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "spa");
    let mut b = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "spb");
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    let (mut sa, mut sb) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    let rec = r.send("POST", "/v1/rooms/demo/recordings", "{}");
    let t0 = std::time::Instant::now();
    let id = rec.json()["id"].as_str().unwrap().to_string();
    let since = |t: std::time::Instant| t.duration_since(t0).as_secs_f64();
    let (mut a_turn, mut b_turn) = ((0.0, 0.0), (0.0, 0.0));
    std::thread::scope(|s| {
        let tb = s.spawn(|| {
            sb.run(&b, 0.0, Duration::from_millis(2500));
            let start = since(std::time::Instant::now());
            sb.run(&b, 1100.0, Duration::from_millis(1500));
            b_turn = (start, since(std::time::Instant::now()));
            sb.run(&b, 0.0, Duration::from_millis(1000));
        });
        sa.run(&a, 0.0, Duration::from_millis(500));
        let start = since(std::time::Instant::now());
        sa.run(&a, 440.0, Duration::from_millis(1500));
        a_turn = (start, since(std::time::Instant::now()));
        sa.run(&a, 0.0, Duration::from_millis(3000));
        tb.join().unwrap();
    });
    assert_eq!(
        r.send("DELETE", &format!("/v1/rooms/demo/recordings/{id}"), "")
            .status,
        204
    );
    let mut sidecar = None;
    for _ in 0..50 {
        let got = r.get(&format!("/v1/recordings/{id}/speakers"));
        if got.status == 200 {
            sidecar = Some(got.json());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sidecar = sidecar.expect("no speakers sidecar");
    let parts = r.get("/v1/rooms/demo/participants").json();

    let turns = sidecar["speakers"].as_array().unwrap();
    eprintln!("speakers: {sidecar}; A talked {a_turn:.3?}, B {b_turn:.3?}");
    assert_eq!(turns.len(), 2, "{sidecar}");
    for (t, (who, (start, end))) in turns.iter().zip([("spa", a_turn), ("spb", b_turn)]) {
        assert_eq!(
            t["participant"].to_string(),
            common::participant_id(&parts, who),
            "{sidecar}"
        );
        let (s, e) = (t["start"].as_f64().unwrap(), t["end"].as_f64().unwrap());
        assert!(
            (s - start).abs() < 0.25,
            "{who} began at {start:.3}, listed at {s}"
        );
        assert!(
            (e - end).abs() < 0.25,
            "{who} ended at {end:.3}, listed at {e}"
        );
    }
    let vtt = r.get(&format!("/v1/recordings/{id}/speakers?format=vtt"));
    assert_eq!(vtt.status, 200);
    assert!(vtt.text().starts_with("WEBVTT"), "{}", vtt.text());
    assert_eq!(vtt.text().matches(" --> ").count(), 2);
    assert_eq!(r.get("/v1/recordings/0123/speakers").status, 404);
}

/// A WAV file's channels apart, with its rate.
fn wav_channels(b: &[u8]) -> (u32, Vec<Vec<i16>>) {
    assert_eq!(&b[0..4], b"RIFF");
    let ch = usize::from(u16::from_le_bytes([b[22], b[23]]));
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let s: Vec<i16> = b[44..]
        .chunks_exact(2)
        .map(|x| i16::from_le_bytes([x[0], x[1]]))
        .collect();
    let planes = (0..ch)
        .map(|c| s.iter().skip(c).step_by(ch).copied().collect())
        .collect();
    (rate, planes)
}

#[test]
fn split_wideband_and_ogg_recordings_keep_what_each_caller_said_apart() {
    // A says 440 Hz, B 1100 Hz. A room recording split at 16 kHz has A on one
    // channel and B on the next; A's own split recording has what A says and
    // what A hears; an Ogg Opus recording of the mix holds both
    let hooks = Receiver::start(0);
    let r = rig("split", &hooks.url(), "[[room]]\nname = \"demo\"\n");
    let a = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "sra");
    let b = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "srb");
    let (mut a, mut b) = (a, b);
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    let mut streams = [Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu)];
    phase(&[&a, &b], &mut streams, &[0.0, 0.0], 1);
    let parts = r.get("/v1/rooms/demo/participants").json();
    let (ida, idb) = (
        common::participant_id(&parts, "sra"),
        common::participant_id(&parts, "srb"),
    );
    let start = |body: String| {
        let got = r.send("POST", "/v1/rooms/demo/recordings", &body);
        assert_eq!(got.status, 201, "{body}: {}", got.text());
        got.json()["id"].as_str().unwrap().to_string()
    };
    let split = start(r#"{"channels": "split", "sample_rate": 16000, "max_channels": 4}"#.into());
    let duplex = start(format!(r#"{{"participant": {ida}, "channels": "split"}}"#));
    let ogg = start(r#"{"format": "ogg"}"#.into());
    for bad in [
        r#"{"format": "mp3"}"#,
        r#"{"sample_rate": 44100}"#,
        r#"{"channels": "split", "max_channels": 33}"#,
        r#"{"format": "ogg", "sample_rate": 8000}"#,
    ] {
        assert_eq!(
            r.send("POST", "/v1/rooms/demo/recordings", bad).status,
            400,
            "{bad}"
        );
    }
    phase(&[&a, &b], &mut streams, &[440.0, 1100.0], 3);
    for id in [&split, &duplex, &ogg] {
        assert_eq!(
            r.send("DELETE", &format!("/v1/rooms/demo/recordings/{id}"), "")
                .status,
            204
        );
    }
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .filter(|e| e["type"] == "recording:completed")
            .count()
            == 3),
        "recordings did not complete"
    );
    // the loudest whole second of a channel
    let peak = |x: &[i16], rate: u32, f: f64| {
        x.chunks_exact(rate as usize)
            .map(|c| db(goertzel(c, f64::from(rate), f)))
            .fold(f64::MIN, f64::max)
    };
    let listed = r.get("/v1/recordings").json();
    let meta = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    };

    let got = r.get(&format!("/v1/recordings/{split}"));
    assert_eq!(got.header("content-type"), Some("audio/wav"));
    let (rate, ch) = wav_channels(&got.body);
    assert_eq!((rate, ch.len()), (16000, 4));
    let m = meta(&split);
    assert_eq!(m["channels"], 4);
    let tracks: Vec<String> = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["participant"].to_string())
        .collect();
    assert_eq!(tracks, vec![ida.clone(), idb.clone()], "{m}");
    eprintln!(
        "split: ch0 440 {:.1} / 1100 {:.1}; ch1 1100 {:.1} / 440 {:.1}",
        peak(&ch[0], rate, 440.0),
        peak(&ch[0], rate, 1100.0),
        peak(&ch[1], rate, 1100.0),
        peak(&ch[1], rate, 440.0)
    );
    assert!(peak(&ch[0], rate, 440.0) > 50.0 && peak(&ch[0], rate, 1100.0) < 30.0);
    assert!(peak(&ch[1], rate, 1100.0) > 50.0 && peak(&ch[1], rate, 440.0) < 30.0);
    assert!(peak(&ch[2], rate, 440.0) < 30.0 && peak(&ch[3], rate, 1100.0) < 30.0);

    let (rate, ch) = wav_channels(&r.get(&format!("/v1/recordings/{duplex}")).body);
    assert_eq!((rate, ch.len()), (8000, 2));
    assert!(
        peak(&ch[0], rate, 440.0) > 50.0 && peak(&ch[0], rate, 1100.0) < 30.0,
        "spoken"
    );
    assert!(
        peak(&ch[1], rate, 1100.0) > 50.0 && peak(&ch[1], rate, 440.0) < 30.0,
        "heard"
    );

    let got = r.get(&format!("/v1/recordings/{ogg}"));
    assert_eq!(got.header("content-type"), Some("audio/ogg"));
    assert_eq!(&got.body[..4], b"OggS");
    assert_eq!(meta(&ogg)["format"], "ogg");
    let x = caucus::media::decode::to_8k_mono(got.body.clone(), 60).unwrap();
    assert!(
        peak(&x, 8000, 440.0) > 50.0 && peak(&x, 8000, 1100.0) > 50.0,
        "ogg mix"
    );
}
