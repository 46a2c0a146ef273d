//! The tokio driver: the only place that owns sockets, the clock and signals. It
//! feeds datagrams, TCP frames and timer expiries into [`Core`], and carries the
//! core's outputs out: bytes to UDP/TCP peers, commands to the media engine, events
//! to the log. One task owns the core, so signalling state needs no lock.

mod notify;
mod overload;
mod reload;
mod tcp;
mod udp;

use tcp::Net;
pub use tcp::TcpLimits;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::ops::{self, ApiCall, Op, OpResult, Reply};
use crate::config::Config;
use crate::core::{Core, Event, Output, Peer, Transport};
use crate::events::Webhooks;
use crate::media::contract::{MediaCommand, MediaEvent};
use crate::media::engine::MediaEngine;
use crate::metrics::Metrics;
use crate::util::LogSafe;

/// How often the config file is looked at for changes.
const CONFIG_POLL: Duration = Duration::from_secs(2);
/// Longest a SIGTERM drain waits for BYE transactions before exiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Asked of systemd beyond a drain's own end, for stopping the workers and exit.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// the prompts in `sounds_dir` cannot be used
    #[error("prompts: {0}")]
    Prompts(#[from] crate::media::prompt::PromptError),
    /// the API token file cannot be read
    #[error("[api] token_file {file}: {reason}")]
    Token {
        /// file
        file: String,
        /// why
        reason: String,
    },
    /// cannot bind the SIP address
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// address
        addr: SocketAddr,
        /// cause
        source: io::Error,
    },
}

impl DriverError {
    /// Whether the configuration is at fault (exit status 78, EX_CONFIG: a restart
    /// with the same file cannot help), rather than the machine (a port taken).
    pub fn is_config(&self) -> bool {
        matches!(self, DriverError::Prompts(_) | DriverError::Token { .. })
    }
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Raise the soft open-files limit to the hard one: every leg holds two sockets.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
}

/// The API token: `[api] token`, or the first line of `token_file`.
fn api_token(cfg: &Config) -> Result<Option<String>, DriverError> {
    if let Some(t) = &cfg.api.token {
        return Ok(Some(t.clone()));
    }
    let Some(file) = &cfg.api.token_file else {
        return Ok(None);
    };
    let bad = |reason: String| DriverError::Token {
        file: file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 || !token.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(bad("the token must be 16+ printable characters".into()));
    }
    Ok(Some(token))
}

/// The HTTP side: the control API (started when a token is configured) and the
/// metrics listener (unless `[metrics] listen = ""`). Their calls come out of one
/// channel; the token and the readiness they serve are the driver's to change.
struct Http {
    calls: mpsc::Receiver<ApiCall>,
    token: crate::api::TokenCell,
    ready: crate::api::Readiness,
    /// the API listener runs (a token added by a reload needs a restart otherwise)
    api_on: bool,
}

async fn bind_http(addr: SocketAddr) -> Result<tokio::net::TcpListener, DriverError> {
    crate::api::bind(addr)
        .await
        .map_err(|source| DriverError::Bind { addr, source })
}

async fn start_http(cfg: &Config) -> Result<Http, DriverError> {
    let (tx, calls) = mpsc::channel::<ApiCall>(256);
    let token = api_token(cfg)?;
    let api_on = token.is_some();
    let settings = crate::api::ApiSettings {
        listen: cfg.api.listen,
        token: crate::api::TokenCell::new(token),
        metrics_auth: cfg.api.metrics_auth,
        play_dir: cfg.api.play_dir.clone(),
        recording_dir: cfg.recording.dir.clone(),
    };
    let ready = crate::api::Readiness::default();
    if api_on {
        let listen = cfg.api.listen;
        let listener = bind_http(listen).await?;
        let serve = crate::api::serve(listener, settings.clone(), ready.clone(), tx.clone());
        tokio::spawn(serve);
        tracing::info!(%listen, "HTTP API listening");
    } else {
        tracing::info!("HTTP API off: no [api] token or token_file");
    }
    if let Some(listen) = cfg.metrics.listen {
        let listener = bind_http(listen).await?;
        let serve = crate::api::serve_metrics(listener, settings.clone(), ready.clone(), tx);
        tokio::spawn(serve);
        tracing::info!(%listen, "metrics and health listening (/metrics, /healthz, /readyz)");
    }
    Ok(Http {
        calls,
        token: settings.token,
        ready,
        api_on,
    })
}

/// Run the bridge until SIGTERM/SIGINT; `config_path` is re-read on SIGHUP.
pub async fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), DriverError> {
    raise_fd_limit();
    if let Some(dir) = &cfg.recording.dir {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the recording directory");
        }
    }
    let listen = cfg.sip.listen.clone();
    let prompts = cfg.prompts()?;
    let mut udp = udp::Listeners(Vec::new());
    let mut tcp = Vec::new();
    for &addr in &listen {
        let bind_err = |source| DriverError::Bind { addr, source };
        udp.0.push(udp::SipUdp::bind(addr).map_err(bind_err)?);
        tcp.push(tcp::listen(addr).map_err(bind_err)?);
    }
    let workers = match cfg.rtp.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let (mut media, media_events) = MediaEngine::start(
        workers,
        cfg.rtp.max_talkers,
        cfg.rtp_timeouts(),
        cfg.rtp.realtime_priority,
        cfg.rtp.shard_at,
        prompts,
    );
    let (mev_tx, mut mev_rx) = mpsc::unbounded_channel::<MediaEvent>();
    std::thread::Builder::new()
        .name("media-events".into())
        .spawn(move || {
            while let Ok((_, ev)) = media_events.recv() {
                if mev_tx.send(ev).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread at start-up");

    let mut http = start_http(&cfg).await?;
    let mut webhooks = Webhooks::start(
        cfg.events.url.clone(),
        cfg.events.secret.clone(),
        Duration::from_secs(cfg.events.retry_for_s),
        format!("http://{}/v1/recordings/", cfg.api.listen),
    );
    let mut metrics = Metrics::new();
    let mut overload =
        overload::Overload::new(cfg.sip.overload_load_percent, cfg.sip.overload_late_ms);
    let (answer_hook, mut route_rx) = match &cfg.routing.answer_url {
        Some(url) => {
            let (h, rx) = crate::answer::AnswerHook::new(
                url.clone(),
                Duration::from_millis(cfg.routing.answer_timeout_ms),
                cfg.routing.answer_fallback,
            );
            (Some(h), rx)
        }
        None => (None, mpsc::unbounded_channel().1),
    };
    let mut core = Core::new(cfg.core(), seed());
    if let Some(dir) = &cfg.recording.dir {
        // recordings a crash cut short: closed, and reported as any that ends
        for m in crate::media::record::recover(dir) {
            tracing::warn!(recording = %m.id, room = %m.room, duration_ms = m.duration_ms, "recording cut short by a crash: closed and reported");
            let ev = Event::Recording(crate::core::RecordingReport {
                id: m.id,
                leg: m.participant.map(crate::core::LegId),
                duration_ms: m.duration_ms,
                bytes: m.size,
                error: m.error,
                recovered: true,
                room: m.room,
            });
            let url = core.event_url(crate::events::room_of(&ev));
            webhooks.send(&ev, url);
        }
    }
    // what is in effect: a reload applies part of a new file
    let mut running = cfg.clone();
    let music: Vec<PathBuf> = cfg.music_files().iter().map(|p| p.to_path_buf()).collect();
    let (net_tx, mut net_rx) = mpsc::channel::<Net>(1024);
    let accept_tx = net_tx.clone();
    let acceptor = tokio::spawn(tcp::accept(tcp, TcpLimits::from(&cfg.sip), accept_tx));
    // per TCP connection: its writer, how to close it, and our address on it
    let mut conns: HashMap<u64, (mpsc::Sender<Vec<u8>>, tokio::task::AbortHandle, SocketAddr)> =
        HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate());
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt());
    let mut sighup = signal(tokio::signal::unix::SignalKind::hangup());
    let mut drain_deadline: Option<Instant> = None;
    let mut config_stamp = reload::modified(config_path.as_ref());
    let mut watch = tokio::time::interval(CONFIG_POLL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drain = (
        Duration::from_secs(cfg.sip.drain_timeout_s),
        cfg.sip.drain_announce,
    );
    let mut deferred: Option<(tokio::sync::oneshot::Sender<OpResult>, OpResult)> = None;
    let notify = notify::Notifier::from_env();
    let heart = media.gauges();
    // the watchdog's pace, or a slow one that only extends a drain's stop timeout
    let mut keepalive =
        tokio::time::interval(notify.watchdog_every().unwrap_or(Duration::from_secs(5)));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(listen = ?listen, rtp = ?(cfg.rtp.port_min, cfg.rtp.port_max), rooms = cfg.rooms.len(), "caucus listening (UDP and TCP)");
    notify.ready();

    loop {
        // judged afresh before each event: a burst of INVITEs sees the load of
        // the legs placed by the ones before it
        overload.load(media.load());
        core.set_overloaded(overload.refusing());
        let timeout = core.poll_timeout().map(Instant::from_std);
        let wake = match (timeout, drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            r = udp.recv(&mut buf) => {
                if let Ok((n, src, local)) = r {
                    let now = Instant::now().into_std();
                    if admit(&mut core, &buf[..n], src, now) {
                        metrics.received(&buf[..n]);
                        let peer = Peer { transport: Transport::Udp, addr: src, local };
                        core.handle_message(now, peer, &buf[..n]);
                    }
                }
            }
            Some(ev) = net_rx.recv() => match ev {
                Net::Opened(id, tx, abort, local) => {
                    conns.insert(id, (tx, abort, local));
                }
                Net::Frame(id, addr, data) => {
                    let now = Instant::now().into_std();
                    if !admit(&mut core, &data, addr, now) {
                        // a banned source with no calls loses its connection too
                        if let Some((_, abort, _)) = conns.remove(&id) {
                            abort.abort();
                        }
                    } else if let Some(&(_, _, local)) = conns.get(&id) {
                        metrics.received(&data);
                        let peer = Peer { transport: Transport::Tcp(id), addr, local };
                        core.handle_message(now, peer, &data);
                    }
                }
                Net::Closed(id) => { conns.remove(&id); }
            },
            Some(ev) = mev_rx.recv() => {
                media_event(&mut core, &mut metrics, &mut overload, ev);
            }
            Some((token, decision)) = route_rx.recv() => {
                core.route_decided(Instant::now().into_std(), token, decision);
            },
            Some(call) = http.calls.recv() => {
                let now = Instant::now().into_std();
                let ApiCall { mut op, reply } = call;
                if let Op::Dial(_, req) = &mut op {
                    req.local = dial_target(&req.to).and_then(|t| udp.local_towards(t));
                }
                let result = match op {
                    Op::Metrics => ops::execute(&mut core, now, Op::Metrics).map(|r| match r {
                        Reply::Metrics(text) => Reply::Metrics(metrics.render(&text, Some(&webhooks.stats))),
                        other => other,
                    }),
                    op => ops::execute(&mut core, now, op),
                };
                // answered after the outputs below are carried out: a recording
                // whose file cannot be created is reported to the caller
                deferred = Some((reply, result));
            },
            _ = sleep_until(wake) => {
                core.handle_timeout(Instant::now().into_std());
            }
            _ = sigterm.recv() => begin_drain(&mut core, &mut drain_deadline, &drain, &notify),
            _ = sigint.recv() => begin_drain(&mut core, &mut drain_deadline, &drain, &notify),
            _ = keepalive.tick() => {
                // a worker stuck inside a tick stops the pings, and systemd restarts us
                if let Some(every) = notify.watchdog_every()
                    && heart.alive(every)
                {
                    notify.watchdog();
                }
                if let Some(d) = drain_deadline {
                    notify.extend(d.saturating_duration_since(Instant::now()) + STOP_MARGIN);
                }
            }
            _ = sighup.recv() => {
                notify.reloading();
                reload::reload(&mut core, &mut running, &music, config_path.as_ref(), &http);
                notify.ready();
            }
            _ = watch.tick() => {
                // the file changed on disk (an editor, a deploy): same as SIGHUP
                let stamp = reload::modified(config_path.as_ref());
                if stamp != config_stamp {
                    config_stamp = stamp;
                    tracing::info!("configuration file changed");
                    notify.reloading();
                    reload::reload(&mut core, &mut running, &music, config_path.as_ref(), &http);
                    notify.ready();
                }
            },
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Transmit { to, data } => {
                    metrics.sent(&data);
                    match to.transport {
                        Transport::Udp => {
                            if let Some(sock) = udp.for_local(to.local) {
                                let _ = sock.send(&data, to.addr, to.local).await;
                            }
                        }
                        Transport::Tcp(id) => {
                            if let Some((c, _, _)) = conns.get(&id) {
                                let _ = c.try_send(data);
                            }
                        }
                    }
                }
                Output::Media(MediaCommand::Bind { leg, addr }) => {
                    let ok = match media.apply(MediaCommand::Bind { leg, addr }) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(%leg, %addr, error = %e, "RTP port cannot be bound");
                            false
                        }
                    };
                    core.media_bound(Instant::now().into_std(), leg, ok);
                }
                Output::Media(cmd) => {
                    let leg = match &cmd {
                        MediaCommand::Open { leg, .. } => Some(*leg),
                        _ => None,
                    };
                    let recording = match &cmd {
                        MediaCommand::Record { id, .. } => Some(id.clone()),
                        _ => None,
                    };
                    if let Err(e) = media.apply(cmd) {
                        tracing::warn!(error = %e, "media setup failed");
                        if let Some(leg) = leg {
                            core.media_failed(Instant::now().into_std(), leg);
                        }
                        if let Some(id) = recording {
                            core.recording_done(
                                Instant::now().into_std(),
                                &id,
                                0,
                                0,
                                Some(e.to_string()),
                            );
                        }
                    }
                }
                Output::Route(req) => match &answer_hook {
                    Some(h) => h.ask(req),
                    None => core.route_decided(
                        Instant::now().into_std(),
                        req.token,
                        crate::core::routing::RouteDecision::Fallback,
                    ),
                },
                Output::Event(ev) => {
                    log_event(&ev);
                    metrics.event(&ev);
                    let url = core.event_url(crate::events::room_of(&ev));
                    webhooks.send(&ev, url);
                }
            }
        }
        if let Some((reply, result)) = deferred.take() {
            let result = match result {
                Ok(Reply::Recording(id)) if !core.recording_running(&id) => {
                    Err(crate::core::control::ControlError::RecordingFailed(
                        "the file could not be created (see the log)".into(),
                    ))
                }
                r => r,
            };
            let _ = reply.send(result);
        }
        http.ready.set(core.accepting_calls());
        if drain_deadline.is_some_and(|d| core.is_idle() || Instant::now() >= d) {
            break;
        }
    }
    acceptor.abort();
    media.stop();
    tracing::info!("caucus stopped");
    Ok(())
}

/// Whether to hand a message to the core: a banned source's datagrams are
/// dropped unread unless it still holds calls (whose BYEs must be served);
/// responses, to requests we sent, always pass. Counting is the core's.
fn admit(core: &mut Core, data: &[u8], src: SocketAddr, now: std::time::Instant) -> bool {
    data.starts_with(b"SIP/2.0 ") || core.reads_from(src.ip(), now, data)
}

/// The IP address and port of a dial-out target URI (the core refuses other
/// targets with its own reason).
fn dial_target(to: &str) -> Option<SocketAddr> {
    let uri = crate::sip::headers::SipUri::parse(to).ok()?;
    let ip: std::net::IpAddr = uri
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// What the media workers report, carried into the core (and metrics, logs).
fn media_event(
    core: &mut Core,
    metrics: &mut Metrics,
    overload: &mut overload::Overload,
    ev: MediaEvent,
) {
    let now = Instant::now().into_std();
    match ev {
        // digits may be a PIN: never logged
        MediaEvent::Dtmf { leg, digit } => core.dtmf(now, leg, digit),
        MediaEvent::PromptDone { leg } => core.prompt_done(now, leg),
        MediaEvent::Talking { leg, talking } => core.talking(now, leg, talking),
        MediaEvent::RtpTimeout { leg } => core.rtp_timeout(now, leg),
        MediaEvent::RecordingDone(end) => {
            if let Some(e) = &end.error {
                tracing::error!(recording = %end.id, error = %e, "recording stopped by an error; the call goes on");
            }
            core.recording_done(now, &end.id, end.duration_ms, end.bytes, end.error.clone());
        }
        MediaEvent::TickStats(st) => {
            metrics.tick_stats(&st);
            overload.late(st.worker, st.late_p99_us);
            tracing::info!(
                target: "caucus::media::stats",
                worker = st.worker,
                ticks = st.ticks,
                legs = st.legs,
                late_p50_us = st.late_p50_us,
                late_p99_us = st.late_p99_us,
                late_max_us = st.late_max_us,
                busy_us = st.busy_us,
                busy_max_us = st.busy_max_us,
                offcpu_us = st.offcpu_us,
                offcpu_max_us = st.offcpu_max_us,
                late_hist = %LateHist(&st.late_hist),
                "media tick stats"
            );
        }
    }
}

/// A lateness histogram in a log line: `start_us:ticks` pairs, comma-separated.
struct LateHist<'a>(&'a [(u32, u32)]);

impl std::fmt::Display for LateHist<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, (start, n)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{start}:{n}")?;
        }
        Ok(())
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> tokio::signal::unix::Signal {
    tokio::signal::unix::signal(kind).expect("installing a signal handler at start-up")
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM/SIGINT: new calls get 503; running ones hear "the conference has ended"
/// (if configured) and get their BYE after the drain timeout; the process exits once
/// the BYEs are answered, or [`DRAIN_LIMIT`] after that.
fn begin_drain(
    core: &mut Core,
    deadline: &mut Option<Instant>,
    drain: &(Duration, bool),
    notify: &notify::Notifier,
) {
    if deadline.is_none() {
        let (grace, announce) = *drain;
        tracing::info!(
            legs = core.leg_count(),
            grace_s = grace.as_secs(),
            "shutting down: new calls refused, running calls end after the grace"
        );
        notify.stopping(grace + DRAIN_LIMIT + STOP_MARGIN);
        core.drain(Instant::now().into_std(), grace, announce);
        *deadline = Some(Instant::now() + grace + DRAIN_LIMIT);
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::RoomStarted { room } => tracing::info!(%room, "room started"),
        Event::Joined {
            leg,
            room,
            call_id,
            from,
        } => {
            tracing::info!(%leg, %room, call_id = %LogSafe(call_id), from = %LogSafe(from), "joined")
        }
        Event::Left {
            leg,
            room,
            call_id,
            reason,
        } => {
            tracing::info!(%leg, %room, call_id = %LogSafe(call_id), reason = reason.as_str(), "left")
        }
        Event::RoomClosed { room } => tracing::info!(%room, "room closed"),
        Event::Muted { leg, room, muted } => tracing::info!(%leg, %room, muted, "mute"),
        Event::Talking { leg, room, talking } => tracing::debug!(%leg, %room, talking, "talker"),
        Event::Recording(r) => tracing::info!(
            recording = %r.id,
            room = %r.room,
            duration_ms = r.duration_ms,
            bytes = r.bytes,
            error = r.error.as_deref().unwrap_or(""),
            "recording finished"
        ),
        Event::Dial {
            leg,
            room,
            to,
            status,
            reason,
        } => {
            tracing::info!(%leg, %room, to = %LogSafe(to), status = status.as_str(), reason = %LogSafe(reason.as_deref().unwrap_or("")), "dial-out")
        }
    }
}
