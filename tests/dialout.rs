//! Dial-out against real peers on loopback: a test UAS that answers (and hears the
//! room), one that rings forever (CANCEL at the timeout, "unanswered" event), one
//! that rejects, one that challenges with digest; SIPp's stock UAS with RTP echo;
//! and baresip answering automatically. Audio is judged by Goertzel, both ways.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use caucus::sdp::{self, CodecKind, SessionDescription};
use caucus::sip::digest::{self, Challenge, Credentials};
use caucus::sip::{Method, StartLine};
use common::http::{Receiver, request};
use common::{Bridge, Stream, Ua, Uas, db, free_port, goertzel};

const TOKEN: &str = "test-token-0123456789";

struct Rig {
    bridge: Bridge,
    api: SocketAddr,
    hooks: Receiver,
}

fn rig(extra: &str) -> Rig {
    let hooks = Receiver::start(0);
    let port = free_port();
    let cfg = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
         [events]\nurl = \"{}\"\n\
         [dialout]\nallowed_destinations = [\"sip:*@127.0.0.1:*\"]\nmax_outbound_calls = 4\n\
         {extra}\n[[room]]\nname = \"demo\"\n",
        hooks.url()
    );
    Rig {
        bridge: Bridge::start(&cfg),
        api: SocketAddr::from(([127, 0, 0, 1], port)),
        hooks,
    }
}

impl Rig {
    fn dial(&self, to: &str, timeout_s: u64) -> (u16, serde_json::Value) {
        let r = request(
            self.api,
            "POST",
            "/v1/rooms/demo/dial",
            Some(TOKEN),
            Some(&format!(r#"{{"to": "{to}", "timeout_s": {timeout_s}}}"#)),
        );
        let v = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            r.json()
        };
        (r.status, v)
    }
    /// Wait for a dial event with this status (type dial:ringing, dial:answered,
    /// or dial:failed for every way of not connecting).
    fn wait_dial(&self, status: &str, secs: u64) -> serde_json::Value {
        let is = |e: &serde_json::Value| {
            e["status"] == status && e["type"].as_str().is_some_and(|t| t.starts_with("dial:"))
        };
        assert!(
            self.hooks
                .wait_for(Duration::from_secs(secs), |evs| evs.iter().any(is)),
            "no dial event with status {status}; got {:?}",
            self.hooks
                .events()
                .iter()
                .map(|e| (e["type"].clone(), e["status"].clone()))
                .collect::<Vec<_>>()
        );
        self.hooks.events().into_iter().find(is).unwrap()
    }
}

fn tone_level(x: &[i16], f: f64) -> f64 {
    db(goertzel(&x[x.len().saturating_sub(8000)..], 8000.0, f))
}

#[test]
fn dialled_uas_answers_hears_the_room_and_is_heard() {
    let r = rig("");
    let mut member = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "m1");
    assert_eq!(member.call(""), 200);
    let uas = Uas::new();
    let (code, v) = r.dial(&uas.uri(), 10);
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["state"], "calling");
    let (invite, from) = uas.recv_method(Method::Invite, 3);
    uas.respond(&invite, from, 180, "", "");
    r.wait_dial("ringing", 3);
    // answer with PCMU from an RTP socket of our own (a Ua used only for media)
    let media = uas.answer_pcmu(&invite, from, r.bridge.sip);
    let (ack, _) = uas.recv_method(Method::Ack, 3);
    assert!(ack.header("To").unwrap().contains("tag=uas"));
    r.wait_dial("answered", 3);
    // both talk: the dialled leg hears the member, the member hears it
    let heard = common::converse(
        &[(&media, 1000.0), (&member, 440.0)],
        Duration::from_secs(3),
    );
    let (heard_uas, heard_member) = (&heard[0], &heard[1]);
    assert!(
        tone_level(heard_uas, 440.0) > 50.0,
        "dialled leg does not hear the room"
    );
    assert!(
        tone_level(heard_member, 1000.0) > 50.0,
        "room does not hear the dialled leg"
    );
    let parts = request(
        r.api,
        "GET",
        "/v1/rooms/demo/participants",
        Some(TOKEN),
        None,
    )
    .json();
    assert_eq!(parts.as_array().unwrap().len(), 2);
    // the room ends: the dialled leg gets a BYE in its dialog
    let e = request(r.api, "DELETE", "/v1/rooms/demo", Some(TOKEN), None);
    assert_eq!(e.status, 204);
    let (bye, from) = uas.recv_method(Method::Bye, 3);
    assert!(bye.header("From").unwrap().contains("tag="));
    uas.respond(&bye, from, 200, "", "");
    let _ = member.hangup();
}

#[test]
fn unanswered_rejected_and_challenged_dials() {
    let r = rig(
        "[[trunk]]\nname = \"pbx\"\nhost = \"127.0.0.1\"\nrealm = \"pbx.test\"\nusername = \"bridge\"\npassword = \"pw-0123\"\n",
    );
    // rings forever: CANCEL after the 2 s timeout, 487, unanswered event
    let ringer = Uas::new();
    let started = Instant::now();
    assert_eq!(r.dial(&ringer.uri(), 2).0, 201);
    let (invite, from) = ringer.recv_method(Method::Invite, 3);
    ringer.respond(&invite, from, 180, "", "");
    let (cancel, from) = ringer.recv_method(Method::Cancel, 5);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "CANCEL after {waited:?}"
    );
    ringer.respond(&cancel, from, 200, "", "");
    ringer.respond(&invite, from, 487, "", "");
    let (ack, _) = ringer.recv_method(Method::Ack, 3);
    assert!(ack.header("CSeq").unwrap().ends_with("ACK"));
    let ev = r.wait_dial("unanswered", 3);
    assert_eq!(ev["direction"], "outbound");
    assert_eq!(ev["type"], "dial:failed");

    // rejects: failed with the status line
    let rejecter = Uas::new();
    assert_eq!(r.dial(&rejecter.uri(), 5).0, 201);
    let (invite, from) = rejecter.recv_method(Method::Invite, 3);
    rejecter.respond(&invite, from, 486, "", "");
    rejecter.recv_method(Method::Ack, 3);
    let ev = r.wait_dial("failed", 3);
    assert!(ev["reason"].as_str().unwrap().starts_with("486"), "{ev}");

    // challenges: the second INVITE carries a digest we can verify
    let guard = Uas::new();
    assert_eq!(r.dial(&guard.uri(), 5).0, 201);
    let (invite, from) = guard.recv_method(Method::Invite, 3);
    guard.respond(
        &invite,
        from,
        401,
        "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"n0nce\", algorithm=SHA-256, qop=\"auth\"\r\n",
        "",
    );
    guard.recv_method(Method::Ack, 3);
    let (again, from) = guard.recv_method(Method::Invite, 3);
    let auth = again.header("Authorization").expect("Authorization");
    let cnonce = auth
        .split("cnonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let c = Challenge::parse(
        "Digest realm=\"pbx.test\", nonce=\"n0nce\", algorithm=SHA-256, qop=\"auth\"",
    )
    .unwrap();
    let uri = match &again.start {
        StartLine::Request { uri, .. } => uri.clone(),
        _ => unreachable!(),
    };
    let want = digest::authorization(
        &c,
        &Credentials {
            username: "bridge",
            password: "pw-0123",
        },
        "INVITE",
        &uri,
        cnonce,
        1,
    );
    let response = |s: &str| {
        s.split("response=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .unwrap()
            .to_string()
    };
    assert_eq!(response(auth), response(&want), "digest response wrong");
    guard.respond(&again, from, 486, "", "");
    // out of policy: refused before any INVITE
    let (code, v) = r.dial("sip:premium@192.0.2.1:5060", 5);
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"], "dial_denied");
    let no_auth = request(
        r.api,
        "POST",
        "/v1/rooms/demo/dial",
        None,
        Some(r#"{"to": "sip:x@127.0.0.1:5999"}"#),
    );
    assert_eq!(no_auth.status, 401);
}

#[test]
fn sipp_uas_answers_a_dial_and_echoes_the_room() {
    let r = rig("");
    let sip_port = free_port();
    let media_port = free_port();
    let mut sipp = Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &sip_port.to_string(),
            "-mp",
            &media_port.to_string(),
            "-rtp_echo",
            "-m",
            "1",
            "-bg",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester): run the README's test command");
    let _ = sipp.wait();
    std::thread::sleep(Duration::from_millis(300));
    let mut member = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "s1");
    assert_eq!(member.call(""), 200);
    let (code, v) = r.dial(&format!("sip:service@127.0.0.1:{sip_port}"), 5);
    assert_eq!(code, 201, "{v}");
    r.wait_dial("answered", 5);
    // SIPp echoes what it hears: the member hears its own tone come back through
    // the SIPp leg, which proves that leg receives the room
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&member, 440.0, Duration::from_secs(3));
    let l = tone_level(&st.heard, 440.0);
    assert!(l > 45.0, "SIPp leg does not carry the room ({l:.1} dB)");
    let _ = member.hangup();
    let _ = request(r.api, "DELETE", "/v1/rooms/demo", Some(TOKEN), None);
    let _ = Command::new("pkill")
        .args(["-f", &format!("sipp -sn uas -i 127.0.0.1 -p {sip_port}")])
        .status();
}

#[test]
fn baresip_answers_a_dial_automatically() {
    if std::env::var_os("CAUCUS_SKIP_BARESIP").is_some() {
        return;
    }
    let r = rig("");
    let dir = std::env::temp_dir().join(format!("caucus-dial-baresip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tone = dir.join("tone.wav");
    common::write_wav(&tone, 8000, 1, 700.0, 20.0);
    let port = free_port();
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\naudio_player aufile,/dev/null\naudio_source aufile,{}\naudio_alert aufile,/dev/null\n\
module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n",
            tone.display(),
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:bob@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=PCMU/8000\n"),
    )
    .unwrap();
    let mut child = Command::new("baresip")
        .current_dir(&dir)
        .arg("-f")
        .arg(&dir)
        .args(["-t", "8"])
        .stdout(std::fs::File::create(dir.join("out.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baresip (Debian package baresip-core)");
    std::thread::sleep(Duration::from_millis(800));
    let mut member = Ua::new(r.bridge.sip, "demo", CodecKind::Pcmu, false, "b1");
    assert_eq!(member.call(""), 200);
    let (code, v) = r.dial(&format!("sip:bob@127.0.0.1:{port}"), 5);
    assert_eq!(code, 201, "{v}");
    r.wait_dial("answered", 5);
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&member, 440.0, Duration::from_secs(4));
    assert!(
        tone_level(&st.heard, 700.0) > 45.0,
        "room does not hear baresip"
    );
    let _ = member.hangup();
    let _ = child.wait();
    let dec = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded what it heard");
    let wav = std::fs::read(&dec).unwrap();
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // the loudest second of what baresip decoded holds the member's tone
    let best = samples
        .chunks(8000)
        .map(|c| db(goertzel(c, 8000.0, 440.0)))
        .fold(f64::MIN, f64::max);
    assert!(best > 45.0, "baresip does not hear the room ({best:.1} dB)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vonage_post_calls_dials_into_the_conversation_of_its_ncco() {
    let r = rig("");
    // the NCCO's conversation does not exist yet: created, as Vonage does
    let mut member = Ua::new(r.bridge.sip, "weekly", CodecKind::Pcmu, false, "vm");
    let uas = Uas::new();
    let body = format!(
        r#"{{"to":[{{"type":"sip","uri":"{}"}}],"from":{{"type":"phone","number":"4930123"}},
            "ncco":[{{"action":"conversation","name":"weekly"}}],"ringing_timer":10}}"#,
        uas.uri()
    );
    let resp = request(r.api, "POST", "/v1/calls", Some(TOKEN), Some(&body));
    assert_eq!(resp.status, 201, "{}", resp.text());
    let created = resp.json();
    assert_eq!(created["status"], "started");
    assert_eq!(created["direction"], "outbound");
    assert_eq!(created["conversation_uuid"], "weekly");
    let uuid = created["uuid"].as_str().unwrap().to_string();
    let (invite, from) = uas.recv_method(Method::Invite, 3);
    assert!(
        invite.header("From").unwrap().contains("4930123"),
        "the from number is the caller id"
    );
    let mut media = Ua::new(r.bridge.sip, "x", CodecKind::Pcmu, false, "vmedia");
    let offer = SessionDescription::parse(&invite.body).unwrap();
    let (_, p) = sdp::select_audio(&offer, || None).unwrap();
    media.remote_rtp = Some(SocketAddr::new(p.remote_ip.unwrap(), p.remote_port));
    media.pt = 0;
    let port = media.rtp.local_addr().unwrap().port();
    let answer = common::sdp_offer_with(port, CodecKind::Pcmu, "", false);
    uas.respond(
        &invite,
        from,
        200,
        &format!(
            "Contact: <sip:uas@{}>\r\nContent-Type: application/sdp\r\n",
            uas.sock.local_addr().unwrap()
        ),
        &answer,
    );
    uas.recv_method(Method::Ack, 3);
    r.wait_dial("answered", 3);
    assert_eq!(member.call(""), 200);
    let (heard_uas, heard_member) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(&media, 1000.0, Duration::from_secs(3));
            st.heard
        });
        let mut st = Stream::new(CodecKind::Pcmu);
        st.run(&member, 440.0, Duration::from_secs(3));
        (a.join().unwrap(), st.heard)
    });
    assert!(
        tone_level(&heard_uas, 440.0) > 50.0,
        "the called party does not hear the conversation"
    );
    assert!(
        tone_level(&heard_member, 1000.0) > 50.0,
        "the conversation does not hear the called party"
    );
    let call = request(
        r.api,
        "GET",
        &format!("/v1/calls/{uuid}"),
        Some(TOKEN),
        None,
    )
    .json();
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["conversation_uuid"], "weekly");
    assert_eq!(call["to"]["uri"], uas.uri().as_str());
    // not supported: Vonage's error shape
    let bad = request(
        r.api,
        "POST",
        "/v1/calls",
        Some(TOKEN),
        Some(
            r#"{"to":[{"type":"phone","number":"447700900000"}],"ncco":[{"action":"conversation","name":"weekly"}]}"#,
        ),
    );
    assert_eq!(bad.status, 501);
    assert!(bad.json()["detail"].as_str().unwrap().contains("phone"));
    let hang = request(
        r.api,
        "PUT",
        &format!("/v1/calls/{uuid}"),
        Some(TOKEN),
        Some(r#"{"action":"hangup"}"#),
    );
    assert_eq!(hang.status, 204);
    let (bye, from) = uas.recv_method(Method::Bye, 3);
    uas.respond(&bye, from, 200, "", "");
    let _ = member.hangup();
}
