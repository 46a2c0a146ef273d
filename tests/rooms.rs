//! Rooms against the real binary on loopback. PIN entry: the caller hears the
//! prompt, types the PIN by RFC 4733 events, by SIP INFO, or in-band on a PCMU leg
//! without telephone-event, and then hears the room and is heard; three wrong PINs
//! end the call with a BYE. Moderated rooms: participants hear music, not each other,
//! until the moderator arrives; when the moderator leaves, everyone gets a BYE.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use caucus::media::{g711, rtp};
use caucus::sdp::CodecKind;
use caucus::sip::{Method, StartLine};
use common::{Bridge, Ua, db, goertzel};

const ROOMS: &str =
    "[[room]]\nname = \"secret\"\npin = \"4321\"\npin_retries = 3\npin_timeout_s = 5\n";

/// One 20 ms step of what a test caller sends.
#[derive(Clone, Copy)]
enum Step {
    Silence,
    Tone(f64),
    /// RFC 4733 event packet: key, packet index within the event (end from 3 on)
    Event(char, u32),
    /// in-band DTMF audio for a key
    Inband(char),
}

fn event_code(k: char) -> u8 {
    match k {
        '0'..='9' => k as u8 - b'0',
        '*' => 10,
        '#' => 11,
        _ => panic!("key {k}"),
    }
}

fn dtmf_freqs(k: char) -> (f64, f64) {
    let keys = ["123A", "456B", "789C", "*0#D"];
    let r = keys.iter().position(|row| row.contains(k)).unwrap();
    let c = keys[r].find(k).unwrap();
    (
        [697.0, 770.0, 852.0, 941.0][r],
        [1209.0, 1336.0, 1477.0, 1633.0][c],
    )
}

/// Steps that type `digits` as RFC 4733 events (6 packets each) or in-band tones
/// (100 ms on, 100 ms off).
fn keypad(digits: &str, inband: bool) -> Vec<Step> {
    let mut v = Vec::new();
    for k in digits.chars() {
        if inband {
            v.extend([Step::Inband(k); 5]);
        } else {
            v.extend((0..6).map(|i| Step::Event(k, i)));
        }
        v.extend([Step::Silence; 5]);
    }
    v
}

/// Send `steps` (one per 20 ms), recording the decoded PCMU that comes back.
fn drive(ua: &Ua, steps: &[Step]) -> Vec<i16> {
    let to: SocketAddr = ua.remote_rtp.unwrap();
    ua.rtp.set_nonblocking(true).unwrap();
    let mut heard = Vec::new();
    let mut pkt = [0u8; 172];
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    // a call's RTP sequence and clock run on across calls of drive()
    let first = ua
        .rtp_tick
        .fetch_add(steps.len() as u32, std::sync::atomic::Ordering::SeqCst);
    let mut event_ts = 0u32;
    for (i, step) in steps.iter().enumerate() {
        let t = first as usize + i;
        let seq = 100u16.wrapping_add(t as u16);
        let ts = t as u32 * 160;
        let len = match *step {
            Step::Event(k, i) => {
                if i == 0 {
                    event_ts = ts;
                }
                rtp::write_header(&mut pkt, 101, i == 0, seq, event_ts, 77);
                pkt[12] = event_code(k);
                pkt[13] = if i >= 3 { 0x8a } else { 0x0a };
                pkt[14..16].copy_from_slice(&((i as u16 + 1) * 160).to_be_bytes());
                16
            }
            _ => {
                let pcm: Vec<i16> = (0..160)
                    .map(|n| {
                        let x = (t * 160 + n) as f64 / 8000.0;
                        let s = |f: f64| (2.0 * std::f64::consts::PI * f * x).sin();
                        match *step {
                            Step::Tone(f) => (6000.0 * s(f)) as i16,
                            Step::Inband(k) => {
                                let (a, b) = dtmf_freqs(k);
                                (5000.0 * (s(a) + s(b))) as i16
                            }
                            _ => 0,
                        }
                    })
                    .collect();
                rtp::write_header(&mut pkt, ua.pt, false, seq, ts, 77);
                g711::encode_ulaw(&pcm, &mut pkt[12..172]);
                172
            }
        };
        ua.rtp.send_to(&pkt[..len], to).unwrap();
        while let Ok((n, _)) = ua.rtp.recv_from(&mut buf) {
            if let Ok(p) = rtp::RtpPacket::parse(&buf[..n]) {
                let mut out = vec![0i16; p.payload.len()];
                g711::decode_ulaw(p.payload, &mut out);
                heard.extend_from_slice(&out);
            }
        }
        let next = start + Duration::from_millis(20 * (i as u64 + 1));
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    heard
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Join `ua` by typing the PIN the given way; returns what it heard meanwhile.
fn join(ua: &Ua, how: &str) -> Vec<i16> {
    // listen to the prompt for a second first
    let mut steps = vec![Step::Silence; 50];
    steps.extend(keypad("4321#", how == "inband"));
    steps.extend([Step::Silence; 10]);
    drive(ua, &steps)
}

/// Both legs stream a tone at once; returns what each heard.
fn talk(a: &Ua, fa: f64, b: &Ua, fb: f64) -> (Vec<i16>, Vec<i16>) {
    std::thread::scope(|s| {
        let ha = s.spawn(|| drive(a, &vec![Step::Tone(fa); 100]));
        let hb = s.spawn(|| drive(b, &vec![Step::Tone(fb); 100]));
        (ha.join().unwrap(), hb.join().unwrap())
    })
}

fn hears(x: &[i16], f: f64) -> f64 {
    db(goertzel(&x[x.len().saturating_sub(8000)..], 8000.0, f))
}

fn pin_join_by(how: &str) {
    let bridge = Bridge::start(ROOMS);
    let mut host = Ua::new(bridge.sip, "secret", CodecKind::Pcmu, false, "host");
    assert_eq!(host.call(""), 200);
    let prompt = join(&host, "rfc4733");
    assert!(
        rms(&prompt[..8000]) > 300.0,
        "no PIN prompt heard (rms {})",
        rms(&prompt[..8000])
    );

    let mut guest = Ua::new(bridge.sip, "secret", CodecKind::Pcmu, false, "guest");
    guest.telephone_event = how != "inband";
    assert_eq!(guest.call(""), 200);
    if how == "info" {
        for (i, d) in "4321#".chars().enumerate() {
            let body = format!("Signal={d}\r\nDuration=160\r\n");
            let req = guest
                .request("INFO", guest.cseq, &body, &format!("z9hG4bKinfo{i}"))
                .replace(
                    "Content-Type: application/sdp",
                    "Content-Type: application/dtmf-relay",
                );
            guest.cseq += 1;
            guest.send_raw(req.as_bytes());
            let r = guest
                .final_response(Duration::from_secs(2))
                .expect("INFO answered");
            assert!(matches!(r.start, StartLine::Response { code: 200, .. }));
        }
        drive(&guest, &[Step::Silence; 10]);
    } else {
        join(&guest, how);
    }
    let (host_heard, guest_heard) = talk(&host, 440.0, &guest, 700.0);
    eprintln!(
        "{how}: host hears guest {:.1} dB, guest hears host {:.1} dB",
        hears(&host_heard, 700.0),
        hears(&guest_heard, 440.0)
    );
    assert!(
        hears(&host_heard, 700.0) > 50.0,
        "{how}: the guest was not let in"
    );
    assert!(
        hears(&guest_heard, 440.0) > 50.0,
        "{how}: the guest does not hear the room"
    );
    assert!(hears(&guest_heard, 440.0) - hears(&guest_heard, 700.0) > 30.0);
    assert_eq!(host.hangup(), 200);
    assert_eq!(guest.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn pin_by_rfc4733_lets_the_caller_in() {
    pin_join_by("rfc4733");
}

#[test]
fn pin_by_sip_info_lets_the_caller_in() {
    pin_join_by("info");
}

#[test]
fn pin_inband_on_pcmu_lets_the_caller_in() {
    pin_join_by("inband");
}

#[test]
fn three_wrong_pins_get_a_bye_and_no_audio_from_the_room() {
    let bridge = Bridge::start(ROOMS);
    let mut host = Ua::new(bridge.sip, "secret", CodecKind::Pcmu, false, "host");
    assert_eq!(host.call(""), 200);
    join(&host, "rfc4733");
    let mut bad = Ua::new(bridge.sip, "secret", CodecKind::Pcmu, false, "bad");
    assert_eq!(bad.call(""), 200);
    let mut steps = Vec::new();
    for _ in 0..3 {
        steps.extend(keypad("1111#", false));
        steps.extend([Step::Silence; 50]);
    }
    // the room's host whistles meanwhile: the rejected caller must never hear it
    // (its prompts are speech, so look for the whistle's narrow peak, not energy)
    let heard = std::thread::scope(|s| {
        let h = s.spawn(|| drive(&host, &vec![Step::Tone(1900.0); 240]));
        let b = drive(&bad, &steps);
        h.join().unwrap();
        b
    });
    let at = |f| db(goertzel(&heard, 8000.0, f));
    let peak = at(1900.0) - at(1800.0).max(at(2000.0));
    assert!(
        peak < 10.0,
        "a caller without the PIN heard the room ({peak:.1} dB peak)"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got_bye = false;
    while Instant::now() < deadline && !got_bye {
        if let Some(m) = bad.recv(Duration::from_millis(500)) {
            got_bye = m.method() == Some(&Method::Bye);
        }
    }
    assert!(got_bye, "no BYE after three wrong PINs");
    assert_eq!(host.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}

const MODERATED: &str =
    "[[room]]\nname = \"conf\"\nmoderated = true\nmoderator_pin = \"999\"\npin_timeout_s = 5\n";

/// Type `digits` after a short pause, by RFC 4733.
fn typed(ua: &Ua, digits: &str) {
    let mut steps = vec![Step::Silence; 10];
    steps.extend(keypad(digits, false));
    drive(ua, &steps);
}

fn peak_db(x: &[i16], f: f64) -> f64 {
    let at = |f| db(goertzel(x, 8000.0, f));
    at(f) - at(f - 100.0).max(at(f + 100.0))
}

#[test]
fn moderated_room_music_then_conference_then_bye_for_all() {
    let bridge = Bridge::start(MODERATED);
    let mut p1 = Ua::new(bridge.sip, "conf", CodecKind::Pcmu, false, "p1");
    let mut p2 = Ua::new(bridge.sip, "conf", CodecKind::Pcmu, false, "p2");
    assert_eq!(p1.call(""), 200);
    assert_eq!(p2.call(""), 200);
    typed(&p1, "#");
    typed(&p2, "#");
    // waiting: music, and not each other
    let (h1, _) = talk(&p1, 440.0, &p2, 1900.0);
    let tail = &h1[h1.len() - 8000..];
    assert!(
        rms(tail) > 300.0,
        "waiting participant hears silence, not music (rms {})",
        rms(tail)
    );
    assert!(
        peak_db(&h1, 1900.0) < 10.0,
        "waiting participants hear each other"
    );
    // the moderator arrives: everyone hears everyone
    let mut m = Ua::new(bridge.sip, "conf", CodecKind::Pcmu, false, "mod");
    assert_eq!(m.call(""), 200);
    typed(&m, "999#");
    let (h1, hm) = talk(&p1, 440.0, &m, 1100.0);
    assert!(
        hears(&h1, 1100.0) > 50.0,
        "participant does not hear the moderator"
    );
    assert!(
        hears(&hm, 440.0) > 50.0,
        "moderator does not hear the participant"
    );
    // the moderator hangs up: both participants get a BYE within 1 s
    assert_eq!(m.hangup(), 200);
    let t0 = Instant::now();
    for p in [&mut p1, &mut p2] {
        let mut got = false;
        while !got && t0.elapsed() < Duration::from_secs(1) {
            got = p
                .recv(Duration::from_millis(100))
                .is_some_and(|msg| msg.method() == Some(&Method::Bye));
        }
        assert!(got, "no BYE within 1 s after the moderator left");
    }
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn star_six_mutes_and_unmutes() {
    let bridge = Bridge::start("[[room]]\nname = \"open\"\n");
    let mut a = Ua::new(bridge.sip, "open", CodecKind::Pcmu, false, "a");
    let mut b = Ua::new(bridge.sip, "open", CodecKind::Pcmu, false, "b");
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    let mut steps = vec![Step::Tone(440.0); 50];
    steps.extend(keypad("*6", false)); // mute
    let muted_from = steps.len();
    steps.extend([Step::Tone(440.0); 50]);
    steps.extend(keypad("*6", false)); // unmute
    let unmuted_from = steps.len();
    steps.extend([Step::Tone(440.0); 50]);
    let total = steps.len();
    let heard = std::thread::scope(|s| {
        let hb = s.spawn(|| drive(&b, &vec![Step::Silence; total]));
        drive(&a, &steps);
        hb.join().unwrap()
    });
    // windows in ticks, leaving 10 ticks for the jitter buffer and the key press
    let window = |from: usize, to: usize| {
        let (lo, hi) = ((from + 10) * 160, (to * 160).min(heard.len()));
        db(goertzel(&heard[lo..hi], 8000.0, 440.0))
    };
    let before = window(0, 50);
    let during = window(muted_from, muted_from + 50);
    let after = window(unmuted_from, total);
    eprintln!("440 Hz at b: before {before:.1} dB, muted {during:.1} dB, after {after:.1} dB");
    assert!(before > 50.0, "not heard before muting");
    assert!(during < before - 40.0, "still heard while muted");
    assert!(after > 50.0, "not heard after unmuting");
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}

/// Lecture mode and lock over the wire: the moderator's `*1` silences a participant
/// for the moderator and `*2` brings it back; after `*5` a new participant who types
/// the right PIN is still turned away with a BYE, and a moderator gets in.
#[test]
fn lecture_mode_and_lock_by_the_moderator() {
    let bridge = Bridge::start(
        "[[room]]\nname = \"class\"\npin = \"1\"\nmoderator_pin = \"999\"\npin_timeout_s = 5\n",
    );
    let mut m = Ua::new(bridge.sip, "class", CodecKind::Pcmu, false, "teacher");
    let mut p = Ua::new(bridge.sip, "class", CodecKind::Pcmu, false, "pupil");
    assert_eq!(m.call(""), 200);
    assert_eq!(p.call(""), 200);
    typed(&m, "999#");
    typed(&p, "1#");
    // the pupil whistles throughout; the teacher mutes everyone, then unmutes
    let mut teacher = vec![Step::Silence; 50];
    teacher.extend(keypad("*1", false));
    // each phase lasts 3 s and is measured in its last second, after the
    // moderator's own "all muted" / "all unmuted" prompt has played
    teacher.extend([Step::Silence; 150]);
    let muted_until = teacher.len();
    teacher.extend(keypad("*2", false));
    teacher.extend([Step::Silence; 150]);
    let heard = std::thread::scope(|s| {
        let pupil = s.spawn(|| drive(&p, &vec![Step::Tone(1900.0); teacher.len()]));
        let h = drive(&m, &teacher);
        pupil.join().unwrap();
        h
    });
    let window = |from: usize, to: usize| {
        let (lo, hi) = (from * 160, (to * 160).min(heard.len()));
        peak_db(&heard[lo..hi], 1900.0)
    };
    let end = heard.len() / 160;
    let (before, during, after) = (
        window(10, 50),
        window(muted_until - 50, muted_until),
        window(end - 50, end),
    );
    eprintln!("pupil at the teacher: {before:.1} / muted {during:.1} / {after:.1} dB peak");
    assert!(
        before > 30.0 && after > 30.0,
        "pupil not heard when unmuted"
    );
    assert!(during < 10.0, "pupil heard in lecture mode");
    // lock: a latecomer with the right PIN is refused (BYE), a moderator is not
    typed(&m, "*5");
    let mut late = Ua::new(bridge.sip, "class", CodecKind::Pcmu, false, "late");
    assert_eq!(late.call(""), 200);
    typed(&late, "1#");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got_bye = false;
    while !got_bye && Instant::now() < deadline {
        drive(&late, &[Step::Silence; 10]);
        while let Some(msg) = late.recv(Duration::from_millis(50)) {
            got_bye |= msg.method() == Some(&Method::Bye);
        }
    }
    assert!(got_bye, "a participant got into a locked room");
    let mut m2 = Ua::new(bridge.sip, "class", CodecKind::Pcmu, false, "teacher2");
    assert_eq!(m2.call(""), 200);
    typed(&m2, "999#");
    assert!(bridge.log_text().matches("PIN accepted").count() >= 4);
    assert_eq!(m.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
}

/// Wait for a BYE on `ua` for up to `secs`, keeping its RTP flowing.
fn bye_within(ua: &mut Ua, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        drive(ua, &[Step::Silence; 5]);
        while let Some(msg) = ua.recv(Duration::from_millis(20)) {
            if msg.method() == Some(&Method::Bye) {
                return true;
            }
        }
    }
    false
}

/// Over the wire: a source that fails more often than the lockout allows is then
/// refused even with the right PIN (told exactly what a wrong PIN is told), and a
/// participant who waits too long for the moderator is told so and hung up.
#[test]
fn lockout_and_wait_timeout_over_the_wire() {
    let bridge = Bridge::start(
        "[[room]]\nname = \"vault\"\npin = \"4321\"\npin_retries = 2\npin_lockout_failures = 2\n\
         [[room]]\nname = \"lobby\"\nmoderated = true\nmoderator_pin = \"999\"\nwait_timeout_s = 2\n",
    );
    // two calls, two wrong tries each: more than 2 failures from 127.0.0.1
    for i in 0..2 {
        let mut g = Ua::new(
            bridge.sip,
            "vault",
            CodecKind::Pcmu,
            false,
            &format!("guess{i}"),
        );
        assert_eq!(g.call(""), 200);
        typed(&g, "1111#");
        typed(&g, "2222#");
        assert!(bye_within(&mut g, 10), "no BYE after the last wrong try");
    }
    let mut right = Ua::new(bridge.sip, "vault", CodecKind::Pcmu, false, "right");
    assert_eq!(right.call(""), 200);
    typed(&right, "4321#");
    drive(&right, &[Step::Silence; 25]);
    let log = bridge.log_text();
    assert_eq!(
        log.matches("PIN accepted").count(),
        0,
        "a locked-out source got in"
    );
    assert!(log.contains("source locked out"));
    typed(&right, "4321#");
    assert!(
        bye_within(&mut right, 10),
        "locked-out caller not hung up like a wrong PIN"
    );

    let mut waiting = Ua::new(bridge.sip, "lobby", CodecKind::Pcmu, false, "waiting");
    assert_eq!(waiting.call(""), 200);
    typed(&waiting, "#");
    let t0 = Instant::now();
    assert!(bye_within(&mut waiting, 12), "no BYE after wait_timeout");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "hung up before wait_timeout"
    );
    assert!(
        bridge
            .log_text()
            .contains("waited too long for the moderator")
    );
    assert_eq!(bridge.terminate(), Some(0));
}
