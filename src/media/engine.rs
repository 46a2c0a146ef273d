//! The media driver: worker threads that own rooms' RTP sockets and mix them.
//!
//! A room lives on one worker (chosen by hashing its name), so its state has one
//! owner and needs no lock; a room past `shard_at` legs spreads over every worker,
//! each shard owning its legs and trading its loudest talkers with the others once
//! per tick (see [`super::bus`]). Workers run SCHED_FIFO when allowed (a tick must
//! start on time) and wake once per 20 ms tick for all their rooms, ticking a
//! fraction of a period apart; a worker with no rooms blocks on its command queue
//! and costs nothing. Per tick and per leg it reads the leg's non-blocking socket
//! (the kernel socket buffer is the arrival queue, so there is no task or wake-up
//! per packet), feeds the jitter buffer, takes one frame (decoded only if it is
//! mixed: a listener's talker detection needs only its energy, which the G.711
//! codes give, or an Opus packet's VAD flags when they say no speech, see
//! [`super::opus_packet`]), mixes (see
//! [`super::mixer`]) and sends. Listeners who contributed no audio this tick all get
//! the same full mix, encoded once per codec; only the mixed talkers get their own
//! mix-minus-self encode. A large G.711 room is read and sent in blocks of legs so
//! that a leg's socket is still cached for its send (see [`RoomMedia::tick`]).
//!
//! At thousands of legs the cost beside the system calls is cache misses: a leg's
//! per-tick fields come first in its state and are prefetched ahead, and a worker's
//! rooms share one set of tick buffers ([`Scratch`]).
//!
//! Signalling talks to workers by `Command` messages; workers report
//! [`MediaEvent`]s back on a channel. All buffers are allocated when a leg is added
//! (a jitter buffer's grow when a longer packet than any before arrives).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use rustix::net::{RecvFlags, SendFlags};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::bus::{Remote, RoomBus};
use super::codec::{Decoder, Encoder};
use super::dtmf::InbandDetector;
use super::jitter::{JitterBuffer, Pull};
use super::mixer;
use super::prefetch;
use super::prompt::Sound;
use super::prompt::{Prompt, Prompts};
use super::record::{self, Frame, RecordSink, RecordingEnd};
use super::resample::{Downsampler, Upsampler};
use super::rtp::{self, EventTracker, ReceiverStats, RtpPacket, TelephoneEvent};
use super::vad::{self, TalkDetector};

/// In-band detection runs on G.711 legs that negotiated no telephone-event.
fn inband_for(p: &MediaParams) -> Option<InbandDetector> {
    (p.dtmf_pt.is_none() && p.codec != CodecKind::Opus).then(InbandDetector::default)
}
use crate::core::LegId;
use crate::sdp::{CodecKind, Direction};

/// Tick length: the mixing ptime.
pub const TICK: Duration = Duration::from_millis(20);
/// Upper bound for `max_talkers`.
pub const MAX_TALKERS: usize = 16;
/// How often a worker reports its tick statistics.
const STATS_EVERY: u32 = 250; // 5 s of ticks
/// Samples in a 20 ms frame at 48 kHz, the largest room rate.
pub const MAX_FRAME: usize = 960;
/// Legs a room holds on its home worker before further legs go to the least
/// loaded worker (see [`super::bus`]).
pub const SHARD_AT: usize = 256;
// index base of talkers from other shards in a tick's ranking
const REMOTE: usize = usize::MAX / 2;

/// Legs of a G.711 room read and sent together (see `RoomMedia::tick`): with
/// their sockets, about what a core's L2 cache holds.
const BLOCK: usize = 256;
const FIFO: usize = 4 * MAX_FRAME; // room for a 60 ms packet plus a partial frame
static SILENCE: [i16; MAX_FRAME] = [0; MAX_FRAME];
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Negotiated media of a leg, as signalling tells the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaParams {
    /// codec
    pub codec: CodecKind,
    /// its payload type
    pub pt: u8,
    /// telephone-event payload type
    pub dtmf_pt: Option<u8>,
    /// where to send until symmetric RTP learns the source
    pub remote: Option<SocketAddr>,
    /// the peer's direction attribute
    pub peer_direction: Direction,
    /// our SSRC towards the peer
    pub ssrc: u32,
    /// packet time the peer sends (10..=60 ms)
    pub ptime_ms: u32,
}

/// What signalling asks of the media side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// bind the leg's RTP socket at `addr` and RTCP at the port above, before
    /// any SDP announces them; the driver answers with `Core::media_bound`
    Bind {
        /// leg
        leg: LegId,
        /// RTP address (RTCP on port + 1)
        addr: SocketAddr,
    },
    /// put the leg, its sockets bound, in the room
    Open {
        /// leg
        leg: LegId,
        /// room name
        room: String,
        /// negotiated parameters
        params: MediaParams,
        /// kept out of the mix (hears only its prompts) until [`MediaCommand::Join`]
        isolated: bool,
    },
    /// put an isolated leg into the mix (stops its music on hold and prompts)
    Join {
        /// leg
        leg: LegId,
    },
    /// loop music on hold to an isolated leg (waiting for the moderator)
    Hold {
        /// leg
        leg: LegId,
        /// what to loop
        music: Prompt,
    },
    /// loop a sound (an NCCO's musicOnHoldUrl) to an isolated leg
    HoldSound {
        /// leg
        leg: LegId,
        /// what to loop
        sound: Sound,
    },
    /// stop (or resume) mixing what this leg says; it still hears the room
    Mute {
        /// leg
        leg: LegId,
        /// muted or not
        muted: bool,
    },
    /// stop (or resume) sending the room to this leg; it is still heard
    Deaf {
        /// leg
        leg: LegId,
        /// deaf or not
        deaf: bool,
    },
    /// stop the leg's current prompt and drop its queue (barge-in); music on hold
    /// carries on
    Interrupt {
        /// leg
        leg: LegId,
    },
    /// play prompts to this leg only, in order, after any already queued
    Play {
        /// leg
        leg: LegId,
        /// what to say
        prompts: Vec<Prompt>,
    },
    /// play a sound (a WAV file loaded by the control plane) to this leg only
    PlaySound {
        /// leg
        leg: LegId,
        /// samples
        sound: Sound,
    },
    /// start recording the room's mix (`leg` None) or one leg's own audio
    Record {
        /// recording id
        id: String,
        /// room
        room: String,
        /// whose audio
        leg: Option<LegId>,
        /// file to create (must not exist)
        path: std::path::PathBuf,
    },
    /// stop a recording (the writer finishes the file and reports it)
    StopRecording {
        /// recording id
        id: String,
        /// room
        room: String,
    },
    /// renegotiated (re-INVITE/UPDATE: hold, codec or address change)
    Update {
        /// leg
        leg: LegId,
        /// new parameters
        params: MediaParams,
    },
    /// take the leg out and close its sockets
    Close {
        /// leg
        leg: LegId,
    },
}

/// What the media side reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// talker detection changed state for a leg
    Talking {
        /// leg
        leg: LegId,
        /// true when it started talking
        talking: bool,
    },
    /// a worker's tick timing over the last reporting interval
    TickStats(TickStats),
    /// the leg's prompt queue has played out
    PromptDone {
        /// leg
        leg: LegId,
    },
    /// a recording's file is complete (stopped, or ended by an error)
    RecordingDone(Box<RecordingEnd>),
    /// no RTP from the leg's peer for the RTP timeout (or the hold timeout)
    RtpTimeout {
        /// leg
        leg: LegId,
    },
    /// a DTMF digit (RFC 4733 event, or detected in-band), reported once per key
    Dtmf {
        /// leg
        leg: LegId,
        /// '0'-'9', '*', '#', 'A'-'D'
        digit: char,
    },
}

/// Tick timing of one worker over one reporting interval (5 s).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickStats {
    /// worker index
    pub worker: usize,
    /// ticks run
    pub ticks: u32,
    /// legs held at the end of the interval
    pub legs: usize,
    /// lateness of the tick start against its schedule, µs: median
    pub late_p50_us: u32,
    /// 99th percentile
    pub late_p99_us: u32,
    /// maximum
    pub late_max_us: u32,
    /// lateness of every tick start added up, µs (the histogram's exact sum)
    pub late_sum_us: u64,
    /// time spent working in ticks, µs in total
    pub busy_us: u64,
    /// the longest tick's work, µs
    pub busy_max_us: u32,
    /// of the ticks' wall time, what the worker did not run (wall time minus the
    /// thread's CPU time), µs in total: on a virtual machine mostly the host's
    /// steal, which no scheduling inside the guest can prevent
    pub offcpu_us: u64,
    /// the largest such gap in one tick, µs
    pub offcpu_max_us: u32,
    /// the lateness histogram: (start of a 100 µs bucket in µs, ticks in
    /// it) for each bucket that holds any, so that a reader can pool intervals and
    /// workers into one distribution (a percentile of percentiles is not one)
    pub late_hist: Vec<(u32, u32)>,
    /// RTP packets received by the worker's legs since it started (closed legs
    /// included: it only grows)
    pub rtp_received: u64,
    /// RTP packets lost by them (RFC 3550 cumulative lost, summed; only grows)
    pub rtp_lost: i64,
    /// RTP packets dropped because their source was not the learned one
    pub rtp_strays: u64,
    /// interarrival jitter over the worker's legs, µs: mean and largest
    pub jitter_mean_us: u32,
    /// largest
    pub jitter_max_us: u32,
}

impl TickStats {
    /// Ticks by lateness: ≤ 0.5, 1, 2, 5, 10, 20, 50 ms ([`LATE_BOUNDS_US`],
    /// each bucket on its own; the rest were later), from `late_hist`.
    pub fn late_buckets(&self) -> [u32; 7] {
        let mut out = [0u32; 7];
        for &(start, n) in &self.late_hist {
            // a 100 µs bucket holds lateness in [start, start + 100) µs
            if let Some(b) = LATE_BOUNDS_US
                .iter()
                .position(|&bound| start + 100 <= bound)
            {
                out[b] += n;
            }
        }
        out
    }
}

/// RTP packets counted by a worker: its live legs' counts plus those of the legs
/// it has closed, so that what it reports only ever grows (Prometheus counters).
#[derive(Debug, Clone, Copy, Default)]
struct RtpTotals {
    received: u64,
    lost: i64,
    strays: u64,
}

impl RtpTotals {
    fn of(leg: &LegMedia) -> RtpTotals {
        RtpTotals {
            received: leg.stats.received,
            lost: if leg.stats.received > 0 {
                leg.stats.cumulative_lost().max(0)
            } else {
                0
            },
            strays: leg.strays,
        }
    }

    fn add(&mut self, o: RtpTotals) {
        self.received += o.received;
        self.lost += o.lost;
        self.strays += o.strays;
    }
}

/// How long after an offer/answer a leg's RTP source may be learned.
const LEARN_WINDOW: Duration = Duration::from_secs(30);
/// Empty reads of an RTP socket after which it is read less often.
const QUIET_POLLS: u16 = 3;
/// A quiet RTP socket is read every this many ticks (so a talker coming back
/// from silence waits at most 60 ms more).
const QUIET_EVERY: u64 = 4;
/// The RTCP socket is read every this many ticks (0.5 s).
const RTCP_EVERY: u64 = 25;

/// Consecutive packets a source other than the SDP's must send to be learned.
const PROBATION: u8 = 3;

/// How long a leg may send no RTP before it is reported dead (zero: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpTimeouts {
    /// while the call is sendrecv
    pub active: Duration,
    /// while it is on hold (sendonly, recvonly, inactive)
    pub hold: Duration,
}

impl Default for RtpTimeouts {
    fn default() -> Self {
        RtpTimeouts {
            active: Duration::from_secs(60),
            hold: Duration::from_secs(3600),
        }
    }
}

/// Upper bounds of [`TickStats::late_buckets`], in µs.
pub const LATE_BOUNDS_US: [u32; 7] = [500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

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

enum Command {
    Add(String, Box<LegMedia>),
    Join(LegId),
    Hold(LegId, Sound),
    Mute(LegId, bool),
    Deaf(LegId, bool),
    Play(LegId, Vec<Prompt>),
    PlaySound(LegId, Sound),
    Record(String, RecordSink),
    StopRecording(String, String),
    Interrupt(LegId),
    Update(LegId, MediaParams),
    Remove(LegId),
    // the room now spans workers (None: no longer)
    Bus(String, Option<Arc<RoomBus>>),
    Stop,
}

/// The bytes of a [`LegMedia`] a tick touches: the fields before `id`.
const HOT_BYTES: usize = std::mem::offset_of!(LegMedia, id);
// Ten cache lines at most: a big field among the hot ones fails the build here.
const _: () = assert!(HOT_BYTES <= 640);

/// One leg's media state. `#[repr(C)]` with the fields every tick touches first
/// (in the order a tick touches them), so that a leg costs a few consecutive cache
/// lines, which `RoomMedia::tick` prefetches a leg ahead; at thousands of legs
/// nothing of a leg is still in cache from its last tick, and a field order left
/// to the compiler scattered them over fourteen lines.
#[repr(C)]
struct LegMedia {
    // --- read, every tick
    rtp: UdpSocket,
    // consecutive polls of the RTP socket that found nothing
    quiet: u16,
    latched: bool,
    timed_out: bool,
    has_audio: bool,
    // this tick's frame came from exactly one received packet, still in the jitter
    // buffer (`last_payload`), so that it can be forwarded without transcoding
    raw_ok: bool,
    // the previous frame for concealment is in `frame` (the fast path), not `last`
    last_in_frame: bool,
    // out of the mix: hears its prompts (or silence), is heard by no one
    isolated: bool,
    // heard by no one, hears the room
    muted: bool,
    // hears nothing of the room (its own prompts still), is heard
    deaf: bool,
    seq: u16,
    ts: u32,
    sent_packets: u32,
    sent_octets: u32,
    lost_run: u32,
    params: MediaParams,
    remote: Option<SocketAddr>,
    started: Instant,
    // the last well-formed RTP from the peer, for the RTP timeout
    last_rtp: Instant,
    next_rtcp: Instant,
    // Some(its energy) while this tick's frame is still the jitter buffer's last
    // payload, not yet decoded into `frame` (see `settle`)
    deferred: Option<u64>,
    // decoded samples at the codec rate waiting to be played
    fifo_len: usize,
    vad: TalkDetector,
    stats: ReceiverStats,
    jb: JitterBuffer,
    decoder: Decoder,
    inband: Option<InbandDetector>,
    prompts: std::collections::VecDeque<Sound>,
    // playing: samples, position in 8 kHz samples, and whether it is the music
    playing: Option<(Sound, usize, bool)>,
    // loop music on hold whenever no prompt is queued
    moh: Option<Sound>,
    frame: Vec<i16>, // this tick's input at the room rate
    // --- the rest: talkers, losses, signalling
    id: LegId,
    rtcp: UdpSocket,
    encoder: Encoder,
    fifo: Vec<i16>,
    last: Vec<i16>,
    up: Upsampler,
    down: Downsampler,
    dtmf_events: EventTracker,
    // strict source learning: when the last offer/answer was, and the source on
    // probation with its last sequence number and packets in a row
    learn_since: Instant,
    candidate: Option<(SocketAddr, u16, u8)>,
    // packets from sources that were not learned
    strays: u64,
}

impl LegMedia {
    fn new(
        id: LegId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        params: MediaParams,
        now: Instant,
    ) -> io::Result<LegMedia> {
        let codec_err = |e| io::Error::other(format!("codec: {e}"));
        Ok(LegMedia {
            id,
            rtp,
            rtcp,
            params,
            remote: params.remote,
            latched: false,
            jb: JitterBuffer::new(params.codec.clock_rate()),
            decoder: Decoder::new(params.codec).map_err(codec_err)?,
            encoder: Encoder::new(params.codec).map_err(codec_err)?,
            fifo: vec![0; FIFO],
            fifo_len: 0,
            last: vec![0; MAX_FRAME],
            lost_run: 0,
            frame: vec![0; MAX_FRAME],
            has_audio: false,
            raw_ok: false,
            last_in_frame: false,
            deferred: None,
            vad: TalkDetector::default(),
            isolated: false,
            prompts: std::collections::VecDeque::with_capacity(4),
            playing: None,
            moh: None,
            muted: false,
            deaf: false,
            inband: inband_for(&params),
            up: Upsampler::default(),
            down: Downsampler::default(),
            seq: (params.ssrc >> 8) as u16,
            ts: params.ssrc.rotate_left(7),
            sent_packets: 0,
            sent_octets: 0,
            stats: ReceiverStats::default(),
            dtmf_events: EventTracker::default(),
            next_rtcp: now + RTCP_INTERVAL,
            started: now,
            last_rtp: now,
            timed_out: false,
            learn_since: now,
            candidate: None,
            strays: 0,
            quiet: 0,
        })
    }

    fn update(&mut self, p: MediaParams) -> io::Result<()> {
        self.settle();
        if p.codec != self.params.codec {
            let codec_err = |e| io::Error::other(format!("codec: {e}"));
            self.decoder = Decoder::new(p.codec).map_err(codec_err)?;
            self.encoder = Encoder::new(p.codec).map_err(codec_err)?;
            self.jb = JitterBuffer::new(p.codec.clock_rate());
            self.fifo_len = 0;
        }
        if p.remote != self.params.remote {
            // a new offer/answer may move the peer: learn its source again
            self.remote = p.remote;
            if self.latched {
                let _ = rustix::net::connect_unspec(&self.rtp);
            }
            self.latched = false;
        }
        if inband_for(&p).is_some() != self.inband.is_some() {
            self.inband = inband_for(&p);
        }
        // a new offer/answer (hold, resume, move) starts the timeout afresh, and
        // opens a new learning window
        self.last_rtp = Instant::now();
        self.timed_out = false;
        self.learn_since = Instant::now();
        self.candidate = None;
        self.params = p;
        Ok(())
    }

    fn contributes(&self) -> bool {
        self.params.peer_direction == Direction::SendRecv && !self.isolated && !self.muted
    }

    /// Add the current prompt's next frame into `out` (room rate); moves to the next
    /// queued prompt at the end of one, and loops the music on hold when nothing is
    /// queued. Returns true when the last queued prompt has just ended.
    fn mix_prompt(&mut self, out: &mut [i16]) -> bool {
        if self.playing.is_none() {
            match self.prompts.pop_front() {
                Some(p) => self.playing = Some((p, 0, false)),
                None => match &self.moh {
                    Some(music) => self.playing = Some((music.clone(), 0, true)),
                    None => return false,
                },
            }
        }
        let Some((sound, pos, music)) = &mut self.playing else {
            return false;
        };
        let wide = out.len() != 160;
        let (src, start) = if wide {
            (&sound.wide, *pos * 6)
        } else {
            (&sound.narrow, *pos)
        };
        let end = (start + out.len()).min(src.len());
        for (o, &v) in out.iter_mut().zip(&src[start.min(end)..end]) {
            *o = o.saturating_add(v);
        }
        *pos += 160;
        if *pos >= sound.narrow.len() {
            // the queue has played out when its last prompt ends; music on hold
            // looping underneath does not hold that back
            let prompt_ended = !*music;
            self.playing = None;
            return prompt_ended && self.prompts.is_empty();
        }
        false
    }

    /// Strict source learning (against RTP injection, AST-2017-005): the address
    /// the SDP named is taken at once, whenever it starts; any other only within
    /// [`LEARN_WINDOW`] of an offer/answer and after [`PROBATION`] packets in a row
    /// with consecutive sequence numbers. True when `src` is learned now.
    fn learn(&mut self, now: Instant, src: SocketAddr, seq: u16) -> bool {
        // the negotiated address is always good (a phone with silence suppression
        // may start sending long after the answer)
        if self.params.remote == Some(src) {
            return true;
        }
        if now.saturating_duration_since(self.learn_since) > LEARN_WINDOW {
            self.strays += 1;
            return false;
        }
        let run = match self.candidate {
            Some((c, last, n)) if c == src && seq == last.wrapping_add(1) => n + 1,
            _ => 1,
        };
        self.candidate = Some((src, seq, run));
        if run >= PROBATION {
            return true;
        }
        self.strays += 1;
        false
    }

    /// Read up to `max` packets from the RTP socket, stopping when it is empty;
    /// returns how many datagrams came (well-formed or not).
    fn receive_rtp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        events: &mpsc::Sender<(LegId, MediaEvent)>,
        max: usize,
    ) -> usize {
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let mut datagrams = 0;
        for _ in 0..max {
            // a connected socket takes only the learned source: no address to ask
            // for. rustix makes the system call itself: libc's recv is a thread
            // cancellation point, two atomic operations around every call.
            let read = match (self.latched, self.remote) {
                (true, Some(remote)) => rustix::net::recv(&self.rtp, &mut *buf, RecvFlags::empty())
                    .map(|(n, _)| (n, remote))
                    .map_err(io::Error::from),
                _ => self.rtp.recv_from(buf),
            };
            let Ok((n, src)) = read else {
                break;
            };
            datagrams += 1;
            let Ok(pkt) = RtpPacket::parse(&buf[..n]) else {
                continue;
            };
            if !self.latched {
                if !self.learn(now, src, pkt.seq) {
                    continue;
                }
                // Symmetric RTP (RFC 4961): answer where the peer really sends from.
                // Connecting the socket makes the kernel drop every other source
                // from now on and caches the route for our sends.
                self.remote = Some(src);
                self.latched = self.rtp.connect(src).is_ok();
            } else if self.remote != Some(src) {
                self.strays += 1;
                continue;
            }
            // only well-formed RTP from the peer proves it alive
            self.last_rtp = now;
            if Some(pkt.pt) == self.params.dtmf_pt {
                if let Some(digit) = TelephoneEvent::parse(pkt.payload)
                    .and_then(|ev| self.dtmf_events.on_packet(pkt.timestamp, &ev))
                {
                    let _ = events.send((
                        self.id,
                        MediaEvent::Dtmf {
                            leg: self.id,
                            digit,
                        },
                    ));
                }
                continue;
            }
            if pkt.pt != self.params.pt {
                continue;
            }
            if self.stats.received > 0 && pkt.ssrc != self.stats.ssrc {
                // a new source (re-INVITE, failover): its sequence starts anew
                self.settle();
                self.jb.reset();
            }
            let arrival = (now_ms * u64::from(self.params.codec.clock_rate()) / 1000) as u32;
            self.stats
                .on_packet(pkt.seq, pkt.timestamp, pkt.ssrc, arrival);
            // decoded even when not mixed (isolated during PIN entry): in-band
            // DTMF is read from it
            if self.params.peer_direction.peer_sends() {
                if self.deferred.is_some() && self.jb.would_overwrite_last(pkt.seq) {
                    self.settle();
                }
                self.jb.insert(pkt.seq, pkt.timestamp, pkt.payload, now_ms);
            }
        }
        datagrams
    }

    /// Read what arrived since the last tick; `phase` staggers the slow reads of
    /// a room's legs over ticks.
    ///
    /// The sockets are read directly, without a readiness API: a phone sends every
    /// 20 ms, so nearly every read finds a packet, and a socket watched by epoll (or
    /// io_uring poll) makes each of our sends walk its wait queue when the buffer is
    /// freed, and each arrival run the epoll callback; measured, epoll cost more
    /// than the empty reads it saved. A socket that was empty [`QUIET_POLLS`] times
    /// in a row (hold, silence suppression) is read only every [`QUIET_EVERY`] ticks,
    /// so idle legs cost little; RTCP, a packet every few seconds, is read every
    /// [`RTCP_EVERY`] ticks.
    fn poll(
        &mut self,
        now: Instant,
        phase: u64,
        buf: &mut [u8],
        events: &mpsc::Sender<(LegId, MediaEvent)>,
    ) {
        if phase.is_multiple_of(RTCP_EVERY) {
            self.receive_rtcp(now, buf);
        }
        if self.quiet >= QUIET_POLLS && !phase.is_multiple_of(QUIET_EVERY) {
            return;
        }
        // one packet per 20 ms is what a 20 ms peer sends; shorter ptimes are read
        // until empty, a leg coming back from quiet reads what queued, and once a
        // second every socket is drained so that clock drift cannot build a queue
        let drain = self.params.ptime_ms < 20 || self.quiet > 0 || phase.is_multiple_of(50);
        let got = self.receive_rtp(now, buf, events, if drain { 64 } else { 1 });
        self.quiet = if got == 0 {
            self.quiet.saturating_add(1)
        } else {
            0
        };
    }

    /// Drain the RTCP socket.
    fn receive_rtcp(&mut self, now: Instant, buf: &mut [u8]) {
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        while let Ok((n, _)) = self.rtcp.recv_from(buf) {
            if let Some(mid) = rtp::sender_report_ntp_mid(&buf[..n]) {
                self.stats.on_sender_report(mid, now_ms);
            }
        }
    }

    /// Decode this tick's frame into `frame` if `play_out` left it in the jitter
    /// buffer. Whatever reads `frame` (the mix, a recording, concealment) settles
    /// the leg first.
    fn settle(&mut self) {
        if self.deferred.take().is_some() {
            let need = (self.params.codec.clock_rate() / 50) as usize;
            let k = self
                .decoder
                .decode(self.jb.last_payload(), &mut self.frame[..need]);
            // an unusable payload is silence, not the frame before
            self.frame[k.min(need)..need].fill(0);
        }
    }

    /// Produce this tick's frame at `room_rate` into `self.frame` (or leave it
    /// `deferred`).
    fn play_out(&mut self, room_rate: u32) -> Option<char> {
        let need = (self.params.codec.clock_rate() / 50) as usize;
        let same_rate = self.params.codec.clock_rate() == room_rate;
        if self.fifo_len == 0
            && same_rate
            && self
                .jb
                .peek()
                .is_some_and(|p| self.decoder.samples(p) == Some(need))
        {
            if self.inband.is_none() {
                // The common case, a packet holding exactly this tick's frame,
                // and no in-band DTMF to look for: not decoded at all unless the
                // leg is mixed or recorded, when its energy can be had without
                // (G.711: from the codes; Opus: a packet the encoder flagged as
                // no speech). Most legs are listeners, whose talker detection
                // needs only that; the payload stays in the jitter buffer.
                if self.deferred.take().is_some() {
                    // the last frame was never needed: the decoder did not see it
                    self.decoder.skip();
                }
                if let Pull::Packet(payload, _) = self.jb.pull() {
                    self.deferred = self.decoder.energy(payload, self.vad.active());
                    if self.deferred.is_none() {
                        let k = self.decoder.decode(payload, &mut self.frame[..need]);
                        self.frame[k.min(need)..need].fill(0);
                    }
                }
                self.lost_run = 0;
                self.has_audio = true;
                self.raw_ok = true;
                self.last_in_frame = true;
                return None;
            }
            // The same with in-band DTMF detection, which needs the samples:
            // decoded straight into `frame`, which also serves as the previous
            // frame for concealment, with no copies through the FIFO.
            if let Pull::Packet(payload, _) = self.jb.pull() {
                self.decoder.decode(payload, &mut self.frame[..need]);
            }
            self.lost_run = 0;
            self.has_audio = true;
            self.raw_ok = true;
            self.last_in_frame = true;
            let digit = self
                .inband
                .as_mut()
                .and_then(|det| det.feed(&self.frame[..need]));
            if self
                .inband
                .as_ref()
                .is_some_and(InbandDetector::tone_present)
            {
                // a key press, not speech: the room does not hear it
                self.frame[..need].fill(0);
            }
            return digit;
        }
        // concealment and `last` may need the previous frame
        self.settle();
        let mut real = false;
        let mut pulls = 0;
        let mut whole_packet = false;
        while self.fifo_len < need {
            pulls += 1;
            let room = FIFO - self.fifo_len;
            let dst = &mut self.fifo[self.fifo_len..];
            let n = match self.jb.pull() {
                Pull::Packet(payload, _) => {
                    let fifo_was_empty = room == FIFO;
                    let n = self
                        .decoder
                        .decode(payload, &mut dst[..room.min(3 * MAX_FRAME)]);
                    self.lost_run = 0;
                    real |= n > 0;
                    whole_packet = fifo_was_empty && n == need;
                    n
                }
                Pull::Lost => {
                    self.lost_run += 1;
                    let n = need.min(room);
                    let last = if self.last_in_frame {
                        &self.frame[..need]
                    } else {
                        &self.last[..need]
                    };
                    self.decoder.conceal(&mut dst[..n], last, self.lost_run);
                    real = true;
                    n
                }
                Pull::Empty => break,
            };
            self.fifo_len += n;
        }
        let have = self.fifo_len.min(need);
        self.has_audio = real || have > 0;
        self.raw_ok = whole_packet && pulls == 1;
        let out_len = (room_rate / 50) as usize;
        if have == 0 {
            // `last` keeps the last real frame for concealment
            if self.last_in_frame {
                self.last[..need].copy_from_slice(&self.frame[..need]);
                self.last_in_frame = false;
            }
            if same_rate {
                self.frame[..out_len].fill(0);
            } else {
                self.up
                    .process(&SILENCE[..need], &mut self.frame[..out_len]);
            }
            return None;
        }
        // this tick's frame at the codec rate goes to `last`, where concealment
        // finds it next time
        self.last_in_frame = false;
        let native = &mut self.last[..need];
        native[..have].copy_from_slice(&self.fifo[..have]);
        native[have..].fill(0);
        self.fifo.copy_within(have..self.fifo_len, 0);
        self.fifo_len -= have;
        let digit = match &mut self.inband {
            Some(det) if have == need => det.feed(native),
            _ => None,
        };
        if self
            .inband
            .as_ref()
            .is_some_and(InbandDetector::tone_present)
        {
            // a key press, not speech: the room does not hear it
            self.frame[..out_len].fill(0);
        } else if same_rate {
            self.frame[..out_len].copy_from_slice(native);
        } else {
            // narrowband leg in a wideband room
            self.up.process(native, &mut self.frame[..out_len]);
        }
        digit
    }

    fn send(&mut self, payload: &[u8], pkt: &mut [u8]) {
        let Some(to) = self.remote else { return };
        if !self.params.peer_direction.peer_receives() {
            return;
        }
        let first = self.sent_packets == 0;
        rtp::write_header(
            pkt,
            self.params.pt,
            first,
            self.seq,
            self.ts,
            self.params.ssrc,
        );
        pkt[12..12 + payload.len()].copy_from_slice(payload);
        let _ = if self.latched {
            // not std's send: see `receive_rtp`
            rustix::net::send(&self.rtp, &pkt[..12 + payload.len()], SendFlags::empty())
                .map_err(io::Error::from)
        } else {
            self.rtp.send_to(&pkt[..12 + payload.len()], to)
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.params.codec.clock_rate() / 50);
        self.sent_packets = self.sent_packets.wrapping_add(1);
        self.sent_octets = self.sent_octets.wrapping_add(payload.len() as u32);
    }

    fn maybe_rtcp(&mut self, now: Instant) {
        if now < self.next_rtcp {
            return;
        }
        self.next_rtcp = now + RTCP_INTERVAL;
        let Some(remote) = self.remote else { return };
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let ntp = ntp_now();
        let sender =
            (self.sent_packets > 0).then_some((ntp, self.ts, self.sent_packets, self.sent_octets));
        let mut out = [0u8; 128];
        let n = rtp::write_report(
            &mut out,
            self.params.ssrc,
            sender,
            Some(&mut self.stats),
            now_ms,
        );
        let to = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
        let _ = self.rtcp.send_to(&out[..n], to);
    }
}

fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    (secs << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// The full-mix stream that every non-talker with one codec shares: one encoder,
/// one resampler, one payload per tick.
struct SharedMix {
    codec: CodecKind,
    encoder: Encoder,
    down: Downsampler,
    // this tick's encoded payload is `Scratch::shared[index][..len]`
    len: usize,
    fresh: bool,
}

/// Buffers a room's tick uses and leaves nothing in: one set per worker, handed
/// to every room's tick in turn, so that they stay in cache from room to room
/// (a set per room meant some twenty-five cold cache lines per room per tick:
/// in rooms of five, five per leg).
pub struct Scratch {
    // one datagram as read
    buf: Vec<u8>,
    acc: Vec<i32>,
    mix: Vec<i16>,
    native: Vec<i16>,
    payload: Vec<u8>,
    pkt: Vec<u8>,
    // the lone talker's packet of this tick, forwarded to same-codec listeners
    forward: Vec<u8>,
    rec_frame: Frame,
    // the room's shared encodes of this tick, by `RoomMedia::shared` index
    shared: Vec<Vec<u8>>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buf: vec![0; 2048],
            acc: vec![0; MAX_FRAME],
            mix: vec![0; MAX_FRAME],
            native: vec![0; MAX_FRAME],
            payload: vec![0; 1500],
            pkt: vec![0; 1500],
            forward: Vec::with_capacity(1500),
            rec_frame: [0; record::FRAME],
            shared: Vec::new(),
        }
    }
}

/// One room's media on one worker (the whole room, or its shard there): its legs
/// and the mixer state. Owned by that worker thread; public so benchmarks can drive
/// a tick.
pub struct RoomMedia {
    legs: Vec<LegMedia>,
    ticks: u64,
    max_talkers: usize,
    shared: Vec<SharedMix>,
    // recordings of this room's mix or of its legs' own audio
    records: Vec<RecordSink>,
    /// when silent legs are reported dead
    pub timeouts: RtpTimeouts,
    // the local talkers mixed in the last tick (indices, loudest first), their
    // levels, and how many
    mixed: ([usize; MAX_TALKERS], [u64; MAX_TALKERS], usize),
    // legs read and sent together (see `tick`)
    block: usize,
    // when the room spans workers: its bus and this worker's shard index, and
    // the other shards' talkers of this tick
    bus: Option<(Arc<RoomBus>, usize)>,
    remote: Option<Box<Remote>>,
    // legs on Opus: any makes the room mix at 48 kHz (counted, so that a tick
    // need not visit every leg to learn its rate)
    opus_legs: usize,
}

impl RoomMedia {
    /// An empty room mixing at most `max_talkers` talkers.
    pub fn new(max_talkers: usize) -> RoomMedia {
        RoomMedia {
            legs: Vec::new(),
            ticks: 0,
            max_talkers: max_talkers.clamp(1, MAX_TALKERS),
            shared: Vec::new(),
            records: Vec::new(),
            timeouts: RtpTimeouts::default(),
            mixed: ([0; MAX_TALKERS], [0; MAX_TALKERS], 0),
            block: BLOCK,
            bus: None,
            remote: None,
            opus_legs: 0,
        }
    }

    /// Add a leg that owns these (non-blocking) sockets.
    pub fn add_leg(
        &mut self,
        id: LegId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        params: MediaParams,
        now: Instant,
    ) -> io::Result<()> {
        self.add(LegMedia::new(id, rtp, rtcp, params, now)?);
        Ok(())
    }

    /// Legs held.
    pub fn len(&self) -> usize {
        self.legs.len()
    }

    /// True when the room has no legs.
    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    fn add(&mut self, leg: LegMedia) {
        self.opus_legs += usize::from(leg.params.codec == CodecKind::Opus);
        self.legs.push(leg);
    }

    /// Remove a leg; its sockets close when it drops.
    /// Take leg `id` out; returns its RTP counts, for the worker's totals.
    fn remove(&mut self, id: LegId) -> Option<RtpTotals> {
        let pos = self.legs.iter().position(|l| l.id == id)?;
        let leg = self.legs.swap_remove(pos);
        // the last tick's talkers are indices: another leg may hold one now
        self.mixed.2 = 0;
        self.opus_legs -= usize::from(leg.params.codec == CodecKind::Opus);
        Some(RtpTotals::of(&leg))
    }

    /// New parameters (re-INVITE, UPDATE) for leg `id`, if the room holds it.
    fn update(&mut self, id: LegId, params: MediaParams) -> Option<io::Result<()>> {
        let leg = self.legs.iter_mut().find(|l| l.id == id)?;
        let was_opus = leg.params.codec == CodecKind::Opus;
        let result = leg.update(params);
        let is_opus = leg.params.codec == CodecKind::Opus;
        self.opus_legs = self.opus_legs + usize::from(is_opus) - usize::from(was_opus);
        Some(result)
    }

    /// Hand this tick's audio to the recordings: the room mix (what a listener who
    /// is not talking hears) or a leg's own decoded input, at 8 kHz.
    fn record(&mut self, n: usize, scratch: &mut Scratch) {
        let mut i = 0;
        while i < self.records.len() {
            let sink = &mut self.records[i];
            let src: &[i16] = match sink.leg {
                None => {
                    mixer::mix_minus(&scratch.acc[..n], None, &mut scratch.mix[..n]);
                    &scratch.mix[..n]
                }
                Some(id) => match self.legs.iter_mut().find(|l| l.id == id) {
                    Some(l) if l.has_audio && !l.muted => {
                        l.settle();
                        &l.frame[..n]
                    }
                    _ => {
                        scratch.mix[..n].fill(0);
                        &scratch.mix[..n]
                    }
                },
            };
            if n == record::FRAME {
                scratch.rec_frame.copy_from_slice(src);
            } else {
                sink.down.process(src, &mut scratch.rec_frame);
            }
            if sink.push(&scratch.rec_frame) {
                i += 1;
            } else {
                // the writer stopped on an error and has reported it
                self.records.swap_remove(i);
            }
        }
    }

    fn rate(&self) -> u32 {
        if self.opus_legs > 0 { 48000 } else { 8000 }
    }

    /// One 20 ms tick: receive, decode, detect talkers, mix, encode, send.
    ///
    /// A G.711 room of more than `BLOCK` (256) legs goes in blocks, each read and then
    /// sent before the next is read, so that a leg's socket is still in cache when
    /// its send follows its read (at 1,500 legs in one pass it was not, which cost
    /// ~0.4 µs per leg in the kernel). A block mixes the loudest talkers among the
    /// legs read so far this tick, the previous tick's talkers in blocks not read
    /// yet (their last frame, so they reach listeners of earlier blocks 20 ms late,
    /// as audio from another shard does), and the other shards'. An Opus room goes
    /// in one block: its shared encoders and resamplers carry state from one frame
    /// to the next and must run once per tick.
    pub fn tick(
        &mut self,
        now: Instant,
        scratch: &mut Scratch,
        events: &mpsc::Sender<(LegId, MediaEvent)>,
    ) {
        let rate = self.rate();
        let n = (rate / 50) as usize;
        let ticks = self.ticks;
        self.ticks += 1;
        let block = if rate == 8000 {
            self.block.max(1)
        } else {
            usize::MAX
        };
        let remote_count = match (&self.bus, &mut self.remote) {
            (Some((bus, shard)), remote) => {
                let remote = remote.get_or_insert_with(Box::default);
                bus.collect(*shard, now, rate, remote);
                remote.count
            }
            (None, _) => 0,
        };
        let (prev, prev_levels, prev_count) = self.mixed;
        // the loudest local talkers among the legs read so far, loudest first
        let mut sel = [0usize; MAX_TALKERS];
        let mut levels = [0u64; MAX_TALKERS];
        let mut talkers = 0;
        let len = self.legs.len();
        let mut lo = 0;
        while lo < len {
            let hi = lo.saturating_add(block).min(len);
            talkers = self.read(
                lo..hi,
                now,
                ticks,
                rate,
                scratch,
                events,
                (&mut sel, &mut levels, talkers),
            );
            let (mut bsel, mut blevels, mut count) = (sel, levels, talkers);
            for k in 0..prev_count {
                if (hi..len).contains(&prev[k]) {
                    count = rank(
                        &mut bsel,
                        &mut blevels,
                        count,
                        self.max_talkers,
                        prev[k],
                        prev_levels[k],
                    );
                }
            }
            count = self.rank_remote(&mut bsel, &mut blevels, count, remote_count);
            self.send(lo..hi, now, n, scratch, events, &bsel[..count]);
            lo = hi;
        }
        for &i in &sel[..talkers] {
            self.legs[i].settle();
        }
        self.mixed = (sel, levels, talkers);
        if let Some((bus, shard)) = &self.bus {
            let legs = &self.legs;
            bus.publish(
                *shard,
                now,
                rate,
                sel[..talkers]
                    .iter()
                    .zip(levels)
                    .map(|(&i, level)| (level, &legs[i].frame[..n])),
            );
        }
        if !self.records.is_empty() {
            // the room as a listener hears it at the end of the tick
            let (mut all, mut all_levels) = (sel, levels);
            let count = self.rank_remote(&mut all, &mut all_levels, talkers, remote_count);
            self.accumulate(&all[..count], n, &mut scratch.acc);
            self.record(n, scratch);
        }
    }

    /// Rank the other shards' first `remote_count` talkers of this tick into
    /// `sel`/`levels`, which hold `count`; returns how many they hold now.
    fn rank_remote(
        &self,
        sel: &mut [usize; MAX_TALKERS],
        levels: &mut [u64; MAX_TALKERS],
        mut count: usize,
        remote_count: usize,
    ) -> usize {
        if let Some(remote) = &self.remote {
            for r in 0..remote_count {
                count = rank(
                    sel,
                    levels,
                    count,
                    self.max_talkers,
                    REMOTE + r,
                    remote.levels[r],
                );
            }
        }
        count
    }

    /// Sum the frames of `talkers` (local indices, or `REMOTE + r`) into `acc`.
    fn accumulate(&self, talkers: &[usize], n: usize, acc: &mut [i32]) {
        acc[..n].fill(0);
        for &i in talkers {
            let frame = match (i.checked_sub(REMOTE), &self.remote) {
                (None, _) => &self.legs[i].frame[..n],
                (Some(r), Some(remote)) => &remote.frames[r][..n],
                (Some(_), None) => continue,
            };
            mixer::accumulate(&mut acc[..n], frame);
        }
    }

    /// Read the legs `range`, one pass per leg while it is hot in cache: read,
    /// play out, detect talking, rank among the loudest talkers `ranking` holds
    /// (returns how many it holds now).
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        range: std::ops::Range<usize>,
        now: Instant,
        ticks: u64,
        rate: u32,
        scratch: &mut Scratch,
        events: &mpsc::Sender<(LegId, MediaEvent)>,
        ranking: (&mut [usize; MAX_TALKERS], &mut [u64; MAX_TALKERS], usize),
    ) -> usize {
        let (sel, levels, mut talkers) = ranking;
        let n = (rate / 50) as usize;
        for leg in self.legs[range.clone()].iter().take(2) {
            prefetch::lines(leg, HOT_BYTES);
        }
        for i in range.clone() {
            // a leg's lines are asked for two legs ahead, and what its jitter buffer
            // will touch one leg ahead (found from those lines, which came by then)
            if let Some(after) = self.legs[..range.end].get(i + 2) {
                prefetch::lines(after, HOT_BYTES);
            }
            if let Some(next) = self.legs[..range.end].get(i + 1) {
                next.jb.prefetch();
            }
            let leg = &mut self.legs[i];
            leg.poll(now, ticks.wrapping_add(i as u64), &mut scratch.buf, events);
            // any hold (sendonly, recvonly, inactive) gets the long timeout: a
            // holding phone may send nothing at all
            let limit = if leg.params.peer_direction == Direction::SendRecv {
                self.timeouts.active
            } else {
                self.timeouts.hold
            };
            if !leg.timed_out
                && !limit.is_zero()
                && now.saturating_duration_since(leg.last_rtp) > limit
            {
                leg.timed_out = true;
                let _ = events.send((leg.id, MediaEvent::RtpTimeout { leg: leg.id }));
            }
            if let Some(digit) = leg.play_out(rate) {
                let _ = events.send((leg.id, MediaEvent::Dtmf { leg: leg.id, digit }));
            }
            let e = if leg.has_audio && leg.contributes() {
                leg.deferred.unwrap_or_else(|| vad::energy(&leg.frame[..n]))
            } else {
                0
            };
            if let Some(talking) = leg.vad.update(e) {
                let _ = events.send((
                    leg.id,
                    MediaEvent::Talking {
                        leg: leg.id,
                        talking,
                    },
                ));
            }
            if leg.has_audio && leg.contributes() && leg.vad.talking() {
                talkers = rank(sel, levels, talkers, self.max_talkers, i, leg.vad.level);
            }
        }
        talkers
    }

    /// Mix `talkers` (loudest first: local indices, or `REMOTE + r`), encode and
    /// send to the legs `range`.
    fn send(
        &mut self,
        range: std::ops::Range<usize>,
        now: Instant,
        n: usize,
        scratch: &mut Scratch,
        events: &mpsc::Sender<(LegId, MediaEvent)>,
        talkers: &[usize],
    ) {
        for &i in talkers {
            if let Some(leg) = self.legs.get_mut(i) {
                leg.settle();
            }
        }
        self.accumulate(talkers, n, &mut scratch.acc);
        let Scratch {
            acc,
            mix,
            native,
            payload,
            pkt,
            forward,
            shared: shared_payloads,
            ..
        } = scratch;
        let acc = &acc[..n];
        for s in &mut self.shared {
            s.fresh = false;
        }
        // One talker whose packet arrived whole this tick: listeners on its codec
        // get that packet as it is, no decode-mix-encode (the mix would be that
        // frame anyway).
        let forward_codec = match talkers {
            [t] if *t < range.end && self.legs[*t].raw_ok => {
                let t = &self.legs[*t];
                forward.clear();
                forward.extend_from_slice(t.jb.last_payload());
                Some(t.params.codec)
            }
            _ => None,
        };
        for leg in self.legs[range.clone()].iter().take(2) {
            prefetch::lines(leg, HOT_BYTES);
        }
        for i in range.clone() {
            if let Some(after) = self.legs[..range.end].get(i + 2) {
                prefetch::lines(after, HOT_BYTES);
            }
            let leg = &mut self.legs[i];
            let codec = leg.params.codec;
            let native_n = (codec.clock_rate() / 50) as usize;
            let talker = talkers.contains(&i);
            let prompting = leg.playing.is_some() || !leg.prompts.is_empty() || leg.moh.is_some();
            if talker || leg.isolated || leg.deaf || prompting {
                // its own encode: a talker hears everyone else; an isolated or deaf
                // leg hears nothing of the room; a prompt is heard by its leg only
                let mix = &mut mix[..n];
                match (leg.isolated || leg.deaf, talker) {
                    (true, _) => mix.fill(0),
                    (false, true) => mixer::mix_minus(acc, Some(&leg.frame[..n]), mix),
                    (false, false) => mixer::mix_minus(acc, None, mix),
                }
                if prompting && leg.mix_prompt(mix) {
                    let _ = events.send((leg.id, MediaEvent::PromptDone { leg: leg.id }));
                }
                let pcm = to_native(mix, &mut native[..native_n], &mut leg.down);
                let len = leg.encoder.encode(pcm, payload);
                leg.send(&payload[..len], pkt);
            } else if forward_codec == Some(codec) {
                leg.send(forward, pkt);
            } else {
                let idx = match self.shared.iter().position(|s| s.codec == codec) {
                    Some(i) => i,
                    None => match Encoder::new(codec) {
                        Ok(encoder) => {
                            self.shared.push(SharedMix {
                                codec,
                                encoder,
                                down: Downsampler::default(),
                                len: 0,
                                fresh: false,
                            });
                            self.shared.len() - 1
                        }
                        Err(_) => continue,
                    },
                };
                if shared_payloads.len() <= idx {
                    // a worker's first room with this many codecs: grown once
                    shared_payloads.resize_with(idx + 1, || vec![0; 1500]);
                }
                let s = &mut self.shared[idx];
                let out = &mut shared_payloads[idx];
                if !s.fresh {
                    // encoded once per codec per tick, however many listeners
                    mixer::mix_minus(acc, None, &mut mix[..n]);
                    let pcm = to_native(&mix[..n], &mut native[..native_n], &mut s.down);
                    s.len = s.encoder.encode(pcm, out);
                    s.fresh = true;
                }
                leg.send(&out[..s.len], pkt);
            }
            leg.maybe_rtcp(now);
        }
    }
}
/// Insert leg `idx` talking at `level` into the loudest-first `sel`/`levels`
/// holding `count` of at most `max`; returns the new count.
fn rank(
    sel: &mut [usize; MAX_TALKERS],
    levels: &mut [u64; MAX_TALKERS],
    count: usize,
    max: usize,
    idx: usize,
    level: u64,
) -> usize {
    let mut pos = count;
    while pos > 0 && levels[pos - 1] < level {
        pos -= 1;
    }
    if pos >= max {
        return count;
    }
    let end = count.min(max - 1);
    sel.copy_within(pos..end, pos + 1);
    levels.copy_within(pos..end, pos + 1);
    sel[pos] = idx;
    levels[pos] = level;
    (count + 1).min(max)
}

fn to_native<'a>(mix: &'a [i16], native: &'a mut [i16], down: &mut Downsampler) -> &'a [i16] {
    if mix.len() == native.len() {
        mix
    } else {
        down.process(mix, native);
        native
    }
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
fn realtime(index: usize, priority: u8) {
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
    fn new(n: usize, epoch: Instant) -> WorkerGauges {
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
    fn predicted(&self, w: usize, placed: usize) -> f64 {
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

#[allow(clippy::too_many_arguments)]
fn worker(
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
                    .records
                    .push(sink);
            }
            Some(Command::StopRecording(room, id)) => {
                if let Some(r) = rooms.get_mut(&room) {
                    r.records.retain(|s| s.id != id);
                    if r.legs.is_empty() && r.records.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            Some(Command::Update(id, params)) => {
                if let Some(Err(e)) = leg_room
                    .get(&id)
                    .and_then(|name| rooms.get_mut(name))
                    .and_then(|r| r.update(id, params))
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
            for room in rooms.values_mut() {
                room.tick(now, &mut scratch, &events);
            }
            let busy = now.elapsed();
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
    // sockets bound for legs not opened yet
    bound: HashMap<LegId, (UdpSocket, UdpSocket)>,
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
        let place = self.places.entry(room.to_owned()).or_insert_with(|| Place {
            legs: vec![0; n],
            bus: None,
        });
        let w = if place.legs[home] < self.shard_at {
            home
        } else {
            // least loaded overall, the home worker on a tie
            (0..n)
                .min_by_key(|&w| (self.worker_legs[w], w != home))
                .unwrap_or(home)
        };
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
        w
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

    /// Carry out a command from signalling.
    pub fn apply(&mut self, cmd: MediaCommand) -> io::Result<()> {
        match cmd {
            MediaCommand::Bind { leg, addr } => {
                let rtp = UdpSocket::bind(addr)?;
                let rtcp =
                    UdpSocket::bind(SocketAddr::new(addr.ip(), addr.port().wrapping_add(1)))?;
                rtp.set_nonblocking(true)?;
                rtcp.set_nonblocking(true)?;
                self.bound.insert(leg, (rtp, rtcp));
            }
            MediaCommand::Open {
                leg,
                room,
                params,
                isolated,
            } => {
                let (rtp, rtcp) = self.bound.remove(&leg).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the leg's RTP port is not bound")
                })?;
                let mut media = LegMedia::new(leg, rtp, rtcp, params, Instant::now())?;
                media.isolated = isolated;
                let w = self.place(leg, &room);
                let _ = self.workers[w].send(Command::Add(room, Box::new(media)));
            }
            MediaCommand::Update { leg, params } => {
                self.tell(leg, Command::Update(leg, params));
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
            } => {
                let sink = record::start(id, &room, leg, &path, self.events.clone())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711;

    /// A room whose legs send to peer sockets owned by the test.
    struct Rig {
        room: RoomMedia,
        peers: Vec<UdpSocket>,
        targets: Vec<SocketAddr>,
        tick: u32,
        start: Instant,
    }

    impl Rig {
        fn new(legs: usize, max_talkers: usize) -> Rig {
            let mut room = RoomMedia::new(max_talkers);
            let peers: Vec<UdpSocket> = (0..legs)
                .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
                .collect();
            for (i, peer) in peers.iter().enumerate() {
                peer.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
                rtp.set_nonblocking(true).unwrap();
                rtcp.set_nonblocking(true).unwrap();
                let params = MediaParams {
                    codec: CodecKind::Pcmu,
                    pt: 0,
                    dtmf_pt: None,
                    remote: Some(peer.local_addr().unwrap()),
                    peer_direction: Direction::SendRecv,
                    ssrc: 100 + i as u32,
                    ptime_ms: 20,
                };
                room.add_leg(LegId(i as u64), rtp, rtcp, params, Instant::now())
                    .unwrap();
            }
            let targets = room
                .legs
                .iter()
                .map(|l| l.rtp.local_addr().unwrap())
                .collect();
            Rig {
                room,
                peers,
                targets,
                tick: 0,
                start: Instant::now(),
            }
        }

        /// Run `ticks` ticks; before each, peer i sends `payload(i, t)`. Returns the
        /// last payload each peer received.
        fn run(&mut self, ticks: u32, payload: impl Fn(usize, u32) -> Vec<u8>) -> Vec<Vec<u8>> {
            let (tx, _rx) = mpsc::channel();
            let mut buf = vec![0u8; 2048];
            let mut scratch = Scratch::default();
            let mut pkt = [0u8; 172];
            let mut last = vec![Vec::new(); self.peers.len()];
            for _ in 0..ticks {
                let t = self.tick;
                for (i, target) in self.targets.iter().enumerate() {
                    rtp::write_header(&mut pkt, 0, false, t as u16, t * 160, 7 + i as u32);
                    pkt[12..].copy_from_slice(&payload(i, t));
                    self.peers[i].send_to(&pkt, target).unwrap();
                }
                std::thread::sleep(Duration::from_millis(2));
                self.room.tick(self.start + TICK * t, &mut scratch, &tx);
                for (i, p) in self.peers.iter().enumerate() {
                    let (n, _) = p.recv_from(&mut buf).unwrap();
                    last[i] = buf[12..n].to_vec();
                }
                self.tick += 1;
            }
            last
        }
    }

    /// 20 ms of a µ-law tone; use multiples of 50 Hz so a frame holds whole cycles.
    fn tone(freq: f64, amp: f64, t: u32) -> Vec<u8> {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * (t * 160 + i) as f64 / 8000.0).sin())
                    as i16
            })
            .collect();
        let mut out = vec![0u8; 160];
        g711::encode_ulaw(&pcm, &mut out);
        out
    }

    /// Amplitude of `f` in a µ-law frame.
    fn level(payload: &[u8], f: f64) -> f64 {
        let mut x = vec![0i16; payload.len()];
        g711::decode_ulaw(payload, &mut x);
        let (mut re, mut im) = (0.0, 0.0);
        for (k, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * f * k as f64 / 8000.0;
            re += f64::from(v) * ph.cos();
            im += f64::from(v) * ph.sin();
        }
        (re * re + im * im).sqrt() / x.len() as f64
    }

    /// Six legs, three talking at different levels, `max_talkers = 2`: the two
    /// loudest are mixed and each hears only the other; the four others (the quietest
    /// talker and three silent legs) all get the same payload, encoded once.
    #[test]
    fn top_talkers_mixed_and_listeners_share_one_encode() {
        let mut rig = Rig::new(6, 2);
        top_talkers_mixed(&mut rig);
    }

    /// The same, the room read and sent two legs at a time.
    #[test]
    fn top_talkers_mixed_in_blocks() {
        let mut rig = Rig::new(6, 2);
        rig.room.block = 2;
        top_talkers_mixed(&mut rig);
    }

    /// Two talkers in different blocks of a room read and sent two legs at a
    /// time: everyone hears both, except each itself, the listeners of the first
    /// block hearing the later talker's previous frame.
    #[test]
    fn talkers_in_other_blocks_are_heard() {
        for block in [1, 2, 4] {
            let mut rig = Rig::new(6, 4);
            rig.room.block = block;
            let last = rig.run(40, |i, t| match i {
                1 => tone(450.0, 8000.0, t),
                4 => tone(700.0, 8000.0, t),
                _ => vec![0xff; 160],
            });
            for (i, got) in last.iter().enumerate() {
                let (a, b) = (level(got, 450.0), level(got, 700.0));
                match i {
                    1 => assert!(a < 100.0 && b > 1000.0, "block {block}: talker 1 {a} {b}"),
                    4 => assert!(a > 1000.0 && b < 100.0, "block {block}: talker 4 {a} {b}"),
                    _ => assert!(
                        a > 1000.0 && b > 1000.0,
                        "block {block}: listener {i} {a} {b}"
                    ),
                }
            }
        }
    }

    fn top_talkers_mixed(rig: &mut Rig) {
        let voices = [(450.0, 8000.0), (700.0, 6000.0), (1100.0, 1500.0)];
        let last = rig.run(40, |i, t| match voices.get(i) {
            Some(&(f, a)) => tone(f, a, t),
            None => vec![0xff; 160],
        });
        let (sel, _, n) = rig.room.mixed;
        let mut ids: Vec<u64> = sel[..n].iter().map(|&i| rig.room.legs[i].id.0).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1]);
        for i in 3..6 {
            assert_eq!(last[i], last[2], "listener {i} got a different encode");
        }
        assert_ne!(last[0], last[1]);
        assert_ne!(last[0], last[2]);
        assert!(
            level(&last[0], 700.0) > 1000.0,
            "talker 0 does not hear talker 1"
        );
        assert!(level(&last[0], 450.0) < 100.0, "talker 0 hears itself");
        assert!(
            level(&last[0], 1100.0) < 100.0,
            "the third talker was mixed"
        );
        assert!(level(&last[4], 450.0) > 1000.0 && level(&last[4], 700.0) > 1000.0);
    }

    /// With one talker whose packets arrive whole, same-codec listeners get those
    /// packets byte for byte (no transcoding); the talker hears silence.
    #[test]
    fn lone_talker_is_forwarded_untouched() {
        for block in [BLOCK, 1] {
            let mut rig = Rig::new(3, 4);
            rig.room.block = block;
            lone_talker_forwarded(&mut rig);
        }
    }

    fn lone_talker_forwarded(rig: &mut Rig) {
        // 0x7f (µ-law "-0") does not survive decode and re-encode (it comes back as
        // 0xff), so it shows whether a packet was forwarded
        let talk = |t| {
            let mut p = tone(450.0, 8000.0, t);
            p[0] = 0x7f;
            p
        };
        let last = rig.run(30, |i, t| if i == 0 { talk(t) } else { vec![0xff; 160] });
        assert!(
            (0..30).any(|t| talk(t) == last[1]),
            "listener 1 did not get a forwarded packet"
        );
        assert_eq!(last[1][0], 0x7f);
        assert_eq!(last[1], last[2]);
        assert!(
            last[0].iter().all(|&b| b == 0xff || b == 0x7f),
            "the talker hears something"
        );
    }
}

#[cfg(test)]
mod prompt_tests {
    use super::*;

    /// A leg on hold that is told something (e.g. "the moderator has not arrived")
    /// reports the end of that prompt although its music goes on.
    #[test]
    fn prompt_done_while_music_loops() {
        let prompts = Prompts::embedded();
        let sock = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let params = MediaParams {
            codec: CodecKind::Pcmu,
            pt: 0,
            dtmf_pt: Some(101),
            remote: None,
            peer_direction: Direction::SendRecv,
            ssrc: 1,
            ptime_ms: 20,
        };
        let mut leg = LegMedia::new(LegId(1), sock(), sock(), params, Instant::now()).unwrap();
        leg.moh = Some(prompts.get(Prompt::MusicOnHold).clone());
        leg.prompts.push_back(prompts.get(Prompt::JoinTone).clone());
        let ticks = prompts.get(Prompt::JoinTone).narrow.len().div_ceil(160);
        let mut frame = [0i16; 160];
        let done: Vec<bool> = (0..ticks + 100)
            .map(|_| leg.mix_prompt(&mut frame))
            .collect();
        assert_eq!(
            done.iter().filter(|d| **d).count(),
            1,
            "the end of the prompt is reported once"
        );
        assert!(done[ticks - 1], "reported when the prompt ends");
        assert!(
            leg.playing.as_ref().is_some_and(|p| p.2),
            "the music plays on"
        );
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;

    fn leg_with_sdp_peer(peer: SocketAddr) -> LegMedia {
        let sock = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let params = MediaParams {
            codec: CodecKind::Pcmu,
            pt: 0,
            dtmf_pt: None,
            remote: Some(peer),
            peer_direction: Direction::SendRecv,
            ssrc: 9,
            ptime_ms: 20,
        };
        LegMedia::new(LegId(1), sock(), sock(), params, Instant::now()).unwrap()
    }

    fn send(from: &UdpSocket, to: SocketAddr, seq: u16) {
        let mut pkt = [0u8; 172];
        rtp::write_header(&mut pkt, 0, false, seq, u32::from(seq) * 160, 77);
        from.send_to(&pkt, to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }

    #[test]
    fn sdp_source_at_once_others_only_after_probation_and_within_the_window() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut leg = leg_with_sdp_peer(peer.local_addr().unwrap());
        let to = leg.rtp.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel();
        let mut buf = [0u8; 2048];
        // two sprayed packets, even in sequence, are not enough
        send(&attacker, to, 1);
        send(&attacker, to, 2);
        leg.receive_rtp(Instant::now(), &mut buf, &tx, 64);
        assert!(!leg.latched);
        assert_eq!(leg.strays, 2);
        // the address the SDP named is learned at once
        send(&peer, to, 500);
        leg.receive_rtp(Instant::now(), &mut buf, &tx, 64);
        assert!(leg.latched);
        assert_eq!(leg.remote, Some(peer.local_addr().unwrap()));
        assert_eq!(leg.stats.received, 1);

        // a peer behind NAT (not the SDP address): three in a row
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut leg = leg_with_sdp_peer("127.0.0.1:9".parse().unwrap());
        let to = leg.rtp.local_addr().unwrap();
        send(&other, to, 10);
        send(&other, to, 12); // a gap restarts the run
        send(&other, to, 13);
        leg.receive_rtp(Instant::now(), &mut buf, &tx, 64);
        assert!(!leg.latched);
        send(&other, to, 14);
        leg.receive_rtp(Instant::now(), &mut buf, &tx, 64);
        assert!(leg.latched, "three consecutive packets learn the source");

        // after the window, no other source is learned (the SDP's still is)
        let mut leg = leg_with_sdp_peer("127.0.0.1:9".parse().unwrap());
        let to = leg.rtp.local_addr().unwrap();
        for seq in 1..=5 {
            send(&other, to, seq);
        }
        let late = Instant::now() + LEARN_WINDOW + Duration::from_secs(1);
        leg.receive_rtp(late, &mut buf, &tx, 64);
        assert!(!leg.latched);
        assert_eq!(leg.strays, 5);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut leg = leg_with_sdp_peer(peer.local_addr().unwrap());
        let to = leg.rtp.local_addr().unwrap();
        send(&peer, to, 1);
        leg.receive_rtp(late, &mut buf, &tx, 64);
        assert!(leg.latched, "the SDP address is learned even late");
    }
}

#[cfg(test)]
mod lateness_tests {
    use super::*;

    /// A tick's wall time beyond the worker's CPU time is reported as time off
    /// the CPU (the host's steal on a VM); a tick whose CPU time reads above its
    /// wall time (clocks of different granularity) counts none.
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
