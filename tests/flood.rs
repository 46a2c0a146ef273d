//! Flood control with its defaults, against the traffic it must tell apart: a busy
//! PBX (many calls from one address, all good), a scanner (requests to rooms that
//! do not exist, at thousands per second), and the callers of a third address.
//! The bridge runs as a new user would configure it: no `[security]` section.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use caucus::sdp::CodecKind;
use caucus::sip::{Message, StartLine};
use common::{Bridge, Stream, Ua, db, goertzel};

const TONES: [f64; 4] = [440.0, 700.0, 1100.0, 1300.0];

/// Call `room` from `ip`, send `freq` for `dur`, hang up; returns the strongest
/// tone heard (dB; callers share the tones, and mix-minus keeps one's own out)
/// and the BYE's status.
fn one_call(bridge: &Bridge, ip: IpAddr, name: &str, freq: f64, dur: Duration) -> (f64, u16) {
    let mut ua = Ua::new_at(ip, bridge.sip, "demo", CodecKind::Pcmu, false, name);
    let code = ua.call("");
    assert_eq!(code, 200, "{name}: INVITE answered {code}");
    let mut st = Stream::new(CodecKind::Pcmu);
    st.run(&ua, freq, dur);
    // the loudest 100 ms block after the first 300 ms: with dozens of callers
    // joining and leaving, each on one of four tones at its own phase, the mix of
    // one tone changes phase whenever someone comes or goes, so a long block sees
    // less of it than any short one does
    let heard = &st.heard[st.heard.len().min(2400)..];
    let others = heard
        .chunks_exact(800)
        .flat_map(|b| TONES.iter().map(move |&f| db(goertzel(b, 8000.0, f))))
        .fold(f64::MIN, f64::max);
    (others, ua.hangup())
}

/// `n` calls from `ip`, one every `every`, each sending its tone for `hold`:
/// what [`one_call`] says of each.
fn paced_calls(
    bridge: &Bridge,
    ip: IpAddr,
    name: &str,
    n: u64,
    every: Duration,
    hold: Duration,
) -> Vec<(f64, u16)> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..n)
            .map(|i| {
                let at = start + every * i as u32;
                if let Some(d) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                s.spawn(move || {
                    let freq = TONES[i as usize % TONES.len()];
                    one_call(bridge, ip, &format!("{name}{i}"), freq, hold)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// The two tests each judge one bridge's defaults against one kind of traffic; run
/// side by side on two cores, the scanner's bridge would take the CPU the PBX's
/// calls are judged on.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_busy_pbx_places_300_calls_in_10_s_with_the_default_config() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bridge = Bridge::start_untrusted(
        "port_min = 13000\nport_max = 13999\n",
        "[[room]]\nname = \"demo\"\nmax_participants = 1000\n",
    );
    let pbx: IpAddr = "127.0.0.7".parse().unwrap();
    let start = Instant::now();
    let results = paced_calls(
        &bridge,
        pbx,
        "pbx",
        300,
        Duration::from_millis(1000 / 30),
        Duration::from_millis(1500),
    );
    let took = start.elapsed();
    let deaf: Vec<(usize, f64)> = (0..results.len())
        .filter(|&i| results[i].0 < 40.0)
        .map(|i| (i, results[i].0))
        .collect();
    assert!(deaf.is_empty(), "callers who heard nobody: {deaf:?}");
    assert!(
        results.iter().all(|r| r.1 == 200),
        "a BYE was not answered 200"
    );
    let log = bridge.log_text();
    assert!(!log.contains("banned"), "a busy PBX was banned");
    assert!(!log.contains("over its request limit"));
    let quietest = results.iter().map(|r| r.0).fold(f64::MAX, f64::min);
    eprintln!(
        "300 calls from one address in {took:?}, every caller heard the others \
         (the quietest at {quietest:.1} dB)"
    );
}

/// An INVITE for a random room from the scanner's socket.
fn scan_invite(local: SocketAddr, bridge: SocketAddr, i: u32) -> String {
    let body = "v=0\r\no=s 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:{i:08}@{bridge} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKscan{i}\r\nMax-Forwards: 70\r\nFrom: <sip:scan@127.0.0.5>;tag=s{i}\r\nTo: <sip:{i:08}@127.0.0.1>\r\nCall-ID: scan-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:scan@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_scanner_is_banned_within_2_s_while_other_callers_and_its_own_call_go_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bridge = Bridge::start_untrusted(
        "port_min = 16000\nport_max = 16999\n",
        "[[room]]\nname = \"demo\"\n",
    );
    let scanner_ip: IpAddr = "127.0.0.5".parse().unwrap();
    let callers_ip: IpAddr = "127.0.0.6".parse().unwrap();
    // the scanner's own address holds one good call, set up before the scan
    let mut own = Ua::new_at(
        scanner_ip,
        bridge.sip,
        "demo",
        CodecKind::Pcmu,
        false,
        "own",
    );
    assert_eq!(own.call(""), 200);
    let start = Instant::now();
    let (last_answer, sent, own_heard, callers) = std::thread::scope(|s| {
        let scan = s.spawn(|| {
            let sock = UdpSocket::bind(SocketAddr::new(scanner_ip, 0)).unwrap();
            sock.set_nonblocking(true).unwrap();
            let local = sock.local_addr().unwrap();
            let mut last_answer = None;
            let mut buf = [0u8; 4096];
            let mut i = 0u32;
            // 2,000 requests a second for 4 s
            while start.elapsed() < Duration::from_secs(4) {
                let due = start + Duration::from_micros(500 * u64::from(i));
                if Instant::now() >= due {
                    sock.send_to(scan_invite(local, bridge.sip, i).as_bytes(), bridge.sip)
                        .unwrap();
                    i += 1;
                }
                while let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if let Ok(m) = Message::parse(&buf[..n])
                        && matches!(m.start, StartLine::Response { .. })
                    {
                        last_answer = Some(start.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            (last_answer, i)
        });
        let own_call = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(&own, 2000.0, Duration::from_secs(5));
            st.heard
        });
        // a third address calls at 5 calls/s throughout
        let callers = paced_calls(
            &bridge,
            callers_ip,
            "c",
            20,
            Duration::from_millis(200),
            Duration::from_secs(1),
        );
        let (last, sent) = scan.join().unwrap();
        (last, sent, own_call.join().unwrap(), callers)
    });
    let log = bridge.log_text();
    let ban = log
        .lines()
        .find(|l| l.contains("source banned") && l.contains("127.0.0.5"))
        .expect("the scanner was not banned");
    eprintln!("{ban}");
    let last = last_answer.expect("the scanner got no answer at all");
    assert!(
        last < Duration::from_secs(2),
        "the scanner was still answered at {last:?} (of {sent} requests)"
    );
    assert!(sent > 6000, "the scanner sent only {sent}");
    assert!(
        callers.iter().all(|c| c.1 == 200 && c.0 > 40.0),
        "a caller of the third address failed: {callers:?}"
    );
    // the scanner's own admitted call went on: it heard the callers after the ban
    let late = &own_heard[own_heard.len().saturating_sub(16000)..];
    let heard = TONES
        .iter()
        .map(|&f| db(goertzel(late, 8000.0, f)))
        .fold(f64::MIN, f64::max);
    assert!(
        heard > 40.0,
        "the banned source's admitted call went deaf: {heard:.1} dB"
    );
    assert_eq!(own.hangup(), 200, "its BYE was not served");
}
