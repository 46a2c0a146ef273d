//! RFC 4475 torture messages and RFC 5118 IPv6 messages (copied from the project's
//! shared conformance set into tests/data), each sent to the running bridge over UDP and
//! over TCP. The expected outcome of each is in `tests/data/rfc4475/expectations.tsv`
//! (and the RFC 5118 table in this file); after every message the bridge must still
//! answer an OPTIONS. Before sending, every host in Via and Contact is rewritten to
//! loopback, so nothing could be sent anywhere else even if the bridge trusted them.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use caucus::sip::framing::StreamFramer;
use caucus::sip::{Message, StartLine};
use common::Bridge;

fn data(dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

/// Replace hosts in Via and Contact header lines (long and compact names, folded
/// continuation lines included) with `host`, a loopback address. Each case gets its
/// own (127.0.x.y) so that messages sharing a branch stay distinct transactions. Only the header section is touched,
/// so Content-Length still frames the body.
fn to_loopback(msg: &[u8], host: &str) -> Vec<u8> {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg.len(), |p| p + 4);
    let (head, body) = msg.split_at(end);
    let head = String::from_utf8_lossy(head).into_owned();
    let mut out = String::new();
    let mut in_target = false;
    for line in head.split_inclusive("\r\n") {
        let continuation = line.starts_with([' ', '\t']);
        if !continuation {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            in_target = matches!(name.as_str(), "via" | "v" | "contact" | "m");
        }
        if in_target {
            out.push_str(&rewrite_hosts(line, host));
        } else {
            out.push_str(line);
        }
    }
    let mut v = out.into_bytes();
    // a lossy conversion must not change the header bytes we did not touch: only
    // rewrite messages whose header section is valid UTF-8
    if std::str::from_utf8(head.as_bytes()).is_err()
        || String::from_utf8(msg[..end].to_vec()).is_err()
    {
        v = msg[..end].to_vec();
    }
    v.extend_from_slice(body);
    v
}

fn rewrite_hosts(line: &str, host: &str) -> String {
    let mut s = line.to_string();
    // IPv6 references, through a placeholder: the host may be one itself
    while let (Some(a), Some(b)) = (s.find('['), s.find(']')) {
        if b <= a {
            break;
        }
        s.replace_range(a..=b, "\u{1}");
    }
    // 192.0.2.x documentation addresses and *.example.{com,net,org} names
    let mut out = String::with_capacity(s.len());
    for token in split_keep(&s) {
        let t = token.to_ascii_lowercase();
        if t.starts_with("192.0.2.")
            || t == "127.0.0.1"
            || t.ends_with("example.com")
            || t.ends_with("example.net")
            || t.ends_with("example.org")
        {
            out.push_str(host);
        } else {
            out.push_str(token);
        }
    }
    out.replace('\u{1}', host)
}

/// Split into host-like tokens and the separators between them.
fn split_keep(s: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let mut start = 0;
    let is_host = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    for i in 0..chars.len() {
        let (pos, c) = chars[i];
        let next_is_host = chars.get(i + 1).is_some_and(|(_, n)| is_host(*n));
        if is_host(c) != next_is_host || i + 1 == chars.len() {
            let end = pos + c.len_utf8();
            v.push(&s[start..end]);
            start = end;
        }
    }
    v
}

fn status(m: &Message) -> Option<u16> {
    match m.start {
        StartLine::Response { code, .. } => Some(code),
        _ => None,
    }
}

/// Responses (not 100) received within `wait`.
fn collect_udp(sock: &UdpSocket, wait: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let m = Message::parse(&buf[..n]).expect("the bridge sends parseable messages");
            if status(&m) != Some(100) {
                out.push(m);
            }
        }
    }
    out
}

fn collect_tcp(stream: &mut TcpStream, wait: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    let mut framer = StreamFramer::default();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                framer.push(&buf[..n]);
                while let Ok(Some(m)) = framer.next_message() {
                    let m = Message::parse(&m).expect("the bridge sends parseable messages");
                    if status(&m) != Some(100) {
                        out.push(m);
                    }
                }
            }
            Err(_) => {}
        }
    }
    out
}

/// What an expectation allows: Some(codes) for a response, None in the set for "no
/// response".
fn allowed(expect: &str) -> (Vec<Option<u16>>, Option<&'static str>) {
    let any_accept: Vec<Option<u16>> = [200, 404, 405, 481, 487, 488, 501]
        .into_iter()
        .map(Some)
        .collect();
    match expect {
        "400" => (vec![Some(400)], None),
        "501" => (vec![Some(501)], Some("Allow")),
        "505" => (vec![Some(505)], None),
        "416" => (vec![Some(416)], None),
        "drop" => (vec![None], None),
        "400_or_drop" => (vec![Some(400), None], None),
        "501_or_400" => (vec![Some(501), Some(400)], None),
        "416_or_404" => (vec![Some(416), Some(404)], None),
        "406_or_400" => (vec![Some(406), Some(400)], None),
        "420_with_Unsupported" => (vec![Some(420)], Some("Unsupported")),
        "415_with_Accept" => (vec![Some(415)], Some("Accept")),
        "process_as_endpoint(OPTIONS->200)" => (vec![Some(200)], None),
        "parse_ok(REGISTER->400/405)" => (vec![Some(400), Some(405)], None),
        "parse_ok(REGISTER->401/405)" => (vec![Some(401), Some(405)], None),
        "parse_ok(REGISTER->405_if_no_registrar)" => (vec![Some(405)], None),
        "parse_ok" | "parse_ok_ignore_trailing" => (any_accept, None),
        "400_or_accept"
        | "accept_or_400"
        | "400_or_accept_ignoring_headers"
        | "accept_or_400_no_crash" => {
            let mut v = any_accept;
            v.push(Some(400));
            (v, None)
        }
        other => panic!("unknown expectation {other}"),
    }
}

fn options_still_answered(bridge: &Bridge) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let local = s.local_addr().unwrap();
    let m = format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKalive{}\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: alive{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    s.send_to(m.as_bytes(), bridge.sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s
        .recv_from(&mut buf)
        .expect("bridge stopped answering OPTIONS");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
}

struct Case {
    file: String,
    bytes: Vec<u8>,
    expect: String,
}

fn rfc4475_cases() -> Vec<Case> {
    let dir = data("rfc4475");
    let tsv = std::fs::read_to_string(dir.join("expectations.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Case {
                file: cols[0].to_string(),
                bytes: std::fs::read(dir.join(cols[0])).unwrap(),
                expect: cols[3].to_string(),
            }
        })
        .collect()
}

fn rfc5118_cases() -> Vec<Case> {
    // RFC 5118 §4: parse OK unless the address is malformed (§4.2, §4.10)
    [
        ("ipv6-good", "parse_ok"),
        ("ipv6-bad", "400"),
        ("port-ambiguous", "parse_ok"),
        ("port-unambiguous", "parse_ok"),
        ("via-received-param-with-delim", "parse_ok"),
        ("via-received-param-no-delim", "parse_ok"),
        ("ipv6-in-sdp", "parse_ok"),
        ("mult-ip-in-header", "parse_ok"),
        ("mult-ip-in-sdp", "parse_ok"),
        ("ipv4-mapped-ipv6", "parse_ok"),
        ("ipv6-correct-abnf-2-colons", "parse_ok"),
        ("ipv6-bug-abnf-3-colons", "400"),
    ]
    .into_iter()
    .map(|(f, e)| Case {
        file: f.to_string(),
        bytes: std::fs::read(data("rfc5118").join(f)).unwrap(),
        expect: e.to_string(),
    })
    .collect()
}

fn check(case: &Case, got: &[Message], transport: &str) -> Result<(), String> {
    let (mut ok, header) = allowed(&case.expect);
    if case.bytes.starts_with(b"SIP/") {
        // a well-formed response matching no transaction is dropped too (§18.1.2)
        ok = vec![None];
    }
    let first = got.first().and_then(status);
    if !ok.contains(&first) {
        return Err(format!(
            "{} over {transport}: expected {}, got {first:?}",
            case.file, case.expect
        ));
    }
    if let (Some(h), Some(m)) = (header, got.first())
        && m.header(h).is_none()
    {
        return Err(format!(
            "{} over {transport}: response lacks {h}",
            case.file
        ));
    }
    // in a datagram, bytes after Content-Length are ignored; on a stream they are the
    // next message
    if case.expect == "parse_ok_ignore_trailing" && transport == "UDP" && got.len() != 1 {
        return Err(format!(
            "{}: trailing bytes made {} responses",
            case.file,
            got.len()
        ));
    }
    Ok(())
}

/// Send every case over UDP and TCP, over IPv4 loopback (each case from its own
/// 127.0.x.y) or over IPv6 loopback (from ::1, each case and transport with
/// branches of its own).
fn run(cases: &[Case], v6: bool) {
    let rooms = "[security]\ntrusted_sources = [\"127.0.0.0/8\", \"::1/128\"]\nhide_rooms = false\n\
                 [[room]]\nname = \"demo\"\n";
    let keys = if v6 {
        "t1_ms = 100\nlisten = [\"127.0.0.1:PORT\", \"[::1]:PORT\"]\n"
    } else {
        "t1_ms = 100\n"
    };
    let bridge = Bridge::start_with(keys, rooms);
    let target = |b: &Bridge| {
        if v6 {
            std::net::SocketAddr::new("::1".parse().unwrap(), b.sip.port())
        } else {
            b.sip
        }
    };
    let host = |net: u8, i: usize| {
        if v6 {
            "[::1]".to_string()
        } else {
            format!("127.0.{net}.{}", i + 1)
        }
    };
    // over IPv6 every case's Via names [::1]: branches made distinct per case
    // and transport, or the RFC's messages (which share branches) would be
    // taken for retransmissions of one another
    let own_branch = |msg: Vec<u8>, tag: String| -> Vec<u8> {
        if !v6 {
            return msg;
        }
        let end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(msg.len(), |p| p + 4);
        match std::str::from_utf8(&msg[..end]) {
            Ok(head) => {
                let mut out = head
                    .replace("branch=z9hG4bK", &format!("branch=z9hG4bK{tag}"))
                    .into_bytes();
                out.extend_from_slice(&msg[end..]);
                out
            }
            Err(_) => msg,
        }
    };
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let msg = own_branch(to_loopback(&case.bytes, &host(1, i)), format!("u{i}x"));
        // UDP
        let s = UdpSocket::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.send_to(&msg, target(&bridge)).unwrap();
        let got = collect_udp(&s, Duration::from_millis(250));
        if let Err(e) = check(case, &got, if v6 { "UDP/IPv6" } else { "UDP" }) {
            failures.push(e);
        }
        options_still_answered(&bridge);
        // TCP: the same, when the bytes frame as a message on a stream (a datagram
        // without a usable Content-Length cannot); otherwise the bridge must close
        // or wait, and keep serving.
        let mut framer = StreamFramer::default();
        framer.push(&msg);
        let frames = matches!(framer.next_message(), Ok(Some(_)));
        let msg = own_branch(to_loopback(&case.bytes, &host(2, i)), format!("t{i}x"));
        let mut t = TcpStream::connect(target(&bridge)).unwrap();
        t.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        t.write_all(&msg).unwrap();
        let got = collect_tcp(&mut t, Duration::from_millis(250));
        if frames {
            if let Err(e) = check(case, &got, if v6 { "TCP/IPv6" } else { "TCP" }) {
                failures.push(e);
            }
        } else if got.iter().any(|m| status(m).is_some_and(|c| c < 400)) {
            failures.push(format!(
                "{} over TCP: unframeable message was accepted",
                case.file
            ));
        }
        drop(t);
        options_still_answered(&bridge);
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(bridge.terminate(), Some(0));
}

#[test]
fn rfc4475_torture_messages() {
    let cases: Vec<Case> = rfc4475_cases()
        .into_iter()
        .filter(|c| c.file != "test.dat")
        .collect();
    assert_eq!(cases.len(), 49);
    run(&cases, false);
}

#[test]
fn rfc5118_ipv6_messages() {
    run(&rfc5118_cases(), false);
}

/// The same messages arriving over IPv6 loopback, as they would in the field.
#[test]
fn rfc5118_ipv6_messages_over_ipv6() {
    run(&rfc5118_cases(), true);
}

#[test]
fn loopback_rewrite_touches_only_via_and_contact() {
    let m = b"INVITE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP host1.example.com:5060;branch=z9hG4bKx\r\nv: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKy,\r\n SIP/2.0/UDP 192.0.2.9\r\nTo: <sip:b@example.com>\r\nm: <sip:c@192.0.2.4>\r\nContent-Length: 3\r\n\r\nabc";
    let r = String::from_utf8(to_loopback(m, "127.0.0.1")).unwrap();
    assert!(r.starts_with("INVITE sip:a@example.com SIP/2.0\r\n"));
    assert!(r.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx"));
    assert!(r.contains("v: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKy,\r\n SIP/2.0/UDP 127.0.0.1\r\n"));
    assert!(r.contains("To: <sip:b@example.com>"));
    assert!(r.contains("m: <sip:c@127.0.0.1>"));
    assert!(r.ends_with("\r\n\r\nabc"));
}
