//! RTP and RTCP packets (RFC 3550 §5, §6.4) and DTMF telephone-events (RFC 4733 §2.3):
//! zero-copy parsing of what arrives, writing headers into caller-owned buffers, and
//! the receiver statistics (extended sequence, loss, interarrival jitter, RFC 3550
//! Appendix A.1/A.3/A.8) that RTCP reports carry. No allocation.

/// Comfort noise's static payload type (RFC 3389 §4, RFC 3551 table 4).
pub const PT_CN: u8 = 13;

/// A parsed RTP packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// payload type
    pub pt: u8,
    /// marker bit
    pub marker: bool,
    /// sequence number
    pub seq: u16,
    /// media timestamp
    pub timestamp: u32,
    /// synchronisation source
    pub ssrc: u32,
    /// payload without padding
    pub payload: &'a [u8],
}

/// Why a datagram is not RTP we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// shorter than its headers say
    #[error("truncated packet")]
    Truncated,
    /// version is not 2
    #[error("not RTP version 2")]
    Version,
}

impl<'a> RtpPacket<'a> {
    /// Parse an RTP datagram (CSRCs, extension and padding skipped).
    pub fn parse(d: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if d.len() < 12 {
            return Err(RtpError::Truncated);
        }
        if d[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let cc = usize::from(d[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if d[0] & 0x10 != 0 {
            let ext = d.get(off + 2..off + 4).ok_or(RtpError::Truncated)?;
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut end = d.len();
        if d[0] & 0x20 != 0 {
            let pad = usize::from(d[end - 1]);
            end = end.checked_sub(pad).ok_or(RtpError::Truncated)?;
        }
        if off > end {
            return Err(RtpError::Truncated);
        }
        Ok(RtpPacket {
            pt: d[1] & 0x7f,
            marker: d[1] & 0x80 != 0,
            seq: u16::from_be_bytes([d[2], d[3]]),
            timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            payload: &d[off..end],
        })
    }
}

/// Write a 12-byte RTP header into `out[..12]`.
pub fn write_header(out: &mut [u8], pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) {
    out[0] = 0x80;
    out[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// event code: 0-9, 10 = '*', 11 = '#', 12-15 = A-D, 16 = flash
    pub event: u8,
    /// E bit
    pub end: bool,
    /// volume (dBm0 below 0)
    pub volume: u8,
    /// duration in timestamp units
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse the 4-byte payload.
    pub fn parse(p: &[u8]) -> Option<TelephoneEvent> {
        if p.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3f,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    /// The DTMF digit, if the event is one.
    pub fn digit(&self) -> Option<char> {
        Some(match self.event {
            0..=9 => (b'0' + self.event) as char,
            10 => '*',
            11 => '#',
            12..=15 => (b'A' + self.event - 12) as char,
            _ => return None,
        })
    }
}

impl TelephoneEvent {
    /// The event code of a DTMF digit (0-9, *, #, A-D).
    pub fn code(digit: char) -> Option<u8> {
        Some(match digit.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            d @ 'A'..='D' => d as u8 - b'A' + 12,
            _ => return None,
        })
    }

    /// The 4-byte payload.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = self.event;
        out[1] = (u8::from(self.end) << 7) | (self.volume & 0x3f);
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
    }
}

/// Key presses sent as RFC 4733 events (§2.5), one packet per 20 ms tick in
/// place of audio: each digit lasts [`DtmfSender::TONE_TICKS`] ticks, its last
/// packet (the end bit set) sent three times, then [`DtmfSender::GAP_TICKS`]
/// ticks of audio before the next digit.
#[derive(Debug, Clone, Default)]
pub struct DtmfSender {
    queue: std::collections::VecDeque<u8>,
    /// the digit being sent: event, its start timestamp, ticks sent
    current: Option<(u8, u32, u16)>,
    /// ticks of audio still owed after the last digit
    gap: u16,
}

/// What a tick sends instead of audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// the payload
    pub event: TelephoneEvent,
    /// RTP timestamp (the event's start)
    pub ts: u32,
    /// the first packet of the event
    pub marker: bool,
}

impl DtmfSender {
    /// Ticks a digit is held.
    pub const TONE_TICKS: u16 = 5;
    /// Ticks between two digits.
    pub const GAP_TICKS: u16 = 3;
    /// Digits queued at most.
    pub const MAX_QUEUED: usize = 64;

    /// Queue event codes; beyond [`Self::MAX_QUEUED`] they are dropped.
    pub fn push(&mut self, codes: &[u8]) {
        let room = Self::MAX_QUEUED.saturating_sub(self.queue.len());
        self.queue.extend(codes.iter().take(room));
    }

    /// Nothing queued or playing.
    pub fn idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    /// This tick's event packet(s), or None for audio. `ts` is the stream's
    /// timestamp now, `per_tick` its increment per 20 ms. The end of a digit
    /// comes as three packets at once.
    pub fn tick(&mut self, ts: u32, per_tick: u32) -> Option<(EventPacket, u8)> {
        if self.current.is_none() {
            if self.gap > 0 {
                self.gap -= 1;
                return None;
            }
            let ev = self.queue.pop_front()?;
            self.current = Some((ev, ts, 0));
        }
        let (event, start, sent) = self.current.as_mut()?;
        *sent += 1;
        let end = *sent >= Self::TONE_TICKS;
        let duration = (u32::from(*sent) * per_tick).min(u32::from(u16::MAX)) as u16;
        let p = EventPacket {
            event: TelephoneEvent {
                event: *event,
                end,
                volume: 10,
                duration,
            },
            ts: *start,
            marker: *sent == 1,
        };
        if end {
            self.current = None;
            self.gap = Self::GAP_TICKS;
        }
        Some((p, if end { 3 } else { 1 }))
    }
}

/// Turns the packets of RFC 4733 events into key presses, each reported once: the
/// packets of one event share its RTP timestamp and repeat (the end packet three
/// times). A packet starts a new press when its timestamp or event differs, or when it
/// is not an end packet after the current event has ended (a sender replaying
/// recorded events may reuse timestamps).
#[derive(Debug, Default, Clone)]
pub struct EventTracker {
    current: Option<(u32, u8, bool)>,
}

impl EventTracker {
    /// The digit, if this packet starts a key press.
    pub fn on_packet(&mut self, ts: u32, ev: &TelephoneEvent) -> Option<char> {
        let new = match self.current {
            None => true,
            Some((t, e, ended)) => t != ts || e != ev.event || (ended && !ev.end),
        };
        if new {
            self.current = Some((ts, ev.event, ev.end));
            ev.digit()
        } else {
            if let Some(c) = &mut self.current {
                c.2 |= ev.end;
            }
            None
        }
    }
}

/// Receive-side statistics for one source (RFC 3550 Appendix A.1, A.3, A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    /// packets received
    pub received: u64,
    expected_prior: u32,
    received_prior: u64,
    transit: i64,
    jitter_q4: u64,
    /// SSRC of the source
    pub ssrc: u32,
    last_sr: u32,
    last_sr_at_ms: Option<u64>,
}

impl ReceiverStats {
    /// Account a packet that arrived at `arrival` (in RTP clock units).
    pub fn on_packet(&mut self, seq: u16, ts: u32, ssrc: u32, arrival: u32) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceiverStats {
                started: true,
                base_seq: u32::from(seq),
                max_seq: seq,
                ssrc,
                ..Default::default()
            };
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
        let transit = i64::from(arrival.wrapping_sub(ts) as i32);
        if self.received > 1 {
            let d = (transit - self.transit).unsigned_abs();
            // J += (|D| - J) / 16, in Q4 fixed point as in A.8
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = transit;
    }

    /// Extended highest sequence number.
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets lost so far (may be negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        let expected = i64::from(self.extended_max().wrapping_sub(self.base_seq)) + 1;
        expected - self.received as i64
    }

    /// Interarrival jitter in RTP clock units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// Remember a received SR for LSR/DLSR.
    pub fn on_sender_report(&mut self, ntp_mid: u32, now_ms: u64) {
        self.last_sr = ntp_mid;
        self.last_sr_at_ms = Some(now_ms);
    }

    /// Write a report block (RFC 3550 §6.4.1) into `out[..24]`, updating the interval.
    pub fn report_block(&mut self, out: &mut [u8], now_ms: u64) {
        let expected = self.extended_max().wrapping_sub(self.base_seq) + 1;
        let exp_int = expected.wrapping_sub(self.expected_prior);
        let rec_int = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_int = i64::from(exp_int) - rec_int as i64;
        let fraction = if exp_int == 0 || lost_int <= 0 {
            0
        } else {
            ((lost_int << 8) / i64::from(exp_int)).min(255) as u8
        };
        let cum = self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4] = fraction;
        out[5..8].copy_from_slice(&cum.to_be_bytes()[1..4]);
        out[8..12].copy_from_slice(&self.extended_max().to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter().to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        let dlsr = self
            .last_sr_at_ms
            .map(|t| ((now_ms.saturating_sub(t)) * 65536 / 1000) as u32)
            .unwrap_or(0);
        out[20..24].copy_from_slice(&dlsr.to_be_bytes());
    }
}

/// Write an RTCP compound packet (SR or RR, plus SDES CNAME) into `out`; returns its
/// length. `sender` is (NTP time, RTP timestamp, packets, octets) if we have sent.
pub fn write_report(
    out: &mut [u8; 128],
    ssrc: u32,
    sender: Option<(u64, u32, u32, u32)>,
    stats: Option<&mut ReceiverStats>,
    now_ms: u64,
) -> usize {
    let rc = u8::from(stats.as_ref().is_some_and(|s| s.received > 0));
    let mut n = 8;
    out[0] = 0x80 | rc;
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    if let Some((ntp, rtp_ts, packets, octets)) = sender {
        out[1] = 200;
        out[8..16].copy_from_slice(&ntp.to_be_bytes());
        out[16..20].copy_from_slice(&rtp_ts.to_be_bytes());
        out[20..24].copy_from_slice(&packets.to_be_bytes());
        out[24..28].copy_from_slice(&octets.to_be_bytes());
        n = 28;
    } else {
        out[1] = 201;
    }
    if rc == 1
        && let Some(s) = stats
    {
        s.report_block(&mut out[n..n + 24], now_ms);
        n += 24;
    }
    let words = (n / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    // SDES with one CNAME item, padded to a word boundary
    let cname = b"caucus";
    let start = n;
    out[n] = 0x81;
    out[n + 1] = 202;
    out[n + 4..n + 8].copy_from_slice(&ssrc.to_be_bytes());
    out[n + 8] = 1;
    out[n + 9] = cname.len() as u8;
    out[n + 10..n + 10 + cname.len()].copy_from_slice(cname);
    n += 10 + cname.len();
    out[n] = 0; // end of items
    n += 1;
    while n % 4 != 0 {
        out[n] = 0;
        n += 1;
    }
    let words = ((n - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    n
}

/// From an incoming RTCP compound packet, the middle 32 bits of the NTP time of a
/// sender report, if it starts with one.
pub fn sender_report_ntp_mid(d: &[u8]) -> Option<u32> {
    if d.len() < 28 || d[0] >> 6 != 2 || d[1] != 200 {
        return None;
    }
    Some(u32::from_be_bytes([d[10], d[11], d[12], d[13]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_round_trip() {
        let mut b = [0u8; 16];
        write_header(&mut b, 8, true, 65535, 160, 0xdead_beef);
        b[12..].copy_from_slice(b"abcd");
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            (p.pt, p.marker, p.seq, p.timestamp, p.ssrc),
            (8, true, 65535, 160, 0xdead_beef)
        );
        assert_eq!(p.payload, b"abcd");
        assert_eq!(RtpPacket::parse(&b[..5]), Err(RtpError::Truncated));
        let mut pad = b;
        pad[0] |= 0x20;
        pad[15] = 200;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::Truncated));
    }

    #[test]
    fn dtmf_sender_holds_each_digit_then_ends_it_three_times() {
        let mut d = DtmfSender::default();
        d.push(&[
            TelephoneEvent::code('1').unwrap(),
            TelephoneEvent::code('#').unwrap(),
        ]);
        let mut ts = 1000u32;
        let mut seen = Vec::new();
        for _ in 0..20 {
            match d.tick(ts, 160) {
                Some((p, n)) => {
                    let mut b = [0u8; 4];
                    p.event.write(&mut b);
                    assert_eq!(TelephoneEvent::parse(&b), Some(p.event));
                    seen.push((
                        p.event.event,
                        p.ts,
                        p.marker,
                        p.event.end,
                        p.event.duration,
                        n,
                    ));
                }
                None => seen.push((255, ts, false, false, 0, 0)),
            }
            ts += 160;
        }
        assert_eq!(seen[0], (1, 1000, true, false, 160, 1));
        assert_eq!(seen[4], (1, 1000, false, true, 800, 3));
        assert_eq!(seen[5].0, 255, "a gap of audio");
        assert_eq!(seen[8], (11, 1000 + 8 * 160, true, false, 160, 1));
        assert!(seen[12].3);
        assert!(d.idle());
        assert_eq!(TelephoneEvent::code('x'), None);
    }

    #[test]
    fn telephone_event() {
        let e = TelephoneEvent::parse(&[11, 0x8a, 0x03, 0x20]).unwrap();
        assert_eq!(e.digit(), Some('#'));
        assert!(e.end);
        assert_eq!(e.duration, 800);
    }

    #[test]
    fn each_press_once() {
        let ev = |event, end, duration| TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        };
        let mut t = EventTracker::default();
        let mut got = Vec::new();
        // '1' with three end packets, then '2' at a new timestamp
        for (ts, e) in [
            (100, ev(1, false, 160)),
            (100, ev(1, false, 320)),
            (100, ev(1, true, 480)),
            (100, ev(1, true, 480)),
            (100, ev(1, true, 480)),
            (900, ev(2, false, 160)),
            (900, ev(2, true, 320)),
        ] {
            got.extend(t.on_packet(ts, &e));
        }
        // a replayed recording: '2' again with the same timestamp
        got.extend(t.on_packet(900, &ev(2, false, 160)));
        got.extend(t.on_packet(900, &ev(2, true, 320)));
        assert_eq!(got, vec!['1', '2', '2']);
    }

    #[test]
    fn loss_and_wrap() {
        let mut s = ReceiverStats::default();
        for (i, seq) in [65533u16, 65534, 65535, 1, 2].iter().enumerate() {
            s.on_packet(*seq, i as u32 * 160, 1, i as u32 * 160);
        }
        assert_eq!(s.extended_max(), 65536 + 2);
        assert_eq!(s.cumulative_lost(), 1);
        assert_eq!(s.jitter(), 0);
        let mut out = [0u8; 128];
        let n = write_report(&mut out, 9, None, Some(&mut s), 0);
        assert_eq!(n % 4, 0);
        assert_eq!(out[1], 201);
        assert_eq!(out[0] & 0x1f, 1);
    }
}
