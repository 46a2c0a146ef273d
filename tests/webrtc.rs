//! Browser participants over WHIP, with a str0m client standing in for the
//! browser (ICE, DTLS-SRTP, Opus) beside a SIP test UA in the same room: tokens,
//! PINs, audio both ways, mute from the API, leaving. The real-browser checks are
//! in `tests/browser.rs`.

mod common;

use std::time::{Duration, Instant};

use caucus::sdp::CodecKind;
use common::http::{request, sse};
use common::whip::WhipClient;
use common::{Bridge, Stream, Ua, db, goertzel};

const TOKEN: &str = "test-token-0123456789";

fn bridge(rooms: &str) -> Bridge {
    let api = common::free_port();
    Bridge::start(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n{rooms}"
    ))
    .with_api(api)
}

/// A join token for `room` from the join endpoint, or its refusal status.
fn join_token(b: &Bridge, room: &str, pin: Option<&str>) -> Result<serde_json::Value, u16> {
    let body = match pin {
        Some(p) => format!("{{\"pin\":\"{p}\",\"name\":\"web\"}}"),
        None => "{\"name\":\"web\"}".into(),
    };
    let r = request(
        b.api,
        "POST",
        &format!("/v1/rooms/{room}/join"),
        None,
        Some(&body),
    );
    if r.status == 200 {
        Ok(r.json())
    } else {
        Err(r.status)
    }
}

/// The SIP UA and the browser in `room` at once, each sending its tone for
/// `secs`; what each heard (the UA at 8 kHz, the browser at 48 kHz).
fn both_talk(b: &Bridge, web: &mut WhipClient, ua: &mut Ua, secs: f64) -> (Vec<i16>, Vec<i16>) {
    let dur = Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let sip = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(ua, 440.0, dur);
            st.heard
        });
        web.run(Some(1000.0), dur);
        let _ = b;
        (sip.join().unwrap(), web.heard.clone())
    })
}

#[test]
fn a_browser_and_a_phone_hear_each_other_and_not_themselves() {
    let b = bridge("[[room]]\nname = \"demo\"\n");
    let mut ua = Ua::new(b.sip, "demo", CodecKind::Pcmu, false, "phone");
    assert_eq!(ua.call(""), 200);
    let t = join_token(&b, "demo", None).expect("a join token");
    assert_eq!(t["role"], "participant");
    let token = t["token"].as_str().unwrap();
    // the live streams: every event for the API token, the room's for its token
    let all = sse(b.api, "/v1/events", TOKEN);
    let mine = sse(b.api, "/v1/rooms/demo/events", token);
    std::thread::sleep(Duration::from_millis(200));
    let mut web = WhipClient::join(b.api, "demo", token).expect("201 from WHIP");
    let joined = |rx: &std::sync::mpsc::Receiver<(String, String)>| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok((ev, data)) =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if ev == "participant:joined" {
                return Some(serde_json::from_str::<serde_json::Value>(&data).unwrap());
            }
        }
        None
    };
    let j = joined(&all).expect("/v1/events streams participant:joined");
    assert_eq!(j["conversation_uuid"], "demo");
    assert!(j["call_id"].as_str().unwrap().starts_with("webrtc-"));
    let j = joined(&mine).expect("the room's stream shows participant:joined");
    assert!(
        j.get("call_id").is_none(),
        "a participant's stream shows no call ids"
    );
    assert!(
        web.connect(Duration::from_secs(5)),
        "ICE and DTLS did not complete"
    );
    let (phone_heard, _) = both_talk(&b, &mut web, &mut ua, 3.0);
    let tail = &phone_heard[phone_heard.len().saturating_sub(8000)..];
    let (phone_hears_web, phone_hears_self) = (
        db(goertzel(tail, 8000.0, 1000.0)),
        db(goertzel(tail, 8000.0, 440.0)),
    );
    let wt = web.tail(1.0);
    let (web_hears_phone, web_hears_self) = (
        db(goertzel(wt, 48_000.0, 440.0)),
        db(goertzel(wt, 48_000.0, 1000.0)),
    );
    eprintln!(
        "phone hears web {phone_hears_web:.1} dB, itself {phone_hears_self:.1}; web hears phone {web_hears_phone:.1} dB, itself {web_hears_self:.1}"
    );
    assert!(
        phone_hears_web > 50.0,
        "the phone does not hear the browser: {phone_hears_web:.1} dB"
    );
    assert!(
        web_hears_phone > 50.0,
        "the browser does not hear the phone: {web_hears_phone:.1} dB"
    );
    assert!(
        phone_hears_self < phone_hears_web - 30.0,
        "the phone hears itself"
    );
    assert!(
        web_hears_self < web_hears_phone - 30.0,
        "the browser hears itself"
    );
    // the API lists both, with their kinds
    let list = request(
        b.api,
        "GET",
        "/v1/rooms/demo/participants",
        Some(TOKEN),
        None,
    )
    .json();
    let kinds: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sip", "webrtc"]);
    let metrics = request(b.api, "GET", "/metrics", Some(TOKEN), None).text();
    assert!(
        metrics.contains("caucus_legs{kind=\"webrtc\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("caucus_legs{kind=\"sip\"} 1"));
    // leaving by DELETE of the resource: gone from the room at once
    let start = Instant::now();
    assert_eq!(web.leave(), 200);
    loop {
        let n = request(
            b.api,
            "GET",
            "/v1/rooms/demo/participants",
            Some(TOKEN),
            None,
        )
        .json();
        if n.as_array().unwrap().len() == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the browser is still listed 2 s after DELETE"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(web.leave(), 404, "a deleted resource is gone");
    ua.hangup();
}

#[test]
fn tokens_admit_to_their_own_room_only_and_pins_are_judged() {
    let b = bridge(
        "[[room]]\nname = \"open\"\n[[room]]\nname = \"secret\"\npin = \"4321\"\nmoderator_pin = \"9999\"\n",
    );
    // the join page's question
    let q = request(b.api, "GET", "/v1/rooms/secret/join", None, None).json();
    assert_eq!(q["pin"], true);
    assert_eq!(
        request(b.api, "GET", "/v1/rooms/open/join", None, None).json()["pin"],
        false
    );
    assert_eq!(
        join_token(&b, "secret", Some("1111")).unwrap_err(),
        403,
        "a wrong PIN"
    );
    assert_eq!(join_token(&b, "secret", None).unwrap_err(), 403, "no PIN");
    assert_eq!(
        join_token(&b, "secret", Some("4321")).unwrap()["role"],
        "participant"
    );
    assert_eq!(
        join_token(&b, "secret", Some("9999")).unwrap()["role"],
        "moderator"
    );
    assert_eq!(join_token(&b, "nowhere", None).unwrap_err(), 404);
    // a token of room "open" does not admit into "secret"
    let open = join_token(&b, "open", None).unwrap();
    let t = open["token"].as_str().unwrap();
    let err = WhipClient::join(b.api, "secret", t).err().expect("refused");
    assert_eq!(err.0, 403, "{}", err.1);
    // a forged or missing token
    assert_eq!(
        WhipClient::join(b.api, "open", "x.y.z").err().unwrap().0,
        401
    );
    let mut forged = t.to_string();
    forged.replace_range(forged.len() - 4.., "0000");
    assert_eq!(
        WhipClient::join(b.api, "open", &forged).err().unwrap().0,
        401
    );
    // an invitation token from the API (and only with the API token)
    let r = request(
        b.api,
        "POST",
        "/v1/rooms/secret/tokens",
        Some(TOKEN),
        Some("{\"role\":\"moderator\",\"name\":\"Chair\",\"ttl_s\":600}"),
    );
    assert_eq!(r.status, 201);
    let invite = r.json();
    assert_eq!(invite["role"], "moderator");
    assert_eq!(
        request(b.api, "POST", "/v1/rooms/secret/tokens", None, Some("{}")).status,
        401
    );
    let mut web = WhipClient::join(b.api, "secret", invite["token"].as_str().unwrap())
        .expect("the invitation admits");
    assert!(web.connect(Duration::from_secs(5)));
    let list = request(
        b.api,
        "GET",
        "/v1/rooms/secret/participants",
        Some(TOKEN),
        None,
    )
    .json();
    assert_eq!(list[0]["role"], "moderator");
    assert_eq!(list[0]["kind"], "webrtc");
    assert_eq!(list[0]["from"], "Chair");
    // admin routes: 401 without the token
    assert_eq!(request(b.api, "GET", "/v1/rooms", None, None).status, 401);
    assert_eq!(
        request(
            b.api,
            "GET",
            "/v1/rooms",
            Some(invite["token"].as_str().unwrap()),
            None
        )
        .status,
        401
    );
}

#[test]
fn muting_a_browser_silences_it_and_a_vanished_browser_is_removed() {
    let b = bridge("[[room]]\nname = \"demo\"\n");
    let mut ua = Ua::new(b.sip, "demo", CodecKind::Pcmu, false, "phone");
    assert_eq!(ua.call(""), 200);
    let t = join_token(&b, "demo", None).unwrap();
    let mut web = WhipClient::join(b.api, "demo", t["token"].as_str().unwrap()).unwrap();
    assert!(web.connect(Duration::from_secs(5)));
    let list = request(
        b.api,
        "GET",
        "/v1/rooms/demo/participants",
        Some(TOKEN),
        None,
    )
    .json();
    let id = list[1]["id"].as_u64().unwrap();
    let r = request(
        b.api,
        "PATCH",
        &format!("/v1/rooms/demo/participants/{id}"),
        Some(TOKEN),
        Some("{\"muted\":true}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (phone_heard, _) = both_talk(&b, &mut web, &mut ua, 2.0);
    let tail = &phone_heard[phone_heard.len().saturating_sub(8000)..];
    let level = db(goertzel(tail, 8000.0, 1000.0));
    assert!(
        level < 30.0,
        "a muted browser is still heard: {level:.1} dB"
    );
    // the browser vanishes (no DELETE, no more packets): removed within 30 s
    let start = Instant::now();
    drop(web);
    loop {
        let n = request(
            b.api,
            "GET",
            "/v1/rooms/demo/participants",
            Some(TOKEN),
            None,
        )
        .json();
        if n.as_array().unwrap().len() == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a vanished browser is still listed after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("a vanished browser was removed after {:?}", start.elapsed());
    ua.hangup();
}
