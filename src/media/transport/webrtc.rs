//! Browser legs: WebRTC media (ICE-lite with host candidates, RFC 8445 §2.5;
//! DTLS-SRTP, RFC 5763/5764; RTCP multiplexed on the same port, RFC 5761) for
//! every browser on one shared UDP socket.
//!
//! The WebRTC stack is str0m: a kept, sans-IO library (the caller owns the
//! socket and the clock, as our core does), in RTP mode, so that a browser leg
//! carries plain RTP datagrams to the leg above it exactly as a phone's socket
//! does, and the mixer, jitter buffer and codecs are the same. str0m does ICE,
//! DTLS, SRTP and RTCP; its crypto is aws-lc-rs (builds with cargo and a C
//! compiler, no system OpenSSL).
//!
//! One socket for all browsers ([`WebRtcHub`]): a demultiplexing thread drains
//! it every millisecond (one wake-up per millisecond, not one per packet) and
//! hands each datagram to its leg's inbox, a lock-free single-producer ring
//! ([`rtrb`]) of boxed slots that the leg hands back through a second ring once
//! read, so no lock is taken, nothing is allocated on our side per packet, and
//! a datagram is copied once (its bytes, into its leg's slot). A leg is found by the local ICE username
//! fragment in a STUN request's USERNAME (RFC 8445 §7.2.2; ours are unique per
//! leg), and after that by the source address the STUN came from. The leg's
//! `Rtc` lives in its [`WebRtc`] transport on its room's media worker: the tick
//! drains the inbox into str0m, str0m's timers run on the tick's clock, and its
//! datagrams go out on the shared socket (UDP sends from several threads need
//! no lock). str0m itself allocates per packet: its RTP API takes and gives a
//! payload as an `Arc<[u8]>`, and each datagram it sends is a `Vec`.
//!
//! A browser that vanishes stops its ICE consent checks (RFC 7675): once str0m
//! says ICE is disconnected for [`DISCONNECT_GRACE`], or a connection never
//! completes within [`CONNECT_TIMEOUT`], the transport is [`WebRtc::gone`] and the
//! room reports the leg dead.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

use super::Recv;
use crate::media::rtp::{RtpPacket, write_header};
use crate::sdp::CodecKind;

/// The largest datagram a slot holds (browsers keep under about 1,200 bytes).
const SLOT: usize = 1500;
/// Datagrams an inbox holds (a third of a second of audio, or a DTLS flight).
const INBOX: usize = 16;
/// Decoded RTP packets a transport keeps between two reads.
const DECODED: usize = 8;
/// How often the demultiplexer drains the shared socket.
const DEMUX_EVERY: Duration = Duration::from_millis(1);
/// The shared socket's kernel buffers: every browser's packets queue in one
/// socket (300 browsers send 15,000 a second), and the reader may be kept off
/// its core for some milliseconds on a busy machine.
const SOCKET_BUFFER: usize = 8 << 20;
/// How long ICE may stay disconnected before the leg is given up.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// How long ICE and DTLS may take to complete after the answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a browser's offer is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// not SDP str0m can read
    #[error("malformed SDP offer: {0}")]
    Sdp(String),
    /// the offer has no audio we can take (Opus or PCMU)
    #[error("the offer has no Opus or PCMU audio")]
    NoAudio,
    /// str0m refused the offer
    #[error("offer refused: {0}")]
    Refused(String),
    /// the shared socket's address cannot be a host candidate
    #[error("bad host candidate: {0}")]
    Candidate(String),
}

/// One datagram in an inbox slot.
struct Datagram {
    from: SocketAddr,
    len: u16,
    data: [u8; SLOT],
}

impl Datagram {
    fn boxed() -> Box<Datagram> {
        Box::new(Datagram {
            from: SocketAddr::from(([0, 0, 0, 0], 0)),
            len: 0,
            data: [0; SLOT],
        })
    }
}

/// The demultiplexer's end of a leg's inbox: slots full of datagrams go out on
/// one ring, and come back empty on the other.
struct Inbox {
    full: rtrb::Producer<Box<Datagram>>,
    empty: rtrb::Consumer<Box<Datagram>>,
}

/// What the demultiplexer is told.
enum Control {
    Add { ufrag: String, inbox: Inbox },
    Remove { ufrag: String },
}

/// What a new browser leg is, once its offer is answered.
pub struct Answered {
    /// the transport, to be opened on the leg's worker
    pub transport: WebRtc,
    /// the SDP answer
    pub sdp: String,
    /// the codec taken
    pub codec: CodecKind,
    /// its payload type
    pub pt: u8,
}

/// The shared socket for every browser leg and its demultiplexing thread.
pub struct WebRtcHub {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    candidate: SocketAddr,
    control: mpsc::Sender<Control>,
}

impl std::fmt::Debug for WebRtcHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcHub")
            .field("local", &self.local)
            .field("candidate", &self.candidate)
            .finish()
    }
}

impl WebRtcHub {
    /// Bind `listen` and start demultiplexing it. The host candidate written in
    /// answers is `public` (behind NAT) or the bound address.
    pub fn start(listen: SocketAddr, public: Option<IpAddr>) -> io::Result<Arc<WebRtcHub>> {
        // once per process; a second call (tests start several hubs) is harmless
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind(listen)?;
        enlarge_buffers(&socket);
        let socket = Arc::new(socket);
        let local = socket.local_addr()?;
        let candidate = SocketAddr::new(public.unwrap_or(local.ip()), local.port());
        let (control, rx) = mpsc::channel();
        let reader = socket.clone();
        std::thread::Builder::new()
            .name("webrtc-demux".into())
            .spawn(move || demux(&reader, &rx))?;
        Ok(Arc::new(WebRtcHub {
            socket,
            local,
            candidate,
            control,
        }))
    }

    /// Where the shared socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answer a browser's offer: a new `Rtc` (ICE-lite, RTP mode, Opus or PCMU),
    /// its inbox registered with the demultiplexer under a fresh ICE username.
    pub fn answer(&self, offer: &str, now: Instant) -> Result<Answered, WebRtcError> {
        let offer_text = offer;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let creds = IceCreds {
            ufrag: crate::util::secret::hex(8),
            pass: crate::util::secret::hex(24),
        };
        let ufrag = creds.ufrag.clone();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .set_local_ice_credentials(creds)
            .set_stats_interval(None)
            // audio is never resent: a short send buffer; and of the header
            // extensions only the mid (RFC 8843), so that no transport-wide
            // congestion feedback is asked for or computed for a 32 kbit/s stream
            .set_send_buffer_audio(4)
            .clear_extension_map()
            .set_extension(4, Extension::RtpMid)
            .build(now);
        let cand = Candidate::host(self.candidate, "udp")
            .map_err(|e| WebRtcError::Candidate(e.to_string()))?;
        rtc.add_local_candidate(cand);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::Refused(e.to_string()))?;
        let mut mid = None;
        let next_timeout;
        loop {
            match rtc.poll_output() {
                Ok(Output::Event(Event::MediaAdded(m))) if m.kind == MediaKind::Audio => {
                    mid.get_or_insert(m.mid);
                }
                Ok(Output::Timeout(t)) => {
                    next_timeout = t;
                    break;
                }
                Ok(_) => {}
                Err(e) => return Err(WebRtcError::Refused(e.to_string())),
            }
        }
        // str0m announces media it did not create as MediaAdded only once
        // polled after connecting; the offer names the audio section's mid
        let mid = mid
            .or_else(|| audio_mid(offer_text).map(Mid::from))
            .ok_or(WebRtcError::NoAudio)?;
        let (codec, pt) = audio_codec(&rtc, mid).ok_or(WebRtcError::NoAudio)?;
        let (full, inbox) = rtrb::RingBuffer::new(INBOX);
        let (mut recycle, empty) = rtrb::RingBuffer::new(INBOX);
        for _ in 0..INBOX {
            let _ = recycle.push(Datagram::boxed());
        }
        let _ = self.control.send(Control::Add {
            ufrag: ufrag.clone(),
            inbox: Inbox { full, empty },
        });
        let transport = WebRtc {
            rtc,
            inbox,
            recycle,
            socket: self.socket.clone(),
            local: self.local,
            ufrag,
            control: self.control.clone(),
            mid,
            decoded: Decoded::new(),
            next_timeout,
            now,
            created: now,
            connected: false,
            disconnected_since: None,
            gone: false,
            tx_seq: 0,
        };
        Ok(Answered {
            transport,
            sdp: answer.to_sdp_string(),
            codec,
            pt,
        })
    }
}

/// The `a=mid` of the offer's first audio section (RFC 8843 §9.2).
fn audio_mid(sdp: &str) -> Option<&str> {
    let mut in_audio = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
        } else if in_audio && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(mid);
        }
    }
    None
}

/// Enlarge the shared socket's kernel buffers to [`SOCKET_BUFFER`]: past
/// `net.core.rmem_max` with CAP_NET_ADMIN (the FORCE options), else as far as
/// the limit allows.
fn enlarge_buffers(socket: &UdpSocket) {
    use rustix::net::sockopt as so;
    let rx = so::set_socket_recv_buffer_size_force(socket, SOCKET_BUFFER)
        .or_else(|_| so::set_socket_recv_buffer_size(socket, SOCKET_BUFFER));
    let tx = so::set_socket_send_buffer_size_force(socket, SOCKET_BUFFER)
        .or_else(|_| so::set_socket_send_buffer_size(socket, SOCKET_BUFFER));
    let got = so::socket_recv_buffer_size(socket).unwrap_or(0);
    if rx.is_err() || tx.is_err() || got < SOCKET_BUFFER {
        tracing::warn!(
            receive_buffer = got,
            "WebRTC socket: kernel buffer smaller than asked (raise net.core.rmem_max); packets may be dropped under load"
        );
    }
}

/// The codec the answer took for `mid`: Opus if offered, else PCMU.
fn audio_codec(rtc: &Rtc, mid: Mid) -> Option<(CodecKind, u8)> {
    let media = rtc.media(mid)?;
    let mut best = None;
    for pt in media.remote_pts() {
        let Some(p) = rtc.codec_config().find(|p| p.pt() == *pt) else {
            continue;
        };
        match p.spec().codec {
            Codec::Opus => return Some((CodecKind::Opus, **pt)),
            Codec::PCMU if best.is_none() => best = Some((CodecKind::Pcmu, **pt)),
            _ => {}
        }
    }
    best
}

/// The demultiplexer: every datagram on the shared socket to its leg's inbox.
fn demux(socket: &UdpSocket, control: &mpsc::Receiver<Control>) {
    let mut inboxes: HashMap<String, Inbox> = HashMap::new();
    // the ICE username fragment each source address last proved
    let mut by_addr: HashMap<SocketAddr, String> = HashMap::new();
    let mut slot = [0u8; SLOT];
    if socket.set_nonblocking(true).is_err() {
        tracing::error!("WebRTC socket: cannot be made non-blocking; browser media is off");
        return;
    }
    loop {
        loop {
            match control.try_recv() {
                Ok(Control::Add { ufrag, inbox }) => {
                    inboxes.insert(ufrag, inbox);
                }
                Ok(Control::Remove { ufrag }) => {
                    inboxes.remove(&ufrag);
                    by_addr.retain(|_, u| *u != ufrag);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        while let Ok((n, from)) = socket.recv_from(&mut slot) {
            let data = &slot[..n];
            let ufrag = match stun_local_ufrag(data) {
                Some(u) if inboxes.contains_key(u) => {
                    if by_addr.get(&from).is_none_or(|known| known != u) {
                        by_addr.insert(from, u.to_string());
                    }
                    by_addr.get(&from)
                }
                _ => by_addr.get(&from),
            };
            let Some(inbox) = ufrag.and_then(|u| inboxes.get_mut(u)) else {
                continue;
            };
            // no empty slot: the leg's worker is behind; drop rather than wait
            let Ok(mut d) = inbox.empty.pop() else {
                continue;
            };
            d.from = from;
            d.len = n as u16;
            d.data[..n].copy_from_slice(data);
            let _ = inbox.full.push(d);
        }
        std::thread::sleep(DEMUX_EVERY);
    }
}

/// The local (first) part of a STUN request's USERNAME, "local:remote"
/// (RFC 8445 §7.2.2), or None if `d` is not a STUN message with one.
fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    // RFC 5389 §6: the top two bits zero, the magic cookie at 4..8
    if d.len() < 20 || d[0] & 0xc0 != 0 || d[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let mut at = 20;
    while at + 4 <= d.len() {
        let kind = u16::from_be_bytes([d[at], d[at + 1]]);
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        let value = d.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// RTP packets str0m has decrypted, waiting for the leg's reads: a fixed ring
/// of slots, each written once in place as a plain RTP datagram.
struct Decoded {
    slots: Box<[[u8; SLOT]; DECODED]>,
    lens: [u16; DECODED],
    head: usize,
    count: usize,
}

impl Decoded {
    fn new() -> Decoded {
        Decoded {
            slots: Box::new([[0; SLOT]; DECODED]),
            lens: [0; DECODED],
            head: 0,
            count: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Keep `p` as an RTP datagram (header without extensions); dropped when
    /// the ring is full.
    fn push(&mut self, p: &str0m::rtp::RtpPacket) {
        let len = 12 + p.payload.len();
        if self.count == DECODED || len > SLOT {
            return;
        }
        let at = (self.head + self.count) % DECODED;
        let slot = &mut self.slots[at];
        write_header(
            slot,
            *p.header.payload_type,
            p.header.marker,
            p.header.sequence_number,
            p.header.timestamp,
            *p.header.ssrc,
        );
        slot[12..len].copy_from_slice(&p.payload);
        self.lens[at] = len as u16;
        self.count += 1;
    }

    /// The oldest into `buf`: its length.
    fn pop(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let n = usize::from(self.lens[self.head]).min(buf.len());
        buf[..n].copy_from_slice(&self.slots[self.head][..n]);
        self.head = (self.head + 1) % DECODED;
        self.count -= 1;
        Some(n)
    }
}

/// A browser leg's transport: its `Rtc`, its inbox, the shared socket.
pub struct WebRtc {
    rtc: Rtc,
    inbox: rtrb::Consumer<Box<Datagram>>,
    recycle: rtrb::Producer<Box<Datagram>>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    ufrag: String,
    control: mpsc::Sender<Control>,
    mid: Mid,
    decoded: Decoded,
    next_timeout: Instant,
    now: Instant,
    created: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    gone: bool,
    tx_seq: u64,
}

impl std::fmt::Debug for WebRtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtc")
            .field("connected", &self.connected)
            .field("gone", &self.gone)
            .finish()
    }
}

impl Drop for WebRtc {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Remove {
            ufrag: std::mem::take(&mut self.ufrag),
        });
    }
}

impl WebRtc {
    /// Read one RTP datagram (decrypted, as a phone would have sent it) into
    /// `buf`; feeds str0m what arrived and runs its timers on the way.
    pub fn recv(&mut self, now: Instant, buf: &mut [u8]) -> Recv {
        self.now = now;
        loop {
            if let Some(n) = self.decoded.pop(buf) {
                return Recv::Packet(n);
            }
            match self.inbox.pop() {
                Ok(d) => {
                    let data = &d.data[..usize::from(d.len)];
                    let fed = Receive::new(Protocol::Udp, d.from, self.local, data)
                        .ok()
                        .is_some_and(|r| self.rtc.handle_input(Input::Receive(now, r)).is_ok());
                    let _ = self.recycle.push(d);
                    if !fed {
                        return Recv::Dropped;
                    }
                    self.drain(now);
                }
                Err(_) => {
                    if now >= self.next_timeout {
                        let _ = self.rtc.handle_input(Input::Timeout(now));
                        self.drain(now);
                        if !self.decoded.is_empty() {
                            continue;
                        }
                    }
                    self.judge(now);
                    return Recv::Empty;
                }
            }
        }
    }

    /// Send one RTP datagram the leg wrote: str0m encrypts it with SRTP.
    pub fn send(&mut self, pkt: &[u8]) {
        if !self.connected {
            return;
        }
        let Ok(p) = RtpPacket::parse(pkt) else {
            return;
        };
        let now = self.now;
        self.tx_seq += 1;
        let seq = self.tx_seq;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(self.mid, None) else {
            return;
        };
        tx.write_rtp(
            RtpWrite::new(p.pt.into(), seq.into(), p.timestamp, now, p.payload).marker(p.marker),
        );
        self.drain(now);
    }

    /// Whether the connection is up (ICE and DTLS done): media may go.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Whether the browser is gone: DTLS closed, ICE disconnected past the
    /// grace, or never connected in time.
    pub fn gone(&self) -> bool {
        self.gone
    }

    fn judge(&mut self, now: Instant) {
        if !self.rtc.is_alive()
            || self
                .disconnected_since
                .is_some_and(|t| now.saturating_duration_since(t) > DISCONNECT_GRACE)
            || (!self.connected && now.saturating_duration_since(self.created) > CONNECT_TIMEOUT)
        {
            self.gone = true;
        }
    }

    /// Everything str0m has to say: datagrams out, events, the next timeout.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    // rustix's own system call: libc's sendto is a thread
                    // cancellation point, two atomic operations per packet
                    let _ = rustix::net::sendto(
                        &*self.socket,
                        &t.contents,
                        rustix::net::SendFlags::empty(),
                        &t.destination,
                    );
                }
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.disconnected_since.get_or_insert(now);
            }
            Event::IceConnectionStateChange(_) => self.disconnected_since = None,
            Event::RtpPacket(p) => self.decoded.push(&p),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer like a browser's, made by str0m as the other side.
    fn offer(opus: bool) -> String {
        str0m::crypto::from_feature_flags().install_process_default();
        let mut b = Rtc::builder().clear_codecs().enable_pcmu(true, false);
        if opus {
            b = b.enable_opus(true, false);
        }
        let mut rtc = b.build(Instant::now());
        let mut change = rtc.sdp_api();
        change.add_media(
            MediaKind::Audio,
            str0m::media::Direction::SendRecv,
            None,
            None,
            None,
        );
        let (offer, _) = change.apply().expect("an offer");
        offer.to_sdp_string()
    }

    #[test]
    fn an_offer_is_answered_with_opus_or_else_pcmu() {
        let hub = WebRtcHub::start("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let a = hub.answer(&offer(true), Instant::now()).expect("answered");
        assert_eq!(a.codec, CodecKind::Opus);
        assert!(a.sdp.contains("a=ice-lite"), "{}", a.sdp);
        assert!(
            a.sdp
                .contains(&format!(" {} typ host", hub.local_addr().port())),
            "{}",
            a.sdp
        );
        let a = hub.answer(&offer(false), Instant::now()).expect("answered");
        assert_eq!((a.codec, a.pt), (CodecKind::Pcmu, 0));
        assert!(matches!(
            hub.answer("v=0\r\nnonsense", Instant::now()),
            Err(WebRtcError::Sdp(_))
        ));
    }

    #[test]
    fn stun_username_gives_the_local_fragment() {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        // SOFTWARE (3 bytes, padded), then USERNAME "abcd:wxyz"
        m.extend_from_slice(&[0x80, 0x22, 0x00, 0x03, b'x', b'y', b'z', 0]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        m.extend_from_slice(b"abcd:wxyz\0\0\0");
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        // not STUN: RTP (version 2 in the top bits), DTLS
        m[0] = 0x80;
        assert_eq!(stun_local_ufrag(&m), None);
        assert_eq!(stun_local_ufrag(&[22, 254, 253]), None);
        // an attribute claiming more than is there
        let mut short = m[..20].to_vec();
        short[0] = 0;
        short.extend_from_slice(&[0x00, 0x06, 0x00, 0x40, b'a']);
        assert_eq!(stun_local_ufrag(&short), None);
    }
}
