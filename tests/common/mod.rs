//! Test harness: start the real `caucus` binary on loopback with a generated config,
//! and a small SIP/RTP user agent that sends a tone and records what it hears.
#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use caucus::media::rtp::{RtpPacket, write_header};
use caucus::sdp::{self, CodecKind, SessionDescription};
use caucus::sip::{Message, Method, StartLine};

pub mod http;

pub mod relay;
pub mod webdriver;
pub mod whip;

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// A free UDP+TCP port on loopback.
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running bridge.
pub struct Bridge {
    pub child: Child,
    pub sip: SocketAddr,
    /// the metrics listener (unless the test configured its own `[metrics]`)
    pub metrics: SocketAddr,
    /// the HTTP listener (pages, WHIP, API) unless the test configured its own
    /// `[api]`
    pub api: SocketAddr,
    /// the WebRTC port, unless the test configured its own `[webrtc]`
    pub webrtc: SocketAddr,
    pub rtp: (u16, u16),
    pub log: std::path::PathBuf,
    /// the generated config file
    pub config: std::path::PathBuf,
}

impl Bridge {
    /// Start with `rooms` (TOML `[[room]]` blocks appended to the generated config).
    pub fn start(rooms: &str) -> Bridge {
        Bridge::start_with("t1_ms = 100\n", rooms)
    }

    /// Start with these `[sip]` keys (besides `listen`) and the rest of the config.
    pub fn start_with(sip_keys: &str, rooms: &str) -> Bridge {
        Bridge::start_full(sip_keys, "", rooms)
    }

    /// Start with these `[sip]` and `[rtp]` keys (besides the addresses and ports
    /// the harness chooses) and the rest of the config.
    pub fn start_full(sip_keys: &str, rtp_keys: &str, rooms: &str) -> Bridge {
        // tests send far more than a stranger may (flood control): loopback is
        // trusted unless the test sets its own [security]
        let security = if rooms.contains("[security]") {
            ""
        } else {
            "[security]\ntrusted_sources = [\"127.0.0.0/8\"]\nhide_rooms = false\n"
        };
        Bridge::start_config(sip_keys, rtp_keys, &format!("{security}{rooms}"), &[])
    }

    /// [`Bridge::start_with`] with these environment variables for the process.
    pub fn start_env(sip_keys: &str, rooms: &str, env: &[(&str, &str)]) -> Bridge {
        let security = "[security]\ntrusted_sources = [\"127.0.0.0/8\"]\nhide_rooms = false\n";
        Bridge::start_config(sip_keys, "", &format!("{security}{rooms}"), env)
    }

    /// Start as a new user would configure it: no `[security]` section at all, so
    /// every default of flood control applies to the test's traffic.
    pub fn start_untrusted(rtp_keys: &str, rooms: &str) -> Bridge {
        Bridge::start_config("t1_ms = 100\n", rtp_keys, rooms, &[])
    }

    /// Start with these `[sip]` and `[rtp]` keys and the rest of the config as given.
    fn start_config(sip_keys: &str, rtp_keys: &str, rest: &str, env: &[(&str, &str)]) -> Bridge {
        // a port the harness chose may be taken (by a test's socket bound to port
        // 0) before the bridge binds it: the bridge says so and exits; start again
        // on other ports
        for _ in 0..5 {
            let mut b = Bridge::spawn(sip_keys, rtp_keys, rest, env);
            if b.wait_ready() {
                return b;
            }
            let exited = matches!(b.child.try_wait(), Ok(Some(_)));
            let log = std::fs::read_to_string(&b.log).unwrap_or_default();
            if !(exited && log.contains("Address already in use")) {
                panic!("bridge did not answer OPTIONS; its log:\n{log}");
            }
        }
        panic!("bridge could not find free ports in five tries");
    }

    fn spawn(sip_keys: &str, rtp_keys: &str, rest: &str, env: &[(&str, &str)]) -> Bridge {
        let sip_port = free_port();
        // distinct RTP ranges per bridge so tests in parallel never collide
        let block = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        // below Linux's ephemeral range (32768-60999), where sockets bound to port 0
        // (SIPp's, the test UAs') could take an RTP port from under the bridge
        let base = 20000 + (std::process::id() as u16 % 15) * 800 + (block % 8) * 100;
        let rtp = (base, base + 99);
        // a test that needs more legs names its own range
        // overload control (503 while media ticks run late) would judge the test
        // machine, busy with tests in parallel, rather than the bridge: off unless a
        // test sets it
        let overload = format!(
            "{}{}",
            if sip_keys.contains("overload_late_ms") {
                ""
            } else {
                "overload_late_ms = 0\n"
            },
            if sip_keys.contains("overload_load_percent") {
                ""
            } else {
                "overload_load_percent = 0\n"
            }
        );
        let ports = if rtp_keys.contains("port_min") {
            String::new()
        } else {
            format!("port_min = {}\nport_max = {}\n", rtp.0, rtp.1)
        };
        // every bridge has its own metrics listener (tests run in parallel)
        let metrics_port = free_port();
        let metrics = if rest.contains("[metrics]") {
            String::new()
        } else {
            format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")
        };
        // and its own HTTP listener and WebRTC port
        let (api_port, webrtc_port) = (free_port(), free_port());
        let api = if rest.contains("[api]") {
            String::new()
        } else {
            format!("[api]\nlisten = \"127.0.0.1:{api_port}\"\n")
        };
        let webrtc = if rest.contains("[webrtc]") {
            String::new()
        } else {
            format!("[webrtc]\nlisten = \"127.0.0.1:{webrtc_port}\"\n")
        };
        // a test may name its own listen addresses, with PORT for the harness's
        // (and SIP_PORT elsewhere: a cluster node's own sip_uri)
        let sip_keys = sip_keys.replace("PORT", &sip_port.to_string());
        let rest = rest.replace("SIP_PORT", &sip_port.to_string());
        let listen = if sip_keys
            .lines()
            .any(|l| l.trim_start().starts_with("listen"))
        {
            String::new()
        } else {
            format!("listen = \"127.0.0.1:{sip_port}\"\n")
        };
        let cfg = format!(
            "[sip]\n{listen}{sip_keys}{overload}[rtp]\n{ports}workers = 2\n{rtp_keys}{metrics}{api}{webrtc}{rest}"
        );
        let path = std::env::temp_dir().join(format!(
            "caucus-test-{}-{sip_port}.toml",
            std::process::id()
        ));
        std::fs::write(&path, cfg).unwrap();
        let log = std::env::temp_dir().join(format!("caucus-test-{sip_port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_caucus"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "caucus=debug")
            .envs(env.iter().copied())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        // a test that binds the bridge to another loopback address (a node of
        // a cluster) is answered there
        let sip_ip = sip_keys
            .lines()
            .find(|l| l.trim_start().starts_with("listen"))
            .and_then(|l| l.split('"').nth(1))
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        Bridge {
            child,
            sip: SocketAddr::new(sip_ip, sip_port),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            webrtc: SocketAddr::from(([127, 0, 0, 1], webrtc_port)),
            rtp,
            log,
            config: path,
        }
    }

    fn wait_ready(&mut self) -> bool {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let local = s.local_addr().unwrap();
        for i in 0..100 {
            let m = format!(
                "OPTIONS sip:ping@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{i}\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ready{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                self.sip
            );
            s.send_to(m.as_bytes(), self.sip).unwrap();
            let mut buf = [0u8; 4096];
            if s.recv_from(&mut buf).is_ok() {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
        }
        false
    }

    /// The HTTP listener is at this port (the test configured its own `[api]`).
    pub fn with_api(mut self, port: u16) -> Bridge {
        self.api = SocketAddr::from(([127, 0, 0, 1], port));
        self
    }

    /// What the bridge has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client TLS stream over TCP.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The next whole message `framer` holds, or one read from `s` into it:
/// Some(None) when the stream closed, None for nothing yet.
fn next_framed(
    s: &mut impl Read,
    framer: &mut caucus::sip::framing::StreamFramer,
    buf: &mut [u8],
) -> Option<Option<Message>> {
    if let Ok(Some(m)) = framer.next_message() {
        return Some(Some(Message::parse(&m).unwrap()));
    }
    match s.read(buf) {
        Ok(0) => Some(None),
        Ok(n) => {
            framer.push(&buf[..n]);
            None
        }
        Err(_) => None,
    }
}

/// A self-signed certificate for 127.0.0.1, ::1 and localhost, written as PEM
/// into `dir`: (certificate file, key file, the certificate).
pub fn test_certificate(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    rustls::pki_types::CertificateDer<'static>,
) {
    use base64::Engine as _;
    let ck = rcgen::generate_simple_self_signed(vec![
        "127.0.0.1".into(),
        "::1".into(),
        "localhost".into(),
    ])
    .unwrap();
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, pem("CERTIFICATE", ck.cert.der())).unwrap();
    std::fs::write(&key, pem("PRIVATE KEY", &ck.signing_key.serialize_der())).unwrap();
    (cert, key, ck.cert.der().clone())
}

/// Signalling transport of a test UA.
pub enum Signal {
    Udp(UdpSocket),
    Tcp(TcpStream, caucus::sip::framing::StreamFramer),
    Tls(Box<TlsStream>, caucus::sip::framing::StreamFramer),
}

/// A SIP user agent with one RTP stream.
pub struct Ua {
    pub sig: Signal,
    pub local: SocketAddr,
    pub bridge: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub cseq: u32,
    pub rtp: UdpSocket,
    pub codec: CodecKind,
    pub pt: u8,
    pub remote_rtp: Option<SocketAddr>,
    pub room: String,
    /// offer telephone-event (RFC 4733); false for in-band DTMF tests
    pub telephone_event: bool,
    /// RTP ticks sent so far (sequence and timestamp continue across helpers)
    pub rtp_tick: std::sync::atomic::AtomicU32,
    /// header lines (each ending CRLF) added to every request
    pub extra_headers: String,
    /// the dialog's route set and remote target, once a proxy record-routed
    /// the call (RFC 3261 §12.1.2): Route lines and the 2xx's Contact URI
    pub route: Option<(String, String)>,
    /// the transport profile offered (RTP/SAVP for SRTP)
    pub profile: &'static str,
    /// the answer's SDP, once answered
    pub answer: Option<SessionDescription>,
}

/// The SDP connection line for an address.
pub fn connection(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("c=IN IP4 {v4}"),
        std::net::IpAddr::V6(v6) => format!("c=IN IP6 {v6}"),
    }
}

pub fn sdp_offer(port: u16, codec: CodecKind, extra: &str) -> String {
    sdp_offer_with(port, codec, extra, true)
}

pub fn sdp_offer_with(port: u16, codec: CodecKind, extra: &str, telephone_event: bool) -> String {
    let (pt, map) = match codec {
        CodecKind::Pcmu => (0, "a=rtpmap:0 PCMU/8000\r\n"),
        CodecKind::Pcma => (8, "a=rtpmap:8 PCMA/8000\r\n"),
        CodecKind::Opus => (96, "a=rtpmap:96 opus/48000/2\r\n"),
        CodecKind::G722 => (9, "a=rtpmap:9 G722/8000\r\n"),
        CodecKind::L16 => panic!("L16 is never offered in SDP"),
    };
    let (fmt, te) = if telephone_event {
        (
            " 101",
            format!("a=rtpmap:101 telephone-event/{}\r\n", codec.clock_rate()),
        )
    } else {
        ("", String::new())
    };
    format!(
        "v=0\r\no=test 1 1 IN IP4 localhost\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}{fmt}\r\n{map}{te}a=ptime:20\r\n{extra}"
    )
}

impl Ua {
    pub fn new(bridge: SocketAddr, room: &str, codec: CodecKind, tcp: bool, name: &str) -> Ua {
        Ua::new_at("127.0.0.1".parse().unwrap(), bridge, room, codec, tcp, name)
    }

    /// A UA whose sockets are bound to `ip` (another loopback address: another
    /// source to the bridge).
    pub fn new_at(
        ip: std::net::IpAddr,
        bridge: SocketAddr,
        room: &str,
        codec: CodecKind,
        tcp: bool,
        name: &str,
    ) -> Ua {
        let (sig, local) = if tcp {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(bridge),
                socket2::Type::STREAM,
                None,
            )
            .unwrap();
            s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            s.connect(&bridge.into()).unwrap();
            let s: TcpStream = s.into();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let l = s.local_addr().unwrap();
            (Signal::Tcp(s, Default::default()), l)
        } else {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let l = s.local_addr().unwrap();
            (Signal::Udp(s), l)
        };
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        Ua {
            sig,
            local,
            bridge,
            call_id: format!("{name}-{}", local.port()),
            from_tag: format!("tag{name}"),
            to_tag: String::new(),
            cseq: 1,
            rtp,
            codec,
            pt: 0,
            remote_rtp: None,
            room: room.to_string(),
            telephone_event: true,
            rtp_tick: std::sync::atomic::AtomicU32::new(0),
            extra_headers: String::new(),
            route: None,
            profile: "RTP/AVP",
            answer: None,
        }
    }

    /// A UA over TLS to `bridge` (a TLS listener), trusting only `ca`.
    pub fn new_tls(
        bridge: SocketAddr,
        room: &str,
        codec: CodecKind,
        name: &str,
        ca: &rustls::pki_types::CertificateDer<'static>,
    ) -> Ua {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(bridge).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = tcp.local_addr().unwrap();
        let name_ip = rustls::pki_types::ServerName::IpAddress(bridge.ip().into());
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name_ip).unwrap();
        // media on the signalling's address family
        let mut ua = Ua::new_at(local.ip(), bridge, room, codec, false, name);
        ua.local = local;
        ua.call_id = format!("{name}-{}", local.port());
        ua.sig = Signal::Tls(
            Box::new(rustls::StreamOwned::new(conn, tcp)),
            Default::default(),
        );
        ua
    }

    fn transport(&self) -> &'static str {
        match self.sig {
            Signal::Udp(_) => "UDP",
            Signal::Tcp(..) => "TCP",
            Signal::Tls(..) => "TLS",
        }
    }

    pub fn send_raw(&mut self, data: &[u8]) {
        match &mut self.sig {
            Signal::Udp(s) => {
                s.send_to(data, self.bridge).unwrap();
            }
            Signal::Tcp(s, _) => s.write_all(data).unwrap(),
            Signal::Tls(s, _) => {
                s.write_all(data).unwrap();
                s.flush().unwrap();
            }
        }
    }

    /// Next SIP message from the bridge, or None after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            match &mut self.sig {
                Signal::Udp(s) => {
                    if let Ok((n, _)) = s.recv_from(&mut buf) {
                        return Some(Message::parse(&buf[..n]).unwrap());
                    }
                }
                Signal::Tcp(s, pending) => {
                    if let Some(m) = next_framed(s, pending, &mut buf) {
                        return m;
                    }
                }
                Signal::Tls(s, pending) => {
                    if let Some(m) = next_framed(s.as_mut(), pending, &mut buf) {
                        return m;
                    }
                }
            }
        }
        None
    }

    pub fn request(&self, method: &str, cseq: u32, body: &str, branch: &str) -> String {
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let (target, routes) = match (&self.route, self.to_tag.is_empty()) {
            (Some((routes, target)), false) => (target.clone(), routes.as_str()),
            _ => (format!("sip:{}@{}", self.room, self.bridge), ""),
        };
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={branch};rport\r\nMax-Forwards: 70\r\n{routes}{}From: <sip:ua@127.0.0.1>;tag={}\r\nTo: <sip:{}@127.0.0.1>{to_tag}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:ua@{}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.transport(),
            self.local,
            self.extra_headers,
            self.from_tag,
            self.room,
            self.call_id,
            self.local,
            body.len()
        )
    }

    /// Wait for a final response, skipping provisional ones and anything else.
    pub fn final_response(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self.recv(Duration::from_millis(200))
                && matches!(m.start, StartLine::Response { code, .. } if code >= 200)
            {
                return Some(m);
            }
        }
        None
    }

    /// INVITE, wait for 200, ACK; returns the status.
    pub fn call(&mut self, extra_sdp: &str) -> u16 {
        let rtp = self.rtp.local_addr().unwrap();
        let body = sdp_offer_with(rtp.port(), self.codec, extra_sdp, self.telephone_event)
            .replace("c=IN IP4 127.0.0.1", &connection(rtp.ip()))
            .replace(" RTP/AVP ", &format!(" {} ", self.profile));
        let inv = self.request(
            "INVITE",
            self.cseq,
            &body,
            &format!("z9hG4bK{}inv{}", self.call_id, self.cseq),
        );
        self.send_raw(inv.as_bytes());
        let resp = self
            .final_response(Duration::from_secs(5))
            .expect("final response to INVITE");
        let StartLine::Response { code, .. } = resp.start else {
            unreachable!()
        };
        if code != 200 {
            return code;
        }
        let to = caucus::sip::headers::NameAddr::parse(resp.header("To").unwrap(), "To").unwrap();
        self.to_tag = to.tag().unwrap().to_string();
        let rr = resp.list("Record-Route");
        if !rr.is_empty() {
            let contact = resp
                .header("Contact")
                .and_then(|c| caucus::sip::headers::NameAddr::parse(c, "Contact").ok())
                .map(|n| n.uri)
                .expect("a 2xx through a proxy has a Contact");
            let routes: String = rr.iter().rev().map(|r| format!("Route: {r}\r\n")).collect();
            self.route = Some((routes, contact));
        }
        let sd = SessionDescription::parse(&resp.body).unwrap();
        let (_, p) = sdp::select_audio(&sd, caucus::sdes::MasterKey::random).unwrap();
        assert_eq!(p.codec, self.codec);
        self.pt = p.pt;
        self.remote_rtp = Some(SocketAddr::new(p.remote_ip.unwrap(), p.remote_port));
        self.answer = Some(sd.clone());
        let ack = self.request(
            "ACK",
            self.cseq,
            "",
            &format!("z9hG4bK{}ack{}", self.call_id, self.cseq),
        );
        self.send_raw(ack.as_bytes());
        self.cseq += 1;
        200
    }

    /// Wait up to `secs` for a BYE from the bridge (answered 200); returns when it
    /// came. Sends no RTP meanwhile.
    pub fn wait_for_bye(&mut self, secs: f64) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < deadline {
            if let Some(m) = self.recv(Duration::from_millis(50))
                && m.method() == Some(&caucus::sip::Method::Bye)
            {
                let at = Instant::now();
                let ok = format!(
                    "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                    m.header("Via").unwrap_or(""),
                    m.header("From").unwrap_or(""),
                    m.header("To").unwrap_or(""),
                    m.header("Call-ID").unwrap_or(""),
                    m.header("CSeq").unwrap_or("")
                );
                self.send_raw(ok.as_bytes());
                return Some(at);
            }
        }
        None
    }

    /// BYE; returns the final status.
    pub fn hangup(&mut self) -> u16 {
        let bye = self.request(
            "BYE",
            self.cseq,
            "",
            &format!("z9hG4bK{}bye{}", self.call_id, self.cseq),
        );
        self.cseq += 1;
        self.send_raw(bye.as_bytes());
        match self.final_response(Duration::from_secs(5)) {
            Some(Message {
                start: StartLine::Response { code, .. },
                ..
            }) => code,
            _ => 0,
        }
    }
}

/// Sends a tone and records what comes back, decoded to PCM at the codec's
/// sampling rate, with the bridge's own codecs.
pub struct Stream {
    enc: caucus::media::codec::Encoder,
    dec: caucus::media::codec::Decoder,
    pub heard: Vec<i16>,
    /// SRTP both ways, when the call is secured
    pub srtp: Option<caucus::media::srtp::Srtp>,
    /// with SRTP: what came in, decoded as µ-law before decryption (what a
    /// capture on the wire would play)
    pub wire: Vec<i16>,
    /// telephone-event packets received (payload type 101): (timestamp, event)
    pub events: Vec<(u32, caucus::media::rtp::TelephoneEvent)>,
    seq: u16,
    ts: u32,
    phase: f64,
}

impl Stream {
    pub fn new(codec: CodecKind) -> Stream {
        Stream {
            enc: caucus::media::codec::Encoder::new(codec).unwrap(),
            dec: caucus::media::codec::Decoder::new(codec).unwrap(),
            heard: Vec::new(),
            srtp: None,
            wire: Vec::new(),
            events: Vec::new(),
            seq: 1000,
            ts: 0,
            phase: 0.0,
        }
    }

    /// Press `digits` as RFC 4733 events (payload type 101), 100 ms each with
    /// three end packets, 100 ms of silence after each, on this stream's
    /// sequence and clock; what comes back is kept in `heard`.
    pub fn send_digits(&mut self, ua: &Ua, digits: &str) {
        let to = ua.remote_rtp.unwrap();
        let n = ua.codec.clock_rate() / 50;
        let ssrc = 0x1234_0000 + u32::from(ua.local.port());
        let mut pkt = [0u8; 16];
        for d in digits.chars() {
            let code = caucus::media::rtp::TelephoneEvent::code(d).unwrap();
            let start = self.ts;
            for i in 0..8u32 {
                let end = i >= 5;
                let ev = caucus::media::rtp::TelephoneEvent {
                    event: code,
                    end,
                    volume: 10,
                    duration: ((i.min(4) + 1) * n) as u16,
                };
                write_header(&mut pkt, 101, i == 0, self.seq, start, ssrc);
                ev.write(&mut pkt[12..16]);
                self.seq = self.seq.wrapping_add(1);
                ua.rtp.send_to(&pkt, to).unwrap();
                if i < 5 {
                    self.ts = self.ts.wrapping_add(n);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            self.run(ua, 0.0, Duration::from_millis(100));
        }
    }

    /// Run for `dur`: one 20 ms packet of `freq` Hz out per tick, everything in decoded.
    pub fn run(&mut self, ua: &Ua, freq: f64, dur: Duration) {
        let rate = ua.codec.sample_rate() as usize;
        let n = rate / 50;
        let per_tick = ua.codec.clock_rate() / 50;
        let to = ua.remote_rtp.unwrap();
        ua.rtp.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let mut tick = 0u32;
        let mut pkt = [0u8; 1500];
        let mut buf = [0u8; 1500];
        let mut pcm_in = vec![0i16; 5760];
        while start.elapsed() < dur {
            let pcm: Vec<i16> = (0..n)
                .map(|_| {
                    self.phase += 2.0 * std::f64::consts::PI * freq / rate as f64;
                    (6000.0 * self.phase.sin()) as i16
                })
                .collect();
            let len = self.enc.encode(&pcm, &mut pkt[12..]);
            write_header(
                &mut pkt,
                ua.pt,
                tick == 0,
                self.seq,
                self.ts,
                0x1234_0000 + u32::from(ua.local.port()),
            );
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(per_tick);
            let out = match &mut self.srtp {
                Some(s) => s.protect(&mut pkt, 12 + len),
                None => 12 + len,
            };
            ua.rtp.send_to(&pkt[..out], to).unwrap();
            while let Ok((m, _)) = ua.rtp.recv_from(&mut buf) {
                let mut m = m;
                if let Some(s) = &mut self.srtp {
                    // as µ-law, whatever it is: the SRTP tests call with PCMU
                    let wire = &buf[12.min(m)..m.saturating_sub(10).max(12.min(m))];
                    let mut w = vec![0i16; wire.len()];
                    caucus::media::g711::decode_ulaw(wire, &mut w);
                    self.wire.extend_from_slice(&w);
                    match s.unprotect(&mut buf[..m]) {
                        Ok(n) => m = n,
                        Err(_) => continue,
                    }
                }
                let Ok(p) = RtpPacket::parse(&buf[..m]) else {
                    continue;
                };
                if p.pt == 101
                    && let Some(ev) = caucus::media::rtp::TelephoneEvent::parse(p.payload)
                {
                    self.events.push((p.timestamp, ev));
                }
                if p.pt != ua.pt {
                    continue;
                }
                let k = self.dec.decode(p.payload, &mut pcm_in);
                self.heard.extend_from_slice(&pcm_in[..k]);
            }
            tick += 1;
            let next = start + Duration::from_millis(20 * u64::from(tick));
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }
}

/// Every UA sends its tone (on its codec) for `dur`, all at once; what each
/// heard.
pub fn converse(parts: &[(&Ua, f64)], dur: Duration) -> Vec<Vec<i16>> {
    std::thread::scope(|s| {
        let talking: Vec<_> = parts
            .iter()
            .map(|&(ua, f)| {
                s.spawn(move || {
                    let mut st = Stream::new(ua.codec);
                    st.run(ua, f, dur);
                    st.heard
                })
            })
            .collect();
        talking.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

pub use caucus::media::goertzel::power as goertzel;

/// The id of the participant (in a room's participant list) whose Call-ID
/// holds `tag`: each test UA's Call-ID carries its name.
pub fn participant_id(parts: &serde_json::Value, tag: &str) -> String {
    parts
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["call_id"].as_str().is_some_and(|c| c.contains(tag)))
        })
        .unwrap_or_else(|| panic!("no participant whose Call-ID holds {tag}: {parts}"))["id"]
        .to_string()
}

/// Power in dB (10·log10).
pub fn db(p: f64) -> f64 {
    10.0 * (p.max(1e-12)).log10()
}

/// Write a 16-bit PCM WAV of a sine at `freq` Hz (amplitude 6000), `channels` copies.
pub fn write_wav(path: &std::path::Path, rate: u32, channels: u16, freq: f64, secs: f64) {
    let n = (f64::from(rate) * secs) as usize;
    let mut data = Vec::with_capacity(n * usize::from(channels) * 2);
    for i in 0..n {
        let v = (6000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
            as i16;
        for _ in 0..channels {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// The last value of `column` in a SIPp `-trace_stat` CSV (0 when absent).
pub fn sipp_stat(path: &std::path::Path, column: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let Some(idx) = header.iter().position(|h| *h == column) else {
        return 0;
    };
    lines
        .last()
        .and_then(|l| l.split(';').nth(idx))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A scripted UAS on its own socket (a dial-out's far end).
pub struct Uas {
    pub sock: UdpSocket,
}

impl Uas {
    pub fn new() -> Uas {
        Uas::at("127.0.0.1".parse().unwrap())
    }
    /// A UAS bound to `ip` (::1 for IPv6).
    pub fn at(ip: std::net::IpAddr) -> Uas {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Uas { sock }
    }
    pub fn uri(&self) -> String {
        format!("sip:uas@{}", self.sock.local_addr().unwrap())
    }
    pub fn recv(&self, secs: u64) -> Option<(Message, SocketAddr)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                return Some((Message::parse(&buf[..n]).unwrap(), from));
            }
        }
        None
    }
    pub fn recv_method(&self, m: Method, secs: u64) -> (Message, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some((msg, from)) = self.recv(1)
                && msg.method() == Some(&m)
            {
                return (msg, from);
            }
        }
        panic!("no {m:?} within {secs} s");
    }
    /// Answer `invite` (from `from`) with 200 and PCMU from an RTP socket of
    /// its own at the UAS's address: returns the Ua that owns that socket, for
    /// the media only, sending to the offer's address.
    pub fn answer_pcmu(&self, invite: &Message, from: SocketAddr, bridge: SocketAddr) -> Ua {
        let ip = self.sock.local_addr().unwrap().ip();
        let mut media = Ua::new_at(ip, bridge, "x", CodecKind::Pcmu, false, "uasmedia");
        let offer = SessionDescription::parse(&invite.body).unwrap();
        let (_, p) = sdp::select_audio(&offer, || None).unwrap();
        media.remote_rtp = Some(SocketAddr::new(p.remote_ip.unwrap(), p.remote_port));
        media.pt = 0;
        let port = media.rtp.local_addr().unwrap().port();
        let mut answer = sdp_offer_with(port, CodecKind::Pcmu, "", false);
        if ip.is_ipv6() {
            answer = answer
                .replace("IN IP4 127.0.0.1", &format!("IN IP6 {ip}"))
                .replace("IN IP4 localhost", &format!("IN IP6 {ip}"));
        }
        self.respond(
            invite,
            from,
            200,
            &format!(
                "Contact: <sip:uas@{}>\r\nContent-Type: application/sdp\r\n",
                self.sock.local_addr().unwrap()
            ),
            &answer,
        );
        media
    }
    pub fn respond(&self, req: &Message, to: SocketAddr, code: u16, extra: &str, body: &str) {
        let to_hdr = req.header("To").unwrap();
        let to_hdr = if code > 100 && !to_hdr.contains("tag=") {
            format!("{to_hdr};tag=uas")
        } else {
            to_hdr.to_string()
        };
        let msg = format!(
            "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {to_hdr}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            req.header("Via").unwrap(),
            req.header("From").unwrap(),
            req.header("Call-ID").unwrap(),
            req.header("CSeq").unwrap(),
            body.len()
        );
        self.sock.send_to(msg.as_bytes(), to).unwrap();
    }
}
