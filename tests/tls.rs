//! SIP over TLS (RFC 3261 §26.2) against the real binary on loopback: a caller
//! over TLS and one over UDP in `demo` hear each other (tones, Goertzel); the
//! bridge names TLS in its Contact and a SIPS Request-URI gets a SIPS Contact
//! (RFC 5630); a renewed certificate is taken on SIGHUP without dropping the
//! call; plain text on the TLS port is closed; a missing key is refused at
//! start-up with the file named.

mod common;

use std::time::Duration;

use caucus::sdp::CodecKind;
use common::{Bridge, Ua, db, free_port, goertzel};

const ROOMS: &str = "[[room]]\nname = \"demo\"\n";

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("caucus-tls-{name}-{}", std::process::id()))
}

/// A bridge with a TLS listener on a free port: the bridge, the port, the
/// certificate files and the certificate.
fn tls_bridge(
    name: &str,
) -> (
    Bridge,
    std::net::SocketAddr,
    std::path::PathBuf,
    rustls::pki_types::CertificateDer<'static>,
) {
    let d = dir(name);
    let (cert, key, der) = common::test_certificate(&d);
    let port = free_port();
    let bridge = Bridge::start_with(
        &format!(
            "t1_ms = 100\ntls_listen = \"127.0.0.1:{port}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        ROOMS,
    );
    (bridge, ([127, 0, 0, 1], port).into(), d, der)
}

#[test]
fn a_tls_caller_and_a_udp_caller_hear_each_other() {
    let (bridge, tls, d, ca) = tls_bridge("call");
    let mut a = Ua::new_tls(tls, "demo", CodecKind::Pcmu, "tlsa", &ca);
    assert_eq!(a.call(""), 200);
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcma, false, "udpb");
    assert_eq!(b.call(""), 200);
    let heard = common::converse(&[(&a, 500.0), (&b, 900.0)], Duration::from_secs(3));
    let (ha, hb) = (&heard[0], &heard[1]);
    for (who, heard, other, own) in [("TLS", &ha, 900.0, 500.0), ("UDP", &hb, 500.0, 900.0)] {
        assert!(
            heard.len() > 16000,
            "{who} caller heard {} samples",
            heard.len()
        );
        let tail = &heard[heard.len() - 8000..];
        let (o, s) = (
            db(goertzel(tail, 8000.0, other)),
            db(goertzel(tail, 8000.0, own)),
        );
        eprintln!("{who} caller: other {o:.1} dB, own {s:.1} dB");
        assert!(
            o > 50.0 && o - s > 30.0,
            "{who} caller: other {o:.1}, own {s:.1}"
        );
    }
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(d);
}

/// TLS over IPv6 loopback, its media over IPv6 too, hears a caller over IPv4.
#[test]
fn a_tls_caller_over_ipv6_hears_a_caller_over_ipv4() {
    let d = dir("v6");
    let (cert, key, ca) = common::test_certificate(&d);
    let port = free_port();
    let bridge = Bridge::start_with(
        &format!(
            "t1_ms = 100\ntls_listen = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n\
             tls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        ROOMS,
    );
    let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut a = Ua::new_tls(v6, "demo", CodecKind::Pcmu, "tls6", &ca);
    assert_eq!(a.call(""), 200);
    assert!(a.remote_rtp.unwrap().is_ipv6(), "the answer's c= is IPv6");
    let mut b = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "udp4");
    assert_eq!(b.call(""), 200);
    let heard = common::converse(&[(&a, 600.0), (&b, 1100.0)], Duration::from_secs(3));
    let (ha, hb) = (&heard[0], &heard[1]);
    for (who, heard, other) in [("IPv6 TLS", &ha, 1100.0), ("IPv4 UDP", &hb, 600.0)] {
        assert!(
            heard.len() > 16000,
            "{who} caller heard {} samples",
            heard.len()
        );
        let o = db(goertzel(&heard[heard.len() - 8000..], 8000.0, other));
        eprintln!("{who} caller hears the other at {o:.1} dB");
        assert!(o > 50.0, "{who} caller: other {o:.1} dB");
    }
    assert_eq!(a.hangup(), 200);
    assert_eq!(b.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_bridge_names_tls_and_sips_and_takes_a_new_certificate_on_sighup() {
    let (bridge, tls, d, ca) = tls_bridge("reload");
    // a sip: Request-URI over TLS: Contact with transport=tls
    let mut a = Ua::new_tls(tls, "demo", CodecKind::Pcmu, "tlsc", &ca);
    let port = a.rtp.local_addr().unwrap().port();
    let sdp = common::sdp_offer(port, CodecKind::Pcmu, "");
    let invite = a.request("INVITE", 1, &sdp, "z9hG4bKtls1");
    a.send_raw(invite.as_bytes());
    let ok = a
        .final_response(Duration::from_secs(5))
        .expect("200 over TLS");
    let contact = ok.header("Contact").unwrap().to_string();
    assert!(contact.contains("transport=tls"), "{contact}");
    assert!(ok.header("Via").unwrap().starts_with("SIP/2.0/TLS"));
    // a sips: Request-URI (RFC 5630): a SIPS Contact
    let mut s = Ua::new_tls(tls, "demo", CodecKind::Pcmu, "tlss", &ca);
    let sips =
        s.request("INVITE", 1, &sdp, "z9hG4bKtls2")
            .replacen("INVITE sip:", "INVITE sips:", 1);
    s.send_raw(sips.as_bytes());
    let ok = s
        .final_response(Duration::from_secs(5))
        .expect("200 to sips");
    let contact = ok.header("Contact").unwrap().to_string();
    assert!(contact.starts_with("<sips:"), "{contact}");

    // a renewed certificate: new clients need it, calls up stay
    let (_, _, renewed) = common::test_certificate(&d);
    let pid = bridge.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !bridge
        .log_text()
        .contains("TLS certificate and key read again")
    {
        assert!(std::time::Instant::now() < deadline, "no reload in the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut fresh = Ua::new_tls(tls, "demo", CodecKind::Pcmu, "tlsn", &renewed);
    assert_eq!(fresh.call(""), 200);
    // the call set up before the reload still answers in its dialog
    let opts = s.request("OPTIONS", 2, "", "z9hG4bKtls3");
    s.send_raw(opts.as_bytes());
    assert!(s.final_response(Duration::from_secs(5)).is_some());
    // plain SIP on the TLS port: closed, and the bridge goes on
    let mut plain = std::net::TcpStream::connect(tls).unwrap();
    use std::io::{Read, Write};
    plain
        .write_all(b"OPTIONS sip:demo@127.0.0.1 SIP/2.0\r\n\r\n")
        .unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        !buf[..n].starts_with(b"SIP/2.0"),
        "plain text answered on TLS"
    );
    assert_eq!(fresh.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_tls_listener_without_a_usable_key_is_refused_at_start_up() {
    let d = dir("bad");
    let (cert, _, _) = common::test_certificate(&d);
    let key = d.join("missing.pem");
    let file = d.join("caucus.toml");
    std::fs::write(
        &file,
        format!(
            "[sip]\nlisten = \"127.0.0.1:{}\"\ntls_listen = \"127.0.0.1:{}\"\ntls_certificate = \"{}\"\ntls_key = \"{}\"\n",
            free_port(),
            free_port(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caucus"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("caucus.toml") && err.contains("missing.pem"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}

const TOKEN: &str = "test-token-0123456789";

/// A UAS over TLS on its own listener, serving one connection: hands the
/// INVITE to `invites`, answers it with a PCMU answer for `rtp_port`, takes
/// the ACK and keeps the connection up a while.
fn tls_uas(
    listener: std::net::TcpListener,
    cfg: std::sync::Arc<rustls::ServerConfig>,
    rtp_port: u16,
    invites: std::sync::mpsc::Sender<caucus::sip::Message>,
) -> std::thread::JoinHandle<Option<()>> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (tcp, _) = listener.accept().ok()?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .ok()?;
        let conn = rustls::ServerConnection::new(cfg).ok()?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut framer = caucus::sip::framing::StreamFramer::default();
        let mut buf = [0u8; 8192];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut next = |s: &mut rustls::StreamOwned<_, _>| loop {
            if let Ok(Some(m)) = framer.next_message() {
                return caucus::sip::Message::parse(&m).ok();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            match s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => framer.push(&buf[..n]),
                Err(_) => {}
            }
        };
        let invite = next(&mut s)?;
        invites.send(invite.clone()).ok()?;
        let sdp = common::sdp_offer_with(rtp_port, CodecKind::Pcmu, "", false);
        let to = format!("{};tag=tlsuas", invite.header("To")?);
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Contact: <sip:uas@127.0.0.1;transport=tls>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            invite.header("Via")?,
            invite.header("From")?,
            invite.header("Call-ID")?,
            invite.header("CSeq")?,
            sdp.len()
        );
        s.write_all(ok.as_bytes()).ok()?;
        s.flush().ok()?;
        let ack = next(&mut s)?;
        assert_eq!(ack.method(), Some(&caucus::sip::Method::Ack));
        // keep the connection up while the call runs
        std::thread::sleep(Duration::from_secs(5));
        Some(())
    })
}

/// Dial-out to a `;transport=tls` target verifies its certificate against the
/// trunk's CA file, sends the INVITE over TLS, and the call carries audio both
/// ways; a target whose certificate nothing vouches for is not dialled.
#[test]
fn dial_out_over_tls_verifies_the_target_and_carries_the_call() {
    let d = dir("dial");
    let (cert, key, _) = common::test_certificate(&d);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uas_port = listener.local_addr().unwrap().port();
    let api = free_port();
    let bridge = Bridge::start(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{TOKEN}\"\n\
         [dialout]\nallowed_destinations = [\"sip:*@127.0.0.1:*\"]\n\
         [[trunk]]\nname = \"tls\"\nhost = \"127.0.0.1:{uas_port}\"\nrealm = \"r\"\n\
         username = \"u\"\npassword = \"a-long-trunk-password\"\nca_file = \"{}\"\n{ROOMS}",
        cert.display()
    ));
    let api: std::net::SocketAddr = ([127, 0, 0, 1], api).into();
    let mut member = Ua::new(bridge.sip, "demo", CodecKind::Pcmu, false, "m");
    assert_eq!(member.call(""), 200);
    // the dialled side's media, on a socket of its own
    let mut media = Ua::new(bridge.sip, "x", CodecKind::Pcmu, false, "tlsmedia");
    let rtp_port = media.rtp.local_addr().unwrap().port();
    let (invites, invited) = std::sync::mpsc::channel();
    let uas = tls_uas(
        listener,
        caucus::tls::server_config(&cert, &key).unwrap(),
        rtp_port,
        invites.clone(),
    );
    let dial = |to: &str| {
        common::http::request(
            api,
            "POST",
            "/v1/rooms/demo/dial",
            Some(TOKEN),
            Some(&format!(r#"{{"to": "{to}", "timeout_s": 10}}"#)),
        )
    };
    let r = dial(&format!("sip:uas@127.0.0.1:{uas_port};transport=tls"));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let invite = invited
        .recv_timeout(Duration::from_secs(5))
        .expect("an INVITE over TLS");
    assert!(invite.header("Via").unwrap().starts_with("SIP/2.0/TLS"));
    assert!(invite.header("Contact").unwrap().contains("transport=tls"));
    let offer = caucus::sdp::SessionDescription::parse(&invite.body).unwrap();
    let (_, p) = caucus::sdp::select_audio(&offer, || None).unwrap();
    media.remote_rtp = Some(std::net::SocketAddr::new(
        p.remote_ip.unwrap(),
        p.remote_port,
    ));
    media.pt = 0;
    let heard = common::converse(
        &[(&media, 1000.0), (&member, 440.0)],
        Duration::from_secs(3),
    );
    let (heard_uas, heard_member) = (&heard[0], &heard[1]);
    let level = |x: &[i16], f| db(goertzel(&x[x.len().saturating_sub(8000)..], 8000.0, f));
    assert!(
        level(heard_uas, 440.0) > 50.0,
        "the TLS leg does not hear the room"
    );
    assert!(
        level(heard_member, 1000.0) > 50.0,
        "the room does not hear the TLS leg"
    );
    assert!(uas.join().unwrap().is_some(), "the UAS got no ACK");
    // a certificate nothing vouches for (no ca_file for this host: Mozilla's
    // roots): refused before any INVITE
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let _refused = tls_uas(
        other,
        caucus::tls::server_config(&cert, &key).unwrap(),
        rtp_port,
        invites,
    );
    let r = dial(&format!("sip:uas@127.0.0.1:{other_port};transport=tls"));
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        r.status >= 400 && body.contains("TLS"),
        "{} {body}",
        r.status
    );
    assert!(
        invited.try_recv().is_err(),
        "an INVITE went to an unverified target"
    );
    assert_eq!(member.hangup(), 200);
    assert_eq!(bridge.terminate(), Some(0));
    let _ = std::fs::remove_dir_all(d);
}
