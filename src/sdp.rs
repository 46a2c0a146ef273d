//! SDP for audio sessions: parse (RFC 8866), negotiate and write offers and answers
//! (RFC 3264), RTP payload formats for PCMU/PCMA/G.722 (RFC 3551), Opus (RFC 7587)
//! and telephone-event (RFC 4733).
//!
//! Why our own layer: sdp-rs 0.2 is unmaintained and rejects a hostname in `o=`;
//! webrtc-rs `sdp` is kept but models the whole WebRTC session (ICE, DTLS, bundles)
//! and still leaves offer/answer to the caller. The bridge needs the audio subset
//! only: every m-line is answered in order (the ones we do not take with port 0),
//! hostnames are accepted in `o=` and `c=`, and malformed descriptions are typed
//! errors that the leg turns into 488/400.

use std::fmt::Write as _;
use std::net::IpAddr;

#[cfg(test)]
use crate::sdes::MasterKey;
use crate::sdes::Sdes;

/// Audio codecs the bridge mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, 8 kHz
    Pcmu,
    /// G.711 A-law, 8 kHz
    Pcma,
    /// G.722, 16 kHz sampling on an 8 kHz RTP clock (RFC 3551 §4.5.2: the
    /// clock rate was written down wrong in RFC 1890 and kept for compatibility)
    G722,
    /// Opus, 48 kHz RTP clock (RFC 7587), mono decode/encode
    Opus,
    /// 16-bit linear PCM at 8 kHz, network byte order (RFC 3551 §4.5.11): the
    /// payload of a WebSocket leg's datagrams, never offered or taken in SDP
    L16,
}

impl CodecKind {
    /// RTP clock rate: what timestamps count (and telephone-event's rate).
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::L16 | CodecKind::G722 => 8000,
            CodecKind::Opus => 48000,
        }
    }

    /// Whether a payload is one byte per RTP clock tick (G.711; G.722 on its
    /// 8 kHz clock), so that any whole number of milliseconds makes a packet
    /// by cutting the byte stream: the codecs whose packet time follows the
    /// offerer's `ptime`.
    pub fn byte_per_tick(self) -> bool {
        matches!(self, CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722)
    }

    /// Sampling rate of the decoded audio: what frames hold.
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::G722 => 16000,
            other => other.clock_rate(),
        }
    }

    fn encoding(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU/8000",
            CodecKind::Pcma => "PCMA/8000",
            CodecKind::G722 => "G722/8000",
            CodecKind::Opus => "opus/48000/2",
            CodecKind::L16 => "L16/8000",
        }
    }
}

/// Media direction attribute (RFC 3264 §6.1), from the writer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// both ways
    SendRecv,
    /// writer only sends
    SendOnly,
    /// writer only receives
    RecvOnly,
    /// no media
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// The direction an answer takes for this offered direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
    /// Whether the peer who wrote this direction sends media to us.
    pub fn peer_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// Whether the peer who wrote this direction wants media from us.
    pub fn peer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Why a description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// syntax error at a line
    #[error("malformed SDP line {line}: {reason}")]
    Syntax {
        /// 1-based line
        line: usize,
        /// what is wrong
        reason: &'static str,
    },
    /// no audio stream with a codec in common (RFC 3264 §6: 488)
    #[error("no common audio codec")]
    NoCommonCodec,
}

/// One m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// audio, video, ...
    pub kind: String,
    /// port; 0 = rejected/disabled
    pub port: u16,
    /// RTP/AVP, ...
    pub proto: String,
    /// format list as written
    pub formats: Vec<String>,
    /// media-level connection address
    pub connection: Option<String>,
    /// `a=rtpmap` entries: payload type → encoding name/rate[/channels]
    pub rtpmap: Vec<(u8, String)>,
    /// `a=fmtp` entries: payload type → parameters as written (format-specific,
    /// so an unreadable one is kept as text, not refused)
    pub fmtp: Vec<(u8, String)>,
    /// `a=ptime`
    pub ptime: Option<u32>,
    /// direction attribute (default sendrecv)
    pub direction: Direction,
    /// `a=crypto` values as written (RFC 4568 §9.1: tag, suite, key
    /// parameters, session parameters)
    pub crypto: Vec<String>,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// session-level connection address (IP literal or hostname)
    pub connection: Option<String>,
    /// m= sections in order
    pub media: Vec<Media>,
}

fn syntax(line: usize, reason: &'static str) -> SdpError {
    SdpError::Syntax { line, reason }
}

fn parse_connection(v: &str, line: usize) -> Result<String, SdpError> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [nettype, addrtype, addr] = parts.as_slice() else {
        return Err(syntax(line, "c= needs three fields"));
    };
    if *nettype != "IN" || !(*addrtype == "IP4" || *addrtype == "IP6") {
        return Err(syntax(line, "c= network or address type"));
    }
    // multicast TTL suffix is not for us; keep the address part
    Ok(addr.split('/').next().unwrap_or(addr).to_string())
}

impl SessionDescription {
    /// Parse an SDP body.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| syntax(0, "not UTF-8"))?;
        let mut sd = SessionDescription {
            connection: None,
            media: Vec::new(),
        };
        let mut seen_v = false;
        let mut seen_o = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let bytes = raw.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' {
                return Err(syntax(line, "expected <type>=<value>"));
            }
            let value = &raw[2..];
            match bytes[0] {
                b'v' => {
                    if value != "0" {
                        return Err(syntax(line, "version must be 0"));
                    }
                    seen_v = true;
                }
                _ if !seen_v => return Err(syntax(line, "v= must come first")),
                b'o' => {
                    // username sess-id sess-version nettype addrtype address; the
                    // address may be a hostname (RFC 8866 §5.2).
                    if value.split_whitespace().count() != 6 {
                        return Err(syntax(line, "o= needs six fields"));
                    }
                    seen_o = true;
                }
                b'c' => {
                    let c = parse_connection(value, line)?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => sd.connection = Some(c),
                    }
                }
                b'm' => {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    if parts.len() < 4 {
                        return Err(syntax(line, "m= needs media, port, proto and formats"));
                    }
                    let port = parts[1]
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or(syntax(line, "m= port"))?;
                    sd.media.push(Media {
                        kind: parts[0].to_string(),
                        port,
                        proto: parts[2].to_string(),
                        formats: parts[3..].iter().map(|s| s.to_string()).collect(),
                        connection: None,
                        rtpmap: Vec::new(),
                        fmtp: Vec::new(),
                        ptime: None,
                        direction: Direction::SendRecv,
                        crypto: Vec::new(),
                    });
                }
                b'a' => {
                    let Some(m) = sd.media.last_mut() else {
                        continue; // session-level attributes do not change audio handling
                    };
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    match name {
                        "rtpmap" => {
                            let (pt, enc) = val
                                .split_once(' ')
                                .ok_or(syntax(line, "rtpmap needs pt and encoding"))?;
                            let pt: u8 = pt.parse().map_err(|_| syntax(line, "rtpmap pt"))?;
                            if pt > 127 {
                                return Err(syntax(line, "rtpmap pt"));
                            }
                            m.rtpmap.push((pt, enc.trim().to_string()));
                        }
                        "fmtp" => {
                            if let Some((pt, params)) = val.split_once(' ')
                                && let Ok(pt) = pt.parse::<u8>()
                            {
                                m.fmtp.push((pt, params.trim().to_string()));
                            }
                        }
                        "ptime" => {
                            m.ptime = Some(val.trim().parse().map_err(|_| syntax(line, "ptime"))?);
                        }
                        "crypto" => m.crypto.push(val.trim().to_string()),
                        "sendrecv" => m.direction = Direction::SendRecv,
                        "sendonly" => m.direction = Direction::SendOnly,
                        "recvonly" => m.direction = Direction::RecvOnly,
                        "inactive" => m.direction = Direction::Inactive,
                        _ => {}
                    }
                }
                b's' | b't' | b'i' | b'u' | b'e' | b'p' | b'b' | b'r' | b'z' | b'k' => {}
                _ => return Err(syntax(line, "unknown line type")),
            }
        }
        if !seen_v || !seen_o {
            return Err(syntax(0, "v= and o= are required"));
        }
        Ok(sd)
    }
}

/// What one side agreed to for the audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    /// codec
    pub codec: CodecKind,
    /// its payload type on this leg
    pub pt: u8,
    /// telephone-event payload type, if negotiated
    pub dtmf_pt: Option<u8>,
    /// peer's RTP address: IP literal from c=, None when it gave a hostname
    pub remote_ip: Option<IpAddr>,
    /// peer's RTP port
    pub remote_port: u16,
    /// direction as the peer wrote it
    pub peer_direction: Direction,
    /// packet time the peer asked for (10..=60 ms honoured on receive)
    pub ptime_ms: u32,
    /// SRTP keys, when the stream is secured by SDES
    pub srtp: Option<Sdes>,
    /// the offer listed comfort noise (RFC 3389, payload type 13, CN/8000) with
    /// an 8 kHz clock: answered, so a phone that stops sending in pauses says
    /// so instead of leaving a gap that reads as loss
    pub cn: bool,
}

/// Whether `m` offers comfort noise at the static payload type 13 for a codec
/// clocked at `rate` (CN/8000: G.711, G.722).
fn cn_of(m: &Media, rate: u32) -> bool {
    rate == 8000
        && m.formats.iter().any(|f| f == "13")
        && m.rtpmap
            .iter()
            .find(|(p, _)| *p == 13)
            .is_none_or(|(_, e)| e.eq_ignore_ascii_case("CN/8000"))
}

fn codec_of(m: &Media, fmt: &str) -> Option<(CodecKind, u8)> {
    let pt: u8 = fmt.parse().ok()?;
    let name = m
        .rtpmap
        .iter()
        .find(|(p, _)| *p == pt)
        .map(|(_, e)| e.to_ascii_lowercase());
    match (pt, name.as_deref()) {
        (_, Some("pcmu/8000" | "pcmu/8000/1")) | (0, None) => Some((CodecKind::Pcmu, pt)),
        (_, Some("pcma/8000" | "pcma/8000/1")) | (8, None) => Some((CodecKind::Pcma, pt)),
        (_, Some("g722/8000" | "g722/8000/1")) | (9, None) => Some((CodecKind::G722, pt)),
        (_, Some("opus/48000/2" | "opus/48000")) => Some((CodecKind::Opus, pt)),
        _ => None,
    }
}

/// The telephone-event payload type at `rate`, when its events and ours meet.
fn dtmf_of(m: &Media, rate: u32) -> Option<u8> {
    m.rtpmap.iter().find_map(|(pt, e)| {
        let e = e.to_ascii_lowercase();
        (e == format!("telephone-event/{rate}") && common_events(m, *pt) != 0).then_some(*pt)
    })
}

/// The events of payload type `pt` in `m` that we also have.
fn common_events(m: &Media, pt: u8) -> u32 {
    let listed = m.fmtp.iter().find(|(p, _)| *p == pt);
    offered_events(listed.map(|(_, f)| f.as_str())) & EVENTS
}

/// Pick the audio stream of an offer or answer: first audio m-line with a port,
/// first format in the writer's order that we support (RFC 3264 §6.1). Our SDES
/// key, when the stream has one we take, comes from `keys` (none: an answer).
pub fn select_audio(
    sd: &SessionDescription,
    keys: crate::sdes::KeySource,
) -> Result<(usize, AudioParams), SdpError> {
    for (idx, m) in sd.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 || !m.proto.starts_with("RTP/") {
            continue;
        }
        let Some((codec, pt)) = m.formats.iter().find_map(|f| codec_of(m, f)) else {
            continue;
        };
        // SDES keys (RFC 4568), on an SRTP profile or offered on plain RTP
        // (best effort); an SRTP profile with no key we can take is not ours
        let srtp = Sdes::choose(m.crypto.iter().map(String::as_str), keys);
        if m.proto.contains("SAVP") && srtp.is_none() {
            continue;
        }
        let conn = m.connection.as_ref().or(sd.connection.as_ref());
        let remote_ip = conn.and_then(|c| c.parse::<IpAddr>().ok());
        // RFC 3264 §8.4 (old style hold): c=0.0.0.0 means the peer receives nothing.
        let held = remote_ip.is_some_and(|ip| ip.is_unspecified());
        let peer_direction = if held {
            match m.direction {
                Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
                _ => Direction::Inactive,
            }
        } else {
            m.direction
        };
        return Ok((
            idx,
            AudioParams {
                codec,
                pt,
                dtmf_pt: dtmf_of(m, codec.clock_rate()),
                remote_ip: remote_ip.filter(|ip| !ip.is_unspecified()),
                remote_port: m.port,
                peer_direction,
                ptime_ms: m.ptime.filter(|p| (10..=60).contains(p)).unwrap_or(20),
                srtp,
                cn: cn_of(m, codec.clock_rate()),
            },
        ));
    }
    Err(SdpError::NoCommonCodec)
}

/// Our side of the description.
#[derive(Debug, Clone)]
pub struct LocalSdp {
    /// address written in o= and c=
    pub addr: IpAddr,
    /// RTP port
    pub port: u16,
    /// o= session id
    pub session_id: u64,
    /// o= version, bumped on every change (RFC 3264 §8)
    pub version: u64,
}

fn header(out: &mut String, l: &LocalSdp) {
    let ip = if l.addr.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        out,
        "v=0\r\no=caucus {} {} IN {ip} {}\r\ns=caucus\r\nc=IN {ip} {}\r\nt=0 0\r\n",
        l.session_id, l.version, l.addr, l.addr
    );
}

/// The telephone-events we send and understand: the digits, * # A-D, flash.
const EVENTS: u32 = (1 << 17) - 1;

/// RFC 4733 §7.1.1: the events of an answer are within the offer's; an offer
/// without a list means 0-15.
fn offered_events(fmtp: Option<&str>) -> u32 {
    let Some(list) = fmtp else {
        return 0xffff;
    };
    let mut mask = 0u32;
    for item in list.split(',').map(str::trim) {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
            for e in lo..=hi.min(31) {
                mask |= 1 << e;
            }
        }
    }
    mask
}

/// `0-11,16` for the events in `mask`.
fn write_events(out: &mut String, mask: u32) {
    let mut first = true;
    let mut e = 0;
    while e < 32 {
        if mask & (1 << e) == 0 {
            e += 1;
            continue;
        }
        let start = e;
        while e < 31 && mask & (1 << (e + 1)) != 0 {
            e += 1;
        }
        let sep = if first { "" } else { "," };
        first = false;
        let _ = if start == e {
            write!(out, "{sep}{start}")
        } else {
            write!(out, "{sep}{start}-{e}")
        };
        e += 1;
    }
}

fn audio_lines(out: &mut String, codec: CodecKind, pt: u8, dtmf: Option<(u8, u32)>) {
    let _ = write!(out, "a=rtpmap:{pt} {}\r\n", codec.encoding());
    if codec == CodecKind::Opus {
        let _ = write!(out, "a=fmtp:{pt} useinbandfec=1\r\n");
    }
    if let Some((d, events)) = dtmf {
        let _ = write!(
            out,
            "a=rtpmap:{d} telephone-event/{}\r\na=fmtp:{d} ",
            codec.clock_rate()
        );
        write_events(out, events);
        out.push_str("\r\n");
    }
}

/// Write the answer to `offer`, taking `chosen` (from [`select_audio`]) and rejecting
/// every other m-line with port 0.
pub fn answer(
    offer: &SessionDescription,
    chosen: usize,
    params: &AudioParams,
    local: &LocalSdp,
    direction: Direction,
) -> Vec<u8> {
    let mut out = String::with_capacity(400);
    header(&mut out, local);
    for (i, m) in offer.media.iter().enumerate() {
        if i != chosen {
            let _ = write!(
                out,
                "m={} 0 {} {}\r\n",
                m.kind,
                m.proto,
                m.formats.first().map(String::as_str).unwrap_or("0")
            );
            continue;
        }
        let dtmf = params.dtmf_pt.map(|d| (d, common_events(m, d)));
        let _ = write!(out, "m=audio {} {} {}", local.port, m.proto, params.pt);
        if let Some((d, _)) = dtmf {
            let _ = write!(out, " {d}");
        }
        if params.cn {
            out.push_str(" 13");
        }
        out.push_str("\r\n");
        audio_lines(&mut out, params.codec, params.pt, dtmf);
        if params.cn {
            out.push_str("a=rtpmap:13 CN/8000\r\n");
        }
        if let Some(s) = &params.srtp {
            let _ = write!(out, "a=crypto:{}\r\n", s.answer_line());
        }
        // the packet time we send: the offer's for G.711 and G.722, 20 ms for
        // Opus (a frame a packet)
        let ptime = if params.codec.byte_per_tick() {
            params.ptime_ms
        } else {
            20
        };
        let _ = write!(out, "a=ptime:{ptime}\r\na={}\r\n", direction.attr());
    }
    out.into_bytes()
}

/// Write an offer with every codec we support (late offer, RFC 3264 §5).
pub fn offer(local: &LocalSdp, direction: Direction) -> Vec<u8> {
    offer_in_order(local, direction, false)
}

/// An offer with Opus first, so that an answerer who takes the offerer's order
/// (another caucus, across a room link) carries 48 kHz.
pub fn offer_wideband(local: &LocalSdp, direction: Direction) -> Vec<u8> {
    offer_in_order(local, direction, true)
}

fn offer_in_order(local: &LocalSdp, direction: Direction, opus_first: bool) -> Vec<u8> {
    let mut out = String::with_capacity(500);
    header(&mut out, local);
    let order = if opus_first {
        "111 9 0 8 101 102"
    } else {
        "0 8 9 111 101 102"
    };
    let _ = write!(out, "m=audio {} RTP/AVP {order}\r\n", local.port);
    audio_lines(&mut out, CodecKind::Pcmu, 0, Some((101, EVENTS)));
    audio_lines(&mut out, CodecKind::Pcma, 8, None);
    audio_lines(&mut out, CodecKind::G722, 9, None);
    audio_lines(&mut out, CodecKind::Opus, 111, Some((102, EVENTS)));
    let _ = write!(out, "a=ptime:20\r\na={}\r\n", direction.attr());
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Comfort noise offered at 13 for an 8 kHz codec is answered; not for
    /// Opus, nor when the offer maps 13 to something else.
    #[test]
    fn comfort_noise_is_answered_when_offered() {
        let local = LocalSdp {
            addr: "127.0.0.1".parse().unwrap(),
            port: 4002,
            session_id: 1,
            version: 1,
        };
        let with = |formats: &str, maps: &str| {
            let o = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP {formats}\r\n{maps}"
            );
            let sd = SessionDescription::parse(o.as_bytes()).unwrap();
            let (idx, p) = select_audio(&sd, || None).unwrap();
            let a = String::from_utf8(answer(&sd, idx, &p, &local, Direction::SendRecv)).unwrap();
            (p.cn, a)
        };
        let (cn, a) = with("0 13", "");
        assert!(cn);
        assert!(
            a.contains("m=audio 4002 RTP/AVP 0 13\r\n") && a.contains("a=rtpmap:13 CN/8000\r\n"),
            "{a}"
        );
        let (cn, a) = with("0", "");
        assert!(!cn && !a.contains("CN"), "{a}");
        let (cn, _) = with("111 13", "a=rtpmap:111 opus/48000/2\r\n");
        assert!(!cn, "CN/8000 is not Opus's clock");
        let (cn, _) = with("0 13", "a=rtpmap:13 X-OTHER/8000\r\n");
        assert!(!cn);
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 phone.example.com\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n\
m=video 5000 RTP/AVP 96\r\n";

    #[test]
    fn picks_first_supported_in_offerer_order() {
        let sd = SessionDescription::parse(OFFER.as_bytes()).unwrap();
        let (idx, p) = select_audio(&sd, MasterKey::random).unwrap();
        assert_eq!(idx, 0);
        // 9 is G.722 by its static number
        assert_eq!((p.codec, p.pt), (CodecKind::G722, 9));
        let no_g722 = OFFER.replace("RTP/AVP 9 8 0", "RTP/AVP 8 0");
        let (_, p) = select_audio(
            &SessionDescription::parse(no_g722.as_bytes()).unwrap(),
            MasterKey::random,
        )
        .unwrap();
        assert_eq!(p.codec, CodecKind::Pcma);
        assert_eq!(p.dtmf_pt, Some(101));
        assert_eq!(p.ptime_ms, 30);
        assert_eq!(p.remote_ip, Some("127.0.0.1".parse().unwrap()));
        let local = LocalSdp {
            addr: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 7,
            version: 1,
        };
        let ans = answer(&sd, idx, &p, &local, Direction::SendRecv);
        let back = SessionDescription::parse(&ans).unwrap();
        // the offer's 30 ms is what G.711 sends
        assert_eq!(back.media[0].ptime, Some(30));
        assert_eq!(back.media.len(), 2);
        assert_eq!(back.media[1].port, 0);
        let (_, bp) = select_audio(&back, MasterKey::random).unwrap();
        assert_eq!(
            (bp.codec, bp.pt, bp.dtmf_pt),
            (CodecKind::Pcma, 8, Some(101))
        );
    }

    #[test]
    fn the_answers_telephone_events_stay_within_the_offers() {
        let local = LocalSdp {
            addr: "127.0.0.1".parse().unwrap(),
            port: 20000,
            session_id: 7,
            version: 1,
        };
        let answer_to = |fmtp: &str| {
            let offer = format!(
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{fmtp}"
            );
            let sd = SessionDescription::parse(offer.as_bytes()).unwrap();
            let (idx, p) = select_audio(&sd, MasterKey::random).unwrap();
            let ans = String::from_utf8(answer(&sd, idx, &p, &local, Direction::SendRecv)).unwrap();
            (p.dtmf_pt, ans)
        };
        // no list: 0-15 (RFC 4733 §7.1.1), not our 0-16
        let (pt, ans) = answer_to("");
        assert_eq!(pt, Some(101));
        assert!(ans.contains("a=fmtp:101 0-15\r\n"), "{ans}");
        // a list: what it and we share, written as ranges
        let (_, ans) = answer_to("a=fmtp:101 0-11,16,20-30\r\n");
        assert!(ans.contains("a=fmtp:101 0-11,16\r\n"), "{ans}");
        let (_, ans) = answer_to("a=fmtp:101 0-16\r\n");
        assert!(ans.contains("a=fmtp:101 0-16\r\n"), "{ans}");
        // nothing shared: no telephone-event at all (in-band detection instead)
        let (pt, ans) = answer_to("a=fmtp:101 32-40\r\n");
        assert_eq!(pt, None);
        assert!(!ans.contains("telephone-event"), "{ans}");
    }

    #[test]
    fn no_common_codec_and_syntax() {
        let sd = SessionDescription::parse(
            b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 1 RTP/AVP 18\r\n",
        )
        .unwrap();
        assert_eq!(
            select_audio(&sd, MasterKey::random).unwrap_err(),
            SdpError::NoCommonCodec
        );
        assert!(SessionDescription::parse(b"garbage").is_err());
        assert!(SessionDescription::parse(b"v=0\r\no=x\r\n").is_err());
    }

    #[test]
    fn hold_forms() {
        let sd = SessionDescription::parse(
            b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(
            select_audio(&sd, MasterKey::random)
                .unwrap()
                .1
                .peer_direction,
            Direction::SendOnly
        );
        let l = LocalSdp {
            addr: "::1".parse().unwrap(),
            port: 2,
            session_id: 1,
            version: 1,
        };
        let o = SessionDescription::parse(&offer(&l, Direction::SendRecv)).unwrap();
        assert_eq!(
            select_audio(&o, MasterKey::random).unwrap().1.codec,
            CodecKind::Pcmu
        );
    }
}
