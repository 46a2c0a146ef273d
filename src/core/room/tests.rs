//! A room on its own: participants come, type, leave and are ended with no SIP,
//! SDP or socket in sight, on virtual time. What any kind of leg gets from its
//! room is what these show.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::media::prompt::Prompt;

/// What a room's context borrows, owned by the test.
struct Bench {
    now: Instant,
    out: VecDeque<Output>,
    timers: TimerTable<CoreTimer>,
    menu: MenuKeys,
    rng: Rng,
    hangups: Vec<(LegId, LeftReason)>,
    attempts: Vec<(IpAddr, bool)>,
    dir: Option<std::path::PathBuf>,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            now: Instant::now(),
            out: VecDeque::new(),
            timers: TimerTable::default(),
            menu: MenuKeys::default(),
            rng: Rng::new(7),
            hangups: Vec::new(),
            attempts: Vec::new(),
            dir: None,
        }
    }

    fn on<R>(&mut self, room: &mut Room, f: impl FnOnce(&mut Room, &mut Ctx) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            out: &mut self.out,
            timers: &mut self.timers,
            menu: &self.menu,
            recording_dir: self.dir.as_deref(),
            rng: &mut self.rng,
            hangups: &mut self.hangups,
            attempts: &mut self.attempts,
        };
        f(room, &mut ctx)
    }

    /// A participant arrives as the room says and its media comes up.
    fn arrive(&mut self, room: &mut Room, leg: u64) -> LegId {
        let id = LegId(leg);
        let stage = room.arrival(None).expect("admitted");
        let who = Identity {
            name: format!("sip:p{leg}@example.test"),
            call_id: format!("c{leg}"),
            source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, leg as u8)),
            kind: LegKind::Sip,
        };
        self.on(room, |r, c| {
            r.join(c, id, Participant::new(stage, who, None));
            r.media_up(c, id);
        });
        id
    }

    fn keys(&mut self, room: &mut Room, leg: LegId, keys: &str) {
        for k in keys.chars() {
            self.on(room, |r, c| r.dtmf(c, leg, k));
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        self.out.drain(..).collect()
    }
}

fn joins(out: &[Output]) -> Vec<LegId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Media(MediaCommand::Join { leg }) => Some(*leg),
            _ => None,
        })
        .collect()
}

fn pin_room() -> Room {
    let mut p = RoomPolicy::open(10, Duration::ZERO);
    p.pin = Some("1234".into());
    p.moderator_pin = Some("9999".into());
    p.moderated = true;
    p.end_on_moderator_exit = true;
    Room::new(id("board"), p, false)
}

#[test]
fn participants_wait_for_the_moderator_who_brings_them_in() {
    let (mut b, mut room) = (Bench::new(), pin_room());
    let p = b.arrive(&mut room, 1);
    b.keys(&mut room, p, "1234#");
    assert_eq!(room.participant(p).map(|i| i.state), Some("waiting"));
    assert!(room.isolated(p));
    b.drain();
    let m = b.arrive(&mut room, 2);
    b.keys(&mut room, m, "9999#");
    let out = b.drain();
    assert_eq!(joins(&out), vec![m, p], "moderator first, then who waited");
    assert_eq!(room.participant(m).map(|i| i.role), Some(Role::Moderator));
    assert_eq!(b.attempts.len(), 2);
    assert!(b.attempts.iter().all(|(_, right)| *right));
}

#[test]
fn the_last_wrong_pin_hangs_up_after_goodbye() {
    let (mut b, mut room) = (Bench::new(), pin_room());
    let p = b.arrive(&mut room, 1);
    for _ in 0..3 {
        b.keys(&mut room, p, "0000#");
    }
    assert!(b.hangups.is_empty(), "not before the goodbye has played");
    assert_eq!(room.participant(p).map(|i| i.state), Some("leaving"));
    b.on(&mut room, |r, c| r.prompt_done(c, p));
    assert_eq!(b.hangups, vec![(p, LeftReason::PinFailed)]);
    assert_eq!(b.attempts.iter().filter(|(_, right)| !*right).count(), 3);
}

#[test]
fn the_moderator_leaving_ends_the_room() {
    let (mut b, mut room) = (Bench::new(), pin_room());
    let m = b.arrive(&mut room, 1);
    b.keys(&mut room, m, "9999#");
    let p = b.arrive(&mut room, 2);
    b.keys(&mut room, p, "1234#");
    b.on(&mut room, |r, c| r.left(c, m));
    assert_eq!(b.hangups, vec![(p, LeftReason::Ended)]);
    b.on(&mut room, |r, c| r.left(c, p));
    assert!(room.is_empty());
    let out = b.drain();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::RoomClosed { room }) if room == "board"))
    );
}

#[test]
fn the_menu_locks_the_room_to_moderators() {
    let (mut b, mut room) = (Bench::new(), pin_room());
    let m = b.arrive(&mut room, 1);
    b.keys(&mut room, m, "9999#");
    b.keys(&mut room, m, "*5");
    assert!(room.is_locked());
    let p = b.arrive(&mut room, 2);
    b.keys(&mut room, p, "1234#");
    assert_eq!(room.participant(p).map(|i| i.state), Some("leaving"));
    let late = b.arrive(&mut room, 3);
    b.keys(&mut room, late, "9999#");
    assert_eq!(room.participant(late).map(|i| i.state), Some("joined"));
}

#[test]
fn a_full_room_refuses_or_announces() {
    let mut p = RoomPolicy::open(1, Duration::ZERO);
    let mut room = Room::new(id("small"), p.clone(), false);
    let mut b = Bench::new();
    b.arrive(&mut room, 1);
    assert_eq!(
        room.arrival(None),
        Err(crate::sip::status::Reject::BusyHere("room full"))
    );
    p.full_announce = true;
    room.set_policy(p);
    let late = b.arrive(&mut room, 2);
    let told = b.drain().into_iter().any(|o| {
        o == Output::Media(MediaCommand::Play {
            leg: late,
            prompts: vec![Prompt::Full, Prompt::Goodbye],
        })
    });
    assert!(told, "told the room is full");
    b.on(&mut room, |r, c| r.prompt_done(c, late));
    assert_eq!(b.hangups, vec![(late, LeftReason::Refused)]);
}

#[test]
fn an_api_room_expires_once_empty_for_its_timeout() {
    let mut p = RoomPolicy::open(5, Duration::ZERO);
    p.empty_timeout = Duration::from_secs(30);
    let mut room = Room::new(id("pop-up"), p, true);
    let mut b = Bench::new();
    b.on(&mut room, Room::created);
    let leg = b.arrive(&mut room, 1);
    b.now += Duration::from_secs(40);
    assert!(!room.expired(b.now), "someone is in");
    b.on(&mut room, |r, c| r.left(c, leg));
    b.now += Duration::from_secs(29);
    assert!(!room.expired(b.now));
    b.now += Duration::from_secs(1);
    assert!(room.expired(b.now));
}

#[test]
fn an_undefined_room_is_kept_until_its_recording_is_reported() {
    let mut p = RoomPolicy::open(5, Duration::ZERO);
    p.record = true;
    let mut room = Room::new(id("rec"), p, false);
    let mut b = Bench::new();
    b.dir = Some(std::env::temp_dir());
    let leg = b.arrive(&mut room, 1);
    let id = room.mix_recordings().pop().expect("record = true records");
    room.undefine();
    b.on(&mut room, |r, c| r.left(c, leg));
    assert!(!room.is_disposable(), "its report is still to come");
    b.on(&mut room, |r, c| r.recording_done(c, &id, 1000, 8044, None));
    assert!(room.is_disposable());
}

fn id(name: &str) -> RoomId {
    RoomId::parse(name).expect("a room name")
}

#[test]
fn an_ncco_record_with_end_on_silence_ends_after_the_last_talk_spurt() {
    let mut room = Room::new(id("desk"), RoomPolicy::open(5, Duration::ZERO), false);
    let mut b = Bench::new();
    b.dir = Some(std::env::temp_dir());
    let options = crate::core::routing::CallOptions {
        record_call: Some(crate::core::routing::RecordCall {
            event_url: None,
            end_on_key: None,
            timeout: Duration::from_secs(7200),
            end_on_silence: Some(Duration::from_secs(3)),
            beep: false,
            spec: Default::default(),
        }),
        ..Default::default()
    };
    let leg = LegId(1);
    let who = Identity {
        name: "sip:p1@example.test".into(),
        call_id: "c1".into(),
        source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        kind: LegKind::Sip,
    };
    let stage = room.arrival(Some(&options)).expect("admitted");
    b.on(&mut room, |r, c| {
        r.join(c, leg, Participant::new(stage, who, Some(options)));
        r.media_up(c, leg);
    });
    let stops = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Media(MediaCommand::StopRecording { .. })))
            .count()
    };
    let advance = |b: &mut Bench, room: &mut Room, secs: u64| {
        b.now += Duration::from_secs(secs);
        while let Some(CoreTimer::Room(_, t)) = b.timers.pop_due(b.now) {
            b.on(room, |r, c| r.on_timer(c, t));
        }
        stops(&b.drain())
    };
    // talk at 2 s (before the first 3 s of silence), for 5 s: still going at 9 s
    assert_eq!(advance(&mut b, &mut room, 2), 0);
    b.on(&mut room, |r, c| r.talking(c, leg, true));
    assert_eq!(advance(&mut b, &mut room, 5), 0);
    b.on(&mut room, |r, c| r.talking(c, leg, false));
    assert_eq!(advance(&mut b, &mut room, 2), 0, "2 s of silence");
    assert_eq!(advance(&mut b, &mut room, 1), 1, "3 s of silence end it");
}

#[test]
fn a_muted_participant_who_talks_hears_that_it_is_muted_at_most_twice_a_minute() {
    let mut room = Room::new(id("desk"), RoomPolicy::open(5, Duration::ZERO), false);
    let mut b = Bench::new();
    let leg = b.arrive(&mut room, 1);
    b.drain();
    let told = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Media(MediaCommand::Play { prompts, .. }) if prompts.contains(&Prompt::Muted)))
            .count()
    };
    let advance = |b: &mut Bench, room: &mut Room, ms: u64| {
        b.now += Duration::from_millis(ms);
        while let Some(CoreTimer::Room(_, t)) = b.timers.pop_due(b.now) {
            b.on(room, |r, c| r.on_timer(c, t));
        }
        b.drain()
    };
    // talking while not muted: nothing said
    b.on(&mut room, |r, c| r.talking(c, leg, true));
    assert!(room.participant(leg).unwrap().talking);
    // muted while talking: no longer a talker, and told after 2 s
    b.on(&mut room, |r, c| {
        r.update(
            c,
            leg,
            ParticipantUpdate {
                muted: Some(true),
                ..Default::default()
            },
        )
    })
    .unwrap();
    assert!(!room.participant(leg).unwrap().talking);
    assert_eq!(told(&advance(&mut b, &mut room, 1900)), 0);
    assert_eq!(told(&advance(&mut b, &mut room, 200)), 1);
    // a short spurt is not enough; a long one within 30 s is not told again
    b.on(&mut room, |r, c| r.talking(c, leg, false));
    b.on(&mut room, |r, c| r.talking(c, leg, true));
    assert_eq!(told(&advance(&mut b, &mut room, 1000)), 0);
    b.on(&mut room, |r, c| r.talking(c, leg, false));
    b.on(&mut room, |r, c| r.talking(c, leg, true));
    assert_eq!(
        told(&advance(&mut b, &mut room, 5000)),
        0,
        "again within 30 s"
    );
    b.on(&mut room, |r, c| r.talking(c, leg, false));
    b.now += Duration::from_secs(30);
    b.on(&mut room, |r, c| r.talking(c, leg, true));
    assert_eq!(
        told(&advance(&mut b, &mut room, 2100)),
        1,
        "told again after 30 s"
    );
    assert!(
        !room.participant(leg).unwrap().talking,
        "a muted talker is never listed as talking"
    );
}

#[test]
fn raised_hands_queue_in_order_and_leave_with_their_participant() {
    let mut room = Room::new(id("desk"), RoomPolicy::open(5, Duration::ZERO), false);
    let mut b = Bench::new();
    let (p1, p2) = (b.arrive(&mut room, 1), b.arrive(&mut room, 2));
    b.keys(&mut room, p2, "*7");
    b.keys(&mut room, p1, "*7");
    assert_eq!(room.info().hands, vec![p2, p1]);
    assert_eq!(room.participant(p1).unwrap().hand, Some(2));
    b.keys(&mut room, p2, "*7");
    assert_eq!(room.info().hands, vec![p1], "a second *7 lowers it");
    b.drain();
    b.on(&mut room, |r, c| r.left(c, p1));
    let lowered = b
        .drain()
        .into_iter()
        .filter(|o| matches!(o, Output::Event(Event::Hand { raised: false, .. })))
        .count();
    assert_eq!((room.info().hands.len(), lowered), (0, 1));
}
