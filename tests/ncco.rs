//! The Vonage conference guide's call flow, with its NCCOs unchanged but for the
//! music's address (a local MP3 instead of a URL on the internet): a moderator
//! `[talk, conversation{startOnEnter, endOnExit, record}]` and attendees `[talk,
//! conversation{startOnEnter: false, musicOnHoldUrl}]`. Each caller hears the
//! welcome speech first (espeak-ng, which the test command installs), the
//! attendee then the MP3 until the moderator arrives, then the room; the
//! moderator leaving ends the call for the attendee; the recording holds both
//! callers' tones. The answer server is asked by GET, as Vonage asks, and the
//! event server receives Vonage's status events, signed with a JWT as Vonage
//! signs them.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caucus::sdp::CodecKind;
use caucus::sip::Method;
use common::http::{self, Receiver, request};
use common::{Bridge, Stream, Ua, db, free_port, goertzel};

const TOKEN: &str = "ncco-test-token-0123456789";
const SIGNING: &str = "ncco-signature-secret-0123";

/// An HS256 JWT in `Authorization: Bearer` whose `payload_hash` is the body's
/// SHA-256 and whose signature is ours.
fn jwt_signed(hook: &http::Hook) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some(token) = hook
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    else {
        return false;
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SIGNING.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    let Ok(sig) = b64.decode(parts[2]) else {
        return false;
    };
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let hash: String = sha2::Sha256::digest(&hook.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    mac.verify_slice(&sig).is_ok() && claims["payload_hash"] == hash.as_str()
}
const MOD_HZ: f64 = 440.0;
const ATT_HZ: f64 = 1100.0;
const MUSIC_HZ: f64 = 600.0;

fn mp3() -> String {
    format!("{}/tests/data/moh-600hz.mp3", env!("CARGO_MANIFEST_DIR"))
}

/// The guide's answer server: `sip:moderator@…` and `sip:attendee@…`.
fn answer_server(music: String, espeak: bool) -> Receiver {
    Receiver::start_with(
        0,
        Arc::new(move |hook: &http::Hook| {
            let v = hook.params();
            let to = v["to"].as_str().unwrap_or("");
            // the guide's NCCOs as it writes them: booleans as strings, a voiceName
            let (talk_m, talk_a) = if espeak {
                (
                    r#"{"action":"talk","text":"Welcome to a conference call"},"#.to_string(),
                    r#"{"action":"talk","text":"Welcome to a Nexmo moderated conference","voiceName":"Amy"},"#
                        .to_string(),
                )
            } else {
                (String::new(), String::new())
            };
            if to.starts_with("sip:moderator@") {
                (
                    200,
                    format!(
                        r#"[{talk_m}{{"action":"conversation","name":"nexmo-conference-moderated","startOnEnter":"true","endOnExit":"true","record":"true"}}]"#
                    ),
                )
            } else if to.starts_with("sip:attendee@") {
                (
                    200,
                    format!(
                        r#"[{talk_a}{{"action":"conversation","name":"nexmo-conference-moderated","startOnEnter":"false","musicOnHoldUrl":["{music}"]}}]"#
                    ),
                )
            } else {
                (404, String::new())
            }
        }),
    )
}

fn have_espeak() -> bool {
    std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Energy between 300 and 3,400 Hz that is not one steady tone: speech.
fn speech_like(x: &[i16]) -> bool {
    let rms = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt();
    let tonal = [MUSIC_HZ, MOD_HZ, ATT_HZ]
        .iter()
        .map(|&f| db(goertzel(x, 8000.0, f)))
        .fold(f64::MIN, f64::max);
    // a steady tone of this rms would show at 20·log10(rms) − 3 dB
    rms > 200.0 && tonal < 20.0 * rms.log10() - 15.0
}

/// Listen until a prompt has been heard and half a second of silence has
/// followed it (at most 15 s); without one coming, a second.
fn after_prompt(ua: &Ua, st: &mut Stream, prompt: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut heard, mut quiet) = (!prompt, 0);
    // a second of silence: shorter gaps occur inside speech when the machine is busy
    while Instant::now() < deadline && quiet < 10 {
        st.run(ua, 0.0, Duration::from_millis(100));
        let last = &st.heard[st.heard.len().saturating_sub(800)..];
        let loud = last.iter().any(|&v| v.unsigned_abs() > 300);
        heard |= loud;
        quiet = if heard && !loud { quiet + 1 } else { 0 };
    }
}

fn bye_within(ua: &mut Ua, st: &mut Stream, f: f64, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
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
fn the_vonage_guides_moderated_conference_runs_unchanged() {
    let espeak = have_espeak();
    if !espeak {
        eprintln!(
            "espeak-ng is not installed (.ci/test installs it): the talk actions are left out"
        );
    }
    let app = answer_server(mp3(), espeak);
    let hooks = Receiver::start(0);
    let api = free_port();
    let rec = std::env::temp_dir().join(format!("caucus-ncco-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rec);
    let b = Bridge::start(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n\
         [events]\nurl = \"{}\"\nformat = \"vonage\"\nsigning = \"jwt\"\nsecret = \"{SIGNING}\"\n\
         [recording]\ndir = \"{}\"\n\
         [routing]\nanswer_url = \"http://{}/answer\"\nanswer_timeout_ms = 5000\n\
         [[room]]\nname = \"demo\"\n",
        hooks.url(),
        rec.display(),
        app.addr
    ))
    .with_api(api);
    let api = SocketAddr::from(([127, 0, 0, 1], api));

    // the attendee: welcome speech, then the MP3 while nobody starts the room
    let mut att = Ua::new(b.sip, "attendee", CodecKind::Pcmu, false, "att");
    assert_eq!(att.call(""), 200);
    let mut ast = Stream::new(CodecKind::Pcmu);
    ast.run(&att, ATT_HZ, Duration::from_secs(5));
    if espeak {
        assert!(
            speech_like(&ast.heard[..8000.min(ast.heard.len())]),
            "the attendee does not hear the welcome speech first"
        );
    }
    let tail = &ast.heard[ast.heard.len() - 8000..];
    let music = db(goertzel(tail, 8000.0, MUSIC_HZ));
    assert!(
        music > 50.0,
        "the attendee does not hear the MP3 music: {music:.1} dB"
    );
    let parts = request(
        api,
        "GET",
        "/v1/rooms/nexmo-conference-moderated/participants",
        Some(TOKEN),
        None,
    )
    .json();
    assert_eq!(parts[0]["state"], "waiting", "{parts}");

    // the moderator: speech first, then the room with the attendee in it
    let mut moderator = Ua::new(b.sip, "moderator", CodecKind::Pcmu, false, "mod");
    assert_eq!(moderator.call(""), 200);
    let mut mst = Stream::new(CodecKind::Pcmu);
    std::thread::scope(|s| {
        let a = s.spawn(|| ast.run(&att, ATT_HZ, Duration::from_secs(6)));
        mst.run(&moderator, MOD_HZ, Duration::from_secs(6));
        a.join().unwrap();
    });
    if espeak {
        assert!(
            speech_like(&mst.heard[..8000]),
            "the moderator does not hear the welcome speech first"
        );
    }
    let (m_tail, a_tail) = (
        &mst.heard[mst.heard.len() - 8000..],
        &ast.heard[ast.heard.len() - 8000..],
    );
    let (m_hears_a, a_hears_m) = (
        db(goertzel(m_tail, 8000.0, ATT_HZ)),
        db(goertzel(a_tail, 8000.0, MOD_HZ)),
    );
    let a_music = db(goertzel(a_tail, 8000.0, MUSIC_HZ));
    eprintln!(
        "moderator hears the attendee at {m_hears_a:.1} dB; the attendee hears the moderator at {a_hears_m:.1} dB, the music at {a_music:.1}"
    );
    assert!(
        m_hears_a > 50.0 && a_hears_m > 50.0,
        "the room did not start with the moderator"
    );
    assert!(
        a_music < a_hears_m - 30.0,
        "the music goes on after the moderator came"
    );

    // the moderator leaves: endOnExit ends the call for the attendee
    assert_eq!(moderator.hangup(), 200);
    assert!(
        bye_within(&mut att, &mut ast, ATT_HZ, 3),
        "no BYE after the moderator left"
    );

    // the recording (record: true) holds both callers' tones; Vonage's record event
    assert!(
        hooks.wait_for(Duration::from_secs(10), |evs| evs
            .iter()
            .any(|e| e.get("recording_url").is_some())),
        "no record event: {:?}",
        hooks.events()
    );
    let ev = hooks
        .events()
        .into_iter()
        .find(|e| e.get("recording_url").is_some())
        .unwrap();
    for k in [
        "recording_uuid",
        "start_time",
        "end_time",
        "size",
        "conversation_uuid",
    ] {
        assert!(ev.get(k).is_some(), "record event without {k}: {ev}");
    }
    let url = ev["recording_url"].as_str().unwrap();
    let path = url
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    let wav = request(api, "GET", &path, Some(TOKEN), None);
    assert_eq!(wav.status, 200);
    let samples: Vec<i16> = wav.body[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let (r_mod, r_att) = (
        db(goertzel(&samples, 8000.0, MOD_HZ)),
        db(goertzel(&samples, 8000.0, ATT_HZ)),
    );
    assert!(
        r_mod > 40.0 && r_att > 40.0,
        "the recording lacks a caller: {r_mod:.1} / {r_att:.1} dB"
    );
    // nothing was skipped in silence: no error events
    let events = hooks.events();
    assert!(!events.iter().any(|e| e["type"] == "error"), "{events:?}");

    // Vonage's call status events, per leg, under the uuid the answer request
    // named; every delivery signed
    let asked: Vec<_> = app.hooks.lock().unwrap().clone();
    assert!(asked.iter().all(|h| h.method == "GET"), "answer_url by GET");
    for h in &asked {
        let uuid = h.params()["uuid"].as_str().unwrap().to_string();
        let to = h.params()["to"].as_str().unwrap().to_string();
        let statuses: Vec<&str> = events
            .iter()
            .filter(|e| e["uuid"] == uuid.as_str())
            .filter_map(|e| e["status"].as_str())
            .collect();
        assert_eq!(
            statuses,
            ["started", "ringing", "answered", "completed"],
            "leg {uuid} ({to}): {events:?}"
        );
        let done = events
            .iter()
            .find(|e| e["uuid"] == uuid.as_str() && e["status"] == "completed")
            .unwrap();
        assert_eq!(done["direction"], "inbound");
        assert_eq!(done["to"], to.as_str());
        assert!(
            done["duration"]
                .as_str()
                .is_some_and(|d| d.parse::<u64>().is_ok())
        );
    }
    assert!(
        hooks.hooks.lock().unwrap().iter().all(jwt_signed),
        "an event without a valid JWT"
    );
    let _ = std::fs::remove_dir_all(&rec);
}

#[test]
fn an_action_that_cannot_run_is_reported_and_the_next_one_runs() {
    // connect to a phone (unsupported), a notify the app answers with nothing
    // (the NCCO goes on), a missing file, a wait, the conversation
    let app = Receiver::start_with(
        0,
        Arc::new(|hook: &http::Hook| {
            if hook.target.starts_with("/notify") {
                return (200, String::new());
            }
            let host = hook.header("host").unwrap_or("").to_string();
            (
                200,
                format!(
                    r#"[{{"action":"connect","endpoint":[{{"type":"phone","number":"447700900000"}}]}},{{"action":"notify","payload":{{"step":"greeted"}},"eventUrl":["http://{host}/notify"]}},{{"action":"stream","streamUrl":["/nonexistent/music.mp3"]}},{{"action":"wait","timeout":0.5}},{{"action":"conversation","name":"demo"}}]"#
                ),
            )
        }),
    );
    let hooks = Receiver::start(0);
    let b = Bridge::start(&format!(
        "[events]\nurl = \"{}\"\n[routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        hooks.url(),
        app.addr
    ));
    let mut a = Ua::new(b.sip, "demo", CodecKind::Pcmu, false, "a");
    let mut c = Ua::new(b.sip, "demo", CodecKind::Pcmu, false, "c");
    assert_eq!(a.call(""), 200);
    assert_eq!(c.call(""), 200);
    // after the half-second wait both are in the room
    let (mut sa, mut sc) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    std::thread::scope(|s| {
        let t = s.spawn(|| sc.run(&c, ATT_HZ, Duration::from_secs(3)));
        sa.run(&a, MOD_HZ, Duration::from_secs(3));
        t.join().unwrap();
    });
    let tail = &sa.heard[sa.heard.len() - 8000..];
    assert!(
        db(goertzel(tail, 8000.0, ATT_HZ)) > 50.0,
        "the call did not go on to its conversation"
    );
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| {
            let errs: Vec<&str> = evs
                .iter()
                .filter(|e| e["type"] == "error")
                .filter_map(|e| e["reason"].as_str())
                .collect();
            errs.iter().any(|r| r.contains("connect")) && errs.iter().any(|r| r.contains("stream"))
        }),
        "the unsupported connect and the missing file are not reported: {:?}",
        hooks.events()
    );
    // each call's notify reached the app with its payload
    let notified: Vec<_> = app
        .hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.target.starts_with("/notify"))
        .map(|h| h.json())
        .collect();
    assert_eq!(notified.len(), 2);
    assert!(
        notified.iter().all(|n| n["step"] == "greeted"),
        "{notified:?}"
    );
}

#[test]
fn the_fallback_answer_url_is_asked_when_the_first_fails_with_the_x_headers() {
    // the first answer server is down; the fallback one routes by a SIP header
    let dead = free_port();
    let app = Receiver::start_with(
        0,
        Arc::new(|hook: &http::Hook| {
            let room = hook.params()["SipHeader_X-Meeting"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (
                200,
                format!(r#"[{{"action":"conversation","name":"{room}"}}]"#),
            )
        }),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://127.0.0.1:{dead}/answer\"\n\
         fallback_answer_url = \"http://{}/fallback\"\nanswer_fallback = \"reject\"\n\
         answer_timeout_ms = 1000\n[[room]]\nname = \"demo\"\n",
        app.addr
    ));
    let mut a = Ua::new(b.sip, "anything", CodecKind::Pcmu, false, "xa");
    let mut c = Ua::new(b.sip, "else", CodecKind::Pcmu, false, "xc");
    for ua in [&mut a, &mut c] {
        ua.extra_headers = "X-Meeting: weekly-7\r\n".into();
        assert_eq!(ua.call(""), 200);
    }
    let (mut sa, mut sc) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    std::thread::scope(|s| {
        let t = s.spawn(|| sc.run(&c, ATT_HZ, Duration::from_secs(2)));
        sa.run(&a, MOD_HZ, Duration::from_secs(2));
        t.join().unwrap();
    });
    let tail = &sa.heard[sa.heard.len() - 4000..];
    assert!(
        db(goertzel(tail, 8000.0, ATT_HZ)) > 50.0,
        "the two callers with the same X-Meeting are not in one room"
    );
    let asked = app.hooks.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert!(asked.iter().all(|h| h.target.starts_with("/fallback?")));
}

#[test]
fn the_shipped_example_server_runs_the_guides_conference() {
    // conf/vonage-example/answer_server.py, the migration path the README gives
    let Ok(probe) = std::process::Command::new("python3")
        .arg("--version")
        .output()
    else {
        eprintln!("python3 is not installed (.ci/test installs it): example left out");
        return;
    };
    assert!(probe.status.success());
    let port = free_port();
    let events = std::env::temp_dir().join(format!("caucus-example-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&events);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/vonage-example/answer_server.py"
    );
    let mut server = std::process::Command::new("python3")
        .args([script, "--port", &port.to_string(), "--music", &mp3()])
        .arg("--events")
        .arg(&events)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the example server did not start");
    let rec = std::env::temp_dir().join(format!("caucus-example-rec-{}", std::process::id()));
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://127.0.0.1:{port}/webhooks/answer\"\n\
         [events]\nurl = \"http://127.0.0.1:{port}/webhooks/events\"\nformat = \"vonage\"\n\
         [recording]\ndir = \"{}\"\n[[room]]\nname = \"demo\"\n",
        rec.display()
    ));
    let mut att = Ua::new(b.sip, "attendee", CodecKind::Pcmu, false, "xatt");
    assert_eq!(att.call(""), 200);
    let mut ast = Stream::new(CodecKind::Pcmu);
    ast.run(&att, ATT_HZ, Duration::from_secs(5));
    let tail = &ast.heard[ast.heard.len() - 8000..];
    assert!(
        db(goertzel(tail, 8000.0, MUSIC_HZ)) > 50.0,
        "the attendee waits without the music"
    );
    let mut moderator = Ua::new(b.sip, "moderator", CodecKind::Pcmu, false, "xmod");
    assert_eq!(moderator.call(""), 200);
    let mut mst = Stream::new(CodecKind::Pcmu);
    std::thread::scope(|s| {
        let a = s.spawn(|| ast.run(&att, ATT_HZ, Duration::from_secs(5)));
        mst.run(&moderator, MOD_HZ, Duration::from_secs(5));
        a.join().unwrap();
    });
    let m_tail = &mst.heard[mst.heard.len() - 8000..];
    assert!(
        db(goertzel(m_tail, 8000.0, ATT_HZ)) > 50.0,
        "the moderator does not hear the attendee"
    );
    assert_eq!(moderator.hangup(), 200);
    assert!(
        bye_within(&mut att, &mut ast, ATT_HZ, 3),
        "no BYE after the moderator left"
    );
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !(read().iter().filter(|e| e["status"] == "completed").count() == 2
            && read().iter().any(|e| e.get("recording_url").is_some()))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = read();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&events);
    let _ = std::fs::remove_dir_all(&rec);
    assert_eq!(
        got.iter().filter(|e| e["status"] == "answered").count(),
        2,
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|e| e["status"] == "completed").count(), 2);
    assert!(
        got.iter().any(|e| e.get("recording_url").is_some()),
        "no record event"
    );
}

#[test]
fn input_collects_digits_and_the_returned_ncco_takes_the_call_on() {
    // [talk, input{maxDigits: 4}]; the eventUrl gets dtmf.digits and returns a
    // conversation named after them: two callers who type 1234 meet there
    let app = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = app.clone();
    let espeak = have_espeak();
    let server = Receiver::start_with(
        0,
        Arc::new(move |hook: &http::Hook| {
            if hook.target.starts_with("/input") {
                let v = hook.json();
                seen.lock().unwrap().push(v.clone());
                let digits = v["dtmf"]["digits"].as_str().unwrap_or("").to_string();
                if digits.is_empty() {
                    return (200, String::new());
                }
                return (
                    200,
                    format!(r#"[{{"action":"conversation","name":"code-{digits}"}}]"#),
                );
            }
            let port = hook.header("host").unwrap_or("").to_string();
            let talk = if espeak {
                r#"{"action":"talk","text":"Please enter your code"},"#
            } else {
                ""
            };
            (
                200,
                format!(
                    r#"[{talk}{{"action":"input","type":["dtmf"],"dtmf":{{"maxDigits":4,"timeOut":10}},"eventUrl":["http://{port}/input"]}},{{"action":"talk","text":"never reached"}}]"#
                ),
            )
        }),
    );
    let hooks = Receiver::start(0);
    let b = Bridge::start(&format!(
        "[events]\nurl = \"{}\"\nformat = \"vonage\"\n[routing]\nanswer_url = \"http://{}/answer\"\nanswer_timeout_ms = 5000\n[[room]]\nname = \"demo\"\n",
        hooks.url(),
        server.addr
    ));
    let mut a = Ua::new(b.sip, "support", CodecKind::Pcmu, false, "ia");
    let mut c = Ua::new(b.sip, "support", CodecKind::Pcmu, false, "ic");
    assert_eq!(a.call(""), 200);
    assert_eq!(c.call(""), 200);
    let (mut sa, mut sc) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    // the prompt plays first, then each types 1234 (once the prompt has ended:
    // keys during it are not the input's)
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            after_prompt(&c, &mut sc, espeak);
            sc.send_digits(&c, "1234");
        });
        after_prompt(&a, &mut sa, espeak);
        sa.send_digits(&a, "1234");
        t.join().unwrap();
    });
    if espeak {
        assert!(
            speech_like(&sa.heard[..16000]),
            "the caller does not hear the talk before the input"
        );
    }
    // in code-1234 now: they hear each other
    let (mut heard_a, mut heard_c) = (Vec::new(), Vec::new());
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            sc.run(&c, ATT_HZ, Duration::from_secs(3));
            heard_c = sc.heard[sc.heard.len() - 8000..].to_vec();
        });
        sa.run(&a, MOD_HZ, Duration::from_secs(3));
        heard_a = sa.heard[sa.heard.len() - 8000..].to_vec();
        t.join().unwrap();
    });
    let inputs = app.lock().unwrap().clone();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    for i in &inputs {
        assert_eq!(i["dtmf"]["digits"], "1234", "{i}");
        assert_eq!(i["dtmf"]["timed_out"], false);
        assert!(i["uuid"].as_str().is_some() && i["to"].as_str().is_some());
    }
    eprintln!(
        "after the input: A hears C at {:.1} dB, C hears A at {:.1} dB",
        db(goertzel(&heard_a, 8000.0, ATT_HZ)),
        db(goertzel(&heard_c, 8000.0, MOD_HZ))
    );
    assert!(
        db(goertzel(&heard_a, 8000.0, ATT_HZ)) > 50.0
            && db(goertzel(&heard_c, 8000.0, MOD_HZ)) > 50.0,
        "the callers did not meet in the conversation their digits chose"
    );
    // the event server saw them move there (Vonage's transfer event)
    assert!(
        hooks.wait_for(Duration::from_secs(3), |evs| evs
            .iter()
            .filter(|e| e["type"] == "transfer" && e["conversation_uuid_to"] == "code-1234")
            .count()
            == 2),
        "{:?}",
        hooks.events()
    );
}

#[test]
fn an_ncco_that_ends_hangs_up_after_its_last_action() {
    let app = Receiver::start_with(
        0,
        Arc::new(|_: &http::Hook| (200, r#"[{"action":"wait","timeout":"0.5"}]"#.into())),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        app.addr
    ));
    let mut a = Ua::new(b.sip, "anyone", CodecKind::Pcmu, false, "end");
    assert_eq!(a.call(""), 200);
    let mut st = Stream::new(CodecKind::Pcmu);
    let started = Instant::now();
    assert!(
        bye_within(&mut a, &mut st, 0.0, 4),
        "no BYE at the NCCO's end"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "hung up before the wait: {after:?}"
    );
}

#[test]
fn can_hear_and_can_speak_lists_choose_who_hears_whom() {
    // A and B talk; C's conversation has canHear: [A]; D's canSpeak: [A] (D
    // whispers to A alone)
    let uuids = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        String,
    >::new()));
    let seen = uuids.clone();
    let app = Receiver::start_with(
        0,
        Arc::new(move |hook: &http::Hook| {
            let v = hook.params();
            let to = v["to"].as_str().unwrap_or("").to_string();
            let user = to
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap_or("")
                .to_string();
            let uuid = v["uuid"].as_str().unwrap_or("").to_string();
            let mut m = seen.lock().unwrap();
            m.insert(user.clone(), uuid);
            let a = m.get("a").cloned().unwrap_or_default();
            let extra = match user.as_str() {
                "c" => format!(r#","canHear":["{a}"]"#),
                "d" => format!(r#","canSpeak":["{a}"]"#),
                _ => String::new(),
            };
            (
                200,
                format!(r#"[{{"action":"conversation","name":"rel"{extra}}}]"#),
            )
        }),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        app.addr
    ));
    let tones = [("a", 450.0), ("b", 700.0), ("c", 0.0), ("d", 1100.0)];
    let mut uas: Vec<Ua> = tones
        .iter()
        .map(|(u, _)| Ua::new(b.sip, u, CodecKind::Pcmu, false, &format!("rel{u}")))
        .collect();
    for ua in &mut uas {
        assert_eq!(ua.call(""), 200);
    }
    let mut streams: Vec<Stream> = (0..4).map(|_| Stream::new(CodecKind::Pcmu)).collect();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for ((ua, st), (_, f)) in uas.iter().zip(streams.iter_mut()).zip(tones) {
            handles.push(s.spawn(move || st.run(ua, f, Duration::from_secs(3))));
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    let lv = |i: usize, f: f64| {
        let h = &streams[i].heard;
        db(goertzel(&h[h.len() - 8000..], 8000.0, f))
    };
    eprintln!(
        "C hears A {:.1} B {:.1} D {:.1}; A hears D {:.1}; B hears D {:.1}",
        lv(2, 450.0),
        lv(2, 700.0),
        lv(2, 1100.0),
        lv(0, 1100.0),
        lv(1, 1100.0)
    );
    assert!(lv(2, 450.0) > 50.0, "canHear [A]: C does not hear A");
    assert!(lv(2, 700.0) < 30.0, "canHear [A]: C hears B");
    assert!(lv(2, 1100.0) < 30.0, "canHear [A]: C hears D");
    assert!(lv(0, 1100.0) > 50.0, "canSpeak [A]: A does not hear D");
    assert!(lv(1, 1100.0) < 30.0, "canSpeak [A]: B hears D");
    assert!(lv(1, 450.0) > 50.0, "B does not hear A");
}

/// The INVITE a `connect` sends to the test UAS on `uas`, and where from.
fn connect_invite(uas: &std::net::UdpSocket) -> (caucus::sip::Message, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no INVITE from the connect");
        if let Ok((n, from)) = uas.recv_from(&mut buf)
            && let Ok(m) = caucus::sip::Message::parse(&buf[..n])
            && m.method() == Some(&Method::Invite)
        {
            return (m, from);
        }
    }
}

#[test]
fn connect_dials_a_sip_endpoint_and_bridges_both_ways() {
    // [talk?, connect{endpoint: sip UAS}]: the UAS answers, caller and UAS hear
    // each other; the UAS hanging up ends the caller's call
    let uas = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let uas_addr = uas.local_addr().unwrap();
    let app = Receiver::start_with(
        0,
        Arc::new(move |_: &http::Hook| {
            (
                200,
                format!(
                    r#"[{{"action":"connect","timeout":"10","from":"4930555","endpoint":[{{"type":"sip","uri":"sip:agent@{uas_addr}"}}]}}]"#
                ),
            )
        }),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://{}/answer\"\n\
         [dialout]\nallowed_destinations = [\"sip:*@127.0.0.1:*\"]\n[[room]]\nname = \"demo\"\n",
        app.addr
    ));
    let mut caller = Ua::new(b.sip, "hotline", CodecKind::Pcmu, false, "conn");
    assert_eq!(caller.call(""), 200);
    // the UAS: the INVITE, 200 with our media, the ACK
    let (invite, from) = connect_invite(&uas);
    assert!(invite.header("From").unwrap().contains("4930555"));
    let mut media = Ua::new(b.sip, "x", CodecKind::Pcmu, false, "connmedia");
    let offer = caucus::sdp::SessionDescription::parse(&invite.body).unwrap();
    let (_, p) = caucus::sdp::select_audio(&offer, || None).unwrap();
    media.remote_rtp = Some(SocketAddr::new(p.remote_ip.unwrap(), p.remote_port));
    media.pt = 0;
    let answer = common::sdp_offer_with(
        media.rtp.local_addr().unwrap().port(),
        CodecKind::Pcmu,
        "",
        false,
    );
    let to_hdr = format!("{};tag=agent", invite.header("To").unwrap());
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {to_hdr}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:agent@{uas_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        invite.header("Via").unwrap(),
        invite.header("From").unwrap(),
        invite.header("Call-ID").unwrap(),
        invite.header("CSeq").unwrap(),
        answer.len()
    );
    uas.send_to(ok.as_bytes(), from).unwrap();
    let (mut sc, mut sm) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    std::thread::scope(|s| {
        let t = s.spawn(|| sm.run(&media, ATT_HZ, Duration::from_secs(3)));
        sc.run(&caller, MOD_HZ, Duration::from_secs(3));
        t.join().unwrap();
    });
    let tail = |h: &[i16]| h[h.len() - 8000..].to_vec();
    let (c_hears, m_hears) = (tail(&sc.heard), tail(&sm.heard));
    assert!(
        db(goertzel(&c_hears, 8000.0, ATT_HZ)) > 50.0,
        "the caller does not hear the far end"
    );
    assert!(
        db(goertzel(&m_hears, 8000.0, MOD_HZ)) > 50.0,
        "the far end does not hear the caller"
    );
    // the far end hangs up: BYE in its dialog; the caller's call ends
    let bye = format!(
        "BYE sip:caucus@{} SIP/2.0\r\nVia: SIP/2.0/UDP {uas_addr};branch=z9hG4bKagentbye\r\nMax-Forwards: 70\r\nFrom: {to_hdr}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        b.sip,
        invite.header("From").unwrap(),
        invite.header("Call-ID").unwrap(),
    );
    uas.send_to(bye.as_bytes(), from).unwrap();
    assert!(
        bye_within(&mut caller, &mut sc, MOD_HZ, 3),
        "the caller's call goes on after the far end hung up"
    );
}

#[test]
fn record_records_the_caller_until_its_key_and_reports_to_its_event_url() {
    // A: [record{endOnKey "#", beepStart, eventUrl /rec}, conversation]; B: the
    // conversation only. A's recording holds A's tone and ends at "#".
    let app = Receiver::start_with(
        0,
        Arc::new(|hook: &http::Hook| {
            if hook.target.starts_with("/rec") {
                return (200, String::new());
            }
            let v = hook.params();
            let host = hook.header("host").unwrap_or("").to_string();
            let record = if v["to"].as_str().unwrap_or("").starts_with("sip:taped@") {
                format!(
                    r##"{{"action":"record","format":"wav","endOnKey":"#","beepStart":"true","eventUrl":["http://{host}/rec"]}},"##
                )
            } else {
                String::new()
            };
            (
                200,
                format!(r#"[{record}{{"action":"conversation","name":"desk"}}]"#),
            )
        }),
    );
    let api = free_port();
    let rec = std::env::temp_dir().join(format!("caucus-ncco-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rec);
    let b = Bridge::start(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n[recording]\ndir = \"{}\"\n\
         [routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        rec.display(),
        app.addr
    ))
    .with_api(api);
    let api = SocketAddr::from(([127, 0, 0, 1], api));
    let mut a = Ua::new(b.sip, "taped", CodecKind::Pcmu, false, "ra");
    let mut c = Ua::new(b.sip, "plain", CodecKind::Pcmu, false, "rc");
    assert_eq!(a.call(""), 200);
    assert_eq!(c.call(""), 200);
    let (mut sa, mut sc) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    std::thread::scope(|s| {
        let t = s.spawn(|| sc.run(&c, ATT_HZ, Duration::from_secs(3)));
        sa.run(&a, MOD_HZ, Duration::from_secs(3));
        sa.send_digits(&a, "#");
        t.join().unwrap();
    });
    assert!(
        app.wait_for(Duration::from_secs(10), |evs| evs
            .iter()
            .any(|e| e.get("recording_url").is_some())),
        "no record event at the record action's eventUrl: {:?}",
        app.events()
    );
    let ev = app
        .events()
        .into_iter()
        .find(|e| e.get("recording_url").is_some())
        .unwrap();
    let url = ev["recording_url"].as_str().unwrap();
    let path = url
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    let wav = request(api, "GET", &path, Some(TOKEN), None);
    assert_eq!(wav.status, 200);
    let samples: Vec<i16> = wav.body[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let secs = samples.len() as f64 / 8000.0;
    let (own, other) = (
        db(goertzel(&samples, 8000.0, MOD_HZ)),
        db(goertzel(&samples, 8000.0, ATT_HZ)),
    );
    eprintln!("record: {secs:.1} s, the caller at {own:.1} dB, the other at {other:.1} dB");
    assert!(own > 40.0, "the recording lacks the caller");
    assert!(
        other < own - 20.0,
        "the recording is the room, not the caller"
    );
    assert!(
        secs > 2.0 && secs < 4.5,
        "the recording did not end at the key: {secs:.1} s"
    );
    // the call goes on after the recording ended
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&c, ATT_HZ, Duration::from_millis(500));
    let _ = std::fs::remove_dir_all(&rec);
}

/// A WebSocket server for one connection: the first text frame, then a burst
/// of `secs` of a tone at 16 kHz (the bridge paces it), then every binary
/// frame until the bridge closes.
struct SocketServer {
    addr: SocketAddr,
    done: std::thread::JoinHandle<(String, Vec<usize>, Vec<i16>, bool)>,
}

impl SocketServer {
    fn start(tone_hz: f64, secs: usize) -> SocketServer {
        use tokio_tungstenite::tungstenite::{Message, accept};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let done = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut ws = accept(tcp).unwrap();
            let first = match ws.read().unwrap() {
                Message::Text(t) => t.to_string(),
                other => panic!("first frame not text: {other:?}"),
            };
            let mut phase = 0.0f64;
            for _ in 0..secs * 50 {
                let frame: Vec<u8> = (0..320)
                    .flat_map(|_| {
                        phase += 2.0 * std::f64::consts::PI * tone_hz / 16000.0;
                        ((6000.0 * phase.sin()) as i16).to_le_bytes()
                    })
                    .collect();
                ws.send(Message::binary(frame)).unwrap();
            }
            let (mut sizes, mut pcm, mut closed) = (Vec::new(), Vec::new(), false);
            loop {
                match ws.read() {
                    Ok(Message::Binary(b)) => {
                        sizes.push(b.len());
                        pcm.extend(b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
                    }
                    Ok(Message::Close(_)) => {
                        closed = true;
                        let _ = ws.flush();
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            (first, sizes, pcm, closed)
        });
        SocketServer { addr, done }
    }
}

#[test]
fn connect_streams_the_call_to_a_websocket_and_plays_what_it_sends() {
    // [connect{endpoint: websocket, audio/l16;rate=16000, headers}]: the server
    // gets the headers in its first text frame, then 20 ms frames of 640 bytes
    // holding the caller's tone; the caller hears the tone the server sent
    // (all at once: the bridge paces it); the caller hanging up closes the socket
    let server = SocketServer::start(ATT_HZ, 2);
    let ws = server.addr;
    let app = Receiver::start_with(
        0,
        Arc::new(move |_: &http::Hook| {
            (
                200,
                format!(
                    r#"[{{"action":"connect","endpoint":[{{"type":"websocket","uri":"ws://{ws}/socket","content-type":"audio/l16;rate=16000","headers":{{"app":"caucus-test","lang":"en"}}}}]}}]"#
                ),
            )
        }),
    );
    let hooks = Receiver::start(0);
    let b = Bridge::start(&format!(
        "[events]\nurl = \"{}\"\nformat = \"vonage\"\n[routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        hooks.url(),
        app.addr
    ));
    let mut caller = Ua::new(b.sip, "bot", CodecKind::Pcmu, false, "wsc");
    assert_eq!(caller.call(""), 200);
    let mut sc = Stream::new(CodecKind::Pcmu);
    sc.run(&caller, MOD_HZ, Duration::from_secs(3));
    let heard = &sc.heard[sc.heard.len().saturating_sub(16000)..][..8000];
    let hears = db(goertzel(heard, 8000.0, ATT_HZ));
    caller.hangup();
    let (first, sizes, pcm, closed) = server.done.join().unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["event"], "websocket:connected", "{first}");
    assert_eq!(first["content-type"], "audio/l16;rate=16000");
    assert_eq!(
        (&first["app"], &first["lang"]),
        (&"caucus-test".into(), &"en".into())
    );
    assert!(sizes.len() > 100, "{} frames", sizes.len());
    assert!(sizes.iter().all(|&n| n == 640), "{sizes:?}");
    let tail = &pcm[pcm.len().saturating_sub(16000)..];
    let server_hears = db(goertzel(tail, 16000.0, MOD_HZ));
    eprintln!(
        "the caller hears the server at {hears:.1} dB, the server hears the caller at {server_hears:.1} dB"
    );
    assert!(
        hears > 50.0,
        "the caller does not hear what the server sent"
    );
    assert!(server_hears > 50.0, "the server does not hear the caller");
    assert!(closed, "the socket was not closed when the caller hung up");
    assert!(
        hooks.wait_for(Duration::from_secs(5), |evs| evs
            .iter()
            .filter(|e| e["status"] == "completed")
            .count()
            >= 2),
        "{:?}",
        hooks.events()
    );
    assert!(
        hooks
            .events()
            .iter()
            .any(|e| e["to"].as_str().is_some_and(|t| t.starts_with("ws://"))),
        "no event for the websocket leg: {:?}",
        hooks.events()
    );
}

#[test]
fn a_key_barges_in_on_a_stream_and_counts_for_the_input() {
    // [stream{10 s tone, bargeIn}, input{maxDigits 2}]: the caller hears the
    // tone, types 42 a second in; the input gets "42" and the tone stops there
    let dir = std::env::temp_dir().join(format!("caucus-barge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("menu.wav");
    common::write_wav(&wav, 8000, 1, ATT_HZ, 10.0);
    let app = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = app.clone();
    let wav_path = wav.display().to_string();
    let server = Receiver::start_with(
        0,
        Arc::new(move |hook: &http::Hook| {
            if hook.target.starts_with("/input") {
                seen.lock().unwrap().push(hook.json());
                return (
                    200,
                    r#"[{"action":"conversation","name":"after-menu"}]"#.into(),
                );
            }
            let host = hook.header("host").unwrap_or("").to_string();
            (
                200,
                format!(
                    r#"[{{"action":"stream","streamUrl":["{wav_path}"],"bargeIn":true}},{{"action":"input","type":["dtmf"],"dtmf":{{"maxDigits":2,"timeOut":10}},"eventUrl":["http://{host}/input"]}}]"#
                ),
            )
        }),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://{}/answer\"\n[[room]]\nname = \"demo\"\n",
        server.addr
    ));
    let mut a = Ua::new(b.sip, "menu", CodecKind::Pcmu, false, "barge");
    assert_eq!(a.call(""), 200);
    let mut sa = Stream::new(CodecKind::Pcmu);
    sa.run(&a, 0.0, Duration::from_millis(1500));
    let before = sa.heard.len();
    sa.send_digits(&a, "42");
    sa.run(&a, 0.0, Duration::from_secs(2));
    let during = &sa.heard[before.saturating_sub(4000)..before];
    let after = &sa.heard[sa.heard.len() - 4000..];
    let (d, f) = (
        db(goertzel(during, 8000.0, ATT_HZ)),
        db(goertzel(after, 8000.0, ATT_HZ)),
    );
    eprintln!("the stream before the keys at {d:.1} dB, after them at {f:.1} dB");
    assert!(d > 50.0, "the stream was not heard");
    assert!(f < 20.0, "the stream goes on after the key");
    let inputs = app.lock().unwrap().clone();
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    assert_eq!(inputs[0]["dtmf"]["digits"], "42");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_synchronous_connect_that_fails_takes_the_ncco_its_event_url_returns() {
    // [connect{eventType: synchronous, eventUrl, endpoint: sip UAS}]: the UAS
    // answers 486; the connect's event goes to its eventUrl, whose NCCO
    // (conversation "demo") takes the caller on: it hears the room instead of
    // being hung up
    let uas = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let uas_addr = uas.local_addr().unwrap();
    let app = Receiver::start_with(
        0,
        Arc::new(move |h: &http::Hook| {
            let to = h.params()["to"].as_str().unwrap_or("").to_string();
            if h.target.starts_with("/connect-event") || !to.contains("hotline") {
                return (
                    200,
                    r#"[{"action":"conversation","name":"demo"}]"#.to_string(),
                );
            }
            let me = h.header("host").unwrap_or("127.0.0.1").to_string();
            (
                200,
                format!(
                    r#"[{{"action":"connect","timeout":"10","eventType":"synchronous","eventUrl":["http://{me}/connect-event"],"endpoint":[{{"type":"sip","uri":"sip:agent@{uas_addr}"}}]}}]"#
                ),
            )
        }),
    );
    let b = Bridge::start(&format!(
        "[routing]\nanswer_url = \"http://{}/answer\"\n\
         [dialout]\nallowed_destinations = [\"sip:*@127.0.0.1:*\"]\n[[room]]\nname = \"demo\"\n",
        app.addr
    ));
    // someone in demo (the app sends every call but the hotline's there)
    let mut other = Ua::new(b.sip, "demo", CodecKind::Pcmu, false, "syncother");
    let mut caller = Ua::new(b.sip, "hotline", CodecKind::Pcmu, false, "syncconn");
    assert_eq!(caller.call(""), 200);
    let (invite, from) = connect_invite(&uas);
    let busy = format!(
        "SIP/2.0 486 Busy Here\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=busy\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        invite.header("Via").unwrap(),
        invite.header("From").unwrap(),
        invite.header("To").unwrap(),
        invite.header("Call-ID").unwrap(),
        invite.header("CSeq").unwrap(),
    );
    uas.send_to(busy.as_bytes(), from).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app
        .hooks
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.target.starts_with("/connect-event"))
    {
        assert!(
            Instant::now() < deadline,
            "the connect's event never reached its eventUrl"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let event = app
        .hooks
        .lock()
        .unwrap()
        .clone()
        .into_iter()
        .find(|h| h.target.starts_with("/connect-event"))
        .unwrap()
        .json();
    assert_eq!(event["status"], "failed", "{event}");
    assert_eq!(other.call(""), 200);
    let (mut sc, mut so) = (Stream::new(CodecKind::Pcmu), Stream::new(CodecKind::Pcmu));
    std::thread::scope(|s| {
        let t = s.spawn(|| so.run(&other, ATT_HZ, Duration::from_secs(3)));
        sc.run(&caller, MOD_HZ, Duration::from_secs(3));
        t.join().unwrap();
    });
    let heard = db(goertzel(&sc.heard[sc.heard.len() - 8000..], 8000.0, ATT_HZ));
    assert!(
        heard > 50.0,
        "the caller is not in the room the eventUrl's NCCO named: {heard:.1} dB"
    );
}
