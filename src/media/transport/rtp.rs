//! RTP over UDP (RFC 3550 §11: RTP on an even port, RTCP on the odd one above),
//! one socket pair per leg, non-blocking and read directly each tick: the kernel's
//! socket buffer is the arrival queue, so there is no task or wake-up per packet.
//!
//! Symmetric RTP (RFC 4961) with strict source learning (against RTP injection,
//! AST-2017-005): the address the SDP named is taken at once, whenever it starts;
//! any other only within [`LEARN_WINDOW`] of an offer/answer and after
//! [`PROBATION`] packets in a row with consecutive sequence numbers. Once learned,
//! the socket is connected to the source, so the kernel drops every other one and
//! caches the route for our sends.
//!
//! SRTP (RFC 3711, keyed by SDES) is this transport's when the SDP agreed it:
//! a datagram is authenticated and decrypted as it is read (before it may teach
//! the source) and protected as it is sent, so the leg above handles plain RTP.
//!
//! The sockets are read without a readiness API: a phone sends every 20 ms, so
//! nearly every read finds a packet, and a socket watched by epoll (or io_uring
//! poll) makes each of our sends walk its wait queue when the buffer is freed, and
//! each arrival run the epoll callback; measured, epoll cost more than the empty
//! reads it saved. A socket empty [`QUIET_POLLS`] times in a row (hold, silence
//! suppression) is read only every [`QUIET_EVERY`] ticks; RTCP, a packet every few
//! seconds, every [`RTCP_EVERY`] ticks. rustix makes the system calls itself:
//! libc's `recv`/`send` are thread cancellation points, two atomic operations
//! around every call.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, SendFlags};

use super::Recv;
use crate::media::rtp::RtpPacket;
use crate::media::srtp::{self, Srtp};
use crate::sdes::Sdes;

/// How long after an offer/answer a leg's RTP source may be learned.
pub const LEARN_WINDOW: Duration = Duration::from_secs(30);
/// Empty reads of an RTP socket after which it is read less often.
const QUIET_POLLS: u16 = 3;
/// A quiet RTP socket is read every this many ticks (so a talker coming back
/// from silence waits at most 60 ms more).
const QUIET_EVERY: u64 = 4;
/// The RTCP socket is read every this many ticks (0.5 s).
pub const RTCP_EVERY: u64 = 25;
/// Consecutive packets a source other than the SDP's must send to be learned.
const PROBATION: u8 = 3;

/// A leg's RTP and RTCP sockets, bound before any SDP announces the port.
#[derive(Debug)]
pub struct Bound {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

/// Bind RTP at `addr` and RTCP on the port above, non-blocking.
pub fn bind(addr: SocketAddr) -> io::Result<Bound> {
    let rtp = UdpSocket::bind(addr)?;
    let rtcp = UdpSocket::bind(SocketAddr::new(addr.ip(), addr.port().wrapping_add(1)))?;
    rtp.set_nonblocking(true)?;
    rtcp.set_nonblocking(true)?;
    Ok(Bound { rtp, rtcp })
}

impl Bound {
    /// Sockets bound elsewhere (benchmarks), made non-blocking.
    pub fn new(rtp: UdpSocket, rtcp: UdpSocket) -> io::Result<Bound> {
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        Ok(Bound { rtp, rtcp })
    }

    /// Where the RTP socket is bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }
}

/// What a tick rarely touches: RTCP, the learning state, the stray count.
#[derive(Debug)]
struct Cold {
    rtcp: UdpSocket,
    // the address the SDP named
    sdp: Option<SocketAddr>,
    // when the last offer/answer was, and the source on probation with its
    // last sequence number and packets in a row
    learn_since: Instant,
    candidate: Option<(SocketAddr, u16, u8)>,
    // datagrams from sources that were not learned
    strays: u64,
}

/// RTP over UDP. The fields a tick reads come first (see `media::leg`); the rest
/// is boxed out of the leg's hot lines.
#[derive(Debug)]
#[repr(C)]
pub struct RtpUdp {
    rtp: UdpSocket,
    // consecutive polls of the RTP socket that found nothing
    quiet: u16,
    latched: bool,
    // where we send: the learned source, else the SDP's address
    remote: Option<SocketAddr>,
    // SRTP (RFC 3711), when SDES keyed the stream
    secure: Option<Box<Secure>>,
    cold: Box<Cold>,
}

/// A stream's SRTP session, the keys it came from, and the buffer a packet is
/// protected in (the leg's own buffer is the caller's, with no room promised).
struct Secure {
    sdes: Sdes,
    srtp: Srtp,
    out: [u8; 1500 + srtp::OVERHEAD],
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secure({})", self.sdes.suite.name())
    }
}

impl Secure {
    fn new(sdes: Sdes) -> Box<Secure> {
        Box::new(Secure {
            sdes,
            srtp: Srtp::new(sdes.suite, &sdes.ours, &sdes.theirs),
            out: [0; 1500 + srtp::OVERHEAD],
        })
    }

    /// `pkt` protected (RTP, or RTCP when `rtcp`), in `out`; None if it does
    /// not fit or is not a packet.
    fn protect(&mut self, pkt: &[u8], rtcp: bool) -> Option<&[u8]> {
        if pkt.len() > 1500 {
            return None;
        }
        let buf = self.out.get_mut(..pkt.len())?;
        buf.copy_from_slice(pkt);
        let n = if rtcp {
            self.srtp.protect_rtcp(&mut self.out, pkt.len())
        } else {
            self.srtp.protect(&mut self.out, pkt.len())
        };
        (n > 0).then_some(&self.out[..n])
    }
}

impl RtpUdp {
    /// RTP on `bound`, towards `remote` (the SDP's address) until the source is
    /// learned.
    pub fn new(
        bound: Bound,
        remote: Option<SocketAddr>,
        srtp: Option<Sdes>,
        now: Instant,
    ) -> RtpUdp {
        RtpUdp {
            rtp: bound.rtp,
            quiet: 0,
            latched: false,
            remote,
            secure: srtp.map(Secure::new),
            cold: Box::new(Cold {
                rtcp: bound.rtcp,
                sdp: remote,
                learn_since: now,
                candidate: None,
                strays: 0,
            }),
        }
    }

    /// A new offer/answer: a moved peer is learned again, and a new window opens
    /// for learning whoever sends.
    pub fn renegotiated(&mut self, remote: Option<SocketAddr>, srtp: Option<Sdes>, now: Instant) {
        // new keys (RFC 4568 §7.1.4: a re-offer may rekey) start a new session
        if self.secure.as_ref().map(|s| s.sdes) != srtp {
            self.secure = srtp.map(Secure::new);
        }
        if remote != self.cold.sdp {
            self.cold.sdp = remote;
            self.remote = remote;
            if self.latched {
                let _ = rustix::net::connect_unspec(&self.rtp);
            }
            self.latched = false;
        }
        self.cold.learn_since = now;
        self.cold.candidate = None;
    }

    /// Reads due in tick `phase`: one packet per 20 ms is what a 20 ms peer sends;
    /// shorter ptimes are read until empty, a leg coming back from quiet reads what
    /// queued, and once a second every socket is drained so that clock drift
    /// cannot build a queue. A quiet socket skips most ticks.
    #[inline]
    pub fn reads_due(&self, phase: u64, ptime_ms: u32) -> usize {
        if self.quiet >= QUIET_POLLS && !phase.is_multiple_of(QUIET_EVERY) {
            return 0;
        }
        if ptime_ms < 20 || self.quiet > 0 || phase.is_multiple_of(50) {
            64
        } else {
            1
        }
    }

    /// The reads of a tick found `got` datagrams.
    #[inline]
    pub fn polled(&mut self, got: usize) {
        self.quiet = if got == 0 {
            self.quiet.saturating_add(1)
        } else {
            0
        };
    }

    /// Read one datagram: the peer's RTP, or something dropped, or nothing.
    #[inline]
    pub fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Recv {
        if self.latched {
            // a connected socket takes only the learned source: no address to ask
            return match rustix::net::recv(&self.rtp, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => self.unprotect(buf, n),
                Err(_) => Recv::Empty,
            };
        }
        let Ok((n, src)) = self.rtp.recv_from(buf) else {
            return Recv::Empty;
        };
        // only an authenticated packet may teach where the peer is
        let n = match self.unprotect(buf, n) {
            Recv::Packet(n) => n,
            other => return other,
        };
        let Ok(seq) = RtpPacket::parse(&buf[..n]).map(|p| p.seq) else {
            return Recv::Dropped;
        };
        if !self.learn(now, src, seq) {
            return Recv::Dropped;
        }
        // Symmetric RTP: answer where the peer really sends from; connecting makes
        // the kernel drop every other source from now on
        self.remote = Some(src);
        self.latched = self.rtp.connect(src).is_ok();
        Recv::Packet(n)
    }

    /// The datagram in `buf[..n]` checked and decrypted when the stream is SRTP.
    #[inline]
    fn unprotect(&mut self, buf: &mut [u8], n: usize) -> Recv {
        match &mut self.secure {
            None => Recv::Packet(n),
            Some(s) => match s.srtp.unprotect(&mut buf[..n]) {
                Ok(n) => Recv::Packet(n),
                Err(_) => {
                    self.cold.strays += 1;
                    Recv::Dropped
                }
            },
        }
    }

    /// Whether `src` is learned now (see the module header).
    fn learn(&mut self, now: Instant, src: SocketAddr, seq: u16) -> bool {
        let c = &mut self.cold;
        // the negotiated address is always good (a phone with silence suppression
        // may start sending long after the answer)
        if c.sdp == Some(src) {
            return true;
        }
        if now.saturating_duration_since(c.learn_since) > LEARN_WINDOW {
            c.strays += 1;
            return false;
        }
        let run = match c.candidate {
            Some((s, last, n)) if s == src && seq == last.wrapping_add(1) => n + 1,
            _ => 1,
        };
        c.candidate = Some((src, seq, run));
        if run >= PROBATION {
            return true;
        }
        c.strays += 1;
        false
    }

    /// Read one RTCP datagram.
    pub fn recv_rtcp(&mut self, buf: &mut [u8]) -> Option<usize> {
        let (n, _) = self.cold.rtcp.recv_from(buf).ok()?;
        match &mut self.secure {
            None => Some(n),
            // an unauthenticated report is not read (0 bytes: nothing in it)
            Some(s) => Some(s.srtp.unprotect_rtcp(&mut buf[..n]).unwrap_or(0)),
        }
    }

    /// Send one RTP datagram to the peer.
    #[inline]
    pub fn send(&mut self, pkt: &[u8]) {
        let pkt = match &mut self.secure {
            None => pkt,
            Some(s) => match s.protect(pkt, false) {
                Some(p) => p,
                None => return,
            },
        };
        if self.latched {
            let _ = rustix::net::send(&self.rtp, pkt, SendFlags::empty());
        } else if let Some(to) = self.remote {
            let _ = self.rtp.send_to(pkt, to);
        }
    }

    /// Send one RTCP datagram to the port above the peer's RTP port.
    pub fn send_rtcp(&mut self, pkt: &[u8]) {
        let pkt = match &mut self.secure {
            None => pkt,
            Some(s) => match s.protect(pkt, true) {
                Some(p) => p,
                None => return,
            },
        };
        if let Some(remote) = self.remote {
            let to = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
            let _ = self.cold.rtcp.send_to(pkt, to);
        }
    }

    /// Where media goes.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Datagrams dropped because they were not the learned source's.
    pub fn strays(&self) -> u64 {
        self.cold.strays
    }

    /// The RTP socket's own address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }

    /// Whether the source is learned.
    pub fn latched(&self) -> bool {
        self.latched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp;

    fn transport(sdp: SocketAddr) -> RtpUdp {
        let sock = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let b = Bound {
            rtp: sock(),
            rtcp: sock(),
        };
        RtpUdp::new(b, Some(sdp), None, Instant::now())
    }

    fn send(from: &UdpSocket, to: SocketAddr, seq: u16) {
        let mut pkt = [0u8; 172];
        rtp::write_header(&mut pkt, 0, false, seq, u32::from(seq) * 160, 77);
        from.send_to(&pkt, to).unwrap();
    }

    /// Read until the socket is empty (the datagrams were sent before, on
    /// loopback: they are queued); how many were the peer's.
    fn read_all(t: &mut RtpUdp, now: Instant, expect: usize) -> usize {
        let mut buf = [0u8; 2048];
        let (mut got, mut seen) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(2);
        while seen < expect && Instant::now() < deadline {
            match t.recv(now, &mut buf) {
                Recv::Packet(_) => {
                    got += 1;
                    seen += 1;
                }
                Recv::Dropped => seen += 1,
                Recv::Empty => std::thread::yield_now(),
            }
        }
        got
    }

    #[test]
    fn sdp_source_at_once_others_only_after_probation_and_within_the_window() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = transport(peer.local_addr().unwrap());
        let to = t.local_addr().unwrap();
        // two sprayed packets, even in sequence, are not enough
        send(&attacker, to, 1);
        send(&attacker, to, 2);
        assert_eq!(read_all(&mut t, Instant::now(), 2), 0);
        assert!(!t.latched());
        assert_eq!(t.strays(), 2);
        // the address the SDP named is learned at once
        send(&peer, to, 500);
        assert_eq!(read_all(&mut t, Instant::now(), 1), 1);
        assert!(t.latched());
        assert_eq!(t.remote(), Some(peer.local_addr().unwrap()));

        // a peer behind NAT (not the SDP address): three in a row
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = transport("127.0.0.1:9".parse().unwrap());
        let to = t.local_addr().unwrap();
        send(&other, to, 10);
        send(&other, to, 12); // a gap restarts the run
        send(&other, to, 13);
        assert_eq!(read_all(&mut t, Instant::now(), 3), 0);
        assert!(!t.latched());
        send(&other, to, 14);
        assert_eq!(read_all(&mut t, Instant::now(), 1), 1);
        assert!(t.latched(), "three consecutive packets learn the source");

        // after the window, no other source is learned (the SDP's still is)
        let mut t = transport("127.0.0.1:9".parse().unwrap());
        let to = t.local_addr().unwrap();
        for seq in 1..=5 {
            send(&other, to, seq);
        }
        let late = Instant::now() + LEARN_WINDOW + Duration::from_secs(1);
        assert_eq!(read_all(&mut t, late, 5), 0);
        assert!(!t.latched());
        assert_eq!(t.strays(), 5);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut t = transport(peer.local_addr().unwrap());
        let to = t.local_addr().unwrap();
        send(&peer, to, 1);
        assert_eq!(read_all(&mut t, late, 1), 1);
        assert!(t.latched(), "the SDP address is learned even late");
    }
}
