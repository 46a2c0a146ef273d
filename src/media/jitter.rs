//! Adaptive jitter buffer for one RTP stream: reorders by sequence number, drops
//! duplicates and packets that come too late, reports gaps as losses for concealment,
//! and holds a playout depth between 20 and 200 ms that follows the interarrival
//! jitter (RFC 3550 §6.4.1 estimator). Fixed capacity, buffers reused: the payloads
//! live in one block of `CAP` equal strides, which grows (the only allocation) when a
//! packet longer than any before arrives; so a slot's payload is at an address known
//! from the buffer alone, which the media loop prefetches a leg ahead.

use super::prefetch;

/// Slots; a power of two so that `seq % CAP` is a mask. 32 × 20 ms covers 640 ms.
const CAP: usize = 32;
const MIN_TARGET_MS: u32 = 20;
const MAX_TARGET_MS: u32 = 200;

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    used: bool,
    seq: u16,
    // payload length; the payload is `data[slot * stride..][..len]`
    len: u16,
    ts: u32,
}

/// What the playout side gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Pull<'a> {
    /// the next packet's payload and RTP timestamp
    Packet(&'a [u8], u32),
    /// the next packet is missing while later ones are here: conceal one packet
    Lost,
    /// nothing to play (not started, or ran dry: rebuffering)
    Empty,
}

/// Per-stream counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// duplicates dropped
    pub duplicates: u64,
    /// arrived after their playout time
    pub late: u64,
    /// concealed gaps
    pub lost: u64,
}

/// The buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    slots: Vec<Slot>,
    data: Vec<u8>,
    stride: usize,
    next_seq: Option<u16>,
    playing: bool,
    played_any: bool,
    late_run: u32,
    count: usize,
    clock_khz: u32,
    packet_ms: u32,
    last_transit: Option<i64>,
    jitter_q4: u64,
    // the slot of the packet `pull` returned last; its data stays until the
    // sequence number comes round again
    last_pulled: usize,
    /// counters
    pub stats: JitterStats,
}

fn before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

impl JitterBuffer {
    /// A buffer for a stream with this RTP clock rate.
    pub fn new(clock_rate: u32) -> JitterBuffer {
        JitterBuffer {
            slots: vec![Slot::default(); CAP],
            data: Vec::new(),
            stride: 0,
            next_seq: None,
            playing: false,
            played_any: false,
            late_run: 0,
            count: 0,
            clock_khz: (clock_rate / 1000).max(1),
            packet_ms: 20,
            last_transit: None,
            jitter_q4: 0,
            last_pulled: 0,
            stats: JitterStats::default(),
        }
    }

    /// Current playout target in ms (20..=200), from the measured jitter.
    pub fn target_ms(&self) -> u32 {
        let jitter_ms = (self.jitter_q4 >> 4) as u32 / self.clock_khz;
        (MIN_TARGET_MS + 3 * jitter_ms).clamp(MIN_TARGET_MS, MAX_TARGET_MS)
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forget everything: the stream restarted (new SSRC, or a jump backwards).
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.used = false;
        }
        self.count = 0;
        self.next_seq = None;
        self.playing = false;
        self.played_any = false;
        self.late_run = 0;
        // the jump itself is not network jitter
        self.last_transit = None;
    }

    /// Store a packet; `arrival_ms` is the receive time used for the jitter estimate.
    pub fn insert(&mut self, seq: u16, ts: u32, payload: &[u8], arrival_ms: u64) {
        match self.next_seq {
            None => self.next_seq = Some(seq),
            Some(next) if before(seq, next) => {
                let far = next.wrapping_sub(seq) as usize >= CAP;
                if self.played_any || far {
                    self.stats.late += 1;
                    // a run of packets from far behind is a sender that restarted
                    // its sequence numbers: follow it rather than drop it for good
                    self.late_run = if far { self.late_run + 1 } else { 0 };
                    if self.late_run < 4 {
                        return;
                    }
                    self.reset();
                    self.next_seq = Some(seq);
                } else {
                    // reordered start: play from the earliest packet
                    self.next_seq = Some(seq);
                }
            }
            Some(next) if seq.wrapping_sub(next) as usize >= CAP => {
                // a jump beyond the window: the stream restarted
                self.reset();
                self.next_seq = Some(seq);
            }
            Some(_) => {}
        }
        self.late_run = 0;
        // RFC 3550 §6.4.1 interarrival jitter, from packets we keep
        let transit = (arrival_ms as i64) * i64::from(self.clock_khz) - i64::from(ts);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).unsigned_abs().min(1 << 20);
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        let slot = &mut self.slots[usize::from(seq) % CAP];
        if slot.used {
            if slot.seq == seq {
                self.stats.duplicates += 1;
                return;
            }
            self.count -= 1;
        }
        slot.used = true;
        slot.seq = seq;
        slot.ts = ts;
        // an RTP payload fits a UDP datagram, far below u16::MAX
        let len = payload.len().min(usize::from(u16::MAX));
        slot.len = len as u16;
        if len > self.stride {
            self.grow(len);
        }
        let at = usize::from(seq) % CAP * self.stride;
        self.data[at..at + len].copy_from_slice(&payload[..len]);
        self.count += 1;
        self.learn_packet_time(seq, ts);
    }

    /// Widen every slot to hold `len` bytes, keeping what they hold (the last
    /// pulled payload too).
    fn grow(&mut self, len: usize) {
        // whole cache lines, so that a payload starts a line where the block does
        let stride = len.div_ceil(64) * 64;
        let mut data = vec![0u8; CAP * stride];
        if self.stride > 0 {
            for (new, old) in data
                .chunks_exact_mut(stride)
                .zip(self.data.chunks_exact(self.stride))
            {
                new[..self.stride].copy_from_slice(old);
            }
        }
        self.data = data;
        self.stride = stride;
    }

    fn payload(&self, idx: usize) -> &[u8] {
        let at = idx * self.stride;
        &self.data[at..at + usize::from(self.slots[idx].len)]
    }

    /// Start loading what the next [`insert`](Self::insert) and
    /// [`pull`](Self::pull) will touch (their slots and payloads), if the
    /// stream goes on in order.
    pub fn prefetch(&self) {
        let Some(next) = self.next_seq else { return };
        let pull = usize::from(next) % CAP;
        let insert = (pull + self.count) % CAP;
        for idx in [pull, insert] {
            prefetch::lines(self.slots.as_ptr().wrapping_add(idx), 1);
            prefetch::lines(
                self.data.as_ptr().wrapping_add(idx * self.stride),
                self.stride,
            );
        }
    }

    fn learn_packet_time(&mut self, seq: u16, ts: u32) {
        let prev = &self.slots[usize::from(seq.wrapping_sub(1)) % CAP];
        if prev.used && prev.seq == seq.wrapping_sub(1) {
            let ms = ts.wrapping_sub(prev.ts) / self.clock_khz;
            if (10..=60).contains(&ms) {
                self.packet_ms = ms;
            }
        }
    }

    /// The payload [`pull`](Self::pull) would return now, if it would return one.
    pub fn peek(&self) -> Option<&[u8]> {
        let next = self.next_seq?;
        if !self.playing && (self.count as u32) * self.packet_ms < self.target_ms() {
            return None;
        }
        let idx = usize::from(next) % CAP;
        let s = &self.slots[idx];
        (s.used && s.seq == next).then(|| self.payload(idx))
    }

    /// The payload of the packet last returned by [`pull`](Self::pull), still
    /// held (it is overwritten only when its slot is reused, `CAP` packets later).
    pub fn last_payload(&self) -> &[u8] {
        self.payload(self.last_pulled)
    }

    /// Whether inserting `seq` would overwrite the payload
    /// [`last_payload`](Self::last_payload) returns.
    pub fn would_overwrite_last(&self, seq: u16) -> bool {
        usize::from(seq) % CAP == self.last_pulled
    }

    /// Take the next thing to play.
    pub fn pull(&mut self) -> Pull<'_> {
        let Some(next) = self.next_seq else {
            return Pull::Empty;
        };
        if !self.playing {
            if (self.count as u32) * self.packet_ms < self.target_ms() {
                return Pull::Empty;
            }
            self.playing = true;
        }
        let idx = usize::from(next) % CAP;
        if self.slots[idx].used && self.slots[idx].seq == next {
            self.slots[idx].used = false;
            self.played_any = true;
            self.count -= 1;
            self.next_seq = Some(next.wrapping_add(1));
            self.last_pulled = idx;
            let ts = self.slots[idx].ts;
            return Pull::Packet(self.payload(idx), ts);
        }
        if self.count > 0 {
            self.stats.lost += 1;
            self.next_seq = Some(next.wrapping_add(1));
            return Pull::Lost;
        }
        // ran dry: build up the target depth again before playing
        self.playing = false;
        Pull::Empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(jb: &mut JitterBuffer) -> Vec<Option<u32>> {
        let mut out = Vec::new();
        loop {
            match jb.pull() {
                Pull::Packet(p, _) => out.push(Some(u32::from(p[0]))),
                Pull::Lost => out.push(None),
                Pull::Empty => return out,
            }
        }
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let mut jb = JitterBuffer::new(8000);
        for (i, seq) in [3u16, 1, 2, 2, 5, 4].iter().enumerate() {
            jb.insert(*seq, u32::from(*seq) * 160, &[*seq as u8], 20 * i as u64);
        }
        assert_eq!(jb.stats.duplicates, 1);
        assert_eq!(
            drain(&mut jb),
            vec![Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
        // too late after playout moved on
        jb.insert(3, 480, &[3], 200);
        jb.insert(6, 960, &[6], 200);
        assert_eq!(jb.stats.late, 1);
    }

    #[test]
    fn follows_a_sender_that_restarts_its_sequence() {
        let mut jb = JitterBuffer::new(8000);
        for seq in 1000u16..1010 {
            jb.insert(seq, u32::from(seq) * 160, &[1], 0);
        }
        assert_eq!(drain(&mut jb).len(), 10);
        // the sender starts over at 100: a few are dropped, then it is followed
        for seq in 100u16..110 {
            jb.insert(seq, u32::from(seq) * 160, &[2], 0);
        }
        let got = drain(&mut jb);
        assert!(got.len() >= 6, "{got:?}");
        assert!(got.iter().all(|g| *g == Some(2)));
    }

    #[test]
    fn gap_is_lost_and_wraps() {
        let mut jb = JitterBuffer::new(8000);
        for seq in [65534u16, 65535, 1] {
            jb.insert(seq, u32::from(seq.wrapping_add(2)) * 160, &[seq as u8], 0);
        }
        assert_eq!(drain(&mut jb), vec![Some(254), Some(255), None, Some(1)]);
    }

    #[test]
    fn a_longer_packet_widens_the_slots_and_keeps_what_they_hold() {
        let mut jb = JitterBuffer::new(8000);
        jb.insert(1, 160, &[1; 10], 0);
        jb.insert(2, 320, &[2; 10], 20);
        assert!(matches!(jb.pull(), Pull::Packet(p, 160) if p == [1; 10]));
        // wider than a stride: every slot moves, the last pulled one too
        jb.insert(3, 480, &[3; 200], 40);
        assert_eq!(jb.last_payload(), [1; 10]);
        assert!(matches!(jb.pull(), Pull::Packet(p, 320) if p == [2; 10]));
        assert!(matches!(jb.pull(), Pull::Packet(p, 480) if p == [3; 200]));
        // an empty payload is a packet too
        jb.insert(4, 640, &[], 60);
        jb.prefetch();
        assert!(matches!(jb.pull(), Pull::Packet(p, 640) if p.is_empty()));
    }

    #[test]
    fn target_grows_with_jitter() {
        let mut jb = JitterBuffer::new(8000);
        assert_eq!(jb.target_ms(), 20);
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 60 };
            jb.insert(i as u16, i * 160, &[0], u64::from(i * 20 + wobble));
            while jb.len() > 16 {
                let _ = jb.pull();
            }
        }
        assert!(jb.target_ms() > 100, "{}", jb.target_ms());
        assert!(jb.target_ms() <= 200);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_arrival_order_plays_in_order(perm in Just((0u16..20).collect::<Vec<_>>()).prop_shuffle()) {
            let mut jb = JitterBuffer::new(8000);
            for &s in &perm { jb.insert(s, u32::from(s) * 160, &[s as u8], 0); }
            // a shuffled start may begin at a later seq than 0 only if 0 came after
            // playout started; here nothing was pulled, so all must come out in order.
            let got: Vec<u32> = drain(&mut jb).into_iter().flatten().collect();
            let want: Vec<u32> = (0..20).collect();
            prop_assert_eq!(got, want);
        }
    }
}
