//! Scenario tests of the core on virtual time: no sockets, no sleeping. `now` is
//! advanced by hand, so Timer H's 32 s pass in microseconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::media::contract::MediaCommand;
use crate::media::prompt::Prompt;
use crate::sdp::Direction;
use crate::sip::headers::{NameAddr, Via};
use crate::sip::message::{Method, StartLine};

const PEER: &str = "127.0.0.1:5070";

fn config() -> CoreConfig {
    let mut rooms = HashMap::new();
    rooms.insert("demo".to_string(), RoomPolicy::open(2, Duration::ZERO));
    rooms.insert(
        "slow".to_string(),
        RoomPolicy::open(10, Duration::from_secs(5)),
    );
    let mut secret = RoomPolicy::open(10, Duration::ZERO);
    secret.pin = Some("1234".into());
    secret.moderator_pin = Some("999".into());
    secret.lockout = pin::Lockout {
        failures: 4,
        window: Duration::from_secs(60),
        time: Duration::from_secs(300),
    };
    rooms.insert("secret".to_string(), secret);
    let mut moderated = RoomPolicy::open(10, Duration::ZERO);
    moderated.moderator_pin = Some("999".into());
    moderated.moderated = true;
    moderated.end_on_moderator_exit = true;
    let mut announce = moderated.clone();
    announce.announce_end = true;
    rooms.insert("announce".to_string(), announce);
    let mut wait = moderated.clone();
    wait.wait_timeout = Duration::from_secs(30);
    rooms.insert("mod".to_string(), moderated);
    rooms.insert("wait".to_string(), wait);
    let mut roles = RoomPolicy::open(10, Duration::ZERO);
    roles.start_muted = true;
    roles.participant_can_hear = false;
    roles.announce_first = true;
    roles.announce_count = true;
    roles.announce_join_leave = true;
    rooms.insert("roles".to_string(), roles);
    let mut small = RoomPolicy::open(1, Duration::ZERO);
    small.full_announce = true;
    rooms.insert("small".to_string(), small);
    let mut lan = RoomPolicy::open(10, Duration::ZERO);
    lan.allowed_sources = vec![Cidr::parse("10.0.0.0/8").unwrap()];
    rooms.insert("lan".to_string(), lan);
    let mut vault = RoomPolicy::open(10, Duration::ZERO);
    vault.require_srtp = true;
    rooms.insert("vault".to_string(), vault);
    let mut local = RoomPolicy::open(10, Duration::ZERO);
    local.allowed_sources = vec![Cidr::parse("127.0.0.0/8").unwrap()];
    local.allowed_callers = vec!["sip:alice@*".into()];
    rooms.insert("local".to_string(), local);
    let mut bob_only = RoomPolicy::open(10, Duration::ZERO);
    bob_only.allowed_callers = vec!["sip:bob@*".into()];
    rooms.insert("bob".to_string(), bob_only);
    CoreConfig {
        sip_advertise: None,
        rtp_address: None,
        rtp_advertise: None,
        rtp_ports: (30000, 30099),
        rtp_reserved: Vec::new(),
        rooms,
        timers: TimerConfig::default(),
        user_agent: "caucus".into(),
        menu: MenuKeys::default(),
        recording_dir: Some(std::env::temp_dir().join("caucus-core-tests")),
        dialout: crate::core::dialout::DialPolicy {
            allowed: vec!["sip:*@127.0.0.1:*".into()],
            max_calls: 2,
            max_duration: Duration::from_secs(3600),
            trunks: Vec::new(),
        },
        answer_webhook: false,
        srtp: crate::sdes::SrtpMode::Offer,
        // a fixed key: the core's runs are repeatable
        srtp_keys: || Some(crate::sdes::MasterKey::from_bytes(&[7; 30])),
        hide_rooms: false,
        flood: flood::FloodLimits::default(),
        ban_ends_calls: false,
        cluster: false,
        cascade_at: 0,
    }
}

/// The bridge's own address in these tests.
const US: &str = "127.0.0.1:5060";

fn udp() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: PEER.parse().unwrap(),
        local: US.parse().unwrap(),
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn request(
    method: &str,
    room: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:{room}@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {PEER};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@127.0.0.1>;tag=alice\r\n\
To: <sip:{room}@127.0.0.1>{to_tag}\r\n\
Call-ID: call-1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@{PEER}>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Harness {
    core: Core,
    now: Instant,
    t0: Instant,
    /// RTP ports another program holds: the driver's bind of them fails
    busy: std::collections::HashSet<u16>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }
    fn with(cfg: CoreConfig) -> Harness {
        let now = Instant::now();
        Harness {
            core: Core::new(cfg, 42),
            now,
            t0: now,
            busy: Default::default(),
        }
    }
    fn send(&mut self, data: &[u8]) -> Vec<Output> {
        self.core.handle_message(self.now, udp(), data);
        self.drain()
    }
    /// Everything the core has to do, with the driver's part of it played: each
    /// RTP port it asks for is bound (unless the test made it busy).
    fn drain(&mut self) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = self.core.poll_output() {
            if let Output::Media(MediaCommand::Bind { leg, addr }) = &o {
                let ok = !self.busy.contains(&addr.port());
                self.core.media_bound(self.now, *leg, ok);
            }
            v.push(o);
        }
        v
    }
    /// Advance virtual time to `t` after start, firing timers in order; returns
    /// (time since start, output) for everything emitted.
    fn advance_to(&mut self, t: Duration) -> Vec<(Duration, Output)> {
        let end = self.t0 + t;
        let mut v = Vec::new();
        while let Some(due) = self.core.poll_timeout() {
            if due > end {
                break;
            }
            self.now = due;
            self.core.handle_timeout(due);
            for o in self.drain() {
                v.push((due - self.t0, o));
            }
        }
        self.now = end;
        v
    }
}

fn messages(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { data, .. } => Some(Message::parse(data).unwrap()),
            _ => None,
        })
        .collect()
}

fn status(m: &Message) -> u16 {
    match m.start {
        StartLine::Response { code, .. } => code,
        _ => 0,
    }
}

fn to_tag(m: &Message) -> String {
    NameAddr::parse(m.header("To").unwrap(), "To")
        .unwrap()
        .tag()
        .unwrap()
        .to_string()
}

#[test]
fn invite_is_answered_and_2xx_retransmitted_until_bye_at_32s() {
    let mut h = Harness::new();
    let out = h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, SDP));
    let msgs = messages(&out);
    assert_eq!(msgs.iter().map(status).collect::<Vec<_>>(), vec![100, 200]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Open { .. })))
    );
    let ok = &msgs[1];
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    assert!(ok.header("Via").unwrap().contains("received=127.0.0.1"));
    assert!(ok.header("Via").unwrap().contains("rport=5070"));
    assert_eq!(h.core.ports_in_use(), 1);

    let timeline = h.advance_to(Duration::from_secs(40));
    let resent: Vec<u128> = timeline
        .iter()
        .filter(
            |(_, o)| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"SIP/2.0 200")),
        )
        .map(|(t, _)| t.as_millis())
        .collect();
    // T1 doubling to T2: 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, ... (intervals 0.5, 1, 2, 4, 4 ...)
    assert_eq!(&resent[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    assert!(resent.iter().all(|&t| t < 32_000));
    let bye: Vec<_> = timeline
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"BYE ")))
        .collect();
    assert_eq!(bye[0].0, Duration::from_secs(32));
    assert!(
        timeline
            .iter()
            .any(|(_, o)| matches!(o, Output::Media(MediaCommand::Close { .. })))
    );
    assert_eq!(h.core.ports_in_use(), 0);
    assert!(h.core.active_rooms().is_empty());
    // the BYE itself is retransmitted (Timer E) and then given up (Timer F)
    let byes = timeline
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"BYE ")))
        .count();
    assert!(byes >= 3, "{byes}");
    h.advance_to(Duration::from_secs(100));
    assert!(h.core.is_idle());
}

#[test]
fn ack_stops_retransmission_and_bye_ends_the_leg() {
    let mut h = Harness::new();
    let ok = messages(&h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, SDP)))[1].clone();
    let tag = to_tag(&ok);
    assert!(
        h.send(&request("ACK", "demo", "z9hG4bKack", 1, Some(&tag), ""))
            .is_empty()
    );
    let after = h.advance_to(Duration::from_secs(40));
    assert!(messages(&after.into_iter().map(|x| x.1).collect::<Vec<_>>()).is_empty());
    // retransmitted INVITE after the ACK is absorbed with the same 200 (RFC 6026)
    let out = h.send(&request("BYE", "demo", "z9hG4bKb", 2, Some(&tag), ""));
    assert_eq!(
        messages(&out).iter().map(status).collect::<Vec<_>>(),
        vec![200]
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Close { .. })))
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::RoomClosed { .. })))
    );
    assert_eq!(h.core.leg_count(), 0);
    // a BYE retransmission gets the same answer, not a 481
    let out = h.send(&request("BYE", "demo", "z9hG4bKb", 2, Some(&tag), ""));
    assert_eq!(
        messages(&out).iter().map(status).collect::<Vec<_>>(),
        vec![200]
    );
    // a new BYE in the gone dialog is 481
    let out = h.send(&request("BYE", "demo", "z9hG4bKc", 3, Some(&tag), ""));
    assert_eq!(
        messages(&out).iter().map(status).collect::<Vec<_>>(),
        vec![481]
    );
}

#[test]
fn invite_retransmission_is_absorbed() {
    let mut h = Harness::new();
    let inv = request("INVITE", "demo", "z9hG4bKa", 1, None, SDP);
    h.send(&inv);
    let again = messages(&h.send(&inv));
    assert_eq!(again.iter().map(status).collect::<Vec<_>>(), vec![200]);
    assert_eq!(h.core.leg_count(), 1);
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let mut h = Harness::new();
    let out = messages(&h.send(&request("INVITE", "slow", "z9hG4bKa", 1, None, SDP)));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![100, 180]);
    let out = messages(&h.send(&request("CANCEL", "slow", "z9hG4bKa", 1, None, "")));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![200, 487]);
    assert_eq!(h.core.leg_count(), 0);
    assert_eq!(h.core.ports_in_use(), 0);
    // ACK for the 487 is absorbed by the INVITE transaction
    assert!(
        h.send(&request("ACK", "slow", "z9hG4bKa", 1, None, ""))
            .is_empty()
    );
    // the answer timer must not answer a cancelled call
    let later = h.advance_to(Duration::from_secs(10));
    assert!(!later.iter().any(
        |(_, o)| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"SIP/2.0 200"))
    ));
    // CANCEL for nothing
    let out = messages(&h.send(&request("CANCEL", "slow", "z9hG4bKzz", 1, None, "")));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![481]);
}

#[test]
fn delayed_answer_rings_then_answers() {
    let mut h = Harness::new();
    h.send(&request("INVITE", "slow", "z9hG4bKa", 1, None, SDP));
    let t = h.advance_to(Duration::from_secs(5));
    assert_eq!(t[0].0, Duration::from_secs(5));
    assert!(matches!(&t[1].1, Output::Transmit { data, .. } if data.starts_with(b"SIP/2.0 200")));
}

#[test]
fn options_unknown_method_and_unknown_room() {
    let mut h = Harness::new();
    let out = messages(&h.send(&request("OPTIONS", "anything", "z9hG4bKo", 1, None, "")));
    assert_eq!(status(&out[0]), 200);
    assert_eq!(out[0].header("Allow"), Some(ALLOW));
    assert_eq!(out[0].header("Accept"), Some("application/sdp"));
    let out = messages(&h.send(&request("FROB", "demo", "z9hG4bKf", 1, None, "")));
    assert_eq!(status(&out[0]), 501);
    assert_eq!(out[0].header("Allow"), Some(ALLOW));
    let out = messages(&h.send(&request("INVITE", "nope", "z9hG4bKn", 1, None, SDP)));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![100, 404]);
    let out = messages(&h.send(&request("REGISTER", "demo", "z9hG4bKr", 1, None, "")));
    assert_eq!(status(&out[0]), 405);
}

#[test]
fn malformed_requests_get_400_and_responses_are_dropped() {
    let mut h = Harness::new();
    let out = messages(&h.send(b"INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"));
    assert_eq!(status(&out[0]), 400);
    let out = messages(&h.send(b"INVITE sip:demo@127.0.0.1 SIP/7.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\r\n"));
    assert_eq!(status(&out[0]), 505);
    assert!(
        h.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnone\r\n\r\n")
            .is_empty()
    );
    assert!(h.send(b"\x00\x01garbage").is_empty());
    let mut bad = request("INVITE", "demo", "z9hG4bKm", 1, None, SDP);
    let s = String::from_utf8(bad.clone())
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    bad = s.into_bytes();
    assert_eq!(status(&messages(&h.send(&bad))[0]), 400);
}

#[test]
fn no_common_codec_is_488_with_warning() {
    let mut h = Harness::new();
    let sdp = SDP.replace("RTP/AVP 0 101", "RTP/AVP 18");
    let out = messages(&h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, &sdp)));
    assert_eq!(status(&out[1]), 488);
    assert!(out[1].header("Warning").unwrap().starts_with("304 "));
    assert_eq!(h.core.ports_in_use(), 0);
    let out = messages(&h.send(&request(
        "INVITE",
        "demo",
        "z9hG4bKb",
        2,
        None,
        "v=0\r\nbogus\r\n",
    )));
    assert_eq!(status(&out[1]), 400);
}

#[test]
fn room_full_is_486() {
    let mut h = Harness::new();
    for (i, b) in ["z9hG4bK1", "z9hG4bK2"].iter().enumerate() {
        let r = String::from_utf8(request("INVITE", "demo", b, 1, None, SDP))
            .unwrap()
            .replace("call-1", &format!("c{i}"));
        assert_eq!(status(&messages(&h.send(r.as_bytes()))[1]), 200);
    }
    let out = messages(&h.send(&request("INVITE", "demo", "z9hG4bK3", 1, None, SDP)));
    assert_eq!(status(&out[1]), 486);
}

#[test]
fn reinvite_hold_and_unhold() {
    let mut h = Harness::new();
    let ok = messages(&h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, SDP)))[1].clone();
    let tag = to_tag(&ok);
    h.send(&request("ACK", "demo", "z9hG4bKack", 1, Some(&tag), ""));
    let hold = format!("{SDP}a=sendonly\r\n");
    let out = h.send(&request("INVITE", "demo", "z9hG4bKh", 2, Some(&tag), &hold));
    let m = messages(&out);
    assert_eq!(m.iter().map(status).collect::<Vec<_>>(), vec![100, 200]);
    assert!(String::from_utf8_lossy(&m[1].body).contains("a=recvonly"));
    assert!(String::from_utf8_lossy(&m[1].body).contains("o=caucus "));
    let upd = out.iter().find_map(|o| match o {
        Output::Media(MediaCommand::Update { params, .. }) => Some(*params),
        _ => None,
    });
    assert_eq!(upd.unwrap().peer_direction, Direction::SendOnly);
    h.send(&request("ACK", "demo", "z9hG4bKack2", 2, Some(&tag), ""));
    // unhold by UPDATE
    let out = h.send(&request("UPDATE", "demo", "z9hG4bKu", 3, Some(&tag), SDP));
    let m = messages(&out);
    assert_eq!(status(&m[0]), 200);
    assert!(String::from_utf8_lossy(&m[0].body).contains("a=sendrecv"));
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCommand::Update { params, .. }) if params.peer_direction == Direction::SendRecv)));
    // an old CSeq is out of order
    let out = messages(&h.send(&request("UPDATE", "demo", "z9hG4bKold", 2, Some(&tag), SDP)));
    assert_eq!(status(&out[0]), 500);
}

#[test]
fn late_offer_takes_answer_from_ack() {
    let mut h = Harness::new();
    let out = h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, ""));
    let ok = messages(&out)[1].clone();
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio"));
    // our offer's port is bound before the 200 announces it; media opens only
    // with the answer
    let bind = out
        .iter()
        .position(|o| matches!(o, Output::Media(MediaCommand::Bind { .. })));
    let answer = out.iter().position(
        |o| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"SIP/2.0 200")),
    );
    assert!(bind.is_some() && bind < answer, "{out:?}");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Media(m) if !matches!(m, MediaCommand::Bind { .. })))
    );
    let tag = to_tag(&ok);
    let answer = SDP
        .replace("RTP/AVP 0 101", "RTP/AVP 8")
        .replace("a=rtpmap:101 telephone-event/8000\r\n", "");
    let out = h.send(&request(
        "ACK",
        "demo",
        "z9hG4bKack",
        1,
        Some(&tag),
        &answer,
    ));
    let open = out.iter().find_map(|o| match o {
        Output::Media(MediaCommand::Open { params, .. }) => Some(*params),
        _ => None,
    });
    assert_eq!(open.unwrap().codec, crate::sdp::CodecKind::Pcma);
}

#[test]
fn shutdown_byes_every_leg_and_refuses_new_calls() {
    let mut h = Harness::new();
    let ok = messages(&h.send(&request("INVITE", "demo", "z9hG4bKa", 1, None, SDP)))[1].clone();
    h.send(&request(
        "ACK",
        "demo",
        "z9hG4bKack",
        1,
        Some(&to_tag(&ok)),
        "",
    ));
    h.core.shutdown(h.now);
    let out = messages(&h.drain());
    assert!(
        matches!(&out[0].start, StartLine::Request { method: Method::Bye, uri } if uri == "sip:alice@127.0.0.1:5070")
    );
    assert!(!h.core.is_idle());
    let via = out[0].header("Via").unwrap().to_string();
    let branch = Via::parse(&via).unwrap().branch.unwrap();
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        out[0].header("From").unwrap(),
        out[0].header("To").unwrap(),
        out[0].header("CSeq").unwrap()
    );
    assert!(branch.starts_with("z9hG4bK"));
    h.send(resp.as_bytes());
    assert!(h.core.is_idle());
    let out = messages(&h.send(&request("INVITE", "demo", "z9hG4bKz", 1, None, SDP)));
    assert_eq!(status(&out[1]), 503);
}

/// Answer a call into `secret`: the leg starts isolated with the PIN prompt.
fn pin_call(h: &mut Harness, call: &str) -> (LegId, String) {
    let (leg, tag, out) = call_into(h, "secret", call);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Open { isolated: true, .. }))),
        "a PIN room's leg starts isolated"
    );
    assert_eq!(played(&out, leg), vec![Prompt::EnterPin]);
    (leg, tag)
}

fn keys(h: &mut Harness, leg: LegId, digits: &str) -> Vec<Output> {
    for d in digits.chars() {
        h.core.dtmf(h.now, leg, d);
    }
    h.drain()
}

#[test]
fn right_pin_joins_and_moderator_pin_too() {
    let mut h = Harness::new();
    let (leg, _) = pin_call(&mut h, "p1");
    let out = keys(&mut h, leg, "1234#");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Join { leg: l }) if *l == leg))
    );
    let (leg2, _) = pin_call(&mut h, "p2");
    let out = keys(&mut h, leg2, "999#");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Join { .. })))
    );
    // digits after joining are not PIN input: only the app hears of them
    let out = keys(&mut h, leg, "5#");
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out.iter()
            .all(|o| matches!(o, Output::Event(Event::Dtmf { leg: l, .. }) if *l == leg)),
        "{out:?}"
    );
}

#[test]
fn three_wrong_pins_end_the_call_after_the_prompt() {
    let mut h = Harness::new();
    let (leg, _) = pin_call(&mut h, "w1");
    for round in 0..3 {
        let out = keys(&mut h, leg, "0000#");
        let played = out.iter().find_map(|o| match o {
            Output::Media(MediaCommand::Play { prompts, .. }) => Some(prompts.clone()),
            _ => None,
        });
        let want = if round < 2 {
            vec![Prompt::InvalidPin, Prompt::EnterPin]
        } else {
            vec![Prompt::InvalidPin, Prompt::Goodbye]
        };
        assert_eq!(played, Some(want));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Media(MediaCommand::Join { .. })))
        );
    }
    assert_eq!(h.core.leg_count(), 1);
    h.core.prompt_done(h.now, leg);
    let out = messages(&h.drain());
    assert!(matches!(out[0].method(), Some(Method::Bye)));
    assert_eq!(h.core.leg_count(), 0);
}

#[test]
fn pin_by_info_and_by_timeout() {
    let mut h = Harness::new();
    let (leg, tag) = pin_call(&mut h, "call-1");
    for (i, d) in "1234".chars().enumerate() {
        let body = format!("Signal={d}\r\nDuration=160\r\n");
        let info = String::from_utf8(request(
            "INFO",
            "secret",
            &format!("z9hG4bKi{i}"),
            2 + i as u32,
            Some(&tag),
            &body,
        ))
        .unwrap()
        .replace(
            "Content-Type: application/sdp",
            "Content-Type: application/dtmf-relay",
        );
        let out = messages(&h.send(info.as_bytes()));
        assert_eq!(status(&out[0]), 200);
    }
    // no '#': the PIN timeout judges what was typed
    let t = h.advance_to(Duration::from_secs(11));
    assert!(
        t.iter()
            .any(|(_, o)| matches!(o, Output::Media(MediaCommand::Join { leg: l }) if *l == leg))
    );
}

#[test]
fn lockout_answers_like_a_wrong_pin_even_to_the_right_one() {
    let mut h = Harness::new();
    // lockout after more than 4 failures from this source
    for c in 0..3 {
        let (leg, _) = pin_call(&mut h, &format!("l{c}"));
        keys(&mut h, leg, "1#");
        keys(&mut h, leg, "2#");
    }
    let (leg, _) = pin_call(&mut h, "victim");
    let out = keys(&mut h, leg, "1234#");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Join { .. }))),
        "locked source joined"
    );
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCommand::Play { prompts, .. }) if prompts[0] == Prompt::InvalidPin)));
    // after the lockout time the right PIN works again
    h.advance_to(Duration::from_secs(400));
    let (leg, _) = pin_call(&mut h, "later");
    let out = keys(&mut h, leg, "1234#");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Join { .. })))
    );
}

/// Answer a call into `room`; returns (leg, To tag, outputs).
fn call_into(h: &mut Harness, room: &str, call: &str) -> (LegId, String, Vec<Output>) {
    let inv = String::from_utf8(request(
        "INVITE",
        room,
        &format!("z9hG4bK{call}"),
        1,
        None,
        SDP,
    ))
    .unwrap()
    .replace("call-1", call);
    let out = h.send(inv.as_bytes());
    let leg = out
        .iter()
        .find_map(|o| match o {
            Output::Media(MediaCommand::Open { leg, .. }) => Some(*leg),
            _ => None,
        })
        .unwrap();
    let ok = messages(&out)
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    (leg, to_tag(&ok), out)
}

fn joined(out: &[Output]) -> Vec<LegId> {
    let mut v: Vec<LegId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Join { leg }) => Some(*leg),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn moderated_room_waits_for_the_moderator_and_ends_with_them() {
    let mut h = Harness::new();
    let (p1, _, _) = call_into(&mut h, "mod", "p1");
    // participants just press # (the room has only a moderator PIN) and then wait
    let out = keys(&mut h, p1, "#");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Hold { leg, music: Prompt::MusicOnHold }) if *leg == p1))
    );
    assert!(joined(&out).is_empty());
    let (p2, _, _) = call_into(&mut h, "mod", "p2");
    let out = keys(&mut h, p2, "#");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Hold { leg, .. }) if *leg == p2))
    );
    // the moderator brings everyone in
    let (m, mtag, _) = call_into(&mut h, "mod", "m");
    let out = keys(&mut h, m, "999#");
    assert_eq!(joined(&out), vec![p1, p2, m]);
    // a participant arriving now joins at once
    let (p3, _, _) = call_into(&mut h, "mod", "p3");
    assert_eq!(joined(&keys(&mut h, p3, "#")), vec![p3]);
    // the moderator hangs up: everyone gets a BYE at once (grace 0)
    let bye = String::from_utf8(request("BYE", "mod", "z9hG4bKmbye", 2, Some(&mtag), ""))
        .unwrap()
        .replace("call-1", "m");
    let out = messages(&h.send(bye.as_bytes()));
    let byes = out
        .iter()
        .filter(|m| m.method() == Some(&Method::Bye))
        .count();
    assert_eq!(
        byes, 3,
        "participants left connected after the moderator left"
    );
    assert_eq!(h.core.leg_count(), 0);
}

fn mutes(out: &[Output]) -> Vec<(LegId, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Mute { leg, muted }) => Some((*leg, *muted)),
            _ => None,
        })
        .collect()
}

#[test]
fn menu_self_mute_lecture_mode_lock_and_end() {
    let mut h = Harness::new();
    let (m, _, _) = call_into(&mut h, "mod", "m");
    keys(&mut h, m, "999#");
    let (p1, _, _) = call_into(&mut h, "mod", "p1");
    keys(&mut h, p1, "#");
    let (p2, _, _) = call_into(&mut h, "mod", "p2");
    keys(&mut h, p2, "#");
    // *# tells how many are in the room
    assert_eq!(
        played(&keys(&mut h, p1, "*#"), p1),
        vec![Prompt::ThereAre, Prompt::Number(3), Prompt::Participants]
    );
    // *6 toggles one's own mute, with a prompt
    assert_eq!(mutes(&keys(&mut h, p1, "*6")), vec![(p1, true)]);
    assert_eq!(mutes(&keys(&mut h, p1, "*6")), vec![(p1, false)]);
    // a participant cannot use the moderator's keys
    assert!(mutes(&keys(&mut h, p1, "*1")).is_empty());
    // keys too far apart do not make a sequence
    keys(&mut h, p1, "*");
    h.advance_to(Duration::from_secs(5));
    assert!(mutes(&keys(&mut h, p1, "6")).is_empty());
    // lecture mode: the moderator mutes every participant, and unmutes them
    let mut got = mutes(&keys(&mut h, m, "*1"));
    got.sort();
    assert_eq!(got, vec![(p1, true), (p2, true)]);
    assert_eq!(mutes(&keys(&mut h, m, "*2")).len(), 2);
    // lock: a participant who gets the PIN right is still turned away, a moderator not
    keys(&mut h, m, "*5");
    let (p3, _, _) = call_into(&mut h, "mod", "p3");
    let out = keys(&mut h, p3, "#");
    assert!(joined(&out).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCommand::Play { prompts, .. }) if prompts[0] == Prompt::Locked)));
    h.core.prompt_done(h.now, p3);
    let (m2, _, _) = call_into(&mut h, "mod", "m2");
    assert_eq!(joined(&keys(&mut h, m2, "999#")), vec![m2]);
    // *9 ends the conference: a BYE to every leg
    h.drain();
    let out = messages(&keys(&mut h, m, "*9"));
    assert_eq!(
        out.iter()
            .filter(|x| x.method() == Some(&Method::Bye))
            .count(),
        4
    );
    assert_eq!(h.core.leg_count(), 0);
}

#[test]
fn allowed_sources_and_callers_look_like_unknown_rooms_to_others() {
    let mut h = Harness::new();
    for (room, want) in [("lan", 404), ("bob", 404), ("local", 200)] {
        let inv = String::from_utf8(request(
            "INVITE",
            room,
            &format!("z9hG4bKx{room}"),
            1,
            None,
            SDP,
        ))
        .unwrap()
        .replace("call-1", room);
        let out = messages(&h.send(inv.as_bytes()));
        assert_eq!(status(out.last().unwrap()), want, "{room}");
    }
}

#[test]
fn cidr_matching() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.2.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.9.9".parse().unwrap()));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap())
    );
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    assert!(Cidr::parse("10.0.0.0/33").is_none());
    assert!(glob_match(
        "sip:*@pbx.example.com",
        "SIP:alice@pbx.example.com"
    ));
    assert!(!glob_match(
        "sip:*@pbx.example.com",
        "sip:alice@evil.example.com"
    ));
}

fn played(out: &[Output], leg: LegId) -> Vec<Prompt> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Play { leg: l, prompts }) if *l == leg => {
                Some(prompts.clone())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn roles_and_announcements() {
    let mut h = Harness::new();
    let (a, _, out) = call_into(&mut h, "roles", "a");
    assert_eq!(played(&out, a), vec![Prompt::First]);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Media(MediaCommand::Mute { leg, muted: true }) if *leg == a)
        )
    );
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Media(MediaCommand::Deaf { leg, deaf: true }) if *leg == a)
        )
    );
    let (b, btag, out) = call_into(&mut h, "roles", "b");
    assert_eq!(
        played(&out, b),
        vec![Prompt::ThereAre, Prompt::Number(2), Prompt::Participants],
        "the second caller hears the count, not 'first'"
    );
    assert_eq!(played(&out, a), vec![Prompt::JoinTone]);
    let bye = String::from_utf8(request("BYE", "roles", "z9hG4bKbbye", 2, Some(&btag), ""))
        .unwrap()
        .replace("call-1", "b");
    let out = h.send(bye.as_bytes());
    assert_eq!(played(&out, a), vec![Prompt::LeaveTone]);
}

#[test]
fn waiting_too_long_for_the_moderator_hangs_up() {
    let mut h = Harness::new();
    let (p, _, _) = call_into(&mut h, "wait", "p");
    let out = keys(&mut h, p, "#");
    assert_eq!(played(&out, p), vec![Prompt::WaitModerator]);
    let t = h.advance_to(Duration::from_secs(31));
    let outs: Vec<Output> = t.into_iter().map(|x| x.1).collect();
    assert_eq!(played(&outs, p), vec![Prompt::NoModerator, Prompt::Goodbye]);
    h.core.prompt_done(h.now, p);
    let out = messages(&h.drain());
    assert!(out.iter().any(|m| m.method() == Some(&Method::Bye)));
}

#[test]
fn ended_prompt_before_the_bye_when_asked_for() {
    let mut h = Harness::new();
    let (m, _, _) = call_into(&mut h, "announce", "m");
    keys(&mut h, m, "999#");
    let (p, _, _) = call_into(&mut h, "announce", "p");
    keys(&mut h, p, "#");
    let out = keys(&mut h, m, "*9");
    assert_eq!(played(&out, p), vec![Prompt::Ended]);
    assert!(messages(&out).is_empty(), "BYE before the prompt");
    h.core.prompt_done(h.now, p);
    assert!(
        messages(&h.drain())
            .iter()
            .any(|x| x.method() == Some(&Method::Bye))
    );
    // the moderator's own leg ends after its prompt too, or at the latest in 15 s
    h.advance_to(Duration::from_secs(16));
    assert_eq!(h.core.leg_count(), 0);
}

#[test]
fn full_room_can_answer_with_a_prompt_and_a_bye() {
    let mut h = Harness::new();
    call_into(&mut h, "small", "a");
    let (b, _, out) = call_into(&mut h, "small", "b");
    assert_eq!(played(&out, b), vec![Prompt::Full, Prompt::Goodbye]);
    assert!(out.iter().any(
        |o| matches!(o, Output::Media(MediaCommand::Open { leg, isolated: true, .. }) if *leg == b)
    ));
    h.core.prompt_done(h.now, b);
    assert!(
        messages(&h.drain())
            .iter()
            .any(|m| m.method() == Some(&Method::Bye))
    );
    assert_eq!(h.core.leg_count(), 1);
}

/// A response to `req` (one of our requests) as the dialled UA would send it.
fn reply_to(req: &Message, code: u16, to_tag: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
    let to = match to_tag {
        Some(t) => format!("{};tag={t}", req.header("To").unwrap()),
        None => req.header("To").unwrap().to_string(),
    };
    format!(
        "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        req.header("Via").unwrap(),
        req.header("From").unwrap(),
        req.header("Call-ID").unwrap(),
        req.header("CSeq").unwrap(),
        body.len()
    )
    .into_bytes()
}

fn dial_req(to: &str) -> dialout::DialRequest {
    dialout::DialRequest {
        to: to.into(),
        moderator: false,
        caller_id: None,
        ring_timeout: Duration::from_secs(10),
        local: Some(US.parse().unwrap()),
        end_on_exit: false,
        limit: None,
        link: false,
        on_failure: None,
        flow: None,
    }
}

fn dial_events(out: &[Output]) -> Vec<dialout::DialStatus> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(Event::Dial { status, .. }) => Some(*status),
            _ => None,
        })
        .collect()
}

fn method_of(m: &Message) -> Option<Method> {
    m.method().cloned()
}

#[test]
fn dial_out_retransmits_rings_and_joins_on_2xx() {
    let mut h = Harness::new();
    let leg = h
        .core
        .dial(h.now, "demo", dial_req(&format!("sip:bob@{PEER}")))
        .unwrap();
    let out = h.drain();
    let invite = messages(&out).remove(0);
    assert_eq!(method_of(&invite), Some(Method::Invite));
    assert_eq!(invite.header("Content-Type"), Some("application/sdp"));
    // Timer A: 0.5, 1, 2 s …
    let t = h.advance_to(Duration::from_millis(1600));
    assert_eq!(t.len(), 2, "{t:?}");
    h.send(&reply_to(&invite, 100, None, "", ""));
    assert!(
        h.advance_to(Duration::from_secs(5)).is_empty(),
        "A after 1xx"
    );
    let out = h.send(&reply_to(&invite, 180, Some("bob"), "", ""));
    assert_eq!(dial_events(&out), vec![dialout::DialStatus::Ringing]);
    let out = h.send(&reply_to(
        &invite,
        200,
        Some("bob"),
        "Contact: <sip:bob@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\n",
        SDP,
    ));
    let msgs = messages(&out);
    assert_eq!(method_of(&msgs[0]), Some(Method::Ack));
    assert!(msgs[0].header("To").unwrap().contains("tag=bob"));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Open { leg: l, .. }) if *l == leg))
    );
    assert_eq!(dial_events(&out), vec![dialout::DialStatus::Answered]);
    // a retransmitted 2xx gets the ACK again
    let again = messages(&h.send(&reply_to(
        &invite,
        200,
        Some("bob"),
        "Content-Type: application/sdp\r\n",
        SDP,
    )));
    assert_eq!(method_of(&again[0]), Some(Method::Ack));
    let parts = h.core.participants("demo").unwrap();
    assert_eq!(parts[0].state, "joined");
    // the callee hangs up: BYE in the dialog (their From carries their tag)
    let bye = format!(
        "BYE sip:caucus@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKbye\r\nFrom: {};tag=bob\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        invite.header("To").unwrap(),
        invite.header("From").unwrap(),
        invite.header("Call-ID").unwrap()
    );
    let out = h.send(bye.as_bytes());
    assert_eq!(status(&messages(&out)[0]), 200);
    assert_eq!(h.core.leg_count(), 0);
}

#[test]
fn a_dialled_call_with_a_limit_is_hung_up_when_it_is_reached() {
    let mut h = Harness::new();
    let mut req = dial_req(&format!("sip:bob@{PEER}"));
    req.limit = Some(Duration::from_secs(30));
    h.core.dial(h.now, "demo", req).unwrap();
    let invite = messages(&h.drain()).remove(0);
    h.send(&reply_to(
        &invite,
        200,
        Some("bob"),
        "Contact: <sip:bob@127.0.0.1:5070>\r\nContent-Type: application/sdp\r\n",
        SDP,
    ));
    let byes = |t: &[(Duration, Output)]| {
        t.iter()
            .filter(
                |(_, o)| matches!(o, Output::Transmit { data, .. } if data.starts_with(b"BYE ")),
            )
            .count()
    };
    assert_eq!(byes(&h.advance_to(Duration::from_secs(29))), 0);
    // the BYE (and its retransmission by Timer E)
    assert!(
        byes(&h.advance_to(Duration::from_secs(31))) >= 1,
        "no BYE at the limit"
    );
}

#[test]
fn dial_out_cancels_at_the_ring_timeout_and_reports_failures() {
    let mut h = Harness::new();
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:bob@{PEER}")))
        .unwrap();
    let invite = messages(&h.drain()).remove(0);
    h.send(&reply_to(&invite, 180, Some("bob"), "", ""));
    let t = h.advance_to(Duration::from_secs(11));
    let cancel = t
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Transmit { data, .. } => Message::parse(data).ok(),
            _ => None,
        })
        .find(|m| method_of(m) == Some(Method::Cancel))
        .expect("CANCEL at the ring timeout");
    assert_eq!(cancel.header("CSeq"), Some("1 CANCEL"));
    h.send(&reply_to(&cancel, 200, Some("bob"), "", ""));
    let out = h.send(&reply_to(&invite, 487, Some("bob"), "", ""));
    assert_eq!(method_of(&messages(&out)[0]), Some(Method::Ack));
    assert_eq!(dial_events(&out), vec![dialout::DialStatus::Unanswered]);
    assert_eq!(h.core.leg_count(), 0);
    assert_eq!(h.core.ports_in_use(), 0);

    // a rejection is a failure with its reason
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:carol@{PEER}")))
        .unwrap();
    let invite = messages(&h.drain()).remove(0);
    let out = h.send(&reply_to(&invite, 486, Some("c"), "", ""));
    assert!(out.iter().any(|o| matches!(o, Output::Event(Event::Dial { status: dialout::DialStatus::Failed, reason: Some(r), .. }) if r.starts_with("486"))));
    // nobody answers at all: Timer B
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:dave@{PEER}")))
        .unwrap();
    h.drain();
    let t = h.advance_to(Duration::from_secs(60));
    assert!(t.iter().any(|(_, o)| matches!(
        o,
        Output::Event(Event::Dial {
            status: dialout::DialStatus::Failed,
            ..
        })
    )));
}

#[test]
fn dial_out_guards_against_toll_fraud() {
    let mut h = Harness::new();
    let denied = h
        .core
        .dial(h.now, "demo", dial_req("sip:1900@198.51.100.7:5060"));
    assert!(matches!(denied, Err(control::ControlError::DialDenied(_))));
    let name = h.core.dial(h.now, "demo", dial_req("sip:bob@example.com"));
    assert!(name.is_err());
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:a@{PEER}")))
        .unwrap();
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:b@{PEER}")))
        .unwrap();
    let third = h
        .core
        .dial(h.now, "demo", dial_req(&format!("sip:c@{PEER}")));
    assert!(matches!(third, Err(control::ControlError::TooManyCalls(2))));
    assert!(matches!(
        h.core
            .dial(h.now, "nope", dial_req(&format!("sip:c@{PEER}"))),
        Err(control::ControlError::NoSuchRoom(_))
    ));
}

#[test]
fn dial_out_answers_a_digest_challenge_only_for_its_trunk() {
    let mut cfg = config();
    cfg.dialout.trunks = vec![dialout::TrunkCredentials {
        host: PEER.into(),
        realm: "pbx".into(),
        username: "caucus".into(),
        password: "s3cret".into(),
    }];
    let mut h = Harness::new();
    h.core = Core::new(cfg, 7);
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:bob@{PEER}")))
        .unwrap();
    let invite = messages(&h.drain()).remove(0);
    let out = h.send(&reply_to(
        &invite,
        407,
        Some("p"),
        "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\"\r\n",
        "",
    ));
    let msgs = messages(&out);
    assert_eq!(method_of(&msgs[0]), Some(Method::Ack));
    let again = &msgs[1];
    assert_eq!(method_of(again), Some(Method::Invite));
    assert_eq!(again.header("CSeq"), Some("2 INVITE"));
    let auth = again.header("Proxy-Authorization").unwrap();
    assert!(auth.contains("algorithm=SHA-256") && auth.contains("username=\"caucus\""));
    assert!(!String::from_utf8_lossy(&again.to_bytes()).contains("s3cret"));
    // a second challenge is not answered again: the call fails
    let out = h.send(&reply_to(
        again,
        407,
        Some("p"),
        "Proxy-Authenticate: Digest realm=\"pbx\", nonce=\"def\"\r\n",
        "",
    ));
    assert_eq!(dial_events(&out), vec![dialout::DialStatus::Failed]);
    // another realm gets no credentials
    h.core
        .dial(h.now, "demo", dial_req(&format!("sip:eve@{PEER}")))
        .unwrap();
    let invite = messages(&h.drain()).remove(0);
    let out = h.send(&reply_to(
        &invite,
        401,
        Some("q"),
        "WWW-Authenticate: Digest realm=\"elsewhere\", nonce=\"x\"\r\n",
        "",
    ));
    assert_eq!(dial_events(&out), vec![dialout::DialStatus::Failed]);
}

/// An INVITE carrying extra headers (Session-Expires and friends).
fn invite_with(branch: &str, cseq: u32, to_tag: Option<&str>, extra: &str) -> Vec<u8> {
    let base = String::from_utf8(request("INVITE", "demo", branch, cseq, to_tag, SDP)).unwrap();
    base.replacen(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{extra}"),
        1,
    )
    .into_bytes()
}

fn byes(t: &[(Duration, Output)]) -> Vec<Duration> {
    t.iter()
        .filter_map(|(at, o)| match o {
            Output::Transmit { data, .. } => Message::parse(data)
                .ok()
                .filter(|m| m.method() == Some(&Method::Bye))
                .map(|_| *at),
            _ => None,
        })
        .collect()
}

#[test]
fn session_timer_refreshed_by_reinvite_else_bye_before_expiry() {
    let mut h = Harness::new();
    let out = h.send(&invite_with(
        "z9hG4bKs1",
        1,
        None,
        "Supported: timer\r\nSession-Expires: 120\r\n",
    ));
    let ok = messages(&out)
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    assert_eq!(ok.header("Session-Expires"), Some("120;refresher=uac"));
    assert_eq!(ok.header("Require"), Some("timer"));
    let tag = to_tag(&ok);
    h.send(&request("ACK", "demo", "z9hG4bKs1a", 1, Some(&tag), ""));
    // refreshed at 60 s by a re-INVITE: no BYE at 88 s
    h.advance_to(Duration::from_secs(60));
    let out = h.send(&invite_with(
        "z9hG4bKs2",
        2,
        Some(&tag),
        "Supported: timer\r\nSession-Expires: 120\r\n",
    ));
    assert!(messages(&out).iter().any(|m| status(m) == 200));
    h.send(&request("ACK", "demo", "z9hG4bKs2a", 2, Some(&tag), ""));
    let t = h.advance_to(Duration::from_secs(100));
    assert!(byes(&t).is_empty(), "BYE despite the refresh");
    // no further refresh: BYE at 60 + 120 - 32 = 148 s (then Timer E resends it)
    let t = h.advance_to(Duration::from_secs(200));
    assert_eq!(byes(&t).first(), Some(&Duration::from_secs(148)));
}

#[test]
fn session_timer_too_small_gets_422_and_we_refresh_when_asked() {
    let mut h = Harness::new();
    let out = h.send(&invite_with(
        "z9hG4bKt1",
        1,
        None,
        "Session-Expires: 30\r\n",
    ));
    let r = &messages(&out)[1];
    assert_eq!(status(r), 422);
    assert_eq!(r.header("Min-SE"), Some("90"));
    // refresher=uas: the bridge sends UPDATE at half the interval
    let out = h.send(&invite_with(
        "z9hG4bKt2",
        1,
        None,
        "Supported: timer\r\nSession-Expires: 200;refresher=uas\r\n",
    ));
    let ok = messages(&out)
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    assert_eq!(ok.header("Session-Expires"), Some("200;refresher=uas"));
    let tag = to_tag(&ok);
    h.send(&request("ACK", "demo", "z9hG4bKt2a", 1, Some(&tag), ""));
    let t = h.advance_to(Duration::from_secs(101));
    let updates: Vec<Duration> = t
        .iter()
        .filter_map(|(at, o)| match o {
            Output::Transmit { data, .. } => Message::parse(data)
                .ok()
                .filter(|m| m.method() == Some(&Method::Update))
                .map(|_| *at),
            _ => None,
        })
        .collect();
    // (its retransmissions follow while nobody answers it)
    assert_eq!(updates.first(), Some(&Duration::from_secs(100)));
    assert!(byes(&t).is_empty());
}

#[test]
fn overloaded_bridge_answers_new_invites_503_with_retry_after() {
    let mut h = Harness::new();
    h.core.set_overloaded(true);
    let out = h.send(&request("INVITE", "demo", "z9hG4bKo1", 1, None, SDP));
    let r = &messages(&out)[1];
    assert_eq!(status(r), 503);
    assert_eq!(r.header("Retry-After"), Some("10"));
    h.core.set_overloaded(false);
    let out = h.send(&request("INVITE", "demo", "z9hG4bKo2", 1, None, SDP));
    assert!(messages(&out).iter().any(|m| status(m) == 200));
}

#[test]
fn api_controls_participants_in_a_moderated_room() {
    use control::{ParticipantUpdate, Role};
    let mut h = Harness::new();
    let (p1, _, _) = call_into(&mut h, "mod", "p1");
    keys(&mut h, p1, "#");
    let (p2, _, _) = call_into(&mut h, "mod", "p2");
    keys(&mut h, p2, "#");
    let parts = h.core.participants("mod").unwrap();
    assert!(parts.iter().all(|p| p.state == "waiting"));
    // promoting a waiting participant starts the room for everyone
    let up = ParticipantUpdate {
        role: Some(Role::Moderator),
        ..Default::default()
    };
    let info = h.core.update_participant(h.now, "mod", p1, up).unwrap();
    assert_eq!((info.role, info.state), (Role::Moderator, "joined"));
    let out = h.drain();
    assert_eq!(joined(&out), vec![p1, p2]);
    // mute and deafen through the API reach the media side and the listing
    let up = ParticipantUpdate {
        muted: Some(true),
        deaf: Some(true),
        ..Default::default()
    };
    let info = h.core.update_participant(h.now, "mod", p2, up).unwrap();
    assert!(info.muted && info.deaf);
    let out = h.drain();
    assert_eq!(mutes(&out), vec![(p2, true)]);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Media(MediaCommand::Deaf { leg, deaf: true }) if *leg == p2)
        )
    );
    // demoting the only moderator ends the room (end_on_moderator_exit)
    let up = ParticipantUpdate {
        role: Some(Role::Participant),
        ..Default::default()
    };
    h.core.update_participant(h.now, "mod", p1, up).unwrap();
    let byes = messages(&h.drain())
        .iter()
        .filter(|m| m.method() == Some(&Method::Bye))
        .count();
    assert_eq!(byes, 2);
    assert!(matches!(
        h.core.kick(h.now, "mod", p1),
        Err(control::ControlError::NoSuchParticipant(_))
    ));
}

/// A request from `peer` (Via and Contact name it) with its own Call-ID.
fn request_from(peer: &str, method: &str, room: &str, call: &str, to_tag: Option<&str>) -> Vec<u8> {
    let body = if method == "INVITE" { SDP } else { "" };
    String::from_utf8(request(
        method,
        room,
        &format!("z9hG4bK{call}{method}"),
        1,
        to_tag,
        body,
    ))
    .unwrap()
    .replace(PEER, peer)
    .replace("call-1", call)
    .into_bytes()
}

fn from(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
        local: US.parse().unwrap(),
    }
}

#[test]
fn a_scanner_is_banned_its_unadmitted_calls_end_and_its_admitted_call_goes_on() {
    let mut cfg = config();
    cfg.hide_rooms = true;
    let mut h = Harness::with(cfg);
    let scanner = "192.0.2.9:5060";
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    // one real call, admitted (ACKed, in the mix)
    h.core.handle_message(
        h.now,
        from(scanner),
        &request_from(scanner, "INVITE", "demo", "real", None),
    );
    let ok = messages(&h.drain())
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    let tag = to_tag(&ok);
    h.core.handle_message(
        h.now,
        from(scanner),
        &request_from(scanner, "ACK", "demo", "real", Some(&tag)),
    );
    h.drain();
    // then random rooms: each one is a failure; hidden, they are answered like
    // PIN rooms until the 21st failure (the one success offsets nothing more)
    let mut answered = 0;
    let mut byes = 0;
    for i in 0..30 {
        h.core.handle_message(
            h.now,
            from(scanner),
            &request_from(
                scanner,
                "INVITE",
                &format!("room{i}"),
                &format!("scan{i}"),
                None,
            ),
        );
        for m in messages(&h.drain()) {
            if status(&m) == 200 {
                answered += 1;
            }
            if m.method() == Some(&Method::Bye) {
                byes += 1;
            }
        }
    }
    assert_eq!(answered, 20, "decoy answers before the ban");
    assert_eq!(byes, 20, "every decoy call ends at the ban, with its BYE");
    assert_eq!(h.core.flood_stats(h.now).0, 1);
    assert_eq!(h.core.leg_count(), 1, "only the admitted call is left");
    // new requests out of a dialog are dropped (unread, where a glance tells),
    // but the source is still read: its admitted call hangs up normally
    let options = request_from(scanner, "OPTIONS", "x", "opt", None);
    assert!(!h.core.reads_from(ip, h.now, &options));
    h.core.handle_message(h.now, from(scanner), &options);
    assert!(messages(&h.drain()).is_empty());
    let bye = String::from_utf8(request_from(scanner, "BYE", "demo", "real", Some(&tag)))
        .unwrap()
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    assert!(h.core.reads_from(ip, h.now, bye.as_bytes()));
    h.core.handle_message(h.now, from(scanner), bye.as_bytes());
    let out = messages(&h.drain());
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![200]);
    assert!(!h.core.reads_from(ip, h.now, bye.as_bytes()));
    // another source is untouched meanwhile
    let other = "198.51.100.7:5060";
    h.core.handle_message(
        h.now,
        from(other),
        &request_from(other, "INVITE", "demo", "o", None),
    );
    assert!(messages(&h.drain()).iter().any(|m| status(m) == 200));
}

#[test]
fn in_dialog_requests_and_retransmissions_never_count() {
    let mut cfg = config();
    cfg.flood.requests = 3;
    let mut h = Harness::with(cfg);
    let pbx = "192.0.2.1:5060";
    let inv = request_from(pbx, "INVITE", "demo", "c1", None);
    h.core.handle_message(h.now, from(pbx), &inv);
    let ok = messages(&h.drain())
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    let tag = to_tag(&ok);
    // retransmissions, the ACK, INFOs, a BYE: none of them is a new request
    for _ in 0..5 {
        h.core.handle_message(h.now, from(pbx), &inv);
    }
    h.core.handle_message(
        h.now,
        from(pbx),
        &request_from(pbx, "ACK", "demo", "c1", Some(&tag)),
    );
    h.drain();
    for n in 2..8 {
        let info = String::from_utf8(request_from(pbx, "INFO", "demo", "c1", Some(&tag)))
            .unwrap()
            .replace("CSeq: 1 INFO", &format!("CSeq: {n} INFO"))
            .replace("z9hG4bKc1INFO", &format!("z9hG4bKc1INFO{n}"));
        h.core.handle_message(h.now, from(pbx), info.as_bytes());
        assert_eq!(
            messages(&h.drain()).iter().map(status).collect::<Vec<_>>(),
            vec![200]
        );
    }
    // two more new requests fit the ceiling of 3; the fourth is dropped, unbanned
    for (i, want) in [(2, true), (3, true), (4, false)] {
        let opt = request_from(pbx, "OPTIONS", "x", &format!("o{i}"), None);
        h.core.handle_message(h.now, from(pbx), &opt);
        assert_eq!(!messages(&h.drain()).is_empty(), want, "OPTIONS {i}");
    }
    assert_eq!(h.core.flood_stats(h.now), (0, 1, 0));
}

#[test]
fn a_busy_rtp_port_is_never_announced_and_rests_before_it_is_tried_again() {
    let mut h = Harness::new();
    // another program holds the first two ports of the range
    h.busy.extend([30000, 30002]);
    let out = h.send(&request("INVITE", "demo", "z9hG4bKbusy", 1, None, SDP));
    let binds: Vec<u16> = out
        .iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Bind { addr, .. }) => Some(addr.port()),
            _ => None,
        })
        .collect();
    assert_eq!(binds, vec![30000, 30002, 30004]);
    let ok = messages(&out)
        .into_iter()
        .find(|m| status(m) == 200)
        .unwrap();
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 30004 "));
    assert_eq!((h.core.ports_in_use(), h.core.ports_retired(h.now)), (1, 2));
    // after the cool-off the ports are tried again (and bind, now)
    h.busy.clear();
    h.now += Duration::from_secs(61);
    assert_eq!(h.core.ports_retired(h.now), 0);
    let inv = String::from_utf8(request("INVITE", "demo", "z9hG4bKbusy2", 1, None, SDP))
        .unwrap()
        .replace("call-1", "call-2");
    let out = h.send(inv.as_bytes());
    assert!(messages(&out).iter().any(|m| status(m) == 200));
    // every port of the range held by others: 503, and no port left in use
    let mut cfg = config();
    cfg.rtp_ports = (31000, 31007);
    let mut h = Harness::with(cfg);
    h.busy.extend([31000, 31002, 31004, 31006]);
    let out = messages(&h.send(&request("INVITE", "demo", "z9hG4bKfull", 1, None, SDP)));
    assert_eq!(out.iter().map(status).collect::<Vec<_>>(), vec![100, 503]);
    assert_eq!(h.core.ports_in_use(), 0);
}

#[test]
fn options_say_503_while_no_new_call_would_be_taken() {
    let mut h = Harness::new();
    let probe = |h: &mut Harness, b: &str| {
        let m = messages(&h.send(&request("OPTIONS", "x", b, 1, None, "")));
        (
            status(&m[0]),
            m[0].header("Retry-After").map(str::to_string),
        )
    };
    assert_eq!(probe(&mut h, "z9hG4bKp1"), (200, None));
    h.core.set_overloaded(true);
    assert_eq!(probe(&mut h, "z9hG4bKp2"), (503, Some("10".into())));
    h.core.set_overloaded(false);
    h.core.drain(h.now, Duration::from_secs(30), false);
    assert_eq!(probe(&mut h, "z9hG4bKp3"), (503, Some("30".into())));
}

#[test]
fn a_room_another_node_holds_is_a_302_to_it_and_one_held_here_is_released_when_it_empties() {
    use crate::core::cluster::Claim;
    let mut cfg = config();
    cfg.cluster = true;
    let mut h = Harness::with(cfg);
    // the first call of a room not held here waits for its claim
    let out = h.send(&request("INVITE", "demo", "z9hG4bKc1", 1, None, SDP));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Claim { room } if room == "demo"))
    );
    assert!(messages(&out).iter().all(|m| status(m) < 200));
    h.core
        .claimed(h.now, "demo", Claim::Elsewhere("sip:127.0.1.2:5070".into()));
    let out = messages(&h.drain());
    let last = out.last().expect("an answer");
    assert_eq!(status(last), 302);
    assert_eq!(last.header("Contact"), Some("<sip:demo@127.0.1.2:5070>"));
    // another call, and this time the room is held here: admitted; its BYE
    // empties the room, which is given back
    let r = String::from_utf8(request("INVITE", "demo", "z9hG4bKc2", 1, None, SDP))
        .unwrap()
        .replace("call-1", "c2");
    let out = h.send(r.as_bytes());
    assert!(out.iter().any(|o| matches!(o, Output::Claim { .. })));
    h.core.claimed(h.now, "demo", Claim::Held);
    let ok = messages(&h.drain())
        .into_iter()
        .find(|m| status(m) == 200)
        .expect("200 once held");
    // a second call of a held room asks nobody
    let r = String::from_utf8(request("INVITE", "demo", "z9hG4bKc4", 1, None, SDP))
        .unwrap()
        .replace("call-1", "c4");
    let out = h.send(r.as_bytes());
    assert!(!out.iter().any(|o| matches!(o, Output::Claim { .. })));
    assert!(messages(&out).iter().any(|m| status(m) == 200));
    let released = |out: &[Output]| {
        out.iter()
            .any(|o| matches!(o, Output::Release { room } if room == "demo"))
    };
    for (call, tag, branch) in [
        ("c2", to_tag(&ok), "z9hG4bKc3"),
        (
            "c4",
            to_tag(
                &messages(&out)
                    .into_iter()
                    .find(|m| status(m) == 200)
                    .unwrap(),
            ),
            "z9hG4bKc5",
        ),
    ] {
        let bye = String::from_utf8(request("BYE", "demo", branch, 2, Some(&tag), ""))
            .unwrap()
            .replace("call-1", call);
        let out = h.send(bye.as_bytes());
        assert_eq!(released(&out), call == "c4", "released with {call} gone");
    }
}

#[test]
fn srtp_is_answered_with_keys_of_our_own_and_the_policy_refuses_what_it_must() {
    use crate::sdes::{MasterKey, SrtpMode};
    let key = MasterKey::random().unwrap().inline();
    let savp = SDP.replace("RTP/AVP 0 101", "RTP/SAVP 0 101")
        + &format!("a=crypto:7 AES_CM_128_HMAC_SHA1_80 {key}\r\n");
    // offered: answered on RTP/SAVP with the offer's tag and a key of ours, and
    // the media told both keys
    let mut h = Harness::new();
    let out = h.send(&request("INVITE", "demo", "z9hG4bKs1", 1, None, &savp));
    let ok = messages(&out)[1].clone();
    assert_eq!(status(&ok), 200);
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        body.contains("m=audio ") && body.contains(" RTP/SAVP 0"),
        "{body}"
    );
    let line = body
        .lines()
        .find(|l| l.starts_with("a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(line.is_some_and(|l| !l.contains(&key)), "{body}");
    let spec = out.iter().find_map(|o| match o {
        Output::Media(MediaCommand::Open { transport, .. }) => Some(transport.clone()),
        _ => None,
    });
    assert!(
        matches!(spec, Some(crate::media::contract::TransportSpec::Rtp { srtp: Some(s), .. }) if s.theirs.inline() == key)
    );
    // off: an SRTP-only offer cannot be answered
    let mut cfg = config();
    cfg.srtp = SrtpMode::Off;
    let mut h = Harness::with(cfg);
    let out = h.send(&request("INVITE", "demo", "z9hG4bKs2", 1, None, &savp));
    assert_eq!(status(messages(&out).last().unwrap()), 488);
    // required: a plain offer gets 488
    let mut cfg = config();
    cfg.srtp = SrtpMode::Require;
    let mut h = Harness::with(cfg);
    let out = h.send(&request("INVITE", "demo", "z9hG4bKs3", 1, None, SDP));
    assert_eq!(status(messages(&out).last().unwrap()), 488);
    // a room that requires it: a plain offer gets 488; an SRTP call is taken,
    // and a re-INVITE or UPDATE that would drop to plain RTP gets 488 too,
    // one that keeps SRTP 200
    let mut h = Harness::new();
    let out = h.send(&request("INVITE", "vault", "z9hG4bKv1", 1, None, SDP));
    assert_eq!(status(messages(&out).last().unwrap()), 488);
    let out = h.send(&request("INVITE", "vault", "z9hG4bKv2", 1, None, &savp));
    let ok = messages(&out)[1].clone();
    assert_eq!(status(&ok), 200);
    let tag = to_tag(&ok);
    h.send(&request("ACK", "vault", "z9hG4bKv2a", 1, Some(&tag), ""));
    let out = h.send(&request("INVITE", "vault", "z9hG4bKv3", 2, Some(&tag), SDP));
    assert_eq!(
        status(messages(&out).last().unwrap()),
        488,
        "plain re-INVITE"
    );
    let out = h.send(&request("UPDATE", "vault", "z9hG4bKv4", 3, Some(&tag), SDP));
    assert_eq!(status(messages(&out).last().unwrap()), 488, "plain UPDATE");
    let out = h.send(&request(
        "INVITE",
        "vault",
        "z9hG4bKv5",
        4,
        Some(&tag),
        &savp,
    ));
    assert_eq!(
        status(messages(&out).last().unwrap()),
        200,
        "SRTP re-INVITE"
    );
}
