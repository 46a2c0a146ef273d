//! `--webrtc`: browser legs. Each leg is a WebRTC client made with str0m, the
//! library the bridge uses (a full ICE agent, the DTLS client, SRTP), on its own
//! loopback socket, joined by WHIP; it sends Opus (encoded once up front) every
//! 20 ms and counts what the room sends back. The same shape is then run with
//! Opus SIP legs against a fresh bridge, so that the two bridge CPU figures
//! come from one invocation on one machine. The generator's own SRTP and str0m
//! work runs beside the bridge on the same cores; the bridge's CPU is read from
//! /proc for the bridge alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use caucus::media::opus;
use str0m::change::SdpAnswer;
use str0m::format::Codec as StrCodec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::bridge::{
    API_TOKEN, machine_ticks, proc_cpu_ticks, rss_kib, start_bridge, utc_second_of_day,
};
use super::legs::{PROBE_TONE, TONES, tone_payloads};
use super::report::{Report, percentile};
use super::run::{Held, Lateness, probe_levels};
use super::{Args, Codec};

/// One browser stand-in.
struct Client {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    pt: Option<str0m::format::PayloadParams>,
    talker: Option<usize>,
    seq: u64,
    ts: u32,
    connected: bool,
    // RFC 3550 A.1 counters of what the room sent
    first_seq: Option<u16>,
    max_seq: u16,
    cycles: u32,
    received: u64,
}

/// POST `body` (SDP) to `path` on `api`: status, Location, body.
fn post_sdp(api: SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(api).expect("the bridge's HTTP listener");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (mut location, mut len) = (String::new(), 0usize);
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "location" => location = v.trim().to_string(),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b).unwrap();
    (status, location, String::from_utf8_lossy(&b).into_owned())
}

impl Client {
    fn join(api: SocketAddr, room: usize, talker: Option<usize>) -> Option<Client> {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let local = sock.local_addr().unwrap();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (status, _, body) = post_sdp(
            api,
            &format!("/v1/rooms/r{room}/whip"),
            &offer.to_sdp_string(),
        );
        if status != 201 {
            eprintln!("  WHIP answered {status}: {body}");
            return None;
        }
        let answer = SdpAnswer::from_sdp_string(&body).ok()?;
        rtc.sdp_api().accept_answer(pending, answer).ok()?;
        let pt = rtc
            .codec_config()
            .find(|p| p.spec().codec == StrCodec::Opus)
            .cloned();
        Some(Client {
            rtc,
            sock,
            local,
            mid,
            pt,
            talker,
            seq: 0,
            ts: 0,
            connected: false,
            first_seq: None,
            max_seq: 0,
            cycles: 0,
            received: 0,
        })
    }

    /// Everything str0m has to say; RTP from the room goes to `heard`.
    fn drain(&mut self, mut heard: impl FnMut(&[u8])) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => return,
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    let seq = p.header.sequence_number;
                    match self.first_seq {
                        None => {
                            self.first_seq = Some(seq);
                            self.max_seq = seq;
                        }
                        Some(_) => {
                            let d = seq.wrapping_sub(self.max_seq);
                            if d != 0 && d < 0x8000 {
                                if seq < self.max_seq {
                                    self.cycles += 1 << 16;
                                }
                                self.max_seq = seq;
                            }
                        }
                    }
                    self.received += 1;
                    heard(&p.payload);
                }
                Ok(Output::Event(_)) => {}
            }
        }
    }

    /// Read the socket dry and run str0m's timers.
    fn read(&mut self, buf: &mut [u8], mut heard: impl FnMut(&[u8])) {
        let now = Instant::now();
        while let Ok((n, from)) = self.sock.recv_from(buf) {
            if let Ok(r) = Receive::new(Protocol::Udp, from, self.local, &buf[..n]) {
                let _ = self.rtc.handle_input(Input::Receive(now, r));
                self.drain(&mut heard);
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain(&mut heard);
    }

    fn send(&mut self, payload: &[u8]) {
        let Some(pt) = self.pt.as_ref().map(|p| p.pt()) else {
            return;
        };
        self.seq += 1;
        self.ts = self.ts.wrapping_add(960);
        let (seq, ts) = (self.seq, self.ts);
        let mut api = self.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(self.mid, None) {
            tx.write_rtp(RtpWrite::new(
                pt,
                seq.into(),
                ts,
                Instant::now(),
                payload.to_vec(),
            ));
        }
        self.drain(|_| {});
    }

    fn expected(&self) -> u64 {
        self.first_seq.map_or(0, |f| {
            u64::from(self.cycles + u32::from(self.max_seq)).wrapping_sub(u64::from(f)) + 1
        })
    }
}

/// Run `n` browser legs in rooms of `per_room` and report them.
pub(crate) fn run_webrtc(args: &Args, bin: &Path, per_room: usize, n: usize) -> Report {
    str0m::crypto::from_feature_flags().install_process_default();
    let rooms = n.div_ceil(per_room);
    let bridge = start_bridge(bin, rooms, n, Some(0), true, false, args.untreated);
    let pid = bridge.child.id();
    let rss_before = rss_kib(pid);
    let talkers = args.talkers.min(per_room.saturating_sub(1));
    let setup_start = Instant::now();
    let mut setup_ms = Vec::new();
    let mut failures = 0;
    let mut clients: Vec<Client> = Vec::with_capacity(n);
    for i in 0..n {
        let slot = i % per_room;
        let talker = (1..=talkers).position(|k| slot == 1 + (k - 1) * (per_room - 1) / talkers);
        let t = Instant::now();
        match Client::join(bridge.api, i / per_room, talker) {
            Some(c) => {
                clients.push(c);
                setup_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            None => failures += 1,
        }
    }
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| !c.connected) && Instant::now() < deadline {
        for c in clients.iter_mut() {
            c.read(&mut buf, |_| {});
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let unconnected = clients.iter().filter(|c| !c.connected).count();
    eprintln!(
        "  {} browser legs joined by WHIP and connected (ICE, DTLS) in {:.1} s, {} failed, {} never connected",
        clients.len(),
        setup_start.elapsed().as_secs_f64(),
        failures,
        unconnected
    );
    let tones: Vec<Vec<Vec<u8>>> = TONES
        .iter()
        .map(|&f| tone_payloads(Codec::Opus, f))
        .collect();
    let probe_tone = tone_payloads(Codec::Opus, PROBE_TONE);
    let silence = tone_payloads(Codec::Opus, 0.0);
    let mut dec = opus::Decoder::new().unwrap();
    let mut probe_pcm: Vec<i16> = Vec::new();
    let warmup = Duration::from_secs(2);
    let hold = Duration::from_secs(args.hold);
    let start = Instant::now();
    let mut tick = 0u64;
    let mut measure: Option<Held> = None;
    while start.elapsed() < warmup + hold {
        if measure.is_none() && start.elapsed() >= warmup {
            measure = Some(Held::now(pid));
            for c in clients.iter_mut() {
                c.first_seq = None;
                c.received = 0;
                c.cycles = 0;
            }
            probe_pcm.clear();
        }
        let frame = (tick % 50) as usize;
        for (i, c) in clients.iter_mut().enumerate() {
            let p = if i == 0 {
                &probe_tone[frame]
            } else {
                match c.talker {
                    Some(t) => &tones[t % TONES.len()][frame],
                    None => &silence[frame],
                }
            };
            c.send(p);
        }
        let due = start + Duration::from_millis(20 * (tick + 1));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d.saturating_sub(Duration::from_millis(2)));
        }
        let measuring = measure.is_some();
        for (i, c) in clients.iter_mut().enumerate() {
            if i == 0 && measuring {
                c.read(&mut buf, |payload| {
                    let mut out = [0i16; 5760];
                    if let Ok(k) = dec.decode(Some(payload), &mut out) {
                        probe_pcm.extend_from_slice(&out[..k]);
                    }
                });
            } else {
                c.read(&mut buf, |_| {});
            }
        }
        tick += 1;
    }
    let Held {
        t_measure,
        hold_from,
        cpu0,
        m0,
        rss_after,
    } = measure.expect("a hold");
    let elapsed = t_measure.elapsed().as_secs_f64();
    let hold_to = utc_second_of_day();
    let cpu1 = proc_cpu_ticks(pid);
    let m1 = machine_ticks();
    let (user_ticks, cpu_ticks) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let (mtotal, midle, msteal) = (m1.0 - m0.0, m1.1 - m0.1, m1.2 - m0.2);
    let up = clients.iter().filter(|c| c.connected).count().max(1);
    let ticks_held = elapsed / 0.020;
    let expected: u64 = clients.iter().map(Client::expected).sum();
    let received: u64 = clients.iter().map(|c| c.received).sum();
    let loss = if expected == 0 {
        100.0
    } else {
        expected.saturating_sub(received) as f64 * 100.0 / expected as f64
    };
    let late = Lateness::from_log(&bridge.log, hold_from, hold_to, n);
    let (talkers_db, self_db) = probe_levels(&probe_pcm, 48_000.0, args.talkers);
    Report {
        shape: format!("{rooms}x{per_room}"),
        codec: "webrtc".into(),
        rooms,
        per_room,
        participants: n,
        setup_failures: failures + unconnected,
        refused: 0,
        setup_p99_ms: percentile(&mut setup_ms, 0.99),
        bridge_cpu_us_per_participant_tick: cpu_ticks as f64 / 100.0 * 1e6
            / (up as f64 * ticks_held),
        bridge_user_us_per_participant_tick: user_ticks as f64 / 100.0 * 1e6
            / (up as f64 * ticks_held),
        bridge_cpu_percent: cpu_ticks as f64 / 100.0 * 100.0 / elapsed,
        machine_cpu_percent: if mtotal == 0 {
            0.0
        } else {
            (mtotal - midle) as f64 * 100.0 / mtotal as f64
        },
        machine_steal_percent: if mtotal == 0 {
            0.0
        } else {
            msteal as f64 * 100.0 / mtotal as f64
        },
        rtp_loss_percent: loss,
        jitter_ms_mean: 0.0,
        tick_late_p50_us: late.pooled(0.5),
        tick_late_p99_us: late.pooled(0.99),
        tick_late_p99_worst_interval_us: late.p99_worst,
        tick_late_max_us: late.max,
        tick_offcpu_max_us: late.offcpu,
        memory_kib_per_participant: rss_after.saturating_sub(rss_before) as f64 / up as f64,
        probe_hears_talkers_db: talkers_db,
        probe_hears_self_db: self_db,
    }
}
