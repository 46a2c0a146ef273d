//! One room's media on one worker (the whole room, or its shard there): the tick
//! that reads every leg, detects talkers, mixes the loudest, encodes and sends.
//! It reaches a leg only through the leg's own calls (`poll`, `play_out`,
//! `send`); how the leg's media travels is `media::transport`'s business.
//!
//! Listeners who contributed no audio this tick all get the same full mix,
//! encoded once per codec; only the mixed talkers get their own mix-minus-self
//! encode, and a lone talker's packet is forwarded untouched to same-codec
//! listeners. A large G.711 room is read and sent in blocks of legs, so that a
//! leg's socket is still cached for its send (see [`RoomMedia::tick`]). A worker's
//! rooms share one set of tick buffers ([`Scratch`]).

use std::io;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use super::bus::{Remote, RoomBus};
use super::codec::Encoder;
use super::contract::Treatment;
use super::contract::{MediaEvent, MediaParams, RtpTimeouts, TransportSpec};
use super::frame::{MAX_FRAME, MAX_TALKERS};
use super::leg::{HOT_BYTES, LegMedia, RtpTotals};
use super::level::Limiter;
use super::mixer;
use super::prefetch;
use super::record::{Layout, RecordSink};
use super::resample::Downsampler;
use super::transport::Transport;
use super::vad;
use crate::ids::LegId;
use crate::sdp::{CodecKind, Direction};

/// Index base of talkers from other shards in a tick's ranking.
const REMOTE: usize = usize::MAX / 2;
/// Legs of a G.711 room read and sent together (see `RoomMedia::tick`): with
/// their sockets, about what a core's L2 cache holds.
const BLOCK: usize = 256;

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
    // the mix of a leg with relations (who it hears, who hears whom)
    own: Vec<i32>,
    mix: Vec<i16>,
    native: Vec<i16>,
    payload: Vec<u8>,
    pkt: Vec<u8>,
    // the lone talker's packet of this tick, forwarded to same-codec listeners
    forward: Vec<u8>,
    // the room's shared encodes of this tick, by `RoomMedia::shared` index
    shared: Vec<Vec<u8>>,
    // this tick's frame of the room's announcements
    ann: Vec<i16>,
    /// talkers the worker may still denoise this tick (RNNoise costs ~0.1 ms
    /// a talker: the worker sets a budget per tick, so that the cost stays
    /// bounded however many rooms talk at once)
    pub denoise_left: u32,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buf: vec![0; 2048],
            acc: vec![0; MAX_FRAME],
            own: vec![0; MAX_FRAME],
            mix: vec![0; MAX_FRAME],
            native: vec![0; MAX_FRAME],
            payload: vec![0; 1500],
            pkt: vec![0; 1500],
            forward: Vec::with_capacity(1500),
            shared: Vec::new(),
            ann: vec![0; MAX_FRAME],
            denoise_left: u32::MAX,
        }
    }
}

/// One room's media on one worker (the whole room, or its shard there): its legs
/// and the mixer state. Owned by that worker thread; public so benchmarks can drive
/// a tick.
pub struct RoomMedia {
    pub(super) legs: Vec<LegMedia>,
    ticks: u64,
    max_talkers: usize,
    shared: Vec<SharedMix>,
    // recordings of this room's mix or of its legs' own audio
    pub(super) records: Vec<RecordSink>,
    /// when silent legs are reported dead
    pub timeouts: RtpTimeouts,
    // the local talkers mixed in the last tick (indices, loudest first), their
    // levels, and how many
    mixed: ([usize; MAX_TALKERS], [u64; MAX_TALKERS], usize),
    // legs read and sent together (see `tick`)
    block: usize,
    // when the room spans workers: its bus and this worker's shard index, and
    // the other shards' talkers of this tick
    pub(super) bus: Option<(Arc<RoomBus>, usize)>,
    pub(super) remote: Option<Box<Remote>>,
    // legs on Opus (any makes the room mix at 48 kHz) and on G.722 (16 kHz when
    // there is no Opus leg): counted, so that a tick need not visit every leg to
    // learn its rate
    opus_legs: usize,
    g722_legs: usize,
    // legs with a relation: while none, the mix is the room's alone
    related: usize,
    // sounds played to the whole room (the API's announcements), mixed once
    // into what everyone in the mix hears
    pub(super) announcements: Vec<Announcement>,
    // one of them sounded this tick (in `Scratch::ann`)
    announcing: bool,
    // keeps the sum of the talkers from clipping, one gain per tick, and the
    // tick it last followed
    limiter: Limiter,
    limited: u64,
}

/// A sound played to a whole room: mixed into the room's sum, so every leg in
/// the mix hears it once, in the shared encode like any talker.
pub struct Announcement {
    /// the playback id the core gave it
    pub id: u64,
    /// what
    pub sound: super::prompt::Sound,
    /// times left to play it, this one included
    pub plays: u32,
    pos: usize,
}

impl Announcement {
    /// `sound`, `plays` times.
    pub fn new(id: u64, sound: super::prompt::Sound, plays: u32) -> Announcement {
        Announcement {
            id,
            sound,
            plays: plays.max(1),
            pos: 0,
        }
    }
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
            g722_legs: 0,
            related: 0,
            announcements: Vec::new(),
            announcing: false,
            limiter: Limiter::default(),
            limited: u64::MAX,
        }
    }

    /// Add a leg whose media travels on `transport`.
    pub fn add_leg(
        &mut self,
        id: LegId,
        transport: Transport,
        params: MediaParams,
        now: Instant,
    ) -> io::Result<()> {
        self.add(LegMedia::new(id, transport, params, now)?);
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

    pub(super) fn add(&mut self, leg: LegMedia) {
        for r in &mut self.records {
            r.assign(leg.id);
        }
        self.count(leg.params.codec, true);
        self.related += usize::from(leg.relation.is_some());
        self.legs.push(leg);
    }

    /// Set who leg `id` hears and who hears it (the default: everyone).
    pub(super) fn relate(&mut self, id: LegId, relation: crate::media::contract::Relation) {
        let Some(leg) = self.legs.iter_mut().find(|l| l.id == id) else {
            return;
        };
        let had = leg.relation.is_some();
        leg.relation = (!relation.is_default()).then(|| Box::new(relation));
        self.related = self.related + usize::from(leg.relation.is_some()) - usize::from(had);
    }

    /// Whether local talker `t` is heard by `listener`, by their relations.
    fn audible(&self, t: usize, listener: &LegMedia) -> bool {
        let Some(talker) = self.legs.get(t) else {
            // a talker on another worker: heard by whoever hears everyone
            return listener.relation.as_ref().is_none_or(|r| r.hears.is_none());
        };
        let by_talker = talker
            .relation
            .as_ref()
            .and_then(|r| r.heard_by.as_ref())
            .is_none_or(|l| l.contains(&listener.id));
        let by_listener = listener
            .relation
            .as_ref()
            .and_then(|r| r.hears.as_ref())
            .is_none_or(|l| l.contains(&talker.id));
        by_talker && by_listener
    }

    /// Whether leg `i` needs a mix of its own because of relations: it has
    /// one, or a talker heard by only some is heard by it.
    fn needs_own_mix(&self, i: usize, talkers: &[usize]) -> bool {
        let leg = &self.legs[i];
        leg.relation.is_some()
            || talkers.iter().any(|&t| {
                self.legs
                    .get(t)
                    .and_then(|l| l.relation.as_ref())
                    .and_then(|r| r.heard_by.as_ref())
                    .is_some_and(|l| l.contains(&leg.id))
            })
    }

    /// Whether local talker `t` is heard by only some (kept out of the shared mix).
    fn restricted(&self, t: usize) -> bool {
        self.legs
            .get(t)
            .and_then(|l| l.relation.as_ref())
            .is_some_and(|r| r.heard_by.is_some())
    }

    /// Take leg `id` out (its transport closes as it drops); returns its RTP
    /// counts, for the worker's totals.
    pub(super) fn remove(&mut self, id: LegId) -> Option<RtpTotals> {
        self.take(id).map(|leg| RtpTotals::of(&leg))
    }

    /// Take leg `id` out, whole (to another room).
    pub(super) fn take(&mut self, id: LegId) -> Option<LegMedia> {
        let pos = self.legs.iter().position(|l| l.id == id)?;
        let leg = self.legs.swap_remove(pos);
        // the last tick's talkers are indices: another leg may hold one now
        self.mixed.2 = 0;
        self.count(leg.params.codec, false);
        self.related -= usize::from(leg.relation.is_some());
        Some(leg)
    }

    /// New parameters (re-INVITE, UPDATE) for leg `id`, if the room holds it.
    pub(super) fn update(
        &mut self,
        id: LegId,
        params: MediaParams,
        spec: &TransportSpec,
        now: Instant,
    ) -> Option<io::Result<()>> {
        let leg = self.legs.iter_mut().find(|l| l.id == id)?;
        let was = leg.params.codec;
        let result = leg.update(params, spec, now);
        let is = leg.params.codec;
        self.count(was, false);
        self.count(is, true);
        Some(result)
    }

    /// Start a recording here; a split one gives each leg in the room a channel.
    pub(super) fn add_record(&mut self, mut sink: RecordSink) {
        for l in &self.legs {
            sink.assign(l.id);
        }
        self.records.push(sink);
    }

    /// Hand this tick's audio to the recordings at the room's rate: the room mix
    /// (what a listener who is not talking hears, in `scratch.acc` from the
    /// `talkers`), a leg's own decoded input, each leg's apart, or a leg's input
    /// and what it hears. The writer thread resamples and encodes.
    fn record(&mut self, n: usize, talkers: &[usize], scratch: &mut Scratch) {
        let rate = self.rate();
        let mut i = 0;
        while i < self.records.len() {
            let buf = match self.records[i].buffer() {
                Ok(Some(b)) => b,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(_) => {
                    // the writer stopped on an error and has reported it
                    self.records.swap_remove(i);
                    continue;
                }
            };
            let mut buf = buf;
            let sink = &self.records[i];
            match (sink.layout(), sink.leg) {
                (Layout::Mix, None) => {
                    self.limiter
                        .mix_minus(&scratch.acc[..n], None, &mut scratch.mix[..n]);
                    buf.extend_from_slice(&scratch.mix[..n]);
                }
                (Layout::Mix, Some(id)) => own_audio(&mut self.legs, id, n, &mut buf),
                (Layout::Split, _) => {
                    for &t in sink.tracks() {
                        match t {
                            Some(id) => own_audio(&mut self.legs, id, n, &mut buf),
                            None => buf.resize(buf.len() + n, 0),
                        }
                    }
                }
                (Layout::Duplex, leg) => {
                    let id = leg.unwrap_or(LegId(0));
                    own_audio(&mut self.legs, id, n, &mut buf);
                    // what it hears of the room's default mix: everyone but itself
                    let own = talkers
                        .iter()
                        .find(|&&t| {
                            self.legs.get(t).is_some_and(|l| l.id == id)
                                && !(self.related > 0 && self.restricted(t))
                        })
                        .map(|&t| &self.legs[t].frame[..n]);
                    self.limiter
                        .mix_minus(&scratch.acc[..n], own, &mut scratch.mix[..n]);
                    buf.extend_from_slice(&scratch.mix[..n]);
                }
            }
            if self.records[i].push(rate, buf).is_ok() {
                i += 1;
            } else {
                self.records.swap_remove(i);
            }
        }
    }

    /// A leg on `codec` came (`true`) or went.
    fn count(&mut self, codec: CodecKind, came: bool) {
        let n = match codec {
            CodecKind::Opus => &mut self.opus_legs,
            CodecKind::G722 => &mut self.g722_legs,
            _ => return,
        };
        *n = if came { *n + 1 } else { n.saturating_sub(1) };
    }

    /// The rate the room mixes at: the widest band among its legs.
    fn rate(&self) -> u32 {
        if self.opus_legs > 0 {
            48000
        } else if self.g722_legs > 0 {
            16000
        } else {
            8000
        }
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
        self.announcing = self.announce(n, &mut scratch.ann, events);
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
            self.record(n, &all[..count], scratch);
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
    /// This tick's frame of the room's announcements into `out`; whether any
    /// sounded. One that has played its last time is reported done.
    fn announce(
        &mut self,
        n: usize,
        out: &mut [i16],
        events: &mpsc::Sender<(LegId, MediaEvent)>,
    ) -> bool {
        if self.announcements.is_empty() {
            return false;
        }
        let out = &mut out[..n];
        out.fill(0);
        let mut k = 0;
        while k < self.announcements.len() {
            let a = &mut self.announcements[k];
            a.sound.add_frame(a.pos, out);
            a.pos += 160;
            if a.pos >= a.sound.narrow.len() {
                a.pos = 0;
                a.plays -= 1;
                if a.plays == 0 {
                    let id = a.id;
                    self.announcements.swap_remove(k);
                    let _ = events.send((LegId(0), MediaEvent::PlaybackDone { id }));
                    continue;
                }
            }
            k += 1;
        }
        true
    }

    fn accumulate(&self, talkers: &[usize], n: usize, acc: &mut [i32]) {
        acc[..n].fill(0);
        for &i in talkers {
            if self.related > 0 && self.restricted(i) {
                continue; // heard only by its chosen few, in their own mixes
            }
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
                && (leg.transport.gone()
                    || (!limit.is_zero() && now.saturating_duration_since(leg.last_rtp) > limit))
            {
                leg.timed_out = true;
                let _ = events.send((leg.id, MediaEvent::RtpTimeout { leg: leg.id }));
            }
            if let Some(digit) = leg.play_out(rate) {
                let _ = events.send((leg.id, MediaEvent::Dtmf { leg: leg.id, digit }));
            }
            if leg.capture.is_some() {
                let heard = leg.has_audio && !leg.muted;
                if heard {
                    leg.settle();
                }
                let frame = heard.then_some(&leg.frame[..n]);
                if let Some(samples) = leg.capture.as_mut().and_then(|c| c.push(frame)) {
                    leg.capture = None;
                    let _ = events.send((
                        leg.id,
                        MediaEvent::Captured {
                            leg: leg.id,
                            samples,
                        },
                    ));
                }
            }
            // a muted leg is measured too (never ranked): the core tells one who
            // talks on mute that it is muted
            let e = if leg.has_audio && (leg.contributes() || leg.muted_but_sending()) {
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
        let tick = self.ticks;
        let rate = self.rate();
        for &i in talkers {
            // a talker in a block not read yet is last tick's frame, treated then
            if i < range.end {
                self.legs[i].treat(n, rate, tick, &mut scratch.denoise_left);
            }
        }
        self.accumulate(talkers, n, &mut scratch.acc);
        if self.announcing {
            mixer::accumulate(&mut scratch.acc[..n], &scratch.ann[..n]);
        }
        self.limiter.follow(
            &scratch.acc[..n],
            std::mem::replace(&mut self.limited, tick) != tick,
        );
        let Scratch {
            acc,
            own,
            mix,
            native,
            payload,
            pkt,
            forward,
            shared: shared_payloads,
            ann,
            ..
        } = scratch;
        let acc = &acc[..n];
        for s in &mut self.shared {
            s.fresh = false;
        }
        // One talker whose packet arrived whole this tick: listeners on its codec
        // get that packet as it is, no decode-mix-encode (the mix would be that
        // frame anyway). Not G.722: an ADPCM decoder follows one encoder's state,
        // and a switch between the talker's encoder and the mix's would be heard.
        let forward_codec = match talkers {
            [t] if *t < range.end
                && !self.announcing
                && self.legs[*t].raw_ok
                && self.legs[*t].params.codec != CodecKind::G722
                && self.legs[*t].gain_in == mixer::UNITY
                && self.legs[*t].treatment == Treatment::NONE
                && !self.limiter.active()
                && self.related == 0 =>
            {
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
            // relations (canHear, canSpeak, coaching): this leg's own mix of the
            // talkers it may hear
            let related = self.related > 0 && self.needs_own_mix(i, talkers);
            if related {
                let own = &mut own[..n];
                own.fill(0);
                for &t in talkers {
                    if t == i || !self.audible(t, &self.legs[i]) {
                        continue;
                    }
                    let frame = match (t.checked_sub(REMOTE), &self.remote) {
                        (None, _) => &self.legs[t].frame[..n],
                        (Some(r), Some(remote)) => &remote.frames[r][..n],
                        (Some(_), None) => continue,
                    };
                    mixer::accumulate(own, frame);
                }
                if self.announcing {
                    mixer::accumulate(own, &ann[..n]);
                }
            }
            let leg = &mut self.legs[i];
            let codec = leg.params.codec;
            let native_n = (codec.sample_rate() / 50) as usize;
            let talker = talkers.contains(&i);
            let prompting = leg.playing.is_some() || !leg.prompts.is_empty() || leg.moh.is_some();
            let louder = leg.gain_out != mixer::UNITY;
            if related || talker || leg.isolated || leg.deaf || prompting || louder {
                // its own encode: a talker hears everyone else; an isolated or deaf
                // leg hears nothing of the room; a prompt is heard by its leg only;
                // a leg with relations hears whom they say
                let mix = &mut mix[..n];
                match (leg.isolated || leg.deaf, related, talker) {
                    (true, _, _) => mix.fill(0),
                    (false, true, _) => self.limiter.mix_minus(&own[..n], None, mix),
                    (false, false, true) => self.limiter.mix_minus(acc, Some(&leg.frame[..n]), mix),
                    (false, false, false) => self.limiter.mix_minus(acc, None, mix),
                }
                if louder {
                    mixer::scale(mix, leg.gain_out);
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
                    self.limiter.mix_minus(acc, None, &mut mix[..n]);
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
/// Leg `id`'s own decoded input this tick (silence when it sent none, is muted,
/// or is not here), appended to `out`.
fn own_audio(legs: &mut [LegMedia], id: LegId, n: usize, out: &mut Vec<i16>) {
    match legs.iter_mut().find(|l| l.id == id) {
        Some(l) if l.has_audio && !l.muted => {
            l.settle();
            out.extend_from_slice(&l.frame[..n]);
        }
        _ => out.resize(out.len() + n, 0),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::TICK;
    use crate::media::g711;
    use crate::media::rtp;
    use crate::media::transport::MemPort;

    /// A room of in-memory legs: the test plays every phone, on virtual time.
    struct Rig {
        room: RoomMedia,
        ports: Vec<MemPort>,
        tick: u32,
        start: Instant,
        tx: mpsc::Sender<(LegId, MediaEvent)>,
        events: mpsc::Receiver<(LegId, MediaEvent)>,
    }

    impl Rig {
        fn new(legs: usize, max_talkers: usize) -> Rig {
            let mut room = RoomMedia::new(max_talkers);
            let start = Instant::now();
            let ports: Vec<MemPort> = (0..legs).map(|_| MemPort::new()).collect();
            for (i, port) in ports.iter().enumerate() {
                let params = MediaParams {
                    codec: CodecKind::Pcmu,
                    pt: 0,
                    dtmf_pt: None,
                    peer_direction: Direction::SendRecv,
                    ssrc: 100 + i as u32,
                    ptime_ms: 20,
                };
                room.add_leg(LegId(i as u64), Transport::Mem(port.clone()), params, start)
                    .unwrap();
            }
            let (tx, events) = mpsc::channel();
            Rig {
                room,
                ports,
                tick: 0,
                start,
                tx,
                events,
            }
        }

        fn leg(&mut self, i: u64) -> &mut LegMedia {
            self.room
                .legs
                .iter_mut()
                .find(|l| l.id == LegId(i))
                .expect("a leg of the rig")
        }

        /// Run `ticks` ticks; before each, phone i sends `payload(i, t)`. Returns the
        /// last payload each phone received.
        fn run(&mut self, ticks: u32, payload: impl Fn(usize, u32) -> Vec<u8>) -> Vec<Vec<u8>> {
            let mut scratch = Scratch::default();
            let mut pkt = [0u8; 172];
            let mut last = vec![Vec::new(); self.ports.len()];
            for _ in 0..ticks {
                let t = self.tick;
                for (i, port) in self.ports.iter().enumerate() {
                    rtp::write_header(&mut pkt, 0, false, t as u16, t * 160, 7 + i as u32);
                    pkt[12..].copy_from_slice(&payload(i, t));
                    port.push(&pkt);
                }
                self.room
                    .tick(self.start + TICK * t, &mut scratch, &self.tx);
                for (i, port) in self.ports.iter().enumerate() {
                    let sent = port.take_sent();
                    assert_eq!(
                        sent.len(),
                        1,
                        "phone {i} got {} packets in a tick",
                        sent.len()
                    );
                    last[i] = sent[0][12..].to_vec();
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

    /// In a room that treats no voice (`denoise` and `level` off), with one
    /// talker whose packets arrive whole, same-codec listeners get those packets
    /// byte for byte (no transcoding); the talker hears silence.
    #[test]
    fn lone_talker_is_forwarded_untouched() {
        for block in [BLOCK, 1] {
            let mut rig = Rig::new(3, 4);
            rig.room.block = block;
            for leg in &mut rig.room.legs {
                leg.treatment = Treatment::NONE;
            }
            lone_talker_forwarded(&mut rig);
        }
    }

    /// Where voices are treated, a lone talker is not forwarded: its listeners
    /// hear it denoised and levelled.
    #[test]
    fn a_treated_lone_talker_is_mixed() {
        let mut rig = Rig::new(3, 4);
        let talk = |t| {
            let mut p = tone(450.0, 8000.0, t);
            p[0] = 0x7f;
            p
        };
        let last = rig.run(30, |i, t| if i == 0 { talk(t) } else { vec![0xff; 160] });
        assert!((0..30).all(|t| talk(t) != last[1]), "forwarded");
        assert!(level(&last[1], 450.0) > 1000.0, "not heard");
    }

    /// µ-law 20 ms frames of `pcm` (zero-padded to whole frames).
    fn ulaw_frames(pcm: &[i16]) -> Vec<Vec<u8>> {
        pcm.chunks(160)
            .map(|c| {
                let mut f = c.to_vec();
                f.resize(160, 0);
                let mut out = vec![0u8; 160];
                g711::encode_ulaw(&f, &mut out);
                out
            })
            .collect()
    }

    /// What `listener` heard over `ticks` ticks, decoded; phone i sends
    /// `payload(i, t)`.
    fn heard(
        rig: &mut Rig,
        ticks: usize,
        listener: usize,
        payload: impl Fn(usize, usize) -> Vec<u8>,
    ) -> Vec<i16> {
        let mut out = Vec::new();
        for t in 0..ticks {
            let last = rig.run(1, |i, _| payload(i, t));
            let mut pcm = vec![0i16; 160];
            g711::decode_ulaw(&last[listener], &mut pcm);
            out.extend(pcm);
        }
        out
    }

    /// The quality figures through the room's real path (G.711 in, the mix,
    /// G.711 out). Speech in noise: the noise a listener hears between words
    /// falls by 10 dB and more against the same room untreated, the speech
    /// stays within 2 dB. Two talkers 20 dB apart reach the listener within
    /// 4 dB of each other after 5 s.
    #[test]
    fn a_listener_hears_less_noise_and_even_talkers() {
        use crate::media::denoise::tests::{
            assert_cleaner, frames_at, noise, rms_db, speech, speech_and_pauses,
        };
        let clean = speech(0.5);
        let noisy: Vec<i16> = clean
            .iter()
            .zip(noise(clean.len(), 1500.0, 5))
            .map(|(a, b)| a.saturating_add(b))
            .collect();
        let frames = ulaw_frames(&noisy);
        let ticks = frames.len();
        let (talk, pause) = speech_and_pauses(&clean, 160);
        let run = |treatment: Treatment| {
            let mut rig = Rig::new(2, 4);
            for leg in &mut rig.room.legs {
                leg.treatment = treatment;
            }
            heard(&mut rig, ticks, 1, |i, t| {
                if i == 0 {
                    frames[t].clone()
                } else {
                    vec![0xff; 160]
                }
            })
        };
        let plain = run(Treatment::NONE);
        let denoised = run(Treatment {
            denoise: true,
            level: false,
        });
        // the lag that lines the heard speech up with what was said
        let lag_of = |x: &[i16]| {
            (0..4)
                .max_by(|&a, &b| {
                    rms_db(&frames_at(x, &talk, a)).total_cmp(&rms_db(&frames_at(x, &talk, b)))
                })
                .unwrap_or(0)
        };
        let (lp, ld) = (lag_of(&plain), lag_of(&denoised));
        // the pauses the detector's hangover kept in the mix: heard in both
        assert_cleaner(
            (
                rms_db(&frames_at(&plain, &pause, lp)),
                rms_db(&frames_at(&denoised, &pause, ld)),
            ),
            (
                rms_db(&frames_at(&plain, &talk, lp)),
                rms_db(&frames_at(&denoised, &talk, ld)),
            ),
        );

        // two talkers 20 dB apart, taking turns: legs 0 and 1 talk, 2 listens
        let (loud, quiet) = (ulaw_frames(&speech(1.0)), ulaw_frames(&speech(0.1)));
        let turn = loud.len();
        let mut rig = Rig::new(3, 4);
        let heard = heard(&mut rig, 4 * turn, 2, |i, t| {
            let (round, k) = (t / turn, t % turn);
            match (i, round % 2) {
                (0, 0) => loud[k].clone(),
                (1, 1) => quiet[k].clone(),
                _ => vec![0xff; 160],
            }
        });
        let (talk, _) = speech_and_pauses(&speech(1.0), 160);
        let lag = lag_of(&heard[2 * turn * 160..3 * turn * 160]);
        // the second round of each, after 5 s of each talking
        let round = |r: usize| {
            let x = &heard[r * turn * 160..(r + 1) * turn * 160];
            rms_db(&frames_at(x, &talk, lag))
        };
        let (a, b) = (round(2), round(3));
        eprintln!("talkers 20 dB apart heard at {a:.1} and {b:.1} dBFS");
        assert!((a - b).abs() <= 4.0, "{a:.1} vs {b:.1}");
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

    /// A muted leg is heard by nobody and still hears the room; a deaf leg hears
    /// nothing of the room and is still heard.
    #[test]
    fn muted_is_not_heard_and_deaf_hears_nothing() {
        let mut rig = Rig::new(4, 4);
        rig.leg(0).muted = true;
        rig.leg(1).deaf = true;
        let last = rig.run(40, |i, t| match i {
            0 => tone(450.0, 8000.0, t),
            1 => tone(700.0, 8000.0, t),
            _ => vec![0xff; 160],
        });
        for (i, got) in last.iter().enumerate() {
            let (a, b) = (level(got, 450.0), level(got, 700.0));
            match i {
                0 => assert!(a < 100.0 && b > 1000.0, "the muted leg: {a} {b}"),
                1 => assert!(a < 100.0 && b < 100.0, "the deaf leg: {a} {b}"),
                _ => assert!(a < 100.0 && b > 1000.0, "listener {i}: {a} {b}"),
            }
        }
    }

    /// A prompt queued for one leg is heard by that leg alone, over the room,
    /// and its end is reported once.
    #[test]
    fn a_prompt_is_heard_by_its_leg_only_and_its_end_reported() {
        let mut rig = Rig::new(3, 4);
        // 0.2 s of 1100 Hz
        let pcm: Vec<i16> = (0..1600)
            .map(|k| {
                (6000.0 * (2.0 * std::f64::consts::PI * 1100.0 * k as f64 / 8000.0).sin()) as i16
            })
            .collect();
        rig.leg(2)
            .prompts
            .push_back(crate::media::prompt::sound(pcm));
        let talk = |i, t| {
            if i == 0 {
                tone(450.0, 8000.0, t)
            } else {
                vec![0xff; 160]
            }
        };
        let during = rig.run(5, talk);
        assert!(
            level(&during[2], 1100.0) > 1000.0,
            "the prompt is not heard"
        );
        assert!(
            level(&during[2], 450.0) > 1000.0,
            "the room is not heard under it"
        );
        for i in [0, 1] {
            assert!(
                level(&during[i], 1100.0) < 100.0,
                "leg {i} hears another's prompt"
            );
        }
        let after = rig.run(20, talk);
        assert!(level(&after[2], 1100.0) < 100.0, "the prompt did not end");
        let done: Vec<LegId> = rig
            .events
            .try_iter()
            .filter_map(|(_, ev)| match ev {
                MediaEvent::PromptDone { leg } => Some(leg),
                _ => None,
            })
            .collect();
        assert_eq!(done, vec![LegId(2)]);
    }

    /// Relations: leg 2 hears only leg 0 (canHear: [A]); leg 1 whispers to
    /// leg 3 alone (canSpeak: [D]); everyone else hears the room as before, the
    /// whisperer excluded, and the default listeners still share one encode.
    #[test]
    fn relations_choose_who_hears_whom() {
        use crate::media::contract::Relation;
        let mut rig = Rig::new(6, 4);
        rig.room.relate(
            LegId(2),
            Relation {
                hears: Some(vec![LegId(0)]),
                heard_by: None,
            },
        );
        rig.room.relate(
            LegId(1),
            Relation {
                hears: None,
                heard_by: Some(vec![LegId(3)]),
            },
        );
        let last = rig.run(40, |i, t| match i {
            0 => tone(450.0, 8000.0, t),
            1 => tone(700.0, 8000.0, t),
            _ => vec![0xff; 160],
        });
        let heard = |i: usize| {
            (
                level(&last[i], 450.0) > 1000.0,
                level(&last[i], 700.0) > 1000.0,
            )
        };
        assert_eq!(heard(0), (false, false), "A hears the whisper or itself");
        assert_eq!(heard(1), (true, false), "the whisperer hears the room");
        assert_eq!(heard(2), (true, false), "canHear [A] hears only A");
        assert_eq!(heard(3), (true, true), "the whisper's target hears both");
        assert_eq!(heard(4), (true, false), "a listener hears the whisper");
        assert_eq!(
            last[4], last[5],
            "default listeners lost their shared encode"
        );
        // back to the whole room
        rig.room.relate(LegId(1), Relation::default());
        rig.room.relate(LegId(2), Relation::default());
        assert_eq!(rig.room.related, 0);
        let last = rig.run(10, |i, t| match i {
            0 => tone(450.0, 8000.0, t),
            1 => tone(700.0, 8000.0, t),
            _ => vec![0xff; 160],
        });
        assert!(level(&last[2], 700.0) > 1000.0 && level(&last[4], 700.0) > 1000.0);
    }

    #[test]
    fn after_a_hold_the_timestamp_has_gone_on_with_the_clock_and_the_marker_is_set() {
        let mut rig = Rig::new(2, 3);
        let mut scratch = Scratch::default();
        let mut pkt = [0u8; 172];
        let mut headers = Vec::new();
        // 20 ticks sending, 380 held (7.6 s), 5 sending again
        for t in 0..405u32 {
            let held = (20..400).contains(&t);
            rig.leg(0).params.peer_direction = if held {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            };
            for (i, port) in rig.ports.iter().enumerate() {
                rtp::write_header(&mut pkt, 0, false, t as u16, t * 160, 7 + i as u32);
                pkt[12..].copy_from_slice(&tone(400.0 * (i + 1) as f64, 6000.0, t));
                port.push(&pkt);
            }
            rig.room.tick(rig.start + TICK * t, &mut scratch, &rig.tx);
            let sent = rig.ports[0].take_sent();
            assert_eq!(sent.len(), usize::from(!held), "tick {t}");
            for d in &sent {
                let p = rtp::RtpPacket::parse(d).unwrap();
                headers.push((t, p.marker, p.seq, p.timestamp));
            }
            rig.ports[1].take_sent();
        }
        assert_eq!(headers.len(), 25);
        let (t0, m0, _, ts0) = headers[0];
        assert!(m0, "the first packet marks the start");
        for &(t, marker, _, ts) in &headers[1..] {
            // the clock: 160 a tick from the first packet, the hold included
            assert_eq!(ts.wrapping_sub(ts0), (t - t0) * 160, "tick {t}");
            // the marker on the first packet after the hold only
            assert_eq!(marker, t == 400, "tick {t}");
        }
        // sequence numbers go on without a gap (RFC 3550: nothing was lost)
        for w in headers.windows(2) {
            assert_eq!(w[1].2, w[0].2.wrapping_add(1));
        }
    }

    /// A G.711 leg that asked for 10, 30 or 40 ms packets gets them: the
    /// room's 20 ms ticks cut at its packet time, sequence and timestamps
    /// running on, the first marked.
    #[test]
    fn the_offerers_packet_time_is_sent() {
        for ptime in [10u32, 30, 40] {
            let mut rig = Rig::new(2, 4);
            rig.leg(1).params.ptime_ms = ptime;
            let mut scratch = Scratch::default();
            let mut pkt = [0u8; 172];
            let mut got = Vec::new();
            for t in 0..12u32 {
                for (i, port) in rig.ports.iter().enumerate() {
                    rtp::write_header(&mut pkt, 0, false, t as u16, t * 160, 7 + i as u32);
                    pkt[12..].copy_from_slice(&tone(450.0, 8000.0, t));
                    port.push(&pkt);
                }
                rig.room.tick(rig.start + TICK * t, &mut scratch, &rig.tx);
                rig.ports[0].take_sent();
                got.extend(rig.ports[1].take_sent());
            }
            let size = (ptime * 8) as usize;
            assert_eq!(
                got.len(),
                12 * 160 / size,
                "{ptime} ms: {} packets",
                got.len()
            );
            let parsed: Vec<rtp::RtpPacket> = got
                .iter()
                .map(|p| rtp::RtpPacket::parse(p).unwrap())
                .collect();
            assert!(parsed[0].marker && parsed[1..].iter().all(|p| !p.marker));
            for w in parsed.windows(2) {
                assert_eq!(w[0].payload.len(), size);
                assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
                assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(size as u32));
            }
        }
    }

    /// A phone that sends comfort noise (RFC 3389) in a pause has paused, not
    /// lost packets: nothing is counted lost or concealed, its listener hears
    /// silence through the pause and the talker again after it.
    #[test]
    fn comfort_noise_is_a_pause_not_a_loss() {
        let mut rig = Rig::new(2, 4);
        let mut scratch = Scratch::default();
        let mut pkt = [0u8; 172];
        let (mut seq, mut quiet_seq) = (0u16, 0u16);
        let (mut pause, mut after) = (Vec::new(), Vec::new());
        for t in 0..60u32 {
            // leg 0: speech, one CN packet at tick 20, nothing, speech from 40
            if !(20..40).contains(&t) {
                rtp::write_header(&mut pkt, 0, t == 40, seq, t * 160, 7);
                pkt[12..].copy_from_slice(&tone(450.0, 8000.0, t));
                rig.ports[0].push(&pkt);
                seq += 1;
            } else if t == 20 {
                let mut cn = [0u8; 13];
                rtp::write_header(&mut cn, rtp::PT_CN, false, seq, t * 160, 7);
                cn[12] = 60; // -60 dBov
                rig.ports[0].push(&cn);
                seq += 1;
            }
            rtp::write_header(&mut pkt, 0, false, quiet_seq, t * 160, 8);
            pkt[12..].fill(0xff);
            rig.ports[1].push(&pkt);
            quiet_seq += 1;
            rig.room.tick(rig.start + TICK * t, &mut scratch, &rig.tx);
            rig.ports[0].take_sent();
            let got = rig.ports[1].take_sent();
            assert_eq!(got.len(), 1, "tick {t}");
            let l = level(&got[0][12..], 450.0);
            if (23..40).contains(&t) {
                pause.push(l);
            } else if t >= 45 {
                after.push(l);
            }
        }
        let leg = rig.leg(0);
        assert_eq!(leg.stats.cumulative_lost(), 0, "the pause counted as loss");
        assert_eq!(leg.jb.stats.lost, 0, "the pause concealed as loss");
        assert!(
            pause.iter().all(|&l| l < 50.0),
            "heard in the pause: {pause:?}"
        );
        assert!(
            after.iter().all(|&l| l > 1000.0),
            "not heard after: {after:?}"
        );
    }

    #[test]
    fn a_lone_participant_receives_a_packet_every_tick_for_a_minute() {
        // carriers and NATs time out a call that receives nothing; the room sends
        // its (silent) mix to a lone leg as to any other
        let mut rig = Rig::new(1, 3);
        let last = rig.run(3000, |_, t| tone(400.0, 6000.0, t));
        assert_eq!(rig.tick, 3000);
        assert_eq!(last[0].len(), 160);
    }
}
