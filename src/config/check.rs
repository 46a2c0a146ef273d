//! The checks a parsed configuration must pass beyond its types: ranges and
//! rules across keys, section by section. A fault is reported at the key that
//! holds it, its line and column found from the TOML document's spans.

use std::collections::HashSet;

use super::{
    Cluster, Config, ConfigError, Dialout, Events, Routing, Rtp, Security, Signing, Sip, Trunk,
    parse_advertise,
};
use crate::core::MenuKeys;
use crate::core::room::spec::RoomSpec;
use crate::util::cidr::Cidr;
use crate::util::is_http_url;

/// Every check, in the order of the file's sections.
pub(super) fn all(cfg: &Config, src: &str, file: &str) -> Result<(), ConfigError> {
    let c = Checker { src, file };
    sip(&c, &cfg.sip)?;
    security(&c, &cfg.security)?;
    rtp(&c, &cfg.rtp)?;
    menu(&c, &cfg.menu)?;
    rooms(&c, &cfg.rooms)?;
    api_and_metrics(&c, cfg)?;
    events(&c, &cfg.events)?;
    routing(&c, &cfg.routing)?;
    dialout(&c, &cfg.dialout)?;
    trunks(&c, &cfg.trunks)?;
    match &cfg.cluster {
        Some(k) => cluster(&c, k),
        None => Ok(()),
    }
}

/// `[cluster]`: the registry's URL, this node's name and addresses, the lease.
fn cluster(c: &Checker, k: &Cluster) -> Result<(), ConfigError> {
    let key = |k: &'static str| [Seg::Key("cluster"), Seg::Key(k)];
    c.check(
        k.redis_url.starts_with("redis://") || k.redis_url.starts_with("rediss://"),
        &key("redis_url"),
        "redis_url must be a redis:// or rediss:// URL",
    )?;
    c.check(
        !k.node_id.is_empty()
            && k.node_id.len() <= 64
            && k.node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        &key("node_id"),
        "node_id must be 1-64 of A-Z a-z 0-9 - _",
    )?;
    c.check(
        crate::sip::headers::SipUri::parse(&k.sip_uri).is_ok_and(|u| u.scheme == "sip"),
        &key("sip_uri"),
        "sip_uri must be this node's sip:host:port",
    )?;
    c.check(
        k.api_url.as_deref().is_none_or(is_http_url),
        &key("api_url"),
        "api_url must be an http:// or https:// URL",
    )?;
    c.check(
        (2..=300).contains(&k.lease_s),
        &key("lease_s"),
        "lease_s must be 2 to 300",
    )?;
    c.check(
        k.cascade_at != 1,
        &key("cascade_at"),
        "cascade_at must be 0 (never) or at least 2",
    )
}

/// The document being checked, to place a fault in it.
struct Checker<'a> {
    src: &'a str,
    file: &'a str,
}

impl Checker<'_> {
    /// A fault at the value `path` leads to.
    fn fault(&self, path: &[Seg], reason: String) -> ConfigError {
        at(self.src, self.file, locate(self.src, path), reason)
    }

    fn check(&self, ok: bool, path: &[Seg], reason: &str) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(self.fault(path, reason.to_string()))
        }
    }
}

/// A fault at byte `span` of `src`.
pub(super) fn at(
    src: &str,
    file: &str,
    span: std::ops::Range<usize>,
    reason: String,
) -> ConfigError {
    let (line, col) = position(src, span.start);
    ConfigError {
        file: file.to_string(),
        line,
        col,
        reason,
    }
}

/// `[sip]`: timers, listeners, advertise, overload, drain, TCP limits, User-Agent.
fn sip(c: &Checker, s: &Sip) -> Result<(), ConfigError> {
    c.check(
        (1..=10_000).contains(&s.t1_ms),
        &[Seg::Key("sip"), Seg::Key("t1_ms")],
        "t1_ms must be 1..=10000",
    )?;
    c.check(
        s.t2_ms >= s.t1_ms && s.t2_ms <= 60_000,
        &[Seg::Key("sip"), Seg::Key("t2_ms")],
        "t2_ms must be t1_ms..=60000",
    )?;
    c.check(
        (1..=60_000).contains(&s.t4_ms),
        &[Seg::Key("sip"), Seg::Key("t4_ms")],
        "t4_ms must be 1..=60000",
    )?;
    c.check(
        !s.listen.is_empty() && s.listen.iter().all(|a| a.port() != 0),
        &[Seg::Key("sip"), Seg::Key("listen")],
        "listen needs at least one address, each with a port",
    )?;
    c.check(
        s.listen
            .iter()
            .enumerate()
            .all(|(i, a)| !s.listen[..i].contains(a)),
        &[Seg::Key("sip"), Seg::Key("listen")],
        "listen names an address twice",
    )?;
    tls(c, s)?;
    c.check(
        s.advertise
            .as_deref()
            .is_none_or(|a| parse_advertise(a).is_some()),
        &[Seg::Key("sip"), Seg::Key("advertise")],
        "advertise must be HOST or HOST:PORT (an IP address, IPv6 in brackets, or a DNS name)",
    )?;
    c.check(
        s.overload_load_percent <= 100,
        &[Seg::Key("sip"), Seg::Key("overload_load_percent")],
        "overload_load_percent must be 0..=100 (0: never)",
    )?;
    c.check(
        s.drain_timeout_s <= 3600,
        &[Seg::Key("sip"), Seg::Key("drain_timeout_s")],
        "drain_timeout_s must be 0..=3600",
    )?;
    for (key, v, lo, hi) in [
        (
            "tcp_max_connections",
            s.tcp_max_connections as u64,
            1,
            1_000_000,
        ),
        (
            "tcp_max_per_source",
            s.tcp_max_per_source as u64,
            1,
            1_000_000,
        ),
        ("tcp_first_message_s", s.tcp_first_message_s, 1, 3600),
        ("tcp_idle_timeout_s", s.tcp_idle_timeout_s, 1, 86_400),
    ] {
        c.check(
            (lo..=hi).contains(&v),
            &[Seg::Key("sip"), Seg::Key(key)],
            &format!("{key} must be {lo}..={hi}"),
        )?;
    }
    c.check(
        s.user_agent
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ')
            && !s.user_agent.is_empty(),
        &[Seg::Key("sip"), Seg::Key("user_agent")],
        "user_agent must be printable ASCII",
    )?;
    Ok(())
}

/// `[sip] tls_*`: listeners with a certificate and key that rustls accepts.
fn tls(c: &Checker, s: &Sip) -> Result<(), ConfigError> {
    let key = |k| [Seg::Key("sip"), Seg::Key(k)];
    c.check(
        s.tls_listen
            .iter()
            .all(|a| a.port() != 0 && !s.listen.contains(a)),
        &key("tls_listen"),
        "tls_listen needs a port on each address, none of them a plain listen address",
    )?;
    if s.tls_listen.is_empty() {
        return Ok(());
    }
    let (Some(cert), Some(pkey)) = (&s.tls_certificate, &s.tls_key) else {
        return Err(c.fault(
            &key("tls_listen"),
            "tls_listen needs tls_certificate and tls_key (PEM files)".into(),
        ));
    };
    match crate::tls::server_config(cert, pkey) {
        Ok(_) => Ok(()),
        Err(e) => Err(c.fault(&key("tls_certificate"), e.to_string())),
    }
}

/// `[security]`: flood control windows and trusted sources.
fn security(c: &Checker, sec: &Security) -> Result<(), ConfigError> {
    c.check(
        (1..=3600).contains(&sec.flood_window_s),
        &[Seg::Key("security"), Seg::Key("flood_window_s")],
        "flood_window_s must be 1..=3600",
    )?;
    c.check(
        sec.flood_ban_s <= 86_400,
        &[Seg::Key("security"), Seg::Key("flood_ban_s")],
        "flood_ban_s must be 0..=86400",
    )?;
    c.check(
        (1..=3600).contains(&sec.fail_window_s),
        &[Seg::Key("security"), Seg::Key("fail_window_s")],
        "fail_window_s must be 1..=3600",
    )?;
    c.check(
        sec.fail_limit <= 100_000,
        &[Seg::Key("security"), Seg::Key("fail_limit")],
        "fail_limit must be 0..=100000",
    )?;
    for (k, cidr) in sec.trusted_sources.iter().enumerate() {
        c.check(
            Cidr::parse(cidr).is_some(),
            &[
                Seg::Key("security"),
                Seg::Key("trusted_sources"),
                Seg::Index(k),
            ],
            &format!("\"{cidr}\" is not ADDRESS or ADDRESS/PREFIX"),
        )?;
    }
    Ok(())
}

/// `[rtp]`: the port range, workers, talkers, scheduling.
fn rtp(c: &Checker, r: &Rtp) -> Result<(), ConfigError> {
    c.check(
        r.port_min >= 1024,
        &[Seg::Key("rtp"), Seg::Key("port_min")],
        "port_min must be 1024..=65534",
    )?;
    c.check(
        r.port_max > r.port_min && r.port_max - r.port_min >= 3,
        &[Seg::Key("rtp"), Seg::Key("port_max")],
        "port_max must exceed port_min by at least 3 (one RTP/RTCP pair)",
    )?;
    c.check(
        r.workers <= 256,
        &[Seg::Key("rtp"), Seg::Key("workers")],
        "workers must be 0..=256",
    )?;
    c.check(
        (1..=crate::media::engine::MAX_TALKERS).contains(&r.max_talkers),
        &[Seg::Key("rtp"), Seg::Key("max_talkers")],
        "max_talkers must be 1..=16",
    )?;
    c.check(
        r.realtime_priority <= 99,
        &[Seg::Key("rtp"), Seg::Key("realtime_priority")],
        "realtime_priority must be 0..=99 (0: ordinary scheduling)",
    )?;
    c.check(
        r.shard_at >= 1,
        &[Seg::Key("rtp"), Seg::Key("shard_at")],
        "shard_at must be at least 1",
    )?;
    Ok(())
}

/// `[menu]`: each binding 1-4 keys, none a prefix of another.
fn menu(c: &Checker, menu: &MenuKeys) -> Result<(), ConfigError> {
    for (key, seq) in menu.named() {
        let at = [Seg::Key("menu"), Seg::Key(key)];
        c.check(
            (1..=4).contains(&seq.len())
                && seq
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#'),
            &at,
            &format!("{key} must be 1-4 keys of 0-9 * #"),
        )?;
        let clash = menu.named().iter().any(|(other, o)| {
            *other != key && (o.starts_with(seq.as_str()) || seq.starts_with(o.as_str()))
        });
        c.check(
            !clash,
            &at,
            &format!("{key} clashes with another menu key (one is a prefix of the other)"),
        )?;
    }
    Ok(())
}

/// `[[room]]`: names unique, each room as [`RoomSpec::check`] says.
fn rooms(c: &Checker, rooms: &[RoomSpec]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, room) in rooms.iter().enumerate() {
        let at = |k| [Seg::Key("room"), Seg::Index(i), Seg::Key(k)];
        c.check(
            seen.insert(room.name.clone()),
            &at("name"),
            &format!("duplicate room \"{}\"", room.name),
        )?;
        if let Err(f) = room.check() {
            let mut path = vec![Seg::Key("room"), Seg::Index(i), Seg::Key(f.key)];
            if let Some(k) = f.index {
                path.push(Seg::Index(k));
            }
            return Err(c.fault(&path, f.reason));
        }
    }
    Ok(())
}

/// `[api]` and `[metrics]`: secrets and listeners.
fn api_and_metrics(c: &Checker, cfg: &Config) -> Result<(), ConfigError> {
    let a = &cfg.api;
    c.check(
        a.token.as_ref().is_none_or(|t| good_secret(t)),
        &[Seg::Key("api"), Seg::Key("token")],
        "token must be 16-256 printable characters",
    )?;
    c.check(
        a.token.is_none() || a.token_file.is_none(),
        &[Seg::Key("api"), Seg::Key("token_file")],
        "give token or token_file, not both",
    )?;
    c.check(
        a.listen.port() != 0,
        &[Seg::Key("api"), Seg::Key("listen")],
        "listen needs a port",
    )?;
    c.check(
        cfg.metrics.listen.is_none_or(|m| m.port() != 0),
        &[Seg::Key("metrics"), Seg::Key("listen")],
        "listen needs a port",
    )?;
    c.check(
        cfg.metrics.listen.is_none_or(|m| m != a.listen),
        &[Seg::Key("metrics"), Seg::Key("listen")],
        "the metrics listener needs an address of its own (not [api] listen)",
    )?;
    let w = &cfg.webrtc;
    c.check(
        w.listen.port() != 0,
        &[Seg::Key("webrtc"), Seg::Key("listen")],
        "listen needs a port",
    )?;
    c.check(
        w.token_secret.as_ref().is_none_or(|t| good_secret(t)),
        &[Seg::Key("webrtc"), Seg::Key("token_secret")],
        "token_secret must be 16-256 printable characters",
    )?;
    c.check(
        (60..=30 * 86_400).contains(&w.join_ttl_s),
        &[Seg::Key("webrtc"), Seg::Key("join_ttl_s")],
        "join_ttl_s must be 60 to 2592000 (30 days)",
    )?;
    c.check(
        !cfg.tts.command.is_empty() && !cfg.tts.command[0].is_empty(),
        &[Seg::Key("tts"), Seg::Key("command")],
        "command needs a program",
    )?;
    c.check(
        w.requests_per_s >= 1,
        &[Seg::Key("webrtc"), Seg::Key("requests_per_s")],
        "requests_per_s must be at least 1",
    )?;
    Ok(())
}

/// `[events]`: the webhook URL, its secret, how long to retry.
fn events(c: &Checker, e: &Events) -> Result<(), ConfigError> {
    c.check(
        e.url.as_deref().is_none_or(is_http_url),
        &[Seg::Key("events"), Seg::Key("url")],
        "url must be an http:// or https:// URL",
    )?;
    c.check(
        e.secret.as_ref().is_none_or(|t| good_secret(t)),
        &[Seg::Key("events"), Seg::Key("secret")],
        "secret must be 16-256 printable characters",
    )?;
    c.check(
        (10..=86_400).contains(&e.retry_for_s),
        &[Seg::Key("events"), Seg::Key("retry_for_s")],
        "retry_for_s must be 10..=86400",
    )?;
    c.check(
        e.signing != Signing::Jwt || e.secret.is_some(),
        &[Seg::Key("events"), Seg::Key("signing")],
        "signing = \"jwt\" needs [events] secret, the key the tokens are signed with",
    )?;
    Ok(())
}

/// `[routing]`: the answer webhook.
fn routing(c: &Checker, r: &Routing) -> Result<(), ConfigError> {
    c.check(
        r.answer_url.as_deref().is_none_or(is_http_url),
        &[Seg::Key("routing"), Seg::Key("answer_url")],
        "answer_url must be an http:// or https:// URL",
    )?;
    c.check(
        r.fallback_answer_url.as_deref().is_none_or(is_http_url),
        &[Seg::Key("routing"), Seg::Key("fallback_answer_url")],
        "fallback_answer_url must be an http:// or https:// URL",
    )?;
    c.check(
        (100..=30_000).contains(&r.answer_timeout_ms),
        &[Seg::Key("routing"), Seg::Key("answer_timeout_ms")],
        "answer_timeout_ms must be 100..=30000",
    )?;
    Ok(())
}

/// `[dialout]`: destination patterns and limits.
fn dialout(c: &Checker, d: &Dialout) -> Result<(), ConfigError> {
    for (k, pat) in d.allowed_destinations.iter().enumerate() {
        c.check(
            pat.starts_with("sip:") || pat.starts_with("sips:"),
            &[
                Seg::Key("dialout"),
                Seg::Key("allowed_destinations"),
                Seg::Index(k),
            ],
            "a destination pattern is a sip: URI pattern",
        )?;
    }
    c.check(
        (1..=10_000).contains(&d.max_outbound_calls),
        &[Seg::Key("dialout"), Seg::Key("max_outbound_calls")],
        "max_outbound_calls must be 1..=10000",
    )?;
    c.check(
        (1..=86_400).contains(&d.max_duration_s),
        &[Seg::Key("dialout"), Seg::Key("max_duration_s")],
        "max_duration_s must be 1..=86400",
    )?;
    Ok(())
}

/// `[[trunk]]`: credentials that fit in a header.
fn trunks(c: &Checker, trunks: &[Trunk]) -> Result<(), ConfigError> {
    for (i, t) in trunks.iter().enumerate() {
        for (key, v) in [
            ("name", &t.name),
            ("host", &t.host),
            ("realm", &t.realm),
            ("username", &t.username),
            ("password", &t.password),
        ] {
            c.check(
                !v.is_empty() && !v.contains(['"', '\r', '\n']),
                &[Seg::Key("trunk"), Seg::Index(i), Seg::Key(key)],
                &format!("{key} must be non-empty, without quotes or line breaks"),
            )?;
        }
    }
    Ok(())
}

/// A path in the document, to find the span of the value at fault.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn locate(src: &str, path: &[Seg]) -> std::ops::Range<usize> {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(src) else {
        return 0..0;
    };
    let mut span = doc.span();
    let mut table = Some(doc.get_ref());
    let mut array: Option<&toml::de::DeArray> = None;
    for seg in path {
        let value = match (seg, table, array) {
            (Seg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == *k)
                .map(|(key, v)| (key.span(), v)),
            (Seg::Index(i), _, Some(a)) => a.get(*i).map(|v| (v.span(), v)),
            _ => None,
        };
        let Some((key_span, v)) = value else { break };
        span = match v.get_ref() {
            DeValue::Table(_) | DeValue::Array(_) => key_span,
            _ => v.span(),
        };
        table = None;
        array = None;
        match v.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    span
}

pub(super) fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
    (line, col)
}

fn good_secret(t: &str) -> bool {
    (16..=256).contains(&t.len()) && t.bytes().all(|c| c.is_ascii_graphic())
}
