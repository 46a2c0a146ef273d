//! `caucus-load`: the load benchmark. Starts the release bridge (the `caucus` binary
//! next to this one) on a generated config, brings up M rooms × N participants over
//! SIP on loopback, streams G.711 or Opus from a purpose-built generator that holds
//! thousands of legs on one socket (payloads are encoded once up front, so the
//! generator costs one sendto and one recvfrom per packet), holds for T seconds, and
//! reports bridge CPU per participant-tick, machine CPU, RTP loss and jitter seen by
//! the receivers, mixer tick lateness (from the bridge's tick statistics), memory per
//! participant and call setup failures. A probe leg in the first room checks that the
//! talkers are heard and its own tone is not.
//!
//! Run: `cargo run --release --bin caucus-load -- --quick` (see docs/PERFORMANCE.md).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caucus::media::{g711, opus, rtp};
use caucus::sip::Message;
use clap::{Parser, ValueEnum};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
use std::io::IoSlice;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Codec {
    Pcmu,
    Opus,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Shape {
    /// one room holding everyone
    One,
    /// rooms of 5
    Five,
    /// rooms of 50
    Fifty,
    /// the three shapes in turn
    All,
}

/// Load benchmark for caucus.
#[derive(Parser, Debug)]
struct Args {
    /// participants in total
    #[arg(long, default_value_t = 3000)]
    participants: usize,
    /// room shape
    #[arg(long, value_enum, default_value_t = Shape::All)]
    shape: Shape,
    /// codec every leg uses
    #[arg(long, value_enum, default_value_t = Codec::Pcmu)]
    codec: Codec,
    /// talkers per room (sending a tone; the others send silence)
    #[arg(long, default_value_t = 3)]
    talkers: usize,
    /// offer no telephone-event (RFC 4733), as SIPp's stock scenarios do: the
    /// bridge then listens for DTMF in every G.711 leg's audio (in-band detection,
    /// the costly case); by default legs offer it, as phones do
    #[arg(long)]
    inband_dtmf: bool,
    /// seconds of measured hold
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// small and short: 300 participants, 5 s hold, finishes in well under a minute
    #[arg(long)]
    quick: bool,
    /// runs per shape; with more than one, a median row per shape follows its runs
    /// (machines here are noisy: report medians)
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// set calls up at this many per second while the others already stream,
    /// with the bridge's overload control on (default: all calls first, then
    /// media, with overload control off): offered more than the machine
    /// carries, the extra calls are refused (503) and the legs up are measured
    #[arg(long)]
    ramp: Option<f64>,
    /// the bridge's `[sip] overload_load_percent` (default: 0, off, without
    /// `--ramp`; the bridge's own default with it)
    #[arg(long)]
    overload_percent: Option<u32>,
    /// write the results as JSON here
    #[arg(long)]
    json: Option<PathBuf>,
    /// the bridge binary (default: `caucus` next to this program)
    #[arg(long)]
    bridge: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
struct Report {
    shape: String,
    codec: String,
    rooms: usize,
    per_room: usize,
    participants: usize,
    setup_failures: usize,
    // calls refused with 503 (overload control, with --ramp)
    refused: usize,
    setup_p99_ms: f64,
    bridge_cpu_us_per_participant_tick: f64,
    // of it, in user mode (the rest is the kernel's: system calls, softirqs)
    bridge_user_us_per_participant_tick: f64,
    bridge_cpu_percent: f64,
    machine_cpu_percent: f64,
    // of the machine's time, what the hypervisor took from our virtual CPUs
    machine_steal_percent: f64,
    rtp_loss_percent: f64,
    jitter_ms_mean: f64,
    tick_late_p50_us: u32,
    // over every tick of every worker in the hold
    tick_late_p99_us: u32,
    // the largest p99 of one worker's 5 s interval (stricter: earlier sessions'
    // tables give this one)
    tick_late_p99_worst_interval_us: u32,
    tick_late_max_us: u32,
    // the longest a worker was kept from running inside one tick (wall time
    // minus its CPU time): on a VM, the host's steal; tick lateness near it is
    // the host's, not the bridge's
    tick_offcpu_max_us: u32,
    memory_kib_per_participant: f64,
    probe_hears_talkers_db: f64,
    probe_hears_self_db: f64,
}

impl Report {
    /// The median run of `runs` (one shape): the median of each figure, except
    /// that set-up failures add up, loss and lateness p99/max are the worst run's,
    /// and the probe is judged on its worst run.
    fn median(runs: &[Report]) -> Report {
        let med = |f: &dyn Fn(&Report) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            percentile(&mut v, 0.5)
        };
        let worst = |f: &dyn Fn(&Report) -> f64| runs.iter().map(f).fold(f64::MIN, f64::max);
        let first = runs.first().cloned().unwrap_or_default();
        Report {
            shape: format!("{} med", first.shape),
            setup_failures: runs.iter().map(|r| r.setup_failures).sum(),
            refused: med(&|r| r.refused as f64) as usize,
            setup_p99_ms: med(&|r| r.setup_p99_ms),
            bridge_cpu_us_per_participant_tick: med(&|r| r.bridge_cpu_us_per_participant_tick),
            bridge_user_us_per_participant_tick: med(&|r| r.bridge_user_us_per_participant_tick),
            bridge_cpu_percent: med(&|r| r.bridge_cpu_percent),
            machine_cpu_percent: med(&|r| r.machine_cpu_percent),
            rtp_loss_percent: worst(&|r| r.rtp_loss_percent),
            jitter_ms_mean: med(&|r| r.jitter_ms_mean),
            tick_late_p50_us: med(&|r| f64::from(r.tick_late_p50_us)) as u32,
            tick_late_p99_us: worst(&|r| f64::from(r.tick_late_p99_us)) as u32,
            tick_late_p99_worst_interval_us: worst(&|r| {
                f64::from(r.tick_late_p99_worst_interval_us)
            }) as u32,
            tick_late_max_us: worst(&|r| f64::from(r.tick_late_max_us)) as u32,
            tick_offcpu_max_us: worst(&|r| f64::from(r.tick_offcpu_max_us)) as u32,
            machine_steal_percent: med(&|r| r.machine_steal_percent),
            memory_kib_per_participant: med(&|r| r.memory_kib_per_participant),
            probe_hears_talkers_db: -worst(&|r| -r.probe_hears_talkers_db),
            probe_hears_self_db: worst(&|r| r.probe_hears_self_db),
            ..first
        }
    }

    /// The probe leg hears every talker clearly and its own tone at least 30 dB
    /// below the weakest of them.
    fn probe_ok(&self) -> bool {
        self.probe_hears_talkers_db > 40.0
            && self.probe_hears_talkers_db - self.probe_hears_self_db >= 30.0
    }

    fn json(&self) -> String {
        format!(
            "{{\"shape\":\"{}\",\"codec\":\"{}\",\"rooms\":{},\"per_room\":{},\"participants\":{},\"setup_failures\":{},\"refused\":{},\"setup_p99_ms\":{:.2},\"bridge_cpu_us_per_participant_tick\":{:.3},\"bridge_user_us_per_participant_tick\":{:.3},\"bridge_cpu_percent\":{:.1},\"machine_cpu_percent\":{:.1},\"machine_steal_percent\":{:.2},\"rtp_loss_percent\":{:.4},\"jitter_ms_mean\":{:.3},\"tick_late_p50_us\":{},\"tick_late_p99_us\":{},\"tick_late_p99_worst_interval_us\":{},\"tick_late_max_us\":{},\"tick_offcpu_max_us\":{},\"memory_kib_per_participant\":{:.1},\"probe_hears_talkers_db\":{:.1},\"probe_hears_self_db\":{:.1},\"probe_ok\":{}}}",
            self.shape,
            self.codec,
            self.rooms,
            self.per_room,
            self.participants,
            self.setup_failures,
            self.refused,
            self.setup_p99_ms,
            self.bridge_cpu_us_per_participant_tick,
            self.bridge_user_us_per_participant_tick,
            self.bridge_cpu_percent,
            self.machine_cpu_percent,
            self.machine_steal_percent,
            self.rtp_loss_percent,
            self.jitter_ms_mean,
            self.tick_late_p50_us,
            self.tick_late_p99_us,
            self.tick_late_p99_worst_interval_us,
            self.tick_late_max_us,
            self.tick_offcpu_max_us,
            self.memory_kib_per_participant,
            self.probe_hears_talkers_db,
            self.probe_hears_self_db,
            self.probe_ok()
        )
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process's CPU time so far in clock ticks: (user, user + system).
fn proc_cpu_ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name, which may hold spaces
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let st: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    (ut, ut + st)
}

/// Whole-machine CPU ticks from `/proc/stat`: total, idle, and stolen by the
/// hypervisor (time our virtual CPUs wanted to run and the host ran something else).
fn machine_ticks() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    (v.iter().take(8).sum(), idle, v.get(7).copied().unwrap_or(0))
}

/// Seconds a worker's tick statistics cover (the bridge's report interval).
const STATS_EVERY: f64 = 5.0;

/// Seconds since midnight UTC now (log timestamps are UTC).
fn utc_second_of_day() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    now % 86400.0
}

/// Seconds since midnight of a log line's RFC 3339 UTC timestamp
/// (`2026-11-22T06:14:33.241610Z …`).
fn log_second_of_day(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let time = time.strip_suffix('Z')?;
    let mut parts = time.splitn(3, ':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `b - a` in seconds of day, across midnight.
fn since(a: f64, b: f64) -> f64 {
    let d = b - a;
    if d < -43200.0 {
        d + 86400.0
    } else if d > 43200.0 {
        d - 86400.0
    } else {
        d
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bridge {
    child: Child,
    sip: SocketAddr,
    log: PathBuf,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bridge(bin: &PathBuf, rooms: usize, participants: usize, overload: Option<u32>) -> Bridge {
    let sip_port = free_port();
    // below the ephemeral range (32768+), where the generator's own sockets live
    let port_min = 10000u32;
    let port_max = (port_min + 2 * participants as u32 + 200).min(65534);
    // overload control judges the machine this benchmark loads on purpose: off,
    // unless the ramp is there to see it work
    let overload = match overload {
        Some(p) => format!("overload_load_percent = {p}\n"),
        None => String::new(),
    };
    let mut cfg = format!(
        "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n{overload}[rtp]\nport_min = {port_min}\nport_max = {port_max}\nworkers = 0\n[security]\ntrusted_sources = [\"127.0.0.0/8\"]\n[metrics]\nlisten = \"\"\n"
    );
    for r in 0..rooms {
        cfg.push_str(&format!(
            "[[room]]\nname = \"r{r}\"\nmax_participants = 10000\n"
        ));
    }
    let dir = std::env::temp_dir();
    let conf = dir.join(format!("caucus-load-{sip_port}.toml"));
    std::fs::write(&conf, cfg).unwrap();
    let log = dir.join(format!("caucus-load-{sip_port}.log"));
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&conf)
        .env("RUST_LOG", "warn,caucus::media::stats=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("starting the bridge (build it with cargo build --release)");
    let sip = SocketAddr::from(([127, 0, 0, 1], sip_port));
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for i in 0..100 {
        let m = format!(
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKup{i}\r\nFrom: <sip:l@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: up{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            probe.local_addr().unwrap()
        );
        probe.send_to(m.as_bytes(), sip).unwrap();
        let mut b = [0u8; 2048];
        if probe.recv_from(&mut b).is_ok() {
            return Bridge { child, sip, log };
        }
    }
    let _ = Bridge {
        child,
        sip,
        log: log.clone(),
    };
    panic!("bridge did not start; see {}", log.display());
}

/// One generated leg.
struct Leg {
    room: usize,
    call_id: String,
    to_tag: String,
    bridge_rtp: Option<SocketAddr>,
    talker: Option<usize>, // which tone
    seq: u16,
    ts: u32,
    // receive statistics
    first_seq: Option<u16>,
    cycles: u32,
    max_seq: u16,
    received: u64,
    transit: Option<u32>,
    jitter: f64,
}

const TONES: [f64; 5] = [440.0, 700.0, 1100.0, 1300.0, 1700.0];
const PROBE_TONE: f64 = 2000.0;

/// Payloads for one second (50 frames) of a tone, encoded once.
fn tone_payloads(codec: Codec, freq: f64) -> Vec<Vec<u8>> {
    let rate = if codec == Codec::Opus { 48000 } else { 8000 };
    let n = rate / 50;
    let mut enc = (codec == Codec::Opus).then(|| opus::Encoder::new(5).unwrap());
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..n)
                .map(|i| {
                    let t = (f * n + i) as f64 / rate as f64;
                    if freq == 0.0 {
                        0
                    } else {
                        (5000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                    }
                })
                .collect();
            match &mut enc {
                Some(e) => {
                    let mut out = vec![0u8; 1500];
                    let len = e.encode(&pcm, &mut out).unwrap();
                    out.truncate(len);
                    out
                }
                None => {
                    let mut out = vec![0u8; n];
                    g711::encode_ulaw(&pcm, &mut out);
                    out
                }
            }
        })
        .collect()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// What [`Setup::step`] needs to signal: the socket, the bridge, how to write an
/// INVITE and an ACK/BYE for a leg, and legs by Call-ID.
type Sip<'a> = (
    &'a UdpSocket,
    SocketAddr,
    &'a dyn Fn(usize, &Leg) -> String,
    &'a dyn Fn(&str, u32, usize, &Leg) -> String,
    &'a HashMap<String, usize>,
);

/// Call set-up in progress: INVITEs out (at most 100 unanswered), Timer A
/// retransmissions, answers taken.
struct Setup {
    sent_at: Vec<Option<Instant>>,
    answered: Vec<bool>,
    setup_ms: Vec<f64>,
    failures: usize,
    refused: usize,
    next: usize,
    done: usize,
    last_retx: Instant,
}

impl Setup {
    fn new(n: usize) -> Setup {
        Setup {
            sent_at: vec![None; n],
            answered: vec![false; n],
            setup_ms: Vec::with_capacity(n),
            failures: 0,
            refused: 0,
            next: 0,
            done: 0,
            last_retx: Instant::now(),
        }
    }

    /// Send the INVITEs of legs below `allowed`, retransmit, take what has come
    /// back; returns the legs answered now.
    fn step(
        &mut self,
        legs: &mut [Leg],
        allowed: usize,
        sip: Sip<'_>,
        buf: &mut [u8],
    ) -> Vec<usize> {
        let (sig, bridge, invite, ack_or_bye, by_call) = sip;
        while self.next < allowed && self.next - self.done < 100 {
            sig.send_to(invite(self.next, &legs[self.next]).as_bytes(), bridge)
                .unwrap();
            self.sent_at[self.next] = Some(Instant::now());
            self.next += 1;
        }
        // Timer A: retransmit INVITEs still unanswered after 500 ms
        if self.last_retx.elapsed() > Duration::from_millis(500) {
            self.last_retx = Instant::now();
            for (i, leg) in legs.iter().enumerate().take(self.next) {
                let late =
                    self.sent_at[i].is_some_and(|t| t.elapsed() > Duration::from_millis(500));
                if !self.answered[i] && late {
                    let _ = sig.send_to(invite(i, leg).as_bytes(), bridge);
                }
            }
        }
        let mut up = Vec::new();
        while let Ok((len, _)) = sig.recv_from(buf) {
            let Ok(m) = Message::parse(&buf[..len]) else {
                continue;
            };
            let caucus::sip::StartLine::Response { code, .. } = m.start else {
                continue;
            };
            let Some(&i) = m.header("Call-ID").and_then(|c| by_call.get(c)) else {
                continue;
            };
            if code < 200 {
                continue;
            }
            if code >= 300 {
                if !self.answered[i] {
                    self.answered[i] = true;
                    if code == 503 {
                        self.refused += 1;
                    } else {
                        self.failures += 1;
                    }
                    self.done += 1;
                }
                continue;
            }
            self.answered[i] = true;
            if legs[i].to_tag.is_empty() {
                let to = m.header("To").unwrap_or("");
                legs[i].to_tag = to
                    .rsplit_once("tag=")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default();
                let sd = caucus::sdp::SessionDescription::parse(&m.body).ok();
                let p = sd
                    .and_then(|sd| caucus::sdp::select_audio(&sd).ok())
                    .map(|x| x.1);
                legs[i].bridge_rtp =
                    p.map(|p| SocketAddr::new(p.remote_ip.unwrap_or(bridge.ip()), p.remote_port));
                if let Some(t) = self.sent_at[i] {
                    self.setup_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                self.done += 1;
                up.push(i);
            }
            sig.send_to(ack_or_bye("ACK", 1, i, &legs[i]).as_bytes(), bridge)
                .unwrap();
        }
        up
    }

    /// Calls never answered are failures.
    fn give_up(&mut self) {
        let unanswered = self.answered.iter().filter(|a| !**a).count();
        self.failures += unanswered;
        self.done += unanswered;
        self.answered.iter_mut().for_each(|a| *a = true);
    }
}

fn run_shape(args: &Args, bin: &PathBuf, shape: Shape, n: usize) -> Report {
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
    let bridge = start_bridge(bin, rooms, n, overload);
    let pid = bridge.child.id();
    let rss_before = rss_kib(pid);
    let codec_name = if args.codec == Codec::Opus {
        "opus"
    } else {
        "pcmu"
    };
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
    let media_addr = media.local_addr().unwrap();
    let mut legs: Vec<Leg> = (0..n)
        .map(|i| {
            let room = i / per_room;
            let slot = i % per_room;
            Leg {
                room,
                call_id: format!("load-{i}-{}", sig_addr.port()),
                to_tag: String::new(),
                bridge_rtp: None,
                // leg 0 is the probe; `talkers` legs spread over the rest of each
                // room talk (the first right after the probe, the last near the
                // end), so that in a room spread over workers the probe hears
                // talkers of other shards too
                talker: (1..=args.talkers.min(per_room.saturating_sub(1)))
                    .position(|k| slot == 1 + (k - 1) * (per_room - 1) / args.talkers),
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
        .collect();
    let by_call: HashMap<String, usize> = legs
        .iter()
        .enumerate()
        .map(|(i, l)| (l.call_id.clone(), i))
        .collect();

    let (te_pt, te_map) = if args.inband_dtmf {
        (String::new(), String::new())
    } else {
        (
            " 101".to_string(),
            format!("a=rtpmap:101 telephone-event/{clock}\r\n"),
        )
    };
    // --- call setup: at most 200 INVITEs outstanding
    let invite = |i: usize, l: &Leg| {
        let body = format!(
            "v=0\r\no=load {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}{te_pt}\r\n{rtpmap}\r\n{te_map}a=ptime:20\r\n",
            media_addr.port()
        );
        format!(
            "INVITE sip:r{}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {sig_addr};branch=z9hG4bKinv{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load{i}@127.0.0.1>;tag=f{i}\r\nTo: <sip:r{}@127.0.0.1>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:load@{sig_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            l.room,
            bridge.sip,
            l.room,
            l.call_id,
            body.len()
        )
    };
    let ack_or_bye = |method: &str, cseq: u32, i: usize, l: &Leg| {
        format!(
            "{method} sip:caucus@{} SIP/2.0\r\nVia: SIP/2.0/UDP {sig_addr};branch=z9hG4bK{method}{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load{i}@127.0.0.1>;tag=f{i}\r\nTo: <sip:r{}@127.0.0.1>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            bridge.sip, l.room, l.to_tag, l.call_id
        )
    };
    let setup_start = Instant::now();
    let mut setup = Setup::new(n);
    let mut buf = vec![0u8; 65536];
    let ramp = args.ramp.filter(|r| *r > 0.0);
    if ramp.is_none() {
        let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 50);
        while setup.done < n && Instant::now() < deadline {
            let sip: Sip<'_> = (&sig, bridge.sip, &invite, &ack_or_bye, &by_call);
            if setup.step(&mut legs, n, sip, &mut buf).is_empty() {
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

    // --- media: one packet per leg per 20 ms
    let tones: Vec<Vec<Vec<u8>>> = TONES
        .iter()
        .map(|&f| tone_payloads(args.codec, f))
        .collect();
    let probe_tone = tone_payloads(args.codec, PROBE_TONE);
    let silence = tone_payloads(args.codec, 0.0);
    let mut port_index: HashMap<u16, usize> = legs
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.bridge_rtp.map(|a| (a.port(), i)))
        .collect();
    let mut probe_dec = (args.codec == Codec::Opus).then(|| opus::Decoder::new().unwrap());
    let mut probe_pcm: Vec<i16> = Vec::new();
    let warmup = Duration::from_secs(2);
    let hold = Duration::from_secs(args.hold);
    let start = Instant::now();
    let mut measuring = false;
    let (mut cpu0, mut m0, mut t_measure) = ((0u64, 0u64), (0u64, 0u64, 0u64), start);
    let mut hold_from = 0.0;
    let mut headers = vec![[0u8; 12]; n];
    let mut dest: Vec<Option<SocketAddrAny>> = legs
        .iter()
        .map(|l| l.bridge_rtp.map(SocketAddrAny::from))
        .collect();
    let mut tick = 0u64;
    let mut rss_after = 0;
    // with a ramp, calls are set up while the others stream: the hold starts
    // once every INVITE has its answer
    let mut hold_end = (ramp.is_none()).then(|| start + warmup + hold);
    let ramp_deadline = start + Duration::from_secs(60 + n as u64 / 20);
    while hold_end.is_none_or(|t| Instant::now() < t) {
        if let Some(rate) = ramp {
            let allowed = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(n);
            let sip: Sip<'_> = (&sig, bridge.sip, &invite, &ack_or_bye, &by_call);
            for i in setup.step(&mut legs, allowed, sip, &mut buf) {
                if let Some(a) = legs[i].bridge_rtp {
                    dest[i] = Some(SocketAddrAny::from(a));
                    port_index.insert(a.port(), i);
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
        if !measuring && start.elapsed() >= warmup {
            measuring = true;
            cpu0 = proc_cpu_ticks(pid);
            m0 = machine_ticks();
            t_measure = Instant::now();
            hold_from = utc_second_of_day();
            rss_after = rss_kib(pid);
            for l in &mut legs {
                l.first_seq = None;
                l.received = 0;
                l.cycles = 0;
                l.jitter = 0.0;
                l.transit = None;
            }
            probe_pcm.clear();
        }
        let frame = (tick % 50) as usize;
        // one RTP header per leg, payloads shared; all sent with sendmmsg in batches
        // of 1024 so the generator spends little CPU beside the bridge
        for (i, l) in legs.iter_mut().enumerate() {
            if l.bridge_rtp.is_none() {
                continue;
            }
            rtp::write_header(
                &mut headers[i],
                pt,
                false,
                l.seq,
                l.ts,
                0x5000_0000 + i as u32,
            );
            l.seq = l.seq.wrapping_add(1);
            l.ts = l.ts.wrapping_add(clock / 50);
        }
        let iovs: Vec<[IoSlice<'_>; 2]> = legs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let payload = if i == 0 {
                    &probe_tone[frame]
                } else {
                    match l.talker {
                        Some(t) => &tones[t % TONES.len()][frame],
                        None => &silence[frame],
                    }
                };
                [IoSlice::new(&headers[i]), IoSlice::new(payload)]
            })
            .collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..legs.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = Vec::with_capacity(legs.len());
        for ((iov, ctl), addr) in iovs.iter().zip(controls.iter_mut()).zip(&dest) {
            if let Some(addr) = addr {
                msgs.push(MMsgHdr::new_with_addr(addr, iov, ctl));
            }
        }
        for chunk in msgs.chunks_mut(1024) {
            let mut done = 0;
            while done < chunk.len() {
                match sendmmsg(&media, &mut chunk[done..], SendFlags::empty()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => done += n,
                }
            }
        }
        drop(msgs);
        // receive until the next tick is due
        let due = start + Duration::from_millis(20 * (tick + 1));
        loop {
            match media.recv_from(&mut buf) {
                Ok((len, src)) => {
                    let Some(&i) = port_index.get(&src.port()) else {
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
                    let arrival = (start.elapsed().as_secs_f64() * f64::from(clock)) as i64;
                    // RTP clock arithmetic wraps (RFC 3550 A.8): a timestamp
                    // crossing 2^32 is not a jump of 2^32 in transit time
                    let transit = (arrival as u32).wrapping_sub(p.timestamp);
                    if let Some(prev) = l.transit {
                        let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                        l.jitter += (d - l.jitter) / 16.0;
                    }
                    l.transit = Some(transit);
                    if i == 0 && measuring {
                        match &mut probe_dec {
                            Some(d) => {
                                let mut out = [0i16; 5760];
                                if let Ok(k) = d.decode(Some(p.payload), &mut out) {
                                    probe_pcm.extend_from_slice(&out[..k]);
                                }
                            }
                            None => {
                                let mut out = vec![0i16; p.payload.len()];
                                g711::decode_ulaw(p.payload, &mut out);
                                probe_pcm.extend_from_slice(&out);
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
        tick += 1;
    }
    let elapsed = t_measure.elapsed().as_secs_f64();
    let hold_to = utc_second_of_day();
    let cpu1 = proc_cpu_ticks(pid);
    let (user_ticks, cpu_ticks) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let m1 = machine_ticks();
    let hz = 100.0; // USER_HZ on Linux
    let bridge_cpu_s = cpu_ticks as f64 / hz;
    let bridge_user_s = user_ticks as f64 / hz;
    let ticks_held = elapsed / 0.020;
    let (mtotal, midle, msteal) = (m1.0 - m0.0, m1.1 - m0.1, m1.2 - m0.2);
    // the legs that were up (all of them, unless a ramp was refused some)
    let up = legs
        .iter()
        .filter(|l| l.bridge_rtp.is_some())
        .count()
        .max(1);

    // loss and jitter across legs that were up
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

    // hang up
    for (i, l) in legs.iter().enumerate() {
        if !l.to_tag.is_empty() {
            let _ = sig.send_to(ack_or_bye("BYE", 2, i, l).as_bytes(), bridge.sip);
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    // tick lateness from the bridge's stats lines: each covers the STATS_EVERY
    // seconds before it; those that lie wholly inside the hold are the steady
    // state (the set-up burst makes the first ticks late: every leg latches and
    // connects its socket). With a hold too short for a whole interval, every
    // interval with the legs up counts.
    // every tick of every worker in those intervals, pooled: bucket start µs → ticks
    let mut hist: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    let (mut p99_worst, mut max, mut offcpu) = (0u32, 0u32, 0u32);
    if let Ok(f) = std::fs::File::open(&bridge.log) {
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
                p99_worst = p99_worst.max(b);
                max = max.max(c);
            }
            let pairs = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("late_hist="))
                .unwrap_or("");
            for pair in pairs.split(',') {
                if let Some((start, n)) = pair.split_once(':')
                    && let (Ok(start), Ok(n)) = (start.parse::<u32>(), n.parse::<u64>())
                {
                    *hist.entry(start).or_default() += n;
                }
            }
            offcpu = offcpu.max(field(l, "offcpu_max_us").unwrap_or(0));
        }
    }
    // a percentile of the pooled ticks, as the upper edge of its 100 µs bucket
    let pooled = |p: f64| -> u32 {
        let total: u64 = hist.values().sum();
        let want = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (&start, &n) in &hist {
            seen += n;
            if seen >= want {
                return (start + 100).min(max.max(1));
            }
        }
        max
    };
    let rate = if args.codec == Codec::Opus {
        48000.0
    } else {
        8000.0
    };
    // the last 2 s in four windows: a talker counts as heard by its median level
    // (a window where the generator, starved on the shared cores, sent late and
    // the bridge concealed does not sink it); the probe's own tone by its loudest
    let tail = &probe_pcm[probe_pcm.len().saturating_sub(rate as usize * 2)..];
    let windows: Vec<&[i16]> = tail.chunks(tail.len().div_ceil(4).max(1)).collect();
    let level = |f: f64| -> Vec<f64> {
        windows
            .iter()
            .map(|w| caucus::media::goertzel::power_db(w, rate, f))
            .collect()
    };
    let talkers_db = if args.talkers == 0 || tail.is_empty() {
        0.0
    } else {
        TONES[..args.talkers.min(TONES.len())]
            .iter()
            .map(|&f| percentile(&mut level(f), 0.5))
            .fold(f64::MAX, f64::min)
    };
    let self_db = if tail.is_empty() {
        0.0
    } else {
        level(PROBE_TONE).into_iter().fold(f64::MIN, f64::max)
    };
    Report {
        shape: format!("{rooms}x{per_room}"),
        codec: codec_name.into(),
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
        jitter_ms_mean: if jit_n == 0 {
            0.0
        } else {
            jit_sum / jit_n as f64
        },
        tick_late_p50_us: pooled(0.5),
        tick_late_p99_us: pooled(0.99),
        tick_late_p99_worst_interval_us: p99_worst,
        tick_late_max_us: max,
        tick_offcpu_max_us: offcpu,
        memory_kib_per_participant: rss_after.saturating_sub(rss_before) as f64 / up as f64,
        probe_hears_talkers_db: talkers_db,
        probe_hears_self_db: self_db,
    }
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.participants = args.participants.min(300);
        args.hold = args.hold.min(5);
    }
    caucus::driver::raise_fd_limit();
    let bin = args.bridge.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .join("caucus")
    });
    let shapes = match args.shape {
        Shape::All => vec![Shape::One, Shape::Five, Shape::Fifty],
        s => vec![s],
    };
    let mut reports = Vec::new();
    for s in shapes {
        let mut runs = Vec::new();
        for run in 1..=args.runs.max(1) {
            eprintln!(
                "shape {s:?}, run {run}: {} participants, {:?}, {} talkers per room, {} s hold",
                args.participants, args.codec, args.talkers, args.hold
            );
            runs.push(run_shape(&args, &bin, s, args.participants));
        }
        let median = (runs.len() > 1).then(|| Report::median(&runs));
        reports.extend(runs);
        reports.extend(median);
    }
    println!(
        "{:<10} {:>5} {:>6} {:>5} {:>5} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "shape",
        "codec",
        "legs",
        "fail",
        "503",
        "setup99",
        "us/p-t",
        "user",
        "cpu%",
        "mach%",
        "steal%",
        "loss%",
        "jit_ms",
        "late50",
        "late99",
        "lateMax",
        "offMax",
        "KiB/leg",
        "probe"
    );
    for r in &reports {
        println!(
            "{:<10} {:>5} {:>6} {:>5} {:>5} {:>7.1}m {:>7.2} {:>6.2} {:>6.1} {:>6.1} {:>6.2} {:>7.3} {:>7.2} {:>6}u {:>7}u {:>7}u {:>7}u {:>8.1} {:>6}",
            r.shape,
            r.codec,
            r.participants,
            r.setup_failures,
            r.refused,
            r.setup_p99_ms,
            r.bridge_cpu_us_per_participant_tick,
            r.bridge_user_us_per_participant_tick,
            r.bridge_cpu_percent,
            r.machine_cpu_percent,
            r.machine_steal_percent,
            r.rtp_loss_percent,
            r.jitter_ms_mean,
            r.tick_late_p50_us,
            r.tick_late_p99_us,
            r.tick_late_max_us,
            r.tick_offcpu_max_us,
            r.memory_kib_per_participant,
            if r.probe_ok() { "ok" } else { "FAIL" }
        );
    }
    println!(
        "legs: offered; 503: refused by overload control (--ramp); us/p-t: bridge CPU µs per participant (up) per 20 ms tick (user: of it in user mode); cpu%: bridge, of one core; \
         mach%: whole machine; steal%: of the machine's time, taken by the hypervisor; \
         late: mixer tick lateness in µs; offMax: the longest a worker was kept off its CPU \
         inside one tick (steal); probe: a leg in room 0 hears the talkers and not itself"
    );
    if let Some(path) = &args.json {
        let body = format!(
            "[{}]\n",
            reports
                .iter()
                .map(Report::json)
                .collect::<Vec<_>>()
                .join(",\n")
        );
        std::fs::write(path, body).unwrap();
    }
    if reports
        .iter()
        .any(|r| r.setup_failures > 0 || !r.probe_ok())
    {
        eprintln!("FAILED: call set-up failures, or the probe leg did not hear the room right");
        std::process::exit(1);
    }
}
