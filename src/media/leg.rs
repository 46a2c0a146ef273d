//! One leg's media state between its transport and the room: RTP parsed and
//! written, the jitter buffer, decoding (deferred until something needs the
//! samples), concealment, resampling to the room's rate, talker detection, in-band
//! DTMF, prompts and music on hold, RTCP reports. It knows nothing of how its
//! datagrams travel (`media::transport`) or of other legs (`media::room`).
//!
//! The layout is measured: at thousands of legs nothing of a leg is still in cache
//! from its last tick, so the fields a tick touches come first, in the order it
//! touches them, and `media::room` prefetches them a leg ahead.

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::codec::{Decoder, Encoder};
use super::contract::{MediaEvent, MediaParams, TransportSpec, Treatment};
use super::denoise::Denoiser;
use super::dtmf::InbandDetector;
use super::frame::{MAX_FRAME, SILENCE};
use super::jitter::{JitterBuffer, Pull};
use super::level::Leveller;
use super::prompt::Sound;
use super::resample::{Downsampler, Upsampler};
use super::rtp::{self, EventTracker, ReceiverStats, RtpPacket, TelephoneEvent};
use super::transport::{Recv, Transport};
use super::vad::TalkDetector;
use crate::ids::LegId;
use crate::sdp::Direction;

/// Room for a 60 ms packet plus a partial frame.
const FIFO: usize = 4 * MAX_FRAME;
/// RTCP reports go this often.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// In-band detection runs on 8 kHz legs (G.711) that negotiated no
/// telephone-event: its filters are at 8 kHz.
fn inband_for(p: &MediaParams) -> Option<InbandDetector> {
    (p.dtmf_pt.is_none() && p.codec.sample_rate() == 8000).then(InbandDetector::default)
}

/// The bytes of a [`LegMedia`] a tick touches: the fields before `id`.
pub(super) const HOT_BYTES: usize = std::mem::offset_of!(LegMedia, id);
// Ten cache lines at most: a big field among the hot ones fails the build here.
const _: () = assert!(HOT_BYTES <= 640);

/// One leg's media state. `#[repr(C)]` with the fields every tick touches first
/// (in the order a tick touches them), so that a leg costs a few consecutive cache
/// lines, which `RoomMedia::tick` prefetches a leg ahead; at thousands of legs
/// nothing of a leg is still in cache from its last tick, and a field order left
/// to the compiler scattered them over fourteen lines.
#[repr(C)]
pub struct LegMedia {
    // --- read, every tick
    // how its RTP travels (the socket's hot fields first)
    pub(super) transport: Transport,
    pub(super) timed_out: bool,
    pub(super) has_audio: bool,
    // this tick's frame came from exactly one received packet, still in the jitter
    // buffer (`last_payload`), so that it can be forwarded without transcoding
    pub(super) raw_ok: bool,
    // the previous frame for concealment is in `frame` (the fast path), not `last`
    pub(super) last_in_frame: bool,
    // out of the mix: hears its prompts (or silence), is heard by no one
    pub(super) isolated: bool,
    // heard by no one, hears the room
    pub(super) muted: bool,
    // hears nothing of the room (its own prompts still), is heard
    pub(super) deaf: bool,
    // Q12 gains on what it says and on what it hears of the room (volume_in,
    // volume_out); `mixer::UNITY` for most
    pub(super) gain_in: u16,
    pub(super) gain_out: u16,
    // the tick whose frame was treated and `gain_in` applied to (a talker is in
    // the mix of every block of a tick, and must be treated once)
    pub(super) gained: u64,
    pub(super) seq: u16,
    pub(super) ts: u32,
    // ticks this leg was due a packet and sent none (held, not receiving): the
    // timestamp goes on with the sampling clock meanwhile (RFC 3550 §5.1)
    pub(super) unsent_ticks: u32,
    pub(super) sent_packets: u32,
    pub(super) sent_octets: u32,
    pub(super) lost_run: u32,
    pub(super) params: MediaParams,
    pub(super) started: Instant,
    // the last well-formed RTP from the peer, for the RTP timeout
    pub(super) last_rtp: Instant,
    pub(super) next_rtcp: Instant,
    // Some(its energy) while this tick's frame is still the jitter buffer's last
    // payload, not yet decoded into `frame` (see `settle`)
    pub(super) deferred: Option<u64>,
    // decoded samples at the codec rate waiting to be played
    pub(super) fifo_len: usize,
    pub(super) vad: TalkDetector,
    pub(super) stats: ReceiverStats,
    pub(super) jb: JitterBuffer,
    pub(super) decoder: Decoder,
    pub(super) inband: Option<InbandDetector>,
    pub(super) prompts: std::collections::VecDeque<Sound>,
    // playing: samples, position in 8 kHz samples, and whether it is the music
    pub(super) playing: Option<(Sound, usize, bool)>,
    // loop music on hold whenever no prompt is queued
    pub(super) moh: Option<Sound>,
    pub(super) frame: Vec<i16>, // this tick's input at the room rate
    // --- the rest: talkers, losses, signalling
    pub(super) id: LegId,
    pub(super) encoder: Encoder,
    pub(super) fifo: Vec<i16>,
    pub(super) last: Vec<i16>,
    pub(super) up: Upsampler,
    pub(super) down: Downsampler,
    pub(super) dtmf_events: EventTracker,
    // key presses being sent to the peer (RFC 4733), while there are any
    pub(super) dtmf_out: Option<Box<rtp::DtmfSender>>,
    /// what it says, being kept (a name said on entry)
    pub(super) capture: Option<Box<Capture>>,
    // who it hears and who hears it, when not everyone
    pub(super) relation: Option<Box<crate::media::contract::Relation>>,
    // what the room does to its voice, and the state for it (made the first
    // time the leg is mixed: most legs only listen)
    pub(super) treatment: Treatment,
    voice: Option<Box<Voice>>,
    // the bytes of a packet time other than a tick, until they fill a packet
    packetizer: Option<Box<Packetizer>>,
}

/// What a G.711 or G.722 leg with a packet time other than 20 ms has encoded
/// and not yet sent: the ticks' payloads run together and cut at `ptime`.
struct Packetizer {
    buf: [u8; 2 * 8 * 60],
    len: usize,
    // RTP time of `buf[0]`, and whether the next packet starts a talkspurt
    ts: u32,
    marker: bool,
}

/// A talker's treatment state: its suppressor (made when first denoised) and
/// its leveller.
#[derive(Default)]
struct Voice {
    denoiser: Option<Box<Denoiser>>,
    leveller: Leveller,
}

impl LegMedia {
    /// A leg with these parameters, its media travelling on `transport`.
    pub(super) fn new(
        id: LegId,
        transport: Transport,
        params: MediaParams,
        now: Instant,
    ) -> io::Result<LegMedia> {
        let codec_err = |e| io::Error::other(format!("codec: {e}"));
        Ok(LegMedia {
            id,
            transport,
            params,
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
            gain_in: super::mixer::UNITY,
            gain_out: super::mixer::UNITY,
            gained: u64::MAX,
            inband: inband_for(&params),
            up: Upsampler::default(),
            down: Downsampler::default(),
            seq: (params.ssrc >> 8) as u16,
            ts: params.ssrc.rotate_left(7),
            unsent_ticks: 0,
            sent_packets: 0,
            sent_octets: 0,
            stats: ReceiverStats::default(),
            dtmf_events: EventTracker::default(),
            dtmf_out: None,
            capture: None,
            relation: None,
            treatment: Treatment::default(),
            voice: None,
            packetizer: None,
            next_rtcp: now + RTCP_INTERVAL,
            started: now,
            last_rtp: now,
            timed_out: false,
        })
    }

    /// A new offer/answer: new parameters, and the transport told where media
    /// goes now.
    pub(super) fn update(
        &mut self,
        p: MediaParams,
        spec: &TransportSpec,
        now: Instant,
    ) -> io::Result<()> {
        self.settle();
        if p.codec != self.params.codec {
            let codec_err = |e| io::Error::other(format!("codec: {e}"));
            self.decoder = Decoder::new(p.codec).map_err(codec_err)?;
            self.encoder = Encoder::new(p.codec).map_err(codec_err)?;
            self.jb = JitterBuffer::new(p.codec.clock_rate());
            self.fifo_len = 0;
        }
        self.transport.renegotiated(spec, now);
        if inband_for(&p).is_some() != self.inband.is_some() {
            self.inband = inband_for(&p);
        }
        // a new offer/answer (hold, resume, move) starts the timeout afresh
        self.last_rtp = now;
        self.timed_out = false;
        self.params = p;
        Ok(())
    }

    /// Whether what it says may be mixed.
    pub(super) fn contributes(&self) -> bool {
        self.params.peer_direction == Direction::SendRecv && !self.isolated && !self.muted
    }

    /// Muted, but in the mix and sending: what it says is measured, not heard.
    #[inline]
    pub(super) fn muted_but_sending(&self) -> bool {
        self.muted && !self.isolated && self.params.peer_direction == Direction::SendRecv
    }

    /// Add the current prompt's next frame into `out` (room rate); moves to the next
    /// queued prompt at the end of one, and loops the music on hold when nothing is
    /// queued. Returns true when the last queued prompt has just ended.
    pub(super) fn mix_prompt(&mut self, out: &mut [i16]) -> bool {
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
        sound.add_frame(*pos, out);
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

    /// Take one RTP datagram from the peer: a telephone-event, or audio for the
    /// jitter buffer.
    fn on_rtp(&mut self, now: Instant, data: &[u8], events: &mpsc::Sender<(LegId, MediaEvent)>) {
        let Ok(pkt) = RtpPacket::parse(data) else {
            return;
        };
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
            return;
        }
        // comfort noise (RFC 3389): the peer stopped sending speech. It takes
        // its place in the sequence as an empty payload, played as silence,
        // so the pause is neither counted nor concealed as loss. Its level and
        // spectrum are not used: a participant's background is not mixed.
        let cn = pkt.pt == rtp::PT_CN && self.params.pt != rtp::PT_CN;
        if pkt.pt != self.params.pt && !cn {
            return;
        }
        if self.stats.received > 0 && pkt.ssrc != self.stats.ssrc {
            // a new source (re-INVITE, failover): its sequence starts anew
            self.settle();
            self.jb.reset();
        }
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let arrival = (now_ms * u64::from(self.params.codec.clock_rate()) / 1000) as u32;
        self.stats
            .on_packet(pkt.seq, pkt.timestamp, pkt.ssrc, arrival);
        // decoded even when not mixed (isolated during PIN entry): in-band DTMF is
        // read from it
        if self.params.peer_direction.peer_sends() {
            if self.deferred.is_some() && self.jb.would_overwrite_last(pkt.seq) {
                self.settle();
            }
            let payload = if cn { &[][..] } else { pkt.payload };
            self.jb.insert(pkt.seq, pkt.timestamp, payload, now_ms);
        }
    }

    /// Read what arrived since the last tick (as many reads as the transport says
    /// are due); `phase` staggers the slow reads of a room's legs over ticks.
    pub(super) fn poll(
        &mut self,
        now: Instant,
        phase: u64,
        buf: &mut [u8],
        events: &mpsc::Sender<(LegId, MediaEvent)>,
    ) {
        if self.transport.rtcp_due(phase) {
            let now_ms = now.duration_since(self.started).as_millis() as u64;
            while let Some(n) = self.transport.recv_rtcp(buf) {
                if let Some(mid) = rtp::sender_report_ntp_mid(&buf[..n]) {
                    self.stats.on_sender_report(mid, now_ms);
                }
            }
        }
        let due = self.transport.reads_due(phase, self.params.ptime_ms);
        if due == 0 {
            return;
        }
        let mut got = 0;
        for _ in 0..due {
            match self.transport.recv(now, buf) {
                Recv::Packet(n) => {
                    got += 1;
                    self.on_rtp(now, &buf[..n], events);
                }
                Recv::Dropped => got += 1,
                Recv::Empty => break,
            }
        }
        self.transport.polled(got);
    }

    /// Decode this tick's frame into `frame` if `play_out` left it in the jitter
    /// buffer. Whatever reads `frame` (the mix, a recording, concealment) settles
    /// the leg first.
    pub(super) fn settle(&mut self) {
        if self.deferred.take().is_some() {
            let need = (self.params.codec.sample_rate() / 50) as usize;
            let k = self
                .decoder
                .decode(self.jb.last_payload(), &mut self.frame[..need]);
            // an unusable payload is silence, not the frame before
            self.frame[k.min(need)..need].fill(0);
        }
    }

    /// Treat this tick's frame, `n` samples at `rate`, for the mix: denoise it
    /// while the worker's budget for the tick (`denoise_left`) lasts, level it,
    /// apply `volume_in`. Once per tick, however many blocks mix it.
    pub(super) fn treat(&mut self, n: usize, rate: u32, tick: u64, denoise_left: &mut u32) {
        if self.gained == tick {
            return;
        }
        self.gained = tick;
        self.settle();
        let frame = &mut self.frame[..n];
        if self.treatment != Treatment::NONE {
            let voice = self.voice.get_or_insert_with(Box::default);
            if self.treatment.denoise && *denoise_left > 0 {
                *denoise_left -= 1;
                voice
                    .denoiser
                    .get_or_insert_with(Box::default)
                    .process(frame, tick);
            }
            if self.treatment.level {
                voice.leveller.process(frame, rate);
            }
        }
        if self.gain_in != super::mixer::UNITY {
            super::mixer::scale(frame, self.gain_in);
        }
    }

    /// Produce this tick's frame at `room_rate` into `self.frame` (or leave it
    /// `deferred`).
    pub(super) fn play_out(&mut self, room_rate: u32) -> Option<char> {
        let need = (self.params.codec.sample_rate() / 50) as usize;
        let same_rate = self.params.codec.sample_rate() == room_rate;
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

    /// Send one frame's payload as RTP.
    pub(super) fn send(&mut self, payload: &[u8], pkt: &mut [u8]) {
        if !self.transport.can_send() || !self.params.peer_direction.peer_receives() {
            self.unsent_ticks = self.unsent_ticks.saturating_add(1);
            return;
        }
        let per_tick = self.params.codec.clock_rate() / 50;
        // after a pause the timestamp shows the time that passed, and the marker
        // the start of a talkspurt, so the peer's jitter estimate is not thrown
        let resumed = self.unsent_ticks > 0 && self.sent_packets > 0;
        self.ts = self.ts_now();
        self.unsent_ticks = 0;
        if self.dtmf_out.is_some() && self.send_dtmf(pkt, per_tick) {
            // what was held back would go out after the key press, out of time
            if let Some(p) = self.packetizer.as_deref_mut() {
                p.len = 0;
            }
            return;
        }
        let first = self.sent_packets == 0;
        if self.params.ptime_ms != 20 && self.params.codec.byte_per_tick() {
            self.send_packetized(payload, pkt, resumed, per_tick);
            return;
        }
        rtp::write_header(
            pkt,
            self.params.pt,
            first || resumed,
            self.seq,
            self.ts,
            self.params.ssrc,
        );
        pkt[12..12 + payload.len()].copy_from_slice(payload);
        self.transport.send(&pkt[..12 + payload.len()]);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(per_tick);
        self.sent_packets = self.sent_packets.wrapping_add(1);
        self.sent_octets = self.sent_octets.wrapping_add(payload.len() as u32);
    }

    /// This tick's `payload` (one byte a clock tick) into packets of the
    /// offerer's packet time (RFC 4566 `ptime`, 10-60 ms): none, one or more
    /// go out, their timestamps following the bytes; `resumed`: the first tick
    /// after a pause in sending.
    fn send_packetized(&mut self, payload: &[u8], pkt: &mut [u8], resumed: bool, per_tick: u32) {
        let size = (self.params.ptime_ms.clamp(10, 60) * 8) as usize;
        let p = self.packetizer.get_or_insert_with(|| {
            Box::new(Packetizer {
                buf: [0; 2 * 8 * 60],
                len: 0,
                ts: 0,
                marker: true,
            })
        });
        if resumed {
            // a new talkspurt: what was held from before the pause is dropped
            p.len = 0;
            p.marker = true;
        }
        if p.len == 0 {
            p.ts = self.ts;
        }
        let n = payload.len().min(p.buf.len() - p.len);
        p.buf[p.len..p.len + n].copy_from_slice(&payload[..n]);
        p.len += n;
        self.ts = self.ts.wrapping_add(per_tick);
        while p.len >= size {
            rtp::write_header(
                pkt,
                self.params.pt,
                p.marker,
                self.seq,
                p.ts,
                self.params.ssrc,
            );
            pkt[12..12 + size].copy_from_slice(&p.buf[..size]);
            self.transport.send(&pkt[..12 + size]);
            p.buf.copy_within(size..p.len, 0);
            p.len -= size;
            p.ts = p.ts.wrapping_add(size as u32);
            p.marker = false;
            self.seq = self.seq.wrapping_add(1);
            self.sent_packets = self.sent_packets.wrapping_add(1);
            self.sent_octets = self.sent_octets.wrapping_add(size as u32);
        }
    }

    /// The RTP time of the next packet on the sending clock, the ticks it went
    /// unsent included.
    fn ts_now(&self) -> u32 {
        let per_tick = self.params.codec.clock_rate() / 50;
        self.ts
            .wrapping_add(per_tick.wrapping_mul(self.unsent_ticks))
    }

    /// This tick's key-press packet(s) in place of audio, if a digit is being
    /// sent (true: sent, no audio this tick).
    fn send_dtmf(&mut self, pkt: &mut [u8], per_tick: u32) -> bool {
        let (Some(d), Some(pt)) = (self.dtmf_out.as_deref_mut(), self.params.dtmf_pt) else {
            self.dtmf_out = None;
            return false;
        };
        let next = d.tick(self.ts, per_tick);
        if d.idle() && next.is_none() {
            self.dtmf_out = None;
        }
        let Some((p, copies)) = next else {
            return false;
        };
        for _ in 0..copies {
            rtp::write_header(pkt, pt, p.marker, self.seq, p.ts, self.params.ssrc);
            p.event.write(&mut pkt[12..16]);
            self.transport.send(&pkt[..16]);
            self.seq = self.seq.wrapping_add(1);
            self.sent_packets = self.sent_packets.wrapping_add(1);
            self.sent_octets = self.sent_octets.wrapping_add(4);
        }
        self.ts = self.ts.wrapping_add(per_tick);
        true
    }

    /// An RTCP report (SR/RR) every [`RTCP_INTERVAL`].
    pub(super) fn maybe_rtcp(&mut self, now: Instant) {
        if now < self.next_rtcp {
            return;
        }
        self.next_rtcp = now + RTCP_INTERVAL;
        if !self.transport.can_send() {
            return;
        }
        let now_ms = now.duration_since(self.started).as_millis() as u64;
        let ntp = ntp_now();
        let sender = (self.sent_packets > 0).then_some((
            ntp,
            self.ts_now(),
            self.sent_packets,
            self.sent_octets,
        ));
        let mut out = [0u8; 128];
        let n = rtp::write_report(
            &mut out,
            self.params.ssrc,
            sender,
            Some(&mut self.stats),
            now_ms,
        );
        self.transport.send_rtcp(&out[..n]);
    }
}

fn ntp_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    (secs << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// RTP packets counted by a worker: its live legs' counts plus those of the legs
/// it has closed, so that what it reports only ever grows (Prometheus counters).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RtpTotals {
    /// packets received
    pub(super) received: u64,
    /// packets lost (RFC 3550 cumulative)
    pub(super) lost: i64,
    /// packets from sources not learned
    pub(super) strays: u64,
}

impl RtpTotals {
    /// A leg's counts so far.
    pub(super) fn of(leg: &LegMedia) -> RtpTotals {
        RtpTotals {
            received: leg.stats.received,
            lost: if leg.stats.received > 0 {
                leg.stats.cumulative_lost().max(0)
            } else {
                0
            },
            strays: leg.transport.strays(),
        }
    }

    /// Add another's counts.
    pub(super) fn add(&mut self, o: RtpTotals) {
        self.received += o.received;
        self.lost += o.lost;
        self.strays += o.strays;
    }
}

/// What a leg says for a while, kept in memory at 8 kHz (its buffer is made
/// whole when the capture is asked for, not per packet).
pub struct Capture {
    samples: Vec<i16>,
    want: usize,
    down: super::resample::Downsampler,
    narrow: [i16; 160],
}

impl Capture {
    /// Keep `ms` milliseconds.
    pub fn new(ms: u32) -> Capture {
        let want = (ms.clamp(20, 30_000) as usize / 20) * 160;
        Capture {
            samples: Vec::with_capacity(want),
            want,
            down: super::resample::Downsampler::default(),
            narrow: [0; 160],
        }
    }

    /// One tick of the leg's audio at the room's rate (silence when it sent
    /// none); the samples once there are enough.
    pub fn push(&mut self, frame: Option<&[i16]>) -> Option<Vec<i16>> {
        match frame {
            Some(f) if f.len() == 160 => self.samples.extend_from_slice(f),
            // a wideband room (16 or 48 kHz): the resampler takes the factor
            // from the lengths
            Some(f) if f.len() == 320 || f.len() == 960 => {
                self.down.process(f, &mut self.narrow);
                self.samples.extend_from_slice(&self.narrow);
            }
            _ => self.samples.resize(self.samples.len() + 160, 0),
        }
        (self.samples.len() >= self.want).then(|| std::mem::take(&mut self.samples))
    }
}

#[cfg(test)]
mod prompt_tests {
    use super::*;
    use crate::media::prompt::{Prompt, Prompts};

    /// A leg on hold that is told something (e.g. "the moderator has not arrived")
    /// reports the end of that prompt although its music goes on.
    #[test]
    fn prompt_done_while_music_loops() {
        let prompts = Prompts::embedded();
        let params = MediaParams {
            codec: crate::sdp::CodecKind::Pcmu,
            pt: 0,
            dtmf_pt: Some(101),
            peer_direction: Direction::SendRecv,
            ssrc: 1,
            ptime_ms: 20,
        };
        let port = Transport::Mem(crate::media::transport::MemPort::new());
        let mut leg = LegMedia::new(LegId(1), port, params, Instant::now()).unwrap();
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
