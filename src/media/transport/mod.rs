//! How a leg's media travels: the only media code that touches a socket. The
//! room tick reaches a leg's transport through a few calls per tick (how many
//! reads are due, the next datagram, a send), so the mixer knows nothing of UDP,
//! source learning or (later) ICE and SRTP. A transport carries RTP datagrams: the
//! leg above it parses and writes RTP, because the payload formats (the codecs),
//! the jitter buffer and RFC 4733 events are the same whatever carries them.
//!
//! [`Transport`] is an enum, not a trait object: the tick calls it thousands of
//! times, and the RTP variant stays inline in the leg with its hot fields first
//! (see `media::leg`). Variants: [`rtp::RtpUdp`], RTP over a UDP socket pair per
//! leg (a phone); [`webrtc::WebRtc`], a browser (str0m in RTP mode, every browser
//! on one shared socket); [`pipe::PipePort`], datagrams exchanged with a gateway
//! task (a WebSocket server's audio); [`mem::MemPort`], datagrams through memory
//! for tests and benchmarks. A link between rooms would be one more variant
//! here, and nothing above changes.

pub mod mem;
pub mod pipe;
pub mod rtp;
pub mod webrtc;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub use mem::MemPort;
pub use pipe::PipePort;
pub use rtp::{Bound, RtpUdp};
pub use webrtc::WebRtc;

use super::contract::TransportSpec;

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// an RTP datagram from the leg's peer, this long, in the buffer
    Packet(usize),
    /// a datagram that is not the peer's (a stray, while learning, or junk)
    Dropped,
    /// nothing more now
    Empty,
}

/// A leg's media transport.
pub enum Transport {
    /// RTP over UDP
    Rtp(RtpUdp),
    /// WebRTC (a browser), boxed: its state is large and its leg rare next to phones
    Web(Box<WebRtc>),
    /// RTP datagrams exchanged with a gateway task
    Pipe(PipePort),
    /// RTP datagrams through memory
    Mem(MemPort),
}

impl Transport {
    /// The transport `spec` describes; an RTP one takes the sockets bound for it,
    /// a WebRTC one the connection its offer made.
    pub fn open(
        spec: TransportSpec,
        bound: Option<Bound>,
        web: Option<WebRtc>,
        pipe: Option<PipePort>,
        now: Instant,
    ) -> io::Result<Transport> {
        match spec {
            TransportSpec::Rtp { remote, srtp } => {
                let bound = bound.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the leg's RTP port is not bound")
                })?;
                Ok(Transport::Rtp(RtpUdp::new(bound, remote, srtp, now)))
            }
            TransportSpec::WebRtc => web.map(|w| Transport::Web(Box::new(w))).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the leg's WebRTC connection is gone",
                )
            }),
            TransportSpec::Pipe => pipe.map(Transport::Pipe).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the leg's gateway is gone")
            }),
            TransportSpec::Mem(port) => Ok(Transport::Mem(port)),
        }
    }

    /// A new offer/answer: it may name a new peer address, and opens a new window
    /// for learning where the peer sends from.
    pub fn renegotiated(&mut self, spec: &TransportSpec, now: Instant) {
        if let (Transport::Rtp(t), TransportSpec::Rtp { remote, srtp }) = (self, spec) {
            t.renegotiated(*remote, *srtp, now);
        }
    }

    /// How many RTP reads tick `phase` should make (0: skip this tick), for a peer
    /// sending every `ptime_ms`.
    #[inline]
    pub fn reads_due(&self, phase: u64, ptime_ms: u32) -> usize {
        match self {
            Transport::Rtp(t) => t.reads_due(phase, ptime_ms),
            Transport::Web(_) | Transport::Pipe(_) | Transport::Mem(_) => 64,
        }
    }

    /// Read one RTP datagram into `buf`.
    #[inline]
    pub fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Recv {
        match self {
            Transport::Rtp(t) => t.recv(now, buf),
            Transport::Web(t) => t.recv(now, buf),
            Transport::Pipe(p) => p.recv(buf),
            Transport::Mem(m) => m.recv(buf),
        }
    }

    /// The reads of a tick found `got` datagrams.
    #[inline]
    pub fn polled(&mut self, got: usize) {
        if let Transport::Rtp(t) = self {
            t.polled(got);
        }
    }

    /// Whether RTCP is due to be read in tick `phase`.
    #[inline]
    pub fn rtcp_due(&self, phase: u64) -> bool {
        match self {
            Transport::Rtp(_) => phase.is_multiple_of(rtp::RTCP_EVERY),
            // str0m reads and writes RTCP itself; a gateway has none
            Transport::Web(_) | Transport::Pipe(_) | Transport::Mem(_) => false,
        }
    }

    /// Read one RTCP datagram into `buf`; its length.
    pub fn recv_rtcp(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self {
            Transport::Rtp(t) => t.recv_rtcp(buf),
            Transport::Web(_) | Transport::Pipe(_) | Transport::Mem(_) => None,
        }
    }

    /// Whether there is somewhere to send yet.
    #[inline]
    pub fn can_send(&self) -> bool {
        match self {
            Transport::Rtp(t) => t.remote().is_some(),
            Transport::Web(t) => t.connected(),
            Transport::Pipe(_) | Transport::Mem(_) => true,
        }
    }

    /// Send one RTP datagram.
    #[inline]
    pub fn send(&mut self, pkt: &[u8]) {
        match self {
            Transport::Rtp(t) => t.send(pkt),
            Transport::Web(t) => t.send(pkt),
            Transport::Pipe(p) => p.send(pkt),
            Transport::Mem(m) => m.send(pkt),
        }
    }

    /// Send one RTCP datagram.
    pub fn send_rtcp(&mut self, pkt: &[u8]) {
        match self {
            Transport::Rtp(t) => t.send_rtcp(pkt),
            // str0m sends its own sender and receiver reports; a gateway wants none
            Transport::Web(_) | Transport::Pipe(_) => {}
            Transport::Mem(m) => m.send_rtcp(pkt),
        }
    }

    /// Datagrams dropped because they were not the peer's.
    pub fn strays(&self) -> u64 {
        match self {
            Transport::Rtp(t) => t.strays(),
            Transport::Web(_) | Transport::Pipe(_) | Transport::Mem(_) => 0,
        }
    }

    /// Where media goes (the learned peer, else the SDP's address).
    pub fn remote(&self) -> Option<SocketAddr> {
        match self {
            Transport::Rtp(t) => t.remote(),
            Transport::Web(_) | Transport::Pipe(_) | Transport::Mem(_) => None,
        }
    }

    /// Whether the peer is known to be gone (a browser that closed or vanished),
    /// without waiting for the RTP timeout.
    #[inline]
    pub fn gone(&self) -> bool {
        match self {
            Transport::Web(t) => t.gone(),
            Transport::Pipe(p) => p.gone(),
            Transport::Rtp(_) | Transport::Mem(_) => false,
        }
    }
}
