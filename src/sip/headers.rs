//! Typed views of the header fields a UAS interprets: Via (RFC 3261 §20.42, §18.2.2),
//! From/To/Contact name-addr (§20.10, §20.20, §20.39, §25.1), CSeq (§20.16), SIP URIs
//! (§19.1). Values stay strings in [`super::Message`]; these parse on demand and reject
//! what §25 does not allow, so that malformed requests get their 400.

use super::message::{Method, is_token};

/// Why a header value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// a required header is absent
    #[error("missing {0}")]
    Missing(&'static str),
    /// a header that must appear once appears more often
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// the value does not follow the grammar
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// A SIP or SIPS URI (RFC 3261 §19.1.1), enough of it to route on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// "sip" or "sips"
    pub scheme: String,
    /// user part, percent-decoded
    pub user: Option<String>,
    /// host (IPv6 references keep their brackets)
    pub host: String,
    /// port if given
    pub port: Option<u16>,
}

/// Outcome of looking at a Request-URI scheme.
#[derive(Debug, PartialEq, Eq)]
pub enum UriError {
    /// not sip/sips (RFC 3261 §8.2.2.1: 416)
    UnsupportedScheme,
    /// not a URI at all (400)
    Malformed,
}

fn percent_decode(s: &str) -> Result<String, UriError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(UriError::Malformed)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::Malformed)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl SipUri {
    /// Parse a URI; non-SIP schemes give [`UriError::UnsupportedScheme`].
    pub fn parse(s: &str) -> Result<SipUri, UriError> {
        let colon = s.find(':').ok_or(UriError::Malformed)?;
        let scheme = &s[..colon];
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return Err(UriError::Malformed);
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(UriError::UnsupportedScheme);
        }
        let rest = &s[colon + 1..];
        if rest.contains([' ', '\t', '<', '>']) {
            return Err(UriError::Malformed);
        }
        // user part ends at the last '@' before any header part.
        let before_headers = rest.split('?').next().unwrap_or(rest);
        let (user, hostport) = match before_headers.rfind('@') {
            Some(at) => (
                Some(percent_decode(&before_headers[..at])?),
                &before_headers[at + 1..],
            ),
            None => (None, before_headers),
        };
        let hostport = hostport.split(';').next().unwrap_or(hostport);
        let (host, port) = split_host_port(hostport).ok_or(UriError::Malformed)?;
        Ok(SipUri {
            scheme,
            user,
            host: host.to_string(),
            port,
        })
    }
}

/// Split `host[:port]`, honouring IPv6 references (RFC 5118 §4.3/§4.10).
pub fn split_host_port(hp: &str) -> Option<(&str, Option<u16>)> {
    if hp.is_empty() {
        return None;
    }
    if hp.starts_with('[') {
        let end = hp.find(']')?;
        let addr = &hp[1..end];
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let host = &hp[..=end];
        return match &hp[end + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    let (host, port) = match hp.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (hp, None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
    {
        return None;
    }
    Some((host, port))
}

/// Parameters `;name=value` in order; names lower-cased.
pub fn params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .skip(1)
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (p.to_ascii_lowercase(), None),
            }
        })
        .collect()
}

/// One Via header value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// UDP, TCP, ...
    pub transport: String,
    /// sent-by host
    pub host: String,
    /// sent-by port
    pub port: Option<u16>,
    /// branch parameter
    pub branch: Option<String>,
}

impl Via {
    /// Parse one element of a Via list.
    pub fn parse(v: &str) -> Result<Via, HeaderError> {
        let bad = HeaderError::Malformed("Via");
        // sent-protocol allows LWS around its slashes (RFC 3261 §25.1 SLASH)
        let mut parts = v.splitn(3, '/');
        let (name, version, rest) = (
            parts.next().ok_or(bad.clone())?.trim(),
            parts.next().ok_or(bad.clone())?.trim(),
            parts.next().ok_or(bad.clone())?.trim_start(),
        );
        let (transport, rest) = rest.split_once([' ', '\t']).ok_or(bad.clone())?;
        let proto = [name, version, transport];
        let [name, version, transport] = proto;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || !is_token(transport) {
            return Err(bad);
        }
        let rest = rest.trim();
        let sent_by = rest.split(';').next().unwrap_or("").trim();
        let (host, port) = split_host_port(sent_by).ok_or(bad.clone())?;
        let mut branch = None;
        for (n, val) in params(rest) {
            if n.is_empty() {
                return Err(bad);
            }
            if n == "branch" {
                let b = val.ok_or(bad.clone())?;
                // RFC 4475 §3.2.1: the magic cookie alone is not a branch.
                if b.eq_ignore_ascii_case("z9hG4bK") || !is_token(&b) {
                    return Err(bad);
                }
                branch = Some(b);
            }
        }
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            branch,
        })
    }

    /// RFC 3261 §17.2.3: a branch starting with the magic cookie identifies the
    /// transaction on its own.
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.branch.as_deref().filter(|b| b.starts_with("z9hG4bK"))
    }
}

/// A name-addr or addr-spec with parameters (From, To, Contact, Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// display name without quotes
    pub display: Option<String>,
    /// the URI as written
    pub uri: String,
    /// header parameters after the URI
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parse per RFC 3261 §25.1 `(name-addr / addr-spec) *(SEMI param)`.
    pub fn parse(v: &str, what: &'static str) -> Result<NameAddr, HeaderError> {
        let bad = HeaderError::Malformed(what);
        let v = v.trim();
        let (display, uri, tail) = if let Some(rest) = v.strip_prefix('"') {
            let mut end = None;
            let mut esc = false;
            for (i, c) in rest.char_indices() {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end.ok_or(bad.clone())?;
            let after = rest[end + 1..].trim_start();
            let inner = after.strip_prefix('<').ok_or(bad.clone())?;
            let close = inner.find('>').ok_or(bad.clone())?;
            (
                Some(rest[..end].to_string()),
                &inner[..close],
                &inner[close + 1..],
            )
        } else if let Some(lt) = v.find('<') {
            let name = v[..lt].trim();
            // unquoted display name: tokens separated by LWS (§25.1)
            if !name.is_empty() && !name.split_whitespace().all(is_token) {
                return Err(bad);
            }
            let inner = &v[lt + 1..];
            let close = inner.find('>').ok_or(bad.clone())?;
            let display = (!name.is_empty()).then(|| name.to_string());
            (display, &inner[..close], &inner[close + 1..])
        } else {
            // addr-spec: params belong to the header, and it may hold neither
            // spaces, '?', nor ',' (§20.10).
            let end = v.find(';').unwrap_or(v.len());
            let uri = v[..end].trim_end();
            if uri.contains(['?', ',', ' ', '\t', '>', '"']) {
                return Err(bad);
            }
            (None, uri, &v[end..])
        };
        if uri.is_empty() || uri.contains([' ', '\t']) || !uri.contains(':') {
            return Err(bad);
        }
        let tail = tail.trim();
        if !tail.is_empty() && !tail.starts_with(';') {
            return Err(bad);
        }
        let params = params(tail);
        if params.iter().any(|(n, _)| n.is_empty() || !is_token(n)) {
            return Err(bad);
        }
        Ok(NameAddr {
            display,
            uri: uri.to_string(),
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == "tag")
            .and_then(|(_, v)| v.as_deref())
    }
}

/// CSeq (RFC 3261 §20.16): sequence number below 2**31 and a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// sequence number
    pub seq: u32,
    /// method
    pub method: String,
}

impl CSeq {
    /// Parse `1*DIGIT LWS Method`.
    pub fn parse(v: &str) -> Result<CSeq, HeaderError> {
        let bad = HeaderError::Malformed("CSeq");
        let mut it = v.split_whitespace();
        let n = it.next().ok_or(bad.clone())?;
        let m = it.next().ok_or(bad.clone())?;
        if it.next().is_some() || !n.bytes().all(|c| c.is_ascii_digit()) || !is_token(m) {
            return Err(bad);
        }
        let seq: u32 = n.parse().map_err(|_| bad.clone())?;
        if seq >= 1 << 31 {
            return Err(bad);
        }
        Ok(CSeq {
            seq,
            method: m.to_string(),
        })
    }
}

/// The headers every request must carry, checked (RFC 3261 §8.1.1, §8.2).
#[derive(Debug, Clone)]
pub struct RequestHeaders {
    /// all Via elements, top first
    pub vias: Vec<Via>,
    /// From
    pub from: NameAddr,
    /// To
    pub to: NameAddr,
    /// Call-ID
    pub call_id: String,
    /// CSeq
    pub cseq: CSeq,
}

fn exactly_one<'a>(m: &'a super::Message, name: &'static str) -> Result<&'a str, HeaderError> {
    let mut it = m.all(name);
    let v = it.next().ok_or(HeaderError::Missing(name))?;
    if it.next().is_some() {
        return Err(HeaderError::Duplicate(name));
    }
    Ok(v)
}

impl RequestHeaders {
    /// Validate a request's mandatory headers and the ones whose syntax affects
    /// processing (Max-Forwards, Contact, Expires).
    pub fn check(m: &super::Message) -> Result<RequestHeaders, HeaderError> {
        let vias = m
            .list("Via")
            .iter()
            .map(|v| Via::parse(v))
            .collect::<Result<Vec<_>, _>>()?;
        if vias.is_empty() {
            return Err(HeaderError::Missing("Via"));
        }
        let from = NameAddr::parse(exactly_one(m, "From")?, "From")?;
        let to = NameAddr::parse(exactly_one(m, "To")?, "To")?;
        let call_id = exactly_one(m, "Call-ID")?.to_string();
        if call_id.is_empty() || call_id.contains([' ', '\t']) || has_control(&call_id) {
            return Err(HeaderError::Malformed("Call-ID"));
        }
        let cseq = CSeq::parse(exactly_one(m, "CSeq")?)?;
        let mut mf = m.all("Max-Forwards");
        if let Some(v) = mf.next() {
            if mf.next().is_some() {
                return Err(HeaderError::Duplicate("Max-Forwards"));
            }
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|c| c.is_ascii_digit()) {
                return Err(HeaderError::Malformed("Max-Forwards"));
            }
            if v.parse::<u16>().map_or(true, |n| n > 255) {
                return Err(HeaderError::Malformed("Max-Forwards"));
            }
        }
        if m.header("Expires")
            .is_some_and(|v| v.parse::<u32>().is_err())
        {
            return Err(HeaderError::Malformed("Expires"));
        }
        for c in m.list("Contact") {
            // a Contact becomes the target of our in-dialog requests: raw control
            // bytes there would be copied into our BYE
            if has_control(&c) {
                return Err(HeaderError::Malformed("Contact"));
            }
            if c != "*" {
                NameAddr::parse(&c, "Contact")?;
            }
        }
        Ok(RequestHeaders {
            vias,
            from,
            to,
            call_id,
            cseq,
        })
    }

    /// Top Via.
    pub fn top_via(&self) -> &Via {
        &self.vias[0]
    }
}

/// Whether `s` holds a control character other than HT (RFC 3261's grammar allows
/// them nowhere outside a quoted-pair).
pub fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| (c.is_ascii_control() && c != '\t') || c == '\u{7f}')
}

/// True when a request's method and CSeq method agree (RFC 3261 §8.1.1.5).
pub fn cseq_matches(method: &Method, cseq: &CSeq) -> bool {
    method.as_str() == cseq.method
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri() {
        let u = SipUri::parse("sip:de%6Do@127.0.0.1:5060;transport=udp").unwrap();
        assert_eq!(u.user.as_deref(), Some("demo"));
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, Some(5060));
        assert_eq!(
            SipUri::parse("soap.beep://x").unwrap_err(),
            UriError::UnsupportedScheme
        );
        assert_eq!(
            SipUri::parse("[2001:db8::10]:5070").unwrap_err(),
            UriError::Malformed
        );
        let v6 = SipUri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(v6.port, None);
        assert!(SipUri::parse("sip:[2001:db8:::192.0.2.1]").is_err());
    }

    #[test]
    fn via() {
        let v = Via::parse("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bKx"));
        assert_eq!(v.port, Some(5070));
        assert!(Via::parse("SIP/2.0/UDP h;branch=z9hG4bK").is_err());
        let lws = Via::parse("SIP  /   2.0 /UDP     192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(
            (lws.transport.as_str(), lws.host.as_str()),
            ("UDP", "192.0.2.2")
        );
    }

    #[test]
    fn name_addr() {
        let n = NameAddr::parse("\"A, b\" <sip:a@b>;tag=x", "From").unwrap();
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.display.as_deref(), Some("A, b"));
        assert!(NameAddr::parse("\"unterminated <sip:a@b>", "From").is_err());
        assert!(NameAddr::parse("Bob <sip:a@b>", "To").is_ok());
        assert!(NameAddr::parse("sip:a@b?x=y", "Contact").is_err());
        assert!(NameAddr::parse("Eb]x <sip:a@b>", "From").is_err());
    }

    #[test]
    fn cseq() {
        assert!(CSeq::parse("1 INVITE").is_ok());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
    }
}
