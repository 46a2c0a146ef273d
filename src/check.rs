//! `caucus check FILE`: everything `run` would refuse at start-up, found without
//! starting (the file's syntax, types, ranges, rules, prompts and music), plus
//! warnings about settings that start but will likely not do what was meant.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// Check `file`: exit 0 (with any warnings on stderr), or 78 (EX_CONFIG, as
/// `run` does) with `FILE:LINE:COL: reason`.
pub fn run(file: &Path) -> ExitCode {
    let cfg = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::config::EX_CONFIG);
        }
    };
    if let Err(e) = cfg.prompts() {
        eprintln!("{}: sounds_dir: {e}", file.display());
        return ExitCode::from(crate::config::EX_CONFIG);
    }
    for w in warnings(&cfg) {
        eprintln!("{}: warning: {w}", file.display());
    }
    println!("{}: ok ({} rooms)", file.display(), cfg.rooms.len());
    ExitCode::SUCCESS
}

/// Settings that start but will likely not do what was meant.
pub fn warnings(cfg: &Config) -> Vec<String> {
    use std::net::{IpAddr, SocketAddr};
    let mut out = Vec::new();
    let sip = &cfg.sip;
    if sip.advertise.is_none() {
        for l in sip.listen.iter().filter(|l| l.ip().is_unspecified()) {
            // a UDP connect asks the kernel for a route and sends nothing
            let probe: SocketAddr = if l.is_ipv4() {
                "192.0.2.1:5060".parse().expect("literal")
            } else {
                "[2001:db8::1]:5060".parse().expect("literal")
            };
            let routed = std::net::UdpSocket::bind(SocketAddr::new(l.ip(), 0))
                .and_then(|s| s.connect(probe).and_then(|_| s.local_addr()))
                .is_ok_and(|a| !a.ip().is_loopback() && !a.ip().is_unspecified());
            if !routed {
                out.push(format!(
                    "[sip] listen {l}: this machine has no route for other hosts, so calls from them could be answered with no address they reach; set [sip] advertise (and [rtp] advertise)"
                ));
            }
        }
    }
    if sip.advertise.is_some() && cfg.rtp.advertise.is_none() {
        out.push(
            "[sip] advertise is set but [rtp] advertise is not: SDP carries the local address, which callers behind the same NAT boundary cannot reach".into(),
        );
    }
    if let Some(a) = cfg.rtp.address
        && !sip.listen.iter().any(|l| l.is_ipv4() == a.is_ipv4())
    {
        let family = if matches!(a, IpAddr::V4(_)) {
            "IPv4"
        } else {
            "IPv6"
        };
        out.push(format!(
            "[rtp] address {a}: no [sip] listen address is {family}; calls use their own local address instead"
        ));
    }
    out
}
