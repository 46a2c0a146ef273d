//! Prometheus metrics kept by the driver: SIP traffic by method and status code,
//! calls by how they ended, the mixer's tick lateness histogram and RTP receive
//! figures (from the media workers' periodic reports), webhook deliveries. Counted
//! where the bytes pass (the driver), so the sans-IO core stays free of counters;
//! rendered as text format 0.0.4 on `GET /metrics`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::core::Event;
use crate::events::WebhookStats;
use crate::media::engine::{LATE_BOUNDS_US, TickStats};

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
        // the sum is approximated by each tick at its bucket's median
        self.late_sum_us += u64::from(st.late_p50_us) * u64::from(st.ticks);
        self.workers.insert(st.worker, st.clone());
    }

    /// Render everything, with the core's gauges (`core`) and webhook counters.
    pub fn render(&self, core: &str, hooks: Option<&WebhookStats>) -> String {
        let mut s = String::from(core);
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
        let gauge = |s: &mut String, name: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        let mut workers: Vec<_> = self.workers.values().collect();
        workers.sort_by_key(|w| w.worker);
        gauge(
            &mut s,
            "caucus_media_legs",
            "Legs held by each media worker.",
        );
        for w in &workers {
            let _ = writeln!(s, "caucus_media_legs{{worker=\"{}\"}} {}", w.worker, w.legs);
        }
        gauge(
            &mut s,
            "caucus_media_tick_offcpu_max_seconds",
            "Longest time a media worker was kept off its CPU inside one tick over its last report (on a VM, the host's steal), per worker.",
        );
        for w in &workers {
            let _ = writeln!(
                s,
                "caucus_media_tick_offcpu_max_seconds{{worker=\"{}\"}} {}",
                w.worker,
                f64::from(w.offcpu_max_us) / 1e6
            );
        }
        gauge(
            &mut s,
            "caucus_rtp_packets_received",
            "RTP packets received by the current legs, per worker.",
        );
        for w in &workers {
            let _ = writeln!(
                s,
                "caucus_rtp_packets_received{{worker=\"{}\"}} {}",
                w.worker, w.rtp_received
            );
        }
        gauge(
            &mut s,
            "caucus_rtp_packets_lost",
            "RTP packets lost by the current legs (RFC 3550), per worker.",
        );
        for w in &workers {
            let _ = writeln!(
                s,
                "caucus_rtp_packets_lost{{worker=\"{}\"}} {}",
                w.worker, w.rtp_lost
            );
        }
        gauge(
            &mut s,
            "caucus_rtp_packets_stray",
            "RTP packets dropped from unlearned sources (current legs), per worker.",
        );
        for w in &workers {
            let _ = writeln!(
                s,
                "caucus_rtp_packets_stray{{worker=\"{}\"}} {}",
                w.worker, w.rtp_strays
            );
        }
        gauge(
            &mut s,
            "caucus_rtp_jitter_seconds",
            "Interarrival jitter over the current legs, per worker.",
        );
        for w in &workers {
            let _ = writeln!(
                s,
                "caucus_rtp_jitter_seconds{{worker=\"{}\",stat=\"mean\"}} {}\ncaucus_rtp_jitter_seconds{{worker=\"{}\",stat=\"max\"}} {}",
                w.worker,
                f64::from(w.jitter_mean_us) / 1e6,
                w.worker,
                f64::from(w.jitter_max_us) / 1e6
            );
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
