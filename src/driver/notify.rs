//! systemd's notify protocol (sd_notify(3)), by hand: a datagram per state change
//! to the socket named in `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). READY=1 once SIP is bound and the media workers run; RELOADING=1
//! and READY=1 around a reload; STOPPING=1 at SIGTERM, with EXTEND_TIMEOUT_USEC
//! while a drain runs, so that `TimeoutStopSec=` never cuts a drain the
//! configuration allows; WATCHDOG=1 every half `WatchdogSec=`, only while the
//! media workers keep ticking. Without `$NOTIFY_SOCKET` (not under systemd)
//! nothing is sent. A crate (sd-notify) would do the same in as many lines; this
//! keeps the protocol's few rules in view.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notify socket, if systemd gave one.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

fn socket_addr(name: &str) -> Option<SocketAddr> {
    match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()
        }
        None => SocketAddr::from_pathname(name).ok(),
    }
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (for this process only, when
    /// `$WATCHDOG_PID` says so).
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|n| socket_addr(&n))
            .and_then(|addr| Some((UnixDatagram::unbound().ok()?, addr)));
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0 && ours)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// How often to send WATCHDOG=1 (half the watchdog time), if one is set.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Start-up is complete.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=accepting calls");
    }

    /// A reload begins (READY=1 follows when it is done).
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let us = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={us}"));
    }

    /// The drain of a SIGTERM begins; it may take `longest`.
    pub fn stopping(&self, longest: Duration) {
        self.send("STOPPING=1\nSTATUS=draining: new calls refused");
        self.extend(longest);
    }

    /// The stop may take `more` from now.
    pub fn extend(&self, more: Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", more.as_micros()));
    }

    /// The service is alive.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}
