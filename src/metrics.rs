//! Prometheus metrics kept by the driver: SIP traffic by method and status code,
//! calls by how they ended, the mixer's tick lateness histogram and RTP receive
//! figures (from the media workers' periodic reports), webhook deliveries, the
//! build and the process (CPU, memory, descriptors, start time, read from
//! `/proc` when scraped). Counted where the bytes pass (the driver), so the
//! sans-IO core stays free of counters; rendered as text format 0.0.4 on
//! `GET /metrics`, following the Prometheus naming guide: counters end in
//! `_total` and never go down, one metric per quantity, base units.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::core::Event;
use crate::events::WebhookStats;
use crate::media::contract::{LATE_BOUNDS_US, TickStats};

const METHODS: [&str; 11] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "UPDATE",
    "INFO",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
];

/// The driver's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_in: BTreeMap<&'static str, u64>,
    responses_out: BTreeMap<u16, u64>,
    requests_out: BTreeMap<&'static str, u64>,
    responses_in: BTreeMap<u16, u64>,
    calls_ended: BTreeMap<&'static str, u64>,
    calls_joined: u64,
    dials: BTreeMap<&'static str, u64>,
    late_buckets: [u64; 7],
    late_count: u64,
    late_sum_us: u64,
    /// when the process started, seconds since the epoch
    start_time: f64,
    workers: HashMap<usize, TickStats>,
}

/// Method (known ones; "other" for the rest) or status code of a SIP message.
fn classify(data: &[u8]) -> Result<u16, &'static str> {
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let code = rest
            .get(..3)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        return Ok(code);
    }
    let token = data.split(|&b| b == b' ').next().unwrap_or(b"");
    Err(METHODS
        .iter()
        .find(|m| m.as_bytes() == token)
        .copied()
        .unwrap_or("other"))
}

impl Metrics {
    /// A datagram or TCP frame came in.
    pub fn received(&mut self, data: &[u8]) {
        match classify(data) {
            Ok(code) => *self.responses_in.entry(code).or_default() += 1,
            Err(m) => *self.requests_in.entry(m).or_default() += 1,
        }
    }

    /// The core sent a message.
    pub fn sent(&mut self, data: &[u8]) {
        match classify(data) {
            Ok(code) => *self.responses_out.entry(code).or_default() += 1,
            Err(m) => *self.requests_out.entry(m).or_default() += 1,
        }
    }

    /// A core event.
    pub fn event(&mut self, ev: &Event) {
        match ev {
            Event::Joined { .. } => self.calls_joined += 1,
            Event::Left { reason, .. } => {
                *self.calls_ended.entry(reason.as_str()).or_default() += 1;
            }
            Event::Dial { status, .. } => {
                *self.dials.entry(status.as_str()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// A media worker's periodic report.
    pub fn tick_stats(&mut self, st: &TickStats) {
        for (acc, n) in self.late_buckets.iter_mut().zip(st.late_buckets()) {
            *acc += u64::from(n);
        }
        self.late_count += u64::from(st.ticks);
        self.late_sum_us += st.late_sum_us;
        self.workers.insert(st.worker, st.clone());
    }

    /// Metrics of a process that started now.
    pub fn new() -> Metrics {
        Metrics {
            start_time: process_start_time().unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            }),
            ..Metrics::default()
        }
    }

    /// Render everything, with the core's gauges (`core`) and webhook counters.
    pub fn render(&self, core: &str, hooks: Option<&WebhookStats>) -> String {
        let mut s = String::from(core);
        let _ = writeln!(
            s,
            "# HELP caucus_build_info The running build.\n# TYPE caucus_build_info gauge\ncaucus_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        process_metrics(&mut s, self.start_time);
        let counter = |s: &mut String, name: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            &mut s,
            "caucus_sip_requests_received_total",
            "SIP requests received, by method.",
        );
        for (m, n) in &self.requests_in {
            let _ = writeln!(
                s,
                "caucus_sip_requests_received_total{{method=\"{m}\"}} {n}"
            );
        }
        counter(
            &mut s,
            "caucus_sip_responses_sent_total",
            "SIP responses sent, by status code.",
        );
        for (c, n) in &self.responses_out {
            let _ = writeln!(s, "caucus_sip_responses_sent_total{{code=\"{c}\"}} {n}");
        }
        counter(
            &mut s,
            "caucus_sip_requests_sent_total",
            "SIP requests sent, by method.",
        );
        for (m, n) in &self.requests_out {
            let _ = writeln!(s, "caucus_sip_requests_sent_total{{method=\"{m}\"}} {n}");
        }
        counter(
            &mut s,
            "caucus_sip_responses_received_total",
            "SIP responses received, by status code.",
        );
        for (c, n) in &self.responses_in {
            let _ = writeln!(s, "caucus_sip_responses_received_total{{code=\"{c}\"}} {n}");
        }
        counter(
            &mut s,
            "caucus_calls_answered_total",
            "Calls answered into a room.",
        );
        let _ = writeln!(s, "caucus_calls_answered_total {}", self.calls_joined);
        counter(
            &mut s,
            "caucus_calls_ended_total",
            "Calls ended, by reason.",
        );
        for (r, n) in &self.calls_ended {
            let _ = writeln!(s, "caucus_calls_ended_total{{reason=\"{r}\"}} {n}");
        }
        counter(
            &mut s,
            "caucus_dialout_total",
            "Outbound calls, by outcome.",
        );
        for (r, n) in &self.dials {
            let _ = writeln!(s, "caucus_dialout_total{{status=\"{r}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP caucus_mixer_tick_lateness_seconds Lateness of mixer tick starts against their 20 ms schedule.\n# TYPE caucus_mixer_tick_lateness_seconds histogram"
        );
        let mut cum = 0u64;
        for (bound, n) in LATE_BOUNDS_US.iter().zip(self.late_buckets) {
            cum += n;
            let _ = writeln!(
                s,
                "caucus_mixer_tick_lateness_seconds_bucket{{le=\"{}\"}} {cum}",
                f64::from(*bound) / 1e6
            );
        }
        let _ = writeln!(
            s,
            "caucus_mixer_tick_lateness_seconds_bucket{{le=\"+Inf\"}} {}\ncaucus_mixer_tick_lateness_seconds_sum {}\ncaucus_mixer_tick_lateness_seconds_count {}",
            self.late_count,
            self.late_sum_us as f64 / 1e6,
            self.late_count
        );
        let mut workers: Vec<&TickStats> = self.workers.values().collect();
        workers.sort_by_key(|w| w.worker);
        type Value = fn(&TickStats) -> f64;
        let per_worker: [(&str, &str, &str, Value); 7] = [
            (
                "gauge",
                "caucus_media_legs",
                "Legs held by each media worker.",
                |w| w.legs as f64,
            ),
            (
                "gauge",
                "caucus_media_tick_offcpu_max_seconds",
                "Longest time a media worker was kept off its CPU inside one tick over its last report (on a VM, the host's steal), per worker.",
                |w| f64::from(w.offcpu_max_us) / 1e6,
            ),
            (
                "counter",
                "caucus_rtp_packets_received_total",
                "RTP packets received, per media worker (legs that ended included).",
                |w| w.rtp_received as f64,
            ),
            (
                "counter",
                "caucus_rtp_packets_lost_total",
                "RTP packets lost (RFC 3550 cumulative lost), per media worker (legs that ended included).",
                |w| w.rtp_lost.max(0) as f64,
            ),
            (
                "counter",
                "caucus_rtp_packets_stray_total",
                "RTP packets dropped from unlearned sources, per media worker (legs that ended included).",
                |w| w.rtp_strays as f64,
            ),
            (
                "gauge",
                "caucus_rtp_jitter_mean_seconds",
                "Mean interarrival jitter (RFC 3550) over a media worker's current legs.",
                |w| f64::from(w.jitter_mean_us) / 1e6,
            ),
            (
                "gauge",
                "caucus_rtp_jitter_max_seconds",
                "Largest interarrival jitter (RFC 3550) among a media worker's current legs.",
                |w| f64::from(w.jitter_max_us) / 1e6,
            ),
        ];
        for (kind, name, help, value) in per_worker {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for w in &workers {
                let _ = writeln!(s, "{name}{{worker=\"{}\"}} {}", w.worker, value(w));
            }
        }
        if let Some(h) = hooks {
            counter(
                &mut s,
                "caucus_webhook_events_total",
                "Event webhook deliveries, by result.",
            );
            for (result, n) in [
                ("delivered", h.delivered.load(Ordering::Relaxed)),
                ("failed_attempt", h.failed_attempts.load(Ordering::Relaxed)),
                ("dropped", h.dropped.load(Ordering::Relaxed)),
                ("overflow", h.overflow.load(Ordering::Relaxed)),
            ] {
                let _ = writeln!(s, "caucus_webhook_events_total{{result=\"{result}\"}} {n}");
            }
        }
        s
    }
}

/// `process_*` metrics (the names Prometheus client libraries use), from `/proc`.
fn process_metrics(s: &mut String, start_time: f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the command name, which may hold spaces and parentheses
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |x| x.1)
        .split_whitespace()
        .collect();
    let tick = rustix::param::clock_ticks_per_second() as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are the 14th and 15th fields: 11 and 12 after the name
    if let (Some(u), Some(k)) = (field(11), field(12)) {
        let _ = writeln!(
            s,
            "# HELP process_cpu_seconds_total User and system CPU time spent.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            (u + k) / tick
        );
    }
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    if let Some(pages) = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
    {
        let _ = writeln!(
            s,
            "# HELP process_resident_memory_bytes Resident memory size.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            pages * rustix::param::page_size() as u64
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            s,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            dir.count()
        );
    }
    let _ = writeln!(
        s,
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start_time:.3}"
    );
}

/// When this process started, seconds since the epoch: the boot time plus the
/// process's start in clock ticks after it.
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // starttime is the 22nd field: 19 after the name
    let ticks: f64 = after.get(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / rustix::param::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_method_and_code() {
        let mut m = Metrics::default();
        m.received(b"INVITE sip:demo@x SIP/2.0\r\n");
        m.received(b"FOO sip:demo@x SIP/2.0\r\n");
        m.sent(b"SIP/2.0 200 OK\r\n");
        let text = m.render("", None);
        assert!(text.contains("caucus_sip_requests_received_total{method=\"INVITE\"} 1"));
        assert!(text.contains("caucus_sip_requests_received_total{method=\"other\"} 1"));
        assert!(text.contains("caucus_sip_responses_sent_total{code=\"200\"} 1"));
        assert!(text.contains("caucus_mixer_tick_lateness_seconds_bucket{le=\"+Inf\"} 0"));
    }

    #[test]
    fn worker_reports_become_gauges() {
        let mut m = Metrics::default();
        m.tick_stats(&TickStats {
            worker: 1,
            ticks: 250,
            legs: 7,
            offcpu_max_us: 12_500,
            ..TickStats::default()
        });
        let text = m.render("", None);
        assert!(text.contains("caucus_media_legs{worker=\"1\"} 7"), "{text}");
        assert!(
            text.contains("caucus_media_tick_offcpu_max_seconds{worker=\"1\"} 0.0125"),
            "{text}"
        );
    }
}
