//! SIP over TLS (RFC 3261 §26.2) against the real binary on loopback: a caller
//! over TLS and one over UDP in `demo` hear each other (tones, Goertzel); the
//! bridge names TLS in its Contact and a SIPS Request-URI gets a SIPS Contact
//! (RFC 5630); a renewed certificate is taken on SIGHUP without dropping the
//! call; plain text on the TLS port is closed; a missing key is refused at
//! start-up with the file named.

mod common;

use std::time::Duration;

use caucus::sdp::CodecKind;
use common::{Bridge, Stream, Ua, db, free_port, goertzel};

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
    let (ha, hb) = std::thread::scope(|s| {
        let ta = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcmu);
            st.run(&a, 500.0, Duration::from_secs(3));
            st.heard
        });
        let tb = s.spawn(|| {
            let mut st = Stream::new(CodecKind::Pcma);
            st.run(&b, 900.0, Duration::from_secs(3));
            st.heard
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
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
