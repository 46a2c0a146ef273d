//! The media engine: the signalling driver's handle on the media workers. It
//! places each leg on a worker: a room lives on one (chosen by hashing its name),
//! so its state has one owner and needs no lock; a room past `shard_at` legs
//! spreads over every worker, each shard owning its legs and trading its loudest
//! talkers with the others once per tick (see [`super::bus`]). It turns
//! [`MediaCommand`]s into worker commands, binds the RTP sockets a leg's SDP will
//! announce ([`super::transport`]), and judges the workers' load for overload
//! control.
//!
//! What runs in a worker is in [`super::worker`] (the loop), [`super::room`] (a
//! room's tick), [`super::leg`] (a leg's media) and [`super::transport`] (how a
//! leg's media travels).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::bus::RoomBus;
use super::contract::{MediaCommand, MediaEvent, RtpTimeouts};
use super::frame::TICK;
use super::leg::LegMedia;
use super::prompt::Prompts;
use super::record;
use super::transport::{self, Bound, Transport};
use super::worker::{Command, WorkerGauges, realtime, worker};
use crate::ids::LegId;

pub use super::contract::{MediaParams, TickStats, TransportSpec};
pub use super::frame::MAX_TALKERS;
pub use super::room::{RoomMedia, Scratch};

/// Legs a room holds on its home worker before further legs go to the least
/// loaded worker (see [`super::bus`]).
pub const SHARD_AT: usize = 256;

/// Where one room's legs are: a count per worker, and the bus once it spans more
/// than one.
struct Place {
    legs: Vec<usize>,
    bus: Option<Arc<RoomBus>>,
}

/// Handle to the media workers, used by the signalling driver.
pub struct MediaEngine {
    workers: Vec<mpsc::Sender<Command>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    leg_worker: HashMap<LegId, usize>,
    // where each room's legs are, for spreading a large room over workers
    leg_room: HashMap<LegId, String>,
    places: HashMap<String, Place>,
    worker_legs: Vec<usize>,
    shard_at: usize,
    // RTP sockets bound for legs not opened yet
    bound: HashMap<LegId, Bound>,
    // browser connections answered for legs not opened yet
    web: HashMap<LegId, transport::WebRtc>,
    // WebSocket gateways' pipes for legs not opened yet
    pipes: HashMap<LegId, transport::PipePort>,
    events: mpsc::Sender<(LegId, MediaEvent)>,
    prompts: Arc<Prompts>,
    heart: Arc<WorkerGauges>,
}

impl MediaEngine {
    /// Start `n` workers; each room mixes at most `max_talkers` loudest talkers.
    pub fn start(
        n: usize,
        max_talkers: usize,
        timeouts: RtpTimeouts,
        realtime_priority: u8,
        shard_at: usize,
        prompts: Prompts,
    ) -> (MediaEngine, mpsc::Receiver<(LegId, MediaEvent)>) {
        let prompts = Arc::new(prompts);
        super::g711::init();
        let (ev_tx, ev_rx) = mpsc::channel();
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        // workers tick a fraction of a period apart: shards of one room then read
        // each other's talkers well after they were published
        let epoch = Instant::now();
        let n = n.max(1);
        let heart = Arc::new(WorkerGauges::new(n, epoch));
        for i in 0..n {
            let anchor =
                epoch + TICK * u32::try_from(i).unwrap_or(0) / u32::try_from(n).unwrap_or(1);
            let (tx, rx) = mpsc::channel();
            let ev = ev_tx.clone();
            let prompts = prompts.clone();
            let heart = heart.clone();
            let t = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || {
                    realtime(i, realtime_priority);
                    worker(i, max_talkers, timeouts, prompts, rx, ev, anchor, heart)
                })
                .expect("spawning a media thread at start-up");
            workers.push(tx);
            threads.push(t);
        }
        (
            MediaEngine {
                workers,
                threads,
                leg_worker: HashMap::new(),
                leg_room: HashMap::new(),
                places: HashMap::new(),
                worker_legs: vec![0; n],
                shard_at: shard_at.max(1),
                bound: HashMap::new(),
                web: HashMap::new(),
                pipes: HashMap::new(),
                events: ev_tx,
                prompts,
                heart,
            },
            ev_rx,
        )
    }

    fn worker_for(&self, room: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        room.hash(&mut h);
        (h.finish() % self.workers.len() as u64) as usize
    }

    /// The worker for a new leg of `room`: the room's home worker until it holds
    /// `shard_at` ([`SHARD_AT`] by default) of the room's legs, then the least
    /// loaded worker. A room that
    /// comes to span workers gets a [`RoomBus`] on all of them.
    fn place(&mut self, leg: LegId, room: &str) -> usize {
        let home = self.worker_for(room);
        let n = self.workers.len();
        let at_home = self.places.get(room).map_or(0, |p| p.legs[home]);
        let w = if at_home < self.shard_at {
            home
        } else {
            // least loaded overall, the home worker on a tie
            (0..n)
                .min_by_key(|&w| (self.worker_legs[w], w != home))
                .unwrap_or(home)
        };
        self.place_on(leg, room, w);
        w
    }

    /// Count leg `leg` of `room` on worker `w`; the room gets a bus when `w`
    /// is not its home.
    fn place_on(&mut self, leg: LegId, room: &str, w: usize) {
        let home = self.worker_for(room);
        let n = self.workers.len();
        let place = self.places.entry(room.to_owned()).or_insert_with(|| Place {
            legs: vec![0; n],
            bus: None,
        });
        if w != home && place.bus.is_none() {
            let bus = RoomBus::new(n);
            for tx in &self.workers {
                let _ = tx.send(Command::Bus(room.to_owned(), Some(bus.clone())));
            }
            tracing::info!(room, "room spans media workers");
            place.bus = Some(bus);
        }
        place.legs[w] += 1;
        self.worker_legs[w] += 1;
        self.leg_worker.insert(leg, w);
        self.leg_room.insert(leg, room.to_owned());
    }

    /// Forget a closed leg's place; a room left with no legs loses its bus.
    fn unplace(&mut self, leg: LegId, w: usize) {
        self.worker_legs[w] = self.worker_legs[w].saturating_sub(1);
        let Some(room) = self.leg_room.remove(&leg) else {
            return;
        };
        let Some(place) = self.places.get_mut(&room) else {
            return;
        };
        place.legs[w] = place.legs[w].saturating_sub(1);
        if place.legs.iter().all(|&c| c == 0) {
            if place.bus.is_some() {
                for tx in &self.workers {
                    let _ = tx.send(Command::Bus(room.clone(), None));
                }
            }
            self.places.remove(&room);
        }
    }

    /// Pass a command to the worker that holds the leg.
    fn tell(&self, leg: LegId, cmd: Command) {
        if let Some(&w) = self.leg_worker.get(&leg) {
            let _ = self.workers[w].send(cmd);
        }
    }

    /// A browser leg's connection, made when its offer was answered: its
    /// [`MediaCommand::Open`] takes it.
    pub fn stage_webrtc(&mut self, leg: LegId, connection: transport::WebRtc) {
        self.web.insert(leg, connection);
    }

    /// A WebSocket leg's pipe, made when its server accepted: its
    /// [`MediaCommand::Open`] takes it.
    pub fn stage_pipe(&mut self, leg: LegId, port: transport::PipePort) {
        self.pipes.insert(leg, port);
    }

    /// Carry out a command from signalling.
    pub fn apply(&mut self, cmd: MediaCommand) -> io::Result<()> {
        match cmd {
            MediaCommand::Bind { leg, addr } => {
                self.bound.insert(leg, transport::rtp::bind(addr)?);
            }
            MediaCommand::Open {
                leg,
                room,
                params,
                transport,
                isolated,
                treatment,
            } => {
                let now = Instant::now();
                let transport = Transport::open(
                    transport,
                    self.bound.remove(&leg),
                    self.web.remove(&leg),
                    self.pipes.remove(&leg),
                    now,
                )?;
                let mut media = LegMedia::new(leg, transport, params, now)?;
                media.isolated = isolated;
                media.treatment = treatment;
                let w = self.place(leg, &room);
                let _ = self.workers[w].send(Command::Add(room, Box::new(media)));
            }
            MediaCommand::Update {
                leg,
                params,
                transport,
            } => {
                self.tell(leg, Command::Update(leg, params, transport));
            }
            MediaCommand::Join { leg } => {
                self.tell(leg, Command::Join(leg));
            }
            MediaCommand::Hold { leg, music } => {
                self.tell(leg, Command::Hold(leg, self.prompts.get(music).clone()));
            }
            MediaCommand::HoldSound { leg, sound } => {
                self.tell(leg, Command::Hold(leg, sound));
            }
            MediaCommand::Mute { leg, muted } => {
                self.tell(leg, Command::Mute(leg, muted));
            }
            MediaCommand::Deaf { leg, deaf } => {
                self.tell(leg, Command::Deaf(leg, deaf));
            }
            MediaCommand::Interrupt { leg } => self.tell(leg, Command::Interrupt(leg)),
            MediaCommand::Announce {
                room,
                id,
                sound,
                plays,
            } => {
                // every worker that holds legs of the room mixes it for them
                let holders: Vec<usize> = self
                    .places
                    .get(&room)
                    .map(|p| (0..p.legs.len()).filter(|&w| p.legs[w] > 0).collect())
                    .unwrap_or_default();
                if holders.is_empty() {
                    // nobody to play it to
                    let _ = self
                        .events
                        .send((LegId(0), MediaEvent::PlaybackDone { id }));
                }
                for w in holders {
                    let _ = self.workers[w].send(Command::Announce(
                        room.clone(),
                        id,
                        sound.clone(),
                        plays,
                    ));
                }
            }
            MediaCommand::CrossPipes { a, b } => {
                let (pa, pb) = transport::pipe::crossed();
                self.pipes.insert(a, pa);
                self.pipes.insert(b, pb);
            }
            MediaCommand::StopAnnounce { room, id } => {
                for w in &self.workers {
                    let _ = w.send(Command::StopAnnounce(room.clone(), id));
                }
            }
            MediaCommand::Volume {
                leg,
                speak_db,
                hear_db,
            } => self.tell(
                leg,
                Command::Volume(
                    leg,
                    super::mixer::gain(speak_db),
                    super::mixer::gain(hear_db),
                ),
            ),
            MediaCommand::Move {
                leg,
                room,
                isolated,
                treatment,
            } => {
                // the leg stays on its worker (its transport and state do not
                // cross threads); the room spans that worker if it must
                if let Some(&w) = self.leg_worker.get(&leg) {
                    self.unplace(leg, w);
                    self.place_on(leg, &room, w);
                    let _ = self.workers[w].send(Command::Move(leg, room, isolated, treatment));
                }
            }
            MediaCommand::Relate { leg, relation } => {
                self.tell(leg, Command::Relate(leg, relation));
            }
            MediaCommand::Capture { leg, ms } => {
                self.tell(leg, Command::Capture(leg, ms));
            }
            MediaCommand::SendDtmf { leg, events } => {
                self.tell(leg, Command::SendDtmf(leg, events));
            }
            MediaCommand::Play { leg, prompts } => {
                self.tell(leg, Command::Play(leg, prompts));
            }
            MediaCommand::PlaySound { leg, sound } => {
                self.tell(leg, Command::PlaySound(leg, sound));
            }
            MediaCommand::Record {
                id,
                room,
                leg,
                path,
                spec,
            } => {
                let sink = record::start(id, &room, leg, &path, spec, self.events.clone())?;
                // a leg's own audio is on its worker; the room's mix is whole on
                // the room's home worker (other shards' talkers come by the bus)
                let w = match leg.and_then(|l| self.leg_worker.get(&l)) {
                    Some(&w) => w,
                    None => self.worker_for(&room),
                };
                let _ = self.workers[w].send(Command::Record(room, sink));
            }
            MediaCommand::StopRecording { id, room } => {
                // whichever worker has it (a leg's recording is on the leg's)
                for w in &self.workers {
                    let _ = w.send(Command::StopRecording(room.clone(), id.clone()));
                }
            }
            MediaCommand::Close { leg } => {
                self.bound.remove(&leg);
                self.web.remove(&leg);
                self.pipes.remove(&leg);
                if let Some(w) = self.leg_worker.remove(&leg) {
                    let _ = self.workers[w].send(Command::Remove(leg));
                    self.unplace(leg, w);
                }
            }
        }
        Ok(())
    }

    /// The workers' gauges (for the service watchdog).
    pub fn gauges(&self) -> Arc<WorkerGauges> {
        self.heart.clone()
    }

    /// The most loaded worker's load, with the legs placed on it counted at
    /// what its legs cost (1.0: its ticks' work fills the 20 ms period).
    pub fn load(&self) -> f64 {
        (0..self.workers.len())
            .map(|w| self.heart.predicted(w, self.worker_legs[w]))
            .fold(0.0, f64::max)
    }

    /// Stop every worker and wait for them.
    pub fn stop(self) {
        for w in &self.workers {
            let _ = w.send(Command::Stop);
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
