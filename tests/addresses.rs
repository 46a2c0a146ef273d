//! Addresses a phone can reach: a wildcard listener answers with the address each
//! request arrived on (Contact, SDP, and the source of its replies), IPv4 and IPv6
//! listeners serve one room together, and an RTP port another program holds is
//! never announced.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use caucus::sdp::{self, CodecKind, SessionDescription};
use caucus::sip::{Message, StartLine};
use common::{Bridge, Stream, Ua, db, goertzel};

const DEMO: &str = "[[room]]\nname = \"demo\"\n";

/// INVITE from `ua` and the final response, with the address it came from.
fn invite(ua: &mut Ua) -> (Message, SocketAddr) {
    let rtp = ua.rtp.local_addr().unwrap();
    let body = common::sdp_offer(rtp.port(), CodecKind::Pcmu, "")
        .replace("c=IN IP4 127.0.0.1", &common::connection(rtp.ip()));
    let inv = ua.request("INVITE", 1, &body, &format!("z9hG4bK{}inv", ua.call_id));
    ua.send_raw(inv.as_bytes());
    let common::Signal::Udp(sock) = &ua.sig else {
        panic!("UDP only")
    };
    let mut buf = [0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf).expect("an answer");
        let m = Message::parse(&buf[..n]).unwrap();
        if matches!(m.start, StartLine::Response { code, .. } if code >= 200) {
            return (m, from);
        }
    }
}

#[test]
fn a_wildcard_listener_answers_from_and_with_the_address_a_call_arrived_on() {
    let bridge = Bridge::start_with("t1_ms = 100\nlisten = \"0.0.0.0:PORT\"\n", DEMO);
    for target in ["127.0.0.1", "127.0.0.9"] {
        let ip: IpAddr = target.parse().unwrap();
        let to = SocketAddr::new(ip, bridge.sip.port());
        let mut ua = Ua::new(to, "demo", CodecKind::Pcmu, false, &format!("wild{target}"));
        let (ok, from) = invite(&mut ua);
        assert!(matches!(ok.start, StartLine::Response { code: 200, .. }));
        assert_eq!(from, to, "the reply left from another address");
        let contact = ok.header("Contact").unwrap();
        assert!(
            contact.contains(&format!("@{to}")),
            "Contact {contact} for a call to {to}"
        );
        let sd = SessionDescription::parse(&ok.body).unwrap();
        let (_, p) = sdp::select_audio(&sd, || None).unwrap();
        assert_eq!(p.remote_ip, Some(ip), "SDP address for a call to {to}");
        assert!(!String::from_utf8_lossy(&ok.body).contains("0.0.0.0"));
    }
}

#[test]
fn callers_over_ipv4_and_ipv6_hear_each_other_in_one_room() {
    let bridge = Bridge::start_with(
        "t1_ms = 100\nlisten = [\"127.0.0.1:PORT\", \"[::1]:PORT\"]\n",
        DEMO,
    );
    let v6 = SocketAddr::new("::1".parse().unwrap(), bridge.sip.port());
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "four");
    let mut b = Ua::new_at(
        "::1".parse().unwrap(),
        v6,
        "demo",
        CodecKind::Pcmu,
        false,
        "six",
    );
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    assert!(
        b.remote_rtp.unwrap().is_ipv6(),
        "the IPv6 caller got an IPv4 media address"
    );
    let (heard_a, heard_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(&a, 440.0, Duration::from_secs(2));
            st.heard
        });
        let mut st = Stream::new(CodecKind::Pcmu);
        st.run(&b, 1300.0, Duration::from_secs(2));
        (ta.join().unwrap(), st.heard)
    });
    let tail = |x: &[i16]| x[x.len().saturating_sub(8000)..].to_vec();
    let (ta, tb) = (tail(&heard_a), tail(&heard_b));
    assert!(
        db(goertzel(&ta, 8000.0, 1300.0)) > 40.0,
        "IPv4 caller does not hear IPv6"
    );
    assert!(
        db(goertzel(&tb, 8000.0, 440.0)) > 40.0,
        "IPv6 caller does not hear IPv4"
    );
    assert!(db(goertzel(&ta, 8000.0, 440.0)) < db(goertzel(&ta, 8000.0, 1300.0)) - 30.0);
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
}

#[test]
fn an_rtp_port_held_by_another_program_is_never_announced() {
    let bridge = Bridge::start(DEMO);
    // another program takes the first two RTP ports of the bridge's range
    let (lo, _) = bridge.rtp;
    let lo = lo + lo % 2;
    let held: Vec<UdpSocket> = [lo, lo + 2]
        .iter()
        .map(|p| UdpSocket::bind(("127.0.0.1", *p)).unwrap())
        .collect();
    let mut a = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "held-a");
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "held-b");
    assert_eq!(a.call(""), 200);
    assert_eq!(b.call(""), 200);
    for ua in [&a, &b] {
        let port = ua.remote_rtp.unwrap().port();
        assert!(
            port != lo && port != lo + 2,
            "a held port ({port}) was announced"
        );
    }
    let heard = std::thread::scope(|s| {
        s.spawn(|| Stream::new(CodecKind::Pcmu).run(&b, 700.0, Duration::from_secs(2)));
        let mut st = Stream::new(CodecKind::Pcmu);
        st.run(&a, 440.0, Duration::from_secs(2));
        st.heard
    });
    let tail = &heard[heard.len().saturating_sub(8000)..];
    assert!(
        db(goertzel(tail, 8000.0, 700.0)) > 40.0,
        "the call on a skipped port is silent"
    );
    let m = common::http::request(bridge.metrics, "GET", "/metrics", None, None).text();
    assert!(m.contains("caucus_rtp_ports_in_use 2"), "{m}");
    assert!(m.contains("caucus_rtp_ports_retired 2"), "{m}");
    assert!(
        bridge
            .log_text()
            .contains("RTP port in use by another program")
    );
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    drop(held);
}

/// Dial-out to an IPv6 target: the INVITE leaves from the bridge's IPv6
/// socket offering IPv6 media, and once answered the dialled leg and a caller
/// over IPv4 hear each other.
#[test]
fn a_dial_out_to_an_ipv6_target_hears_an_ipv4_caller() {
    const TOKEN: &str = "test-token-0123456789";
    let api = common::free_port();
    let bridge = Bridge::start_with(
        "t1_ms = 100\nlisten = [\"127.0.0.1:PORT\", \"[::1]:PORT\"]\n",
        &format!(
            "[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n\
             [dialout]\nallowed_destinations = [\"sip:*@[::1]:*\"]\n{DEMO}"
        ),
    );
    let api = SocketAddr::from(([127, 0, 0, 1], api));
    let v6: IpAddr = "::1".parse().unwrap();
    let mut member = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "four");
    assert_eq!(member.call(""), 200);
    let uas = common::Uas::at(v6);
    let r = common::http::request(
        api,
        "POST",
        "/v1/rooms/demo/dial",
        Some(TOKEN),
        Some(&format!(r#"{{"to": "{}", "timeout_s": 10}}"#, uas.uri())),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let (invite, from) = uas.recv_method(caucus::sip::Method::Invite, 3);
    assert!(from.is_ipv6(), "the INVITE came from {from}");
    let offer = SessionDescription::parse(&invite.body).unwrap();
    let (_, p) = sdp::select_audio(&offer, || None).unwrap();
    assert!(
        p.remote_ip.is_some_and(|ip| ip.is_ipv6()),
        "the offer's media address is not IPv6: {:?}",
        p.remote_ip
    );
    // answer from an IPv6 RTP socket of our own (a Ua used only for media)
    let media = uas.answer_pcmu(&invite, from, SocketAddr::new(v6, bridge.sip.port()));
    uas.recv_method(caucus::sip::Method::Ack, 3);
    let heard = common::converse(
        &[(&media, 1000.0), (&member, 440.0)],
        Duration::from_secs(3),
    );
    let tail = |x: &[i16]| x[x.len().saturating_sub(8000)..].to_vec();
    assert!(
        db(goertzel(&tail(&heard[0]), 8000.0, 440.0)) > 40.0,
        "the IPv6 dialled leg does not hear the IPv4 caller"
    );
    assert!(
        db(goertzel(&tail(&heard[1]), 8000.0, 1000.0)) > 40.0,
        "the IPv4 caller does not hear the IPv6 dialled leg"
    );
    let _ = member.hangup();
}
