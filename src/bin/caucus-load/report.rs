//! One run's figures, the median of several runs, and their JSON.

#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    pub(crate) shape: String,
    pub(crate) codec: String,
    pub(crate) rooms: usize,
    pub(crate) per_room: usize,
    pub(crate) participants: usize,
    pub(crate) setup_failures: usize,
    // calls refused with 503 (overload control, with --ramp)
    pub(crate) refused: usize,
    pub(crate) setup_p99_ms: f64,
    pub(crate) bridge_cpu_us_per_participant_tick: f64,
    // of it, in user mode (the rest is the kernel's: system calls, softirqs)
    pub(crate) bridge_user_us_per_participant_tick: f64,
    pub(crate) bridge_cpu_percent: f64,
    pub(crate) machine_cpu_percent: f64,
    // of the machine's time, what the hypervisor took from our virtual CPUs
    pub(crate) machine_steal_percent: f64,
    pub(crate) rtp_loss_percent: f64,
    pub(crate) jitter_ms_mean: f64,
    pub(crate) tick_late_p50_us: u32,
    // over every tick of every worker in the hold
    pub(crate) tick_late_p99_us: u32,
    // the largest p99 of one worker's 5 s interval (stricter: earlier sessions'
    // tables give this one)
    pub(crate) tick_late_p99_worst_interval_us: u32,
    pub(crate) tick_late_max_us: u32,
    // the longest a worker was kept from running inside one tick (wall time
    // minus its CPU time): on a VM, the host's steal; tick lateness near it is
    // the host's, not the bridge's
    pub(crate) tick_offcpu_max_us: u32,
    pub(crate) memory_kib_per_participant: f64,
    pub(crate) probe_hears_talkers_db: f64,
    pub(crate) probe_hears_self_db: f64,
}

impl Report {
    /// The median run of `runs` (one shape): the median of each figure, except
    /// that set-up failures add up, loss and lateness p99/max are the worst run's,
    /// and the probe is judged on its worst run.
    pub(crate) fn median(runs: &[Report]) -> Report {
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
    pub(crate) fn probe_ok(&self) -> bool {
        self.probe_hears_talkers_db > 40.0
            && self.probe_hears_talkers_db - self.probe_hears_self_db >= 30.0
    }

    pub(crate) fn json(&self) -> String {
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

/// The `p` quantile of `v` (sorted in place), 0 when empty.
pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}
