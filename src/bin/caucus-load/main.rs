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
//! With `--webrtc` the legs are browsers instead (see [`webrtc`]), and each run
//! is followed by the same shape with Opus SIP legs, for the ratio of the two.
//!
//! Run: `cargo run --release --bin caucus-load -- --quick` (see benches/PERFORMANCE.md).

mod bridge;
mod legs;
mod report;
mod run;
mod webrtc;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use report::Report;

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
#[derive(Parser, Debug, Clone)]
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
    /// in every room, this many of the talkers coach a listener (each heard by
    /// its target alone, by the API's coach): the cost of custom relations next
    /// to the shared mix (the probe then checks the other talkers only)
    #[arg(long, default_value_t = 0)]
    coach_pairs: usize,
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
    /// browser legs (WebRTC by WHIP: ICE, DTLS, SRTP, Opus), each run followed
    /// by the same shape with Opus SIP legs; the shape defaults to rooms of 50
    #[arg(long)]
    webrtc: bool,
    /// the bridge is a build from before browser legs (an A/B baseline): its
    /// configuration names no `[webrtc]` section
    #[arg(long)]
    baseline: bool,
    /// rooms with `denoise` and `level` off: against a run without it, the
    /// cost of the voice treatment per mixed talker
    #[arg(long)]
    untreated: bool,
    /// the bridge binary (default: `caucus` next to this program)
    #[arg(long)]
    bridge: Option<PathBuf>,
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
    let shapes = match (args.shape, args.webrtc) {
        (Shape::All, true) => vec![Shape::Fifty],
        (Shape::All, false) => vec![Shape::One, Shape::Five, Shape::Fifty],
        (s, _) => vec![s],
    };
    let mut reports = Vec::new();
    if args.webrtc {
        for &s in &shapes {
            let per_room = match s {
                Shape::One => args.participants,
                Shape::Five => 5,
                _ => 50,
            };
            let (mut web, mut sip) = (Vec::new(), Vec::new());
            let opus = Args {
                codec: Codec::Opus,
                ..args.clone()
            };
            for run in 1..=args.runs.max(1) {
                eprintln!(
                    "shape {s:?}, run {run}: {} browser participants, then as many Opus SIP legs, {} talkers per room, {} s hold",
                    args.participants, args.talkers, args.hold
                );
                web.push(webrtc::run_webrtc(&args, &bin, per_room, args.participants));
                sip.push(run::run_shape(&opus, &bin, s, args.participants));
            }
            let ratios: Vec<f64> = web
                .iter()
                .zip(&sip)
                .map(|(w, s)| {
                    w.bridge_cpu_us_per_participant_tick
                        / s.bridge_cpu_us_per_participant_tick.max(1e-9)
                })
                .collect();
            eprintln!("bridge CPU, browser legs / Opus SIP legs, per run: {ratios:.2?}");
            for runs in [web, sip] {
                let median = (runs.len() > 1).then(|| Report::median(&runs));
                reports.extend(runs);
                reports.extend(median);
            }
            let mut r = ratios.clone();
            println!(
                "browser legs cost {:.2}x the bridge CPU of Opus SIP legs (median of {} runs; target at most 1.5x)",
                report::percentile(&mut r, 0.5),
                ratios.len()
            );
        }
    }
    for s in shapes.into_iter().filter(|_| !args.webrtc) {
        let mut runs = Vec::new();
        for run in 1..=args.runs.max(1) {
            eprintln!(
                "shape {s:?}, run {run}: {} participants, {:?}, {} talkers per room, {} s hold",
                args.participants, args.codec, args.talkers, args.hold
            );
            runs.push(run::run_shape(&args, &bin, s, args.participants));
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
