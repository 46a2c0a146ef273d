//! The tokio driver: the only place that owns sockets, the clock and signals. It
//! feeds datagrams, TCP frames and timer expiries into [`Core`], and carries the
//! core's outputs out: bytes to UDP/TCP peers, commands to the media engine, events
//! to the log. One task owns the core, so signalling state needs no lock.

mod cluster;
mod dial;
mod http;
mod notify;
mod outputs;
mod overload;
mod reload;
mod tcp;
mod udp;
mod websocket;

use tcp::Net;
pub use tcp::TcpLimits;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::answer::AnswerHook;
use crate::api::ops::{self, ApiCall, Op, OpResult, Reply};
use crate::config::Config;
use crate::core::{Core, Event, Peer, Transport};
use crate::events::Webhooks;
use crate::media::contract::MediaEvent;
use crate::media::engine::MediaEngine;
use crate::media::worker::WorkerGauges;
use crate::metrics::Metrics;
use http::Http;

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
    /// `[cluster] redis_url` cannot be used
    #[error("[cluster] {0}")]
    Cluster(crate::cluster::RegistryError),
    /// `[sip] tls_certificate` / `tls_key` cannot be used
    #[error("[sip] {0}")]
    Tls(crate::tls::TlsError),
}

impl DriverError {
    /// Whether the configuration is at fault (exit status 78, EX_CONFIG: a restart
    /// with the same file cannot help), rather than the machine (a port taken).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            DriverError::Prompts(_) | DriverError::Token { .. } | DriverError::Cluster(_)
        )
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

/// Run the bridge until SIGTERM/SIGINT; `config_path` is re-read on SIGHUP.
pub async fn run(cfg: Config, config_path: Option<PathBuf>) -> Result<(), DriverError> {
    let (mut driver, mut inputs) = Driver::start(cfg, config_path).await?;
    driver.notify.ready();
    loop {
        driver.judge_load();
        let input = inputs.next(&mut driver).await;
        driver.handle(input);
        driver.carry_out().await;
        driver.http.ready.set(driver.core.accepting_calls());
        if driver.drained() {
            break;
        }
    }
    inputs.acceptor.abort();
    driver.media.stop();
    tracing::info!("caucus stopped");
    Ok(())
}

/// A TCP or TLS connection: its writer, how to close it, our address on it,
/// and whether it is TLS.
struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    abort: tokio::task::AbortHandle,
    local: SocketAddr,
    tls: bool,
}

/// What the driver owns besides its inputs: the core, the media engine, the
/// sockets it sends on, and what carries events out.
pub(crate) struct Driver {
    core: Core,
    media: MediaEngine,
    udp: udp::Listeners,
    /// per TCP or TLS connection
    conns: HashMap<u64, Conn>,
    /// the TLS listeners' certificate and key, read again on SIGHUP
    tls: Option<crate::tls::ServerTls>,
    /// where connection tasks report (a dialled one too), and their limits
    net_tx: mpsc::Sender<Net>,
    tcp_limits: TcpLimits,
    /// where a dial-out's TLS connection comes back once up
    dialled_tx: mpsc::UnboundedSender<(ApiCall, tcp::Dialled)>,
    buf: Vec<u8>,
    metrics: Metrics,
    overload: overload::Overload,
    webhooks: Webhooks,
    /// recordings (NCCO `record`) whose event goes to their own URL
    recording_hooks: std::collections::HashMap<String, String>,
    /// runs NCCOs (answers, inputs, transfers)
    answer_hook: AnswerHook,
    /// new calls are routed by the answer webhook
    routes_by_hook: bool,
    /// where WebSocket gateways report
    sockets: mpsc::UnboundedSender<websocket::SocketReport>,
    http: Http,
    /// what is in effect: a reload applies part of a new file
    running: Config,
    music: Vec<PathBuf>,
    config_path: Option<PathBuf>,
    config_stamp: Option<(std::time::SystemTime, u64)>,
    /// drain timeout and whether to announce the end
    drain: (Duration, bool),
    drain_deadline: Option<Instant>,
    /// an API call's answer, sent once its outputs are carried out
    deferred: Option<(tokio::sync::oneshot::Sender<OpResult>, OpResult)>,
    notify: notify::Notifier,
    heart: std::sync::Arc<WorkerGauges>,
    /// the room registry's task (`[cluster]`)
    cluster: Option<mpsc::UnboundedSender<cluster::Ask>>,
    /// outbound legs noted in the registry
    dialouts: std::collections::HashSet<crate::core::LegId>,
}

/// What the loop waits on.
struct Inputs {
    net_rx: mpsc::Receiver<Net>,
    mev_rx: mpsc::UnboundedReceiver<MediaEvent>,
    route_rx: mpsc::UnboundedReceiver<crate::answer::HookResult>,
    socket_rx: mpsc::UnboundedReceiver<websocket::SocketReport>,
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
    watch: tokio::time::Interval,
    keepalive: tokio::time::Interval,
    acceptor: tokio::task::JoinHandle<()>,
    /// the room registry's answers
    cluster_rx: mpsc::UnboundedReceiver<cluster::Told>,
    /// dial-outs whose TLS connection is up
    dialled_rx: mpsc::UnboundedReceiver<(ApiCall, tcp::Dialled)>,
    /// the registry's heartbeat (a third of the lease; idle without a cluster)
    beat: tokio::time::Interval,
}

/// One thing that woke the loop.
enum Input {
    Udp(io::Result<(usize, SocketAddr, SocketAddr)>),
    Net(Net),
    Media(MediaEvent),
    Hook(crate::answer::HookResult),
    Socket(websocket::SocketReport),
    Api(ApiCall),
    Timer,
    Stop,
    Keepalive,
    Reload,
    Watch,
    Cluster(cluster::Told),
    Beat,
    Dialled(ApiCall, tcp::Dialled),
}

impl Inputs {
    /// Wait for the next input; the core's next timer (or the drain's end) wakes
    /// the loop too.
    async fn next(&mut self, d: &mut Driver) -> Input {
        let timeout = d.core.poll_timeout().map(Instant::from_std);
        let wake = match (timeout, d.drain_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            r = d.udp.recv(&mut d.buf) => Input::Udp(r),
            Some(ev) = self.net_rx.recv() => Input::Net(ev),
            Some(ev) = self.mev_rx.recv() => Input::Media(ev),
            Some(r) = self.route_rx.recv() => Input::Hook(r),
            Some(r) = self.socket_rx.recv() => Input::Socket(r),
            Some(call) = d.http.calls.recv() => Input::Api(call),
            Some((call, conn)) = self.dialled_rx.recv() => Input::Dialled(call, conn),
            _ = sleep_until(wake) => Input::Timer,
            _ = self.sigterm.recv() => Input::Stop,
            _ = self.sigint.recv() => Input::Stop,
            _ = self.keepalive.tick() => Input::Keepalive,
            _ = self.sighup.recv() => Input::Reload,
            _ = self.watch.tick() => Input::Watch,
            Some(t) = self.cluster_rx.recv() => Input::Cluster(t),
            _ = self.beat.tick() => Input::Beat,
        }
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    /// Bind the listeners, start the media engine, the HTTP side and the
    /// webhooks, recover recordings a crash cut short.
    async fn start(
        cfg: Config,
        config_path: Option<PathBuf>,
    ) -> Result<(Driver, Inputs), DriverError> {
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
            tcp.push((tcp::listen(addr).map_err(bind_err)?, None));
        }
        let tls = match (&cfg.sip.tls_certificate, &cfg.sip.tls_key) {
            (Some(c), Some(k)) if !cfg.sip.tls_listen.is_empty() => {
                Some(crate::tls::ServerTls::load(c, k).map_err(DriverError::Tls)?)
            }
            _ => None,
        };
        for &addr in &cfg.sip.tls_listen {
            let bind_err = |source| DriverError::Bind { addr, source };
            tcp.push((tcp::listen(addr).map_err(bind_err)?, tls.clone()));
        }
        let workers = match cfg.rtp.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (media, media_events) = MediaEngine::start(
            workers,
            cfg.rtp.max_talkers,
            cfg.rtp_timeouts(),
            cfg.rtp.realtime_priority,
            cfg.rtp.shard_at,
            prompts,
        );
        let (mev_tx, mev_rx) = mpsc::unbounded_channel::<MediaEvent>();
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

        let live = crate::events::live_channel();
        let sounds = crate::sounds::Sounds::new(crate::tts::Tts::new(cfg.tts.command.clone()));
        let registry = match &cfg.cluster {
            Some(k) => Some(
                crate::cluster::Registry::new(
                    &k.redis_url,
                    crate::cluster::Node {
                        id: k.node_id.clone(),
                        sip_uri: k.sip_uri.clone(),
                        api_url: k
                            .api_url
                            .clone()
                            .unwrap_or_else(|| format!("http://{}", cfg.api.listen)),
                    },
                    Duration::from_secs(k.lease_s),
                )
                .map_err(DriverError::Cluster)?,
            ),
            None => None,
        };
        let http = http::start_http(&cfg, live.clone(), sounds.clone(), registry.clone()).await?;
        let (cluster_tx, cluster_rx) = mpsc::unbounded_channel();
        let mut beat = tokio::time::interval(
            registry
                .as_ref()
                .map_or(Duration::from_secs(3600), crate::cluster::Registry::beat),
        );
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cluster = registry.map(|r| cluster::start(r, cluster_tx));
        let mut webhooks = Webhooks::start(
            &cfg.events,
            format!("http://{}/v1/recordings/", cfg.api.listen),
            live,
        );
        // NCCOs also come by the call-control API's transfer, with or without
        // an answer_url to route by
        let (answer_hook, route_rx) = AnswerHook::new(&cfg.routing, sounds.clone());
        let routes_by_hook = cfg.routing.answer_url.is_some();
        let core = Core::new(cfg.core(), seed());
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
        let (net_tx, net_rx) = mpsc::channel::<Net>(1024);
        let acceptor = tokio::spawn(tcp::accept(tcp, TcpLimits::from(&cfg.sip), net_tx.clone()));
        let (dialled_tx, dialled_rx) = mpsc::unbounded_channel();
        let mut watch = tokio::time::interval(CONFIG_POLL);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let notify = notify::Notifier::from_env();
        // the watchdog's pace, or a slow one that only extends a drain's stop timeout
        let mut keepalive =
            tokio::time::interval(notify.watchdog_every().unwrap_or(Duration::from_secs(5)));
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(listen = ?listen, tls_listen = ?cfg.sip.tls_listen, rtp = ?(cfg.rtp.port_min, cfg.rtp.port_max), rooms = cfg.rooms.len(), "caucus listening (UDP and TCP)");
        let (sockets, socket_rx) = mpsc::unbounded_channel();
        let inputs = Inputs {
            net_rx,
            mev_rx,
            route_rx,
            socket_rx,
            sigterm: signal(tokio::signal::unix::SignalKind::terminate()),
            sigint: signal(tokio::signal::unix::SignalKind::interrupt()),
            sighup: signal(tokio::signal::unix::SignalKind::hangup()),
            watch,
            keepalive,
            acceptor,
            cluster_rx,
            beat,
            dialled_rx,
        };
        let driver = Driver {
            heart: media.gauges(),
            core,
            media,
            udp,
            conns: HashMap::new(),
            tls,
            tcp_limits: TcpLimits::from(&cfg.sip),
            net_tx,
            dialled_tx,
            buf: vec![0u8; 65536],
            metrics: Metrics::new(),
            overload: overload::Overload::new(
                cfg.sip.overload_load_percent,
                cfg.sip.overload_late_ms,
            ),
            webhooks,
            recording_hooks: std::collections::HashMap::new(),
            answer_hook,
            routes_by_hook,
            sockets,
            http,
            music: cfg.music_files().iter().map(|p| p.to_path_buf()).collect(),
            config_stamp: reload::modified(config_path.as_ref()),
            config_path,
            drain: (
                Duration::from_secs(cfg.sip.drain_timeout_s),
                cfg.sip.drain_announce,
            ),
            drain_deadline: None,
            deferred: None,
            notify,
            running: cfg,
            cluster,
            dialouts: std::collections::HashSet::new(),
        };
        Ok((driver, inputs))
    }

    /// Judged afresh before each input: a burst of INVITEs sees the load of the
    /// legs placed by the ones before it.
    fn judge_load(&mut self) {
        self.overload.load(self.media.load());
        self.core.set_overloaded(self.overload.refusing());
    }

    /// Whether a drain is over: every call ended, or its time is up.
    fn drained(&self) -> bool {
        self.drain_deadline
            .is_some_and(|d| self.core.is_idle() || Instant::now() >= d)
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Udp(Ok((n, src, local))) => {
                let now = now();
                let data = &self.buf[..n];
                if admit(&mut self.core, data, src, now) {
                    self.metrics.received(data);
                    let peer = Peer {
                        transport: Transport::Udp,
                        addr: src,
                        local,
                    };
                    self.core.handle_message(now, peer, data);
                }
            }
            Input::Udp(Err(_)) => {}
            Input::Net(Net::Opened(id, tx, abort, local, tls)) => {
                self.conns.insert(
                    id,
                    Conn {
                        tx,
                        abort,
                        local,
                        tls,
                    },
                );
            }
            Input::Net(Net::Frame(id, addr, data)) => {
                let now = now();
                if !admit(&mut self.core, &data, addr, now) {
                    // a banned source with no calls loses its connection too
                    if let Some(c) = self.conns.remove(&id) {
                        c.abort.abort();
                    }
                } else if let Some(c) = self.conns.get(&id) {
                    self.metrics.received(&data);
                    let peer = Peer {
                        transport: if c.tls {
                            Transport::Tls(id)
                        } else {
                            Transport::Tcp(id)
                        },
                        addr,
                        local: c.local,
                    };
                    self.core.handle_message(now, peer, &data);
                }
            }
            Input::Net(Net::Closed(id)) => {
                self.conns.remove(&id);
            }
            Input::Media(ev) => {
                if let (Some(c), MediaEvent::RecordingDone(end)) = (&self.cluster, &ev) {
                    let _ = c.send(cluster::Ask::Work(format!("rec:{}", end.id), None));
                }
                outputs::media_event(&mut self.core, &mut self.metrics, &mut self.overload, ev);
            }
            Input::Hook(crate::answer::HookResult::Route(token, decision)) => {
                self.core.route_decided(now(), token, decision)
            }
            Input::Hook(crate::answer::HookResult::Continue(leg, next)) => {
                self.core.ncco_continue(now(), leg, next)
            }
            Input::Socket(websocket::SocketReport::Up { leg, port }) => {
                self.media.stage_pipe(leg, port);
                if !self.core.socket_up(now(), leg) {
                    // the call ended meanwhile: the pipe dropped ends the gateway
                    let _ = self
                        .media
                        .apply(crate::media::contract::MediaCommand::Close { leg });
                }
            }
            Input::Socket(websocket::SocketReport::Down { leg, caller, why }) => {
                self.core.socket_down(now(), leg, caller, why)
            }
            Input::Api(call) => self.api_call(call),
            Input::Dialled(mut call, d) => {
                self.conns.insert(
                    d.id,
                    Conn {
                        tx: d.tx,
                        abort: d.abort,
                        local: d.local,
                        tls: true,
                    },
                );
                let _ = d.go.send(());
                if let Op::Dial(_, req) | Op::DialConversation(_, _, req) = &mut call.op {
                    req.flow = Some(Transport::Tls(d.id));
                    req.local = Some(d.local);
                }
                self.api_call(call);
                // refused after all (room full, draining): nothing uses the connection
                if matches!(&self.deferred, Some((_, Err(_))))
                    && let Some(c) = self.conns.remove(&d.id)
                {
                    c.abort.abort();
                }
            }
            Input::Cluster(cluster::Told::Claimed(room, claim)) => {
                self.core.claimed(now(), &room, claim)
            }
            Input::Cluster(cluster::Told::Lost(lost)) => self.core.room_lost(lost),
            Input::Cluster(cluster::Told::Guard(note)) => self.core.guard_note(now(), note),
            Input::Cluster(cluster::Told::Satellite(room, sat)) => {
                self.core.cascade_found(now(), &room, sat)
            }
            Input::Beat => {
                if let Some(c) = &self.cluster {
                    let _ = c.send(cluster::Ask::Beat(self.core.held_rooms()));
                }
            }
            Input::Timer => self.core.handle_timeout(now()),
            Input::Stop => self.begin_drain(),
            Input::Keepalive => {
                // a worker stuck inside a tick stops the pings, and systemd restarts us
                if let Some(every) = self.notify.watchdog_every()
                    && self.heart.alive(every)
                {
                    self.notify.watchdog();
                }
                if let Some(d) = self.drain_deadline {
                    self.notify
                        .extend(d.saturating_duration_since(Instant::now()) + STOP_MARGIN);
                }
            }
            Input::Reload => self.reload(),
            Input::Watch => {
                // the file changed on disk (an editor, a deploy): same as SIGHUP
                let stamp = reload::modified(self.config_path.as_ref());
                if stamp != self.config_stamp {
                    self.config_stamp = stamp;
                    tracing::info!("configuration file changed");
                    self.reload();
                }
            }
        }
    }

    fn reload(&mut self) {
        self.notify.reloading();
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key read again"),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded: the running one stays")
                }
            }
        }
        reload::reload(
            &mut self.core,
            &mut self.running,
            &self.music,
            self.config_path.as_ref(),
            &self.http,
        );
        self.notify.ready();
    }

    /// A control-plane call; answered once its outputs are carried out (a
    /// recording whose file cannot be created is then reported to the caller).
    fn api_call(&mut self, call: ApiCall) {
        let now = now();
        if let Some(to) = dial::tls_target(&call.op) {
            // back as Input::Dialled once connected and verified
            return dial::start(
                call,
                to,
                &self.running.trunks,
                self.tcp_limits,
                self.net_tx.clone(),
                self.dialled_tx.clone(),
            );
        }
        let ApiCall { mut op, reply } = call;
        if let Op::Dial(_, req) | Op::DialConversation(_, _, req) = &mut op
            && req.flow.is_none()
        {
            req.local = dial_target(&req.to).and_then(|t| self.udp.local_towards(t));
        }
        let result = match op {
            Op::Metrics => ops::execute(&mut self.core, now, Op::Metrics).map(|r| match r {
                Reply::Metrics(text) => {
                    Reply::Metrics(self.metrics.render(&text, Some(&self.webhooks.stats)))
                }
                other => other,
            }),
            Op::TransferNcco(leg, ncco) => self.core.call(leg).map(|c| {
                let p = c.participant;
                self.answer_hook
                    .transfer(leg, ncco, (p.from, c.to, p.call_id));
                Reply::Done
            }),
            Op::WebJoin(req, connection) => match self.core.web_join(now, req) {
                Ok(leg) => {
                    self.media.stage_webrtc(leg, *connection);
                    Ok(Reply::Leg(leg))
                }
                Err(e) => Err(e),
            },
            op => ops::execute(&mut self.core, now, op),
        };
        self.deferred = Some((reply, result));
    }

    /// SIGTERM/SIGINT: new calls get 503; running ones hear "the conference has
    /// ended" (if configured) and get their BYE after the drain timeout; the
    /// process exits once the BYEs are answered, or [`DRAIN_LIMIT`] after that.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_none() {
            let (grace, announce) = self.drain;
            tracing::info!(
                legs = self.core.leg_count(),
                grace_s = grace.as_secs(),
                "shutting down: new calls refused, running calls end after the grace"
            );
            self.notify.stopping(grace + DRAIN_LIMIT + STOP_MARGIN);
            if let Some(c) = &self.cluster {
                // the others take this node's rooms for new callers now; calls
                // here end with the drain
                let _ = c.send(cluster::Ask::Leave);
            }
            self.core.drain(now(), grace, announce);
            self.drain_deadline = Some(Instant::now() + grace + DRAIN_LIMIT);
        }
    }
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
    let default = if dial::wants_tls(to) { 5061 } else { 5060 };
    Some(SocketAddr::new(ip, uri.port.unwrap_or(default)))
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
