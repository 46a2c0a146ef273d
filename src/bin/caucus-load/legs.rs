//! The generated legs: their tones (encoded once), their RTP counters, and
//! their call set-up over SIP (INVITEs with at most 100 unanswered, Timer A
//! retransmissions, ACKs).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use caucus::media::{g711, opus};
use caucus::sip::Message;

use super::Codec;

/// One generated leg.
pub(crate) struct Leg {
    pub(crate) room: usize,
    pub(crate) call_id: String,
    pub(crate) to_tag: String,
    pub(crate) bridge_rtp: Option<SocketAddr>,
    pub(crate) talker: Option<usize>, // which tone
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    // receive statistics
    pub(crate) first_seq: Option<u16>,
    pub(crate) cycles: u32,
    pub(crate) max_seq: u16,
    pub(crate) received: u64,
    pub(crate) transit: Option<u32>,
    pub(crate) jitter: f64,
}

pub(crate) const TONES: [f64; 5] = [440.0, 700.0, 1100.0, 1300.0, 1700.0];
pub(crate) const PROBE_TONE: f64 = 2000.0;

/// Payloads for one second (50 frames) of a tone, encoded once.
pub(crate) fn tone_payloads(codec: Codec, freq: f64) -> Vec<Vec<u8>> {
    let rate = if codec == Codec::Opus { 48000 } else { 8000 };
    let n = rate / 50;
    let mut enc = (codec == Codec::Opus).then(|| opus::Encoder::new(5).unwrap());
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..n)
                .map(|i| {
                    let t = (f * n + i) as f64 / rate as f64;
                    if freq == 0.0 {
                        0
                    } else {
                        (5000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
                    }
                })
                .collect();
            match &mut enc {
                Some(e) => {
                    let mut out = vec![0u8; 1500];
                    let len = e.encode(&pcm, &mut out).unwrap();
                    out.truncate(len);
                    out
                }
                None => {
                    let mut out = vec![0u8; n];
                    g711::encode_ulaw(&pcm, &mut out);
                    out
                }
            }
        })
        .collect()
}

/// How the generator signals: its socket, the bridge, what its SDP offers,
/// and legs by Call-ID.
pub(crate) struct Signalling<'a> {
    pub(crate) sock: &'a UdpSocket,
    /// the socket's address
    pub(crate) local: SocketAddr,
    pub(crate) bridge: SocketAddr,
    /// where the generator's RTP goes and comes from (one socket for every leg)
    pub(crate) media_port: u16,
    pub(crate) pt: u8,
    pub(crate) rtpmap: &'static str,
    /// " 101" and its rtpmap line when telephone-event is offered, else empty
    pub(crate) te: (String, String),
    pub(crate) by_call: &'a HashMap<String, usize>,
}

impl Signalling<'_> {
    /// The INVITE of leg `i`.
    pub(crate) fn invite(&self, i: usize, l: &Leg) -> String {
        let local = self.local;
        let (pt, rtpmap, (te_pt, te_map)) = (self.pt, self.rtpmap, &self.te);
        let body = format!(
            "v=0\r\no=load {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}{te_pt}\r\n{rtpmap}\r\n{te_map}a=ptime:20\r\n",
            self.media_port
        );
        format!(
            "INVITE sip:r{}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load{i}@127.0.0.1>;tag=f{i}\r\nTo: <sip:r{}@127.0.0.1>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:load@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            l.room,
            self.bridge,
            l.room,
            l.call_id,
            body.len()
        )
    }

    /// An ACK or BYE in leg `i`'s dialog.
    pub(crate) fn ack_or_bye(&self, method: &str, cseq: u32, i: usize, l: &Leg) -> String {
        let local = self.local;
        format!(
            "{method} sip:caucus@{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{i}\r\nMax-Forwards: 70\r\nFrom: <sip:load{i}@127.0.0.1>;tag=f{i}\r\nTo: <sip:r{}@127.0.0.1>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.bridge, l.room, l.to_tag, l.call_id
        )
    }
}

/// Call set-up in progress: INVITEs out (at most 100 unanswered), Timer A
/// retransmissions, answers taken.
pub(crate) struct Setup {
    pub(crate) sent_at: Vec<Option<Instant>>,
    pub(crate) answered: Vec<bool>,
    pub(crate) setup_ms: Vec<f64>,
    pub(crate) failures: usize,
    pub(crate) refused: usize,
    pub(crate) next: usize,
    pub(crate) done: usize,
    pub(crate) last_retx: Instant,
}

impl Setup {
    pub(crate) fn new(n: usize) -> Setup {
        Setup {
            sent_at: vec![None; n],
            answered: vec![false; n],
            setup_ms: Vec::with_capacity(n),
            failures: 0,
            refused: 0,
            next: 0,
            done: 0,
            last_retx: Instant::now(),
        }
    }

    /// Send the INVITEs of legs below `allowed`, retransmit, take what has come
    /// back; returns the legs answered now.
    pub(crate) fn step(
        &mut self,
        legs: &mut [Leg],
        allowed: usize,
        sip: &Signalling<'_>,
        buf: &mut [u8],
    ) -> Vec<usize> {
        let (sig, bridge, by_call) = (sip.sock, sip.bridge, sip.by_call);
        while self.next < allowed && self.next - self.done < 100 {
            sig.send_to(sip.invite(self.next, &legs[self.next]).as_bytes(), bridge)
                .unwrap();
            self.sent_at[self.next] = Some(Instant::now());
            self.next += 1;
        }
        // Timer A: retransmit INVITEs still unanswered after 500 ms
        if self.last_retx.elapsed() > Duration::from_millis(500) {
            self.last_retx = Instant::now();
            for (i, leg) in legs.iter().enumerate().take(self.next) {
                let late =
                    self.sent_at[i].is_some_and(|t| t.elapsed() > Duration::from_millis(500));
                if !self.answered[i] && late {
                    let _ = sig.send_to(sip.invite(i, leg).as_bytes(), bridge);
                }
            }
        }
        let mut up = Vec::new();
        while let Ok((len, _)) = sig.recv_from(buf) {
            let Ok(m) = Message::parse(&buf[..len]) else {
                continue;
            };
            let caucus::sip::StartLine::Response { code, .. } = m.start else {
                continue;
            };
            let Some(&i) = m.header("Call-ID").and_then(|c| by_call.get(c)) else {
                continue;
            };
            if code < 200 {
                continue;
            }
            if code >= 300 {
                if !self.answered[i] {
                    self.answered[i] = true;
                    if code == 503 {
                        self.refused += 1;
                    } else {
                        self.failures += 1;
                    }
                    self.done += 1;
                }
                continue;
            }
            self.answered[i] = true;
            if legs[i].to_tag.is_empty() {
                let to = m.header("To").unwrap_or("");
                legs[i].to_tag = to
                    .rsplit_once("tag=")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default();
                let sd = caucus::sdp::SessionDescription::parse(&m.body).ok();
                let p = sd
                    .and_then(|sd| caucus::sdp::select_audio(&sd, || None).ok())
                    .map(|x| x.1);
                legs[i].bridge_rtp =
                    p.map(|p| SocketAddr::new(p.remote_ip.unwrap_or(bridge.ip()), p.remote_port));
                if let Some(t) = self.sent_at[i] {
                    self.setup_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                self.done += 1;
                up.push(i);
            }
            sig.send_to(sip.ack_or_bye("ACK", 1, i, &legs[i]).as_bytes(), bridge)
                .unwrap();
        }
        up
    }

    /// Calls never answered are failures.
    pub(crate) fn give_up(&mut self) {
        let unanswered = self.answered.iter().filter(|a| !**a).count();
        self.failures += unanswered;
        self.done += unanswered;
        self.answered.iter_mut().for_each(|a| *a = true);
    }
}
