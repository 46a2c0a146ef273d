//! SIP message syntax: parse and print requests and responses (RFC 3261 §7, §20, §25).
//!
//! Why our own parser and not rsip: rsip 0.4 is unmaintained and mis-parses compact
//! header forms, folded lines, Content-Length and unknown methods; the fork carried by
//! rsipstack fixes most of that, but it drags a whole async stack (tokio, resolver,
//! rustls, websockets) into what must be a sans-IO core, still accepts several RFC 4475
//! torture messages that a UAS has to reject, and allocates a typed tree per header
//! that the bridge never reads. A conference bridge needs a small, strict, bounded
//! subset: the start line, a list of headers with compact forms folded to their long
//! names, the handful of headers a UAS interprets (Via, From, To, Call-ID, CSeq,
//! Contact, Max-Forwards, Content-Length, Content-Type, Require, Record-Route), and a
//! body framed by Content-Length. Everything else is carried through untouched.
//!
//! Parsing never panics and never indexes with a value taken from the peer without a
//! bounds check; every failure is a typed [`ParseError`] that maps to a status code.

use std::fmt::Write as _;

/// Upper bound on a whole message (UDP datagram or TCP frame).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Upper bound on the number of header fields.
pub const MAX_HEADERS: usize = 128;
/// Longest header line (after unfolding) we accept.
pub const MAX_LINE: usize = 8 * 1024;

/// Request methods the bridge knows by name (RFC 3261 §27.4 and extensions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3261
    Invite,
    /// RFC 3261
    Ack,
    /// RFC 3261
    Bye,
    /// RFC 3261
    Cancel,
    /// RFC 3261
    Options,
    /// RFC 3261 (not served: no registrar)
    Register,
    /// RFC 3311
    Update,
    /// RFC 6086
    Info,
    /// RFC 3262 (not served)
    Prack,
    /// RFC 6665 (not served)
    Subscribe,
    /// RFC 6665 (not served)
    Notify,
    /// RFC 3515 (not served)
    Refer,
    /// RFC 3428 (not served)
    Message,
    /// RFC 3903 (not served)
    Publish,
    /// Any other token: answered 501.
    Other(String),
}

impl Method {
    fn from_token(t: &str) -> Method {
        match t {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// method
        method: Method,
        /// Request-URI, verbatim
        uri: String,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// 100..=699
        code: u16,
        /// may be empty
        reason: String,
    },
}

/// A parsed SIP message. Header names are stored in their long canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// request or status line
    pub start: StartLine,
    /// headers in wire order; names canonical, values trimmed and unfolded
    pub headers: Vec<(String, String)>,
    /// body, exactly Content-Length bytes
    pub body: Vec<u8>,
}

/// Why a message could not be parsed. Each maps to a status in [`ParseError::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// the bytes do not form a SIP message at all
    #[error("malformed start line")]
    StartLine,
    /// SIP version other than 2.0
    #[error("unsupported SIP version")]
    Version,
    /// header section is broken
    #[error("malformed header: {0}")]
    Header(&'static str),
    /// too big, too many headers
    #[error("message exceeds limits")]
    TooLarge,
    /// Content-Length is invalid or larger than the bytes present
    #[error("bad Content-Length")]
    ContentLength,
    /// end of headers not found (datagram truncated)
    #[error("incomplete message")]
    Incomplete,
}

impl ParseError {
    /// Status code a UAS answers with (RFC 3261 §8.2, §21.5.26).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }
}

/// RFC 3261 §7.3.3 compact forms, plus the common extension ones.
fn canonical_name(name: &str) -> Option<&'static str> {
    const NAMES: &[(&str, &str)] = &[
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("a", "Accept-Contact"),
        ("j", "Reject-Contact"),
        ("d", "Request-Disposition"),
    ];
    const LONG: &[&str] = &[
        "Call-ID",
        "Contact",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "From",
        "To",
        "Via",
        "CSeq",
        "Max-Forwards",
        "Route",
        "Record-Route",
        "Require",
        "Proxy-Require",
        "Supported",
        "Allow",
        "Accept",
        "Expires",
        "Session-Expires",
        "Min-SE",
        "Subject",
    ];
    if name.len() == 1 {
        return NAMES
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .map(|(_, l)| *l);
    }
    LONG.iter().find(|l| l.eq_ignore_ascii_case(name)).copied()
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// True when `s` is a non-empty RFC 3261 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Whether a request, at a glance and without parsing it, starts something new:
/// not an ACK or CANCEL, and a To header without a tag. Flood control drops such
/// requests from a source over its limit before the parser spends time on them;
/// anything that might continue a dialog is left to the full parse.
pub fn glance_is_new_request(data: &[u8]) -> bool {
    if data.starts_with(b"SIP/") || data.starts_with(b"ACK ") || data.starts_with(b"CANCEL ") {
        return false;
    }
    let head = &data[..find_header_end(data).unwrap_or(data.len())];
    let mut to = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(0);
        let name = line[..name_end].trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            to = Some(&line[name_end..]);
            break;
        }
    }
    // no To at all: the parser will answer 400 (and count a failure)
    let Some(to) = to else { return false };
    !to.windows(4).any(|w| w.eq_ignore_ascii_case(b"tag="))
}

fn find_header_end(data: &[u8]) -> Option<usize> {
    data.windows(4).position(|w| w == b"\r\n\r\n")
}

impl Message {
    /// Parse one message from a datagram (or a TCP frame produced by the framer).
    /// Bytes after Content-Length are ignored (RFC 3261 §18.3).
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        if data.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        let mut start = 0;
        while data[start..].starts_with(b"\r\n") {
            start += 2;
        }
        let data = &data[start..];
        let (head, rest) = match find_header_end(data) {
            Some(p) => (&data[..p], &data[p + 4..]),
            None => {
                // A datagram whose headers end at its end (no empty line) is still
                // judged on what it holds: strip a final CRLF and parse.
                let trimmed = data.strip_suffix(b"\r\n").unwrap_or(data);
                (trimmed, &[][..])
            }
        };
        // Headers are text: bytes that are not UTF-8 are only legal inside quoted
        // strings and bodies; treat them lossily so that a display name with UTF-8 or
        // control bytes does not make the whole message unreadable.
        let head = String::from_utf8_lossy(head);
        let mut lines = unfold(&head);
        if lines.is_empty() {
            return Err(ParseError::StartLine);
        }
        let first = lines.remove(0);
        let start = parse_start_line(&first)?;
        if lines.len() > MAX_HEADERS || lines.iter().any(|l| l.len() > MAX_LINE) {
            return Err(ParseError::TooLarge);
        }
        let mut headers = Vec::with_capacity(lines.len());
        for line in lines {
            let Some(colon) = line.find(':') else {
                return Err(ParseError::Header("missing colon"));
            };
            let raw_name = line[..colon].trim_end_matches([' ', '\t']);
            if !is_token(raw_name) {
                return Err(ParseError::Header("bad header name"));
            }
            let name = canonical_name(raw_name)
                .map(str::to_string)
                .unwrap_or_else(|| raw_name.to_string());
            let value = line[colon + 1..].trim_matches([' ', '\t']).to_string();
            headers.push((name, value));
        }
        let mut msg = Message {
            start,
            headers,
            body: Vec::new(),
        };
        let cls: Vec<&str> = msg.all("Content-Length").collect();
        let body_len = match cls.as_slice() {
            [] => rest.len(),
            [one] => one
                .parse::<usize>()
                .map_err(|_| ParseError::ContentLength)?,
            _ => return Err(ParseError::ContentLength),
        };
        if body_len > rest.len() {
            return Err(ParseError::ContentLength);
        }
        msg.body = rest[..body_len].to_vec();
        Ok(msg)
    }

    /// First value of a header (canonical name, case-insensitive).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// All values of a header in order, one per header field (not split at commas).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All comma-separated elements of a list header (Via, Route, Require, ...).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.all(name)
            .flat_map(split_list)
            .map(|s| s.to_string())
            .collect()
    }

    /// Method of a request, None for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Append a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.to_string(), value.into()));
    }

    /// Serialise; Content-Length is always written from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{} {} SIP/2.0\r\n", method.as_str(), uri);
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Split a header block into logical lines, joining folded continuation lines
/// (RFC 3261 §7.3.1: a line starting with SP/HT continues the previous one).
fn unfold(head: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim_start_matches([' ', '\t']));
            continue;
        }
        out.push(line.to_string());
    }
    out
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut it = rest.splitn(3, ' ');
        let version = it.next().ok_or(ParseError::StartLine)?;
        if version != "2.0" {
            return Err(ParseError::Version);
        }
        let code = it.next().ok_or(ParseError::StartLine)?;
        if code.len() != 3 {
            return Err(ParseError::StartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StartLine);
        }
        let reason = it.next().unwrap_or("").to_string();
        return Ok(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly three parts,
    // single spaces (RFC 3261 §25.1); LWS inside the URI makes it malformed.
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(ParseError::StartLine);
    };
    if !is_token(method) || uri.is_empty() {
        return Err(ParseError::StartLine);
    }
    if !version.starts_with("SIP/") {
        return Err(ParseError::StartLine);
    }
    if *version != "SIP/2.0" {
        return Err(ParseError::Version);
    }
    if uri.starts_with('<') || uri.contains(['<', '>', '"', '\t']) {
        return Err(ParseError::StartLine);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: uri.to_string(),
    })
}

/// Split a header value at top-level commas (outside quotes and angle brackets).
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut begin = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[begin..i].trim());
                begin = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[begin..].trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:demo@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
f: <sip:a@127.0.0.1>;tag=1\r\n\
t: <sip:demo@127.0.0.1>\r\n\
i: abc\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  line\r\n\
l: 4\r\n\r\nbodyEXTRA";

    #[test]
    fn compact_forms_folding_and_content_length() {
        let m = Message::parse(INVITE).unwrap();
        assert_eq!(m.header("Call-ID"), Some("abc"));
        assert_eq!(
            m.header("via"),
            Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1")
        );
        assert_eq!(m.header("Subject"), Some("folded line"));
        assert_eq!(m.body, b"body");
        assert_eq!(m.method(), Some(&Method::Invite));
    }

    #[test]
    fn round_trip() {
        let m = Message::parse(INVITE).unwrap();
        let again = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Message::parse(b"INVITE sip:a@b SIP/7.0\r\n\r\n").unwrap_err(),
            ParseError::Version
        );
        assert!(Message::parse(b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE <sip:a@b> SIP/2.0\r\n\r\n").is_err());
        assert_eq!(
            Message::parse(b"INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n").unwrap_err(),
            ParseError::ContentLength
        );
        assert_eq!(
            Message::parse(b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nab").unwrap_err(),
            ParseError::ContentLength
        );
        assert!(Message::parse(b"SIP/2.0 999 Big\r\n\r\n").is_err());
    }

    #[test]
    fn unknown_method_parses() {
        let m = Message::parse(b"FOO sip:a@b SIP/2.0\r\n\r\n").unwrap();
        assert_eq!(m.method(), Some(&Method::Other("FOO".into())));
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        assert_eq!(
            split_list("\"a,b\" <sip:x@y;p=1,2>, <sip:z@w>"),
            vec!["\"a,b\" <sip:x@y;p=1,2>", "<sip:z@w>"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Message::parse(&data);
        }

        #[test]
        fn header_values_round_trip(value in "[a-zA-Z0-9;=<>@:. ]{0,40}", body in "[a-z]{0,20}") {
            let mut m = Message { start: StartLine::Response { code: 200, reason: "OK".into() }, headers: vec![], body: body.into_bytes() };
            m.push("Subject", value.trim());
            let p = Message::parse(&m.to_bytes()).unwrap();
            proptest::prop_assert_eq!(p.header("Subject"), Some(value.trim()));
            proptest::prop_assert_eq!(p.body, m.body);
        }
    }
}
