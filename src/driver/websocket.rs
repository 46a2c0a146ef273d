//! The gateway of a WebSocket leg (an NCCO `connect` to a websocket endpoint,
//! as Vonage's Voice API WebSockets): one task per leg that reaches the server,
//! sends the first text frame (`{"event": "websocket:connected",
//! "content-type": "audio/l16;rate=R", …headers}`), and then every 20 ms
//! carries the leg's RTP out as a binary frame of 16-bit little-endian PCM at
//! the rate asked for, and the server's frames in as RTP, one packet per tick.
//!
//! The server may send audio faster than real time (a whole prompt at once):
//! it is buffered here, up to [`MAX_BUFFERED`], and paced out. The leg's media
//! is the room's like any other (`media::transport::pipe`); the rate change to
//! 16 kHz and back, and the byte order, are done here, off the media thread.
//! tokio-tungstenite is the WebSocket client (kept, tokio-native; rustls for
//! wss:// as reqwest already uses).

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::core::LegId;
use crate::core::socket::{L16_PT, SocketRequest};
use crate::media::resample::{Downsampler, Upsampler};
use crate::media::rtp::{RtpPacket, write_header};
use crate::media::transport::PipePort;
use crate::media::transport::pipe::{PipeEnd, pipe};
use crate::util::LogSafe;

/// How long the server may take to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Audio from the server kept ahead of playing: 20 s at 8 kHz.
const MAX_BUFFERED: usize = 20 * 8000;
/// Samples per 20 ms at 8 kHz.
const FRAME: usize = 160;

/// What a gateway reports to the driver.
pub(super) enum SocketReport {
    /// the server accepted: the leg's end of the pipe
    Up {
        /// the WebSocket leg
        leg: LegId,
        /// its media
        port: PipePort,
    },
    /// it could not be reached (`why`) or it closed (`None`)
    Down {
        /// the WebSocket leg
        leg: LegId,
        /// the call that asked for it
        caller: LegId,
        /// why it failed to connect
        why: Option<String>,
    },
}

/// Reach the server of `req` and carry the leg's audio until either side ends.
pub(super) async fn run(req: SocketRequest, reports: mpsc::UnboundedSender<SocketReport>) {
    let (leg, caller) = (req.leg, req.caller);
    let down = |why: Option<String>| {
        let _ = reports.send(SocketReport::Down { leg, caller, why });
    };
    let mut ws = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(req.target.uri.as_str()),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return down(Some(e.to_string())),
        Err(_) => return down(Some("the server did not accept within 10 s".into())),
    };
    let rate = req.target.rate;
    let mut first: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&req.target.headers).unwrap_or_default();
    first.insert("event".into(), "websocket:connected".into());
    first.insert(
        "content-type".into(),
        format!("audio/l16;rate={rate}").into(),
    );
    let text = serde_json::Value::Object(first).to_string();
    if let Err(e) = ws.send(Message::text(text)).await {
        return down(Some(e.to_string()));
    }
    let (port, end) = pipe();
    if reports.send(SocketReport::Up { leg, port }).is_err() {
        return;
    }
    tracing::debug!(%leg, uri = %LogSafe(&req.target.uri), rate, "WebSocket gateway running");
    let closed = Gateway::new(rate, end).run(&mut ws).await;
    if closed {
        down(None);
    } else {
        let _ = ws.close(None).await;
    }
}

/// One leg's conversion between RTP and frames.
struct Gateway {
    rate: u32,
    end: PipeEnd,
    // the server's audio at 8 kHz, not yet played
    ahead: VecDeque<i16>,
    up: Upsampler,
    down: Downsampler,
    seq: u16,
    ts: u32,
    ssrc: u32,
    first: bool,
}

impl Gateway {
    fn new(rate: u32, end: PipeEnd) -> Gateway {
        Gateway {
            rate,
            end,
            ahead: VecDeque::new(),
            up: Upsampler::new(2),
            down: Downsampler::new(2),
            seq: 0,
            ts: 0,
            ssrc: rand_ssrc(),
            first: true,
        }
    }

    /// Until the server closes (true) or the leg ends (false).
    async fn run<S>(&mut self, ws: &mut S) -> bool
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + futures_util::Sink<Message>
            + Unpin,
    {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) => self.heard(&b),
                    Some(Ok(Message::Text(t))) => {
                        tracing::debug!(text = %LogSafe(t.as_str()), "WebSocket text frame (not acted on)");
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {
                    if self.end.gone() {
                        return false;
                    }
                    self.play();
                    while let Some(slot) = self.end.pop() {
                        // a datagram that is not RTP is skipped, not the end of the tick's
                        let Some(frame) = self.said(slot.bytes()) else {
                            continue;
                        };
                        if ws.send(Message::binary(frame)).await.is_err() {
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// A binary frame from the server: PCM at its rate, little-endian.
    fn heard(&mut self, bytes: &[u8]) {
        let pcm: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        if self.rate == 16000 {
            let mut narrow = Vec::with_capacity(pcm.len() / 2);
            self.down.extend(&pcm, &mut narrow);
            self.ahead.extend(narrow);
        } else {
            self.ahead.extend(pcm);
        }
        let over = self.ahead.len().saturating_sub(MAX_BUFFERED);
        self.ahead.drain(..over);
    }

    /// One packet of the server's audio to the leg, if there is a frame of it;
    /// the clock runs on either way.
    fn play(&mut self) {
        if self.ahead.len() >= FRAME {
            let mut pkt = [0u8; 12 + 2 * FRAME];
            write_header(&mut pkt, L16_PT, self.first, self.seq, self.ts, self.ssrc);
            for (b, v) in pkt[12..].chunks_exact_mut(2).zip(self.ahead.drain(..FRAME)) {
                b.copy_from_slice(&v.to_be_bytes());
            }
            if self.end.push(&pkt) {
                self.first = false;
                self.seq = self.seq.wrapping_add(1);
            }
        }
        self.ts = self.ts.wrapping_add(FRAME as u32);
    }

    /// A datagram the leg sent, as the frame the server wants.
    fn said(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let p = RtpPacket::parse(datagram).ok()?;
        let pcm: Vec<i16> = p
            .payload
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .collect();
        let pcm = if self.rate == 16000 {
            let mut wide = vec![0; 2 * pcm.len()];
            self.up.process(&pcm, &mut wide);
            wide
        } else {
            pcm
        };
        Some(pcm.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

fn rand_ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}
