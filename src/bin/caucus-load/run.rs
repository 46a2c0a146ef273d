//! One run of one room shape: the calls brought up (all first, or at a rate
//! while the others stream), every leg streaming its tone or silence each 20 ms
//! while the mix it gets back is counted, then the figures: CPU, loss and
//! jitter, tick lateness from the bridge's statistics, what the probe heard.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, IoSlice};
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use caucus::media::{g711, opus, rtp};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};

use super::bridge::{
    STATS_EVERY, log_second_of_day, machine_ticks, proc_cpu_ticks, rss_kib, since, start_bridge,
    utc_second_of_day,
};
use super::legs::{Leg, PROBE_TONE, Setup, Signalling, TONES, tone_payloads};
use super::report::{Report, percentile};
use super::{Args, Codec, Shape};

/// Run `shape` with `n` participants and report it.
pub(crate) fn run_shape(args: &Args, bin: &Path, shape: Shape, n: usize) -> Report {
    let per_room = match shape {
        Shape::One => n,
        Shape::Five => 5,
        Shape::Fifty => 50,
        Shape::All => unreachable!(),
    };
    let rooms = n.div_ceil(per_room);
    let overload = match (args.overload_percent, args.ramp) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => Some(0),
    };
    let bridge = start_bridge(
        bin,
        rooms,
        n,
        overload,
        false,
        args.baseline,
        args.untreated,
    );
    let pid = bridge.child.id();
    let rss_before = rss_kib(pid);
    let (pt, rtpmap, clock) = match args.codec {
        Codec::Pcmu => (0u8, "a=rtpmap:0 PCMU/8000", 8000u32),
        Codec::Opus => (96u8, "a=rtpmap:96 opus/48000/2", 48000u32),
    };

    let sig = UdpSocket::bind("127.0.0.1:0").unwrap();
    sig.set_nonblocking(true).unwrap();
    let sig_addr = sig.local_addr().unwrap();
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media.set_nonblocking(true).unwrap();
    // every tick the bridge sends one packet per leg in a burst to this one socket
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&media, 4 << 20);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&media, 4 << 20);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sig, 4 << 20);
    let mut legs = new_legs(n, per_room, args.talkers, sig_addr.port());
    let by_call: HashMap<String, usize> = legs
        .iter()
        .enumerate()
        .map(|(i, l)| (l.call_id.clone(), i))
        .collect();
    let te = if args.inband_dtmf {
        (String::new(), String::new())
    } else {
        (
            " 101".to_string(),
            format!("a=rtpmap:101 telephone-event/{clock}\r\n"),
        )
    };
    let sip = Signalling {
        sock: &sig,
        local: sig_addr,
        bridge: bridge.sip,
        media_port: media.local_addr().unwrap().port(),
        pt,
        rtpmap,
        te,
        by_call: &by_call,
    };
    // --- call setup: at most 100 INVITEs outstanding
    let setup_start = Instant::now();
    let mut setup = Setup::new(n);
    let mut buf = vec![0u8; 65536];
    let ramp = args.ramp.filter(|r| *r > 0.0);
    if ramp.is_none() {
        let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 50);
        while setup.done < n && Instant::now() < deadline {
            if setup.step(&mut legs, n, &sip, &mut buf).is_empty() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        setup.give_up();
        eprintln!(
            "  {n} calls set up in {:.1} s, {} failed",
            setup_start.elapsed().as_secs_f64(),
            setup.failures
        );
    }

    if args.coach_pairs > 0 {
        coach(&bridge, &legs, rooms, per_room, args.coach_pairs);
    }
    // --- media: one packet per leg per 20 ms
    let mut stream = Stream::new(args.codec, &legs, pt, clock);
    let held = stream.hold(args, &sip, &media, &mut legs, &mut setup, &mut buf, pid);
    let elapsed = held.t_measure.elapsed().as_secs_f64();
    let hold_to = utc_second_of_day();
    let cpu1 = proc_cpu_ticks(pid);
    let (user_ticks, cpu_ticks) = (cpu1.0 - held.cpu0.0, cpu1.1 - held.cpu0.1);
    let m1 = machine_ticks();
    let hz = 100.0; // USER_HZ on Linux
    let bridge_cpu_s = cpu_ticks as f64 / hz;
    let bridge_user_s = user_ticks as f64 / hz;
    let ticks_held = elapsed / 0.020;
    let (mtotal, midle, msteal) = (m1.0 - held.m0.0, m1.1 - held.m0.1, m1.2 - held.m0.2);
    // the legs that were up (all of them, unless a ramp was refused some)
    let up = legs
        .iter()
        .filter(|l| l.bridge_rtp.is_some())
        .count()
        .max(1);
    let (loss, jitter) = rtp_quality(&legs, elapsed, clock);

    // hang up
    for (i, l) in legs.iter().enumerate() {
        if !l.to_tag.is_empty() {
            let _ = sig.send_to(sip.ack_or_bye("BYE", 2, i, l).as_bytes(), bridge.sip);
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let late = Lateness::from_log(&bridge.log, held.hold_from, hold_to, n);
    let rate = if args.codec == Codec::Opus {
        48000.0
    } else {
        8000.0
    };
    // coaches are heard by their targets alone: the probe hears the others
    let heard = args.talkers.saturating_sub(args.coach_pairs).max(1);
    let (talkers_db, self_db) = probe_levels(&stream.probe_pcm, rate, heard);
    Report {
        shape: format!("{rooms}x{per_room}"),
        codec: if args.codec == Codec::Opus {
            "opus"
        } else {
            "pcmu"
        }
        .into(),
        rooms,
        per_room,
        participants: n,
        setup_failures: setup.failures,
        setup_p99_ms: percentile(&mut setup.setup_ms, 0.99),
        bridge_cpu_us_per_participant_tick: bridge_cpu_s * 1e6 / (up as f64 * ticks_held),
        bridge_user_us_per_participant_tick: bridge_user_s * 1e6 / (up as f64 * ticks_held),
        bridge_cpu_percent: bridge_cpu_s * 100.0 / elapsed,
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
        refused: setup.refused,
        rtp_loss_percent: loss,
        jitter_ms_mean: jitter,
        tick_late_p50_us: late.pooled(0.5),
        tick_late_p99_us: late.pooled(0.99),
        tick_late_p99_worst_interval_us: late.p99_worst,
        tick_late_max_us: late.max,
        tick_offcpu_max_us: late.offcpu,
        memory_kib_per_participant: held.rss_after.saturating_sub(rss_before) as f64 / up as f64,
        probe_hears_talkers_db: talkers_db,
        probe_hears_self_db: self_db,
    }
}

/// `n` legs in rooms of `per_room`. Leg 0 is the probe; `talkers` legs spread
/// over the rest of each room talk (the first right after the probe, the last
/// near the end), so that in a room spread over workers the probe hears
/// talkers of other shards too.
/// In every room the last `pairs` talkers each coach a listener (the last
/// listeners of the room): heard by it alone, by the API.
fn coach(
    bridge: &super::bridge::Bridge,
    legs: &[Leg],
    rooms: usize,
    per_room: usize,
    pairs: usize,
) {
    let mut set = 0;
    for r in 0..rooms {
        let (_, body) = super::bridge::api_call(
            bridge.api,
            "GET",
            &format!("/v1/rooms/r{r}/participants"),
            None,
        );
        let parts: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let id_of = |i: usize| {
            parts.as_array()?.iter().find_map(|p| {
                (p["call_id"].as_str() == Some(legs[i].call_id.as_str()))
                    .then(|| p["id"].as_u64())?
            })
        };
        let first = r * per_room;
        let room: Vec<usize> = (first..(first + per_room).min(legs.len())).collect();
        let talkers: Vec<usize> = room
            .iter()
            .copied()
            .filter(|&i| legs[i].talker.is_some())
            .collect();
        let listeners: Vec<usize> = room
            .iter()
            .copied()
            .filter(|&i| legs[i].talker.is_none() && i != first)
            .collect();
        for (c, t) in talkers.iter().rev().zip(listeners.iter().rev()).take(pairs) {
            let (Some(coach), Some(target)) = (id_of(*c), id_of(*t)) else {
                continue;
            };
            let (status, _) = super::bridge::api_call(
                bridge.api,
                "POST",
                &format!("/v1/rooms/r{r}/participants/{coach}/coach"),
                Some(&format!(r#"{{"target":{target}}}"#)),
            );
            if status == 200 {
                set += 1;
            }
        }
    }
    eprintln!("  {set} coaching pairs set ({pairs} per room asked)");
}

fn new_legs(n: usize, per_room: usize, talkers: usize, sig_port: u16) -> Vec<Leg> {
    (0..n)
        .map(|i| {
            let slot = i % per_room;
            Leg {
                room: i / per_room,
                call_id: format!("load-{i}-{sig_port}"),
                to_tag: String::new(),
                bridge_rtp: None,
                talker: (1..=talkers.min(per_room.saturating_sub(1)))
                    .position(|k| slot == 1 + (k - 1) * (per_room - 1) / talkers),
                seq: (i * 7) as u16,
                ts: (i * 1000) as u32,
                first_seq: None,
                cycles: 0,
                max_seq: 0,
                received: 0,
                transit: None,
                jitter: 0.0,
            }
        })
        .collect()
}

/// The media half of a run: payloads encoded once, where each leg's RTP goes,
/// and what the probe leg has heard.
struct Stream {
    pt: u8,
    clock: u32,
    tones: Vec<Vec<Vec<u8>>>,
    probe_tone: Vec<Vec<u8>>,
    silence: Vec<Vec<u8>>,
    /// legs by the bridge's RTP port
    port_index: HashMap<u16, usize>,
    dest: Vec<Option<SocketAddrAny>>,
    headers: Vec<[u8; 12]>,
    probe_dec: Option<opus::Decoder>,
    probe_pcm: Vec<i16>,
}

/// When the measured hold began, and the counters read then.
pub(crate) struct Held {
    pub(crate) t_measure: Instant,
    pub(crate) hold_from: f64,
    pub(crate) cpu0: (u64, u64),
    pub(crate) m0: (u64, u64, u64),
    pub(crate) rss_after: u64,
}

impl Held {
    /// The counters of the bridge `pid` and of the machine, now.
    pub(crate) fn now(pid: u32) -> Held {
        Held {
            cpu0: proc_cpu_ticks(pid),
            m0: machine_ticks(),
            t_measure: Instant::now(),
            hold_from: utc_second_of_day(),
            rss_after: rss_kib(pid),
        }
    }
}

impl Stream {
    fn new(codec: Codec, legs: &[Leg], pt: u8, clock: u32) -> Stream {
        Stream {
            pt,
            clock,
            tones: TONES.iter().map(|&f| tone_payloads(codec, f)).collect(),
            probe_tone: tone_payloads(codec, PROBE_TONE),
            silence: tone_payloads(codec, 0.0),
            port_index: legs
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.bridge_rtp.map(|a| (a.port(), i)))
                .collect(),
            dest: legs
                .iter()
                .map(|l| l.bridge_rtp.map(SocketAddrAny::from))
                .collect(),
            headers: vec![[0u8; 12]; legs.len()],
            probe_dec: (codec == Codec::Opus).then(|| opus::Decoder::new().unwrap()),
            probe_pcm: Vec::new(),
        }
    }

    /// Stream through the warm-up and the hold (with a ramp, while calls are
    /// still set up: the hold starts once every INVITE has its answer).
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        args: &Args,
        sip: &Signalling<'_>,
        media: &UdpSocket,
        legs: &mut [Leg],
        setup: &mut Setup,
        buf: &mut [u8],
        pid: u32,
    ) -> Held {
        let n = legs.len();
        let ramp = args.ramp.filter(|r| *r > 0.0);
        let warmup = Duration::from_secs(2);
        let hold = Duration::from_secs(args.hold);
        let start = Instant::now();
        let mut held: Option<Held> = None;
        let mut tick = 0u64;
        let mut hold_end = (ramp.is_none()).then(|| start + warmup + hold);
        let ramp_deadline = start + Duration::from_secs(60 + n as u64 / 20);
        while hold_end.is_none_or(|t| Instant::now() < t) {
            if let Some(rate) = ramp {
                let allowed = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(n);
                for i in setup.step(legs, allowed, sip, buf) {
                    if let Some(a) = legs[i].bridge_rtp {
                        self.dest[i] = Some(SocketAddrAny::from(a));
                        self.port_index.insert(a.port(), i);
                    }
                }
                if hold_end.is_none() && (setup.done >= n || Instant::now() > ramp_deadline) {
                    setup.give_up();
                    eprintln!(
                        "  {n} calls offered at {rate}/s in {:.1} s: {} up, {} refused (503), {} failed",
                        start.elapsed().as_secs_f64(),
                        n - setup.failures - setup.refused,
                        setup.refused,
                        setup.failures
                    );
                    hold_end = Some(Instant::now() + hold);
                }
            }
            if held.is_none() && start.elapsed() >= warmup {
                held = Some(Held::now(pid));
                for l in legs.iter_mut() {
                    l.first_seq = None;
                    l.received = 0;
                    l.cycles = 0;
                    l.jitter = 0.0;
                    l.transit = None;
                }
                self.probe_pcm.clear();
            }
            self.send_tick(media, legs, (tick % 50) as usize);
            // receive until the next tick is due
            let due = start + Duration::from_millis(20 * (tick + 1));
            self.receive_until(media, legs, buf, start, due, held.is_some());
            tick += 1;
        }
        held.unwrap_or_else(|| Held::now(pid))
    }

    /// One RTP packet per leg that is up: a header each, payloads shared, all
    /// sent with sendmmsg in batches of 1024 so that the generator spends
    /// little CPU beside the bridge.
    fn send_tick(&mut self, media: &UdpSocket, legs: &mut [Leg], frame: usize) {
        for (i, l) in legs.iter_mut().enumerate() {
            if l.bridge_rtp.is_none() {
                continue;
            }
            rtp::write_header(
                &mut self.headers[i],
                self.pt,
                false,
                l.seq,
                l.ts,
                0x5000_0000 + i as u32,
            );
            l.seq = l.seq.wrapping_add(1);
            l.ts = l.ts.wrapping_add(self.clock / 50);
        }
        let iovs: Vec<[IoSlice<'_>; 2]> = legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let payload = if i == 0 {
                    &self.probe_tone[frame]
                } else {
                    match l.talker {
                        Some(t) => &self.tones[t % TONES.len()][frame],
                        None => &self.silence[frame],
                    }
                };
                [IoSlice::new(&self.headers[i]), IoSlice::new(payload)]
            })
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..legs.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = Vec::with_capacity(legs.len());
        for ((iov, ctl), addr) in iovs.iter().zip(controls.iter_mut()).zip(&self.dest) {
            if let Some(addr) = addr {
                msgs.push(MMsgHdr::new_with_addr(addr, iov, ctl));
            }
        }
        for chunk in msgs.chunks_mut(1024) {
            let mut done = 0;
            while done < chunk.len() {
                match sendmmsg(media, &mut chunk[done..], SendFlags::empty()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => done += n,
                }
            }
        }
    }

    /// Take what the bridge sends until `due`: RTP counters per leg (RFC 3550
    /// A.1 sequence, A.8 jitter), and the probe's audio while `measuring`.
    fn receive_until(
        &mut self,
        media: &UdpSocket,
        legs: &mut [Leg],
        buf: &mut [u8],
        start: Instant,
        due: Instant,
        measuring: bool,
    ) {
        loop {
            match media.recv_from(buf) {
                Ok((len, src)) => {
                    let Some(&i) = self.port_index.get(&src.port()) else {
                        continue;
                    };
                    let Ok(p) = rtp::RtpPacket::parse(&buf[..len]) else {
                        continue;
                    };
                    let l = &mut legs[i];
                    match l.first_seq {
                        None => {
                            l.first_seq = Some(p.seq);
                            l.max_seq = p.seq;
                        }
                        Some(_) => {
                            let d = p.seq.wrapping_sub(l.max_seq);
                            if d != 0 && d < 0x8000 {
                                if p.seq < l.max_seq {
                                    l.cycles += 1 << 16;
                                }
                                l.max_seq = p.seq;
                            }
                        }
                    }
                    l.received += 1;
                    let arrival = (start.elapsed().as_secs_f64() * f64::from(self.clock)) as i64;
                    // RTP clock arithmetic wraps (RFC 3550 A.8): a timestamp
                    // crossing 2^32 is not a jump of 2^32 in transit time
                    let transit = (arrival as u32).wrapping_sub(p.timestamp);
                    if let Some(prev) = l.transit {
                        let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                        l.jitter += (d - l.jitter) / 16.0;
                    }
                    l.transit = Some(transit);
                    if i == 0 && measuring {
                        match &mut self.probe_dec {
                            Some(d) => {
                                let mut out = [0i16; 5760];
                                if let Ok(k) = d.decode(Some(p.payload), &mut out) {
                                    self.probe_pcm.extend_from_slice(&out[..k]);
                                }
                            }
                            None => {
                                let mut out = vec![0i16; p.payload.len()];
                                g711::decode_ulaw(p.payload, &mut out);
                                self.probe_pcm.extend_from_slice(&out);
                            }
                        }
                    }
                }
                Err(_) => {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    std::thread::sleep((due - now).min(Duration::from_micros(500)));
                }
            }
        }
    }
}

/// Loss (%) and mean jitter (ms) across the legs that were up over `elapsed`
/// seconds.
fn rtp_quality(legs: &[Leg], elapsed: f64, clock: u32) -> (f64, f64) {
    let (mut expected, mut received, mut jit_sum, mut jit_n) = (0u64, 0u64, 0.0, 0u64);
    for l in legs.iter().filter(|l| l.bridge_rtp.is_some()) {
        if let Some(first) = l.first_seq {
            let ext = u64::from(l.cycles + u32::from(l.max_seq));
            expected += ext.wrapping_sub(u64::from(first)) + 1;
            received += l.received;
            jit_sum += l.jitter / f64::from(clock) * 1000.0;
            jit_n += 1;
        } else {
            expected += (elapsed * 50.0) as u64;
        }
    }
    let loss = if expected == 0 {
        100.0
    } else {
        expected.saturating_sub(received) as f64 * 100.0 / expected as f64
    };
    let jitter = if jit_n == 0 {
        0.0
    } else {
        jit_sum / jit_n as f64
    };
    (loss, jitter)
}

/// Tick lateness from the bridge's stats lines: every tick of every worker in
/// the intervals that count, pooled (bucket start µs → ticks), and the worst
/// figures of any one interval.
pub(crate) struct Lateness {
    hist: BTreeMap<u32, u64>,
    pub(crate) p99_worst: u32,
    pub(crate) max: u32,
    pub(crate) offcpu: u32,
}

impl Lateness {
    /// Each stats line covers the STATS_EVERY seconds before it; those that lie
    /// wholly inside the hold are the steady state (the set-up burst makes the
    /// first ticks late: every leg latches and connects its socket). With a hold
    /// too short for a whole interval, every interval with the legs up counts.
    pub(crate) fn from_log(log: &Path, hold_from: f64, hold_to: f64, n: usize) -> Lateness {
        let mut late = Lateness {
            hist: BTreeMap::new(),
            p99_worst: 0,
            max: 0,
            offcpu: 0,
        };
        let Ok(f) = std::fs::File::open(log) else {
            return late;
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        let within = |l: &String| {
            log_second_of_day(l).is_some_and(|t| {
                since(hold_from, t) >= STATS_EVERY - 0.1 && since(t, hold_to) >= -0.2
            })
        };
        let lines: Vec<&String> = if all
            .iter()
            .any(|l| l.contains("media tick stats") && within(l))
        {
            all.iter().filter(|l| within(l)).collect()
        } else {
            all.iter().collect()
        };
        let field = |l: &str, k: &str| -> Option<u32> {
            l.split_whitespace().find_map(|w| {
                w.strip_prefix(&format!("{k}="))
                    .and_then(|v| v.parse().ok())
            })
        };
        for l in lines.iter().filter(|l| l.contains("media tick stats")) {
            let l = l.as_str();
            let legs_in = field(l, "legs").unwrap_or(0);
            if (legs_in as usize) < n / 4 {
                continue; // set-up or tear-down interval
            }
            if let (Some(b), Some(c)) = (field(l, "late_p99_us"), field(l, "late_max_us")) {
                late.p99_worst = late.p99_worst.max(b);
                late.max = late.max.max(c);
            }
            let pairs = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("late_hist="))
                .unwrap_or("");
            for pair in pairs.split(',') {
                if let Some((start, n)) = pair.split_once(':')
                    && let (Ok(start), Ok(n)) = (start.parse::<u32>(), n.parse::<u64>())
                {
                    *late.hist.entry(start).or_default() += n;
                }
            }
            late.offcpu = late.offcpu.max(field(l, "offcpu_max_us").unwrap_or(0));
        }
        late
    }

    /// A percentile of the pooled ticks, as the upper edge of its 100 µs bucket.
    pub(crate) fn pooled(&self, p: f64) -> u32 {
        let total: u64 = self.hist.values().sum();
        let want = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (&start, &n) in &self.hist {
            seen += n;
            if seen >= want {
                return (start + 100).min(self.max.max(1));
            }
        }
        self.max
    }
}

/// What the probe heard over the last 2 s, in four windows: (the weakest
/// talker's level, its own tone's). A talker counts as heard by its median
/// level (a window where the generator, starved on the shared cores, sent late
/// and the bridge concealed does not sink it); the probe's own tone by its
/// loudest.
pub(crate) fn probe_levels(pcm: &[i16], rate: f64, talkers: usize) -> (f64, f64) {
    let tail = &pcm[pcm.len().saturating_sub(rate as usize * 2)..];
    if tail.is_empty() {
        return (0.0, 0.0);
    }
    let windows: Vec<&[i16]> = tail.chunks(tail.len().div_ceil(4).max(1)).collect();
    let level = |f: f64| -> Vec<f64> {
        windows
            .iter()
            .map(|w| caucus::media::goertzel::power_db(w, rate, f))
            .collect()
    };
    let talkers_db = if talkers == 0 {
        0.0
    } else {
        TONES[..talkers.min(TONES.len())]
            .iter()
            .map(|&f| percentile(&mut level(f), 0.5))
            .fold(f64::MAX, f64::min)
    };
    let self_db = level(PROBE_TONE).into_iter().fold(f64::MIN, f64::max);
    (talkers_db, self_db)
}
