//! A browser stand-in: a WHIP client made with str0m (a full ICE agent, the
//! DTLS client, SRTP), which sends an Opus tone and decodes what the room sends
//! it, on loopback. For tests that need a WebRTC participant without a browser.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use caucus::media::opus;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::http::request_typed;

/// One WebRTC participant.
pub struct WhipClient {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    /// the WHIP resource (`Location`)
    pub resource: String,
    pub token: String,
    api: SocketAddr,
    enc: opus::Encoder,
    dec: opus::Decoder,
    phase: f64,
    seq: u64,
    ts: u32,
    /// 48 kHz mono PCM of what the room sent
    pub heard: Vec<i16>,
    pub connected: bool,
    ssrc: Option<Ssrc>,
}

/// Why a join failed: the HTTP status and body.
#[derive(Debug)]
pub struct Refused(pub u16, pub String);

impl WhipClient {
    /// POST an offer to `room`'s WHIP endpoint with `token`.
    pub fn join(api: SocketAddr, room: &str, token: &str) -> Result<WhipClient, Refused> {
        str0m::crypto::from_feature_flags().install_process_default();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let r = request_typed(
            api,
            "POST",
            &format!("/v1/rooms/{room}/whip"),
            Some(token),
            "application/sdp",
            Some(&offer.to_sdp_string()),
        );
        if r.status != 201 {
            return Err(Refused(r.status, r.text()));
        }
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        let resource = r.header("location").expect("a Location").to_string();
        let answer = SdpAnswer::from_sdp_string(&r.text()).expect("an SDP answer");
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        sock.set_nonblocking(true).unwrap();
        Ok(WhipClient {
            rtc,
            sock,
            local,
            mid,
            resource,
            token: token.to_string(),
            api,
            enc: opus::Encoder::new(5).unwrap(),
            dec: opus::Decoder::new().unwrap(),
            phase: 0.0,
            seq: 0,
            ts: 0,
            heard: Vec::new(),
            connected: false,
            ssrc: None,
        })
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => return,
                Ok(Output::Transmit(t)) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    let mut pcm = [0i16; 5760];
                    if let Ok(n) = self.dec.decode(Some(&p.payload), &mut pcm) {
                        self.heard.extend_from_slice(&pcm[..n]);
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(e) => panic!("str0m: {e}"),
            }
        }
    }

    fn read(&mut self) {
        let mut buf = [0u8; 2000];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if let Ok(r) = Receive::new(Protocol::Udp, from, self.local, &buf[..n]) {
                let _ = self.rtc.handle_input(Input::Receive(Instant::now(), r));
                self.drain();
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
        self.drain();
    }

    /// Run for `dur`: send `freq` (None: silence) as 20 ms Opus packets once
    /// connected, and decode what arrives.
    pub fn run(&mut self, freq: Option<f64>, dur: Duration) {
        let start = Instant::now();
        let mut tick = 0u32;
        while start.elapsed() < dur {
            self.read();
            if self.connected {
                self.send_frame(freq);
            }
            tick += 1;
            let next = start + Duration::from_millis(20 * u64::from(tick));
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }

    /// Run until connected (ICE and DTLS done), at most `limit`.
    pub fn connect(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.connected && start.elapsed() < limit {
            self.read();
            std::thread::sleep(Duration::from_millis(5));
        }
        self.connected
    }

    fn send_frame(&mut self, freq: Option<f64>) {
        let pcm: Vec<i16> = (0..960)
            .map(|_| match freq {
                Some(f) => {
                    self.phase += 2.0 * std::f64::consts::PI * f / 48_000.0;
                    (6000.0 * self.phase.sin()) as i16
                }
                None => 0,
            })
            .collect();
        let mut out = [0u8; 1500];
        let n = self.enc.encode(&pcm, &mut out).unwrap();
        let pt = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())
            .unwrap();
        self.seq += 1;
        self.ts = self.ts.wrapping_add(960);
        let (seq, ts) = (self.seq, self.ts);
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(self.mid, None) else {
            return;
        };
        self.ssrc = Some(tx.ssrc());
        tx.write_rtp(RtpWrite::new(
            pt,
            seq.into(),
            ts,
            Instant::now(),
            out[..n].to_vec(),
        ));
        self.drain();
    }

    /// The last `secs` of what was heard.
    pub fn tail(&self, secs: f64) -> &[i16] {
        let n = (48_000.0 * secs) as usize;
        &self.heard[self.heard.len().saturating_sub(n)..]
    }

    /// DELETE the WHIP resource: its status.
    pub fn leave(&self) -> u16 {
        request_typed(
            self.api,
            "DELETE",
            &self.resource,
            Some(&self.token),
            "application/json",
            None,
        )
        .status
    }
}
