//! A media worker: a thread that owns its rooms (or their shards) and ticks them
//! all every 20 ms, ticking a fraction of a period apart from the other workers.
//! It runs SCHED_FIFO when allowed (a tick must start on time); with no rooms it
//! blocks on its command queue and costs nothing. It reports what its legs say
//! (DTMF, talking, prompts done, RTP timeouts) and, every 5 s, its tick timing
//! ([`TickStats`]); it publishes its heartbeat and load for the driver
//! ([`WorkerGauges`]), lock-free.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::bus::RoomBus;
use super::contract::{MediaEvent, MediaParams, RtpTimeouts, TickStats, TransportSpec};
use super::frame::TICK;
use super::leg::{LegMedia, RtpTotals};
use super::prompt::{Prompt, Prompts, Sound};
use super::record::RecordSink;
use super::room::{RoomMedia, Scratch};
use crate::ids::LegId;

/// How often a worker reports its tick statistics.
const STATS_EVERY: u32 = 250; // 5 s of ticks

/// Lateness histogram with 100 µs buckets up to 102 ms.
struct Lateness {
    buckets: [u32; 1024],
    max_us: u32,
    sum_us: u64,
    ticks: u32,
    busy_us: u64,
    busy_max_us: u32,
    offcpu_us: u64,
    offcpu_max_us: u32,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

impl Lateness {
    fn new() -> Lateness {
        Lateness {
            buckets: [0; 1024],
            max_us: 0,
            sum_us: 0,
            ticks: 0,
            busy_us: 0,
            busy_max_us: 0,
            offcpu_us: 0,
            offcpu_max_us: 0,
        }
    }
    /// One tick that started `late`, took `busy` of wall time and `cpu` of the
    /// worker thread's CPU time.
    fn record(&mut self, late: Duration, busy: Duration, cpu: Duration) {
        let us = micros(late);
        self.buckets[(us / 100).min(1023) as usize] += 1;
        self.max_us = self.max_us.max(us);
        self.sum_us += u64::from(us);
        self.ticks += 1;
        self.busy_us += u64::from(micros(busy));
        self.busy_max_us = self.busy_max_us.max(micros(busy));
        let off = micros(busy.saturating_sub(cpu));
        self.offcpu_us += u64::from(off);
        self.offcpu_max_us = self.offcpu_max_us.max(off);
    }
    fn percentile(&self, p: u32) -> u32 {
        let want = (u64::from(self.ticks) * u64::from(p)).div_ceil(100).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return (i as u32 + 1) * 100;
            }
        }
        self.max_us
    }
    fn take(&mut self, worker: usize, legs: usize) -> TickStats {
        let st = TickStats {
            worker,
            ticks: self.ticks,
            legs,
            late_p50_us: self.percentile(50).min(self.max_us.max(1)),
            late_p99_us: self.percentile(99).min(self.max_us.max(1)),
            late_max_us: self.max_us,
            late_sum_us: self.sum_us,
            busy_us: self.busy_us,
            busy_max_us: self.busy_max_us,
            offcpu_us: self.offcpu_us,
            offcpu_max_us: self.offcpu_max_us,
            late_hist: self
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &c)| (i as u32 * 100, c))
                .collect(),
            ..TickStats::default()
        };
        *self = Lateness::new();
        st
    }
}

/// What the engine tells a worker.
pub(super) enum Command {
    Add(String, Box<LegMedia>),
    Join(LegId),
    Hold(LegId, Sound),
    Mute(LegId, bool),
    Deaf(LegId, bool),
    // Q12 gains in and out
    Volume(LegId, u16, u16),
    // a room's announcement: playback id, sound, plays
    Announce(String, u64, Sound, u32),
    StopAnnounce(String, u64),
    Play(LegId, Vec<Prompt>),
    PlaySound(LegId, Sound),
    Record(String, RecordSink),
    StopRecording(String, String),
    Interrupt(LegId),
    SendDtmf(LegId, Vec<u8>),
    /// keep the next ms of what a leg says
    Capture(LegId, u32),
    Move(LegId, String, bool, super::contract::Treatment),
    Relate(LegId, crate::media::contract::Relation),
    Update(LegId, MediaParams, TransportSpec),
    Remove(LegId),
    // the room now spans workers (None: no longer)
    Bus(String, Option<Arc<RoomBus>>),
    Stop,
}

/// The room `name` of a worker, created (with its bus, if the room spans
/// workers) if new.
fn room_of_worker<'a>(
    rooms: &'a mut HashMap<String, RoomMedia>,
    buses: &HashMap<String, Arc<RoomBus>>,
    name: &str,
    max_talkers: usize,
    timeouts: RtpTimeouts,
    shard: usize,
) -> &'a mut RoomMedia {
    rooms.entry(name.to_owned()).or_insert_with(|| {
        let mut r = RoomMedia::new(max_talkers);
        r.timeouts = timeouts;
        r.bus = buses.get(name).map(|b| (b.clone(), shard));
        r
    })
}

/// The next tick time after `now` on the worker's schedule `anchor + k × TICK`.
fn aligned(now: Instant, anchor: Instant) -> Instant {
    let since = now.saturating_duration_since(anchor);
    let k = since.as_nanos() / TICK.as_nanos() + 1;
    anchor + TICK * u32::try_from(k).unwrap_or(u32::MAX)
}

/// The leg `id` in the room that holds it.
fn leg_in<'a>(
    rooms: &'a mut HashMap<String, RoomMedia>,
    leg_room: &HashMap<LegId, String>,
    id: LegId,
) -> Option<&'a mut LegMedia> {
    let room = rooms.get_mut(leg_room.get(&id)?)?;
    room.legs.iter_mut().find(|l| l.id == id)
}

/// CPU time of the calling thread. With steal-time accounting (a KVM guest) it
/// leaves out the time the host ran something else on our virtual CPU, so that
/// wall time minus this is the time the worker was kept from running: a system
/// call per tick, not per packet.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Put the calling media worker under SCHED_FIFO at `priority` (0: leave it).
///
/// A tick is due every 20 ms whatever else the machine does. Under the ordinary
/// scheduler a worker woken for its tick waits behind whatever runs on its core
/// (measured: p99 tick lateness 7-20 ms at 3,000 participants with a load
/// generator on the same two cores; under SCHED_FIFO 0.3-1.6 ms). The worker
/// sleeps between ticks, and the kernel's real-time throttling still leaves the
/// other threads 5 % of every core if a worker ever ran away. Without the right
/// (root, CAP_SYS_NICE or `LimitRTPRIO=` in the unit) the worker runs as before.
pub(super) fn realtime(index: usize, priority: u8) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if priority == 0 {
        return;
    }
    // the configuration allows 1..=99, the range this accepts
    let Ok(value) = ThreadPriorityValue::try_from(priority) else {
        return;
    };
    match thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    ) {
        Ok(()) => tracing::debug!(worker = index, priority, "media worker runs SCHED_FIFO"),
        Err(error) => tracing::warn!(
            worker = index,
            priority,
            ?error,
            "media worker could not take SCHED_FIFO (needs root, CAP_SYS_NICE or LimitRTPRIO); ticks may start late on a busy machine"
        ),
    }
}

/// What each worker publishes for the driver, lock-free: its heartbeat
/// (milliseconds since the engine's epoch at its last loop, or [`IDLE`] while it
/// has no rooms and waits for a command: it cannot be stuck in a tick then), its
/// load (work time per tick against the 20 ms period, parts per million, smoothed
/// over about 16 ticks) and the legs that load was measured with.
pub struct WorkerGauges {
    epoch: Instant,
    beats: Vec<std::sync::atomic::AtomicU64>,
    load_ppm: Vec<std::sync::atomic::AtomicU32>,
    legs: Vec<std::sync::atomic::AtomicU32>,
}

/// A worker waiting for work.
const IDLE: u64 = u64::MAX;

/// The load a leg is taken to add before a worker has measured any (a talking
/// Opus leg's cost on this machine: about 30 µs of a 20 ms tick).
const PRIOR_LOAD_PER_LEG: f64 = 0.0015;
/// Legs a worker must hold before its load is scaled per leg.
const SCALE_FROM: usize = 32;

impl WorkerGauges {
    pub(super) fn new(n: usize, epoch: Instant) -> WorkerGauges {
        use std::sync::atomic::{AtomicU32, AtomicU64};
        WorkerGauges {
            epoch,
            beats: (0..n).map(|_| AtomicU64::new(IDLE)).collect(),
            load_ppm: (0..n).map(|_| AtomicU32::new(0)).collect(),
            legs: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn beat(&self, worker: usize, value: u64) {
        self.beats[worker].store(value, std::sync::atomic::Ordering::Relaxed);
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A tick took `busy` with `legs` legs: fold it into the smoothed load.
    fn tick(&self, worker: usize, busy: Duration, legs: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let sample = (busy.as_micros() * 1_000_000 / TICK.as_micros()).min(10_000_000) as i64;
        let old = i64::from(self.load_ppm[worker].load(Relaxed));
        let new = old + (sample - old) / 16;
        self.load_ppm[worker].store(new.clamp(0, i64::from(u32::MAX)) as u32, Relaxed);
        self.legs[worker].store(u32::try_from(legs).unwrap_or(u32::MAX), Relaxed);
    }

    /// An idle worker does no work.
    fn idle(&self, worker: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.beat(worker, IDLE);
        self.load_ppm[worker].store(0, Relaxed);
        self.legs[worker].store(0, Relaxed);
    }

    /// Whether every worker is idle or has run its loop within `gap`.
    pub fn alive(&self, gap: Duration) -> bool {
        let now = self.now();
        let gap = gap.as_millis() as u64;
        self.beats.iter().all(|b| {
            let t = b.load(std::sync::atomic::Ordering::Relaxed);
            t == IDLE || now.saturating_sub(t) <= gap
        })
    }

    /// Worker `w`'s load (1.0: a tick's work fills the period) with `placed`
    /// legs: what it measured, scaled to the legs placed on it since (a burst of
    /// calls is counted before its audio reaches the tick).
    pub(super) fn predicted(&self, w: usize, placed: usize) -> f64 {
        use std::sync::atomic::Ordering::Relaxed;
        let load = f64::from(self.load_ppm[w].load(Relaxed)) / 1e6;
        let measured = self.legs[w].load(Relaxed) as usize;
        if placed <= measured {
            load
        } else if measured < SCALE_FROM {
            // a few legs' load is mostly the tick's fixed cost: do not scale it
            load + (placed - measured) as f64 * PRIOR_LOAD_PER_LEG
        } else {
            load * placed as f64 / measured as f64
        }
    }
}

/// Talkers a worker denoises per tick at most: RNNoise costs about 0.1 ms a
/// talker (more at 8 kHz, with the conversion to 48 kHz), so 32 take at most a
/// fifth of a tick; the talkers beyond are mixed as they came.
pub const DENOISE_BUDGET: u32 = 32;

/// Ticks in a row under a third of the tick before a shed worker denoises
/// again (5 s).
const CALM_TICKS: u32 = 250;

/// Whether a worker denoises: noise suppression is the first thing to go when
/// the worker is loaded (a tick over half its time), and comes back only after
/// 5 s of ticks under a third, so that talkers do not flicker between denoised
/// and not while the load hovers near the line.
#[derive(Debug)]
struct Shedding {
    on: bool,
    calm: u32,
}

impl Shedding {
    fn new() -> Shedding {
        Shedding { on: true, calm: 0 }
    }

    /// After a tick that took `busy`: whether the next one denoises.
    fn next(&mut self, busy: Duration) -> bool {
        if self.on {
            if busy > TICK / 2 {
                self.on = false;
                self.calm = 0;
            }
        } else if busy < TICK / 3 {
            self.calm += 1;
            if self.calm >= CALM_TICKS {
                self.on = true;
            }
        } else {
            self.calm = 0;
        }
        self.on
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn worker(
    index: usize,
    max_talkers: usize,
    timeouts: RtpTimeouts,
    prompts: Arc<Prompts>,
    rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<(LegId, MediaEvent)>,
    anchor: Instant,
    heart: Arc<WorkerGauges>,
) {
    let mut rooms: HashMap<String, RoomMedia> = HashMap::new();
    let mut lateness = Lateness::new();
    let mut leg_room: HashMap<LegId, String> = HashMap::new();
    // rooms spanning workers, for shards created later on this one
    let mut buses: HashMap<String, Arc<RoomBus>> = HashMap::new();
    let mut scratch = Scratch::default();
    // closed legs' RTP counts, and the largest loss reported (a live leg's loss
    // can fall when late packets arrive; the counter reported must not)
    let mut ended = RtpTotals::default();
    let mut lost_reported = 0i64;
    let mut next_tick = aligned(Instant::now(), anchor);
    let mut shedding = Shedding::new();
    loop {
        // With no rooms, sleep until told otherwise.
        let cmd = if rooms.is_empty() {
            heart.idle(index);
            let c = rx.recv();
            heart.beat(index, heart.now());
            match c {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        } else {
            heart.beat(index, heart.now());
            let now = Instant::now();
            match rx.recv_timeout(next_tick.saturating_duration_since(now)) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        match cmd {
            Some(Command::Add(room, leg)) => {
                if rooms.is_empty() {
                    next_tick = aligned(Instant::now(), anchor);
                }
                let id = leg.id;
                room_of_worker(&mut rooms, &buses, &room, max_talkers, timeouts, index).add(*leg);
                leg_room.insert(id, room);
            }
            Some(Command::Bus(room, bus)) => {
                if let Some(r) = rooms.get_mut(&room) {
                    r.bus = bus.as_ref().map(|b| (b.clone(), index));
                    if bus.is_none() {
                        r.remote = None;
                    }
                }
                match bus {
                    Some(b) => buses.insert(room, b),
                    None => buses.remove(&room),
                };
            }
            Some(Command::Join(id)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.isolated = false;
                    l.moh = None;
                    l.prompts.clear();
                    l.playing = None;
                }
            }
            Some(Command::Mute(id, muted)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.muted = muted;
                }
            }
            Some(Command::Deaf(id, deaf)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.deaf = deaf;
                }
            }
            Some(Command::Announce(room, id, sound, plays)) => {
                if let Some(r) = rooms.get_mut(&room) {
                    r.announcements
                        .push(super::room::Announcement::new(id, sound, plays));
                }
            }
            Some(Command::StopAnnounce(room, id)) => {
                if let Some(r) = rooms.get_mut(&room) {
                    r.announcements.retain(|a| a.id != id);
                }
            }
            Some(Command::Volume(id, gain_in, gain_out)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.gain_in = gain_in;
                    l.gain_out = gain_out;
                }
            }
            Some(Command::Hold(id, music)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.isolated = true;
                    l.moh = Some(music);
                }
            }
            Some(Command::Interrupt(id)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.prompts.clear();
                    l.playing = None;
                }
            }
            Some(Command::Move(id, to, isolated, treatment)) => {
                let taken = leg_room.get(&id).cloned().and_then(|from| {
                    let r = rooms.get_mut(&from)?;
                    let leg = r.take(id)?;
                    // its own recordings go with it
                    let stems: Vec<_> = r.records.extract_if(.., |s| s.leg == Some(id)).collect();
                    if r.legs.is_empty() && r.records.is_empty() {
                        rooms.remove(&from);
                    }
                    Some((leg, stems))
                });
                if let Some((mut leg, stems)) = taken {
                    leg.isolated = isolated;
                    leg.treatment = treatment;
                    leg.moh = None;
                    leg.prompts.clear();
                    leg.playing = None;
                    leg.muted = false;
                    leg.deaf = false;
                    // its relations named legs of the room it left
                    leg.relation = None;
                    let r = room_of_worker(&mut rooms, &buses, &to, max_talkers, timeouts, index);
                    r.add(leg);
                    r.records.extend(stems);
                    leg_room.insert(id, to);
                }
            }
            Some(Command::Relate(id, relation)) => {
                if let Some(r) = leg_room.get(&id).and_then(|name| rooms.get_mut(name)) {
                    r.relate(id, relation);
                }
            }
            Some(Command::Capture(id, ms)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.capture = Some(Box::new(super::leg::Capture::new(ms)));
                }
            }
            Some(Command::SendDtmf(id, events)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.dtmf_out.get_or_insert_default().push(&events);
                }
            }
            Some(Command::Play(id, list)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.prompts
                        .extend(list.into_iter().map(|p| prompts.get(p).clone()));
                }
            }
            Some(Command::PlaySound(id, sound)) => {
                if let Some(l) = leg_in(&mut rooms, &leg_room, id) {
                    l.prompts.push_back(sound);
                }
            }
            Some(Command::Record(room, sink)) => {
                if rooms.is_empty() {
                    next_tick = aligned(Instant::now(), anchor);
                }
                // a room recording may start before anyone is in: it records the
                // silence, so that the file's time is the room's time
                room_of_worker(&mut rooms, &buses, &room, max_talkers, timeouts, index)
                    .add_record(sink);
            }
            Some(Command::StopRecording(room, id)) => {
                if let Some(r) = rooms.get_mut(&room) {
                    r.records.retain(|s| s.id != id);
                    if r.legs.is_empty() && r.records.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            Some(Command::Update(id, params, spec)) => {
                if let Some(Err(e)) = leg_room
                    .get(&id)
                    .and_then(|name| rooms.get_mut(name))
                    .and_then(|r| r.update(id, params, &spec, Instant::now()))
                {
                    tracing::warn!(leg = %id, error = %e, "media update failed");
                }
            }
            Some(Command::Remove(id)) => {
                if let Some(name) = leg_room.remove(&id)
                    && let Some(r) = rooms.get_mut(&name)
                {
                    if let Some(t) = r.remove(id) {
                        ended.add(t);
                    }
                    // a leg's own recording ends with the leg
                    r.records.retain(|s| s.leg != Some(id));
                    if r.legs.is_empty() && r.records.is_empty() {
                        rooms.remove(&name);
                    }
                }
            }
            Some(Command::Stop) => return,
            None => {}
        }
        let now = Instant::now();
        if now >= next_tick && !rooms.is_empty() {
            let cpu = thread_cpu();
            scratch.denoise_left = if shedding.on { DENOISE_BUDGET } else { 0 };
            for room in rooms.values_mut() {
                room.tick(now, &mut scratch, &events);
            }
            let busy = now.elapsed();
            shedding.next(busy);
            lateness.record(now - next_tick, busy, thread_cpu().saturating_sub(cpu));
            heart.tick(index, busy, leg_room.len());
            if lateness.ticks >= STATS_EVERY {
                let legs = rooms.values().map(|r| r.legs.len()).sum();
                let mut st = lateness.take(index, legs);
                let (mut jit_sum, mut n) = (0u64, 0u64);
                let mut totals = ended;
                for leg in rooms.values().flat_map(|r| r.legs.iter()) {
                    totals.add(RtpTotals::of(leg));
                    if leg.stats.received > 0 {
                        let us = u64::from(leg.stats.jitter()) * 1_000_000
                            / u64::from(leg.params.codec.clock_rate());
                        jit_sum += us;
                        n += 1;
                        st.jitter_max_us = st.jitter_max_us.max(us as u32);
                    }
                }
                st.jitter_mean_us = jit_sum.checked_div(n).unwrap_or(0) as u32;
                lost_reported = lost_reported.max(totals.lost);
                st.rtp_received = totals.received;
                st.rtp_lost = lost_reported;
                st.rtp_strays = totals.strays;
                let _ = events.send((LegId(0), MediaEvent::TickStats(st)));
            }
            next_tick += TICK;
            if now > next_tick + 5 * TICK {
                // far behind (suspended): resynchronise instead of bursting
                next_tick = aligned(now, anchor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Denoising stops on the first tick over half its time and comes back
    /// after 5 s under a third, not sooner: a load hovering near the line
    /// does not flip it tick by tick.
    #[test]
    fn denoising_is_shed_under_load_and_back_after_calm() {
        let mut s = Shedding::new();
        assert!(s.next(TICK / 4));
        assert!(!s.next(TICK * 3 / 5));
        for _ in 0..CALM_TICKS - 1 {
            assert!(!s.next(TICK / 4));
        }
        assert!(!s.next(TICK * 2 / 5), "a busier tick starts the calm again");
        for _ in 0..CALM_TICKS - 1 {
            assert!(!s.next(TICK / 4));
        }
        assert!(s.next(TICK / 4));
    }

    #[test]
    fn predicted_load_counts_legs_placed_since_the_last_tick() {
        let g = WorkerGauges::new(2, Instant::now());
        // nothing (or little) measured yet: the prior cost per leg
        assert!((g.predicted(0, 100) - 100.0 * PRIOR_LOAD_PER_LEG).abs() < 1e-9);
        g.tick(0, TICK / 10, 2);
        let few = g.predicted(0, 12);
        assert!(few < 0.1, "a tick's fixed cost scaled per leg: {few}");
        // 0.4 of the period with 200 legs; 100 more placed scale it
        for _ in 0..200 {
            g.tick(1, TICK * 2 / 5, 200);
        }
        assert!(
            (g.predicted(1, 200) - 0.4).abs() < 0.01,
            "{}",
            g.predicted(1, 200)
        );
        assert!((g.predicted(1, 300) - 0.6).abs() < 0.01);
        // an idle worker has no load and is alive
        g.idle(1);
        assert_eq!(g.predicted(1, 0), 0.0);
        assert!(g.alive(Duration::from_millis(10)));
        g.beat(0, g.now());
        assert!(g.alive(Duration::from_secs(1)));
    }

    /// A tick's wall time beyond the worker's CPU time is reported as time off
    /// the CPU (the host's steal on a VM); a tick whose CPU time reads above its
    /// wall time (clocks of different granularity) counts none.
    #[test]
    fn off_cpu_time_is_wall_minus_cpu() {
        let ms = Duration::from_millis;
        let mut l = Lateness::new();
        l.record(ms(0), ms(6), ms(6));
        l.record(ms(2), ms(30), ms(7));
        l.record(ms(0), ms(5), ms(6));
        let st = l.take(0, 10);
        assert_eq!(st.ticks, 3);
        assert_eq!(st.offcpu_max_us, 23_000);
        assert_eq!(st.offcpu_us, 23_000);
        assert_eq!(st.busy_max_us, 30_000);
        assert_eq!(st.late_max_us, 2_000);
        assert_eq!(st.late_hist, vec![(0, 2), (2_000, 1)]);
        // 2.0-2.1 ms is over the 2 ms bound: counted up to 5 ms
        assert_eq!(st.late_buckets(), [2, 0, 0, 1, 0, 0, 0]);
    }

    /// The calling thread's CPU clock advances with work, not with sleep.
    #[test]
    fn thread_cpu_counts_work_not_sleep() {
        let a = thread_cpu();
        std::thread::sleep(Duration::from_millis(30));
        let b = thread_cpu();
        assert!(b - a < Duration::from_millis(15), "{:?}", b - a);
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu() > b, "{x}");
    }
}
